"""MCMC: kernel objects, warm-up adaptation as a transform, and a multi-chain driver with diagnostics.

An adaptable kernel is an :class:`MCMCKernel`: pure ``init(position, logdensity_fn)`` and
``step(key, state, logdensity_fn, step_size, inverse_mass_matrix)`` over NamedTuple states
(built-in: :func:`nuts_kernel`, :func:`hmc_kernel`, :func:`mala_kernel`, :func:`rwm_kernel`,
:func:`ula_kernel`). :func:`window_adaptation` tunes the step size and inverse mass matrix of
any of them; :func:`sample` runs many chains with that adaptation in one compiled, cached
program; :func:`run_kernel` is the bare loop of one chain over a ready :class:`Kernel`
(elliptical slice sampling, SGLD, SGHMC, or an MCMCKernel after :meth:`MCMCKernel.bind`).
:mod:`ulam.mcmc.averaging` has Langevin dynamics on the sphere with iterate averaging
(Wei, Damian & Lee 2026).
"""

from ulam.mcmc.adaptation import (
    WindowAdaptation,
    WindowAdaptationState,
    dual_averaging_init,
    dual_averaging_step_size,
    dual_averaging_update,
    find_reasonable_step_size,
    pooled_inverse_mass_matrix,
    regularized_inverse_mass_matrix,
    welford_covariance,
    welford_init,
    welford_update,
    window_adaptation,
    window_schedule,
)
from ulam.mcmc.base import Kernel, MCMCKernel, SampleInfo, State, leapfrog, metric
from ulam.mcmc.driver import (
    Checkpoint,
    Run,
    Sampler,
    Streaming,
    load_checkpoint,
    run_fingerprint,
    run_kernel,
    sample,
    save_checkpoint,
)
from ulam.mcmc.elliptical_slice import (
    EllipticalSliceState,
    elliptical_slice_init,
    elliptical_slice_kernel,
    elliptical_slice_step,
)
from ulam.mcmc.hmc import hmc_init, hmc_kernel, hmc_step
from ulam.mcmc.langevin import (
    langevin_init,
    mala_kernel,
    mala_step,
    preconditioned_langevin_kernel,
    preconditioned_langevin_step,
    ula_kernel,
    ula_step,
)
from ulam.mcmc.nuts import NUTSInfo, nuts_init, nuts_kernel, nuts_step
from ulam.mcmc.results import MCMCResult, StreamingResult, Summary, chain_expectation
from ulam.mcmc.rwm import RWMState, rwm_init, rwm_kernel, rwm_step
from ulam.mcmc.sgmcmc import (
    SGHMCState,
    SGLDState,
    minibatch_gradient,
    run_sgmcmc,
    sample_minibatch,
    sghmc_init,
    sghmc_kernel,
    sghmc_step,
    sgld_init,
    sgld_kernel,
    sgld_step,
)

__all__ = [
    # driver
    "sample",
    "run_kernel",
    "Sampler",
    "Run",
    "Streaming",
    "Checkpoint",
    "run_fingerprint",
    "save_checkpoint",
    "load_checkpoint",
    # kernel protocol
    "MCMCKernel",
    "Kernel",
    "State",
    "SampleInfo",
    "metric",
    "leapfrog",
    # kernels
    "nuts_kernel",
    "nuts_init",
    "nuts_step",
    "NUTSInfo",
    "hmc_kernel",
    "hmc_init",
    "hmc_step",
    "mala_kernel",
    "mala_step",
    "ula_kernel",
    "ula_step",
    "langevin_init",
    "preconditioned_langevin_kernel",
    "preconditioned_langevin_step",
    "rwm_kernel",
    "rwm_init",
    "rwm_step",
    "RWMState",
    "elliptical_slice_kernel",
    "elliptical_slice_init",
    "elliptical_slice_step",
    "EllipticalSliceState",
    "sgld_kernel",
    "sgld_init",
    "sgld_step",
    "SGLDState",
    "sghmc_kernel",
    "sghmc_init",
    "sghmc_step",
    "SGHMCState",
    "minibatch_gradient",
    "sample_minibatch",
    "run_sgmcmc",
    # adaptation
    "window_adaptation",
    "WindowAdaptation",
    "WindowAdaptationState",
    "window_schedule",
    "pooled_inverse_mass_matrix",
    "dual_averaging_init",
    "dual_averaging_update",
    "dual_averaging_step_size",
    "find_reasonable_step_size",
    "welford_init",
    "welford_update",
    "welford_covariance",
    "regularized_inverse_mass_matrix",
    # results
    "MCMCResult",
    "StreamingResult",
    "Summary",
    "chain_expectation",
]
