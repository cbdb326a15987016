r"""Pareto smoothed importance sampling: :func:`psis_smooth`, :func:`pareto_khat` and the streaming :func:`pareto_khat_from_tail`."""

from __future__ import annotations

import math
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
from jax.scipy.special import logsumexp

from ulam.deprecation import renamed_keywords
from ulam.diagnostics.arrays import float_array, sample_axis_last

__all__ = ["psis_tail_length", "pareto_khat_from_tail", "psis_smooth", "pareto_khat"]


@renamed_keywords(n="num_samples")
def psis_tail_length(num_samples: int, r_eff: float = 1.0) -> int:
    """M = ceil(min(n/5, 3 sqrt(n / r_eff))), the number of tail draws PSIS fits among ``num_samples`` (n).

    Example:
      >>> psis_tail_length(1000)
      95
    """
    n = num_samples
    return int(np.ceil(min(n / 5.0, 3.0 * (n / r_eff) ** 0.5)))


def _gpd_fit(y, valid, n_valid):
    r"""Zhang & Stephens (2009) empirical-Bayes fit of a generalized Pareto to ``y``.

    ``y`` is sorted ascending; only the entries where ``valid`` holds (the last
    ``n_valid`` ones) are data. Returns ``(k, sigma)``, with ArviZ's weakly
    informative prior on ``k`` (10 pseudo-observations at 1/2) applied to k.
    """
    dtype = y.dtype
    size = y.shape[0]
    eps = jnp.finfo(dtype).eps
    nf = n_valid.astype(dtype)
    y = jnp.where(valid, y, 0.0)
    offset = size - n_valid
    # Grid of candidate b = -k / sigma values (Zhang & Stephens 2009, Sec. 3):
    # m = 30 + floor(sqrt(n)) points; the static grid is as long as it can get,
    # and the points beyond the dynamic m are masked out.
    grid_size = 30 + int(math.isqrt(size))
    m_est = 30.0 + jnp.floor(jnp.sqrt(nf))
    j = jnp.arange(1, grid_size + 1, dtype=dtype)
    b_valid = j <= m_est
    quartile = y[offset + jnp.floor(nf / 4.0 + 0.5).astype(offset.dtype) - 1]
    b = 1.0 - jnp.sqrt(m_est / (j - 0.5))
    b = b / (3.0 * quartile) + 1.0 / y[-1]
    b = jnp.where(b_valid, b, 0.0)
    # profile log-likelihood of each b
    k_of_b = jnp.sum(jnp.where(valid[None, :], jnp.log1p(-b[:, None] * y[None, :]), 0.0), axis=1) / nf
    log_lik = nf * (jnp.log(-(b / k_of_b)) - k_of_b - 1.0)
    diff = jnp.where(b_valid[None, :], jnp.exp(log_lik[None, :] - log_lik[:, None]), 0.0)
    weights = 1.0 / jnp.sum(diff, axis=1)
    # drop negligible weights, then normalise
    weights = jnp.where(b_valid & (weights >= 10 * eps), weights, 0.0)
    weights = weights / jnp.sum(weights)
    b_post = jnp.sum(b * weights)
    k_post = jnp.sum(jnp.where(valid, jnp.log1p(-b_post * y), 0.0)) / nf
    sigma = -k_post / b_post
    prior_k = 10.0
    k_post = (nf * k_post + prior_k * 0.5) / (nf + prior_k)
    return k_post, sigma


def _gpd_quantile(p, k, sigma):
    """Inverse CDF of the generalized Pareto(k, sigma) at p in (0, 1)."""
    eps = jnp.finfo(p.dtype).eps
    small_k = jnp.abs(k) < eps
    safe_k = jnp.where(small_k, 1.0, k)
    x = jnp.where(small_k, -jnp.log1p(-p), jnp.expm1(-safe_k * jnp.log1p(-p)) / safe_k)
    return jnp.where(sigma > 0, x * sigma, jnp.nan)


def _fit_tail(cutoff, x_tail):
    """GPD fit to the tail log weights ``x_tail`` (ascending, max-shifted) above ``cutoff``.

    The cutoff is the (M+1)-th largest log weight, floored at log(tiny); ties with it
    leave the tail; k is ``inf`` when at most 4 tail points remain (ArviZ's rule).
    """
    cutoff = jnp.maximum(cutoff, jnp.log(jnp.finfo(x_tail.dtype).tiny))
    valid = x_tail > cutoff
    n_valid = jnp.sum(valid)
    k, sigma = _gpd_fit(jnp.exp(x_tail) - jnp.exp(cutoff), valid, jnp.maximum(n_valid, 1))
    k = jnp.where(n_valid > 4, k, jnp.inf)
    return cutoff, valid, n_valid, k, sigma


@renamed_keywords(n="num_samples")
def pareto_khat_from_tail(largest_log_weights, num_samples: int):
    r"""Pareto k-hat from only the :math:`M + 1` largest of ``num_samples`` (n) log weights.

    PSIS looks at nothing else (the tail and its cutoff), so a streaming estimator
    can keep a running top-(M+1) buffer, :math:`M = \lceil\min(n/5, 3\sqrt n)\rceil`,
    and get exactly :func:`pareto_khat` of the full vector.

    Example:
      >>> import jax, jax.numpy as jnp
      >>> lw = jax.random.normal(jax.random.key(0), (1000,))
      >>> top = jax.lax.top_k(lw, psis_tail_length(1000, 1.0) + 1)[0]
      >>> bool(jnp.allclose(pareto_khat_from_tail(top, 1000), pareto_khat(lw), rtol=1e-5))
      True
    """
    x = jnp.sort(jnp.asarray(largest_log_weights))
    x = x - x[-1]
    k = _fit_tail(x[0], x[1:])[3]
    return jnp.where(num_samples > 20, k, jnp.inf)


def _psis_1d(log_weights, tail_len, normalize):
    dtype = log_weights.dtype
    n = log_weights.shape[0]
    x = log_weights - jnp.max(log_weights)
    order = jnp.argsort(x)
    x_sorted = x[order]
    # the cutoff is the (M+1)-th largest log weight, floored at log(tiny)
    tail_idx = order[n - tail_len:]
    x_tail = x_sorted[n - tail_len:]
    cutoff, valid, n_valid, k, sigma = _fit_tail(x_sorted[n - tail_len - 1], x_tail)
    exp_cutoff = jnp.exp(cutoff)
    # replace the tail by the expected order statistics of the fitted GPD
    rank = jnp.arange(tail_len) - (tail_len - n_valid)
    probs = (rank.astype(dtype) + 0.5) / jnp.maximum(n_valid, 1).astype(dtype)
    probs = jnp.clip(probs, 0.25 / tail_len, 1.0 - 0.25 / tail_len)  # masked entries only
    smoothed = jnp.log(_gpd_quantile(probs, k, sigma) + exp_cutoff)
    smoothed = jnp.where(valid & jnp.isfinite(k), smoothed, x_tail)
    x = x.at[tail_idx].set(smoothed)
    x = jnp.where(x > 0, 0.0, x)  # no smoothed weight above the largest raw one
    if normalize:
        x = x - logsumexp(x)
    else:
        x = x + jnp.max(log_weights)
    return x, k


@partial(jax.jit, static_argnames=("tail_len", "normalize"))
def _psis(log_weights, tail_len, normalize):
    batch_shape, n = log_weights.shape[:-1], log_weights.shape[-1]
    flat = log_weights.reshape((-1, n))
    smoothed, k = jax.vmap(lambda lw: _psis_1d(lw, tail_len, normalize))(flat)
    return smoothed.reshape(log_weights.shape), k.reshape(batch_shape)


def _check_psis_input(log_weights, axis, r_eff):
    log_weights = float_array(log_weights, "log_weights")
    log_weights = sample_axis_last(log_weights, axis, "log_weights")
    n = log_weights.shape[-1]
    if n < 2:
        raise ValueError(f"`log_weights` needs at least 2 samples along `axis` for PSIS, got {n}")
    try:
        r_eff = float(r_eff)
    except TypeError as err:
        raise TypeError("`r_eff` must be a Python float (it fixes the tail length)") from err
    if not r_eff > 0:
        raise ValueError(f"`r_eff` must be positive, got {r_eff}")
    return log_weights, psis_tail_length(n, r_eff)


def psis_smooth(log_weights, axis: int = -1, r_eff: float = 1.0, normalize: bool = True):
    r"""Pareto smoothed importance sampling: smoothed log weights and k-hat.

    PSIS (Vehtari, Simpson, Gelman, Yao & Gabry 2024) fits a generalized Pareto
    distribution GPD(k, sigma) to the largest

    .. math:: M = \lceil \min(n/5,\; 3\sqrt{n / r_{\mathrm{eff}}}) \rceil

    weights, shifted by the cutoff weight :math:`w_{(n-M)}` (the (M+1)-th largest),
    with the empirical-Bayes estimator of Zhang & Stephens (2009) and ArviZ's
    prior :math:`\hat k \leftarrow (M \hat k + 10 \cdot 0.5) / (M + 10)`. The
    tail weights are then replaced by the GPD's expected order statistics
    :math:`w_{(n-M+z)} = w_{(n-M)} + F^{-1}_{\hat k,\hat\sigma}((z - 1/2)/M)`,
    capped at the largest raw weight. Matches ``arviz.psislw`` (same tail
    length, cutoff floor ``log(tiny)``, prior, and ``k = inf`` with no
    smoothing when the tail has at most 4 distinct points).

    Args:
      log_weights: log importance weights, the samples along ``axis``.
      axis: the sample axis; other axes are batch axes.
      r_eff: relative MCMC efficiency of the draws (1 for independent draws).
        A Python float: it fixes the static tail length.
      normalize: if True, the smoothed log weights are normalised to sum to 1
        (log-sum-exp 0), as ArviZ returns them.

    Returns:
      ``(smoothed_log_weights, khat)``: the smoothed log weights (sample axis
      moved last) and the Pareto k-hat per batch entry. k-hat < 0.5: the
      weights have finite variance; above ``min(1 - 1/log10(n), 0.7)`` the
      estimate is unreliable (Vehtari et al. 2024, Sec. 3).

    Example:
      >>> import jax
      >>> from ulam.diagnostics import psis_smooth
      >>> lw = jax.random.normal(jax.random.key(0), (1000,))
      >>> smoothed, khat = psis_smooth(lw)
      >>> bool(khat < 0.5)
      True
    """
    log_weights, tail_len = _check_psis_input(log_weights, axis, r_eff)
    return _psis(log_weights, tail_len, bool(normalize))


def pareto_khat(log_weights, axis: int = -1, r_eff: float = 1.0):
    r"""The PSIS Pareto k-hat diagnostic of importance weights.

    The shape parameter of a generalized Pareto distribution fitted (Zhang &
    Stephens 2009, with ArviZ's prior) to the largest
    :math:`M = \lceil\min(n/5, 3\sqrt{n/r_{\mathrm{eff}}})\rceil` weights; see
    :func:`psis_smooth` for the details. Matches ``arviz.psislw(lw)[1]``.
    Interpretation (Vehtari et al. 2024, "Pareto smoothed importance
    sampling"): k-hat < 0.5, finite variance and a reliable estimate; up to
    ``min(1 - 1/log10(n), 0.7)``, usable; above 0.7, the importance-sampling
    estimate cannot be trusted. ``inf`` when n <= 20 (too few tail draws).

    Args:
      log_weights: log importance weights, the samples along ``axis``.
      axis: the sample axis; other axes are batch axes.
      r_eff: relative efficiency of the draws (a Python float).

    Returns:
      k-hat, of the batch shape (a scalar for a 1-D input).

    Example:
      >>> import jax
      >>> from ulam.diagnostics import pareto_khat
      >>> x = jax.random.normal(jax.random.key(0), (4000,))
      >>> # target N(0, 1), proposal N(0, 0.5^2): heavy-tailed weights
      >>> lw = -0.5 * (0.5 * x) ** 2 + 0.5 * x**2
      >>> bool(pareto_khat(lw) > 0.7)
      True
    """
    log_weights, tail_len = _check_psis_input(log_weights, axis, r_eff)
    return _psis(log_weights, tail_len, True)[1]

