"""Sequential Monte Carlo: resampling, Feynman–Kac models, particle filters, smoothers, samplers.

The whole toolkit (Cardoso et al. 2023, *State and parameter learning with PaRIS
particle Gibbs*; Chopin & Papaspiliopoulos 2020, *An Introduction to Sequential
Monte Carlo*) in JAX: every algorithm is a pure function over explicit keys,
one ``lax.scan`` over time, and returns :class:`ulam.Estimate` values.
"""

from ulam.smc.resampling import (
    RESAMPLERS,
    effective_sample_size,
    get_resampler,
    multinomial_resample,
    normalize_log_weights,
    offspring_counts,
    resample_if,
    residual_resample,
    ssp_resample,
    stratified_resample,
    systematic_resample,
)
from ulam.smc.models import Auxiliary, Bootstrap, FeynmanKac, Guided, StateSpaceModel, is_missing, simulate
from ulam.smc.filtering import FilterResult, ParticleHistory, run_filter, weighted_mean_and_se
from ulam.smc.kalman import (
    KalmanResult,
    LinearGaussianModel,
    SmootherResult,
    kalman_filter,
    linear_gaussian_ssm,
    rts_smoother,
)
from ulam.smc.backward import backward_indices, backward_sample, smoothing_expectation
from ulam.smc.paris import (
    PaRISResult,
    PPGResult,
    conditional_smc,
    initial_reference,
    paris,
    particle_gibbs,
    ppg,
    ppg_step,
    trace_reference,
)
from ulam.smc.tempering import TemperedResult, tempered_smc
from ulam.smc.learning import LearningResult, fisher_score_functionals, markov_score_climbing, score_ascent

__all__ = [
    "RESAMPLERS",
    "effective_sample_size",
    "get_resampler",
    "multinomial_resample",
    "normalize_log_weights",
    "offspring_counts",
    "resample_if",
    "residual_resample",
    "ssp_resample",
    "stratified_resample",
    "systematic_resample",
    "Auxiliary",
    "Bootstrap",
    "FeynmanKac",
    "Guided",
    "StateSpaceModel",
    "is_missing",
    "simulate",
    "FilterResult",
    "ParticleHistory",
    "run_filter",
    "weighted_mean_and_se",
    "KalmanResult",
    "LinearGaussianModel",
    "SmootherResult",
    "kalman_filter",
    "linear_gaussian_ssm",
    "rts_smoother",
    "backward_indices",
    "backward_sample",
    "smoothing_expectation",
    "PaRISResult",
    "PPGResult",
    "conditional_smc",
    "initial_reference",
    "paris",
    "particle_gibbs",
    "ppg",
    "ppg_step",
    "trace_reference",
    "TemperedResult",
    "tempered_smc",
    "LearningResult",
    "fisher_score_functionals",
    "markov_score_climbing",
    "score_ascent",
]
