"""Shared pieces of the MCMC kernels: states, info records, the metric, leapfrog.

Every kernel in :mod:`ulam.mcmc` is a pair of pure functions,
``init(position, logdensity_fn) -> state`` and
``step(key, state, logdensity_fn, ...) -> (state, info)``, over NamedTuple
states. Positions may be any pytree of floating arrays; the kernels work on the
flattened vector internally (``jax.flatten_util.ravel_pytree``), so a dense mass
matrix is a ``(d, d)`` matrix over the flattened coordinates.
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
from jax.flatten_util import ravel_pytree

__all__ = [
    "State",
    "SampleInfo",
    "Kernel",
    "Metric",
    "metric",
    "leapfrog",
    "check_initial_logdensity",
]

Position = Any
LogDensity = Callable[[Position], jax.Array]


class State(NamedTuple):
    """Position with its log-density and gradient (HMC, NUTS, MALA, ULA)."""

    position: Position
    logdensity: jax.Array
    logdensity_grad: Position


class SampleInfo(NamedTuple):
    """What one step did.

    Attributes:
      acceptance_rate: the Metropolis acceptance probability of the proposal
        (1 for unadjusted kernels whose proposal was finite, 0 when a non-finite
        proposal was refused).
      is_divergent: the proposal's log-density was non-finite, or (for HMC) the
        energy error exceeded ``max_energy_error``.
      energy: the Hamiltonian of the returned state (potential ``-log p`` for
        kernels without momentum).
      num_grad_evals: gradient evaluations spent on the step.
    """

    acceptance_rate: jax.Array
    is_divergent: jax.Array
    energy: jax.Array
    num_grad_evals: jax.Array


class Kernel(NamedTuple):
    """A ready-to-run kernel: ``init(position) -> state``, ``step(key, state) -> (state, info)``."""

    init: Callable
    step: Callable


class Metric(NamedTuple):
    """Euclidean metric of an inverse mass matrix Σ: momentum ``p ~ N(0, Σ⁻¹)``, ``K(p) = pᵀΣp/2``."""

    sample_momentum: Callable[[jax.Array, jax.Array], jax.Array]
    kinetic_energy: Callable[[jax.Array], jax.Array]
    velocity: Callable[[jax.Array], jax.Array]
    # Draws N(0, Σ) noise (the Langevin and random-walk proposals use it).
    sample_noise: Callable[[jax.Array, jax.Array], jax.Array]
    # The Gaussian log-kernel -|Σ^{-1/2} v|²/2 (up to a constant), for MH corrections.
    noise_logpdf: Callable[[jax.Array], jax.Array]
    # Maps a standard normal vector xi to a momentum p ~ N(0, Σ⁻¹) (sample_momentum = this ∘ normal).
    momentum_from_normal: Callable[[jax.Array], jax.Array]


def metric(inverse_mass_matrix) -> Metric:
    """The Euclidean metric for a diagonal (1-D) or dense (2-D) inverse mass matrix Σ.

    ``None`` means the identity. A dense Σ is factored once per call, ``Σ = L Lᵀ``;
    momenta are ``p = L⁻ᵀ ξ`` so that ``Cov(p) = Σ⁻¹ = M``.
    """
    if inverse_mass_matrix is None:
        return Metric(
            sample_momentum=lambda key, z: jax.random.normal(key, z.shape, z.dtype),
            kinetic_energy=lambda p: 0.5 * jnp.dot(p, p),
            velocity=lambda p: p,
            sample_noise=lambda key, z: jax.random.normal(key, z.shape, z.dtype),
            noise_logpdf=lambda v: -0.5 * jnp.dot(v, v),
            momentum_from_normal=lambda xi: xi,
        )
    inv = jnp.asarray(inverse_mass_matrix)
    if inv.ndim == 1:
        sqrt_inv = jnp.sqrt(inv)
        return Metric(
            sample_momentum=lambda key, z: jax.random.normal(key, z.shape, z.dtype) / sqrt_inv,
            kinetic_energy=lambda p: 0.5 * jnp.dot(p, inv * p),
            velocity=lambda p: inv * p,
            sample_noise=lambda key, z: jax.random.normal(key, z.shape, z.dtype) * sqrt_inv,
            noise_logpdf=lambda v: -0.5 * jnp.dot(v, v / inv),
            momentum_from_normal=lambda xi: xi / sqrt_inv,
        )
    if inv.ndim == 2:
        chol = jnp.linalg.cholesky(inv)

        def solve_lower(v):
            return jax.scipy.linalg.solve_triangular(chol, v, lower=True)

        def momentum_from_normal(xi):
            return jax.scipy.linalg.solve_triangular(chol, xi, lower=True, trans="T")

        def sample_momentum(key, z):
            return momentum_from_normal(jax.random.normal(key, z.shape, z.dtype))

        def noise_logpdf(v):
            w = solve_lower(v)
            return -0.5 * jnp.dot(w, w)

        return Metric(
            sample_momentum=sample_momentum,
            kinetic_energy=lambda p: 0.5 * jnp.dot(p, inv @ p),
            velocity=lambda p: inv @ p,
            sample_noise=lambda key, z: chol @ jax.random.normal(key, z.shape, z.dtype),
            noise_logpdf=noise_logpdf,
            momentum_from_normal=momentum_from_normal,
        )
    raise ValueError(
        f"inverse_mass_matrix: expected a 1-D diagonal or a 2-D dense matrix, got shape {inv.shape}"
    )


def flat_logdensity(logdensity_fn: LogDensity, position):
    """``(z, unravel, value_and_grad)`` for the flattened position."""
    z, unravel = ravel_pytree(position)

    def f(flat):
        return logdensity_fn(unravel(flat))

    return z, unravel, jax.value_and_grad(f)


def ravel(tree) -> jax.Array:
    return ravel_pytree(tree)[0]


def finite_or_neg_inf(x):
    """Non-finite log-densities (NaN, +inf) become -inf so that they are always rejected."""
    return jnp.where(jnp.isfinite(x), x, -jnp.inf)


def leapfrog(value_and_grad, z, p, grad, step_size, velocity):
    r"""One leapfrog step of :math:`H(z,p) = -\log\pi(z) + K(p)`.

    :math:`p_{1/2} = p + \tfrac\epsilon2\nabla\log\pi(z)`, :math:`z' = z + \epsilon\,\Sigma p_{1/2}`,
    :math:`p' = p_{1/2} + \tfrac\epsilon2\nabla\log\pi(z')` (Neal 2011, *MCMC using Hamiltonian
    dynamics*, eq. 5.18–5.20). A negative ``step_size`` integrates backwards in time.
    """
    p = p + 0.5 * step_size * grad
    z = z + step_size * velocity(p)
    logdensity, grad = value_and_grad(z)
    p = p + 0.5 * step_size * grad
    return z, p, logdensity, grad


def init_with_grad(position, logdensity_fn: LogDensity) -> State:
    """The common ``init``: evaluate log-density and gradient; refuse a non-finite start."""
    _check_position(position)
    logdensity, grad = jax.value_and_grad(logdensity_fn)(position)
    check_initial_logdensity(logdensity, grad)
    return State(position, logdensity, grad)


def _check_position(position):
    leaves = jax.tree_util.tree_leaves(position)
    if not leaves:
        raise ValueError("position: expected at least one array, got an empty pytree")
    for leaf in leaves:
        if not jnp.issubdtype(jnp.result_type(leaf), jnp.floating):
            raise TypeError(
                f"position: expected floating-point arrays, got dtype {jnp.result_type(leaf)}; "
                "convert it with jnp.asarray(x, jnp.float32)"
            )


def check_initial_logdensity(logdensity, grad=None) -> None:
    """Raise ``ValueError`` if the log-density (or its gradient) at the start is not finite.

    Only concrete values are checked: under ``jit`` the check is skipped (the
    driver :func:`ulam.mcmc.sample` checks before it compiles).
    """
    if jnp.ndim(logdensity) != 0:
        raise ValueError(
            f"logdensity_fn: must return a scalar for one position, got shape {jnp.shape(logdensity)}"
        )
    if isinstance(logdensity, jax.core.Tracer):
        return
    value = float(logdensity)
    if not jnp.isfinite(value):
        raise ValueError(
            f"initial position: the log-density there is {value} (not finite); start the chain "
            "inside the support of the target"
        )
    if grad is not None:
        g = ravel(grad)
        if not isinstance(g, jax.core.Tracer) and not bool(jnp.all(jnp.isfinite(g))):
            raise ValueError(
                "initial position: the gradient of the log-density there is not finite; start the "
                "chain where the target is differentiable"
            )
