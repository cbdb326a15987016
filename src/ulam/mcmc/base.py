"""Shared pieces of the MCMC kernels: states, info records, the metric, leapfrog.

Every kernel in :mod:`ulam.mcmc` is a pair of pure functions,
``init(position, logdensity_fn) -> state`` and
``step(key, state, logdensity_fn, ...) -> (state, info)``, over NamedTuple
states. Positions may be any pytree of floating arrays; the kernels work on the
flattened vector internally (``jax.flatten_util.ravel_pytree``), so a dense mass
matrix is a ``(d, d)`` matrix over the flattened coordinates.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
from jax.flatten_util import ravel_pytree

from ulam import checks

__all__ = [
    "State",
    "SampleInfo",
    "Kernel",
    "MCMCKernel",
    "Metric",
    "metric",
    "leapfrog",
    "check_initial_logdensity",
    "check_position",
    "check_logdensity_output",
    "check_step_size",
    "check_inverse_mass_matrix",
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
    """A ready-to-run kernel with nothing left to tune: ``init(position) -> state``, ``step(key, state) -> (state, info)``.

    :func:`ulam.mcmc.sample` runs it as given (no adaptation); build one from an
    adaptable :class:`MCMCKernel` with :meth:`MCMCKernel.bind`, or write ``init``/``step``
    yourself (elliptical slice sampling, SGLD).

    Example:
      >>> import jax, jax.numpy as jnp
      >>> from ulam import mcmc
      >>> k = mcmc.rwm_kernel().bind(lambda x: -0.5 * jnp.sum(x**2), step_size=0.5)
      >>> state, info = k.step(jax.random.key(0), k.init(jnp.zeros(2)))
      >>> info.acceptance_rate.shape
      ()
    """

    init: Callable
    step: Callable


@dataclasses.dataclass(frozen=True)
class MCMCKernel:
    r"""An adaptable kernel: pure ``init``/``step`` whose tunable parameters are arguments.

    ``init(position, logdensity_fn) -> state`` and
    ``step(key, state, logdensity_fn, step_size, inverse_mass_matrix) -> (state, info)``,
    where ``info`` has at least ``acceptance_rate``, ``is_divergent``, ``energy`` and
    ``num_grad_evals`` (as :class:`SampleInfo`). Because the step size :math:`\epsilon` and
    the inverse mass matrix :math:`\Sigma` are arguments, the warm-up adaptation of
    :func:`ulam.mcmc.window_adaptation` (dual averaging of :math:`\epsilon` to
    ``target_acceptance``, Stan's windowed estimate of :math:`\Sigma`) applies to any such
    kernel, built-in or user-written, in the same way (the design of BlackJAX's
    ``window_adaptation``). Built-in ones: :func:`~ulam.mcmc.nuts_kernel`,
    :func:`~ulam.mcmc.hmc_kernel`, :func:`~ulam.mcmc.mala_kernel`, :func:`~ulam.mcmc.rwm_kernel`,
    :func:`~ulam.mcmc.ula_kernel`.

    Fields:
      init_fn, step_fn: the pure functions; ``step_fn`` also receives ``**dict(options)``.
      options: static options as a sorted tuple of ``(name, value)`` pairs.
      target_acceptance: the acceptance statistic dual averaging aims at; ``None`` when the
        kernel has no accept step (the step size must then be given).
      step_size_search: apply Stan's initial step-size heuristic (Hamiltonian kernels).
      default_step_size: ``dim -> float``, the initial step size before adaptation.
      name: for messages and run fingerprints.

    Example:
      >>> import jax, jax.numpy as jnp
      >>> from ulam import mcmc
      >>> logp = lambda x: -0.5 * jnp.sum(x**2)
      >>> k = mcmc.mala_kernel()
      >>> s, info = k.step(jax.random.key(0), k.init(jnp.zeros(2), logp), logp, 0.5, jnp.ones(2))
      >>> bool(info.acceptance_rate >= 0)
      True
    """

    init_fn: Callable
    step_fn: Callable
    options: tuple = ()
    target_acceptance: float | None = 0.8
    step_size_search: bool = False
    default_step_size: Callable[[int], float] = lambda dim: 1.0
    name: str = "custom"

    def init(self, position, logdensity_fn):
        return self.init_fn(position, logdensity_fn)

    def step(self, key, state, logdensity_fn, step_size, inverse_mass_matrix=None):
        return self.step_fn(key, state, logdensity_fn, step_size, inverse_mass_matrix, **dict(self.options))

    def bind(self, logdensity_fn, step_size, inverse_mass_matrix=None) -> Kernel:
        """This kernel with fixed ``logdensity_fn``, step size and inverse mass matrix, as a :class:`Kernel`."""
        checks.function("logdensity_fn", logdensity_fn, "a function x -> scalar log-density")
        check_step_size(step_size)
        check_inverse_mass_matrix(inverse_mass_matrix)
        return Kernel(
            lambda position: self.init(position, logdensity_fn),
            lambda key, state: self.step(key, state, logdensity_fn, step_size, inverse_mass_matrix),
        )


def check_step_size(step_size, name: str = "step_size"):
    """A step size must be a finite number > 0 (per chain: every entry); skipped under ``jit``."""
    return checks.positive(name, step_size, do="a step size is the integrator's time step and must be > 0")


def check_inverse_mass_matrix(inverse_mass_matrix, name: str = "inverse_mass_matrix"):
    """A diagonal Σ needs entries > 0, a dense Σ must be symmetric positive definite; ``None`` is the identity."""
    if inverse_mass_matrix is None or not checks.is_concrete(inverse_mass_matrix):
        return inverse_mass_matrix
    import numpy as np

    inv = np.asarray(inverse_mass_matrix, dtype=float)
    if inv.ndim <= 1 or (inv.ndim == 2 and inv.shape[0] != inv.shape[1]):
        # A diagonal, or a batch of diagonals (chains, d).
        checks.positive(name, inv, do="the diagonal of Σ holds posterior variances")
    else:
        checks.positive_semidefinite(name, inv, strict=True)
    return inverse_mass_matrix


def check_logdensity_output(logdensity_fn, position, name: str = "logdensity_fn"):
    """Trace ``logdensity_fn`` at ``position`` (no FLOPs): it must return one real scalar."""
    out = jax.eval_shape(logdensity_fn, position)
    checks.callback_output(name, out, shape=(), what="a scalar log-density")
    return out


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
    check_inverse_mass_matrix(inverse_mass_matrix)
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
    check_position(position)
    checks.function("logdensity_fn", logdensity_fn, "a function x -> scalar log-density")
    check_logdensity_output(logdensity_fn, position)
    logdensity, grad = jax.value_and_grad(logdensity_fn)(position)
    check_initial_logdensity(logdensity, grad)
    return State(position, logdensity, grad)


def check_position(position):
    """A position: a non-empty pytree of floating-point arrays."""
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
    # checks.callback_output is given the shape and dtype only: it would convert a tracer.
    abstract = jax.ShapeDtypeStruct(jnp.shape(logdensity), jnp.result_type(logdensity))
    checks.callback_output("logdensity_fn", abstract, shape=(), what="a scalar log-density")
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
