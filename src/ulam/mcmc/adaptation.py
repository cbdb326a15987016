r"""Warm-up adaptation: dual-averaging step size and Stan's windowed mass-matrix estimate.

* Dual averaging (Nesterov 2009; Hoffman & Gelman 2014, §3.2.1, Algorithm 5): with
  :math:`H_t = \delta - \alpha_t` (target minus observed acceptance),

  .. math::
     \bar H_t = (1-\tfrac{1}{t+t_0})\bar H_{t-1} + \tfrac{1}{t+t_0}H_t,\quad
     \log\epsilon_t = \mu - \tfrac{\sqrt t}{\gamma}\bar H_t,\quad
     \log\bar\epsilon_t = t^{-\kappa}\log\epsilon_t + (1-t^{-\kappa})\log\bar\epsilon_{t-1},

  :math:`\mu = \log(10\epsilon_0)`, :math:`\gamma=0.05`, :math:`t_0=10`, :math:`\kappa=0.75`
  (:math:`\epsilon_0`: the initial step size at the start, the heuristic's step size after a
  window, as in Stan).
* Windowed adaptation (Stan Reference Manual, *HMC algorithm parameters*, "Automatic
  parameter tuning"): a fast initial window (75 steps) adapts only the step size; then slow
  windows of 25, 50, 100, … steps each estimate the posterior (co)variance with Welford's
  algorithm, after which the inverse mass matrix is set to the regularized estimate
  :math:`\frac{n}{n+5}\hat\Sigma + 10^{-3}\frac{5}{n+5}I` and dual averaging restarts; a final
  fast window (50 steps) tunes the step size for the final metric.
"""

from __future__ import annotations

import functools
from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree

__all__ = [
    "DualAveragingState",
    "dual_averaging_init",
    "dual_averaging_update",
    "dual_averaging_step_size",
    "WelfordState",
    "welford_init",
    "welford_update",
    "welford_covariance",
    "regularized_inverse_mass_matrix",
    "window_schedule",
    "find_reasonable_step_size",
    "welford_merge",
    "WindowAdaptationState",
    "WindowAdaptation",
    "window_adaptation",
    "pooled_inverse_mass_matrix",
]


class DualAveragingState(NamedTuple):
    log_step_size: jax.Array
    log_step_size_avg: jax.Array
    h_bar: jax.Array
    t: jax.Array
    mu: jax.Array


def dual_averaging_init(step_size, xp=jnp) -> DualAveragingState:
    """The state before any update. ``xp=numpy`` builds it on the host: outside ``jit``, each
    eager ``jax.numpy`` op would compile a program of its own."""
    step_size = xp.asarray(step_size)
    zero = xp.zeros_like(step_size)
    return DualAveragingState(xp.log(step_size), zero, zero, zero, xp.log(10.0 * step_size))


def dual_averaging_update(
    state: DualAveragingState, acceptance_rate, target=0.8, gamma=0.05, t0=10.0, kappa=0.75
) -> DualAveragingState:
    """One dual-averaging update with the observed acceptance statistic (NaN counts as 0)."""
    acc = jnp.where(jnp.isfinite(acceptance_rate), acceptance_rate, 0.0)
    t = state.t + 1.0
    w = 1.0 / (t + t0)
    h_bar = (1.0 - w) * state.h_bar + w * (target - acc)
    log_eps = state.mu - jnp.sqrt(t) / gamma * h_bar
    eta = t ** (-kappa)
    log_avg = eta * log_eps + (1.0 - eta) * state.log_step_size_avg
    return DualAveragingState(log_eps, log_avg, h_bar, t, state.mu)


def dual_averaging_step_size(state: DualAveragingState, final: bool = False):
    """The step size to use now (``final=False``) or after warm-up (``final=True``: the averaged one)."""
    return jnp.exp(state.log_step_size_avg if final else state.log_step_size)


class WelfordState(NamedTuple):
    count: jax.Array
    mean: jax.Array
    m2: jax.Array  # (d,) for diagonal, (d, d) for dense


def welford_init(dim: int, dense: bool, dtype=jnp.float32, xp=jnp) -> WelfordState:
    """Empty running moments (``xp`` as in :func:`dual_averaging_init`)."""
    m2 = xp.zeros((dim, dim) if dense else (dim,), dtype)
    return WelfordState(xp.zeros((), dtype), xp.zeros((dim,), dtype), m2)


def welford_update(state: WelfordState, x) -> WelfordState:
    """Add one draw ``x`` (shape ``(d,)``) to the running mean and (co)variance (Welford 1962)."""
    count = state.count + 1.0
    delta = x - state.mean
    mean = state.mean + delta / count
    if state.m2.ndim == 2:
        m2 = state.m2 + jnp.outer(x - mean, delta)
    else:
        m2 = state.m2 + (x - mean) * delta
    return WelfordState(count, mean, m2)


def welford_merge(a: WelfordState, b: WelfordState) -> WelfordState:
    """Combine two running estimates (Chan, Golub & LeVeque 1979)."""
    count = a.count + b.count
    safe = jnp.maximum(count, 1.0)
    delta = b.mean - a.mean
    mean = a.mean + delta * b.count / safe
    if a.m2.ndim == 2:
        m2 = a.m2 + b.m2 + jnp.outer(delta, delta) * a.count * b.count / safe
    else:
        m2 = a.m2 + b.m2 + delta**2 * a.count * b.count / safe
    return WelfordState(count, mean, m2)


def welford_covariance(state: WelfordState):
    """The unbiased (co)variance estimate ``m2 / (n - 1)`` of the running sums."""
    return state.m2 / jnp.maximum(state.count - 1.0, 1.0)


def regularized_inverse_mass_matrix(state: WelfordState):
    """Stan's shrunk estimate :math:`\\frac{n}{n+5}\\hat\\Sigma + 10^{-3}\\frac{5}{n+5}I`."""
    n = state.count
    cov = welford_covariance(state)
    shrink = 1e-3 * 5.0 / (n + 5.0)
    if cov.ndim == 2:
        return (n / (n + 5.0)) * cov + shrink * jnp.eye(cov.shape[0], dtype=cov.dtype)
    return (n / (n + 5.0)) * cov + shrink


def window_schedule(num_warmup: int, init_buffer: int = 75, term_buffer: int = 50, base_window: int = 25):
    """Stan's warm-up schedule as two boolean arrays of length ``num_warmup``.

    Returns ``(in_slow_window, window_end)``: whether step ``t`` feeds the mass-matrix
    estimate, and whether the slow window closes at step ``t`` (then the metric is updated).
    When the buffers do not fit, Stan's fallback of 15% / 75% / 10% is used; below 20
    steps only the step size adapts.
    """
    if num_warmup < 0:
        raise ValueError(f"num_warmup: must be non-negative, got {num_warmup}")
    slow = np.zeros(num_warmup, bool)
    end = np.zeros(num_warmup, bool)
    if num_warmup < 20:
        return slow, end
    if init_buffer + base_window + term_buffer > num_warmup:
        init_buffer = int(0.15 * num_warmup)
        term_buffer = int(0.1 * num_warmup)
        base_window = num_warmup - init_buffer - term_buffer
    last_slow = num_warmup - term_buffer
    start, size = init_buffer, base_window
    while start < last_slow:
        stop = min(start + size, last_slow)
        # Stan stretches a slow window to the terminal buffer when the next (twice as long) would
        # not fit, but never the first one (windowed_adaptation::compute_next_window runs only
        # after a window has closed): with buffers 75/50 and base 25, num_warmup = 170 has the
        # windows [75, 100) and [100, 120), not one window [75, 120).
        if start > init_buffer and stop + 2 * size > last_slow:
            stop = last_slow
        slow[start:stop] = True
        end[stop - 1] = True
        start, size = stop, 2 * size
    return slow, end


def find_reasonable_step_size(key, logdensity_and_energy, step_size, max_iter: int = 50):
    r"""Stan's step-size initialization (``base_hmc::init_stepsize``), step for step.

    One leapfrog step with fresh momentum decides the direction (grow when its acceptance
    :math:`e^{-\Delta H}` exceeds 0.8, else shrink); then, each time with fresh momentum, the
    current step size is tried again and doubled (or halved) until its acceptance is on the
    other side of 0.8; that step size is returned. ``logdensity_and_energy(key, step_size)``
    returns the energy change :math:`\Delta H` of one leapfrog step from the current state with
    momentum drawn from ``key`` (the caller binds state and metric); a non-finite change counts
    as a rejection.
    """
    log_target = jnp.log(0.8)

    def log_acc(k, eps):
        delta = logdensity_and_energy(k, eps)
        return jnp.where(jnp.isfinite(delta), -delta, -jnp.inf)

    key, k0 = jax.random.split(key)
    direction = jnp.where(log_acc(k0, step_size) > log_target, 1.0, -1.0)

    def cond(c):
        eps, i, done, _ = c
        return ~done & (i < max_iter)

    def body(c):
        eps, i, _, key = c
        key, k = jax.random.split(key)
        la = log_acc(k, eps)
        crossed = jnp.where(direction > 0, ~(la > log_target), ~(la < log_target))
        return jnp.where(crossed, eps, eps * 2.0**direction), i + 1, crossed, key

    eps, _, _, _ = jax.lax.while_loop(cond, body, (jnp.asarray(step_size), 0, jnp.zeros((), bool), key))
    return eps


# -- adaptation as a transform over any adaptable kernel -------------------------------------


class WindowAdaptationState(NamedTuple):
    """The warm-up state of every chain (leading axis: chains).

    ``dual_averaging`` and ``welford`` hold one estimate per chain (``mode="per_chain"``),
    or per chain for the Welford sums and one for dual averaging (``mode="pooled"``).
    """

    step_size: jax.Array  # (chains,)
    inverse_mass_matrix: jax.Array  # (chains, d) or (chains, d, d)
    dual_averaging: DualAveragingState
    welford: WelfordState


class WindowAdaptation(NamedTuple):
    """Warm-up adaptation as three pure functions (the shape of BlackJAX's ``window_adaptation``).

    * ``init(step_size, inverse_mass_matrix) -> state``: per-chain arrays, ``(chains,)`` and
      ``(chains, d[, d])``; built with NumPy (no compilation).
    * ``update(state, t, key, kernel_states, info) -> state``: after step ``t`` (``info`` is
      that step's info; ``t = -1`` with ``info=None`` before the first step): dual averaging
      and the Welford sums for step ``t``, then, when a slow window closed (or at the start),
      the new metric, the step-size search with ``key`` and a restart of dual averaging.
    * ``final(state) -> (step_size, inverse_mass_matrix)``: what the kernel uses now.
    """

    init: Callable
    update: Callable
    final: Callable


def _robust_pool_step_size(eps):
    # The median chain's step size: a chain stuck far out (acceptance ~0) cannot drag the others.
    return jnp.broadcast_to(jnp.exp(jnp.median(jnp.log(eps))), eps.shape)


def pooled_inverse_mass_matrix(welford: WelfordState, max_ratio: float = 10.0):
    r"""One Σ for all chains from per-chain Welford sums, robust to outlying chains.

    Each chain's within-window (co)variance :math:`\hat\Sigma_c` is scored by its trace
    :math:`s_c`; chains with :math:`|\log s_c - \mathrm{median}_c \log s_c| > \log(\texttt{max_ratio})`
    (a chain stuck or still travelling from a far start) are left out, and the rest are
    averaged with weights :math:`n_c` before Stan's regularization (with :math:`n = \sum n_c`).
    """
    cov = jax.vmap(welford_covariance)(welford)
    trace = jnp.trace(cov, axis1=-2, axis2=-1) if cov.ndim == 3 else jnp.sum(cov, -1)
    log_s = jnp.log(jnp.maximum(trace, 1e-300))
    keep = jnp.abs(log_s - jnp.median(log_s)) <= jnp.log(max_ratio)
    w = jnp.where(keep, welford.count, 0.0)
    n = jnp.sum(w)
    mean_cov = jnp.tensordot(w, cov, axes=1) / jnp.maximum(n, 1.0)
    shrink = 1e-3 * 5.0 / (n + 5.0)
    if mean_cov.ndim == 2:
        return (n / (n + 5.0)) * mean_cov + shrink * jnp.eye(mean_cov.shape[0], dtype=mean_cov.dtype)
    return (n / (n + 5.0)) * mean_cov + shrink


def window_adaptation(
    num_warmup: int,
    *,
    mode: str = "per_chain",
    metric: str = "diag",
    target_acceptance: float = 0.8,
    adapt_step_size: bool = True,
    adapt_mass_matrix: bool = True,
    step_size_search: Callable | None = None,
    search_at_start: bool = True,
) -> WindowAdaptation:
    r"""Stan's windowed warm-up for any :class:`~ulam.mcmc.MCMCKernel` (a pure transform over its parameters).

    Dual averaging drives the step size to ``target_acceptance`` (Hoffman & Gelman 2014,
    Alg. 5); the inverse mass matrix is re-estimated at the end of each slow window of
    :func:`window_schedule` (Stan Reference Manual, "Automatic parameter tuning") and dual
    averaging restarts there. ``mode="per_chain"`` (Stan, NumPyro and BlackJAX's default)
    tunes every chain on its own; ``mode="pooled"`` shares one step size (from the chains'
    *median* acceptance) and one Σ (:func:`pooled_inverse_mass_matrix`, which leaves out
    outlying chains), so one stuck chain cannot spoil the others.

    ``step_size_search(key, kernel_states, step_size, inverse_mass_matrix) -> step_size``
    (per chain) is Stan's initial heuristic, run after each metric update and, with
    ``search_at_start``, before the first step.

    Example:
      >>> import numpy as np
      >>> from ulam.mcmc import window_adaptation
      >>> adapt = window_adaptation(200)
      >>> state = adapt.init(np.ones(2), np.ones((2, 3)))
      >>> [a.shape for a in adapt.final(state)]
      [(2,), (2, 3)]
    """
    warm = int(num_warmup)
    if mode not in ("per_chain", "pooled"):
        raise ValueError(f"mode: expected one of 'per_chain', 'pooled', got {mode!r}")
    pooled = mode == "pooled"
    dense = metric == "dense"
    slow_np, end_np = window_schedule(warm)
    slow = jnp.asarray(np.concatenate([slow_np, [False]]))
    end = jnp.asarray(np.concatenate([end_np, [False]]))
    heuristic = step_size_search is not None and adapt_step_size
    active = warm > 0 and (adapt_step_size or adapt_mass_matrix)

    def init(step_size, inverse_mass_matrix) -> WindowAdaptationState:
        step_size = np.asarray(step_size)
        inv = np.asarray(inverse_mass_matrix)
        c, dim = inv.shape[0], inv.shape[1]
        welford = welford_init(dim, dense, step_size.dtype, xp=np)
        welford = jax.tree_util.tree_map(lambda x: np.broadcast_to(x, (c,) + x.shape).copy(), welford)
        da = dual_averaging_init(step_size[0] if pooled else step_size, xp=np)
        return WindowAdaptationState(step_size, inv, da, welford)

    def retune(state: WindowAdaptationState, t, key, kernel_states):
        inv, welford = state.inverse_mass_matrix, state.welford
        if adapt_mass_matrix:
            if pooled:
                new_inv = jnp.broadcast_to(pooled_inverse_mass_matrix(welford), inv.shape)
            else:
                new_inv = jax.vmap(regularized_inverse_mass_matrix)(welford)
            inv = jnp.where(t > 0, new_inv, inv)
            welford = jax.tree_util.tree_map(jnp.zeros_like, welford)
        eps0 = eps = state.step_size
        if heuristic:
            eps = step_size_search(key, kernel_states, eps, inv)
            if pooled:
                eps = _robust_pool_step_size(eps)
        da = dual_averaging_init(eps[0] if pooled else eps)
        # As Stan: before the first step, dual averaging's shrinkage point is log(10 eps) of the
        # *initial* step size (the heuristic's result is only where it starts); at each window end,
        # that of the heuristic's new step size.
        mu0 = jnp.log(10.0 * (eps0[0] if pooled else eps0))
        da = da._replace(mu=jnp.where(t == 0, mu0, da.mu))
        return WindowAdaptationState(eps, inv, da, welford)

    def observe(state: WindowAdaptationState, t, kernel_states, info):
        in_warmup = t < warm
        if adapt_step_size:
            acc = info.acceptance_rate
            upd = functools.partial(dual_averaging_update, target=target_acceptance)
            if pooled:
                acc = jnp.where(jnp.isfinite(acc), acc, 0.0)
                da = upd(state.dual_averaging, jnp.median(acc))
            else:
                da = jax.vmap(upd)(state.dual_averaging, acc)
            eps = jnp.exp(jnp.where(t == warm - 1, da.log_step_size_avg, da.log_step_size))
            eps = jnp.broadcast_to(eps, state.step_size.shape)
            state = state._replace(
                dual_averaging=jax.tree_util.tree_map(lambda a, b: jnp.where(in_warmup, a, b), da, state.dual_averaging),
                step_size=jnp.where(in_warmup, eps, state.step_size),
            )
        if adapt_mass_matrix:
            x = jax.vmap(lambda s: ravel_pytree(s.position)[0])(kernel_states)
            welford = jax.vmap(welford_update)(state.welford, x)
            take = in_warmup & slow[jnp.minimum(t, warm)]
            state = state._replace(
                welford=jax.tree_util.tree_map(lambda a, b: jnp.where(take, a, b), welford, state.welford)
            )
        return state

    def update(state: WindowAdaptationState, t, key, kernel_states, info) -> WindowAdaptationState:
        if not active:
            return state
        if info is not None:
            state = observe(state, t, kernel_states, info)
        if adapt_mass_matrix or (heuristic and search_at_start):
            nxt = t + 1
            after_window = end[jnp.clip(nxt - 1, 0, warm)] & (nxt > 0) & (nxt <= warm)
            due = after_window | ((nxt == 0) & (heuristic and search_at_start))
            state = jax.lax.cond(due, retune, lambda s, *_: s, state, nxt, key, kernel_states)
        return state

    def final(state: WindowAdaptationState):
        return state.step_size, state.inverse_mass_matrix

    return WindowAdaptation(init, update, final)
