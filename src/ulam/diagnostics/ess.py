r"""Effective sample sizes of Markov chains: bulk, tail, mean and quantile ESS (Vehtari et al. 2021)."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from ulam.diagnostics.arrays import check_prob, per_coordinate, tree_apply
from ulam.diagnostics.autocov import geyer_ess
from ulam.diagnostics.ranks import quantile_type7, rank_normalize, split_chains

__all__ = ["ess_bulk", "ess_mean", "ess_quantile", "ess_tail", "ess_bulk_2d", "ess_mean_2d", "ess_quantile_2d",
           "ess_tail_2d"]


def ess_bulk_2d(draws):
    return geyer_ess(rank_normalize(split_chains(draws)))


def ess_mean_2d(draws):
    return geyer_ess(split_chains(draws))


def ess_quantile_2d(draws, prob):
    below = (draws <= quantile_type7(draws, prob)).astype(draws.dtype)
    return geyer_ess(split_chains(below))


def ess_tail_2d(draws, prob_low, prob_high):
    low = ess_quantile_2d(draws, prob_low)
    high = ess_quantile_2d(draws, prob_high)
    return jnp.where(high < low, high, low)


@jax.jit
def _ess_bulk(draws):
    return per_coordinate(ess_bulk_2d, draws)


@jax.jit
def _ess_mean(draws):
    return per_coordinate(ess_mean_2d, draws)


@jax.jit
def _ess_quantile(draws, prob):
    return per_coordinate(ess_quantile_2d, draws, prob)


@jax.jit
def _ess_tail(draws, prob_low, prob_high):
    return per_coordinate(ess_tail_2d, draws, prob_low, prob_high)



def ess_bulk(draws):
    r"""Bulk effective sample size: ESS of the rank-normalized split chains.

    Vehtari et al. (2021), Sec. 3: split every chain in half, replace each draw
    by its normal score :math:`z = \Phi^{-1}((r - 3/8)/(N + 1/4))`, where r is its
    average rank among all N draws, and estimate the ESS of z with Geyer's
    (1992) initial monotone sequence:

    .. math:: \mathrm{ESS} = \frac{MN}{\hat\tau},\quad
        \hat\tau = -1 + 2\sum_{k=0}^{K-1} (\hat\rho_{2k} + \hat\rho_{2k+1}) + \hat\rho_{2K}^+.

    Matches ``arviz.ess(x, method="bulk")``. Constant draws give ``N`` (ArviZ's
    convention); any NaN gives NaN.

    Args:
      draws: array of shape ``(chains, draws)`` or ``(chains, draws, *event)``
        with at least 4 draws per chain, or a pytree of such arrays.

    Returns:
      ESS per event coordinate (shape ``event``), or the pytree of them.

    Example:
      >>> import jax
      >>> from ulam.diagnostics import ess_bulk
      >>> x = jax.random.normal(jax.random.key(0), (4, 500))
      >>> bool(1000 < ess_bulk(x) < 3000)
      True
    """
    return tree_apply(_ess_bulk, draws)


def ess_mean(draws):
    r"""Effective sample size for the mean: Geyer ESS of the split chains, not rank-normalized.

    The classic split-chain ESS (Gelman et al. BDA3; Vehtari et al. 2021, Sec. 3.2),
    :math:`MN/\hat\tau` with Geyer's (1992) initial monotone sequence; the ESS
    that governs the standard error of the mean (:func:`mcse_mean`). Matches
    ``arviz.ess(x, method="mean")``.

    Args:
      draws: ``(chains, draws, *event)`` array or pytree of them.

    Example:
      >>> import jax
      >>> from ulam.diagnostics import ess_mean
      >>> x = jax.random.normal(jax.random.key(0), (2, 1000))
      >>> bool(1000 < ess_mean(x) < 3000)
      True
    """
    return tree_apply(_ess_mean, draws)


def ess_quantile(draws, prob):
    r"""Effective sample size for the ``prob`` quantile.

    The Geyer ESS of the split indicator chains :math:`I(x \le \hat q_p)`, where
    :math:`\hat q_p` is the type-7 sample quantile of all draws (Vehtari et al.
    2021, Sec. 4.3). Matches ``arviz.ess(x, method="quantile", prob=prob)``.

    Example:
      >>> import jax
      >>> from ulam.diagnostics import ess_quantile
      >>> x = jax.random.normal(jax.random.key(0), (4, 500))
      >>> bool(ess_quantile(x, 0.5) > 500)
      True
    """
    prob = check_prob(prob, "prob")
    return tree_apply(lambda d: _ess_quantile(d, jnp.asarray(prob, d.dtype)), draws)


def ess_tail(draws, prob=0.05):
    r"""Tail effective sample size: the smaller of the quantile ESSs at ``prob`` and ``1 - prob``.

    Vehtari et al. (2021), Sec. 4.3: :math:`\min(\mathrm{ESS}(I(x\le\hat q_{p})),
    \mathrm{ESS}(I(x\le\hat q_{1-p})))`, default p = 0.05 (the 5% and 95%
    quantiles). ``prob`` may also be a pair ``(low, high)``. Matches
    ``arviz.ess(x, method="tail", prob=prob)``.

    Example:
      >>> import jax
      >>> from ulam.diagnostics import ess_tail
      >>> x = jax.random.normal(jax.random.key(0), (4, 500))
      >>> bool(ess_tail(x) > 500)
      True
    """
    if isinstance(prob, (tuple, list)):
        if len(prob) != 2:
            raise ValueError(f"`prob` must be a number or a pair (low, high), got {prob!r}")
        low, high = (check_prob(p, "prob") for p in prob)
    else:
        low = check_prob(prob, "prob")
        high = 1.0 - low
    return tree_apply(
        lambda d: _ess_tail(d, jnp.asarray(low, d.dtype), jnp.asarray(high, d.dtype)), draws
    )

