r"""The No-U-Turn Sampler with multinomial trajectory sampling, iterative and jit-able.

Hoffman & Gelman 2014, *The No-U-Turn Sampler* (JMLR 15), with the two changes Stan
made since (Betancourt 2017, *A conceptual introduction to Hamiltonian Monte Carlo*,
§A.3–A.4): states are drawn from the trajectory with probability proportional to
:math:`e^{-H}` (multinomial, not slice, sampling), and the U-turn test is the generalized
one on the summed momentum :math:`\rho = \sum_{i} p_i` of a (sub)trajectory,

.. math:: \text{stop if } \rho\cdot\Sigma p^- \le 0 \ \text{ or }\ \rho\cdot\Sigma p^+ \le 0 ,

applied to every balanced subtree and to the whole trajectory. Each doubling extends the
trajectory in a random direction by a subtree as long as the trajectory so far; inside the
subtree, states are sampled uniformly-progressively (weight :math:`w_{new}/(w_{old}+w_{new})`),
and the new subtree replaces the current proposal with probability
:math:`\min(1, W_{subtree}/W_{old})` (biased progressive sampling). A subtree that U-turns or
diverges (energy error above ``max_energy_error``, or non-finite) ends the doubling and
contributes no state.

The recursion of the original algorithm is unrolled: the leaves of a depth-:math:`j` subtree
are produced one at a time, and leaf :math:`n` closes the balanced sub-subtrees of size
:math:`2^l` for which :math:`2^l \mid n+1`. For each level :math:`l` we keep the velocity :math:`\Sigma p` at
the sub-subtree's first leaf and the running sum of momenta before it, so every U-turn test
costs :math:`O(\text{depth}\cdot d)` memory and no recursion.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from ulam import checks
from ulam.mcmc.base import (
    MCMCKernel,
    State,
    check_step_size,
    flat_logdensity,
    init_with_grad,
    leapfrog,
    metric,
    ravel,
)

__all__ = ["NUTSInfo", "nuts_init", "nuts_step", "nuts_kernel"]


class NUTSInfo(NamedTuple):
    """What one NUTS transition did.

    ``acceptance_rate`` is Stan's adaptation statistic: the mean over every leapfrog
    state built of :math:`\\min(1, e^{H_0 - H})`. ``tree_depth`` is the number of doublings.
    """

    acceptance_rate: jax.Array
    is_divergent: jax.Array
    energy: jax.Array
    num_grad_evals: jax.Array
    tree_depth: jax.Array
    is_turning: jax.Array


class _Leaf(NamedTuple):
    z: jax.Array
    p: jax.Array
    logdensity: jax.Array
    grad: jax.Array


class _Proposal(NamedTuple):
    z: jax.Array
    logdensity: jax.Array
    grad: jax.Array
    energy: jax.Array


def nuts_init(position, logdensity_fn) -> State:
    """Start NUTS at ``position``; a non-finite log-density or gradient there is a ``ValueError``."""
    return init_with_grad(position, logdensity_fn)


def _is_turning(rho, v_left, v_right):
    return (jnp.dot(v_left, rho) <= 0) | (jnp.dot(v_right, rho) <= 0)


def _select(pred, a, b):
    return jax.tree_util.tree_map(lambda x, y: jnp.where(pred, x, y), a, b)


def nuts_step(
    key,
    state: State,
    logdensity_fn,
    step_size,
    inverse_mass_matrix=None,
    max_tree_depth: int = 10,
    max_energy_error: float = 1000.0,
):
    """One NUTS transition (multinomial sampling, generalized U-turn, divergence detection).

    Args:
      key: a JAX key.
      state: a :class:`~ulam.mcmc.State` from :func:`nuts_init` or a previous step.
      logdensity_fn: the log of the (unnormalized) target density.
      step_size: leapfrog step size.
      inverse_mass_matrix: diagonal (1-D) or dense (2-D) Σ; ``None`` is the identity.
      max_tree_depth: at most ``2**max_tree_depth - 1`` leapfrog steps per transition.
      max_energy_error: an energy error above this is a divergence.

    Example:
      >>> import jax, jax.numpy as jnp
      >>> from ulam.mcmc import nuts_init, nuts_step
      >>> logp = lambda x: -0.5 * jnp.sum(x**2)
      >>> s, info = nuts_step(jax.random.key(0), nuts_init(jnp.zeros(3), logp), logp, 0.5)
      >>> int(info.tree_depth) >= 1
      True
    """
    max_tree_depth = checks.count("max_tree_depth", max_tree_depth)
    check_step_size(step_size)
    checks.positive("max_energy_error", max_energy_error)
    z0, unravel, value_and_grad = flat_logdensity(logdensity_fn, state.position)
    g0 = ravel(state.logdensity_grad)
    m = metric(inverse_mass_matrix)
    dtype = z0.dtype
    k_mom, key = jax.random.split(key)
    p0 = m.sample_momentum(k_mom, z0)
    energy0 = -state.logdensity + m.kinetic_energy(p0)
    leaf0 = _Leaf(z0, p0, state.logdensity, g0)
    levels = jnp.arange(1, max_tree_depth + 1)
    level_sizes = jnp.left_shift(1, levels)
    ckpt0 = jnp.zeros((max_tree_depth,) + z0.shape, dtype)

    def build_subtree(key, start: _Leaf, signed_step, depth):
        num_leaves = jnp.left_shift(1, depth)

        def cond(c):
            i, _, _, _, _, _, _, turning, divergent, _, _, _ = c
            return (i < num_leaves) & ~turning & ~divergent

        def body(c):
            i, leaf, prop, log_w, rho, ck_v, ck_rho, turning, divergent, sum_acc, n, key = c
            key, k_take = jax.random.split(key)
            z, p, ld, g = leapfrog(value_and_grad, leaf.z, leaf.p, leaf.grad, signed_step, m.velocity)
            new_leaf = _Leaf(z, p, ld, g)
            energy = -ld + m.kinetic_energy(p)
            delta = energy - energy0
            delta = jnp.where(jnp.isnan(delta), jnp.inf, delta)
            divergent = delta > max_energy_error
            leaf_log_w = -delta
            new_log_w = jnp.logaddexp(log_w, leaf_log_w)
            take = jnp.log(jax.random.uniform(k_take, dtype=dtype)) < leaf_log_w - new_log_w
            prop = _select(take, _Proposal(z, ld, g, energy), prop)
            # Open the sub-subtrees that start at this leaf, then close those that end here.
            # ck_v holds the velocity Σp at each open sub-subtree's first leaf.
            v_right = m.velocity(p)
            starts = (i % level_sizes) == 0
            ck_v = jnp.where(starts[:, None], v_right[None, :], ck_v)
            ck_rho = jnp.where(starts[:, None], rho[None, :], ck_rho)
            rho = rho + p
            ends = ((i + 1) % level_sizes == 0) & (levels <= depth)
            rho_sub = rho[None, :] - ck_rho
            turn = (jnp.sum(ck_v * rho_sub, -1) <= 0) | (rho_sub @ v_right <= 0)
            turning = jnp.any(ends & turn)
            sum_acc = sum_acc + jnp.minimum(1.0, jnp.exp(-delta))
            return (i + 1, new_leaf, prop, new_log_w, rho, ck_v, ck_rho, turning, divergent, sum_acc, n + 1, key)

        init = (
            jnp.zeros((), jnp.int32),
            start,
            _Proposal(start.z, start.logdensity, start.grad, energy0),
            jnp.asarray(-jnp.inf, dtype),
            jnp.zeros_like(z0),
            ckpt0,
            ckpt0,
            jnp.zeros((), bool),
            jnp.zeros((), bool),
            jnp.zeros((), dtype),
            jnp.zeros((), jnp.int32),
            key,
        )
        _, end, prop, log_w, rho, _, _, turning, divergent, sum_acc, n, _ = jax.lax.while_loop(cond, body, init)
        return end, prop, log_w, rho, turning, divergent, sum_acc, n

    def cond(c):
        depth, _, _, _, _, _, turning, divergent, _, _, _ = c
        return (depth < max_tree_depth) & ~turning & ~divergent

    def body(c):
        depth, left, right, prop, log_w, rho, turning, divergent, sum_acc, n, key = c
        key, k_dir, k_sub, k_merge = jax.random.split(key, 4)
        forward = jax.random.bernoulli(k_dir)
        start = _select(forward, right, left)
        signed_step = jnp.where(forward, step_size, -step_size)
        end, sub_prop, sub_log_w, sub_rho, sub_turn, sub_div, sub_acc, sub_n = build_subtree(
            k_sub, start, signed_step, depth
        )
        valid = ~sub_turn & ~sub_div
        take = valid & (jnp.log(jax.random.uniform(k_merge, dtype=dtype)) < sub_log_w - log_w)
        prop = _select(take, sub_prop, prop)
        log_w = jnp.where(valid, jnp.logaddexp(log_w, sub_log_w), log_w)
        rho = jnp.where(valid, rho + sub_rho, rho)
        left = _select(valid & ~forward, end, left)
        right = _select(valid & forward, end, right)
        whole_turn = _is_turning(rho, m.velocity(left.p), m.velocity(right.p))
        turning = jnp.where(valid, whole_turn, sub_turn)
        return (depth + 1, left, right, prop, log_w, rho, turning, sub_div, sum_acc + sub_acc, n + sub_n, key)

    init = (
        jnp.zeros((), jnp.int32),
        leaf0,
        leaf0,
        _Proposal(z0, state.logdensity, g0, energy0),
        jnp.zeros((), dtype),
        p0,
        jnp.zeros((), bool),
        jnp.zeros((), bool),
        jnp.zeros((), dtype),
        jnp.zeros((), jnp.int32),
        key,
    )
    depth, _, _, prop, _, _, turning, divergent, sum_acc, n, _ = jax.lax.while_loop(cond, body, init)
    new_state = State(unravel(prop.z), prop.logdensity, unravel(prop.grad))
    info = NUTSInfo(
        acceptance_rate=sum_acc / jnp.maximum(n, 1).astype(dtype),
        is_divergent=divergent,
        energy=prop.energy,
        num_grad_evals=n,
        tree_depth=depth,
        is_turning=turning,
    )
    return new_state, info


def _unit_step_size(dim: int) -> float:
    return 1.0


def nuts_kernel(max_tree_depth: int = 10, max_energy_error: float = 1000.0) -> MCMCKernel:
    """NUTS as an adaptable :class:`~ulam.mcmc.MCMCKernel` (step size and Σ tuned by the driver's warm-up).

    Example:
      >>> import jax, jax.numpy as jnp
      >>> from ulam import mcmc
      >>> logp = lambda x: -0.5 * jnp.sum(x**2)
      >>> res = mcmc.sample(logp, jax.random.key(0), jnp.zeros((2, 2)), kernel=mcmc.nuts_kernel(max_tree_depth=5),
      ...                   num_chains=2, num_warmup=100, num_draws=100, progress=False)
      >>> res.flat_draws.shape
      (2, 100, 2)
    """
    checks.count("max_tree_depth", max_tree_depth)
    checks.positive("max_energy_error", max_energy_error)
    options = (("max_energy_error", float(max_energy_error)), ("max_tree_depth", int(max_tree_depth)))
    return MCMCKernel(nuts_init, nuts_step, options, target_acceptance=0.8, step_size_search=True,
                      default_step_size=_unit_step_size, name="nuts")
