r"""Plain Monte Carlo: the sample mean of ``f`` over i.i.d. draws of ``p`` (:func:`monte_carlo`)."""

from __future__ import annotations

from typing import Any, Callable

import jax
import jax.numpy as jnp

from ulam import jit_cache
from ulam.deprecation import renamed_keywords
from ulam.estimate import Estimate
from ulam.integrate.args import (
    apply_nonfinite_policy, check_estimator_args, draw_from, flat_spec, iid_estimate, one_draw,
    resolve_batch_size, split_sampler,
)
from ulam.streaming import stream_moments

__all__ = ["monte_carlo"]


@jit_cache.jit(static_argnames=("f", "sampler", "n", "batch_size"))
def _monte_carlo(p, key, *, f, sampler, n, batch_size):
    p = sampler if p is None else p
    flat, unravel, kf, dtype = flat_spec(f, one_draw(p, key))

    def values(k, m):
        fv = jax.vmap(flat)(draw_from(p, k, m))
        return fv, jnp.zeros((m, 0), dtype)

    moments = stream_moments(values, key, n, batch_size, kf, 0, dtype)
    return iid_estimate(moments, unravel)



@renamed_keywords(n="num_samples")
def monte_carlo(
    f: Callable, p: Any, key: jax.Array, num_samples: int, *, batch_size: int | None = None, nonfinite: str = "raise"
) -> Estimate:
    r"""Plain Monte Carlo: :math:`\hat\mu = \frac1n\sum_{i=1}^n f(X_i)`, :math:`X_i \sim p` i.i.d.

    The standard error is :math:`s/\sqrt n` with :math:`s^2` the unbiased sample variance.

    Args:
      f: function of one draw, returning an array or a pytree of arrays.
      p: distribution with ``sample(key, shape)``, or sampling function ``(key, num) -> draws``.
      key: a ``jax.random`` key.
      num_samples: number of draws (``n`` in the formulas; ``n=`` is a deprecated alias).
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
    n = check_estimator_args(f, p, key, num_samples, 2, nonfinite)
    batch = resolve_batch_size(n, batch_size)
    dist_, sampler = split_sampler(p)
    est = _monte_carlo(dist_, key, f=f, sampler=sampler, n=n, batch_size=batch)
    return apply_nonfinite_policy(est, nonfinite, n)

