r"""Monte Carlo standard errors of MCMC estimates: of the mean and of a quantile."""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax import lax
from jax.scipy.special import betainc

from ulam.diagnostics.arrays import check_prob, per_coordinate, tree_apply
from ulam.diagnostics.ess import ess_mean_2d, ess_quantile_2d

__all__ = ["mcse_mean", "mcse_quantile", "mcse_mean_2d", "mcse_quantile_2d", "beta_quantile"]


def mcse_mean_2d(draws):
    return jnp.std(draws, ddof=1) / jnp.sqrt(ess_mean_2d(draws))


def beta_quantile(p, a, b, iterations=80):
    """Inverse of the regularized incomplete beta function, by bisection (jit-able)."""

    def body(_, bounds):
        lo, hi = bounds
        mid = 0.5 * (lo + hi)
        below = betainc(a, b, mid) < p
        return jnp.where(below, mid, lo), jnp.where(below, hi, mid)

    zero = jnp.zeros_like(a * b * p)
    lo, hi = lax.fori_loop(0, iterations, body, (zero, zero + 1.0))
    out = 0.5 * (lo + hi)
    return jnp.where(jnp.isnan(a) | jnp.isnan(b), jnp.nan, out)


def mcse_quantile_2d(draws, prob):
    ess = ess_quantile_2d(draws, prob)
    # a central 68.27% interval (+-1 sd) for the quantile's rank from the
    # Beta(ess p + 1, ess (1 - p) + 1) posterior of the cdf at the quantile
    sd_probs = jnp.array([0.1586553, 0.8413447], dtype=draws.dtype)
    ppf = beta_quantile(sd_probs, ess * prob + 1.0, ess * (1.0 - prob) + 1.0)
    sorted_x = jnp.sort(draws.reshape(-1))
    size = sorted_x.shape[0]
    pos = ppf * size - 1.0
    lo = jnp.where(jnp.isnan(pos[0]), 0.0, jnp.maximum(pos[0], 0.0))
    hi = jnp.where(jnp.isnan(pos[1]), size - 1.0, jnp.minimum(pos[1], size - 1.0))
    lo_idx = jnp.floor(lo).astype(jnp.int32)
    hi_idx = jnp.ceil(hi).astype(jnp.int32)
    return (sorted_x[hi_idx] - sorted_x[lo_idx]) / 2.0


@jax.jit
def _mcse_mean(draws):
    return per_coordinate(mcse_mean_2d, draws)


@jax.jit
def _mcse_quantile(draws, prob):
    return per_coordinate(mcse_quantile_2d, draws, prob)



def mcse_mean(draws):
    r"""Monte Carlo standard error of the mean: :math:`\mathrm{sd}(x) / \sqrt{\mathrm{ESS}_{\rm mean}}`.

    sd is the sample standard deviation (ddof=1) of all draws, ESS from
    :func:`ess_mean` (Vehtari et al. 2021, Sec. 3; Geyer 1992). Matches
    ``arviz.mcse(x, method="mean")``.

    Example:
      >>> import jax
      >>> from ulam.diagnostics import mcse_mean
      >>> x = jax.random.normal(jax.random.key(0), (4, 2500))
      >>> bool(0.007 < mcse_mean(x) < 0.014)
      True
    """
    return tree_apply(_mcse_mean, draws)


def mcse_quantile(draws, q):
    r"""Monte Carlo standard error of the ``q`` quantile.

    Vehtari et al. (2021), Sec. 4.4: with :math:`S = \mathrm{ESS}_q` from
    :func:`ess_quantile`, the cdf value at the quantile has approximately a
    :math:`\mathrm{Beta}(Sq + 1, S(1-q) + 1)` distribution; its 15.87% and
    84.13% quantiles :math:`a, b` map to order statistics
    :math:`x_{(\lfloor aN \rfloor)}, x_{(\lceil bN \rceil)}` of all N draws, and
    the MCSE is half their distance. Matches
    ``arviz.mcse(x, method="quantile", prob=q)``.

    Example:
      >>> import jax
      >>> from ulam.diagnostics import mcse_quantile
      >>> x = jax.random.normal(jax.random.key(0), (4, 2500))
      >>> bool(0.005 < mcse_quantile(x, 0.5) < 0.03)
      True
    """
    q = check_prob(q, "q")
    return tree_apply(lambda d: _mcse_quantile(d, jnp.asarray(q, d.dtype)), draws)

