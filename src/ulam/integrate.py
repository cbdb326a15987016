r"""Monte Carlo integration of :math:`\mathbb{E}_p[f(X)]`, with variance reduction.

Every function here returns an :class:`~ulam.Estimate` and draws its samples in
chunks of ``batch_size`` (a ``lax.scan`` over chunks with exactly merged running
moments), so memory stays bounded for any ``n``.

* ``f`` maps ONE draw (any pytree) to a pytree of arrays; it is vectorised with
  ``vmap``. The estimate has the structure of ``f``'s output.
* ``p`` is a distribution (anything with ``sample(key, sample_shape)``, e.g. a
  numpyro distribution) or a sampling function ``p(key, num) -> draws`` whose
  leading axis is ``num``. The estimators that need uniforms (antithetic through
  the inverse CDF, quasi-Monte Carlo, stratified) push ``[0, 1)^d`` points through
  ``p``'s inverse CDF; :func:`from_uniform` wraps any other map from uniforms.

Same key, same ``n`` and same ``batch_size`` give the same result bit for bit.
Each public function caches its compiled body per ``(f, n, batch_size, ...)``;
pass the same ``f`` object to reuse it (a fresh ``lambda`` recompiles).

References: Owen, *Monte Carlo theory, methods and examples* (2013), chapters 8-10
(antithetics, stratification, control variates) and 17 (randomized QMC);
Chan, Golub & LeVeque (1979) for the pairwise merge of running moments.
"""

from __future__ import annotations

import functools
import math
from typing import Any, Callable, NamedTuple, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree
from jax.scipy.special import ndtri

from ulam.diagnostics import pareto_khat_from_tail, psis_tail_length
from ulam.estimate import Estimate, pool

__all__ = [
    "monte_carlo",
    "antithetic",
    "quasi_monte_carlo",
    "stratified",
    "importance_sampling",
    "control_variates",
    "sequential",
    "from_uniform",
    "UniformTransform",
    "sobol_points",
]

DEFAULT_BATCH_SIZE = 1 << 18
_NONFINITE_MODES = ("raise", "drop")


# ---------------------------------------------------------------------------
# Argument checks: early, and naming the argument.
# ---------------------------------------------------------------------------


def _check_count(name: str, value: Any, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name}: expected an integer, got {type(value).__name__}")
    if value < minimum:
        raise ValueError(f"{name}: must be at least {minimum}, got {value}")
    return int(value)


def _check_f(f: Any, name: str = "f") -> None:
    if not callable(f):
        raise TypeError(f"{name}: expected a function of one draw, got {type(f).__name__}")


def _check_sampler(p: Any, name: str = "p") -> None:
    if not (hasattr(p, "sample") or callable(p)):
        raise TypeError(
            f"{name}: expected a distribution with a `sample(key, sample_shape)` method "
            f"(e.g. numpyro.distributions.Normal) or a function `(key, num) -> draws`, got {type(p).__name__}"
        )


def _check_nonfinite(nonfinite: str) -> None:
    if nonfinite not in _NONFINITE_MODES:
        raise ValueError(f"nonfinite: expected 'raise' or 'drop', got {nonfinite!r}")


def _batch(n: int, batch_size: int | None) -> int:
    if batch_size is None:
        return _dividing_batch(n, DEFAULT_BATCH_SIZE)
    return min(n, _check_count("batch_size", batch_size))


def _dividing_batch(n: int, cap: int) -> int:
    """The largest chunk size <= ``cap`` that divides ``n`` into at most twice the fewest chunks, else ``cap``.

    With no remainder chunk the sampler and ``f`` are compiled once instead of twice
    (n = 10^7: 1.45 s instead of 2.5 s), and round sizes (powers of 2 or 10) always divide.
    """
    if n <= cap:
        return n
    fewest = -(-n // cap)
    for chunks in range(fewest, 2 * fewest + 1):
        if n % chunks == 0:
            return n // chunks
    return cap


def _draw(p: Any, key: jax.Array, num: int):
    if hasattr(p, "sample"):
        return p.sample(key, (num,))
    return p(key, num)


def _flat_f(f: Callable, example) -> tuple[Callable, Callable]:
    """``f`` as a map from one draw to a flat vector, and the map back to ``f``'s structure."""
    try:
        out = jax.eval_shape(f, example)
    except (jax.errors.ConcretizationTypeError, jax.errors.NonConcreteBooleanIndexError) as err:
        raise ValueError(
            "f: must return the same shape for every draw; its output shape depends on the draw's values "
            f"(e.g. x[x > 0]), which cannot be vectorised. Use jnp.where to keep shapes fixed. ({type(err).__name__})"
        ) from err
    except Exception as err:  # re-raised with the argument named; the cause stays attached
        raise TypeError(f"f: could not be evaluated on a single draw of p ({type(err).__name__}: {err})") from err
    leaves = jax.tree_util.tree_leaves(out)
    if not leaves:
        raise TypeError("f: returned no arrays; it must return an array or a pytree of arrays")
    for leaf in leaves:
        if not (jnp.issubdtype(leaf.dtype, jnp.number) or jnp.issubdtype(leaf.dtype, jnp.bool_)):
            raise TypeError(f"f: must return numeric arrays, got dtype {leaf.dtype}")
    zeros = jax.tree_util.tree_map(lambda s: jnp.zeros(s.shape, jnp.result_type(s.dtype, jnp.float32)), out)
    _, unravel = ravel_pytree(zeros)
    dtype = jnp.result_type(*[jnp.result_type(l.dtype, jnp.float32) for l in leaves])

    def flat(x):
        return ravel_pytree(jax.tree_util.tree_map(lambda a: jnp.asarray(a, dtype), f(x)))[0]

    return flat, unravel


def _flat_spec(f: Callable, example) -> tuple[Callable, Callable, int, Any]:
    """``_flat_f`` plus the flat length and dtype of ``f``'s output."""
    flat, unravel = _flat_f(f, example)
    spec = jax.eval_shape(flat, example)
    return flat, unravel, spec.shape[0], spec.dtype


def _one_draw(p: Any, key: jax.Array):
    """The shape of one draw, traced abstractly (no sampling code enters the compiled program)."""
    return jax.eval_shape(lambda k: jax.tree_util.tree_map(lambda a: a[0], _draw(p, k, 1)), key)


# ---------------------------------------------------------------------------
# Streaming moments (Chan-Golub-LeVeque pairwise merge), with a masked chunk.
# ---------------------------------------------------------------------------


class Moments(NamedTuple):
    """Running first and second moments of draws ``(f, g)`` with ``f`` in R^kf, ``g`` in R^kg."""

    count: jax.Array  # number of finite draws (int32: exact, unlike a float32 running sum past 2^24)
    mean_f: jax.Array  # (kf,)
    mean_g: jax.Array  # (kg,)
    m2_f: jax.Array  # (kf,)   sum of squared deviations of f
    c_fg: jax.Array  # (kf, kg) co-moment of f and g
    c_gg: jax.Array  # (kg, kg) co-moment of g
    nonfinite: jax.Array  # number of draws dropped for a non-finite value

    @staticmethod
    def zeros(kf: int, kg: int, dtype) -> "Moments":
        z = functools.partial(jnp.zeros, dtype=dtype)
        zero = jnp.zeros((), jnp.int32)
        return Moments(zero, z((kf,)), z((kg,)), z((kf,)), z((kf, kg)), z((kg, kg)), zero)

    @property
    def var_f(self):
        return self.m2_f / jnp.maximum(self.count.astype(self.m2_f.dtype) - 1.0, 1.0)


def chunk_moments(fv: jax.Array, gv: jax.Array, shift: tuple[jax.Array, jax.Array] | None = None) -> Moments:
    r"""Moments of one chunk of draws ``fv (m, kf)``, ``gv (m, kg)``; draws with any non-finite value are dropped.

    Without ``shift`` the chunk is centred on its own mean (two passes over the chunk). With
    ``shift = (c_f, c_g)`` it takes one pass of shifted sums, e.g. for ``f``
    :math:`S_1 = \sum_i (f_i - c_f)`, :math:`S_2 = \sum_i (f_i - c_f)^2`, then
    :math:`\bar f = c_f + S_1/m` and :math:`M_2 = S_2 - S_1^2/m`: the sums fuse with the
    sampler into one loop and the chunk is never stored (the ``n = 10^7`` plain-MC benchmark
    runs ~20 % faster). The subtraction loses precision only when the shift is many standard
    deviations from the chunk's mean, so the shift must be a good guess of the mean
    (:func:`stream_moments` passes the running mean of the chunks before).
    """
    finite = jnp.all(jnp.isfinite(fv), axis=1) & jnp.all(jnp.isfinite(gv), axis=1)
    nonfinite = (fv.shape[0] - jnp.sum(finite)).astype(jnp.int32)
    count = jnp.sum(finite).astype(jnp.int32)
    safe = jnp.maximum(count.astype(fv.dtype), 1.0)
    if shift is not None:
        yf = jnp.where(finite[:, None], fv - shift[0], 0.0)
        yg = jnp.where(finite[:, None], gv - shift[1], 0.0)
        s_f, s_g = jnp.sum(yf, axis=0), jnp.sum(yg, axis=0)
        return Moments(
            count,
            shift[0] + s_f / safe,
            shift[1] + s_g / safe,
            jnp.maximum(jnp.sum(yf * yf, axis=0) - s_f * s_f / safe, 0.0),
            yf.T @ yg - jnp.outer(s_f, s_g) / safe,
            yg.T @ yg - jnp.outer(s_g, s_g) / safe,
            nonfinite,
        )
    w = finite.astype(fv.dtype)
    fv = jnp.where(finite[:, None], fv, 0.0)
    gv = jnp.where(finite[:, None], gv, 0.0)
    mean_f = jnp.sum(fv, axis=0) / safe
    mean_g = jnp.sum(gv, axis=0) / safe
    df = (fv - mean_f) * w[:, None]
    dg = (gv - mean_g) * w[:, None]
    return Moments(count, mean_f, mean_g, jnp.sum(df * df, axis=0), df.T @ dg, dg.T @ dg, nonfinite)


def merge_moments(a: Moments, b: Moments) -> Moments:
    """Exact moments of the union of two disjoint sets of draws."""
    n = a.count + b.count
    dtype = a.mean_f.dtype
    na, nb = a.count.astype(dtype), b.count.astype(dtype)
    safe = jnp.maximum(na + nb, 1.0)
    df = b.mean_f - a.mean_f
    dg = b.mean_g - a.mean_g
    weight = na * nb / safe
    return Moments(
        n,
        a.mean_f + df * (nb / safe),
        a.mean_g + dg * (nb / safe),
        a.m2_f + b.m2_f + df * df * weight,
        a.c_fg + b.c_fg + jnp.outer(df, dg) * weight,
        a.c_gg + b.c_gg + jnp.outer(dg, dg) * weight,
        a.nonfinite + b.nonfinite,
    )


def stream_moments(values: Callable, key: jax.Array, n: int, batch_size: int, kf: int, kg: int, dtype) -> Moments:
    """Moments of ``n`` draws of ``values(key, m) -> (fv (m, kf), gv (m, kg))``, ``batch_size`` at a time.

    Full chunks run in a ``lax.scan``; a remainder chunk, if any, runs after it. (Padding
    the last chunk instead would compile the sampler once, but the mask it needs made
    every chunk about 1.4x slower on CPU, so the remainder is kept apart.)

    Inside the scan each chunk takes one pass of sums shifted by the running mean of the
    chunks before it (see :func:`chunk_moments`); the first chunk is shifted by one pilot
    draw from a key of its own, which sets only the rounding, never the estimate.
    """
    num_full, rest = divmod(n, batch_size)
    keys = jax.random.split(key, num_full + (1 if rest else 0))
    acc = Moments.zeros(kf, kg, dtype)
    if num_full:
        pilot_f, pilot_g = values(jax.random.fold_in(key, 0x5417), 1)
        pilot = tuple(jnp.where(jnp.isfinite(v[0]), v[0], 0.0) for v in (pilot_f, pilot_g))

        def body(acc, k):
            seen = acc.count > 0
            shift = (jnp.where(seen, acc.mean_f, pilot[0]), jnp.where(seen, acc.mean_g, pilot[1]))
            return merge_moments(acc, chunk_moments(*values(k, batch_size), shift=shift)), None

        acc, _ = jax.lax.scan(body, acc, keys[:num_full])
    if rest:
        acc = merge_moments(acc, chunk_moments(*values(keys[-1], rest)))
    return acc


# ---------------------------------------------------------------------------
# From moments to an Estimate, with the non-finite policy.
# ---------------------------------------------------------------------------


def _is_traced(x) -> bool:
    return any(isinstance(leaf, jax.core.Tracer) for leaf in jax.tree_util.tree_leaves(x))


def _apply_nonfinite_policy(est: Estimate, nonfinite: str, total: int, what: str = "f") -> Estimate:
    """Raise on non-finite draws (default), or record how many were dropped."""
    if _is_traced(est.info.get("num_nonfinite")):
        return est  # inside jit: the count travels in est.info["num_nonfinite"]
    dropped = int(np.asarray(est.info.get("num_nonfinite", 0)))
    if dropped and nonfinite == "raise":
        raise ValueError(
            f"{what}: returned non-finite values (nan or inf) for {dropped} of {total} draws; "
            "fix the integrand, or pass nonfinite='drop' to average over the finite draws only "
            "(the Estimate then records the count in info['num_nonfinite'])"
        )
    if dropped == total:
        raise ValueError(f"{what}: every one of the {total} draws was non-finite; there is nothing to average")
    return est


def _iid_estimate(m: Moments, unravel: Callable) -> Estimate:
    """Plain-MC estimate from the moments of i.i.d. draws: se = s / sqrt(n), ess = n."""
    count = m.count
    stderr = jnp.sqrt(m.var_f / jnp.maximum(count.astype(m.var_f.dtype), 1.0))
    ess = jnp.broadcast_to(count, m.mean_f.shape).astype(m.mean_f.dtype)
    return Estimate(unravel(m.mean_f), unravel(stderr), _as_count(count), unravel(ess), {"num_nonfinite": m.nonfinite})


def _as_count(x):
    return x.astype(jnp.int32) if isinstance(x, jax.Array) else x


def _variance_equivalent_ess(var_f, stderr):
    """Number of plain-MC draws that would give the same standard error: Var(f) / se^2."""
    return var_f / jnp.maximum(stderr**2, jnp.finfo(stderr.dtype).tiny)


# ---------------------------------------------------------------------------
# Plain Monte Carlo
# ---------------------------------------------------------------------------


@functools.partial(jax.jit, static_argnames=("f", "sampler", "n", "batch_size"))
def _monte_carlo(p, key, *, f, sampler, n, batch_size):
    p = sampler if p is None else p
    flat, unravel, kf, dtype = _flat_spec(f, _one_draw(p, key))

    def values(k, m):
        fv = jax.vmap(flat)(_draw(p, k, m))
        return fv, jnp.zeros((m, 0), dtype)

    moments = stream_moments(values, key, n, batch_size, kf, 0, dtype)
    return _iid_estimate(moments, unravel)


def _split_sampler(p):
    """numpyro distributions are pytrees (traced jit arguments); anything else is static (hashed)."""
    import numpyro.distributions as nd

    if isinstance(p, nd.Distribution):
        return p, None
    return None, p


def monte_carlo(
    f: Callable, p: Any, key: jax.Array, n: int, *, batch_size: int | None = None, nonfinite: str = "raise"
) -> Estimate:
    r"""Plain Monte Carlo: :math:`\hat\mu = \frac1n\sum_{i=1}^n f(X_i)`, :math:`X_i \sim p` i.i.d.

    The standard error is :math:`s/\sqrt n` with :math:`s^2` the unbiased sample variance.

    Args:
      f: function of one draw, returning an array or a pytree of arrays.
      p: distribution with ``sample(key, shape)``, or sampling function ``(key, num) -> draws``.
      key: a ``jax.random`` key.
      n: number of draws.
      batch_size: draws per chunk (memory is O(batch_size)); default: at most ``2**18``,
        chosen to divide ``n`` when it can.
      nonfinite: ``"raise"`` (default) refuses non-finite values of ``f`` and says how many
        there were; ``"drop"`` averages the finite draws and records the count in
        ``info["num_nonfinite"]``.

    Example:
      >>> import jax, jax.numpy as jnp, numpyro.distributions as dist
      >>> est = monte_carlo(jnp.exp, dist.Normal(0.0, 1.0), jax.random.key(0), 100_000)
      >>> abs(float(est.mean) - float(jnp.exp(0.5))) < 4 * float(est.stderr)
      True
    """
    _check_f(f)
    _check_sampler(p)
    n = _check_count("n", n, 2)
    _check_nonfinite(nonfinite)
    batch = _batch(n, batch_size)
    dist_, sampler = _split_sampler(p)
    est = _monte_carlo(dist_, key, f=f, sampler=sampler, n=n, batch_size=batch)
    return _apply_nonfinite_policy(est, nonfinite, n)


# ---------------------------------------------------------------------------
# Uniform transforms: what antithetic-through-the-CDF, QMC and stratification need.
# ---------------------------------------------------------------------------


class UniformTransform(NamedTuple):
    """A distribution given as a map from ``dim`` independent uniforms to one draw.

    ``transform(u)`` takes ``u`` of shape ``(dim,)`` in ``[0, 1)`` and returns one draw.
    It also samples (``sample(key, (num,))``), so it can be passed as ``p`` anywhere.
    """

    dim: int
    transform: Callable

    def sample(self, key, sample_shape=()):
        shape = tuple(sample_shape)
        u = jax.random.uniform(key, (int(np.prod(shape, dtype=int)), self.dim))
        x = jax.vmap(self.transform)(u)
        return jax.tree_util.tree_map(lambda a: a.reshape(shape + a.shape[1:]), x)


def from_uniform(dim: int, transform: Callable) -> UniformTransform:
    """Wrap ``transform: [0,1)^dim -> draw`` as a distribution usable by every estimator here.

    Example:
      >>> import jax.numpy as jnp
      >>> exp2 = from_uniform(2, lambda u: -jnp.log1p(-u))   # two independent Exp(1)
      >>> exp2.dim
      2
    """
    _check_count("dim", dim)
    if not callable(transform):
        raise TypeError(f"transform: expected a function of a (dim,) uniform vector, got {type(transform).__name__}")
    return UniformTransform(dim, transform)


class _InverseCDF(NamedTuple):
    """The static half of a numpyro distribution's map from uniforms; its parameters travel traced.

    Keeping the parameters out of the static argument means one compiled program serves every
    call with the same kind and shape of distribution (a closure over ``p`` would recompile).
    """

    dim: int
    shape: tuple[int, ...]
    gaussian: bool  # MultivariateNormal: loc + L @ ndtri(u); otherwise the base distribution's icdf


def _uniform_transform(p: Any) -> tuple[UniformTransform | _InverseCDF, Any]:
    """``p`` as a map from uniforms (inverse CDF or Cholesky factor): ``(static spec, traced parameters)``."""
    import numpyro.distributions as nd

    if isinstance(p, UniformTransform):
        return p, None
    if isinstance(p, nd.MultivariateNormal):
        d = p.event_shape[0]
        if p.batch_shape:
            raise ValueError("p: a MultivariateNormal with a batch shape has no single uniform transform; pass one")
        return _InverseCDF(d, (d,), True), p
    base = p.base_dist if isinstance(p, nd.Independent) else p
    shape = tuple(base.batch_shape) + tuple(base.event_shape)
    if base.event_shape:
        raise TypeError(
            f"p: {type(p).__name__} has no inverse CDF for its {len(base.event_shape)}-d event; "
            "wrap a map from uniforms with ulam.from_uniform(dim, transform)"
        )
    dim = int(np.prod(shape, dtype=int)) if shape else 1
    try:
        jax.eval_shape(base.icdf, jnp.full(shape, 0.5))
    except (NotImplementedError, ImportError, AttributeError) as err:
        raise TypeError(
            f"p: {type(p).__name__} has no usable inverse CDF ({type(err).__name__}); "
            "wrap a map from uniforms with ulam.from_uniform(dim, transform)"
        ) from None
    return _InverseCDF(dim, shape, False), p


def _bind_transform(spec: UniformTransform | _InverseCDF, p: Any) -> Callable:
    """The map ``u (dim,) -> draw`` from a static spec and (traced) distribution parameters."""
    if isinstance(spec, UniformTransform):
        return spec.transform
    if spec.gaussian:
        return lambda u: p.loc + p.scale_tril @ ndtri(u)
    import numpyro.distributions as nd

    base = p.base_dist if isinstance(p, nd.Independent) else p
    return lambda u: base.icdf(u.reshape(spec.shape))


def draw_flat(sample: Callable, key: jax.Array, shape: tuple[int, ...], *args, **kwargs) -> jax.Array:
    """``sample(key, shape, ...)`` drawn as one flat vector and reshaped: the same numbers.

    With JAX's default (partitionable threefry) generator, XLA compiles a draw of 3 or more
    dimensions ~5x slower on CPU than the same bits drawn 1-d, e.g.
    ``draw_flat(jax.random.normal, key, (4, 5, 6))``.
    """
    return sample(key, (math.prod(shape),), *args, **kwargs).reshape(shape)


def _uniform(key, shape, dtype):
    """Uniforms strictly inside (0, 1), so inverse CDFs stay finite."""
    eps = jnp.finfo(dtype).eps
    return jnp.clip(draw_flat(jax.random.uniform, key, shape, dtype), eps, 1.0 - eps)


def _reflection(p: Any) -> Callable | None:
    """``x -> 2 c - x`` for distributions symmetric about a centre ``c``; None otherwise."""
    import numpyro.distributions as nd

    symmetric = (nd.Normal, nd.StudentT, nd.Cauchy, nd.Laplace, nd.Logistic, nd.MultivariateNormal, nd.LowRankMultivariateNormal)
    base = p.base_dist if isinstance(p, nd.Independent) else p
    if isinstance(base, symmetric):
        centre = base.loc
        return lambda x: 2.0 * centre - x
    if isinstance(base, nd.Uniform):
        return lambda x: base.low + base.high - x
    return None


# ---------------------------------------------------------------------------
# Antithetic variates
# ---------------------------------------------------------------------------


@functools.partial(jax.jit, static_argnames=("f", "transform", "mode", "n_pairs", "batch_size"))
def _antithetic(p, key, *, f, transform, mode, n_pairs, batch_size):
    if mode == "reflect":
        reflect = _reflection(p)
        one = _one_draw(p, key)
    else:
        to_draw = _bind_transform(transform, p)
        one = jax.eval_shape(to_draw, jnp.full((transform.dim,), 0.5))
    flat, unravel, k, dtype = _flat_spec(f, one)

    def values(key_, m):
        if mode == "reflect":
            x = _draw(p, key_, m)
            x_bar = reflect(x)
        else:
            u = _uniform(key_, (m, transform.dim), dtype)
            x = jax.vmap(to_draw)(u)
            x_bar = jax.vmap(to_draw)(1.0 - u)
        fx, fx_bar = jax.vmap(flat)(x), jax.vmap(flat)(x_bar)
        # Columns: the pair average (the estimator) and f(X) alone (for Var f and the ess).
        return jnp.concatenate([(fx + fx_bar) / 2.0, fx], axis=1), jnp.zeros((m, 0), dtype)

    m = stream_moments(values, key, n_pairs, batch_size, 2 * k, 0, dtype)
    pairs = m.count
    mean = m.mean_f[:k]
    stderr = jnp.sqrt(m.var_f[:k] / jnp.maximum(pairs, 1.0))
    var_f = m.var_f[k:]
    ess = _variance_equivalent_ess(var_f, stderr)
    info = {"num_nonfinite": m.nonfinite, "variance_reduction": var_f / jnp.maximum(2.0 * m.var_f[:k], 1e-300)}
    info["variance_reduction"] = unravel(info["variance_reduction"])
    return Estimate(unravel(mean), unravel(stderr), _as_count(2 * pairs), unravel(ess), info)


def antithetic(
    f: Callable, p: Any, key: jax.Array, n: int, *, batch_size: int | None = None, nonfinite: str = "raise"
) -> Estimate:
    r"""Antithetic variates: average ``f`` over pairs :math:`(X, \bar X)` with :math:`\bar X` the mirror of :math:`X`.

    :math:`\hat\mu = \frac{1}{n/2}\sum_{i} \tfrac12[f(X_i) + f(\bar X_i)]`. For distributions
    symmetric about a centre ``c`` (Normal, Student-t, Cauchy, Laplace, Logistic,
    multivariate normal, Uniform) :math:`\bar X = 2c - X`; otherwise
    :math:`X = F^{-1}(U)` and :math:`\bar X = F^{-1}(1 - U)`. The variance falls below
    plain MC's exactly when :math:`\mathrm{Cov}(f(X), f(\bar X)) < 0`, e.g. for monotone
    ``f`` (Owen 2013, §8.2). ``info["variance_reduction"]`` is the measured
    :math:`\mathrm{Var}f / (2\,\mathrm{Var}\,\text{pair average})`.

    ``n`` counts evaluations of ``f`` (``n // 2`` pairs); ``ess`` is the number of plain
    draws with the same standard error.

    Example:
      >>> import jax, jax.numpy as jnp, numpyro.distributions as dist
      >>> est = antithetic(jnp.exp, dist.Normal(0.0, 1.0), jax.random.key(0), 100_000)
      >>> bool(est.ess > est.n)   # exp is monotone: antithetics help
      True
    """
    _check_f(f)
    _check_sampler(p)
    n = _check_count("n", n, 4)
    _check_nonfinite(nonfinite)
    n_pairs = n // 2
    batch = _batch(n_pairs, batch_size)
    if _reflection(p) is not None:
        est = _antithetic(p, key, f=f, transform=None, mode="reflect", n_pairs=n_pairs, batch_size=batch)
    else:
        transform, params = _uniform_transform(p)
        est = _antithetic(params, key, f=f, transform=transform, mode="uniform", n_pairs=n_pairs, batch_size=batch)
    return _apply_nonfinite_policy(est, nonfinite, n_pairs, what="f (on an antithetic pair)")


# ---------------------------------------------------------------------------
# Randomized quasi-Monte Carlo: scrambled Sobol' points
# ---------------------------------------------------------------------------


@functools.lru_cache(maxsize=1)
def _joe_kuo_table() -> tuple[np.ndarray, np.ndarray]:
    """Primitive polynomials and initial direction numbers (Joe & Kuo 2008, new-joe-kuo-6.21201).

    Read from the table SciPy ships with its Sobol' engine, without importing
    ``scipy.stats`` (whose import costs seconds).
    """
    import importlib.util
    from pathlib import Path

    spec = importlib.util.find_spec("scipy")
    if spec is None or not spec.submodule_search_locations:
        raise ImportError("quasi-Monte Carlo needs SciPy's table of Sobol' direction numbers: pip install scipy")
    table = np.load(Path(list(spec.submodule_search_locations)[0]) / "stats" / "_sobol_direction_numbers.npz")
    return table["poly"], table["vinit"]


@functools.lru_cache(maxsize=64)
def _sobol_directions(dim: int, bits: int) -> np.ndarray:
    """Direction numbers ``v_k`` (k < bits) of the unscrambled Sobol' sequence, as 32-bit integers (bits, dim).

    Point ``i`` of the net is :math:`\\bigoplus_k \\mathrm{bit}_k(i)\\, v_k`. Coordinate ``j`` with
    primitive polynomial :math:`x^s + a_1x^{s-1} + \\dots + a_{s-1}x + 1` and initial odd integers
    :math:`m_1..m_s` continues by the recurrence (Bratley & Fox 1988; Joe & Kuo 2008)
    :math:`m_k = 2a_1m_{k-1} \\oplus 4a_2m_{k-2} \\oplus\\dots\\oplus 2^sm_{k-s} \\oplus m_{k-s}`,
    and :math:`v_k = m_k\\,2^{31-k}` (k from 0). Coordinate 0 has every :math:`m_k = 1`.
    """
    poly, vinit = _joe_kuo_table()
    if dim > len(poly):
        raise ValueError(f"dim: Sobol' direction numbers exist for at most {len(poly)} dimensions, got {dim}")
    m = np.ones((dim, 32), np.uint64)
    for j in range(1, dim):
        p = int(poly[j])
        s = p.bit_length() - 1  # degree
        m[j, :s] = vinit[j, :s]
        for k in range(s, 32):
            new = m[j, k - s] ^ (m[j, k - s] << np.uint64(s))
            for i in range(1, s):
                if (p >> (s - i)) & 1:
                    new ^= m[j, k - i] << np.uint64(i)
            m[j, k] = new
    shifts = (31 - np.arange(32)).astype(np.uint64)
    return (m << shifts).astype(np.uint32).T[:bits].copy()


_BIT_VALUES = np.uint32(1) << (31 - np.arange(32, dtype=np.uint32))


def _scrambled_directions(key: jax.Array, directions: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Random linear matrix scramble of the direction numbers, and a random digital shift.

    Each coordinate's bits (most significant first) are multiplied by a random
    lower-triangular binary matrix with unit diagonal (Matoušek 1998; Owen 2003).
    The scramble is linear over GF(2), so scrambling the direction numbers scrambles
    every point of the net; each scrambled, shifted point is uniform on the unit cube
    and the set keeps its net structure.
    """
    dim = directions.shape[1]
    k_mat, k_shift = jax.random.split(key)
    coin = draw_flat(lambda k, shape: jax.random.bernoulli(k, 0.5, shape), k_mat, (dim, 32, 32))
    lower = jnp.tril(coin, k=-1) | jnp.eye(32, dtype=bool)
    bit_values = jnp.asarray(_BIT_VALUES)
    # masks[j, r]: row r of coordinate j's matrix as an integer (column c <-> bit 31 - c).
    masks = jnp.sum(jnp.where(lower, bit_values, jnp.uint32(0)), axis=-1, dtype=jnp.uint32)
    parity = jax.lax.population_count(directions[:, :, None] & masks[None, :, :]) & jnp.uint32(1)
    scrambled = jnp.sum(parity * bit_values, axis=-1, dtype=jnp.uint32)
    return scrambled, jax.random.bits(k_shift, (dim,), jnp.uint32)


def _net(directions: jax.Array) -> jax.Array:
    """All :math:`2^b` points spanned by ``b`` direction numbers: point ``i`` is :math:`\\bigoplus_j \\mathrm{bit}_j(i)\\, v_j`.

    One fused pass of O(2^b b d) XORs. (Doubling by concatenation needs only O(2^b d), but
    XLA compiled its chain of concatenations ~10x slower, for a run-time gain of ~1 ms.)
    """
    index = jnp.arange(1 << directions.shape[0], dtype=jnp.uint32)[:, None]
    points = jnp.zeros((index.shape[0], directions.shape[1]), jnp.uint32)
    for j, v in enumerate(directions):
        points = points ^ jnp.where((index >> j) & jnp.uint32(1), v, jnp.uint32(0))
    return points


def _xor_span(directions: jax.Array, index: jax.Array) -> jax.Array:
    """:math:`\\bigoplus_j \\mathrm{bit}_j(\\text{index})\\, v_j`."""
    bits = (index >> jnp.arange(directions.shape[0], dtype=jnp.uint32)) & jnp.uint32(1)
    terms = jnp.where(bits[:, None].astype(bool), directions, jnp.uint32(0))
    return jax.lax.reduce(terms, jnp.uint32(0), jax.lax.bitwise_xor, (0,))


def _to_unit_interval(x: jax.Array, dtype) -> jax.Array:
    # The top 24 bits, centred in their cell: exactly representable in float32, never 0 or 1.
    return ((x >> jnp.uint32(8)).astype(dtype) + 0.5) * (2.0**-24)


def sobol_points(key: jax.Array, num: int, dim: int, dtype=jnp.float32) -> jax.Array:
    """The first ``num`` points of a scrambled Sobol' net in ``(0, 1)^dim``; each point is uniform.

    A power of 2 gives a whole net (every elementary interval balanced); other counts
    take the leading points of the next net, which stay uniform, so averages over them
    stay unbiased.

    Example:
      >>> import jax
      >>> u = sobol_points(jax.random.key(0), 1024, 3)
      >>> u.shape
      (1024, 3)
    """
    return _sobol_points(key, _check_count("num", num), _check_count("dim", dim), jnp.dtype(dtype))


@functools.partial(jax.jit, static_argnums=(1, 2, 3))
def _sobol_points(key, num, dim, dtype):
    directions = jnp.asarray(_sobol_directions(dim, (num - 1).bit_length()))
    scrambled, shift = _scrambled_directions(key, directions)
    return _to_unit_interval(_net(scrambled)[:num] ^ shift, dtype)


@functools.partial(jax.jit, static_argnames=("f", "transform", "log2_m", "num_randomizations", "log2_batch"))
def _quasi_monte_carlo(p, key, *, f, transform, log2_m, num_randomizations, log2_batch):
    to_draw = _bind_transform(transform, p)
    flat, unravel, k, dtype = _flat_spec(f, jax.eval_shape(to_draw, jnp.full((transform.dim,), 0.5)))
    m, batch = 1 << log2_m, 1 << log2_batch
    directions = jnp.asarray(_sobol_directions(transform.dim, log2_m))
    no_controls = jnp.zeros((batch, 0), dtype)

    def one_randomization(key_):
        scrambled, shift = _scrambled_directions(key_, directions)
        # The net splits into 2^(log2_m - log2_batch) translates (by XOR) of the net of the low directions.
        low = _net(scrambled[:log2_batch]) ^ shift

        def body(acc, chunk):
            u = _to_unit_interval(low ^ _xor_span(scrambled[log2_batch:], chunk), dtype)
            fv = jax.vmap(flat)(jax.vmap(to_draw)(u))
            return merge_moments(acc, chunk_moments(fv, no_controls)), None

        chunks = jnp.arange(m // batch, dtype=jnp.uint32)
        acc, _ = jax.lax.scan(body, Moments.zeros(k, 0, dtype), chunks)
        return acc

    reps = jax.vmap(one_randomization)(jax.random.split(key, num_randomizations))
    means = reps.mean_f  # (R, k)
    mean = jnp.mean(means, axis=0)
    stderr = jnp.std(means, axis=0, ddof=1) / math.sqrt(num_randomizations)
    var_f = jnp.sum(reps.m2_f, axis=0) / jnp.maximum(jnp.sum(reps.count) - 1.0, 1.0)
    info = {"num_nonfinite": jnp.sum(reps.nonfinite), "replicate_means": means}
    n_total = num_randomizations * m
    return Estimate(unravel(mean), unravel(stderr), n_total, unravel(_variance_equivalent_ess(var_f, stderr)), info)


def quasi_monte_carlo(
    f: Callable,
    p: Any,
    key: jax.Array,
    n: int,
    *,
    num_randomizations: int = 16,
    batch_size: int | None = None,
    nonfinite: str = "raise",
) -> Estimate:
    r"""Randomized quasi-Monte Carlo with scrambled Sobol' points.

    ``n`` evaluations are split into ``R = num_randomizations`` independent scrambles of
    the same ``m = n / R`` Sobol' points (``m`` a power of 2), pushed through ``p``'s
    inverse CDF. Each replicate mean :math:`\hat\mu_r` is unbiased; the estimate is their
    average and its standard error is :math:`\mathrm{sd}(\hat\mu_r)/\sqrt R` — honest even
    though the points within a replicate are dependent. For smooth integrands the error
    falls like :math:`n^{-1}` up to log factors, against :math:`n^{-1/2}` for plain MC
    (Owen 2013, ch. 17; L'Ecuyer 2018).

    Example:
      >>> import jax, jax.numpy as jnp, numpyro.distributions as dist
      >>> est = quasi_monte_carlo(jnp.exp, dist.Normal(0.0, 1.0), jax.random.key(0), 2**14)
      >>> bool(est.ess > 10 * est.n)    # worth > 10x as many plain MC draws
      True
    """
    _check_f(f)
    _check_sampler(p)
    n = _check_count("n", n, 2)
    R = _check_count("num_randomizations", num_randomizations, 2)
    _check_nonfinite(nonfinite)
    m, rest = divmod(n, R)
    if rest or m < 1 or m & (m - 1):
        good = R * (1 << max(0, (max(m, 1)).bit_length() - 1))
        raise ValueError(
            f"n: must be num_randomizations ({R}) times a power of 2 so that each scramble is a full "
            f"Sobol' net; got {n}, try n={good}"
        )
    transform, params = _uniform_transform(p)
    log2_batch = _batch(m, batch_size).bit_length() - 1  # chunks of a power of two dividing m
    est = _quasi_monte_carlo(
        params, key, f=f, transform=transform, log2_m=m.bit_length() - 1, num_randomizations=R, log2_batch=log2_batch
    )
    return _apply_nonfinite_policy(est, nonfinite, n)


# ---------------------------------------------------------------------------
# Stratified sampling (proportional allocation over the first uniform coordinate)
# ---------------------------------------------------------------------------


@functools.partial(jax.jit, static_argnames=("f", "transform", "num_strata", "per_stratum", "batch_size"))
def _stratified(p, key, *, f, transform, num_strata, per_stratum, batch_size):
    to_draw = _bind_transform(transform, p)
    flat, unravel, k, dtype = _flat_spec(f, jax.eval_shape(to_draw, jnp.full((transform.dim,), 0.5)))
    K, J = num_strata, per_stratum
    no_controls = functools.partial(jnp.zeros, dtype=dtype)
    eps = jnp.finfo(dtype).eps

    def strata_moments(key_, first, count):
        """Moments over strata first..first+count-1 of (stratum mean, s_k^2/n_k), and over their draws."""
        u = _uniform(key_, (count, J, transform.dim), dtype)
        stratum = (first + jnp.arange(count)).astype(dtype)[:, None]
        u = u.at[:, :, 0].set(jnp.clip((stratum + u[:, :, 0]) / K, eps, 1.0 - eps))
        fv = jax.vmap(jax.vmap(lambda ui: flat(to_draw(ui))))(u)  # (count, J, k)
        per_stratum_stats = jnp.concatenate([jnp.mean(fv, axis=1), jnp.var(fv, axis=1, ddof=1) / J], axis=1)
        return (chunk_moments(per_stratum_stats, no_controls((count, 0))),
                chunk_moments(fv.reshape(count * J, k), no_controls((count * J, 0))))

    strata_per_chunk = max(1, min(K, batch_size // J))
    num_chunks, rest = divmod(K, strata_per_chunk)
    keys = jax.random.split(key, num_chunks + (1 if rest else 0))
    acc = (Moments.zeros(2 * k, 0, dtype), Moments.zeros(k, 0, dtype))

    def merge_both(a, b):
        return merge_moments(a[0], b[0]), merge_moments(a[1], b[1])

    if num_chunks:
        firsts = jnp.arange(num_chunks) * strata_per_chunk

        def body(acc, inp):
            return merge_both(acc, strata_moments(inp[0], inp[1], strata_per_chunk)), None

        acc, _ = jax.lax.scan(body, acc, (keys[:num_chunks], firsts))
    if rest:
        acc = merge_both(acc, strata_moments(keys[-1], num_chunks * strata_per_chunk, rest))
    strata, draws = acc
    # Equal-probability strata: mu = mean_k(stratum means); Var = (1/K^2) sum_k s_k^2 / n_k.
    mean = strata.mean_f[:k]
    stderr = jnp.sqrt(strata.mean_f[k:] / strata.count)
    ess = _variance_equivalent_ess(draws.var_f, stderr)
    info = {"num_nonfinite": draws.nonfinite, "num_strata": K}
    return Estimate(unravel(mean), unravel(stderr), K * J, unravel(ess), info)


def stratified(
    f: Callable,
    p: Any,
    key: jax.Array,
    n: int,
    *,
    num_strata: int | None = None,
    batch_size: int | None = None,
    nonfinite: str = "raise",
) -> Estimate:
    r"""Stratified sampling over the first coordinate, with proportional allocation.

    The first uniform coordinate is split into ``K`` equal strata
    :math:`[k/K, (k+1)/K)` with ``n / K`` draws each (the others stay i.i.d.), then
    pushed through ``p``'s inverse CDF:
    :math:`\hat\mu = \frac1K \sum_k \bar f_k`, :math:`\widehat{\mathrm{Var}} = \frac{1}{K^2}\sum_k s_k^2/n_k`.
    Its variance never exceeds plain MC's (Owen 2013, §8.4). ``num_strata`` defaults to
    ``n // 2`` (two draws per stratum, the fewest that still give a standard error).

    Example:
      >>> import jax, jax.numpy as jnp, numpyro.distributions as dist
      >>> est = stratified(jnp.exp, dist.Normal(0.0, 1.0), jax.random.key(0), 10_000)
      >>> bool(est.ess > 10 * est.n)
      True
    """
    _check_f(f)
    _check_sampler(p)
    n = _check_count("n", n, 4)
    _check_nonfinite(nonfinite)
    K = n // 2 if num_strata is None else _check_count("num_strata", num_strata)
    if n % K or n // K < 2:
        raise ValueError(f"num_strata: n ({n}) must be a multiple of num_strata ({K}) with at least 2 draws per stratum")
    transform, params = _uniform_transform(p)
    batch = _batch(n, batch_size)
    est = _stratified(params, key, f=f, transform=transform, num_strata=K, per_stratum=n // K, batch_size=batch)
    return _apply_nonfinite_policy(est, nonfinite, n)


# ---------------------------------------------------------------------------
# Control variates
# ---------------------------------------------------------------------------


def _solve_coefficients(c_gg, c_gf):
    """beta = C_gg^{-1} C_gf by a ridge-stabilised solve (controls may be nearly collinear)."""
    kg = c_gg.shape[0]
    ridge = 1e-10 * (jnp.trace(c_gg) / kg + 1e-30)
    return jnp.linalg.solve(c_gg + ridge * jnp.eye(kg, dtype=c_gg.dtype), c_gf)


def _residual_var(m: Moments, beta):
    """Per-draw variance of f - beta^T g from the moments of (f, g), divided by count - 1."""
    cross = jnp.einsum("gk,kg->k", beta, m.c_fg)
    quad = jnp.einsum("gk,gh,hk->k", beta, m.c_gg, beta)
    return (m.m2_f - 2.0 * cross + quad) / jnp.maximum(m.count - 1.0, 1.0)


@functools.partial(jax.jit, static_argnames=("f", "gs", "sampler", "n", "batch_size", "unbiased"))
def _control_variates(p, key, g_means, *, f, gs, sampler, n, batch_size, unbiased):
    p = sampler if p is None else p
    one = _one_draw(p, key)
    flat, unravel, k, dtype = _flat_spec(f, one)
    flat_gs = [_flat_f(g, one)[0] for g in gs]
    g_mean = jnp.concatenate([jnp.ravel(jnp.asarray(m, dtype)) for m in g_means])
    kg = g_mean.shape[0]

    def values(key_, num):
        x = _draw(p, key_, num)
        fv = jax.vmap(flat)(x)
        gv = jnp.concatenate([jax.vmap(g)(x) for g in flat_gs], axis=1) - g_mean
        return fv, gv

    if not unbiased:
        m = stream_moments(values, key, n, batch_size, k, kg, dtype)
        beta = _solve_coefficients(m.c_gg, m.c_fg.T)  # (kg, k)
        mean = m.mean_f - beta.T @ m.mean_g
        # Least squares spends kg + 1 degrees of freedom.
        resid = _residual_var(m, beta) * (m.count - 1.0) / jnp.maximum(m.count - kg - 1.0, 1.0)
        stderr = jnp.sqrt(resid / m.count)
        var_f, count, dropped = m.var_f, m.count, m.nonfinite
    else:
        # Two-fold cross-fitting: coefficients from one half are applied to the other,
        # so each half's estimate is exactly unbiased, and so is their average.
        k_a, k_b = jax.random.split(key)
        half = n // 2
        ma = stream_moments(values, k_a, half, min(batch_size, half), k, kg, dtype)
        mb = stream_moments(values, k_b, n - half, min(batch_size, n - half), k, kg, dtype)
        beta_a = _solve_coefficients(ma.c_gg, ma.c_fg.T)
        beta_b = _solve_coefficients(mb.c_gg, mb.c_fg.T)
        est_a = ma.mean_f - beta_b.T @ ma.mean_g
        est_b = mb.mean_f - beta_a.T @ mb.mean_g
        na, nb = ma.count.astype(dtype), mb.count.astype(dtype)
        count = na + nb
        mean = (na * est_a + nb * est_b) / count
        var_a, var_b = _residual_var(ma, beta_b), _residual_var(mb, beta_a)
        stderr = jnp.sqrt((na * var_a + nb * var_b) / count**2)
        both = merge_moments(ma, mb)
        var_f, dropped = both.var_f, both.nonfinite
    ess = _variance_equivalent_ess(var_f, stderr)
    info = {
        "num_nonfinite": dropped,
        "variance_reduction": unravel(var_f / jnp.maximum(stderr**2 * count, jnp.finfo(dtype).tiny)),
    }
    return Estimate(unravel(mean), unravel(stderr), _as_count(count), unravel(ess), info)


def control_variates(
    f: Callable,
    p: Any,
    key: jax.Array,
    n: int,
    controls: Sequence[tuple[Callable, Any]],
    *,
    unbiased: bool = False,
    batch_size: int | None = None,
    nonfinite: str = "raise",
) -> Estimate:
    r"""Control variates with least-squares coefficients.

    With controls :math:`g_j` of known means :math:`\mathbb{E}g_j`,
    :math:`\hat\mu = \bar f - \hat\beta^\top(\bar g - \mathbb{E}g)`, where
    :math:`\hat\beta = \hat\Sigma_{gg}^{-1}\hat\Sigma_{gf}` minimises the residual variance
    (Owen 2013, §8.9). With one control of correlation :math:`\rho` the variance falls by
    :math:`1/(1-\rho^2)`; ``info["variance_reduction"]`` reports the factor achieved.

    Estimating :math:`\beta` on the same draws adds an :math:`O(1/n)` bias; with
    ``unbiased=True`` the draws are split in two halves and each half uses the other's
    coefficients (cross-fitting), which is exactly unbiased.

    Args:
      controls: pairs ``(g, E[g])``; each ``g`` maps one draw to an array (or pytree).

    Example:
      >>> import jax, jax.numpy as jnp, numpyro.distributions as dist
      >>> est = control_variates(jnp.exp, dist.Normal(0.0, 1.0), jax.random.key(0), 10_000,
      ...                        controls=[(lambda x: x, 0.0), (lambda x: x**2, 1.0)])
      >>> bool(est.info["variance_reduction"] > 5)   # Var(exp X) / Var(residual), about 7.9 here
      True
    """
    _check_f(f)
    _check_sampler(p)
    n = _check_count("n", n, 4)
    _check_nonfinite(nonfinite)
    controls = list(controls) if isinstance(controls, (list, tuple)) else None
    if not controls:
        raise ValueError("controls: expected a non-empty list of (g, E[g]) pairs")
    for i, pair in enumerate(controls):
        if not (isinstance(pair, tuple) and len(pair) == 2):
            raise TypeError(f"controls[{i}]: expected a pair (g, E[g]), got {pair!r}")
        _check_f(pair[0], name=f"controls[{i}][0]")
    if unbiased and n < 8:
        raise ValueError(f"n: cross-fitted control variates need at least 8 draws, got {n}")
    batch = _batch(n, batch_size)
    dist_, sampler = _split_sampler(p)
    gs = tuple(g for g, _ in controls)
    g_means = tuple(jnp.asarray(m) for _, m in controls)
    est = _control_variates(dist_, key, g_means, f=f, gs=gs, sampler=sampler, n=n, batch_size=batch, unbiased=unbiased)
    return _apply_nonfinite_policy(est, nonfinite, n, what="f or a control")


# ---------------------------------------------------------------------------
# Importance sampling
# ---------------------------------------------------------------------------


class _ISState(NamedTuple):
    log_max: jax.Array  # running maximum log weight
    s0: jax.Array  # sum w (scaled by exp(-log_max))
    s0_sq: jax.Array  # sum w^2 (scaled by exp(-2 log_max))
    s1: jax.Array  # (k,) sum w (f - c)
    s2: jax.Array  # (k,) sum w^2 (f - c)
    s3: jax.Array  # (k,) sum w^2 (f - c)^2
    tail: jax.Array  # the largest log weights seen so far, for Pareto k-hat
    nonfinite: jax.Array  # draws with a nan/+inf log weight, or a non-finite f where the weight is positive


def _is_chunk(state: _ISState, log_w, fv, centre, tail_size):
    finite_f = jnp.all(jnp.isfinite(fv), axis=1)
    bad_log_w = jnp.isnan(log_w) | (log_w == jnp.inf)
    # A zero weight (log w = -inf) makes f irrelevant there: not a non-finite draw.
    dropped = bad_log_w | (~finite_f & (log_w > -jnp.inf))
    bad = ~finite_f | bad_log_w
    log_w = jnp.where(bad, -jnp.inf, log_w)
    fv = jnp.where(bad[:, None], 0.0, fv) - centre
    new_max = jnp.maximum(state.log_max, jnp.max(log_w))
    safe_max = jnp.where(jnp.isfinite(new_max), new_max, 0.0)
    old_scale = jnp.exp(jnp.where(jnp.isfinite(state.log_max), state.log_max - safe_max, -jnp.inf))
    w = jnp.exp(log_w - safe_max)
    tail = jax.lax.top_k(jnp.concatenate([state.tail, log_w]), tail_size)[0]
    return _ISState(
        new_max,
        state.s0 * old_scale + jnp.sum(w),
        state.s0_sq * old_scale**2 + jnp.sum(w * w),
        state.s1 * old_scale + w @ fv,
        state.s2 * old_scale**2 + (w * w) @ fv,
        state.s3 * old_scale**2 + (w * w) @ (fv * fv),
        tail,
        state.nonfinite + jnp.sum(dropped).astype(jnp.int32),
    )


def _tail_size(n: int) -> int:
    # PSIS fits the generalized Pareto to the largest M weights and looks at the (M+1)-th as cutoff.
    return psis_tail_length(n, 1.0) + 1


@functools.partial(jax.jit, static_argnames=("f", "log_target", "static_proposal", "n", "batch_size", "self_normalized"))
def _importance_sampling(proposal, key, *, f, log_target, static_proposal, n, batch_size, self_normalized):
    proposal = static_proposal if proposal is None else proposal
    flat, unravel, k, dtype = _flat_spec(f, _one_draw(proposal, key))
    tail_size = min(_tail_size(n), n)

    def draw(key_, m):
        x = _draw(proposal, key_, m)
        log_w = jax.vmap(log_target)(x) - proposal.log_prob(x)
        return jnp.asarray(log_w, dtype), jax.vmap(flat)(x)

    # Centre f at a pilot value so the variance sums below do not cancel catastrophically.
    k_pilot, key = jax.random.split(key)
    pilot_lw, pilot_f = draw(k_pilot, min(n, 256))
    pilot_w = jax.nn.softmax(jnp.where(jnp.isfinite(pilot_lw), pilot_lw, -jnp.inf))
    centre = jnp.where(jnp.all(jnp.isfinite(pilot_w)), jnp.nan_to_num(pilot_w @ jnp.nan_to_num(pilot_f)), 0.0)
    centre = jnp.where(jnp.isfinite(centre), centre, 0.0)

    z = jnp.zeros((k,), dtype)
    state = _ISState(jnp.array(-jnp.inf, dtype), jnp.zeros((), dtype), jnp.zeros((), dtype), z, z, z,
                     jnp.full((tail_size,), -jnp.inf, dtype), jnp.zeros((), jnp.int32))
    num_full, rest = divmod(n, batch_size)
    keys = jax.random.split(key, num_full + (1 if rest else 0))
    if num_full:
        state, _ = jax.lax.scan(lambda s, kk: (_is_chunk(s, *draw(kk, batch_size), centre, tail_size), None),
                                state, keys[:num_full])
    if rest:
        state = _is_chunk(state, *draw(keys[-1], rest), centre, tail_size)

    scale = jnp.exp(state.log_max)
    kish = state.s0**2 / jnp.maximum(state.s0_sq, jnp.finfo(dtype).tiny)
    if self_normalized:
        # mu = sum w f / sum w; delta-method variance sum w^2 (f - mu)^2 / (sum w)^2.
        shift = state.s1 / state.s0  # mu - c
        mean = centre + shift
        var_num = state.s3 - 2.0 * shift * state.s2 + shift**2 * state.s0_sq
        stderr = jnp.sqrt(jnp.maximum(var_num, 0.0)) / state.s0
        ess = jnp.broadcast_to(kish, (k,))
    else:
        # Normalised target: mu = (1/n) sum w f, an ordinary mean of the draws w f.
        mean_wf = (state.s1 * scale + centre * state.s0 * scale) / n
        second = (state.s3 + 2.0 * centre * state.s2 + centre**2 * state.s0_sq) * scale**2 / n
        var = jnp.maximum(second - mean_wf**2, 0.0) * n / (n - 1.0)
        mean, stderr = mean_wf, jnp.sqrt(var / n)
        ess = jnp.broadcast_to(kish, (k,))
    info = {
        "num_nonfinite": state.nonfinite,
        "weight_ess": kish,
        "log_max_weight": state.log_max,
        "largest_log_weights": state.tail,
        "log_mean_weight": state.log_max + jnp.log(state.s0 / n),
    }
    return Estimate(unravel(mean), unravel(stderr), n, unravel(ess), info)


def importance_sampling(
    f: Callable,
    log_target: Callable,
    proposal: Any,
    key: jax.Array,
    n: int,
    *,
    self_normalized: bool = True,
    batch_size: int | None = None,
    nonfinite: str = "raise",
) -> Estimate:
    r"""Importance sampling of :math:`\mathbb{E}_\pi[f]` with draws from ``proposal`` q.

    Weights :math:`w_i = \pi(X_i)/q(X_i)`, :math:`X_i \sim q`, kept in log space.

    * ``self_normalized=True`` (default; ``log_target`` may be unnormalised):
      :math:`\hat\mu = \sum w_i f_i / \sum w_i`, standard error by the delta method,
      :math:`\widehat{\mathrm{se}}^2 = \sum w_i^2 (f_i - \hat\mu)^2 / (\sum w_i)^2`.
    * ``self_normalized=False`` (``log_target`` must be normalised):
      :math:`\hat\mu = \frac1n\sum w_i f_i`, unbiased.

    ``ess`` is Kish's importance-weight ESS :math:`(\sum w)^2/\sum w^2`;
    ``info["pareto_k"]`` is the PSIS :math:`\hat k` of the weights (Vehtari et al. 2024):
    above 0.7 the estimate is not to be trusted. Only the largest weights are kept
    while streaming, so memory stays O(batch_size + sqrt n).

    Example:
      >>> import jax, jax.numpy as jnp, numpyro.distributions as dist
      >>> target = dist.Normal(1.0, 1.0)
      >>> est = importance_sampling(lambda x: x, target.log_prob, dist.Normal(0.0, 2.0),
      ...                           jax.random.key(0), 20_000)
      >>> abs(float(est.mean) - 1.0) < 4 * float(est.stderr)
      True
    """
    _check_f(f)
    _check_f(log_target, name="log_target")
    if not (hasattr(proposal, "sample") and hasattr(proposal, "log_prob")):
        raise TypeError(
            "proposal: expected a distribution with `sample(key, shape)` and `log_prob(x)`, "
            f"got {type(proposal).__name__}"
        )
    n = _check_count("n", n, 2)
    _check_nonfinite(nonfinite)
    batch = _batch(n, batch_size)
    dynamic, static = _split_sampler(proposal)
    est = _importance_sampling(dynamic, key, f=f, log_target=log_target, static_proposal=static, n=n,
                               batch_size=batch, self_normalized=self_normalized)
    if not _is_traced(est.mean):
        if not np.isfinite(np.asarray(est.info["log_max_weight"])):
            raise ValueError(
                "proposal: every importance weight is zero (log weight -inf or nan): the proposal puts no "
                "mass where the target has mass; widen the proposal or check log_target"
            )
    est = _apply_nonfinite_policy(est, nonfinite, n, what="f or log_target")
    est.info["pareto_k"] = pareto_khat_from_tail(est.info["largest_log_weights"], n)
    return est


# ---------------------------------------------------------------------------
# Sequential estimation to a target error
# ---------------------------------------------------------------------------


def sequential(
    estimator: Callable[[jax.Array, int], Estimate],
    key: jax.Array,
    *,
    chunk_size: int,
    target_stderr: float | None = None,
    target_rtol: float | None = None,
    max_n: int,
) -> Estimate:
    r"""Draw chunks until the standard error reaches a target (absolute or relative) or ``max_n``.

    ``estimator(key, chunk_size)`` is called on fresh keys (e.g.
    ``functools.partial(monte_carlo, f, p)`` — note ulam's key-then-n order) and the
    chunks are pooled (:func:`ulam.pool`). The loop stops at the first chunk where
    every coordinate has :math:`\widehat{\mathrm{se}} \le` ``target_stderr`` or
    :math:`\widehat{\mathrm{se}} \le` ``target_rtol`` :math:`\cdot|\hat\mu|`. The chunk
    size is fixed, so the estimator compiles once. ``info["converged"]`` says whether a
    target was met. (Stopping on an estimated error adds a small bias of order
    :math:`1/n`; use a large ``chunk_size`` when that matters.)

    Example:
      >>> import functools, jax, jax.numpy as jnp, numpyro.distributions as dist
      >>> est = sequential(functools.partial(monte_carlo, jnp.exp, dist.Normal(0.0, 1.0)),
      ...                  jax.random.key(0), chunk_size=10_000, target_stderr=0.01, max_n=10**7)
      >>> bool(est.info["converged"] and est.stderr <= 0.01)
      True
    """
    if not callable(estimator):
        raise TypeError(f"estimator: expected a function (key, n) -> Estimate, got {type(estimator).__name__}")
    chunk_size = _check_count("chunk_size", chunk_size, 2)
    max_n = _check_count("max_n", max_n, chunk_size)
    if target_stderr is None and target_rtol is None:
        raise ValueError("target_stderr, target_rtol: give at least one stopping target")
    for name, value in (("target_stderr", target_stderr), ("target_rtol", target_rtol)):
        if value is not None and not (np.isfinite(value) and value > 0):
            raise ValueError(f"{name}: must be a positive number, got {value}")
    chunks: list[Estimate] = []
    total = 0
    converged = False
    while total + chunk_size <= max_n:
        key, sub = jax.random.split(key)
        chunks.append(estimator(sub, chunk_size))
        total += chunk_size
        est = pool(chunks)
        se = np.concatenate([np.ravel(np.asarray(s)) for s in jax.tree_util.tree_leaves(est.stderr)])
        mu = np.concatenate([np.ravel(np.asarray(m)) for m in jax.tree_util.tree_leaves(est.mean)])
        ok = np.zeros_like(se, dtype=bool)
        if target_stderr is not None:
            ok |= se <= target_stderr
        if target_rtol is not None:
            ok |= se <= target_rtol * np.abs(mu)
        if np.all(ok):
            converged = True
            break
    est = pool(chunks)
    est.info = {"converged": converged, "num_chunks": len(chunks)}
    return est
