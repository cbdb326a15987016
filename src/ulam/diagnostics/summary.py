r"""The MCMC summary columns in one compiled program (:func:`summary_statistics`)."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from ulam.diagnostics.arrays import check_draws, per_coordinate
from ulam.diagnostics.convergence import rhat_2d
from ulam.diagnostics.ess import ess_bulk_2d, ess_mean_2d, ess_tail_2d

__all__ = ["summary_statistics"]


def _summary_2d(draws):
    ess_mean = ess_mean_2d(draws)
    sd = jnp.std(draws, ddof=1)
    return jnp.stack([
        jnp.mean(draws), sd, sd / jnp.sqrt(ess_mean), ess_bulk_2d(draws),
        ess_tail_2d(draws, jnp.asarray(0.05, draws.dtype), jnp.asarray(0.95, draws.dtype)), rhat_2d(draws),
    ])


_SUMMARY_FIELDS = ("mean", "sd", "mcse_mean", "ess_bulk", "ess_tail", "r_hat")


@jax.jit
def _summary(draws):
    stats = per_coordinate(_summary_2d, draws)  # event + (fields,)
    out = {name: stats[..., i] for i, name in enumerate(_SUMMARY_FIELDS)}
    out["rhat"] = out["r_hat"]  # deprecated key, kept one release for callers reading "rhat"
    return out


def summary_statistics(draws):
    r"""Mean, sd, MCSE of the mean, bulk and tail ESS and rank-normalized R-hat, in one compiled program.

    The same numbers as :func:`mcse_mean`, :func:`ess_bulk`, :func:`ess_tail` (probabilities
    0.05 and 0.95) and :func:`~ulam.diagnostics.r_hat` (Vehtari et al. 2021), but compiled once per draws shape
    instead of once per statistic: what an MCMC summary table needs.

    Args:
      draws: array ``(chains, draws, *event)`` with at least 4 draws per chain.

    Returns:
      dict of arrays of shape ``event``: ``mean``, ``sd``, ``mcse_mean``, ``ess_bulk``,
      ``ess_tail``, ``r_hat`` (ArviZ's column names; ``rhat``, the same array, is a deprecated key).

    Example:
      >>> import jax
      >>> from ulam.diagnostics import summary_statistics, ess_bulk
      >>> x = jax.random.normal(jax.random.key(0), (4, 500, 2))
      >>> s = summary_statistics(x)
      >>> bool(jax.numpy.allclose(s["ess_bulk"], ess_bulk(x)))
      True
    """
    return _summary(check_draws(draws))
