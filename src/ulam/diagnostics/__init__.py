r"""Convergence and reliability diagnostics for Monte Carlo draws, in pure JAX.

Two families:

* **Importance weights** (one array of log weights, the sample axis last):
  :func:`kish_ess` (Kish's effective sample size), :func:`pareto_khat` and
  :func:`psis_smooth` (Pareto smoothed importance sampling, PSIS).
* **Markov chains** (draws of shape ``(chains, draws)`` or
  ``(chains, draws, *event)``, or a pytree of such arrays; results have shape
  ``event``): :func:`ess_bulk`, :func:`ess_tail`, :func:`ess_mean`,
  :func:`ess_quantile`, :func:`r_hat` (and the classic :func:`r_hat_classic`), :func:`mcse_mean`, :func:`mcse_quantile`,
  and the helpers :func:`autocovariance`, :func:`autocorrelation`.

Every function is jit-able (static shapes, ``jnp``/``lax`` only, no host
callbacks) and works in float32 and float64. In float64 they agree with ArviZ
0.23.4 (``arviz.ess``, ``arviz.rhat(method="rank")``, ``arviz.mcse``,
``arviz.psislw``) to 1e-6 relative on the same draws; the conventions copied
from ArviZ (and Stan) are stated in each docstring.

Layout (one idea per file): :mod:`~ulam.diagnostics.weights` (Kish ESS),
:mod:`~ulam.diagnostics.psis` (PSIS, Pareto k-hat), :mod:`~ulam.diagnostics.autocov`
(autocovariance, Geyer ESS), :mod:`~ulam.diagnostics.ess` (bulk/tail/mean/quantile ESS),
:mod:`~ulam.diagnostics.convergence` (R-hat), :mod:`~ulam.diagnostics.mcse`,
:mod:`~ulam.diagnostics.summary`, with :mod:`~ulam.diagnostics.arrays` (input checks) and
:mod:`~ulam.diagnostics.ranks` (split chains, rank normalisation) underneath.

References:
  Vehtari, Gelman, Simpson, Carpenter & Bürkner (2021), "Rank-normalization,
  folding, and localization: an improved R-hat for assessing convergence of
  MCMC", Bayesian Analysis 16(2):667-718.
  Geyer (1992), "Practical Markov chain Monte Carlo", Statistical Science 7(4).
  Vehtari, Simpson, Gelman, Yao & Gabry (2024), "Pareto smoothed importance
  sampling", JMLR 25(72).
  Zhang & Stephens (2009), "A new and efficient estimation method for the
  generalized Pareto distribution", Technometrics 51(3).
  Kish (1965), "Survey Sampling", Wiley.
"""

from __future__ import annotations

from ulam.diagnostics.autocov import autocorrelation, autocovariance
from ulam.diagnostics.convergence import r_hat, r_hat_classic, rhat
from ulam.diagnostics.ess import ess_bulk, ess_mean, ess_quantile, ess_tail
from ulam.diagnostics.mcse import mcse_mean, mcse_quantile
from ulam.diagnostics.psis import pareto_khat, pareto_khat_from_tail, psis_smooth, psis_tail_length
from ulam.diagnostics.summary import summary_statistics
from ulam.diagnostics.weights import importance_ess, kish_ess, kish_ess_from_sums

__all__ = [
    "kish_ess",
    "kish_ess_from_sums",
    "importance_ess",
    "pareto_khat",
    "pareto_khat_from_tail",
    "psis_smooth",
    "psis_tail_length",
    "ess_bulk",
    "ess_tail",
    "ess_mean",
    "ess_quantile",
    "r_hat",
    "r_hat_classic",
    "rhat",
    "mcse_mean",
    "mcse_quantile",
    "summary_statistics",
    "autocovariance",
    "autocorrelation",
]
