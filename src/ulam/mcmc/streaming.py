r"""Constant-memory running statistics of a chain: batch means with per-batch Welford sums.

For ``num_draws`` draws per chain, draw :math:`k` falls into batch :math:`b = \lfloor kB/n\rfloor`
(:math:`B` batches of nearly equal length). Each batch keeps a count, a mean and a sum of
squared deviations (Welford 1962), so memory is :math:`O(\text{chains}\cdot B\cdot d)` whatever
the chain length. From these the host computes

* the mean and variance (Chan et al. 1979 merge of the batches),
* the Monte Carlo standard error by the method of batch means,
  :math:`\widehat{\mathrm{se}}^2 = \ell\,\widehat{\mathrm{Var}}(\bar x_b)/N` with batch length
  :math:`\ell`, and the effective sample size :math:`N\hat\sigma^2/(\ell\widehat{\mathrm{Var}}(\bar x_b))`
  (Flegal & Jones 2010, *Batch means and spectral variance estimators in MCMC*),
* split :math:`\hat R` from the half-chain means and variances (Gelman et al. 2013, BDA3 §11.4):
  the first and second halves are the first and last :math:`B/2` batches.

Rank-normalization and tail ESS need every draw, so the streaming summary reports the
classic (non-rank) split R-hat and no tail ESS.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

__all__ = ["StreamStats", "stream_init", "stream_update", "stream_summary"]


class StreamStats(NamedTuple):
    count: jax.Array  # (chains, B)
    mean: jax.Array  # (chains, B, d)
    m2: jax.Array  # (chains, B, d)


def stream_init(num_chains: int, num_batches: int, dim: int, dtype=jnp.float32) -> StreamStats:
    if num_batches < 4 or num_batches % 2:
        raise ValueError(f"num_batches: must be an even number >= 4, got {num_batches}")
    return StreamStats(
        jnp.zeros((num_chains, num_batches), dtype),
        jnp.zeros((num_chains, num_batches, dim), dtype),
        jnp.zeros((num_chains, num_batches, dim), dtype),
    )


def stream_update(stats: StreamStats, draw_index, num_draws: int, values) -> StreamStats:
    """Add one draw per chain (``values``: ``(chains, d)``) as draw number ``draw_index``."""
    num_batches = stats.count.shape[1]
    b = (draw_index * num_batches) // num_draws
    count = stats.count[:, b] + 1.0
    mean = stats.mean[:, b]
    delta = values - mean
    mean = mean + delta / count[:, None]
    m2 = stats.m2[:, b] + delta * (values - mean)
    return StreamStats(stats.count.at[:, b].set(count), stats.mean.at[:, b].set(mean), stats.m2.at[:, b].set(m2))


def _merge(count, mean, m2, axis):
    """Merge Welford summaries along ``axis`` (float64, on the host)."""
    n = count.sum(axis=axis)
    w = np.expand_dims(count, -1)
    total_mean = (w * mean).sum(axis=axis) / np.expand_dims(n, -1)
    dev = mean - np.expand_dims(total_mean, axis)
    total_m2 = m2.sum(axis=axis) + (w * dev**2).sum(axis=axis)
    return n, total_mean, total_m2


def stream_summary(stats: StreamStats) -> dict:
    """Host-side statistics from :class:`StreamStats`: mean, sd, mcse, ess, rhat (all per coordinate)."""
    count = np.asarray(stats.count, np.float64)
    mean = np.asarray(stats.mean, np.float64)
    m2 = np.asarray(stats.m2, np.float64)
    chains, batches = count.shape
    n_total, grand_mean, grand_m2 = _merge(count.reshape(-1), mean.reshape(-1, mean.shape[-1]), m2.reshape(-1, m2.shape[-1]), 0)
    var = grand_m2 / (n_total - 1.0)
    # Batch means: each batch mean has variance about sigma_asym^2 / length.
    length = count.mean()
    batch_means = mean.reshape(-1, mean.shape[-1])
    var_bm = length * batch_means.var(axis=0, ddof=1)
    mcse = np.sqrt(var_bm / n_total)
    ess = n_total * var / np.maximum(var_bm, 1e-300)
    # Split R-hat from 2 * chains half-chains.
    half = batches // 2
    halves = [
        _merge(count[:, s], mean[:, s], m2[:, s], 1)
        for s in (slice(0, half), slice(half, batches))
    ]
    h_n = np.concatenate([h[0] for h in halves])
    h_mean = np.concatenate([h[1] for h in halves])
    h_var = np.concatenate([h[2] for h in halves]) / (h_n[:, None] - 1.0)
    n = h_n.mean()
    within = h_var.mean(axis=0)
    between = n * h_mean.var(axis=0, ddof=1)
    var_plus = (n - 1.0) / n * within + between / n
    rhat = np.sqrt(var_plus / within)
    return {
        "mean": grand_mean,
        "sd": np.sqrt(var),
        "mcse_mean": mcse,
        "ess_bulk": ess,
        "ess_tail": np.full_like(ess, np.nan),
        "rhat": rhat,
        "n": n_total,
    }
