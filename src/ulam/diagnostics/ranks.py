"""Chain transforms behind the rank-based diagnostics: split chains, average ranks, rank normalisation, type-7 quantiles."""

from __future__ import annotations

import jax.numpy as jnp
from jax.scipy.special import ndtri

__all__ = ["split_chains", "average_ranks", "rank_normalize", "quantile_type7"]


def split_chains(draws):
    """Split each chain into its first and last halves (the middle draw of an odd chain is dropped)."""
    half = draws.shape[1] // 2
    return jnp.concatenate([draws[:, :half], draws[:, -half:]], axis=0)


def average_ranks(x):
    """Ranks 1..N of the entries of ``x`` with ties given their average rank."""
    flat = x.reshape(-1)
    sorted_x = jnp.sort(flat)
    below = jnp.searchsorted(sorted_x, flat, side="left")
    at_or_below = jnp.searchsorted(sorted_x, flat, side="right")
    return ((below + at_or_below + 1) / 2.0).astype(x.dtype).reshape(x.shape)


def rank_normalize(x):
    r"""Rank normalization: :math:`z = \Phi^{-1}((r - 3/8) / (N + 1/4))` (Blom 1958; Vehtari et al. 2021, eq. 14)."""
    size = x.size
    ranks = average_ranks(x)
    return ndtri((ranks - 0.375) / (size + 0.25))


def quantile_type7(x, prob):
    """Sample quantile of all entries of ``x`` by linear interpolation (Hyndman & Fan type 7)."""
    sorted_x = jnp.sort(x.reshape(-1))
    size = sorted_x.shape[0]
    aleph = size * prob + (1.0 - prob)
    k = jnp.floor(jnp.clip(aleph, 1, size - 1))
    gamma = jnp.clip(aleph - k, 0.0, 1.0)
    k = k.astype(jnp.int32)
    return (1.0 - gamma) * sorted_x[k - 1] + gamma * sorted_x[k]

