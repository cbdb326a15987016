"""Random-walk Metropolis (Metropolis et al. 1953; Hastings 1970)."""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from ulam import checks
from ulam.mcmc.base import (
    MCMCKernel,
    SampleInfo,
    check_initial_logdensity,
    check_logdensity_output,
    check_position,
    check_step_size,
    finite_or_neg_inf,
    metric,
)

__all__ = ["RWMState", "rwm_init", "rwm_step", "rwm_kernel"]


class RWMState(NamedTuple):
    """Position and its log-density (random-walk Metropolis needs no gradient)."""

    position: object
    logdensity: jax.Array


def rwm_init(position, logdensity_fn) -> RWMState:
    """Start random-walk Metropolis at ``position``; a non-finite log-density there is a ``ValueError``."""
    check_position(position)
    checks.function("logdensity_fn", logdensity_fn, "a function x -> scalar log-density")
    check_logdensity_output(logdensity_fn, position)
    logdensity = logdensity_fn(position)
    check_initial_logdensity(logdensity)
    return RWMState(position, logdensity)


def rwm_step(key, state: RWMState, logdensity_fn, step_size, inverse_mass_matrix=None):
    r"""One Gaussian random-walk Metropolis step.

    Proposal :math:`x' = x + h\,L\xi`, :math:`\xi\sim N(0,I)`, :math:`LL^\top = \Sigma`
    (``inverse_mass_matrix``, identity by default); accept with probability
    :math:`\min(1, \pi(x')/\pi(x))`. A non-finite :math:`\log\pi(x')` is a rejection
    flagged ``is_divergent``. (Singh & Jakob 2024, *MCMC: bridging rendering,
    optimization and generative AI*, §Metropolis–Hastings.)

    Example:
      >>> import jax, jax.numpy as jnp
      >>> from ulam.mcmc import rwm_init, rwm_step
      >>> logp = lambda x: -0.5 * jnp.sum(x**2)
      >>> s = rwm_init(jnp.zeros(2), logp)
      >>> s, info = rwm_step(jax.random.key(0), s, logp, 0.5)
    """
    from jax.flatten_util import ravel_pytree

    check_step_size(step_size)
    z, unravel = ravel_pytree(state.position)
    m = metric(inverse_mass_matrix)
    k_prop, k_acc = jax.random.split(key)
    z_new = z + step_size * m.sample_noise(k_prop, z)
    position_new = unravel(z_new)
    ld_new = logdensity_fn(position_new)
    finite = jnp.isfinite(ld_new)
    log_ratio = finite_or_neg_inf(ld_new) - state.logdensity
    accept = jnp.log(jax.random.uniform(k_acc, dtype=z.dtype)) < log_ratio
    new_state = jax.tree_util.tree_map(
        lambda a, b: jnp.where(accept, a, b), RWMState(position_new, ld_new), state
    )
    info = SampleInfo(
        acceptance_rate=jnp.minimum(1.0, jnp.exp(log_ratio)),
        is_divergent=~finite,
        energy=-new_state.logdensity,
        num_grad_evals=jnp.zeros((), jnp.int32),
    )
    return new_state, info


def _rwm_step_size(dim: int) -> float:
    return 2.38 / dim**0.5


def rwm_kernel() -> MCMCKernel:
    """Random-walk Metropolis as an adaptable :class:`~ulam.mcmc.MCMCKernel` (target acceptance 0.234,
    Roberts, Gelman & Gilks 1997; initial scale :math:`2.38/\\sqrt d`).

    Example:
      >>> from ulam import mcmc
      >>> mcmc.rwm_kernel().target_acceptance
      0.234
    """
    return MCMCKernel(rwm_init, rwm_step, (), target_acceptance=0.234, default_step_size=_rwm_step_size, name="rwm")
