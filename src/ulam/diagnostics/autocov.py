r"""Autocovariance and autocorrelation by FFT, and Geyer's initial-monotone-sequence ESS of chains."""

from __future__ import annotations

import math

import jax.numpy as jnp
from jax import lax

from ulam.diagnostics.arrays import float_array, sample_axis_last

__all__ = ["autocovariance", "autocorrelation", "geyer_ess"]


def fft_length(n: int) -> int:
    """A power of two >= 2n, so the circular correlation has no wrap-around."""
    return 1 << int(2 * n - 1).bit_length()


def autocovariance(x, axis: int = -1):
    r"""Autocovariance at every lag, by FFT.

    .. math::
        \hat\gamma_t = \frac1n \sum_{i=1}^{n-t} (x_i - \bar x)(x_{i+t} - \bar x),
        \qquad t = 0, \dots, n-1,

    (the biased, 1/n, estimator Geyer 1992 and Stan use: it keeps the sequence
    positive definite), computed in O(n log n) by zero-padded FFT.

    Example:
      >>> import jax.numpy as jnp
      >>> from ulam.diagnostics import autocovariance
      >>> [round(float(v), 6) for v in autocovariance(jnp.array([1.0, -1.0, 1.0, -1.0]))]
      [1.0, -0.75, 0.5, -0.25]
    """
    x = float_array(x, "x")
    x = sample_axis_last(x, axis, "x")
    n = x.shape[-1]
    centered = x - jnp.mean(x, axis=-1, keepdims=True)
    spectrum = jnp.fft.rfft(centered, n=fft_length(n), axis=-1)
    acov = jnp.fft.irfft(spectrum * jnp.conj(spectrum), n=fft_length(n), axis=-1)[..., :n] / n
    return jnp.moveaxis(acov.astype(x.dtype), -1, axis)


def autocorrelation(x, axis: int = -1):
    r"""Autocorrelation :math:`\hat\rho_t = \hat\gamma_t / \hat\gamma_0` at every lag, by FFT.

    See :func:`autocovariance`. NaN for a constant sequence.

    Example:
      >>> import jax.numpy as jnp
      >>> from ulam.diagnostics import autocorrelation
      >>> [round(float(v), 6) for v in autocorrelation(jnp.array([1.0, -1.0, 1.0, -1.0]))]
      [1.0, -0.75, 0.5, -0.25]
    """
    acov = autocovariance(x, axis)
    acov = jnp.moveaxis(acov, axis, -1)
    return jnp.moveaxis(acov / acov[..., :1], -1, axis)


def geyer_ess(chains):
    r"""ESS of a (chains, draws) array by Geyer's initial monotone sequence.

    Follows Vehtari et al. (2021), Sec. 3.2 (Stan's estimator) with ArviZ's exact
    truncation: combined autocorrelation
    :math:`\hat\rho_t = 1 - (W - \overline{\hat\gamma_t}) / \widehat{\mathrm{var}}^+`,
    pair sums :math:`P_k = \hat\rho_{2k} + \hat\rho_{2k+1}` kept while positive
    (initial positive sequence) and made non-increasing (initial monotone
    sequence, Geyer 1992), :math:`\hat\tau = -1 + 2\sum_{k<K} P_k + \hat\rho_{2K}^{+}`,
    and ESS :math:`= MN / \max(\hat\tau, 1/\log_{10}(MN))` (the cap at
    :math:`MN\log_{10}(MN)` for antithetic chains).
    """
    dtype = chains.dtype
    m, n = chains.shape
    total = m * n
    acov = autocovariance(chains, axis=-1)
    chain_mean = jnp.mean(chains, axis=1)
    mean_var = jnp.mean(acov[:, 0]) * n / (n - 1.0)
    var_plus = mean_var * (n - 1.0) / n
    if m > 1:
        var_plus = var_plus + jnp.var(chain_mean, ddof=1)
    rho = 1.0 - (mean_var - jnp.mean(acov, axis=0)) / var_plus
    rho = rho.at[0].set(1.0)
    num_pairs = n // 2
    pair = rho[0 : 2 * num_pairs : 2] + rho[1 : 2 * num_pairs : 2]
    # the sum is over pairs 0..K-1, K the first pair that is not positive,
    # and at most the number of pairs that fit before lag n - 3
    max_pairs = max(0, -(-(n - 4) // 2))
    idx = jnp.arange(num_pairs)
    stop = ~(pair > 0) | (idx >= max_pairs)
    num_kept = jnp.argmax(stop)
    kept = idx < num_kept
    monotone = lax.cummin(jnp.where(kept, pair, jnp.inf))
    pair_sum = jnp.sum(jnp.where(kept, monotone, 0.0))
    # the first dropped pair's even lag still counts when positive (or when
    # the pair itself was non-negative), as in Stan and ArviZ
    last_even = rho[2 * num_kept]
    last_pair = pair[num_kept]
    extra = jnp.where(
        num_kept == 0,
        1.0,
        jnp.where((last_pair >= 0) | (last_even > 0), last_even, 0.0),
    )
    tau = -1.0 + 2.0 * pair_sum + extra
    floor = 1.0 / math.log10(total)
    tau = jnp.where(floor > tau, floor, tau)
    ess = total / tau
    ess = jnp.where(jnp.isnan(rho[1]), jnp.nan, ess)
    # constant draws: every draw is as good as independent (ArviZ's convention)
    spread = jnp.max(chains) - jnp.min(chains)
    ess = jnp.where(spread < jnp.finfo(dtype).resolution, float(total), ess)
    ess = jnp.where(jnp.any(jnp.isnan(chains)), jnp.nan, ess)
    return ess.astype(dtype)

