r"""Stratified sampling over the first uniform coordinate, proportional allocation (:func:`stratified`)."""

from __future__ import annotations

import functools
from typing import Any, Callable

import jax
import jax.numpy as jnp

from ulam import jit_cache
from ulam.deprecation import renamed_keywords
from ulam.estimate import Estimate
from ulam.integrate.args import (
    apply_nonfinite_policy, check_count, check_estimator_args, flat_spec, resolve_batch_size,
    variance_equivalent_ess,
)
from ulam.integrate.uniform import bind_transform, open_uniform, uniform_transform
from ulam.streaming import Moments, chunk_moments, merge_moments

__all__ = ["stratified"]


@jit_cache.jit(static_argnames=("f", "transform", "num_strata", "per_stratum", "batch_size"))
def _stratified(p, key, *, f, transform, num_strata, per_stratum, batch_size):
    to_draw = bind_transform(transform, p)
    flat, unravel, k, dtype = flat_spec(f, jax.eval_shape(to_draw, jnp.full((transform.dim,), 0.5)))
    K, J = num_strata, per_stratum
    no_controls = functools.partial(jnp.zeros, dtype=dtype)
    eps = jnp.finfo(dtype).eps

    def strata_moments(key_, first, count):
        """Moments over strata first..first+count-1 of (stratum mean, s_k^2/n_k), and over their draws."""
        u = open_uniform(key_, (count, J, transform.dim), dtype)
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
    ess = variance_equivalent_ess(draws.var_f, stderr)
    info = {"num_nonfinite": draws.nonfinite, "num_strata": K}
    return Estimate(unravel(mean), unravel(stderr), K * J, unravel(ess), info)


@renamed_keywords(n="num_samples")
def stratified(
    f: Callable,
    p: Any,
    key: jax.Array,
    num_samples: int,
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
    n = check_estimator_args(f, p, key, num_samples, 4, nonfinite)
    K = n // 2 if num_strata is None else check_count("num_strata", num_strata)
    if n % K or n // K < 2:
        raise ValueError(f"num_strata: num_samples ({n}) must be a multiple of num_strata ({K}) with at least 2 draws per stratum")
    transform, params = uniform_transform(p)
    batch = resolve_batch_size(n, batch_size)
    est = _stratified(params, key, f=f, transform=transform, num_strata=K, per_stratum=n // K, batch_size=batch)
    return apply_nonfinite_policy(est, nonfinite, n)

