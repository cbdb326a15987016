"""Hamiltonian Monte Carlo with a fixed number of leapfrog steps (Duane et al. 1987; Neal 2011)."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from ulam import checks
from ulam.mcmc.base import (
    MCMCKernel,
    SampleInfo,
    State,
    check_step_size,
    flat_logdensity,
    init_with_grad,
    leapfrog,
    metric,
    ravel,
)

__all__ = ["hmc_init", "hmc_step", "hmc_kernel"]

_MAX_UNROLL = 16


def hmc_init(position, logdensity_fn) -> State:
    """Start HMC at ``position``; a non-finite log-density or gradient there is a ``ValueError``."""
    return init_with_grad(position, logdensity_fn)


def hmc_step(
    key,
    state: State,
    logdensity_fn,
    step_size,
    inverse_mass_matrix=None,
    num_integration_steps: int = 10,
    max_energy_error: float = 1000.0,
):
    r"""One HMC transition: fresh momentum, ``num_integration_steps`` leapfrog steps, Metropolis test.

    :math:`p\sim N(0, M)`, :math:`M = \Sigma^{-1}`; :math:`H = -\log\pi(z) + p^\top\Sigma p/2`;
    accept :math:`(z', p')` with probability :math:`\min(1, e^{H(z,p) - H(z',p')})`
    (Neal 2011, *MCMC using Hamiltonian dynamics*, §5.3; Singh & Jakob 2024, §HMC).
    A non-finite energy at the end of the trajectory is a rejection; an energy error above
    ``max_energy_error`` is flagged ``is_divergent``.

    Example:
      >>> import jax, jax.numpy as jnp
      >>> from ulam.mcmc import hmc_init, hmc_step
      >>> logp = lambda x: -0.5 * jnp.sum(x**2)
      >>> s, info = hmc_step(jax.random.key(0), hmc_init(jnp.zeros(3), logp), logp, 0.1)
    """
    check_step_size(step_size)
    if not isinstance(num_integration_steps, jax.core.Tracer):
        checks.count("num_integration_steps", num_integration_steps)
    z, unravel, value_and_grad = flat_logdensity(logdensity_fn, state.position)
    g = ravel(state.logdensity_grad)
    m = metric(inverse_mass_matrix)
    # One random call per step: the momentum and, from one extra standard normal xi, the
    # Metropolis uniform Phi(xi) (log Phi(xi) by log_ndtr). Each jax.random call is a small
    # loop of its own on CPU, comparable to a leapfrog step of a 100-d Gaussian.
    xi = jax.random.normal(key, (z.shape[0] + 1,), z.dtype)
    p = m.momentum_from_normal(xi[:-1])
    log_u = jax.scipy.special.log_ndtr(xi[-1])
    energy0 = -state.logdensity + m.kinetic_energy(p)

    def body(_, carry):
        z, p, _, g = carry
        return leapfrog(value_and_grad, z, p, g, step_size, m.velocity)

    # Unrolling short trajectories lets XLA fuse consecutive leapfrog steps (no loop overhead).
    try:
        num_steps = int(num_integration_steps)
        unroll = num_steps <= _MAX_UNROLL
    except TypeError:  # a traced number of steps: keep the loop
        num_steps, unroll = num_integration_steps, False
    z1, p1, ld1, g1 = jax.lax.fori_loop(0, num_steps, body, (z, p, state.logdensity, g), unroll=unroll)
    energy1 = -ld1 + m.kinetic_energy(p1)
    delta = energy1 - energy0
    delta = jnp.where(jnp.isnan(delta), jnp.inf, delta)
    accept = log_u < -delta
    proposal = State(unravel(z1), ld1, unravel(g1))
    new_state = jax.tree_util.tree_map(lambda a, b: jnp.where(accept, a, b), proposal, state)
    info = SampleInfo(
        acceptance_rate=jnp.minimum(1.0, jnp.exp(-delta)),
        is_divergent=delta > max_energy_error,
        energy=jnp.where(accept, energy1, energy0),
        num_grad_evals=jnp.asarray(num_integration_steps, jnp.int32),
    )
    return new_state, info


def _unit_step_size(dim: int) -> float:
    return 1.0


def hmc_kernel(num_integration_steps: int = 10, max_energy_error: float = 1000.0) -> MCMCKernel:
    """HMC as an adaptable :class:`~ulam.mcmc.MCMCKernel` (step size and Σ tuned by the driver's warm-up).

    Example:
      >>> from ulam import mcmc
      >>> mcmc.hmc_kernel(num_integration_steps=5).name
      'hmc'
    """
    checks.count("num_integration_steps", num_integration_steps)
    checks.positive("max_energy_error", max_energy_error)
    options = (("max_energy_error", float(max_energy_error)), ("num_integration_steps", int(num_integration_steps)))
    return MCMCKernel(hmc_init, hmc_step, options, target_acceptance=0.8, step_size_search=True,
                      default_step_size=_unit_step_size, name="hmc")
