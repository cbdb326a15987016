r"""Langevin kernels: unadjusted (ULA), Metropolis-adjusted (MALA), preconditioned.

All use the Euler–Maruyama step of the Langevin diffusion
:math:`dX = \Sigma\nabla\log\pi(X)\,dt + \sqrt{2}\,\Sigma^{1/2}dW`:

.. math:: x' = x + \epsilon\,\Sigma\nabla\log\pi(x) + \sqrt{2\epsilon}\,\Sigma^{1/2}\xi .

With this convention the course notes' step :math:`h` (``x + (h/2)∇log π + √h ξ``) is
:math:`\epsilon = h/2`. ULA is biased: for :math:`\pi = N(0,1)` its stationary variance is
:math:`1/(1-\epsilon/2)` (Singh & Jakob 2024, *MCMC: bridging rendering, optimization and
generative AI*, §Langevin Monte Carlo; Roberts & Tweedie 1996). MALA removes the bias with a
Metropolis–Hastings correction.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from ulam.mcmc.base import (
    Kernel,
    MCMCKernel,
    SampleInfo,
    State,
    check_step_size,
    finite_or_neg_inf,
    flat_logdensity,
    init_with_grad,
    metric,
    ravel,
)

__all__ = [
    "langevin_init",
    "ula_step",
    "mala_step",
    "preconditioned_langevin_step",
    "ula_kernel",
    "mala_kernel",
    "preconditioned_langevin_kernel",
]


def langevin_init(position, logdensity_fn) -> State:
    """Start a Langevin chain; a non-finite log-density or gradient there is a ``ValueError``."""
    return init_with_grad(position, logdensity_fn)


def _langevin(key, state: State, logdensity_fn, step_size, inverse_mass_matrix, adjusted: bool):
    check_step_size(step_size)
    z, unravel, value_and_grad = flat_logdensity(logdensity_fn, state.position)
    g = ravel(state.logdensity_grad)
    m = metric(inverse_mass_matrix)
    k_noise, k_acc = jax.random.split(key)
    drift = step_size * m.velocity(g)
    z_new = z + drift + jnp.sqrt(2.0 * step_size) * m.sample_noise(k_noise, z)
    ld_new, g_new = value_and_grad(z_new)
    finite = jnp.isfinite(ld_new) & jnp.all(jnp.isfinite(g_new))
    if adjusted:
        # log q(x | x') - log q(x' | x) for the Gaussian proposal N(x + εΣ∇, 2εΣ).
        fwd = m.noise_logpdf(z_new - z - drift) / (2.0 * step_size)
        bwd = m.noise_logpdf(z - z_new - step_size * m.velocity(g_new)) / (2.0 * step_size)
        log_ratio = finite_or_neg_inf(ld_new) - state.logdensity + bwd - fwd
        log_ratio = jnp.where(finite & ~jnp.isnan(log_ratio), log_ratio, -jnp.inf)
        accept = jnp.log(jax.random.uniform(k_acc, dtype=z.dtype)) < log_ratio
        acc_prob = jnp.minimum(1.0, jnp.exp(log_ratio))
    else:
        accept = finite
        acc_prob = finite.astype(z.dtype)
    proposal = State(unravel(z_new), ld_new, unravel(g_new))
    new_state = jax.tree_util.tree_map(lambda a, b: jnp.where(accept, a, b), proposal, state)
    info = SampleInfo(
        acceptance_rate=acc_prob,
        is_divergent=~finite,
        energy=-new_state.logdensity,
        num_grad_evals=jnp.ones((), jnp.int32),
    )
    return new_state, info


def ula_step(key, state: State, logdensity_fn, step_size, inverse_mass_matrix=None):
    r"""One unadjusted Langevin (ULA) step, :math:`x' = x + \epsilon\Sigma\nabla\log\pi + \sqrt{2\epsilon}\Sigma^{1/2}\xi`.

    No accept/reject, so the chain targets a biased :math:`\pi_\epsilon`; a proposal
    whose log-density or gradient is non-finite is refused (the chain stays) and
    flagged ``is_divergent``.

    Example:
      >>> import jax, jax.numpy as jnp
      >>> from ulam.mcmc import langevin_init, ula_step
      >>> logp = lambda x: -0.5 * jnp.sum(x**2)
      >>> s, info = ula_step(jax.random.key(0), langevin_init(jnp.zeros(2), logp), logp, 0.1)
    """
    return _langevin(key, state, logdensity_fn, step_size, inverse_mass_matrix, adjusted=False)


def mala_step(key, state: State, logdensity_fn, step_size, inverse_mass_matrix=None):
    r"""One Metropolis-adjusted Langevin (MALA) step (Roberts & Tweedie 1996).

    Proposal as :func:`ula_step`, accepted with probability
    :math:`\min\{1, \pi(x')q(x|x')/(\pi(x)q(x'|x))\}`,
    :math:`q(x'|x) = N(x'; x + \epsilon\Sigma\nabla\log\pi(x), 2\epsilon\Sigma)`.

    Example:
      >>> import jax, jax.numpy as jnp
      >>> from ulam.mcmc import langevin_init, mala_step
      >>> logp = lambda x: -0.5 * jnp.sum(x**2)
      >>> s, info = mala_step(jax.random.key(0), langevin_init(jnp.zeros(2), logp), logp, 0.5)
    """
    return _langevin(key, state, logdensity_fn, step_size, inverse_mass_matrix, adjusted=True)


def preconditioned_langevin_step(key, state: State, logdensity_fn, step_size, preconditioner, adjusted=False):
    r"""Langevin step with a user-supplied constant preconditioner :math:`P` (diagonal vector or SPD matrix).

    :math:`x' = x + \epsilon P\nabla\log\pi(x) + \sqrt{2\epsilon}P^{1/2}\xi`, the Euler step of the
    preconditioned diffusion that leaves :math:`\pi` invariant for any constant SPD :math:`P`
    (Roberts & Stramer 2002). ``adjusted=True`` adds the MALA correction.
    """
    fn = mala_step if adjusted else ula_step
    return fn(key, state, logdensity_fn, step_size, preconditioner)


def _langevin_step_size(dim: int) -> float:
    return 0.5 / dim ** (1 / 3)


def ula_kernel() -> MCMCKernel:
    """ULA as a :class:`~ulam.mcmc.MCMCKernel`: no accept step, so the step size is not adapted (give it);
    Σ is adapted when the driver estimates a metric.

    Example:
      >>> from ulam import mcmc
      >>> mcmc.ula_kernel().target_acceptance is None
      True
    """
    return MCMCKernel(langevin_init, ula_step, (), target_acceptance=None, default_step_size=_langevin_step_size,
                      name="ula")


def mala_kernel() -> MCMCKernel:
    """MALA as an adaptable :class:`~ulam.mcmc.MCMCKernel` (target acceptance 0.574, Roberts & Rosenthal 1998).

    Example:
      >>> from ulam import mcmc
      >>> mcmc.mala_kernel().target_acceptance
      0.574
    """
    return MCMCKernel(langevin_init, mala_step, (), target_acceptance=0.574, default_step_size=_langevin_step_size,
                      name="mala")


def preconditioned_langevin_kernel(logdensity_fn, step_size, preconditioner, adjusted=False) -> Kernel:
    """Preconditioned (optionally adjusted) Langevin with fixed parameters, as a ready :class:`~ulam.mcmc.Kernel`.

    Example:
      >>> import jax, jax.numpy as jnp
      >>> from ulam import mcmc
      >>> k = mcmc.preconditioned_langevin_kernel(lambda x: -0.5 * jnp.sum(x**2), 0.1, jnp.ones(2))
      >>> s, info = k.step(jax.random.key(0), k.init(jnp.zeros(2)))
    """
    check_step_size(step_size)
    return Kernel(
        lambda position: langevin_init(position, logdensity_fn),
        lambda key, state: preconditioned_langevin_step(
            key, state, logdensity_fn, step_size, preconditioner, adjusted
        ),
    )
