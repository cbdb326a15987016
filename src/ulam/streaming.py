r"""The streaming estimation engine: running moments merged exactly, chunk by chunk, in bounded memory.

One implementation of running moments for the whole library, for plain and for WEIGHTED draws:
:class:`Moments` holds the count, means, sums of squared deviations and co-moments of draws
``(f, g)`` (``g`` optional control columns), :func:`chunk_moments` computes them for one chunk
and :func:`merge_moments` merges two disjoint sets of draws exactly (Chan, Golub & LeVeque 1979;
West 1979 for the weighted merge). On top of them:

* :func:`stream_moments` -- the low-level loop ``values(key, m) -> (f (m, kf), g (m, kg))`` over
  ``n`` draws, ``batch_size`` at a time (what :mod:`ulam.integrate` runs on);
* :func:`stream_estimate` -- the public driver: ``values_fn(key, batch_index) -> (batch_size, k)``
  (optionally with weights), a fixed budget ``num_samples`` or a stop-at-target standard error
  with a cap ``max_samples``, returning an :class:`~ulam.Estimate`;
* :func:`moments_estimate` -- the :class:`~ulam.Estimate` of a :class:`Moments`.

Memory is O(batch_size * k) whatever the number of draws. The module sits below every engine
(it imports only :mod:`ulam.estimate`, :mod:`ulam.checks` and Kish's ESS from :mod:`ulam.diagnostics`) so that integration, walk-on-spheres,
sliced Wasserstein, valuation and MCMC streaming statistics can all share it.

Example:
  >>> import jax, jax.numpy as jnp
  >>> from ulam.streaming import stream_estimate
  >>> def values_fn(key, batch_index):   # 1000 draws of (X, X^2), X ~ N(0, 1)
  ...     x = jax.random.normal(key, (1000,))
  ...     return jnp.stack([x, x**2], axis=1)
  >>> est = stream_estimate(values_fn, jax.random.key(0), 50_000, batch_size=1000)
  >>> est.n, est.mean.shape
  (50000, (2,))
  >>> bool(abs(float(est.mean[1]) - 1.0) < 4 * float(est.stderr[1]))
  True
"""

from __future__ import annotations

import functools
from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from ulam import checks, jit_cache
from ulam.diagnostics.weights import kish_ess_from_sums
from ulam.estimate import Estimate

__all__ = ["Moments", "chunk_moments", "merge_moments", "stream_moments", "moments_estimate", "stream_estimate"]


class Moments(NamedTuple):
    r"""Running moments of draws ``(f, g)``, ``f`` in R^kf, ``g`` in R^kg, plain or weighted.

    Plain draws: ``count`` draws, means, :math:`M_2 = \sum_i (f_i - \bar f)^2` and the
    co-moments :math:`\sum_i (f_i - \bar f)(g_i - \bar g)^\top`, :math:`\sum_i (g_i-\bar g)(g_i-\bar g)^\top`.
    Weighted draws (``sum_w`` is not None): the same with weights :math:`w_i \ge 0`
    (weighted means, :math:`M_2 = \sum_i w_i (f_i - \bar f_w)^2`, ...), plus
    :math:`W = \sum w_i`, :math:`W_2 = \sum w_i^2`, :math:`r = \sum w_i^2 (f_i - \bar f_w)` and
    :math:`q = \sum w_i^2 (f_i - \bar f_w)^2`, from which the self-normalised mean's delta-method
    standard error :math:`\sqrt q / W` and Kish's ESS :math:`W^2 / W_2` follow.

    Example:
      >>> import jax.numpy as jnp
      >>> m = chunk_moments(jnp.array([[1.0], [2.0], [3.0]]), jnp.zeros((3, 0)))
      >>> int(m.count), float(m.mean_f[0]), float(m.var_f[0])
      (3, 2.0, 1.0)
    """

    count: jax.Array  # number of finite draws (int32: exact, unlike a float32 running sum past 2^24)
    mean_f: jax.Array  # (kf,)
    mean_g: jax.Array  # (kg,)
    m2_f: jax.Array  # (kf,)   sum of (weighted) squared deviations of f
    c_fg: jax.Array  # (kf, kg) co-moment of f and g
    c_gg: jax.Array  # (kg, kg) co-moment of g
    nonfinite: jax.Array  # number of draws dropped for a non-finite value
    sum_w: jax.Array | None = None  # weighted draws only: sum of weights
    sum_w2: jax.Array | None = None  # sum of squared weights
    r_f: jax.Array | None = None  # (kf,) sum w^2 (f - mean)
    q_f: jax.Array | None = None  # (kf,) sum w^2 (f - mean)^2

    @staticmethod
    def zeros(kf: int, kg: int, dtype, weighted: bool = False) -> "Moments":
        z = functools.partial(jnp.zeros, dtype=dtype)
        zero = jnp.zeros((), jnp.int32)
        if weighted:
            return Moments(zero, z((kf,)), z((kg,)), z((kf,)), z((kf, kg)), z((kg, kg)), zero,
                           z(()), z(()), z((kf,)), z((kf,)))
        return Moments(zero, z((kf,)), z((kg,)), z((kf,)), z((kf, kg)), z((kg, kg)), zero)

    @property
    def weighted(self) -> bool:
        return self.sum_w is not None

    @property
    def var_f(self):
        """Per-draw variance of ``f``: :math:`M_2/(n-1)` (plain), :math:`M_2/W` (weighted)."""
        if self.weighted:
            return self.m2_f / jnp.where(self.sum_w > 0, self.sum_w, 1.0)
        return self.m2_f / jnp.maximum(self.count.astype(self.m2_f.dtype) - 1.0, 1.0)

    @property
    def stderr_f(self):
        r"""Standard error of the mean of ``f``: :math:`s/\sqrt n` (plain), :math:`\sqrt q/W` (weighted)."""
        if self.weighted:
            return jnp.sqrt(jnp.maximum(self.q_f, 0.0)) / jnp.where(self.sum_w > 0, self.sum_w, 1.0)
        return jnp.sqrt(self.var_f / jnp.maximum(self.count.astype(self.var_f.dtype), 1.0))

    @property
    def kish_ess(self):
        r"""Kish's effective sample size :math:`(\sum w)^2/\sum w^2` (the count for plain draws)."""
        if self.weighted:
            return kish_ess_from_sums(self.sum_w, self.sum_w2)
        return self.count.astype(self.mean_f.dtype)


def chunk_moments(
    fv: jax.Array,
    gv: jax.Array,
    shift: tuple[jax.Array, jax.Array] | None = None,
    *,
    weights: jax.Array | None = None,
    valid: jax.Array | None = None,
) -> Moments:
    r"""Moments of one chunk of draws ``fv (m, kf)``, ``gv (m, kg)``; draws with any non-finite value are dropped.

    Without ``shift`` the chunk is centred on its own mean (two passes over the chunk). With
    ``shift = (c_f, c_g)`` (plain draws only) it takes one pass of shifted sums, e.g. for ``f``
    :math:`S_1 = \sum_i (f_i - c_f)`, :math:`S_2 = \sum_i (f_i - c_f)^2`, then
    :math:`\bar f = c_f + S_1/m` and :math:`M_2 = S_2 - S_1^2/m`: the sums fuse with the
    sampler into one loop and the chunk is never stored (the ``n = 10^7`` plain-MC benchmark
    runs ~20 % faster). The subtraction loses precision only when the shift is many standard
    deviations from the chunk's mean, so the shift must be a good guess of the mean
    (:func:`stream_moments` passes the running mean of the chunks before).

    ``weights (m,)``: non-negative weights make weighted moments (a non-finite weight drops
    the draw). ``valid (m,)``: a boolean mask of the rows that count at all (padding rows are
    neither draws nor non-finite draws).

    Example:
      >>> import jax.numpy as jnp
      >>> m = chunk_moments(jnp.array([[0.0], [1.0]]), jnp.zeros((2, 0)), weights=jnp.array([1.0, 3.0]))
      >>> float(m.mean_f[0]), round(float(m.kish_ess), 4)
      (0.75, 1.6)
    """
    finite = jnp.all(jnp.isfinite(fv), axis=1) & jnp.all(jnp.isfinite(gv), axis=1)
    if weights is not None:
        finite = finite & jnp.isfinite(weights)
    rows = fv.shape[0] if valid is None else jnp.sum(valid)
    if valid is not None:
        finite = finite & valid
    nonfinite = (rows - jnp.sum(finite)).astype(jnp.int32)
    count = jnp.sum(finite).astype(jnp.int32)
    if weights is not None:
        return _weighted_chunk(fv, gv, jnp.where(finite, weights, 0.0).astype(fv.dtype), finite, count, nonfinite)
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


def _weighted_chunk(fv, gv, w, finite, count, nonfinite) -> Moments:
    fv = jnp.where(finite[:, None], fv, 0.0)
    gv = jnp.where(finite[:, None], gv, 0.0)
    sum_w = jnp.sum(w)
    safe = jnp.where(sum_w > 0, sum_w, 1.0)
    mean_f = (w @ fv) / safe
    mean_g = (w @ gv) / safe
    df = jnp.where(finite[:, None], fv - mean_f, 0.0)
    dg = jnp.where(finite[:, None], gv - mean_g, 0.0)
    wdf = w[:, None] * df
    w2 = w * w
    return Moments(count, mean_f, mean_g, jnp.sum(wdf * df, axis=0), wdf.T @ dg, (w[:, None] * dg).T @ dg, nonfinite,
                   sum_w, jnp.sum(w2), w2 @ df, w2 @ (df * df))


def merge_moments(a: Moments, b: Moments) -> Moments:
    """Exact moments of the union of two disjoint sets of draws (both plain, or both weighted).

    Example:
      >>> import jax.numpy as jnp
      >>> x = jnp.arange(10.0)[:, None]
      >>> none = jnp.zeros((10, 0))
      >>> both = merge_moments(chunk_moments(x[:3], none[:3]), chunk_moments(x[3:], none[3:]))
      >>> float(both.mean_f[0]), float(both.m2_f[0])
      (4.5, 82.5)
    """
    n = a.count + b.count
    dtype = a.mean_f.dtype
    if a.weighted:
        na, nb = a.sum_w, b.sum_w
        safe = jnp.where(na + nb > 0, na + nb, 1.0)
    else:
        na, nb = a.count.astype(dtype), b.count.astype(dtype)
        safe = jnp.maximum(na + nb, 1.0)
    df = b.mean_f - a.mean_f
    dg = b.mean_g - a.mean_g
    weight = na * nb / safe
    merged = Moments(
        n,
        a.mean_f + df * (nb / safe),
        a.mean_g + dg * (nb / safe),
        a.m2_f + b.m2_f + df * df * weight,
        a.c_fg + b.c_fg + jnp.outer(df, dg) * weight,
        a.c_gg + b.c_gg + jnp.outer(dg, dg) * weight,
        a.nonfinite + b.nonfinite,
    )
    if not a.weighted:
        return merged
    # Re-centre the w^2 sums of each part on the merged mean: da = mean_a - mean, db = mean_b - mean.
    da, db = -df * (nb / safe), df * (na / safe)
    r = a.r_f + a.sum_w2 * da + b.r_f + b.sum_w2 * db
    q = a.q_f + 2.0 * da * a.r_f + da * da * a.sum_w2 + b.q_f + 2.0 * db * b.r_f + db * db * b.sum_w2
    return merged._replace(sum_w=a.sum_w + b.sum_w, sum_w2=a.sum_w2 + b.sum_w2, r_f=r, q_f=q)


def stream_moments(values: Callable, key: jax.Array, num_samples: int, batch_size: int, kf: int, kg: int, dtype) -> Moments:
    """Moments of ``num_samples`` (n) draws of ``values(key, m) -> (fv (m, kf), gv (m, kg))``, ``batch_size`` at a time.

    Full chunks run in a ``lax.scan``; a remainder chunk, if any, runs after it. (Padding
    the last chunk instead would compile the sampler once, but the mask it needs made
    every chunk about 1.4x slower on CPU, so the remainder is kept apart.)

    Inside the scan each chunk takes one pass of sums shifted by the running mean of the
    chunks before it (see :func:`chunk_moments`); the first chunk is shifted by one pilot
    draw from a key of its own, which sets only the rounding, never the estimate. Chunk ``i``
    draws with ``jax.random.split(key, num_chunks)[i]``.

    Example:
      >>> import jax, jax.numpy as jnp
      >>> def values(key, m):   # m draws of f = X ~ N(0, 1), no controls
      ...     return jax.random.normal(key, (m, 1)), jnp.zeros((m, 0))
      >>> m = stream_moments(values, jax.random.key(0), 10_000, 4096, 1, 0, jnp.float32)
      >>> int(m.count), bool(abs(float(m.mean_f[0])) < 0.04)
      (10000, True)
    """
    n = num_samples
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


def moments_estimate(m: Moments, unravel: Callable | None = None) -> Estimate:
    r"""The :class:`~ulam.Estimate` of the mean of ``f`` from its moments.

    Plain draws: mean :math:`\bar f`, standard error :math:`s/\sqrt n`, ``ess = n``. Weighted
    draws: the self-normalised mean :math:`\sum w f/\sum w`, its delta-method standard error
    :math:`\sqrt{\sum w^2 (f - \bar f_w)^2}/\sum w` and Kish's ESS :math:`(\sum w)^2/\sum w^2`.
    ``n`` is the number of finite draws; ``info["num_nonfinite"]`` the number dropped.
    ``unravel`` maps the flat ``(kf,)`` vectors back to a structure (default: unchanged).

    Example:
      >>> import jax.numpy as jnp
      >>> est = moments_estimate(chunk_moments(jnp.array([[1.0], [2.0], [3.0]]), jnp.zeros((3, 0))))
      >>> est.mean.tolist(), int(est.n)
      ([2.0], 3)
    """
    unravel = (lambda v: v) if unravel is None else unravel
    count = m.count
    if m.weighted:
        ess = jnp.broadcast_to(m.kish_ess, m.mean_f.shape)
        info = {"num_nonfinite": m.nonfinite, "sum_weights": m.sum_w}
        return Estimate(unravel(m.mean_f), unravel(m.stderr_f), count.astype(jnp.int32), unravel(ess), info)
    stderr = jnp.sqrt(m.var_f / jnp.maximum(count.astype(m.var_f.dtype), 1.0))
    ess = jnp.broadcast_to(count, m.mean_f.shape).astype(m.mean_f.dtype)
    count = count.astype(jnp.int32) if isinstance(count, jax.Array) else count
    return Estimate(unravel(m.mean_f), unravel(stderr), count, unravel(ess), {"num_nonfinite": m.nonfinite})


def _split_output(out, weighted: bool, batch_size: int, dtype):
    if weighted:
        if not (isinstance(out, tuple) and len(out) == 2):
            raise TypeError(checks.message("values_fn", "a pair (values (batch_size, k), weights (batch_size,)) "
                                           "when weighted=True", type(out).__name__))
        values, weights = out
        if jnp.shape(weights) != (batch_size,):
            raise ValueError(checks.message("values_fn", f"weights of shape ({batch_size},)",
                                            f"shape {jnp.shape(weights)}"))
        weights = jnp.asarray(weights, dtype)
    else:
        values, weights = out, None
    if not hasattr(values, "dtype") or not (jnp.issubdtype(values.dtype, jnp.number)
                                            or jnp.issubdtype(values.dtype, jnp.bool_)):
        raise TypeError(checks.message("values_fn", "an array of numbers", type(values).__name__))
    values = jnp.asarray(values, dtype)
    if values.ndim not in (1, 2) or values.shape[0] != batch_size:
        raise ValueError(checks.message("values_fn", f"values of shape ({batch_size},) or ({batch_size}, k)",
                                        f"shape {values.shape}", "return one row per draw of the batch"))
    return values, weights


def _run(key, *, values_fn, num_samples, batch_size, weighted, dtype, target_stderr, target_rtol):
    scalar = jax.eval_shape(lambda k: _split_output(values_fn(k, 0), weighted, batch_size, dtype)[0], key).ndim == 1

    def chunk(i, shift=None, rows=None):
        values, weights = _split_output(values_fn(jax.random.fold_in(key, i), i), weighted, batch_size, dtype)
        values = values[:, None] if scalar else values
        valid = None if rows is None else jnp.arange(batch_size) < rows
        return chunk_moments(values, jnp.zeros((batch_size, 0), dtype), None if weighted else shift,
                             weights=weights, valid=valid)

    num_chunks = -(-num_samples // batch_size)
    rest = num_samples - (num_chunks - 1) * batch_size
    first = chunk(0, rows=None if num_chunks > 1 or rest == batch_size else rest)
    stopping = target_stderr is not None or target_rtol is not None

    def shift_of(acc):
        return acc.mean_f, acc.mean_g

    if not stopping:
        acc = first
        num_full = num_chunks - 1 if rest < batch_size else num_chunks
        if num_full > 1:
            acc, _ = jax.lax.scan(lambda a, i: (merge_moments(a, chunk(i, shift_of(a))), None), acc,
                                  jnp.arange(1, num_full))
        if num_chunks > 1 and rest < batch_size:
            acc = merge_moments(acc, chunk(num_chunks - 1, rows=rest))
        used = jnp.asarray(num_chunks)
        converged = None
    else:

        def met(acc):
            se, mean = acc.stderr_f, acc.mean_f
            ok = jnp.zeros(se.shape, bool)
            if target_stderr is not None:
                ok = ok | (se <= target_stderr)
            if target_rtol is not None:
                ok = ok | (se <= target_rtol * jnp.abs(mean))
            return jnp.all(ok) & (acc.count >= 2)

        def cond(state):
            i, acc = state
            return (i < num_chunks) & ~met(acc)

        def body(state):
            i, acc = state
            rows = jnp.minimum(batch_size, num_samples - i * batch_size)
            return i + 1, merge_moments(acc, chunk(i, shift_of(acc), rows=rows))

        used, acc = jax.lax.while_loop(cond, body, (jnp.asarray(1), first))
        converged = met(acc)
    est = moments_estimate(acc, (lambda v: v[0]) if scalar else None)
    est.info["num_batches"] = used
    if converged is not None:
        est.info["converged"] = converged
    return est


_run_jit = jit_cache.jit(_run, static_argnames=("values_fn", "num_samples", "batch_size", "weighted", "dtype",
                                          "target_stderr", "target_rtol"))


def stream_estimate(
    values_fn: Callable,
    key: jax.Array,
    num_samples: int | None = None,
    *,
    batch_size: int,
    weighted: bool = False,
    dtype=None,
    target_stderr: float | None = None,
    target_rtol: float | None = None,
    max_samples: int | None = None,
    nonfinite: str = "raise",
) -> Estimate:
    r"""The mean of ``values_fn``'s rows over ``num_samples`` draws, streamed in batches: one compiled loop.

    ``values_fn(key, batch_index)`` returns the ``batch_size`` draws of batch ``batch_index`` as an
    array ``(batch_size, k)`` (or ``(batch_size,)`` for a scalar quantity), computed from the key
    ``jax.random.fold_in(key, batch_index)`` it is given; with ``weighted=True`` it returns
    ``(values, weights)`` with ``weights (batch_size,)`` non-negative, and the result is the
    self-normalised weighted mean (standard error by the delta method, ``ess`` Kish's
    :math:`(\sum w)^2/\sum w^2`). Batches are merged into running moments exactly
    (Chan, Golub & LeVeque 1979), so memory is O(batch_size * k) for any number of draws.

    Budgets: either ``num_samples`` (exact: when it is not a multiple of ``batch_size`` the
    last batch is evaluated whole and only its first rows count), or a stopping rule --
    ``target_stderr`` (absolute) and/or ``target_rtol`` (relative to ``|mean|``), checked after
    every batch, every coordinate -- with the cap ``max_samples``; ``n`` reports the
    draws actually used and ``info["converged"]`` whether the target was met. (Stopping on an
    estimated error adds a bias of order 1/n; prefer large batches when that matters.)

    Rows with a non-finite value (or weight) raise with ``nonfinite="raise"`` (default) or are
    dropped and counted in ``info["num_nonfinite"]`` with ``"drop"``. The loop is jit-compiled
    once per ``(values_fn, num_samples, batch_size, ...)``: pass the same function object to
    reuse the compiled program.

    Example:
      >>> import jax, jax.numpy as jnp
      >>> def values_fn(key, batch_index):
      ...     return jnp.exp(jax.random.normal(key, (4096,)))
      >>> est = stream_estimate(values_fn, jax.random.key(0), batch_size=4096,
      ...                       target_stderr=0.01, max_samples=10**6)
      >>> bool(est.info["converged"]) and float(est.stderr) <= 0.01
      True
    """
    checks.function("values_fn", values_fn, "a function (key, batch_index) -> (batch_size, k) array")
    checks.prng_key(key)
    batch_size = checks.count("batch_size", batch_size)
    checks.one_of("nonfinite", nonfinite, ("raise", "drop"))
    stopping = target_stderr is not None or target_rtol is not None
    if stopping:
        if num_samples is not None:
            raise ValueError(checks.message("num_samples", "None when a stopping target is given", num_samples,
                                            "give the cap as max_samples"))
        if max_samples is None:
            raise ValueError(checks.message("max_samples", "a cap on the draws with a stopping target", None))
        total = checks.count("max_samples", max_samples, 2)
        for name, value in (("target_stderr", target_stderr), ("target_rtol", target_rtol)):
            if value is not None:
                checks.positive(name, value)
    else:
        if num_samples is None:
            raise ValueError(checks.message("num_samples", "a number of draws", None,
                                            "or give target_stderr/target_rtol with max_samples"))
        if max_samples is not None:
            raise ValueError(checks.message("max_samples", "None without a stopping target", max_samples,
                                            "use num_samples for an exact budget"))
        total = checks.count("num_samples", num_samples, 2)
    dtype = jnp.dtype(jnp.result_type(float) if dtype is None else dtype)
    est = _run_jit(key, values_fn=values_fn, num_samples=total, batch_size=batch_size, weighted=bool(weighted),
                   dtype=dtype, target_stderr=None if target_stderr is None else float(target_stderr),
                   target_rtol=None if target_rtol is None else float(target_rtol))
    if checks.is_concrete(est.mean):
        dropped = int(np.asarray(est.info["num_nonfinite"]))
        if dropped and nonfinite == "raise":
            raise ValueError(checks.message(
                "values_fn", "finite values", f"{dropped} draws with a nan or inf value or weight",
                "fix the function, or pass nonfinite='drop' to average the finite draws only"))
        if int(np.asarray(est.n)) == 0:
            raise ValueError(checks.message("values_fn", "at least one finite draw", "none"))
        est.n = int(np.asarray(est.n))
        if "converged" in est.info:
            est.info["converged"] = bool(est.info["converged"])
    return est
