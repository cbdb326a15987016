r"""Elliptical slice sampling for Gaussian priors (Murray, Adams & MacKay 2010, AISTATS).

Target :math:`\pi(x) \propto N(x;\mu,\Sigma)\,L(x)`. One step draws
:math:`\nu\sim N(0,\Sigma)` and a level :math:`\log y = \log L(x) + \log u`, then searches the
ellipse :math:`x(\theta) = \mu + (x-\mu)\cos\theta + \nu\sin\theta` by shrinking a bracket on
:math:`\theta` until :math:`\log L(x(\theta)) > \log y`. Every step moves (no rejections) and
needs no tuning; the kernel leaves :math:`\pi` invariant.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax.flatten_util import ravel_pytree

from ulam.mcmc.base import Kernel, check_position, check_initial_logdensity

__all__ = ["EllipticalSliceState", "EllipticalSliceInfo", "elliptical_slice_init", "elliptical_slice_step", "elliptical_slice_kernel"]


class EllipticalSliceState(NamedTuple):
    position: object
    loglikelihood: jax.Array


class EllipticalSliceInfo(NamedTuple):
    acceptance_rate: jax.Array
    is_divergent: jax.Array
    energy: jax.Array
    num_grad_evals: jax.Array
    num_likelihood_evals: jax.Array


def elliptical_slice_init(position, loglikelihood_fn) -> EllipticalSliceState:
    """Start at ``position``; a non-finite log-likelihood there is a ``ValueError``."""
    check_position(position)
    ll = loglikelihood_fn(position)
    check_initial_logdensity(ll)
    return EllipticalSliceState(position, ll)


def elliptical_slice_step(key, state: EllipticalSliceState, loglikelihood_fn, mean, cov, max_shrinks: int = 200):
    """One elliptical slice sampling step.

    Args:
      mean: prior mean (flattened-position shape, or a scalar).
      cov: prior covariance: a vector (diagonal) or a dense matrix over flattened coordinates.
      max_shrinks: bound on bracket shrinkages; if hit (only possible when the
        log-likelihood is non-finite near ``x``), the chain stays put and the step is
        flagged ``is_divergent``.

    Example:
      >>> import jax, jax.numpy as jnp
      >>> from ulam.mcmc import elliptical_slice_init, elliptical_slice_step
      >>> ll = lambda x: -0.5 * jnp.sum((x - 1.0) ** 2)
      >>> s = elliptical_slice_init(jnp.zeros(2), ll)
      >>> s, info = elliptical_slice_step(jax.random.key(0), s, ll, 0.0, jnp.ones(2))
    """
    z, unravel = ravel_pytree(state.position)
    dtype = z.dtype
    mean = jnp.broadcast_to(jnp.asarray(mean, dtype), z.shape)
    cov = jnp.asarray(cov, dtype)
    k_nu, k_u, k_theta, key = jax.random.split(key, 4)
    xi = jax.random.normal(k_nu, z.shape, dtype)
    nu = jnp.sqrt(cov) * xi if cov.ndim <= 1 else jnp.linalg.cholesky(cov) @ xi
    log_y = state.loglikelihood + jnp.log(jax.random.uniform(k_u, dtype=dtype))
    theta = jax.random.uniform(k_theta, dtype=dtype, maxval=2 * jnp.pi)
    centred = z - mean

    def point(theta):
        return mean + centred * jnp.cos(theta) + nu * jnp.sin(theta)

    def evaluate(theta):
        x = point(theta)
        ll = loglikelihood_fn(unravel(x))
        return x, jnp.where(jnp.isnan(ll), -jnp.inf, ll)

    x0, ll0 = evaluate(theta)

    def cond(c):
        _, _, _, ll, n, _, _ = c
        return ~(ll > log_y) & (n < max_shrinks)

    def body(c):
        lo, hi, theta, _, n, _, key = c
        lo = jnp.where(theta < 0, theta, lo)
        hi = jnp.where(theta < 0, hi, theta)
        key, k = jax.random.split(key)
        theta = jax.random.uniform(k, dtype=dtype, minval=lo, maxval=hi)
        x, ll = evaluate(theta)
        return lo, hi, theta, ll, n + 1, x, key

    init = (theta - 2 * jnp.pi, theta, theta, ll0, jnp.ones((), jnp.int32), x0, key)
    _, _, _, ll, n, x, _ = jax.lax.while_loop(cond, body, init)
    ok = ll > log_y
    new = EllipticalSliceState(unravel(jnp.where(ok, x, z)), jnp.where(ok, ll, state.loglikelihood))
    info = EllipticalSliceInfo(
        acceptance_rate=ok.astype(dtype),
        is_divergent=~ok,
        energy=-new.loglikelihood,
        num_grad_evals=jnp.zeros((), jnp.int32),
        num_likelihood_evals=n,
    )
    return new, info


def elliptical_slice_kernel(loglikelihood_fn, mean, cov) -> Kernel:
    """Elliptical slice sampling as a ready :class:`~ulam.mcmc.Kernel` (nothing to tune).

    Example:
      >>> import jax, jax.numpy as jnp
      >>> from ulam import mcmc
      >>> k = mcmc.elliptical_slice_kernel(lambda x: -0.5 * jnp.sum((x - 1.0) ** 2), 0.0, jnp.ones(2))
      >>> res = mcmc.sample(k, jax.random.key(0), jnp.zeros((2, 2)), num_chains=2, num_warmup=10,
      ...                   num_draws=50, progress=False)
      >>> res.flat_draws.shape
      (2, 50, 2)
    """
    return Kernel(
        lambda position: elliptical_slice_init(position, loglikelihood_fn),
        lambda key, state: elliptical_slice_step(key, state, loglikelihood_fn, mean, cov),
    )
