r"""Programmable variational inference: objectives as programs with per-choice gradient strategies.

ELBO, IWAE(K), VIMCO, doubly-reparameterized IWAE (DReG), reweighted wake-sleep (wake-p, wake-q),
hierarchical VI with approximate marginalisation (HVI, IWHVI, DIWHVI), SIR as a sampler and as an
approximate-normalisation guide (``SIRGuide``), and an Optax ``fit``
loop. After Becker, Lew, Wang, Ghavami, Huot, Rinard & Mansinghka, *Probabilistic Programming with
Programmable Variational Inference* (PLDI 2024). Models are log-joints ``log_joint(z, theta, *data)``,
guides ``guide(phi, *data) -> distribution``; parameters are the pair ``(theta, phi)``. The IWAE-type
count ``K`` is ``num_importance_samples`` everywhere (``num_particles`` is its deprecated name, one
release); ``num_samples`` counts independent draws of an estimate; the key follows the parameters.
New objectives are built with :func:`objective_from_program` and :func:`summed_log_prob`.
"""

from ulam.vi.fitting import FitResult, fit, make_step, make_update
from ulam.vi.hierarchical import HierarchicalGuide, diwhvi, hierarchical_elbo, hvi, iwhvi
from ulam.vi.objectives import (
    Objective,
    SIRGuide,
    check_num_importance_samples,
    check_vi_params,
    elbo,
    iwae,
    iwae_dreg,
    log_mean_exp,
    objective_from_program,
    reweighted_wake_sleep,
    sir_sample,
    summed_log_prob,
    vimco,
)

__all__ = [
    "Objective",
    "elbo",
    "iwae",
    "vimco",
    "iwae_dreg",
    "reweighted_wake_sleep",
    "sir_sample",
    "SIRGuide",
    "HierarchicalGuide",
    "hierarchical_elbo",
    "hvi",
    "iwhvi",
    "diwhvi",
    "fit",
    "make_step",
    "make_update",
    "FitResult",
    "check_vi_params",
    "check_num_importance_samples",
    "log_mean_exp",
    "summed_log_prob",
    "objective_from_program",
]
