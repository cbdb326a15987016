"""MCMC: pure kernels, warm-up adaptation, and a multi-chain driver with diagnostics.

Kernels are ``init(position, logdensity_fn) -> state`` / ``step(key, state, logdensity_fn,
...) -> (state, info)`` pairs over NamedTuple states: random-walk Metropolis, MALA, ULA,
preconditioned Langevin, HMC, NUTS, SGLD, SGHMC, elliptical slice sampling.
:func:`sample` runs many chains with adaptation in one compiled, cached program.
:mod:`ulam.mcmc.averaging` has Langevin dynamics on the sphere with iterate averaging
(Wei, Damian & Lee 2026).
"""

from ulam.mcmc.adaptation import (
    dual_averaging_init,
    dual_averaging_step_size,
    dual_averaging_update,
    find_reasonable_step_size,
    regularized_inverse_mass_matrix,
    welford_covariance,
    welford_init,
    welford_update,
    window_schedule,
)
from ulam.mcmc.base import Kernel, SampleInfo, State, leapfrog, metric
from ulam.mcmc.driver import Run, Sampler, load_checkpoint, sample, save_checkpoint
from ulam.mcmc.elliptical_slice import (
    EllipticalSliceState,
    elliptical_slice,
    elliptical_slice_init,
    elliptical_slice_step,
)
from ulam.mcmc.hmc import hmc, hmc_init, hmc_step
from ulam.mcmc.langevin import (
    langevin_init,
    mala,
    mala_step,
    preconditioned_langevin,
    preconditioned_langevin_step,
    ula,
    ula_step,
)
from ulam.mcmc.nuts import NUTSInfo, nuts, nuts_init, nuts_step
from ulam.mcmc.results import MCMCResult, StreamingResult, Summary, chain_expectation
from ulam.mcmc.rwm import RWMState, rwm, rwm_init, rwm_step
from ulam.mcmc.sgmcmc import (
    SGHMCState,
    SGLDState,
    minibatch_gradient,
    run_sgmcmc,
    sample_minibatch,
    sghmc,
    sghmc_init,
    sghmc_step,
    sgld,
    sgld_init,
    sgld_step,
)

__all__ = [name for name in dir() if not name.startswith("_") and name not in {"adaptation"}]
