r"""Stochastic-gradient MCMC: SGLD and SGHMC with minibatch gradients.

* SGLD (Welling & Teh 2011, *Bayesian learning via stochastic gradient Langevin dynamics*):
  :math:`\theta' = \theta + \epsilon\,\widehat{\nabla\log\pi}(\theta) + \sqrt{2\epsilon T}\,\xi`.
* SGHMC (Chen, Fox & Guestrin 2014, *Stochastic gradient Hamiltonian Monte Carlo*, eq. 15):
  :math:`\theta' = \theta + v`, :math:`v' = (1-\alpha)v + \eta\,\widehat{\nabla\log\pi}(\theta') +
  \sqrt{2\alpha\eta T}\,\xi`, with learning rate :math:`\eta` and friction :math:`\alpha`.

Use them through the multi-chain driver with :func:`sgld_kernel` / :func:`sghmc_kernel`, which fold the
minibatch draw into a :class:`~ulam.mcmc.Kernel` (``mcmc.sample(sgld_kernel(...), key, x0,
num_warmup=..., num_draws=...)`` gives draws (chains, draws, ...), ``summary()``, streaming,
checkpoints); the driver adapts nothing for them, since there is no acceptance step to adapt to.
:func:`run_sgmcmc` is the bare single-chain loop without diagnostics.

Both sample :math:`\pi^{1/T}` as the step size goes to zero (with a bias of order the step
size). The gradient estimate is unbiased for the full-data gradient,
:math:`\widehat{\nabla\log\pi}(\theta) = \nabla\log p(\theta) + \frac{N}{|B|}\sum_{i\in B}\nabla\log p(x_i|\theta)`
(:func:`minibatch_gradient`). Singh & Jakob 2024 (§SGD vs SGLD) use SGLD as "SGD plus noise".
"""

from __future__ import annotations

from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp
from jax.flatten_util import ravel_pytree

from ulam import checks
from ulam.mcmc.base import Kernel, SampleInfo

__all__ = [
    "SGLDState",
    "SGHMCState",
    "minibatch_gradient",
    "sample_minibatch",
    "sgld_init",
    "sgld_step",
    "sghmc_init",
    "sghmc_step",
    "run_sgmcmc",
    "sgld_kernel",
    "sghmc_kernel",
]


class SGLDState(NamedTuple):
    position: object


class SGHMCState(NamedTuple):
    position: object
    momentum: object


def minibatch_gradient(logprior_fn: Callable, loglikelihood_fn: Callable, data_size: int) -> Callable:
    r"""Unbiased minibatch estimator of :math:`\nabla_\theta[\log p(\theta) + \sum_{i=1}^N \log p(x_i|\theta)]`.

    ``loglikelihood_fn(position, datum)`` is the log-likelihood of one datum; the returned
    ``grad_estimator(position, minibatch)`` rescales the minibatch sum by ``N / |B|``
    (minibatch leaves share their leading axis).
    """
    if data_size < 1:
        raise ValueError(f"data_size: must be a positive integer, got {data_size}")

    def logpost(position, minibatch):
        batch = jax.tree_util.tree_leaves(minibatch)[0].shape[0]
        ll = jax.vmap(loglikelihood_fn, in_axes=(None, 0))(position, minibatch)
        return logprior_fn(position) + data_size / batch * jnp.sum(ll)

    return jax.grad(logpost)


def sample_minibatch(key, data, batch_size: int):
    """A minibatch of ``batch_size`` rows drawn without replacement from ``data`` (a pytree of arrays)."""
    n = jax.tree_util.tree_leaves(data)[0].shape[0]
    if not 1 <= batch_size <= n:
        raise ValueError(f"batch_size: must lie in [1, {n}] (the data size), got {batch_size}")
    idx = jax.random.choice(key, n, (batch_size,), replace=False)
    return jax.tree_util.tree_map(lambda x: x[idx], data)


def _finite_info(g, dtype, n_grad=1):
    finite = jnp.all(jnp.isfinite(g))
    return finite, SampleInfo(
        acceptance_rate=finite.astype(dtype),
        is_divergent=~finite,
        energy=jnp.full((), jnp.nan, dtype),
        num_grad_evals=jnp.asarray(n_grad, jnp.int32),
    )


def sgld_init(position) -> SGLDState:
    """Start SGLD at ``position`` (no log-density is evaluated: SGLD sees only gradient estimates)."""
    return SGLDState(position)


def sgld_step(key, state: SGLDState, grad_estimator: Callable, minibatch, step_size, temperature=1.0):
    r"""One SGLD step :math:`\theta' = \theta + \epsilon\hat g + \sqrt{2\epsilon T}\xi`.

    A non-finite gradient estimate leaves the state unchanged and is flagged ``is_divergent``.

    Example:
      >>> import jax, jax.numpy as jnp
      >>> from ulam.mcmc import sgld_init, sgld_step
      >>> grad = lambda x, batch: -x
      >>> s, info = sgld_step(jax.random.key(0), sgld_init(jnp.ones(2)), grad, None, 0.01)
    """
    z, unravel = ravel_pytree(state.position)
    g = ravel_pytree(grad_estimator(state.position, minibatch))[0]
    noise = jax.random.normal(key, z.shape, z.dtype)
    z_new = z + step_size * g + jnp.sqrt(2.0 * step_size * temperature) * noise
    finite, info = _finite_info(g, z.dtype)
    return SGLDState(unravel(jnp.where(finite, z_new, z))), info


def sghmc_init(position) -> SGHMCState:
    """Start SGHMC at ``position`` with zero velocity."""
    return SGHMCState(position, jax.tree_util.tree_map(jnp.zeros_like, position))


def sghmc_step(
    key, state: SGHMCState, grad_estimator: Callable, minibatch, step_size, friction=0.1, temperature=1.0
):
    r"""One SGHMC step (Chen et al. 2014, eq. 15, no gradient-noise correction).

    :math:`\theta' = \theta + v`, :math:`v' = (1-\alpha)v + \eta\hat g(\theta') + \sqrt{2\alpha\eta T}\xi`.
    """
    z, unravel = ravel_pytree(state.position)
    v = ravel_pytree(state.momentum)[0]
    z_new = z + v
    g = ravel_pytree(grad_estimator(unravel(z_new), minibatch))[0]
    noise = jax.random.normal(key, z.shape, z.dtype)
    v_new = (1.0 - friction) * v + step_size * g + jnp.sqrt(2.0 * friction * step_size * temperature) * noise
    finite, info = _finite_info(g, z.dtype)
    # A non-finite gradient: keep the position and drop the momentum (a restart, reported).
    return SGHMCState(unravel(jnp.where(finite, z_new, z)), unravel(jnp.where(finite, v_new, 0.0))), info


def run_sgmcmc(step_fn: Callable, key, state, data, batch_size: int, num_steps: int, thin: int = 1):
    """Run ``state, info = step_fn(key, state, minibatch)`` for ``num_steps``, keeping every ``thin``-th position.

    ``step_fn`` is e.g. ``lambda k, s, b: sgld_step(k, s, grad_estimator, b, 1e-3)``. Returns the
    final state, the kept positions (stacked along axis 0) and the number of non-finite gradients.
    The key comes right after the step function (the thing sampled); the old order
    ``run_sgmcmc(key, step_fn, ...)`` still works for one release with a ``DeprecationWarning``.

    Example:
      >>> import jax, jax.numpy as jnp
      >>> from ulam.mcmc import run_sgmcmc, sgld_init, sgld_step
      >>> data = jnp.zeros((8, 1))
      >>> grad = lambda theta, batch: -theta  # a standard normal target, data unused
      >>> step = lambda k, s, b: sgld_step(k, s, grad, b, 1e-2)
      >>> state, kept, bad = run_sgmcmc(step, jax.random.key(0), sgld_init(jnp.zeros(1)), data, 4, 10)
      >>> kept.shape, int(bad)
      ((10, 1), 0)
    """
    if callable(key) and not callable(step_fn):  # the old key-first order
        import warnings

        warnings.warn(
            "run_sgmcmc(key, step_fn, ...) is deprecated: pass run_sgmcmc(step_fn, key, ...)",
            DeprecationWarning,
            stacklevel=2,
        )
        step_fn, key = key, step_fn
    checks.function("step_fn", step_fn, "a function (key, state, minibatch) -> (state, info)")
    checks.prng_key(key)
    num_steps, thin = checks.count("num_steps", num_steps), checks.count("thin", thin)
    if num_steps % thin:
        raise ValueError(f"num_steps: must be a multiple of thin={thin}, got {num_steps}")

    def one(carry, key):
        state, bad = carry
        k_batch, k_step = jax.random.split(key)
        state, info = step_fn(k_step, state, sample_minibatch(k_batch, data, batch_size))
        return (state, bad + info.is_divergent.astype(jnp.int32)), None

    def kept(carry, key):
        carry, _ = jax.lax.scan(one, carry, jax.random.split(key, thin))
        return carry, carry[0].position

    (state, bad), positions = jax.lax.scan(
        kept, (state, jnp.zeros((), jnp.int32)), jax.random.split(key, num_steps // thin)
    )
    return state, positions, bad


def sgld_kernel(grad_estimator: Callable, data, batch_size: int, step_size, temperature=1.0) -> Kernel:
    """SGLD as a ``Kernel(init, step)``: each step draws a fresh minibatch of ``data`` without replacement.

    Example:
      >>> import jax, jax.numpy as jnp
      >>> from ulam import mcmc
      >>> data = jnp.linspace(-1.0, 1.0, 50)[:, None]
      >>> grad = mcmc.minibatch_gradient(lambda w: -0.5 * jnp.sum(w**2), lambda w, x: -0.5 * jnp.sum((x - w) ** 2), 50)
      >>> kernel = mcmc.sgld_kernel(grad, data, batch_size=10, step_size=1e-3)
      >>> res = mcmc.sample(kernel, jax.random.key(0), jnp.zeros((2, 1)), num_chains=2,
      ...                   num_warmup=100, num_draws=200, progress=False)
      >>> res.flat_draws.shape
      (2, 200, 1)
    """
    sample_minibatch(jax.random.key(0), data, batch_size)  # checks batch_size now, not inside jit

    def step(key, state):
        k_batch, k_step = jax.random.split(key)
        return sgld_step(k_step, state, grad_estimator, sample_minibatch(k_batch, data, batch_size), step_size,
                         temperature)

    return Kernel(sgld_init, step)


def sghmc_kernel(grad_estimator: Callable, data, batch_size: int, step_size, friction=0.1, temperature=1.0) -> Kernel:
    """SGHMC as a ``Kernel(init, step)``: each step draws a fresh minibatch of ``data`` without replacement."""
    sample_minibatch(jax.random.key(0), data, batch_size)

    def step(key, state):
        k_batch, k_step = jax.random.split(key)
        return sghmc_step(k_step, state, grad_estimator, sample_minibatch(k_batch, data, batch_size), step_size,
                          friction, temperature)

    return Kernel(sghmc_init, step)
