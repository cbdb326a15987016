"""Bad-input catalog (issue 16): every public entry point, fed the mistakes a new user makes.

One entry is ``Case(id, call, exception type, regex)``: ``call()`` must raise that exception
with a message matching the regex, and the regex NAMES THE ARGUMENT (or the callback) at fault.
The catalog spans the whole public API -- integrate, diagnostics, mcmc, smc, vi, grad,
transport, pde, valuation, harness, sorting, plots -- with wrong shapes, dtypes, ranges,
keys, kinds of object, misspelt options and misbehaving callbacks.

Entries in areas this change could not touch that do not raise the clear error today are in
``XFAIL`` (ONE dict, below), each with the outcome class and what the call gives now; the mark
is ``strict=True``, so fixing the library turns the entry into an XPASS failure: then delete the
entry from ``XFAIL``. ``tools/bad_input_table.py`` imports ``CASES`` and ``XFAIL`` from here and
prints the Markdown table of outcomes.

Every call is tiny (a handful of draws, one- or two-dimensional targets), so the whole file runs
in well under three minutes on one core.
"""

from __future__ import annotations

import dataclasses
import math
import warnings
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np
import numpyro.distributions as dist
import pytest

import ulam
from ulam import checks, diagnostics, grad, harness, mcmc, pde, plots, smc, sorting, transport, valuation, vi

# Outcome classes (the table's vocabulary).
CLEAR = "clear error naming the argument"
THIRD = "understandable third-party error"
CRYPTIC = "cryptic error"
SILENT = "silently wrong result"
NONE = "no error"

# ---------------------------------------------------------------------------------------------
# Entries that do not give the clear error today, in areas owned by other helpers. Value:
# (outcome class today, what the call gives now). Remove an entry once the library is fixed.
# ---------------------------------------------------------------------------------------------
XFAIL: dict[str, tuple[str, str]] = {
    "integrate.monte_carlo.p_is_callable": (CRYPTIC, "TypeError: <lambda>() takes 1 positional argument but 2 were given"),
    "integrate.antithetic.p_is_callable": (CRYPTIC, "AttributeError: 'function' object has no attribute 'batch_shape'"),
    "integrate.quasi_monte_carlo.p_is_callable": (CRYPTIC, "AttributeError: 'function' object has no attribute 'batch_shape'"),
    "integrate.stratified.p_is_callable": (CRYPTIC, "AttributeError: 'function' object has no attribute 'batch_shape'"),
    "integrate.importance_sampling.log_target_is_distribution": (CRYPTIC, "KeyError: 'rng_key'"),
    "estimate.Estimate.stderr_negative": (SILENT, "returns Estimate computed with the invalid input, no error"),
    "estimate.pool.not_estimates": (CRYPTIC, "AttributeError: 'float' object has no attribute 'n'"),
    "diagnostics.rhat.nan": (NONE, "returns ArrayImpl, no error"),
    "diagnostics.pareto_khat.nan_weights": (NONE, "returns ArrayImpl, no error"),
    "diagnostics.importance_ess.nan": (NONE, "returns ArrayImpl, no error"),
    "diagnostics.pareto_khat_from_tail.n_zero": (SILENT, "returns ArrayImpl computed with the invalid input, no error"),
    "mcmc.elliptical_slice.cov_not_psd": (SILENT, "returns ndarray computed with the invalid input, no error"),
    "mcmc.elliptical_slice.mean_wrong_shape": (CRYPTIC, "ValueError: Incompatible types for broadcasting: input type=float32[3] and requested type=float32[2]"),
    "mcmc.welford_init.dim_zero": (NONE, "returns WelfordState, no error"),
    "mcmc.sgld.step_size_negative": (SILENT, "returns Kernel computed with the invalid input, no error"),
    "mcmc.sghmc.friction_negative": (SILENT, "returns Kernel computed with the invalid input, no error"),
    "mcmc.dual_averaging_init.step_size_negative": (NONE, "returns DualAveragingState, no error"),
    "smc.run_filter.fk_is_ssm": (CRYPTIC, "AttributeError: 'StateSpaceModel' object has no attribute 'initial_log_potential'"),
    "smc.run_filter.mean_fn_not_callable": (THIRD, "TypeError: Expected a callable value, got 3"),
    "smc.systematic_resample.log_weights_all_neg_inf": (SILENT, "returns ArrayImpl computed with the invalid input, no error"),
    "smc.multinomial_resample.log_weights_all_neg_inf": (SILENT, "returns ArrayImpl computed with the invalid input, no error"),
    "smc.stratified_resample.log_weights_all_neg_inf": (SILENT, "returns ArrayImpl computed with the invalid input, no error"),
    "smc.residual_resample.log_weights_all_neg_inf": (SILENT, "returns ArrayImpl computed with the invalid input, no error"),
    "smc.ssp_resample.log_weights_all_neg_inf": (SILENT, "returns ArrayImpl computed with the invalid input, no error"),
    "smc.effective_sample_size.nan": (NONE, "returns ArrayImpl, no error"),
    "smc.offspring_counts.num_particles_zero": (NONE, "returns ArrayImpl, no error"),
    "smc.kalman_filter.transition_matrix_wrong_shape": (CRYPTIC, "TypeError: dot_general requires contracting dimensions to have the same shape, got (3,) and (2,)."),
    "smc.LinearGaussianModel.scalar_negative_sigma": (NONE, "returns LinearGaussianModel, no error"),
    "smc.paris.backward_misspelt": (CRYPTIC, "ValueError: method: expected 'auto', 'exact', 'rejection', 'mcmc' or 'hybrid', got 'rejecton'"),
}


@dataclasses.dataclass(frozen=True)
class Case:
    id: str
    call: Callable[[], object]
    exc: type | tuple
    match: str
    text: str = ""  # the call as the table shows it (entries built in loops share one lambda's source)


CASES: list[Case] = []


def case(id: str, exc, match: str):
    """Decorator: register ``fn`` as the call of a catalog entry."""

    def deco(fn):
        CASES.append(Case(id, fn, exc, match))
        return fn

    return deco


def add(id: str, call, exc, match: str, text: str = ""):
    CASES.append(Case(id, call, exc, match, text))


# ---------------------------------------------------------------------------------------------
# Shared tiny fixtures (built once; bad inputs fail before anything heavy is compiled).
# ---------------------------------------------------------------------------------------------
KEY = jax.random.key(0)
N01 = dist.Normal(0.0, 1.0)
SQ = lambda x: x**2  # noqa: E731
LD = lambda x: -0.5 * jnp.sum(x**2)  # noqa: E731
X0 = jnp.zeros(2)
NORMAL_FAMILY = lambda th: dist.Normal(th, 1.0)  # noqa: E731
BERN_FAMILY = lambda th: dist.Bernoulli(logits=th)  # noqa: E731
CAT_FAMILY = lambda th: dist.Categorical(logits=th)  # noqa: E731
F_GRAD = lambda x, th: x**2  # noqa: E731
F_BIN = lambda b, th: (b - 0.45) ** 2  # noqa: E731
LOSS = lambda b: jnp.sum(b)  # noqa: E731

# Bad keys: (label, value, regex the message must match)
KEY_RE = r"key"
BAD_KEYS = {
    "int": 0,
    "float": 1.5,
    "floatarray": np.zeros(2),
    "keyarray": jax.random.split(jax.random.key(0), 3),
    "str": "seed",
}


def _tiny_mcmc(**kw):
    opts = dict(num_chains=1, num_warmup=5, num_draws=5, progress=False)
    opts.update(kw)
    logdensity_fn = opts.pop("logdensity_fn", LD)
    return mcmc.sample(logdensity_fn, opts.pop("key", KEY), opts.pop("initial_position", X0[None]), **opts)


def _bound(name, logdensity_fn, step_size, inverse_mass_matrix=None, **options):
    """A built-in kernel bound to a target and fixed parameters: ``mcmc.<name>_kernel(**options).bind(...)``."""
    return getattr(mcmc, f"{name}_kernel")(**options).bind(logdensity_fn, step_size, inverse_mass_matrix)


def _run_kernel(kernel, position=X0, steps=2):
    state = kernel.init(position)
    k = KEY
    for _ in range(steps):
        k, sub = jax.random.split(k)
        state, _info = kernel.step(sub, state)
    out = np.asarray(jax.tree_util.tree_leaves(state)[0])
    if not np.all(np.isfinite(out)):
        return "non-finite state"
    return out


# ============================== integrate (ulam.*) =============================================
_INTEGRATORS = {
    "monte_carlo": lambda **kw: ulam.monte_carlo(kw.pop("f", SQ), kw.pop("p", N01), kw.pop("key", KEY), kw.pop("n", 16), **kw),
    "antithetic": lambda **kw: ulam.antithetic(kw.pop("f", SQ), kw.pop("p", N01), kw.pop("key", KEY), kw.pop("n", 16), **kw),
    "quasi_monte_carlo": lambda **kw: ulam.quasi_monte_carlo(
        kw.pop("f", SQ), kw.pop("p", N01), kw.pop("key", KEY), kw.pop("n", 16), **kw
    ),
    "stratified": lambda **kw: ulam.stratified(kw.pop("f", SQ), kw.pop("p", N01), kw.pop("key", KEY), kw.pop("n", 16), **kw),
}
for _name, _call in _INTEGRATORS.items():
    for _label, _key in BAD_KEYS.items():
        if _label in ("float", "str") and _name not in ("monte_carlo",):
            continue
        add(f"integrate.{_name}.key_{_label}", (lambda c=_call, k=_key: c(key=k)), (TypeError, ValueError), KEY_RE,
            f"ulam.{_name}(f, Normal(0, 1), key={_label}, 16)")
    _t = f"ulam.{_name}(f, Normal(0, 1), key, n"
    add(f"integrate.{_name}.n_zero", (lambda c=_call: c(n=0)), ValueError, r"\bn\b|num_samples", _t + "=0)")
    add(f"integrate.{_name}.n_negative", (lambda c=_call: c(n=-4)), ValueError, r"\bn\b|num_samples", _t + "=-4)")
    add(f"integrate.{_name}.n_float", (lambda c=_call: c(n=16.0)), TypeError, r"\bn\b|num_samples", _t + "=16.0)")
    add(f"integrate.{_name}.batch_size_zero", (lambda c=_call: c(batch_size=0)), ValueError, r"batch_size", _t + ", batch_size=0)")
    add(f"integrate.{_name}.nonfinite_misspelt", (lambda c=_call: c(nonfinite="rasie")), ValueError, r"nonfinite",
        _t + ", nonfinite='rasie')")
    add(f"integrate.{_name}.f_is_distribution", (lambda c=_call: c(f=N01)), TypeError, r"\bf\b",
        f"ulam.{_name}(Normal(0, 1), Normal(0, 1), key, 16)")
    add(f"integrate.{_name}.p_is_callable", (lambda c=_call: c(p=SQ)), TypeError, r"\bp\b", f"ulam.{_name}(f, lambda x: x**2, key, 16)")
    add(f"integrate.{_name}.f_returns_nan", (lambda c=_call: c(f=lambda x: x * jnp.nan)), ValueError, r"\bf\b",
        f"ulam.{_name}(lambda x: x * nan, Normal(0, 1), key, 16)")
add("integrate.monte_carlo.f_returns_string", lambda: ulam.monte_carlo(lambda x: "a", N01, KEY, 8), TypeError, r"\bf\b")
add("integrate.monte_carlo.n_string", lambda: ulam.monte_carlo(SQ, N01, KEY, "16"), TypeError, r"\bn\b|num_samples")
add(
    "integrate.quasi_monte_carlo.num_randomizations_one",
    lambda: ulam.quasi_monte_carlo(SQ, N01, KEY, 16, num_randomizations=1),
    ValueError,
    r"num_randomizations",
)
add("integrate.stratified.num_strata_zero", lambda: ulam.stratified(SQ, N01, KEY, 16, num_strata=0), ValueError, r"num_strata")
add(
    "integrate.importance_sampling.key_int",
    lambda: ulam.importance_sampling(SQ, N01.log_prob, dist.Normal(0.0, 2.0), 0, 16),
    TypeError,
    KEY_RE,
)
add(
    "integrate.importance_sampling.log_target_is_distribution",
    lambda: ulam.importance_sampling(SQ, N01, dist.Normal(0.0, 2.0), KEY, 16),
    TypeError,
    r"log_target",
)
add(
    "integrate.importance_sampling.proposal_is_callable",
    lambda: ulam.importance_sampling(SQ, N01.log_prob, SQ, KEY, 16),
    TypeError,
    r"proposal",
)
add(
    "integrate.importance_sampling.n_zero",
    lambda: ulam.importance_sampling(SQ, N01.log_prob, dist.Normal(0.0, 2.0), KEY, 0),
    ValueError,
    r"\bn\b|num_samples",
)
add(
    "integrate.importance_sampling.log_target_nan",
    lambda: ulam.importance_sampling(SQ, lambda x: x * jnp.nan, dist.Normal(0.0, 2.0), KEY, 16),
    ValueError,
    r"log_target|weights",
)
add(
    "integrate.control_variates.controls_not_pairs",
    lambda: ulam.control_variates(SQ, N01, KEY, 16, [lambda x: x]),
    (TypeError, ValueError),
    r"controls",
)
add(
    "integrate.control_variates.key_int",
    lambda: ulam.control_variates(SQ, N01, 0, 16, [(lambda x: x, 0.0)]),
    TypeError,
    KEY_RE,
)
add(
    "integrate.sequential.batch_size_zero",
    lambda: ulam.sequential(lambda k, n: ulam.monte_carlo(SQ, N01, k, n), KEY, batch_size=0, max_samples=64, target_stderr=0.1),
    ValueError,
    r"batch_size",
)
add(
    "integrate.sequential.target_stderr_negative",
    lambda: ulam.sequential(lambda k, n: ulam.monte_carlo(SQ, N01, k, n), KEY, batch_size=8, max_samples=64, target_stderr=-0.1),
    ValueError,
    r"target_stderr",
)
add(
    "integrate.sequential.max_samples_zero",
    lambda: ulam.sequential(lambda k, n: ulam.monte_carlo(SQ, N01, k, n), KEY, batch_size=8, max_samples=0, target_stderr=0.1),
    ValueError,
    r"max_samples",
)
add(
    "integrate.sequential.key_int",
    lambda: ulam.sequential(lambda k, n: ulam.monte_carlo(SQ, N01, k, n), 3, batch_size=8, max_samples=64, target_stderr=0.1),
    TypeError,
    KEY_RE,
)
add("integrate.sobol_points.key_int", lambda: ulam.sobol_points(0, 8, 2), TypeError, KEY_RE)
add("integrate.sobol_points.num_zero", lambda: ulam.sobol_points(KEY, 0, 2), ValueError, r"num")
add("integrate.sobol_points.dim_zero", lambda: ulam.sobol_points(KEY, 8, 0), ValueError, r"dim")
add("integrate.sobol_points.dim_float", lambda: ulam.sobol_points(KEY, 8, 2.5), TypeError, r"dim")
add("integrate.from_uniform.dim_zero", lambda: ulam.from_uniform(0, lambda u: u), ValueError, r"dim")
add("integrate.from_uniform.transform_not_callable", lambda: ulam.from_uniform(2, 3.0), TypeError, r"transform")
add("estimate.Estimate.stderr_negative", lambda: ulam.Estimate(1.0, -1.0, 10), ValueError, r"stderr")
add("estimate.pool.empty", lambda: ulam.pool([]), ValueError, r"estimates")
add("estimate.pool.not_estimates", lambda: ulam.pool([1.0, 2.0]), TypeError, r"estimates")

# ============================== diagnostics =====================================================
_DRAWS = np.random.default_rng(0).normal(size=(2, 50))
add("diagnostics.rhat.one_dim", lambda: diagnostics.rhat(np.zeros(10)), ValueError, r"draws")
add("diagnostics.rhat.nan", lambda: diagnostics.rhat(np.full((2, 20), np.nan)), ValueError, r"draws")
add("diagnostics.ess_bulk.one_dim", lambda: diagnostics.ess_bulk(np.zeros(10)), ValueError, r"draws")
add("diagnostics.ess_tail.prob_above_one", lambda: diagnostics.ess_tail(_DRAWS, prob=1.5), ValueError, r"prob")
add("diagnostics.ess_quantile.prob_negative", lambda: diagnostics.ess_quantile(_DRAWS, -0.1), ValueError, r"prob")
add("diagnostics.mcse_quantile.q_above_one", lambda: diagnostics.mcse_quantile(_DRAWS, 1.5), ValueError, r"\bq\b")
add("diagnostics.mcse_mean.string", lambda: diagnostics.mcse_mean("abc"), (TypeError, ValueError), r"draws")
add("diagnostics.pareto_khat.r_eff_zero", lambda: diagnostics.pareto_khat(np.zeros(100), r_eff=0.0), ValueError, r"r_eff")
add(
    "diagnostics.pareto_khat.nan_weights",
    lambda: diagnostics.pareto_khat(np.full(100, np.nan)),
    ValueError,
    r"log_weights",
)
add("diagnostics.psis_smooth.r_eff_negative", lambda: diagnostics.psis_smooth(np.zeros(100), r_eff=-1.0), ValueError, r"r_eff")
add("diagnostics.importance_ess.nan", lambda: diagnostics.importance_ess(np.array([0.0, np.nan])), ValueError, r"log_weights")
add("diagnostics.autocovariance.axis_out_of_range", lambda: diagnostics.autocovariance(np.zeros(8), axis=3), ValueError, r"axis")
add("diagnostics.pareto_khat_from_tail.n_zero", lambda: diagnostics.pareto_khat_from_tail(np.zeros(5), 0), ValueError, r"\bn\b")

# ============================== mcmc ============================================================
for _label, _key in BAD_KEYS.items():
    add(f"mcmc.sample.key_{_label}", (lambda k=_key: _tiny_mcmc(key=k)), (TypeError, ValueError), KEY_RE,
        f"mcmc.sample(key={_label}, logdensity, x0)")
add("mcmc.sample.kernel_misspelt", lambda: _tiny_mcmc(kernel="nutz"), ValueError, r"kernel.*nuts")
add("mcmc.sample.kernel_wrong_kind", lambda: _tiny_mcmc(kernel=3), TypeError, r"kernel")
add("mcmc.sample.metric_misspelt", lambda: _tiny_mcmc(metric="diagonal"), ValueError, r"metric")
add("mcmc.sample.adapt_misspelt", lambda: _tiny_mcmc(adapt="pool"), ValueError, r"adapt")
add("mcmc.sample.num_chains_zero", lambda: _tiny_mcmc(num_chains=0), ValueError, r"num_chains")
add("mcmc.sample.num_chains_float", lambda: _tiny_mcmc(num_chains=2.0), (TypeError, ValueError), r"num_chains.*integer")
add("mcmc.sample.num_draws_zero", lambda: _tiny_mcmc(num_draws=0), ValueError, r"num_draws")
add("mcmc.sample.num_warmup_negative", lambda: _tiny_mcmc(num_warmup=-1), ValueError, r"num_warmup")
add("mcmc.sample.thin_zero", lambda: _tiny_mcmc(thin=0), ValueError, r"thin")
add("mcmc.sample.step_size_negative", lambda: _tiny_mcmc(step_size=-0.1, num_warmup=0), ValueError, r"step_size")
add("mcmc.sample.step_size_nan", lambda: _tiny_mcmc(step_size=float("nan"), num_warmup=0), ValueError, r"step_size")
add("mcmc.sample.step_size_inf", lambda: _tiny_mcmc(step_size=float("inf"), num_warmup=0), ValueError, r"step_size")
add(
    "mcmc.sample.inverse_mass_matrix_negative",
    lambda: _tiny_mcmc(inverse_mass_matrix=jnp.array([1.0, -1.0]), num_warmup=0, step_size=0.1),
    ValueError,
    r"inverse_mass_matrix",
)
add(
    "mcmc.sample.inverse_mass_matrix_wrong_shape",
    lambda: _tiny_mcmc(inverse_mass_matrix=jnp.ones(3), num_warmup=0, step_size=0.1),
    ValueError,
    r"inverse_mass_matrix",
)
add("mcmc.sample.target_acceptance_above_one", lambda: _tiny_mcmc(target_acceptance=1.5), ValueError, r"target_acceptance")
add("mcmc.sample.logdensity_is_distribution", lambda: _tiny_mcmc(logdensity_fn=N01), TypeError, r"logdensity_fn")
add(
    "mcmc.sample.logdensity_returns_vector",
    lambda: _tiny_mcmc(logdensity_fn=lambda x: -0.5 * x**2),
    (TypeError, ValueError),
    r"logdensity_fn",
)
add(
    "mcmc.sample.logdensity_nan_at_start",
    lambda: _tiny_mcmc(logdensity_fn=lambda x: jnp.sum(x) * jnp.nan),
    ValueError,
    r"logdensity_fn|initial_position",
)
add(
    "mcmc.sample.initial_position_nan",
    lambda: _tiny_mcmc(initial_position=jnp.array([[jnp.nan, 0.0]])),
    ValueError,
    r"initial_position",
)
add(
    "mcmc.sample.initial_position_int",
    lambda: _tiny_mcmc(initial_position=jnp.array([[0, 0]])),
    (TypeError, ValueError),
    r"initial_position",
)
add(
    "mcmc.sample.kernel_options_unknown",
    lambda: _tiny_mcmc(kernel_options={"max_tree_dept": 3}),
    (TypeError, ValueError),
    r"kernel_options|max_tree_dept",
)
add(
    "mcmc.sample.max_tree_depth_zero",
    lambda: _tiny_mcmc(kernel_options={"max_tree_depth": 0}),
    ValueError,
    r"max_tree_depth",
)
for _kname in ("hmc", "nuts", "mala", "rwm", "ula"):
    _kf = (lambda *a, _n=_kname, **k: _bound(_n, *a, **k))
    add(f"mcmc.{_kname}.step_size_negative", (lambda kf=_kf: _run_kernel(kf(LD, -0.1))), ValueError, r"step_size",
        f"mcmc.{_kname}(logdensity, -0.1) then 2 steps")
    add(f"mcmc.{_kname}.step_size_nan", (lambda kf=_kf: _run_kernel(kf(LD, float("nan")))), ValueError, r"step_size",
        f"mcmc.{_kname}(logdensity, nan) then 2 steps")
    add(
        f"mcmc.{_kname}.inverse_mass_matrix_zero",
        (lambda kf=_kf: _run_kernel(kf(LD, 0.1, jnp.array([1.0, 0.0])))),
        ValueError,
        r"inverse_mass_matrix",
        f"mcmc.{_kname}(logdensity, 0.1, inverse_mass_matrix=[1, 0]) then 2 steps",
    )
    add(f"mcmc.{_kname}.logdensity_not_callable", (lambda kf=_kf: _run_kernel(kf(3.0, 0.1))), TypeError, r"logdensity_fn",
        f"mcmc.{_kname}(3.0, 0.1) then 2 steps")
add("mcmc.mala.step_size_zero", lambda: _run_kernel(_bound("mala", LD, 0.0)), ValueError, r"step_size")
add("mcmc.hmc.num_integration_steps_zero", lambda: _run_kernel(_bound("hmc", LD, 0.1, num_integration_steps=0)), ValueError, r"num_integration_steps")
add("mcmc.nuts.max_tree_depth_zero", lambda: _run_kernel(_bound("nuts", LD, 0.1, max_tree_depth=0)), ValueError, r"max_tree_depth")
add(
    "mcmc.hmc.dense_inverse_mass_not_psd",
    lambda: _run_kernel(_bound("hmc", LD, 0.1, -jnp.eye(2))),
    ValueError,
    r"inverse_mass_matrix",
)
add(
    "mcmc.elliptical_slice.cov_not_psd",
    lambda: _run_kernel(mcmc.elliptical_slice_kernel(lambda x: -jnp.sum(x**2), jnp.zeros(2), -jnp.eye(2))),
    ValueError,
    r"\bcov\b",
)
add(
    "mcmc.elliptical_slice.mean_wrong_shape",
    lambda: _run_kernel(mcmc.elliptical_slice_kernel(lambda x: -jnp.sum(x**2), jnp.zeros(3), jnp.eye(2))),
    ValueError,
    r"mean",
)
add(
    "mcmc.preconditioned_langevin.step_size_negative",
    lambda: _run_kernel(mcmc.preconditioned_langevin_kernel(LD, -0.1, jnp.ones(2))),
    ValueError,
    r"step_size",
)
add("mcmc.window_schedule.num_warmup_negative", lambda: mcmc.window_schedule(-5), ValueError, r"num_warmup")
add("mcmc.welford_init.dim_zero", lambda: mcmc.welford_init(0, False), ValueError, r"dim")
add("mcmc.sample_minibatch.batch_size_zero", lambda: mcmc.sample_minibatch(KEY, jnp.zeros((4, 2)), 0), ValueError, r"batch_size")
add(
    "mcmc.sample_minibatch.batch_size_too_big",
    lambda: mcmc.sample_minibatch(KEY, jnp.zeros((4, 2)), 10),
    ValueError,
    r"batch_size",
)
add(
    "mcmc.sgld.step_size_negative",
    lambda: mcmc.sgld_kernel(lambda p, b: p, jnp.zeros((4, 1)), 2, -0.1),
    ValueError,
    r"step_size",
)
add(
    "mcmc.sghmc.friction_negative",
    lambda: mcmc.sghmc_kernel(lambda p, b: p, jnp.zeros((4, 1)), 2, 0.1, friction=-1.0),
    ValueError,
    r"friction",
)
add(
    "mcmc.minibatch_gradient.data_size_zero",
    lambda: mcmc.minibatch_gradient(LD, lambda p, b: jnp.sum(b), 0),
    ValueError,
    r"data_size",
)
add("mcmc.chain_expectation.one_dim", lambda: mcmc.chain_expectation(np.zeros(5)), ValueError, r"values")
add("mcmc.dual_averaging_init.step_size_negative", lambda: mcmc.dual_averaging_init(-1.0), ValueError, r"step_size")

# ============================== smc =============================================================
LG = smc.LinearGaussianModel.scalar(0.9, 0.6, 1.0, 1.0)
SSM = smc.linear_gaussian_ssm(LG)
BOOT = smc.Bootstrap(SSM)
Y = jnp.array([0.1, -0.3, 0.5, 0.2])
_LOGW = jnp.zeros(4)


def _lg(**kw):
    base = dict(
        transition_matrix=jnp.eye(2) * 0.9,
        transition_cov=jnp.eye(2),
        observation_matrix=jnp.eye(2),
        observation_cov=jnp.eye(2),
        initial_mean=jnp.zeros(2),
        initial_cov=jnp.eye(2),
    )
    base.update(kw)
    return smc.LinearGaussianModel(**base)


Y2 = jnp.zeros((3, 2))
for _label, _key in BAD_KEYS.items():
    add(f"smc.run_filter.key_{_label}", (lambda k=_key: smc.run_filter(k, BOOT, Y, 8)), (TypeError, ValueError), KEY_RE,
        f"smc.run_filter(key={_label}, Bootstrap(ssm), y, 8)")
add("smc.run_filter.num_particles_zero", lambda: smc.run_filter(KEY, BOOT, Y, 0), ValueError, r"num_particles")
add("smc.run_filter.num_particles_float", lambda: smc.run_filter(KEY, BOOT, Y, 8.0), TypeError, r"num_particles")
add("smc.run_filter.resampling_misspelt", lambda: smc.run_filter(KEY, BOOT, Y, 8, resampling="sytematic"), ValueError, r"resampling|scheme")
add("smc.run_filter.ess_threshold_above_one", lambda: smc.run_filter(KEY, BOOT, Y, 8, ess_threshold=1.5), ValueError, r"ess_threshold")
add("smc.run_filter.ess_threshold_negative", lambda: smc.run_filter(KEY, BOOT, Y, 8, ess_threshold=-0.5), ValueError, r"ess_threshold")
add("smc.run_filter.fk_is_ssm", lambda: smc.run_filter(KEY, SSM, Y, 8), TypeError, r"\bfk\b")
add("smc.run_filter.variance_lag_negative", lambda: smc.run_filter(KEY, BOOT, Y, 8, variance_lag=-1), ValueError, r"variance_lag")
add("smc.run_filter.mean_fn_not_callable", lambda: smc.run_filter(KEY, BOOT, Y, 8, mean_fn=3), TypeError, r"mean_fn")
for _rname in ("systematic_resample", "multinomial_resample", "stratified_resample", "residual_resample", "ssp_resample"):
    _rf = getattr(smc, _rname)
    add(f"smc.{_rname}.key_int", (lambda rf=_rf: rf(0, _LOGW, 4)), TypeError, KEY_RE, f"smc.{_rname}(0, zeros(4), 4)")
    add(f"smc.{_rname}.num_zero", (lambda rf=_rf: rf(KEY, _LOGW, 0)), ValueError, r"\bnum\b", f"smc.{_rname}(key, zeros(4), 0)")
    add(f"smc.{_rname}.log_weights_all_neg_inf", (lambda rf=_rf: rf(KEY, jnp.full(4, -jnp.inf), 4)), ValueError, r"log_weights",
        f"smc.{_rname}(key, full(4, -inf), 4)")
add("smc.get_resampler.misspelt", lambda: smc.get_resampler("sytematic"), ValueError, r"systematic")
add("smc.resample_if.threshold_above_one", lambda: smc.resample_if(KEY, _LOGW, 4, threshold=2.0), ValueError, r"threshold")
add("smc.effective_sample_size.nan", lambda: smc.effective_sample_size(jnp.array([0.0, jnp.nan])), ValueError, r"log_weights")
add("smc.offspring_counts.num_particles_zero", lambda: smc.offspring_counts(jnp.zeros(4, int), 0), ValueError, r"num_particles")
add("smc.simulate.num_steps_zero", lambda: smc.simulate(KEY, SSM, 0), ValueError, r"num_steps")
add("smc.simulate.key_int", lambda: smc.simulate(0, SSM, 3), TypeError, KEY_RE)
add("smc.kalman_filter.y_wrong_rank", lambda: smc.kalman_filter(LG, jnp.zeros((4, 2))), ValueError, r"\by\b")
add("smc.kalman_filter.transition_cov_not_psd", lambda: smc.kalman_filter(_lg(transition_cov=-jnp.eye(2)), Y2), ValueError, r"transition_cov")
add("smc.kalman_filter.observation_cov_not_psd", lambda: smc.kalman_filter(_lg(observation_cov=-jnp.eye(2)), Y2), ValueError, r"observation_cov")
add("smc.kalman_filter.initial_cov_not_psd", lambda: smc.kalman_filter(_lg(initial_cov=-jnp.eye(2)), Y2), ValueError, r"initial_cov")
add(
    "smc.kalman_filter.transition_matrix_nan",
    lambda: smc.kalman_filter(_lg(transition_matrix=jnp.full((2, 2), jnp.nan)), Y2),
    ValueError,
    r"transition_matrix",
)
add(
    "smc.kalman_filter.transition_matrix_wrong_shape",
    lambda: smc.kalman_filter(_lg(transition_matrix=jnp.eye(3)), Y2),
    ValueError,
    r"transition_matrix",
)
add("smc.rts_smoother.transition_cov_not_psd", lambda: smc.rts_smoother(_lg(transition_cov=-jnp.eye(2)), Y2), ValueError, r"transition_cov")
add("smc.LinearGaussianModel.scalar_negative_sigma", lambda: smc.LinearGaussianModel.scalar(0.9, -0.6, 1.0, 1.0), ValueError, r"sigma_x")
add("smc.LinearGaussianModel.scalar_unstable_no_p0", lambda: smc.LinearGaussianModel.scalar(1.5, 0.6, 1.0, 1.0), ValueError, r"p0")
_TS = dict(log_prior=lambda x: -0.5 * jnp.sum(x**2), log_likelihood=lambda x: -jnp.sum(x**2), initial_particles=jnp.zeros((8, 1)))
add("smc.tempered_smc.key_int", lambda: smc.tempered_smc(0, **_TS), TypeError, KEY_RE)
add("smc.tempered_smc.target_ess_above_one", lambda: smc.tempered_smc(KEY, **_TS, target_ess=1.5), ValueError, r"target_ess")
add("smc.tempered_smc.num_mcmc_steps_zero", lambda: smc.tempered_smc(KEY, **_TS, num_mcmc_steps=0), ValueError, r"num_mcmc_steps")
add("smc.tempered_smc.max_steps_zero", lambda: smc.tempered_smc(KEY, **_TS, max_steps=0), ValueError, r"max_steps")
add("smc.tempered_smc.num_replicates_zero", lambda: smc.tempered_smc(KEY, **_TS, num_replicates=0), ValueError, r"num_replicates")
add(
    "smc.tempered_smc.log_likelihood_is_distribution",
    lambda: smc.tempered_smc(KEY, _TS["log_prior"], N01, _TS["initial_particles"]),
    TypeError,
    r"log_likelihood",
)
add(
    "smc.tempered_smc.resampling_misspelt",
    lambda: smc.tempered_smc(KEY, **_TS, resampling="multinomal"),
    ValueError,
    r"resampling|scheme",
)
add(
    "smc.particle_gibbs.num_iterations_zero",
    lambda: smc.particle_gibbs(KEY, SSM, Y, 8, 0),
    ValueError,
    r"num_iterations",
)
add(
    "smc.particle_gibbs.sampler_misspelt",
    lambda: smc.particle_gibbs(KEY, SSM, Y, 8, 2, sampler="backwrd"),
    ValueError,
    r"sampler",
)
add(
    "smc.paris.num_backward_zero",
    lambda: smc.paris(KEY, SSM, Y, 8, lambda xp, x, y: x, num_backward=0),
    ValueError,
    r"num_backward",
)
add(
    "smc.paris.backward_misspelt",
    lambda: smc.paris(KEY, SSM, Y, 8, lambda xp, x, y: x, backward="rejecton"),
    ValueError,
    r"backward",
)
add(
    "smc.ppg.burn_in_too_big",
    lambda: smc.ppg(KEY, SSM, Y, 8, lambda xp, x, y: x, num_iterations=2, burn_in=5),
    ValueError,
    r"burn_in",
)
add(
    "smc.score_ascent.estimator_misspelt",
    lambda: smc.score_ascent(KEY, lambda th: SSM, 0.0, Y, 8, num_steps=1, estimator="ppgg"),
    ValueError,
    r"estimator",
)
add(
    "smc.score_ascent.num_steps_zero",
    lambda: smc.score_ascent(KEY, lambda th: SSM, 0.0, Y, 8, num_steps=0),
    ValueError,
    r"num_steps",
)

# ============================== grad ============================================================
_GRADS = {
    "score_function_gradient": (F_GRAD, NORMAL_FAMILY, 0.0),
    "pathwise_gradient": (F_GRAD, NORMAL_FAMILY, 0.0),
    "measure_valued_gradient": (F_BIN, BERN_FAMILY, 0.0),
    "arm_gradient": (F_BIN, BERN_FAMILY, 0.0),
    "disarm_gradient": (F_BIN, BERN_FAMILY, 0.0),
    "arsm_gradient": (lambda z, th: z * 1.0, CAT_FAMILY, jnp.zeros(3)),
    "categorical_disarm_gradient": (lambda z, th: z * 1.0, CAT_FAMILY, jnp.zeros(3)),
    "gumbel_softmax_gradient": (lambda z, th: jnp.sum(z), CAT_FAMILY, jnp.zeros(3)),
}
for _gname, (_f, _d, _th) in _GRADS.items():
    _g = getattr(grad, _gname)
    _t = f"grad.{_gname}(f, family, params, "
    add(f"grad.{_gname}.key_int", (lambda g=_g, f=_f, d=_d, th=_th: g(f, d, th, 0, 8)), TypeError, KEY_RE, _t + "0, 8)")
    add(
        f"grad.{_gname}.key_array_of_keys",
        (lambda g=_g, f=_f, d=_d, th=_th: g(f, d, th, jax.random.split(KEY, 2), 8)),
        (TypeError, ValueError),
        KEY_RE,
        _t + "split(key, 2), 8)",
    )
    add(f"grad.{_gname}.num_samples_zero", (lambda g=_g, f=_f, d=_d, th=_th: g(f, d, th, KEY, 0)), ValueError, r"num_samples",
        _t + "key, 0)")
    add(f"grad.{_gname}.num_samples_float", (lambda g=_g, f=_f, d=_d, th=_th: g(f, d, th, KEY, 8.0)), TypeError, r"num_samples",
        _t + "key, 8.0)")
    add(
        f"grad.{_gname}.distribution_is_instance",
        (lambda g=_g, f=_f, d=_d, th=_th: g(f, d(th), th, KEY, 8)),
        TypeError,
        r"distribution",
        f"grad.{_gname}(f, family(params), params, key, 8)",
    )
    add(f"grad.{_gname}.f_not_callable", (lambda g=_g, d=_d, th=_th: g(2.0, d, th, KEY, 8)), TypeError, r"\bf\b",
        f"grad.{_gname}(2.0, family, params, key, 8)")
add(
    "grad.enumeration_gradient.distribution_is_instance",
    lambda: grad.enumeration_gradient(F_BIN, dist.Bernoulli(logits=0.0), 0.0),
    TypeError,
    r"distribution",
)
add(
    "grad.enumeration_gradient.max_configurations_zero",
    lambda: grad.enumeration_gradient(F_BIN, BERN_FAMILY, 0.0, max_configurations=0),
    ValueError,
    r"max_configurations",
)
add(
    "grad.enumeration_gradient.continuous_distribution",
    lambda: grad.enumeration_gradient(F_GRAD, NORMAL_FAMILY, 0.0),
    (TypeError, ValueError),
    r"distribution",
)
add(
    "grad.pathwise_gradient.not_reparameterizable",
    lambda: grad.pathwise_gradient(F_BIN, BERN_FAMILY, 0.0, KEY, 8),
    (TypeError, ValueError),
    r"distribution",
)
add(
    "grad.arm_gradient.not_bernoulli",
    lambda: grad.arm_gradient(F_GRAD, NORMAL_FAMILY, 0.0, KEY, 8),
    (TypeError, ValueError),
    r"distribution",
)
add(
    "grad.score_function_gradient.f_returns_vector",
    lambda: grad.score_function_gradient(lambda x, th: jnp.stack([x, x]), NORMAL_FAMILY, 0.0, KEY, 8),
    (TypeError, ValueError),
    r"\bf\b",
)
add(
    "grad.score_function_gradient.baseline_misspelt",
    lambda: grad.score_function_gradient(F_GRAD, NORMAL_FAMILY, 0.0, KEY, 8, baseline="leave-one-out"),
    (TypeError, ValueError),
    r"baseline",
)
add(
    "grad.gumbel_softmax_gradient.temperature_zero",
    lambda: grad.gumbel_softmax_gradient(lambda z, th: jnp.sum(z), CAT_FAMILY, jnp.zeros(3), KEY, 8, temperature=0.0),
    ValueError,
    r"temperature",
)
add("grad.gumbel_softmax_sample.temperature_negative", lambda: grad.gumbel_softmax_sample(jnp.zeros(3), KEY, -1.0), ValueError, r"temperature")
add("grad.gumbel_softmax_sample.key_int", lambda: grad.gumbel_softmax_sample(jnp.zeros(3), 0), TypeError, KEY_RE)
add("grad.straight_through_gumbel_sample.temperature_nan", lambda: grad.straight_through_gumbel_sample(jnp.zeros(3), KEY, float("nan")), ValueError, r"temperature")
add("grad.relaxed_bernoulli_sample.temperature_zero", lambda: grad.relaxed_bernoulli_sample(jnp.zeros(3), KEY, 0.0), ValueError, r"temperature")
add(
    "grad.straight_through_relaxed_bernoulli_sample.temperature_inf",
    lambda: grad.straight_through_relaxed_bernoulli_sample(jnp.zeros(3), KEY, float("inf")),
    ValueError,
    r"temperature",
)
add(
    "grad.rebar_gradient.temperature_negative",
    lambda: grad.rebar_gradient(lambda b, th: jnp.sum(b), BERN_FAMILY, jnp.zeros(2), KEY, 8, temperature=-0.5),
    ValueError,
    r"temperature",
)
add(
    "grad.relax_gradient.control_not_callable",
    lambda: grad.relax_gradient(lambda b, th: jnp.sum(b), BERN_FAMILY, jnp.zeros(2), KEY, 8, control=1.0, control_params=1.0),
    TypeError,
    r"control",
)
add("grad.ema_baseline.decay_above_one", lambda: grad.ema_baseline(1.5), ValueError, r"decay")
add("grad.ema_baseline.decay_negative", lambda: grad.ema_baseline(-0.1), ValueError, r"decay")
add("grad.optimal_baseline_ema.decay_above_one", lambda: grad.optimal_baseline_ema(2.0), ValueError, r"decay")
add("grad.noisy_rectifier.scale_negative", lambda: grad.noisy_rectifier(KEY, jnp.zeros(3), -1.0), ValueError, r"scale")
add("grad.noisy_rectifier.key_int", lambda: grad.noisy_rectifier(0, jnp.zeros(3)), TypeError, KEY_RE)
add(
    "grad.noise_injection_gradient.scale_zero",
    lambda: grad.noise_injection_gradient(LOSS, jnp.zeros(3), KEY, 8, scale=0.0),
    ValueError,
    r"scale",
)
add(
    "grad.straight_through_gradient.variant_misspelt",
    lambda: grad.straight_through_gradient(LOSS, jnp.zeros(3), KEY, 8, variant="sigmod"),
    ValueError,
    r"variant",
)
add("grad.bernoulli_straight_through.variant_misspelt", lambda: grad.bernoulli_straight_through(KEY, jnp.zeros(3), "idenity"), ValueError, r"variant")
add("grad.binary_layer.unit_misspelt", lambda: grad.binary_layer(KEY, jnp.zeros(3), "st_sigmod"), ValueError, r"unit")
add("grad.binary_layer_deterministic.unit_misspelt", lambda: grad.binary_layer_deterministic(jnp.zeros(3), "bogus"), ValueError, r"unit")
add(
    "grad.binary_neuron_reinforce_gradient.baseline_misspelt",
    lambda: grad.binary_neuron_reinforce_gradient(LOSS, jnp.zeros(3), KEY, 8, baseline="optimall"),
    ValueError,
    r"baseline",
)
add("grad.decomposition_gradient.num_samples_zero", lambda: grad.decomposition_gradient(LOSS, jnp.zeros(3), KEY, 0), ValueError, r"num_samples")
add("grad.stochastic_times_smooth.key_int", lambda: grad.stochastic_times_smooth(0, jnp.zeros(3)), TypeError, KEY_RE)
add("grad.flip_enum.p_above_one", lambda: grad.flip_enum(1.5), ValueError, r"\bp\b")
add("grad.flip_enum.p_and_logits", lambda: grad.flip_enum(0.5, logits=0.0), ValueError, r"logits")
add("grad.flip_mvd.p_negative", lambda: grad.flip_mvd(-0.2), ValueError, r"\bp\b")
add("grad.flip_reinforce.p_nan", lambda: grad.flip_reinforce(float("nan")), ValueError, r"\bp\b")
add("grad.categorical_enum.probs_negative", lambda: grad.categorical_enum(jnp.array([-0.2, 1.2])), ValueError, r"probs")
add("grad.categorical_mvd.probs_not_normalised", lambda: grad.categorical_mvd(jnp.array([0.5, 0.9])), ValueError, r"probs")
add("grad.categorical_reinforce.neither", lambda: grad.categorical_reinforce(), ValueError, r"probs|logits")
add("grad.normal_reparam.scale_negative", lambda: grad.normal_reparam(0.0, -1.0), ValueError, r"scale")
add("grad.normal_reinforce.scale_zero", lambda: grad.normal_reinforce(0.0, 0.0), ValueError, r"scale")
add("grad.beta_implicit.a_negative", lambda: grad.beta_implicit(-1.0, 1.0), ValueError, r"\ba\b")
add("grad.gamma_implicit.rate_zero", lambda: grad.gamma_implicit(1.0, 0.0), ValueError, r"rate")
add("grad.uniform_reparam.high_below_low", lambda: grad.uniform_reparam(1.0, 0.0), ValueError, r"high|low")
add("grad.baseline.misspelt", lambda: grad.baseline("leave_one_ot"), ValueError, r"baseline|value")
add(
    "grad.Strategy.kind_misspelt",
    lambda: grad.program_value(lambda t, mu: t.sample("x", N01, grad.Strategy("reparm")), 0.0, KEY, 8),
    ValueError,
    r"strategy.*reparam",
)
add(
    "grad.Choice.distribution_is_callable",
    lambda: grad.program_value(lambda t, mu: t.sample("x", grad.Choice(NORMAL_FAMILY, grad.reparam)), 0.0, KEY, 8),
    TypeError,
    r"distribution",
)
add(
    "grad.program_gradient.key_int",
    lambda: grad.program_gradient(lambda t, mu: t.sample("x", grad.normal_reparam(mu, 1.0)), 0.0, 0, 8),
    TypeError,
    KEY_RE,
)
add(
    "grad.program_gradient.num_samples_zero",
    lambda: grad.program_gradient(lambda t, mu: t.sample("x", grad.normal_reparam(mu, 1.0)), 0.0, KEY, 0),
    ValueError,
    r"num_samples",
)
add(
    "grad.program_gradient.max_runs_zero",
    lambda: grad.program_gradient(lambda t, mu: t.sample("x", grad.normal_reparam(mu, 1.0)), 0.0, KEY, 8, max_runs=0),
    ValueError,
    r"max_runs",
)
add("grad.program_gradient.program_not_callable", lambda: grad.program_gradient(3.0, 0.0, KEY, 8), TypeError, r"program")
add(
    "grad.program_value.sample_not_a_choice",
    lambda: grad.program_value(lambda t, mu: t.sample("x", N01), 0.0, KEY, 8),
    (TypeError, ValueError),
    r"Choice|strategy|\"x\"|'x'",
)
add("grad.expectation.program_not_callable", lambda: grad.expectation(None), TypeError, r"program")
add("grad.support_values.continuous", lambda: grad.support_values(N01), (TypeError, ValueError), r"\bd\b|distribution|support")
add("grad.stick_breaking_logits.string", lambda: grad.stick_breaking_logits("abc"), (TypeError, ValueError), r"logits")

# ============================== vi ==============================================================
_LJ = lambda z, th: N01.log_prob(z)  # noqa: E731
_GUIDE = lambda phi: dist.Normal(phi[0], jnp.exp(phi[1]))  # noqa: E731
OBJ = vi.elbo(_LJ, _GUIDE)
P0 = ((), jnp.zeros(2))


def _fit(obj=OBJ, params=P0, key=KEY, **kw):
    import optax

    opts = dict(num_steps=3, optimizer=optax.sgd(0.01), progress=False)
    opts.update(kw)
    return vi.fit(obj, params, key, **opts)


for _label, _key in BAD_KEYS.items():
    add(f"vi.fit.key_{_label}", (lambda k=_key: _fit(key=k)), (TypeError, ValueError), KEY_RE, f"vi.fit(elbo, params, key={_label}, num_steps=3)")
add("vi.fit.num_steps_zero", lambda: _fit(num_steps=0), ValueError, r"num_steps")
add("vi.fit.num_steps_float", lambda: _fit(num_steps=3.0), TypeError, r"num_steps")
add("vi.fit.num_samples_zero", lambda: _fit(num_samples=0), ValueError, r"num_samples")
add("vi.fit.batch_size_zero", lambda: _fit(batch_size=0, data=(jnp.zeros(4),)), ValueError, r"batch_size")
add("vi.fit.params_not_pair", lambda: _fit(params=jnp.zeros(2)), ValueError, r"params")
add("vi.fit.params_nan", lambda: _fit(params=((), jnp.array([jnp.nan, 0.0]))), ValueError, r"params")
add("vi.fit.objective_is_callable", lambda: _fit(obj=_LJ), TypeError, r"objective")
add("vi.fit.optimizer_wrong_kind", lambda: _fit(optimizer=0.01), TypeError, r"optimizer")
add("vi.fit.num_chunks_zero", lambda: _fit(num_chunks=0), ValueError, r"num_chunks")
add("vi.fit.max_seconds_negative", lambda: _fit(max_seconds=-1.0), ValueError, r"max_seconds")
add(
    "vi.fit.log_joint_nan",
    lambda: _fit(obj=vi.elbo(lambda z, th: z * jnp.nan, _GUIDE)),
    (ValueError, harness.NonFiniteError),
    r"step|non-finite|NaN",
)
add(
    "vi.fit.learning_rate_diverges",
    lambda: _fit(obj=vi.elbo(lambda z, th: -1e30 * z**4, _GUIDE), optimizer=__import__("optax").sgd(1e6), num_steps=20),
    (ValueError, harness.NonFiniteError),
    r"step|non-finite|NaN",
)
add("vi.elbo.log_joint_is_distribution", lambda: vi.elbo(N01, _GUIDE), TypeError, r"log_joint")
add("vi.elbo.guide_is_distribution", lambda: vi.elbo(_LJ, N01), TypeError, r"guide")
add("vi.elbo.strategy_wrong_kind", lambda: vi.elbo(_LJ, _GUIDE, strategy="reparam"), TypeError, r"strategy")
add("vi.iwae.num_importance_samples_zero", lambda: vi.iwae(_LJ, _GUIDE, 0), ValueError, r"num_importance_samples")
add("vi.iwae.num_importance_samples_float", lambda: vi.iwae(_LJ, _GUIDE, 4.0), TypeError, r"num_importance_samples")
add("vi.vimco.num_importance_samples_one", lambda: vi.vimco(_LJ, _GUIDE, 1), ValueError, r"num_importance_samples")
add("vi.iwae_dreg.num_importance_samples_negative", lambda: vi.iwae_dreg(_LJ, _GUIDE, -2), ValueError, r"num_importance_samples")
add(
    "vi.reweighted_wake_sleep.no_wake",
    lambda: vi.reweighted_wake_sleep(_LJ, _GUIDE, 4, wake_q=False, wake_p=False),
    ValueError,
    r"wake_q|wake_p",
)
add("vi.sir_sample.key_int", lambda: vi.sir_sample(_LJ, _GUIDE, P0, 0, 4), TypeError, KEY_RE)
add("vi.sir_sample.num_importance_samples_zero", lambda: vi.sir_sample(_LJ, _GUIDE, P0, KEY, 0), ValueError, r"num_importance_samples")
add("vi.SIRGuide.num_importance_samples_zero", lambda: vi.SIRGuide(_GUIDE, 0), ValueError, r"num_importance_samples")
add("vi.hierarchical_elbo.num_inner_zero", lambda: vi.iwhvi(_LJ, vi.HierarchicalGuide(SQ, SQ, SQ), 0), ValueError, r"num_inner")
add("vi.hierarchical_elbo.guide_wrong_kind", lambda: vi.hierarchical_elbo(_LJ, _GUIDE), TypeError, r"guide")
add("vi.check_vi_params.bare_array", lambda: vi.check_vi_params(jnp.zeros(2)), ValueError, r"params")
add("vi.check_num_importance_samples.bool", lambda: vi.check_num_importance_samples(True), TypeError, r"num_importance_samples")
add("vi.log_mean_exp.axis_out_of_range", lambda: vi.log_mean_exp(jnp.zeros(3), axis=2), ValueError, r"axis")
add("vi.objective_from_program.not_callable", lambda: vi.objective_from_program("toy", 3), TypeError, r"program_of")
add(
    "vi.elbo.value_guide_returns_array",
    lambda: vi.elbo(_LJ, lambda phi: phi).value(P0, KEY),
    TypeError,
    r"guide",
)
add(
    "vi.elbo.value_log_joint_returns_vector",
    lambda: vi.elbo(lambda z, th: jnp.stack([z, z]), _GUIDE).value(P0, KEY),
    (TypeError, ValueError),
    r"log_joint",
)
add("vi.make_step.num_samples_zero", lambda: vi.make_step(OBJ, __import__("optax").sgd(0.1), 0), ValueError, r"num_samples")

# ============================== transport =======================================================
XS = jax.random.normal(jax.random.key(1), (16, 2))
YS = jax.random.normal(jax.random.key(2), (16, 2)) + 1.0
for _label, _key in BAD_KEYS.items():
    add(f"transport.sliced_wasserstein.key_{_label}", (lambda k=_key: transport.sliced_wasserstein(XS, YS, k, 4)), (TypeError, ValueError), KEY_RE,
        f"transport.sliced_wasserstein(x, y, key={_label}, 4)")
add("transport.sliced_wasserstein.num_directions_zero", lambda: transport.sliced_wasserstein(XS, YS, KEY, 0), ValueError, r"num_directions")
add("transport.sliced_wasserstein.num_directions_float", lambda: transport.sliced_wasserstein(XS, YS, KEY, 4.0), TypeError, r"num_directions")
add("transport.sliced_wasserstein.p_below_one", lambda: transport.sliced_wasserstein(XS, YS, KEY, 4, p=0.5), ValueError, r"\bp\b")
add("transport.sliced_wasserstein.p_nan", lambda: transport.sliced_wasserstein(XS, YS, KEY, 4, p=float("nan")), ValueError, r"\bp\b")
add("transport.sliced_wasserstein.dims_differ", lambda: transport.sliced_wasserstein(XS, YS[:, :1], KEY, 4), ValueError, r"\by\b|\bx\b")
add("transport.sliced_wasserstein.x_one_dim", lambda: transport.sliced_wasserstein(XS[:, 0], YS, KEY, 4), ValueError, r"\bx\b")
add("transport.sliced_wasserstein.x_nan", lambda: transport.sliced_wasserstein(XS.at[0, 0].set(jnp.nan), YS, KEY, 4), ValueError, r"\bx\b")
add("transport.sliced_wasserstein.directions_misspelt", lambda: transport.sliced_wasserstein(XS, YS, KEY, 4, directions="sobl"), ValueError, r"directions")
add(
    "transport.sliced_wasserstein.directions_not_unit",
    lambda: transport.sliced_wasserstein(XS, YS, KEY, 4, directions=jnp.ones((4, 2))),
    ValueError,
    r"directions",
)
add(
    "transport.sliced_wasserstein.directions_wrong_dim",
    lambda: transport.sliced_wasserstein(XS, YS, KEY, 4, directions=jnp.ones((4, 3)) / jnp.sqrt(3.0)),
    ValueError,
    r"directions",
)
add(
    "transport.sliced_wasserstein.control_variate_misspelt",
    lambda: transport.sliced_wasserstein(XS, YS, KEY, 4, control_variate="gaussian"),
    ValueError,
    r"control_variate",
)
add(
    "transport.sliced_wasserstein.x_weights_wrong_length",
    lambda: transport.sliced_wasserstein(XS, YS, KEY, 4, x_weights=jnp.ones(3)),
    ValueError,
    r"x_weights",
)
add(
    "transport.sliced_wasserstein.y_weights_negative",
    lambda: transport.sliced_wasserstein(XS, YS, KEY, 4, y_weights=-jnp.ones(16)),
    ValueError,
    r"y_weights",
)
add(
    "transport.sliced_wasserstein.num_blocks_zero",
    lambda: transport.sliced_wasserstein(XS, YS, KEY, 4, num_blocks=0),
    ValueError,
    r"num_blocks",
)
add(
    "transport.sliced_wasserstein.cv_centering_misspelt",
    lambda: transport.sliced_wasserstein(XS, YS, KEY, 4, control_variate="upper", cv_centering="exct"),
    ValueError,
    r"cv_centering",
)
add("transport.wasserstein_1d.p_zero", lambda: transport.wasserstein_1d(XS[:, 0], YS[:, 0], p=0.0), ValueError, r"\bp\b")
add("transport.wasserstein_1d.u_two_dim", lambda: transport.wasserstein_1d(XS, YS[:, 0]), ValueError, r"\bu\b")
add("transport.wasserstein_1d.u_weights_wrong_length", lambda: transport.wasserstein_1d(XS[:, 0], YS[:, 0], u_weights=jnp.ones(5)), ValueError, r"u_weights")
add("transport.wasserstein_1d.v_weights_negative", lambda: transport.wasserstein_1d(XS[:, 0], YS[:, 0], v_weights=-jnp.ones(16)), ValueError, r"v_weights")
add("transport.wasserstein_1d.u_empty", lambda: transport.wasserstein_1d(jnp.zeros(0), YS[:, 0]), ValueError, r"\bu\b")
add("transport.wasserstein_1d.v_nan", lambda: transport.wasserstein_1d(XS[:, 0], YS[:, 0].at[0].set(jnp.nan)), ValueError, r"\bv\b")
add("transport.exact_wasserstein.p_negative", lambda: transport.exact_wasserstein(XS, YS, p=-1.0), ValueError, r"\bp\b")
add("transport.exact_wasserstein.dims_differ", lambda: transport.exact_wasserstein(XS, YS[:, :1]), ValueError, r"\by\b|\bx\b")
add("transport.max_sliced_wasserstein.key_int", lambda: transport.max_sliced_wasserstein(XS, YS, 0, num_steps=2), TypeError, KEY_RE)
add("transport.max_sliced_wasserstein.num_starts_zero", lambda: transport.max_sliced_wasserstein(XS, YS, KEY, num_starts=0, num_steps=2), ValueError, r"num_starts")
add("transport.max_sliced_wasserstein.num_steps_zero", lambda: transport.max_sliced_wasserstein(XS, YS, KEY, num_steps=0), ValueError, r"num_steps")
add(
    "transport.max_sliced_wasserstein.learning_rate_negative",
    lambda: transport.max_sliced_wasserstein(XS, YS, KEY, num_steps=2, learning_rate=-0.1),
    ValueError,
    r"learning_rate",
)
add("transport.gradient_flow.key_int", lambda: transport.gradient_flow(XS, YS, 0, 2), TypeError, KEY_RE)
add("transport.gradient_flow.num_steps_zero", lambda: transport.gradient_flow(XS, YS, KEY, 0), ValueError, r"num_steps")
add("transport.gradient_flow.learning_rate_nan", lambda: transport.gradient_flow(XS, YS, KEY, 2, learning_rate=float("nan")), ValueError, r"learning_rate")
add("transport.gradient_flow.record_every_zero", lambda: transport.gradient_flow(XS, YS, KEY, 2, record_every=0), ValueError, r"record_every")
add("transport.gradient_flow.num_directions_negative", lambda: transport.gradient_flow(XS, YS, KEY, 2, num_directions=-3), ValueError, r"num_directions")
add("transport.gradient_flow.directions_misspelt", lambda: transport.gradient_flow(XS, YS, KEY, 2, directions="orthognal"), ValueError, r"directions")
add("transport.random_directions.key_int", lambda: transport.random_directions(0, 4, 2), TypeError, KEY_RE)
add("transport.random_directions.num_directions_zero", lambda: transport.random_directions(KEY, 0, 2), ValueError, r"num_directions")
add("transport.random_directions.dim_zero", lambda: transport.random_directions(KEY, 4, 0), ValueError, r"dim")
add("transport.sobol_directions.dim_float", lambda: transport.sobol_directions(KEY, 4, 2.0), TypeError, r"dim")
add("transport.sobol_directions.block_size_zero", lambda: transport.sobol_directions(KEY, 4, 2, block_size=0), ValueError, r"block_size")
add("transport.orthogonal_directions.key_float_array", lambda: transport.orthogonal_directions(np.zeros(2), 4, 2), (TypeError, ValueError), KEY_RE)
add("transport.orthogonal_directions.block_size_too_big", lambda: transport.orthogonal_directions(KEY, 4, 2, block_size=3), ValueError, r"block_size")

# ============================== pde =============================================================
DISK = pde.Ball(jnp.zeros(2), 1.0)
PROB = pde.DirichletProblem(DISK, boundary=lambda x: x[0])
PTS = jnp.array([[0.1, 0.2]])
_WOS = dict(num_walks=8, max_steps=16)


def _wos(problem):
    return pde.walk_on_spheres(problem, KEY, PTS, **_WOS)


for _label, _key in BAD_KEYS.items():
    add(f"pde.walk_on_spheres.key_{_label}", (lambda k=_key: pde.walk_on_spheres(PROB, k, PTS, **_WOS)), (TypeError, ValueError), KEY_RE,
        f"pde.walk_on_spheres(problem, key={_label}, points, num_walks=8)")
add("pde.walk_on_spheres.num_walks_zero", lambda: pde.walk_on_spheres(PROB, KEY, PTS, num_walks=0), ValueError, r"num_walks")
add("pde.walk_on_spheres.num_walks_float", lambda: pde.walk_on_spheres(PROB, KEY, PTS, num_walks=8.0), TypeError, r"num_walks")
add("pde.walk_on_spheres.epsilon_zero", lambda: pde.walk_on_spheres(PROB, KEY, PTS, epsilon=0.0, **_WOS), ValueError, r"epsilon")
add("pde.walk_on_spheres.epsilon_negative", lambda: pde.walk_on_spheres(PROB, KEY, PTS, epsilon=-1e-3, **_WOS), ValueError, r"epsilon")
add("pde.walk_on_spheres.max_steps_zero", lambda: pde.walk_on_spheres(PROB, KEY, PTS, num_walks=8, max_steps=0), ValueError, r"max_steps")
add("pde.walk_on_spheres.batch_size_zero", lambda: pde.walk_on_spheres(PROB, KEY, PTS, batch_size=0, **_WOS), ValueError, r"batch_size")
add("pde.walk_on_spheres.points_wrong_dim", lambda: pde.walk_on_spheres(PROB, KEY, jnp.zeros((1, 3)), **_WOS), ValueError, r"points")
add("pde.walk_on_spheres.points_outside", lambda: pde.walk_on_spheres(PROB, KEY, jnp.array([[3.0, 0.0]]), **_WOS), ValueError, r"points")
add("pde.walk_on_spheres.points_nan", lambda: pde.walk_on_spheres(PROB, KEY, jnp.array([[jnp.nan, 0.0]]), **_WOS), ValueError, r"points")
add(
    "pde.walk_on_spheres.variance_reduction_misspelt",
    lambda: pde.walk_on_spheres(PROB, KEY, PTS, variance_reduction="antitethic", **_WOS),
    ValueError,
    r"variance_reduction",
)
add(
    "pde.walk_on_spheres.problem_wrong_kind",
    lambda: pde.walk_on_spheres(DISK, KEY, PTS, **_WOS),
    TypeError,
    r"problem",
)
add(
    "pde.walk_on_spheres.boundary_nan",
    lambda: pde.walk_on_spheres(pde.DirichletProblem(DISK, boundary=lambda x: x[0] * jnp.nan), KEY, PTS, **_WOS),
    ValueError,
    r"boundary",
)
add(
    "pde.walk_on_spheres.source_inf",
    lambda: pde.walk_on_spheres(pde.DirichletProblem(DISK, boundary=lambda x: x[0], source=lambda x: x[0] * jnp.inf + jnp.inf), KEY, PTS, **_WOS),
    ValueError,
    r"source",
)
add(
    "pde.walk_on_spheres.boundary_returns_vector",
    lambda: pde.walk_on_spheres(pde.DirichletProblem(DISK, boundary=lambda x: x), KEY, PTS, **_WOS),
    (TypeError, ValueError),
    r"boundary",
)
add("pde.solution_gradient.key_int", lambda: pde.solution_gradient(PROB, 0, PTS, **_WOS), TypeError, KEY_RE)
add("pde.solution_gradient.num_walks_zero", lambda: pde.solution_gradient(PROB, KEY, PTS, num_walks=0), ValueError, r"num_walks")
add("pde.walk_moments.key_int", lambda: pde.walk_moments(PROB, 0, PTS, **_WOS), TypeError, KEY_RE)
add("pde.walk_moments.pool_size_zero", lambda: pde.walk_moments(PROB, KEY, PTS, pool_size=0, **_WOS), ValueError, r"pool_size")
add("pde.DirichletProblem.boundary_not_callable", lambda: _wos(pde.DirichletProblem(DISK, boundary=1.0)), TypeError, r"boundary")
add("pde.DirichletProblem.domain_wrong_kind", lambda: _wos(pde.DirichletProblem("disk", boundary=SQ)), TypeError, r"domain")
add("pde.DirichletProblem.absorption_negative", lambda: _wos(pde.DirichletProblem(DISK, boundary=lambda x: x[0], absorption=-1.0)), ValueError, r"absorption")
add("pde.DirichletProblem.source_not_callable", lambda: _wos(pde.DirichletProblem(DISK, boundary=lambda x: x[0], source=2.0)), TypeError, r"source")
add("pde.Ball.radius_negative", lambda: pde.Ball(jnp.zeros(2), -1.0), ValueError, r"radius")
add("pde.Ball.radius_nan", lambda: pde.Ball(jnp.zeros(2), float("nan")), ValueError, r"radius")
add("pde.Ball.center_two_dim", lambda: pde.Ball(jnp.zeros((2, 2)), 1.0), ValueError, r"center")
add("pde.Box.half_widths_negative", lambda: pde.Box(jnp.zeros(2), -jnp.ones(2)), ValueError, r"half_widths")
add("pde.Box.shape_mismatch", lambda: pde.Box(jnp.zeros(2), jnp.ones(3)), ValueError, r"half_widths|center")
add("pde.Polygon.too_few_vertices", lambda: pde.Polygon(jnp.zeros((2, 2))), ValueError, r"vertices")
add("pde.Polygon.wrong_shape", lambda: pde.Polygon(jnp.zeros((4, 3))), ValueError, r"vertices")
add(
    "pde.StarShaped.mean_radius_negative",
    lambda: pde.StarShaped(jnp.zeros(2), jnp.zeros(2), jnp.zeros(2), mean_radius=-1.0),
    ValueError,
    r"mean_radius",
)
add(
    "pde.StarShaped.num_segments_zero",
    lambda: pde.StarShaped(jnp.zeros(2), jnp.zeros(2), jnp.zeros(2), num_segments=0),
    ValueError,
    r"num_segments",
)
add(
    "pde.SignedDistance.function_not_callable",
    lambda: pde.SignedDistance(1.0, 2, (-1.0, -1.0), (1.0, 1.0)),
    TypeError,
    r"function",
)
add(
    "pde.SignedDistance.lower_above_upper",
    lambda: pde.SignedDistance(lambda x: jnp.linalg.norm(x) - 1, 2, (1.0, 1.0), (-1.0, -1.0)),
    ValueError,
    r"lower|upper",
)
add(
    "pde.SignedDistance.bounds_wrong_length",
    lambda: pde.SignedDistance(lambda x: jnp.linalg.norm(x) - 1, 2, (-1.0,), (1.0,)),
    ValueError,
    r"lower|upper",
)
add("pde.Union.second_wrong_kind", lambda: pde.Union(DISK, 3.0), TypeError, r"second")
add("pde.Difference.dims_differ", lambda: pde.Difference(DISK, pde.Ball(jnp.zeros(3), 1.0)), ValueError, r"second|dim")
add("pde.sample_interior.key_int", lambda: pde.sample_interior(DISK, 0, 4), TypeError, KEY_RE)
add("pde.sample_interior.n_zero", lambda: pde.sample_interior(DISK, KEY, 0), ValueError, r"\bn\b")
add("pde.sample_interior.oversample_zero", lambda: pde.sample_interior(DISK, KEY, 4, oversample=0), ValueError, r"oversample")
add("pde.check_signed_distance.num_samples_zero", lambda: pde.check_signed_distance(DISK, num_samples=0), ValueError, r"num_samples")
add("pde.check_signed_distance.tolerance_negative", lambda: pde.check_signed_distance(DISK, tolerance=-0.1), ValueError, r"tolerance")
add(
    "pde.gradient_from_moments.d_zero",
    lambda: pde.gradient_from_moments(pde.walk_moments(PROB, KEY, PTS, **_WOS), 0),
    ValueError,
    r"\bd\b",
)

# ============================== valuation =======================================================
_rng = np.random.default_rng(0)
VX = _rng.normal(size=(6, 2))
VY = np.arange(6) % 2
VXT = _rng.normal(size=(10, 2))
VYT = np.arange(10) % 2
UTIL = valuation.jax_utility(valuation.knn(k=1), VX, VY, VXT, VYT)
UTIL_LR = valuation.jax_utility(valuation.logistic_regression(), VX, VY, VXT, VYT)  # trainable by SGD (g_shapley)
for _label, _key in BAD_KEYS.items():
    add(
        f"valuation.tmc_shapley.key_{_label}",
        (lambda k=_key: valuation.tmc_shapley(UTIL, k, max_permutations=2, progress=False)),
        (TypeError, ValueError),
        KEY_RE,
        f"valuation.tmc_shapley(utility, key={_label}, max_permutations=2)",
    )
add("valuation.tmc_shapley.max_permutations_zero", lambda: valuation.tmc_shapley(UTIL, KEY, max_permutations=0, progress=False), ValueError, r"max_permutations")
add("valuation.tmc_shapley.max_permutations_float", lambda: valuation.tmc_shapley(UTIL, KEY, max_permutations=2.0, progress=False), TypeError, r"max_permutations")
add(
    "valuation.tmc_shapley.target_stderr_negative",
    lambda: valuation.tmc_shapley(UTIL, KEY, max_permutations=2, target_stderr=-1.0, progress=False),
    ValueError,
    r"target_stderr",
)
add(
    "valuation.tmc_shapley.max_seconds_negative",
    lambda: valuation.tmc_shapley(UTIL, KEY, max_permutations=2, max_seconds=-1.0, progress=False),
    ValueError,
    r"max_seconds",
)
add("valuation.tmc_shapley.utility_wrong_kind", lambda: valuation.tmc_shapley(SQ, KEY, max_permutations=2, progress=False), TypeError, r"utility")
add(
    "valuation.tmc_shapley.truncation_wrong_kind",
    lambda: valuation.tmc_shapley(UTIL, KEY, max_permutations=2, truncation=0.01, progress=False),
    TypeError,
    r"truncation",
)
add("valuation.beta_shapley.alpha_negative", lambda: valuation.beta_shapley(UTIL, KEY, alpha=-1.0, max_permutations=2, progress=False), ValueError, r"alpha")
add("valuation.beta_shapley.beta_zero", lambda: valuation.beta_shapley(UTIL, KEY, beta=0.0, max_permutations=2, progress=False), ValueError, r"beta")
add("valuation.beta_position_weights.num_players_zero", lambda: valuation.beta_position_weights(0, 1.0, 1.0), ValueError, r"num_players")
add("valuation.beta_position_weights.alpha_nan", lambda: valuation.beta_position_weights(4, float("nan"), 1.0), ValueError, r"alpha")
add("valuation.banzhaf.key_int", lambda: valuation.banzhaf(UTIL, 0, max_subsets=4, progress=False), TypeError, KEY_RE)
add("valuation.banzhaf.max_subsets_zero", lambda: valuation.banzhaf(UTIL, KEY, max_subsets=0, progress=False), ValueError, r"max_subsets")
add("valuation.banzhaf.batch_size_zero", lambda: valuation.banzhaf(UTIL, KEY, max_subsets=4, batch_size=0, progress=False), ValueError, r"batch_size")
add("valuation.g_shapley.learning_rate_negative", lambda: valuation.g_shapley(UTIL_LR, KEY, -0.1, max_permutations=2, progress=False), ValueError, r"learning_rate")
add("valuation.g_shapley.key_int", lambda: valuation.g_shapley(UTIL_LR, 0, 0.1, max_permutations=2, progress=False), TypeError, KEY_RE)
add("valuation.g_shapley.scheme_misspelt", lambda: valuation.g_shapley(UTIL_LR, KEY, 0.1, max_permutations=2, scheme="antithetc", progress=False), ValueError, r"scheme")
add("valuation.sample_permutations.scheme_misspelt", lambda: valuation.sample_permutations(KEY, 4, 2, scheme="antithetc"), ValueError, r"scheme")
add("valuation.sample_permutations.num_players_zero", lambda: valuation.sample_permutations(KEY, 0, 2), ValueError, r"num_players")
add("valuation.sample_permutations.key_int", lambda: valuation.sample_permutations(0, 4, 2), TypeError, KEY_RE)
add("valuation.jax_utility.learner_wrong_kind", lambda: valuation.jax_utility(SQ, VX, VY, VXT, VYT), TypeError, r"learner")
add("valuation.jax_utility.y_wrong_length", lambda: valuation.jax_utility(valuation.knn(k=1), VX, VY[:4], VXT, VYT), ValueError, r"\by\b")
add("valuation.jax_utility.X_test_wrong_width", lambda: valuation.jax_utility(valuation.knn(k=1), VX, VY, VXT[:, :1], VYT), ValueError, r"X_test")
add("valuation.jax_utility.X_nan", lambda: valuation.jax_utility(valuation.knn(k=1), np.full((6, 2), np.nan), VY, VXT, VYT), ValueError, r"\bX\b")
add("valuation.jax_utility.y_float_labels", lambda: valuation.jax_utility(valuation.knn(k=1), VX, VY + 0.5, VXT, VYT), (TypeError, ValueError), r"\by\b|labels")
add("valuation.jax_utility.y_label_out_of_range", lambda: valuation.jax_utility(valuation.knn(k=1), VX, VY + 5, VXT, VYT), ValueError, r"\by\b|labels")
add("valuation.jax_utility.metric_not_callable", lambda: valuation.jax_utility(valuation.knn(k=1), VX, VY, VXT, VYT, metric="accuracy"), TypeError, r"metric")
add("valuation.jax_utility.groups_wrong_length", lambda: valuation.jax_utility(valuation.knn(k=1), VX, VY, VXT, VYT, groups=np.zeros(3, int)), ValueError, r"groups")
add("valuation.sklearn_utility.model_wrong_kind", lambda: valuation.sklearn_utility("svm", VX, VY, VXT, VYT), TypeError, r"model")
add("valuation.knn.k_zero", lambda: valuation.knn(k=0), ValueError, r"\bk\b")
add("valuation.knn.num_classes_one", lambda: valuation.knn(k=1, num_classes=1), ValueError, r"num_classes")
add("valuation.mlp.hidden_zero", lambda: valuation.mlp(hidden=0), ValueError, r"hidden")
add("valuation.mlp.learning_rate_negative", lambda: valuation.mlp(learning_rate=-0.1), ValueError, r"learning_rate")
add("valuation.logistic_regression.l2_negative", lambda: valuation.logistic_regression(l2=-1.0), ValueError, r"l2")
add("valuation.logistic_regression.num_newton_steps_zero", lambda: valuation.logistic_regression(num_newton_steps=0), ValueError, r"num_newton_steps")
add("valuation.Truncation.rtol_negative", lambda: valuation.Truncation(rtol=-0.1), ValueError, r"rtol")
add("valuation.Truncation.patience_negative", lambda: valuation.Truncation(patience=-1), ValueError, r"patience")
add("valuation.Truncation.burn_in_fraction_above_one", lambda: valuation.Truncation(burn_in_fraction=1.5), ValueError, r"burn_in_fraction")
add("valuation.Stopping.max_draws_zero", lambda: valuation.Stopping(max_draws=0), ValueError, r"max_draws")
add("valuation.Stopping.window_zero", lambda: valuation.Stopping(window=0), ValueError, r"window")
add("valuation.Stopping.rtol_negative", lambda: valuation.Stopping(rtol=-1.0), ValueError, r"rtol")
add("valuation.exact_shapley.too_many_players", lambda: valuation.exact_shapley(UTIL, max_players=3), ValueError, r"max_players|players")
add("valuation.exact_shapley.utility_wrong_kind", lambda: valuation.exact_shapley(lambda s: 0.0), TypeError, r"utility")
add("valuation.neyman_inclusion.floor_above_one", lambda: valuation.neyman_inclusion(np.ones((3, 4)), floor=1.5), ValueError, r"floor")
add("valuation.history_deviation.window_zero", lambda: valuation.history_deviation(np.ones((10, 3)), window=0), ValueError, r"window")
add("valuation.accuracy.length_mismatch", lambda: valuation.accuracy(jnp.zeros(3), jnp.zeros(4)), ValueError, r"y_pred|y_true")

# ============================== harness =========================================================
_UPD = lambda params, opt_state, key: (params, opt_state, jnp.sum(params), params)  # noqa: E731
add("harness.train.key_int", lambda: harness.train(_UPD, jnp.zeros(2), (), 0, 2, progress=False), TypeError, KEY_RE)
add("harness.train.num_steps_zero", lambda: harness.train(_UPD, jnp.zeros(2), (), KEY, 0, progress=False), ValueError, r"num_steps")
add("harness.train.chunk_size_zero", lambda: harness.train(_UPD, jnp.zeros(2), (), KEY, 2, chunk_size=0, progress=False), ValueError, r"chunk_size")
add("harness.train.update_fn_not_callable", lambda: harness.train(3, jnp.zeros(2), (), KEY, 2, progress=False), TypeError, r"update_fn")
add(
    "harness.train.update_fn_returns_nan",
    lambda: harness.train(lambda p, s, k: (p, s, jnp.nan * jnp.sum(p), p), jnp.zeros(2), (), KEY, 2, progress=False),
    (ValueError, harness.NonFiniteError),
    r"step|non-finite|NaN",
)
add(
    "harness.train.update_fn_returns_three",
    lambda: harness.train(lambda p, s, k: (p, s, jnp.sum(p)), jnp.zeros(2), (), KEY, 2, progress=False),
    (TypeError, ValueError),
    r"update_fn",
)
add("harness.run_chunks.num_steps_negative", lambda: harness.run_chunks(lambda s, x: (s, s), 0.0, -1, chunk_size=1), ValueError, r"num_steps")
add("harness.run_chunks.chunk_size_zero", lambda: harness.run_chunks(lambda s, x: (s, s), 0.0, 2, chunk_size=0), ValueError, r"chunk_size")
add("harness.run_chunks.step_fn_not_callable", lambda: harness.run_chunks(None, 0.0, 2, chunk_size=1), TypeError, r"step_fn")
add("harness.run_rounds.key_int", lambda: harness.run_rounds(lambda k, n: (np.zeros((n, 1)), {}), 0, 4, batch_size=2), TypeError, KEY_RE)
add("harness.run_rounds.max_items_zero", lambda: harness.run_rounds(lambda k, n: (np.zeros((n, 1)), {}), KEY, 0, batch_size=2), ValueError, r"max_items")
add("harness.run_rounds.batch_size_zero", lambda: harness.run_rounds(lambda k, n: (np.zeros((n, 1)), {}), KEY, 4, batch_size=0), ValueError, r"batch_size")
add("harness.round_sizes.unit_zero", lambda: harness.round_sizes(4, 2, unit=0), ValueError, r"unit")
add("harness.round_sizes.batch_size_negative", lambda: harness.round_sizes(4, -2), ValueError, r"batch_size")
add("harness.resolve_progress.wrong_kind", lambda: harness.resolve_progress("yes"), (TypeError, ValueError), r"progress")
add("harness.TqdmProgress.mininterval_negative", lambda: harness.TqdmProgress(mininterval=-1.0), ValueError, r"mininterval")
add("harness.hash_function.not_callable", lambda: harness.hash_function(3), TypeError, r"fn")
add("harness.fingerprint.functions_not_mapping", lambda: harness.fingerprint(functions=[SQ]), TypeError, r"functions")
add("harness.load_checkpoint.missing_file", lambda: harness.load_checkpoint("/nonexistent/ulam_ckpt.npz"), (FileNotFoundError, ValueError), r"ulam_ckpt|path")

# ============================== sorting =========================================================
add("sorting.sort.method_misspelt", lambda: sorting.sort(jnp.zeros(4), method="bitonc"), ValueError, r"method")
add("sorting.argsort.method_misspelt", lambda: sorting.argsort(jnp.zeros(4), method="xla2"), ValueError, r"method")
add("sorting.sort.axis_out_of_range", lambda: sorting.sort(jnp.zeros(4), axis=2), ValueError, r"axis")
add("sorting.sort.string_input", lambda: sorting.sort("abc"), TypeError, r"\bx\b")
add("sorting.sort_method.method_misspelt", lambda: sorting.sort_method(jnp.zeros(4), "fastest"), ValueError, r"method")

# ============================== plots ===========================================================
add("plots.plot_estimate.level_above_one", lambda: plots.plot_estimate(ulam.Estimate(1.0, 0.1, 10), level=1.5), ValueError, r"level")
add("plots.plot_estimate.not_estimate", lambda: plots.plot_estimate([1.0, 2.0]), TypeError, r"estimate")
add("plots.plot_path.stderr_wrong_length", lambda: plots.plot_path(np.zeros(5), np.ones(3)), ValueError, r"stderr")
add("plots.plot_path.level_zero", lambda: plots.plot_path(np.zeros(5), np.ones(5), level=0.0), ValueError, r"level")
add("plots.plot_trace.window_zero", lambda: plots.plot_trace(np.zeros(5), window=0), ValueError, r"window")
add("plots.plot_values.top_zero", lambda: plots.plot_values(ulam.Estimate(np.zeros(3), np.ones(3), 10), top=0), ValueError, r"top")
add("plots.plot_running.level_negative", lambda: plots.plot_running(np.zeros(5), level=-0.5), ValueError, r"level")
add("plots.plot_values.labels_wrong_length", lambda: plots.plot_values(ulam.Estimate(np.zeros(3), np.ones(3), 10), labels=["a"]), ValueError, r"labels")

# ============================== checks (the vocabulary itself) ==================================
add("checks.count.bool", lambda: checks.count("num_samples", True), TypeError, r"num_samples")
add("checks.prng_key.uint32_wrong_length", lambda: checks.prng_key(np.zeros(3, np.uint32)), (TypeError, ValueError), KEY_RE)
add("checks.one_of.misspelt", lambda: checks.one_of("scheme", "sytematic", ["systematic"]), ValueError, r"scheme.*systematic")

_ids = [c.id for c in CASES]
assert len(_ids) == len(set(_ids)), sorted({i for i in _ids if _ids.count(i) > 1})


def run_case(c: Case):
    """Call the entry; return ``(outcome, exception or result)`` with warnings silenced and plots closed."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            out = c.call()
        except BaseException as err:  # noqa: BLE001 -- the catalog records whatever comes out
            if isinstance(err, (KeyboardInterrupt, SystemExit)):
                raise
            return "raised", err
        finally:
            try:
                import matplotlib.pyplot as plt

                plt.close("all")
            except ImportError:  # pragma: no cover
                pass
    return "returned", out


def is_clear(c: Case, err: BaseException) -> bool:
    import re

    return isinstance(err, c.exc) and re.search(c.match, str(err)) is not None


def _params():
    for c in CASES:
        marks = ()
        if c.id in XFAIL:
            marks = (pytest.mark.xfail(strict=True, reason=f"{XFAIL[c.id][0]}: {XFAIL[c.id][1]}"),)
        yield pytest.param(c, id=c.id, marks=marks)


def test_catalog_is_big_enough():
    assert len(CASES) >= 200, len(CASES)
    assert set(XFAIL) <= {c.id for c in CASES}, set(XFAIL) - {c.id for c in CASES}


@pytest.mark.parametrize("c", list(_params()))
def test_bad_input(c: Case):
    kind, what = run_case(c)
    assert kind == "raised", f"no error; returned {type(what).__name__}"
    if not is_clear(c, what):
        raise AssertionError(f"{type(what).__name__}: {str(what).splitlines()[0] if str(what) else ''}") from what
