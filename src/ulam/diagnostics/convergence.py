r"""R-hat, one definition per name: :func:`r_hat` is the rank-normalised split R-hat of Vehtari et al.
(2021), ArviZ's ``r_hat`` column; :func:`r_hat_classic` is the classic split R-hat of Gelman et al.
(BDA3, eq. 11.4), without rank normalisation. ``rhat`` is a deprecated alias of :func:`r_hat`.
"""

from __future__ import annotations

import warnings

import jax
import jax.numpy as jnp

from ulam.diagnostics.arrays import per_coordinate, tree_apply
from ulam.diagnostics.ranks import rank_normalize, split_chains

__all__ = ["r_hat", "r_hat_classic", "rhat", "rhat_basic", "rhat_2d"]


def rhat_basic(chains):
    r"""Split-R-hat of (chains, draws): :math:`\sqrt{(B/W + n - 1)/n}` (Gelman et al. BDA3, eq. 11.4)."""
    n = chains.shape[1]
    within = jnp.mean(jnp.var(chains, axis=1, ddof=1))
    between = n * jnp.var(jnp.mean(chains, axis=1), ddof=1)
    out = jnp.sqrt((between / within + n - 1.0) / n)
    # constant input is 0/0 (NaN); say so exactly, whatever the rounding of the means
    return jnp.where(jnp.max(chains) == jnp.min(chains), jnp.nan, out)


def rhat_2d(draws):
    split = split_chains(draws)
    bulk = rhat_basic(rank_normalize(split))
    folded = jnp.abs(split - jnp.median(split))
    tail = rhat_basic(rank_normalize(folded))
    out = jnp.where(tail > bulk, tail, bulk)
    return jnp.where(jnp.any(jnp.isnan(draws)), jnp.nan, out)


@jax.jit
def _rhat(draws):
    if draws.shape[0] < 2:
        # ArviZ's convention: R-hat needs at least two (unsplit) chains
        return jnp.full(draws.shape[2:], jnp.nan, draws.dtype)
    return per_coordinate(rhat_2d, draws)



def r_hat(draws):
    r"""Rank-normalized split R-hat: the larger of the bulk and folded R-hats.

    Vehtari et al. (2021), Sec. 4: with split chains rank-normalized to z,
    :math:`\hat R = \sqrt{(\widehat{\mathrm{var}}^+ / W)} =
    \sqrt{(B/W + n - 1)/n}` (W the mean within-chain variance, B/n the variance
    of the chain means), computed for z (bulk) and for the rank-normalized
    folded draws :math:`|x - \mathrm{median}(x)|` (tails), and
    :math:`\hat R = \max(\hat R_{\rm bulk}, \hat R_{\rm folded})`. Values above
    1.01 signal that the chains have not mixed. Matches
    ``arviz.rhat(x, method="rank")``: NaN for a single chain, or for constant
    draws.

    Example:
      >>> import jax
      >>> from ulam.diagnostics import r_hat
      >>> x = jax.random.normal(jax.random.key(0), (4, 1000))
      >>> bool(r_hat(x) < 1.01)
      True
    """
    return tree_apply(_rhat, draws)



def _classic_2d(draws):
    out = rhat_basic(split_chains(draws))
    return jnp.where(jnp.any(jnp.isnan(draws)), jnp.nan, out)


@jax.jit
def _r_hat_classic(draws):
    if draws.shape[0] < 1:
        return jnp.full(draws.shape[2:], jnp.nan, draws.dtype)
    return per_coordinate(_classic_2d, draws)


def r_hat_classic(draws):
    r"""Classic split R-hat (no rank normalisation): :math:`\sqrt{(B/W + n - 1)/n}` over split chains.

    Gelman et al. (BDA3, eq. 11.4) with each chain split in half (W the mean within-chain
    variance, B/n the variance of the half-chain means). Sensitive to heavy tails, where
    :func:`r_hat` is not; it is what ``arviz.rhat(x, method="split")`` computes. NaN for
    constant draws.

    Example:
      >>> import jax
      >>> from ulam.diagnostics import r_hat_classic
      >>> x = jax.random.normal(jax.random.key(0), (4, 1000))
      >>> bool(r_hat_classic(x) < 1.01)
      True
    """
    return tree_apply(_r_hat_classic, draws)


def rhat(draws):
    """Deprecated alias of :func:`r_hat` (the ArviZ column name); emits a ``DeprecationWarning``.

    Example:
      >>> import jax, warnings
      >>> with warnings.catch_warnings():
      ...     warnings.simplefilter("ignore")
      ...     bool(rhat(jax.random.normal(jax.random.key(0), (4, 100))) < 1.1)
      True
    """
    warnings.warn("ulam.diagnostics.rhat is deprecated; use ulam.diagnostics.r_hat (the same rank-normalised "
                  "split R-hat, named as ArviZ's column)", DeprecationWarning, stacklevel=2)
    return r_hat(draws)
