r"""Warm-up adaptation: dual-averaging step size and Stan's windowed mass-matrix estimate.

* Dual averaging (Nesterov 2009; Hoffman & Gelman 2014, §3.2.1, Algorithm 5): with
  :math:`H_t = \delta - \alpha_t` (target minus observed acceptance),

  .. math::
     \bar H_t = (1-\tfrac{1}{t+t_0})\bar H_{t-1} + \tfrac{1}{t+t_0}H_t,\quad
     \log\epsilon_t = \mu - \tfrac{\sqrt t}{\gamma}\bar H_t,\quad
     \log\bar\epsilon_t = t^{-\kappa}\log\epsilon_t + (1-t^{-\kappa})\log\bar\epsilon_{t-1},

  :math:`\mu = \log(10\epsilon_0)`, :math:`\gamma=0.05`, :math:`t_0=10`, :math:`\kappa=0.75`.
* Windowed adaptation (Stan Reference Manual, *HMC algorithm parameters*, "Automatic
  parameter tuning"): a fast initial window (75 steps) adapts only the step size; then slow
  windows of 25, 50, 100, … steps each estimate the posterior (co)variance with Welford's
  algorithm, after which the inverse mass matrix is set to the regularized estimate
  :math:`\frac{n}{n+5}\hat\Sigma + 10^{-3}\frac{5}{n+5}I` and dual averaging restarts; a final
  fast window (50 steps) tunes the step size for the final metric.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

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
        stop = start + size
        # Stan stretches the last slow window when the next one would not fit.
        if stop + 2 * size > last_slow:
            stop = last_slow
        slow[start:stop] = True
        end[stop - 1] = True
        start, size = stop, 2 * size
    return slow, end


def find_reasonable_step_size(key, logdensity_and_energy, step_size, max_iter: int = 50):
    """Stan's step-size initialization: double or halve until one leapfrog step's acceptance crosses 0.8.

    ``logdensity_and_energy(key, step_size)`` returns the energy change of one leapfrog step
    from the current state with fresh momentum (the caller binds state and metric).
    Non-finite energy changes count as rejections.
    """
    log_target = jnp.log(0.8)

    def log_acc(eps):
        delta = logdensity_and_energy(key, eps)
        return jnp.where(jnp.isfinite(delta), -delta, -jnp.inf)

    direction = jnp.where(log_acc(step_size) > log_target, 1.0, -1.0)

    def cond(c):
        eps, i, done = c
        return ~done & (i < max_iter)

    def body(c):
        eps, i, _ = c
        new = eps * 2.0**direction
        la = log_acc(new)
        crossed = jnp.where(direction > 0, la < log_target, la > log_target)
        # Keep the last step size on the good side of the threshold when growing.
        return jnp.where(crossed & (direction > 0), eps, new), i + 1, crossed

    eps, _, _ = jax.lax.while_loop(cond, body, (jnp.asarray(step_size), 0, jnp.zeros((), bool)))
    return eps
