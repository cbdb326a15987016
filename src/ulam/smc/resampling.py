r"""Resampling schemes: ``key, log_weights, num -> ancestor indices``.

Every scheme here is unbiased: the number of copies :math:`N_i` of particle
``i`` among ``num`` draws has :math:`\mathbb E[N_i] = \text{num}\cdot W_i` with
:math:`W = \mathrm{softmax}(\text{log\_weights})`. They differ in the variance
of :math:`N_i` (Douc, Cappé & Moulines 2005, *Comparison of resampling schemes
for particle filtering*): multinomial is the largest; residual and stratified
are smaller; systematic and SSP (Gerber, Chopin & Whiteley 2019, *Negative
association, ordering and convergence of resampling methods*) give every count
one of :math:`\lfloor \text{num}\,W_i\rfloor, \lceil \text{num}\,W_i\rceil`, the
smallest variance an unbiased integer count can have.

All schemes are pure, jit-able and vmap-able; ``num`` is static.

Example:
  >>> import jax, jax.numpy as jnp
  >>> from ulam.smc import systematic_resample
  >>> a = systematic_resample(jax.random.key(0), jnp.log(jnp.array([0.1, 0.6, 0.3])), 10)
  >>> a.shape
  (10,)
"""

from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp
from jax import lax

from ulam import checks

__all__ = [
    "normalize_log_weights",
    "effective_sample_size",
    "multinomial_resample",
    "stratified_resample",
    "systematic_resample",
    "residual_resample",
    "ssp_resample",
    "offspring_counts",
    "resample_if",
    "RESAMPLERS",
    "get_resampler",
    "resampler_from_weights",
    "systematic_search",
]

Resampler = Callable[[jax.Array, jax.Array, int], jax.Array]


def normalize_log_weights(log_weights: jax.Array) -> jax.Array:
    """Normalized weights :math:`W_i = e^{\\ell_i} / \\sum_j e^{\\ell_j}` (all ``-inf`` gives NaN).

    Example:
      >>> import jax.numpy as jnp
      >>> from ulam.smc import normalize_log_weights
      >>> [round(w, 4) for w in normalize_log_weights(jnp.log(jnp.array([1.0, 3.0]))).tolist()]
      [0.25, 0.75]
    """
    return jax.nn.softmax(log_weights)


def effective_sample_size(log_weights: jax.Array) -> jax.Array:
    r"""Kong's effective sample size :math:`1/\sum_i W_i^2` of normalized weights.

    Example:
      >>> import jax.numpy as jnp
      >>> from ulam.smc import effective_sample_size
      >>> round(float(effective_sample_size(jnp.zeros(10))), 4)
      10.0
    """
    log_w = log_weights - jax.scipy.special.logsumexp(log_weights)
    return jnp.exp(-jax.scipy.special.logsumexp(2.0 * log_w))


def _cdf(log_weights: jax.Array) -> jax.Array:
    return _cdf_w(jax.nn.softmax(log_weights))


def _cdf_w(w: jax.Array) -> jax.Array:
    cdf = jnp.cumsum(w)
    # Round-off can leave cdf[-1] slightly below 1; uniforms above it must map to the last index.
    return cdf.at[-1].set(jnp.inf)


def _inverse_cdf(cdf: jax.Array, uniforms: jax.Array) -> jax.Array:
    idx = jnp.searchsorted(cdf, uniforms, side="right")
    return jnp.minimum(idx, cdf.shape[0] - 1).astype(jnp.int32)


def _check_num(num) -> int:
    return checks.count("num", num)


def multinomial_resample(key: jax.Array, log_weights: jax.Array, num: int) -> jax.Array:
    r"""Multinomial resampling: ``num`` i.i.d. draws :math:`A_j \sim \mathrm{Cat}(W)`.

    Sorted uniforms come from normalized exponential spacings, so the cost is
    :math:`O(N + \text{num})` searches (no sort); the returned ancestors are sorted.

    Example:
      >>> import jax, jax.numpy as jnp
      >>> from ulam.smc import multinomial_resample
      >>> a = multinomial_resample(jax.random.key(0), jnp.log(jnp.array([0.0, 1.0, 0.0])), 4)
      >>> a.tolist()
      [1, 1, 1, 1]
    """
    return _multinomial_w(key, jax.nn.softmax(log_weights), _check_num(num))


def _multinomial_w(key, w, num):
    e = jax.random.exponential(key, (num + 1,), dtype=jnp.result_type(w.dtype, jnp.float32))
    c = jnp.cumsum(e)
    uniforms = c[:-1] / c[-1]
    return _inverse_cdf(_cdf_w(w), uniforms)


def stratified_resample(key: jax.Array, log_weights: jax.Array, num: int) -> jax.Array:
    r"""Stratified resampling: :math:`U_j = (j + V_j)/\text{num}`, :math:`V_j` i.i.d. uniform (Kitagawa 1996).

    Example:
      >>> import jax, jax.numpy as jnp
      >>> from ulam.smc import stratified_resample
      >>> stratified_resample(jax.random.key(0), jnp.log(jnp.array([0.5, 0.5])), 4).tolist()
      [0, 0, 1, 1]
    """
    return _stratified_w(key, jax.nn.softmax(log_weights), _check_num(num))


def _stratified_w(key, w, num):
    dtype = jnp.result_type(w.dtype, jnp.float32)
    u = (jnp.arange(num, dtype=dtype) + jax.random.uniform(key, (num,), dtype=dtype)) / num
    return _inverse_cdf(_cdf_w(w), u)


def systematic_resample(key: jax.Array, log_weights: jax.Array, num: int) -> jax.Array:
    r"""Systematic resampling: :math:`U_j = (j + V)/\text{num}` with one uniform :math:`V` (Carpenter et al. 1999).

    One cumulative sum and one sorted search: :math:`O(N + \text{num})`, no sort.

    Example:
      >>> import jax, jax.numpy as jnp
      >>> from ulam.smc import systematic_resample
      >>> systematic_resample(jax.random.key(0), jnp.log(jnp.array([0.25, 0.75])), 4).tolist()
      [0, 1, 1, 1]
    """
    return _systematic_w(key, jax.nn.softmax(log_weights), _check_num(num))


def _systematic_w(key, w, num):
    dtype = jnp.result_type(w.dtype, jnp.float32)
    return systematic_search(_cdf_w(w), jax.random.uniform(key, (), dtype=dtype), num)


def systematic_search(cdf: jax.Array, u: jax.Array, num: int) -> jax.Array:
    r"""Ancestors :math:`a_j = \#\{i: c_i \le (j+u)/\text{num}\}` (capped at ``N-1``) for all ``j``, in :math:`O(N + \text{num})`.

    The result of ``searchsorted(cdf, (arange(num) + u) / num, side="right")`` without the search's
    :math:`\log_2 N` passes of random gathers: each particle's count
    :math:`D_i = \#\{j: (j+u)/\text{num} < c_i\}` is estimated as :math:`\lceil \text{num}\,c_i - u\rceil`
    and corrected against the uniforms themselves, then one scatter-add of the :math:`D_i` and one
    cumulative sum give :math:`a_j = \#\{i: D_i \le j\}`. It is systematic resampling exactly in law;
    against the search it differs only where a uniform and a cumulative weight agree to the last
    bit, where XLA may round :math:`(j+u)/\text{num}` one ulp apart in the two programs (measured:
    about one ancestor in :math:`10^5` at :math:`N = 10^5`, in a third of the draws).

    Example:
      >>> import jax.numpy as jnp
      >>> systematic_search(jnp.array([0.25, 0.5, jnp.inf]), jnp.float32(0.5), 4).tolist()
      [0, 1, 2, 2]
    """
    dtype = cdf.dtype
    n = cdf.shape[0]

    def uniform(j):
        return (j.astype(dtype) + u) / num

    d = jnp.clip(jnp.ceil(jnp.where(jnp.isfinite(cdf), cdf, 2.0) * num - u), 0, num).astype(jnp.int32)
    for _ in range(2):  # the estimate is off by rounding only: two exact corrections each way
        d = jnp.where((d > 0) & (uniform(jnp.maximum(d - 1, 0)) >= cdf), d - 1, d)
        d = jnp.where((d < num) & (uniform(jnp.minimum(d, num - 1)) < cdf), d + 1, d)
    marks = jnp.zeros((num + 1,), jnp.int32).at[d].add(1)
    return jnp.minimum(jnp.cumsum(marks)[:num], n - 1).astype(jnp.int32)


def _counts_to_ancestors(counts: jax.Array, num: int) -> jax.Array:
    # Particle i fills positions cumsum[i-1] .. cumsum[i]-1.
    ends = jnp.cumsum(counts)
    idx = jnp.searchsorted(ends, jnp.arange(num), side="right")
    return jnp.minimum(idx, counts.shape[0] - 1).astype(jnp.int32)


def residual_resample(key: jax.Array, log_weights: jax.Array, num: int) -> jax.Array:
    r"""Residual resampling (Liu & Chen 1998).

    :math:`\lfloor \text{num}\,W_i\rfloor` deterministic copies, then the
    remaining :math:`R = \text{num} - \sum_i\lfloor \text{num}\,W_i\rfloor`
    draws multinomially from the residuals :math:`\text{num}\,W_i - \lfloor \text{num}\,W_i\rfloor`.
    Shapes are static: ``num`` residual draws are made and the first ``R`` are used.

    Example:
      >>> import jax, jax.numpy as jnp
      >>> from ulam.smc import residual_resample, offspring_counts
      >>> a = residual_resample(jax.random.key(0), jnp.log(jnp.array([0.5, 0.25, 0.25])), 4)
      >>> offspring_counts(a, 3).tolist()
      [2, 1, 1]
    """
    return _residual_w(key, jax.nn.softmax(log_weights), _check_num(num))


def _residual_w(key, w, num):
    scaled = num * w
    floors = jnp.floor(scaled)
    counts = floors.astype(jnp.int32)
    deterministic = jnp.sum(counts)
    residual = jnp.maximum(scaled - floors, 0.0)
    # Unsorted i.i.d. draws: only the first R are used, so they must not be order statistics.
    u = jax.random.uniform(key, (num,), dtype=jnp.result_type(w.dtype, jnp.float32))
    extra = _inverse_cdf(_cdf_w(residual / jnp.sum(residual)), u)
    fixed = _counts_to_ancestors(counts, num)
    j = jnp.arange(num)
    return jnp.where(j < deterministic, fixed, extra[jnp.maximum(j - deterministic, 0)]).astype(jnp.int32)


def ssp_resample(key: jax.Array, log_weights: jax.Array, num: int) -> jax.Array:
    r"""Srinivasan sampling process (SSP) resampling (Gerber, Chopin & Whiteley 2019).

    Starts from the fractional parts :math:`f_i` of :math:`\text{num}\,W_i` and
    settles them two at a time: a pending particle ``a`` and the next one ``b``
    either merge (if :math:`f_a + f_b \le 1`, the sum goes to ``a`` with
    probability :math:`f_a/(f_a+f_b)`, else to ``b``) or one of them gets a whole
    extra copy (if :math:`f_a + f_b > 1`, ``a`` does with probability
    :math:`(1-f_b)/(2-f_a-f_b)`) and the other keeps :math:`f_a+f_b-1`. Each step
    preserves :math:`\mathbb E[f]`, so counts are unbiased, and every count is
    the floor or the ceiling of :math:`\text{num}\,W_i`. A ``lax.scan`` over
    particles: :math:`O(N)` but sequential.

    Example:
      >>> import jax, jax.numpy as jnp
      >>> from ulam.smc import ssp_resample, offspring_counts
      >>> a = ssp_resample(jax.random.key(0), jnp.log(jnp.array([0.5, 0.25, 0.25])), 4)
      >>> offspring_counts(a, 3).tolist()
      [2, 1, 1]
    """
    return _ssp_w(key, jax.nn.softmax(log_weights), _check_num(num))


def _ssp_w(key, w, num):
    n = w.shape[0]
    scaled = num * w
    floors = jnp.floor(scaled)
    counts = floors.astype(jnp.int32)
    frac = jnp.clip(scaled - floors, 0.0, 1.0)
    uniforms = jax.random.uniform(key, (n,), dtype=frac.dtype)

    def body(carry, b):
        counts, a, fa = carry
        fb, u = frac[b], uniforms[b]
        s = fa + fb
        merge = s <= 1.0
        # merge: survivor keeps s; the other is settled at 0.
        p_a_survives = jnp.where(s > 0, fa / jnp.where(s > 0, s, 1.0), 1.0)
        # split: the winner gets a whole copy; the other keeps s - 1.
        p_a_wins = (1.0 - fb) / jnp.maximum(2.0 - s, 1e-30)
        a_chosen = jnp.where(merge, u < p_a_survives, u < p_a_wins)
        winner = jnp.where(a_chosen, a, b)
        loser = jnp.where(a_chosen, b, a)
        counts = counts.at[winner].add(jnp.where(merge, 0, 1).astype(counts.dtype))
        new_pending = jnp.where(merge, winner, loser)
        new_frac = jnp.where(merge, s, s - 1.0)
        return (counts, new_pending, new_frac), None

    (counts, last, flast), _ = lax.scan(body, (counts, jnp.int32(0), frac[0]), jnp.arange(1, n, dtype=jnp.int32))
    # The fractional parts sum to an integer, so the last pending one is 0 or 1 up to round-off.
    counts = counts.at[last].add((flast > 0.5).astype(jnp.int32))
    # Round-off in num*W can leave the total one off; fix it on the largest fraction.
    short = num - jnp.sum(counts)
    counts = counts.at[jnp.argmax(frac)].add(short)
    return _counts_to_ancestors(counts, num)


def offspring_counts(ancestors: jax.Array, num_particles: int) -> jax.Array:
    """How many times each of ``num_particles`` parents appears in ``ancestors``.

    Example:
      >>> import jax.numpy as jnp
      >>> from ulam.smc import offspring_counts
      >>> offspring_counts(jnp.array([0, 0, 2]), 3).tolist()
      [2, 0, 1]
    """
    return jnp.bincount(ancestors, length=num_particles)


RESAMPLERS: dict[str, Resampler] = {
    "multinomial": multinomial_resample,
    "stratified": stratified_resample,
    "systematic": systematic_resample,
    "residual": residual_resample,
    "ssp": ssp_resample,
}


_FROM_WEIGHTS = {
    "multinomial": _multinomial_w,
    "stratified": _stratified_w,
    "systematic": _systematic_w,
    "residual": _residual_w,
    "ssp": _ssp_w,
}


def resampler_from_weights(scheme):
    """``key, weights, num -> ancestors`` for a scheme name or a log-weights callable.

    The filters already hold the normalized weights, so the named schemes skip a second softmax.

    Example:
      >>> import jax, jax.numpy as jnp
      >>> from ulam.smc.resampling import resampler_from_weights
      >>> resampler_from_weights("systematic")(jax.random.key(0), jnp.array([0.25, 0.75]), 4).tolist()
      [0, 1, 1, 1]
    """
    if callable(scheme):
        return lambda key, w, num: scheme(key, jnp.log(w), num)
    get_resampler(scheme)
    return _FROM_WEIGHTS[scheme]


def get_resampler(scheme) -> Resampler:
    """A resampling function from its name (``"systematic"``, ...) or a callable ``key, log_weights, num -> ancestors``.

    Example:
      >>> from ulam.smc import get_resampler, systematic_resample
      >>> get_resampler("systematic") is systematic_resample
      True
    """
    if callable(scheme):
        return scheme
    if not isinstance(scheme, str):
        raise TypeError(
            checks.message("resampling", f"a scheme name ({', '.join(RESAMPLERS)}) or a callable", type(scheme).__name__)
        )
    return RESAMPLERS[checks.one_of("resampling", scheme, RESAMPLERS)]


def resample_if(key, log_weights, num, *, threshold: float, scheme="systematic"):
    r"""Adaptive resampling: resample when :math:`\mathrm{ESS} < \text{threshold}\cdot N`.

    Returns ``(ancestors, carried_log_weights, resampled)``. When it resamples,
    the carried log-weights are 0 (equal weights); when it does not, the
    ancestors are the identity and the weights are carried unchanged, so that
    :math:`\sum_i W_i \varphi(x_i)` keeps its meaning. ``threshold = 1``
    resamples at every step (ESS never exceeds N).

    Example:
      >>> import jax, jax.numpy as jnp
      >>> from ulam.smc import resample_if
      >>> a, lw, did = resample_if(jax.random.key(0), jnp.zeros(4), 4, threshold=0.5)
      >>> bool(did), a.tolist()
      (False, [0, 1, 2, 3])
    """
    checks.in_interval("threshold", threshold, 0.0, 1.0, low_open=True, do="the ESS fraction; 1 resamples every step")
    n = log_weights.shape[0]
    if num != n:
        raise ValueError(f"num: adaptive resampling keeps the particle count, expected {n}, got {num}")
    resampler = get_resampler(scheme)
    do = (effective_sample_size(log_weights) < threshold * n) | (threshold >= 1.0)
    ancestors = lax.cond(
        do, lambda: resampler(key, log_weights, num), lambda: jnp.arange(num, dtype=jnp.int32)
    )
    carried = jnp.where(do, jnp.zeros_like(log_weights), log_weights)
    return ancestors, carried, do
