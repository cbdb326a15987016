"""Integration estimators against closed forms, with tolerances from their own standard errors."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import numpyro.distributions as dist
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import ulam
from ulam.testing import assert_unbiased, assert_variance_reduced, assert_within_stderr

NORMAL = dist.Normal(0.0, 1.0)
E_EXP = float(np.exp(0.5))  # E[exp X], X ~ N(0, 1)


def exp_f(x):
    return jnp.exp(x)


def smooth5(u):
    # A smooth 5-d integrand on the unit cube with E = prod_j (e - 1) / 1 ... scaled: E = ((e-1))^5 / ... see truth
    return jnp.prod(1.0 + 0.5 * jnp.sin(2.0 * jnp.pi * u) + u)


SMOOTH5_TRUTH = 1.5**5  # E[1 + 0.5 sin(2 pi U) + U] = 1.5 per coordinate, independent coordinates
CUBE5 = ulam.from_uniform(5, lambda u: u)


def test_monte_carlo_unbiased_scalar(key):
    est = ulam.monte_carlo(exp_f, NORMAL, key, 200_000)
    assert_within_stderr(est, E_EXP)
    assert est.n == 200_000 and float(est.ess) == 200_000


def test_monte_carlo_pytree_valued_f_and_sampling_function(key):
    def sampler(k, num):
        return {"a": jax.random.normal(k, (num, 2)), "b": jax.random.uniform(k, (num,))}

    f = lambda x: {"sq": x["a"] ** 2, "u": x["b"]}
    est = ulam.monte_carlo(f, sampler, key, 50_000, batch_size=7_000)
    assert est.mean["sq"].shape == (2,)
    assert_within_stderr(est, {"sq": jnp.ones(2), "u": jnp.array(0.5)})


def test_batching_is_exact_and_memory_bounded(key):
    # Chunked moments are merged exactly: the draws are known (every chunk is 0 .. m-1, far
    # from zero after the offset), so mean and stderr must equal NumPy's on the same numbers
    # whatever the chunking (remainder chunk or none) -- also with a float32 offset of 10^4,
    # where one-pass sums would cancel catastrophically without a good shift.
    def sampler(k, num):
        return 1e4 + jnp.arange(num, dtype=jnp.float32) / 100.0

    for batch in (1_000, 999, 10_000):
        est = ulam.monte_carlo(lambda x: x, sampler, key, 10_000, batch_size=batch)
        full, rest = divmod(10_000, batch)
        x = np.concatenate([np.arange(batch)] * full + [np.arange(rest)]) / 100.0 + 1e4
        assert est.n == 10_000
        np.testing.assert_allclose(float(est.mean), x.mean(), rtol=1e-7)
        np.testing.assert_allclose(float(est.stderr), x.std(ddof=1) / np.sqrt(x.size), rtol=2e-3)


def test_moment_merge_matches_two_pass():
    from ulam.integrate import chunk_moments, merge_moments

    rng = np.random.default_rng(0)
    x = rng.normal(size=(1000, 3)) * [1.0, 10.0, 0.1] + [5.0, -3.0, 100.0]
    g = rng.normal(size=(1000, 2))
    whole = chunk_moments(jnp.asarray(x), jnp.asarray(g))
    parts = functools.reduce(
        merge_moments, [chunk_moments(jnp.asarray(x[i : i + 137]), jnp.asarray(g[i : i + 137])) for i in range(0, 1000, 137)]
    )
    np.testing.assert_allclose(parts.mean_f, whole.mean_f, rtol=1e-5)
    np.testing.assert_allclose(parts.m2_f, whole.m2_f, rtol=1e-4)
    np.testing.assert_allclose(parts.c_fg, whole.c_fg, rtol=1e-3, atol=1e-2)
    # One-pass shifted sums (the scan's path) give the same moments for any reasonable shift.
    for shift in (whole.mean_f + 0.5, jnp.asarray(x[0])):
        one = chunk_moments(jnp.asarray(x), jnp.asarray(g), shift=(shift, jnp.asarray(g[0])))
        np.testing.assert_allclose(one.mean_f, whole.mean_f, rtol=1e-5)
        np.testing.assert_allclose(one.m2_f, whole.m2_f, rtol=1e-4)
        np.testing.assert_allclose(one.c_fg, whole.c_fg, rtol=1e-3, atol=1e-2)
        np.testing.assert_allclose(one.c_gg, whole.c_gg, rtol=1e-4)


def test_same_key_same_result(key):
    a = ulam.monte_carlo(exp_f, NORMAL, key, 10_000)
    b = ulam.monte_carlo(exp_f, NORMAL, key, 10_000)
    assert float(a.mean) == float(b.mean) and float(a.stderr) == float(b.stderr)


def test_monte_carlo_inside_jit_and_vmap(key):
    run = jax.jit(lambda k: ulam.monte_carlo(exp_f, NORMAL, k, 4_096).mean)
    means = jax.vmap(run)(jax.random.split(key, 8))
    assert means.shape == (8,)
    assert_unbiased(lambda k: ulam.monte_carlo(exp_f, NORMAL, k, 4_096), key, E_EXP, num_replicates=32)


def test_antithetic_unbiased_and_reduces_variance(key):
    mc = ulam.monte_carlo(exp_f, NORMAL, key, 100_000)
    anti = ulam.antithetic(exp_f, NORMAL, key, 100_000)
    assert_within_stderr(anti, E_EXP)
    assert_variance_reduced(mc, anti, 1.3)  # theory: Var f / (Var f + Cov) = (e^2-e)/(e^2-e ... ) ~ 1.6
    assert anti.n == 100_000


def test_antithetic_through_inverse_cdf(key):
    # Exponential(1) is not symmetric: the mirror is F^-1(1 - U). E[X^2] = 2.
    est = ulam.antithetic(lambda x: x**2, dist.Exponential(1.0), key, 100_000)
    assert_within_stderr(est, 2.0)
    mc = ulam.monte_carlo(lambda x: x**2, dist.Exponential(1.0), key, 100_000)
    assert_variance_reduced(mc, est, 1.2)


def test_antithetic_on_symmetric_integrand_does_not_help(key):
    # f even => f(X) = f(-X): the pair average has Var f, i.e. twice plain MC's per-draw variance.
    est = ulam.antithetic(lambda x: x**2, NORMAL, key, 50_000)
    assert_within_stderr(est, 1.0)
    assert float(est.info["variance_reduction"]) == pytest.approx(0.5, rel=0.05)


def test_rqmc_unbiased_and_much_better_on_smooth_integrand(key):
    rqmc = ulam.quasi_monte_carlo(smooth5, CUBE5, key, 2**14, num_randomizations=16)
    assert_within_stderr(rqmc, SMOOTH5_TRUTH)
    mc = ulam.monte_carlo(smooth5, CUBE5, key, 2**14)
    assert_variance_reduced(mc, rqmc, 100.0)


def test_rqmc_replicates_are_unbiased(key):
    with pytest.warns(UserWarning, match="num_randomizations: 2 independent scrambles give an unreliable"):
        assert_unbiased(
            lambda k: ulam.quasi_monte_carlo(exp_f, NORMAL, k, 2**8, num_randomizations=2),
            key,
            E_EXP,
            num_replicates=64,
        )


def test_rqmc_default_randomizations_are_enough():
    import inspect

    assert inspect.signature(ulam.quasi_monte_carlo).parameters["num_randomizations"].default >= 16


def test_sobol_table_ships_with_ulam_not_read_from_scipy_private_files():
    import inspect

    from ulam.integrate import sobol

    assert "_sobol_direction_numbers" not in inspect.getsource(sobol)
    poly, vinit = sobol.joe_kuo_table()
    assert poly.shape == (21201,) and vinit.shape == (21201, 18)
    with pytest.raises(ValueError, match="dim: Sobol' direction numbers exist for at most 21201 dimensions"):
        sobol.sobol_directions(21202, 4)


@settings(max_examples=8, deadline=None)
@given(st.integers(min_value=0, max_value=2**31 - 1), st.sampled_from([1, 5]))
def test_sobol_scrambled_net_is_stratified(seed, dim):
    # A (0, m, d)-net in base 2 has exactly one point in each of the 2^m intervals of every 1-d margin.
    u = np.asarray(ulam.sobol_points(jax.random.key(seed), 64, dim))
    assert u.shape == (64, dim) and np.all((u > 0) & (u < 1))
    for j in range(dim):
        counts = np.bincount(np.floor(u[:, j] * 64).astype(int), minlength=64)
        assert np.all(counts == 1)


def test_sobol_direction_numbers_match_scipy():
    # Our Joe-Kuo recurrence against SciPy's engine: the unscrambled point with index
    # 2^(k+1) - 1 in SciPy's Gray-code order is the single direction number v_k.
    from scipy.stats import qmc

    from ulam.integrate.sobol import sobol_directions as _sobol_directions

    dim, bits = 40, 12
    ours = _sobol_directions(dim, bits)
    for k in range(bits):
        engine = qmc.Sobol(dim, scramble=False, bits=32)
        engine.fast_forward((1 << (k + 1)) - 1)
        theirs = np.round(engine.random(1)[0] * 2.0**32).astype(np.uint64).astype(np.uint32)
        np.testing.assert_array_equal(ours[k], theirs)


def test_stratified_unbiased_and_reduces_variance(key):
    st_est = ulam.stratified(exp_f, NORMAL, key, 20_000, num_strata=100)
    assert_within_stderr(st_est, E_EXP)
    mc = ulam.monte_carlo(exp_f, NORMAL, key, 20_000)
    assert_variance_reduced(mc, st_est, 5.0)
    assert_unbiased(lambda k: ulam.stratified(exp_f, NORMAL, k, 64), key, E_EXP, num_replicates=64)


def test_importance_sampling_plain_and_self_normalized(key):
    target = dist.Normal(1.0, 1.0)
    proposal = dist.Normal(0.0, 2.0)
    est = ulam.importance_sampling(lambda x: x**2, target.log_prob, proposal, key, 20_000, self_normalized=False)
    assert_within_stderr(est, 2.0)
    unnorm = lambda x: target.log_prob(x) + 3.0  # unknown constant: only self-normalized is valid
    sn = ulam.importance_sampling(lambda x: x**2, unnorm, proposal, key, 20_000)
    assert_within_stderr(sn, 2.0)
    assert 0.2 * 20_000 < float(sn.info["weight_ess"]) < 20_000
    assert_unbiased(
        lambda k: ulam.importance_sampling(lambda x: x, target.log_prob, proposal, k, 2_000, self_normalized=False),
        key, 1.0, num_replicates=32,
    )


def test_importance_sampling_streaming_equals_one_batch(key):
    target = dist.Normal(1.0, 1.0)
    proposal = dist.Normal(0.0, 2.0)
    a = ulam.importance_sampling(lambda x: x, target.log_prob, proposal, key, 20_000, batch_size=20_000)
    b = ulam.importance_sampling(lambda x: x, target.log_prob, proposal, key, 20_000, batch_size=3_000)
    assert_within_stderr(a, 1.0)
    assert_within_stderr(b, 1.0)
    assert float(b.info["weight_ess"]) == pytest.approx(float(a.info["weight_ess"]), rel=0.1)


def test_control_variate_factor_matches_theory(key):
    # f = exp(X), g = X: rho^2 = Cov(e^X, X)^2 / (Var e^X Var X) = e / (e^2 - e) = 1 / (e - 1).
    rho2 = 1.0 / (np.e - 1.0)
    est = ulam.control_variates(exp_f, NORMAL, key, 200_000, controls=[(lambda x: x, 0.0)])
    assert_within_stderr(est, E_EXP)
    assert float(est.info["variance_reduction"]) == pytest.approx(1.0 / (1.0 - rho2), rel=0.05)


def test_control_variate_coefficients_one_ridge_rule():
    # beta = (C_gg + lambda I)^-1 C_gf with lambda = ridge * mean variance of the controls:
    # invariant to rescaling the controls, and finite for exactly collinear controls.
    c_gg = jnp.array([[2.0, 0.0], [0.0, 8.0]])
    c_gf = jnp.array([[1.0], [4.0]])
    np.testing.assert_allclose(ulam.control_variate_coefficients(c_gg, c_gf), [[0.5], [0.5]], rtol=1e-6)
    np.testing.assert_allclose(ulam.control_variate_coefficients(100 * c_gg, 100 * c_gf), [[0.5], [0.5]], rtol=1e-6)
    collinear = jnp.array([[1.0, 1.0], [1.0, 1.0]])
    beta = ulam.control_variate_coefficients(collinear, jnp.array([[1.0], [1.0]]), ridge=1e-3)
    np.testing.assert_allclose(beta, [[0.5], [0.5]], rtol=1e-2)


def test_control_variates_several_and_unbiased_split(key):
    controls = [(lambda x: x, 0.0), (lambda x: x**2, 1.0), (lambda x: x**3, 0.0)]
    est = ulam.control_variates(exp_f, NORMAL, key, 50_000, controls)
    assert_within_stderr(est, E_EXP)
    assert float(est.info["variance_reduction"]) > 20.0
    # Cross-fitted coefficients: exactly unbiased, checked across replicates at small n where bias would show.
    assert_unbiased(
        lambda k: ulam.control_variates(exp_f, NORMAL, k, 64, controls, unbiased=True), key, E_EXP, num_replicates=256
    )


def test_sequential_reaches_target(key):
    est = ulam.sequential(
        functools.partial(ulam.monte_carlo, exp_f, NORMAL), key, batch_size=20_000, target_stderr=0.005,
        max_samples=10**6,
    )
    assert est.info["converged"] and float(est.stderr) <= 0.005
    assert_within_stderr(est, E_EXP)
    capped = ulam.sequential(
        functools.partial(ulam.monte_carlo, exp_f, NORMAL), key, batch_size=1_000, target_rtol=1e-6,
        max_samples=3_000,
    )
    assert not capped.info["converged"] and capped.n == 3_000


# -- bad input -------------------------------------------------------------------------------


def test_bad_counts(key):
    with pytest.raises(ValueError, match="num_samples: expected an integer >= 2, got 0"):
        ulam.monte_carlo(exp_f, NORMAL, key, 0)
    with pytest.raises(ValueError, match="batch_size: expected an integer >= 1, got 0"):
        ulam.monte_carlo(exp_f, NORMAL, key, 100, batch_size=0)
    with pytest.raises(TypeError, match="num_samples: expected an integer, got float 10.5"):
        ulam.monte_carlo(exp_f, NORMAL, key, 10.5)
    with pytest.raises(ValueError, match="num_samples: must be num_randomizations \\(16\\) times a power of 2"):
        ulam.quasi_monte_carlo(exp_f, NORMAL, key, 1000)


def test_bad_keys(key):
    for call in (
        lambda k: ulam.monte_carlo(exp_f, NORMAL, k, 100),
        lambda k: ulam.antithetic(exp_f, NORMAL, k, 100),
        lambda k: ulam.quasi_monte_carlo(exp_f, NORMAL, k, 2**6),
        lambda k: ulam.stratified(exp_f, NORMAL, k, 100),
        lambda k: ulam.control_variates(exp_f, NORMAL, k, 100, [(lambda x: x, 0.0)]),
        lambda k: ulam.importance_sampling(exp_f, NORMAL.log_prob, NORMAL, k, 100),
        lambda k: ulam.sobol_points(k, 8, 2),
        lambda k: ulam.sequential(functools.partial(ulam.monte_carlo, exp_f, NORMAL), k, batch_size=10,
                                  target_stderr=1.0, max_samples=100),
    ):
        with pytest.raises(TypeError, match="key: expected a jax.random key, got the int 0; pass jax.random.key"):
            call(0)
    # Legacy uint32[2] keys are accepted.
    assert ulam.monte_carlo(exp_f, NORMAL, jax.random.PRNGKey(0), 100).n == 100


def test_deprecated_count_names_still_work(key):
    new = ulam.monte_carlo(exp_f, NORMAL, key, num_samples=1000)
    with pytest.warns(DeprecationWarning, match="monte_carlo: the keyword n= is deprecated .* use num_samples="):
        old = ulam.monte_carlo(exp_f, NORMAL, key, n=1000)
    assert float(old.mean) == float(new.mean)
    with pytest.raises(TypeError, match="got both n= \\(deprecated\\) and num_samples="):
        ulam.monte_carlo(exp_f, NORMAL, key, n=10, num_samples=10)
    with pytest.warns(DeprecationWarning, match="use max_samples="):
        ulam.sequential(functools.partial(ulam.monte_carlo, exp_f, NORMAL), key, batch_size=1000,
                        target_stderr=1.0, max_n=2000)
    with pytest.warns(DeprecationWarning, match="use num_points="):
        ulam.sobol_points(key, num=4, dim=2)


def test_bad_callables(key):
    with pytest.raises(TypeError, match="f: expected a function"):
        ulam.monte_carlo(3.0, NORMAL, key, 100)
    with pytest.raises(TypeError, match="p: expected a distribution"):
        ulam.monte_carlo(exp_f, object(), key, 100)
    with pytest.raises(ValueError, match="f: must return the same shape for every draw"):
        ulam.monte_carlo(lambda x: x[x > 0], dist.Normal(jnp.zeros(3), 1.0), key, 100)


def test_proposal_without_support(key):
    target = dist.Uniform(5.0, 6.0)
    with pytest.raises(ValueError, match="proposal: every importance weight is zero"):
        ulam.importance_sampling(lambda x: x, target.log_prob, dist.Uniform(0.0, 1.0), key, 1_000)


def test_nonfinite_values_are_refused_or_dropped(key):
    f = lambda x: jnp.where(x > 2.0, jnp.nan, x)
    with pytest.raises(ValueError, match=r"non-finite values .* for \d+ of 10000 draws"):
        ulam.monte_carlo(f, NORMAL, key, 10_000)
    est = ulam.monte_carlo(f, NORMAL, key, 10_000, nonfinite="drop")
    dropped = int(est.info["num_nonfinite"])
    assert 100 < dropped < 400 and est.n == 10_000 - dropped  # P(X > 2) = 0.0228
    with pytest.raises(ValueError, match="nonfinite"):
        ulam.monte_carlo(f, NORMAL, key, 100, nonfinite="ignore")


def test_rqmc_and_strata_argument_checks(key):
    with pytest.raises(ValueError, match="power of 2"):
        ulam.quasi_monte_carlo(exp_f, NORMAL, key, 1000)
    with pytest.raises(ValueError, match="num_strata"):
        ulam.stratified(exp_f, NORMAL, key, 1000, num_strata=999)
    with pytest.raises(TypeError, match="inverse CDF"):
        ulam.quasi_monte_carlo(exp_f, dist.Dirichlet(jnp.ones(3)), key, 2**8)
    with pytest.raises(ValueError, match="controls"):
        ulam.control_variates(exp_f, NORMAL, key, 100, [])


def test_pareto_k_from_streamed_tail_matches_full_psis(key, x64):
    from ulam.diagnostics import pareto_khat

    target, proposal = dist.Normal(0.0, 1.0), dist.Normal(0.0, 0.6)  # light proposal: heavy-tailed weights
    n = 5_000
    est = ulam.importance_sampling(lambda x: x, target.log_prob, proposal, key, n, batch_size=1_000)
    # Recompute the full weight vector with the same keys the estimator used.
    _, main = jax.random.split(key)
    keys = jax.random.split(main, 5)
    x = jnp.concatenate([proposal.sample(k, (1_000,)) for k in keys])
    lw = target.log_prob(x) - proposal.log_prob(x)
    assert float(est.info["pareto_k"]) == pytest.approx(float(pareto_khat(lw)), rel=1e-6)
    assert float(est.info["pareto_k"]) > 0.5


@pytest.mark.slow
def test_hundred_million_draws_in_bounded_memory():
    import subprocess
    import sys

    code = (
        "import jax, jax.numpy as jnp, numpyro.distributions as d, ulam;"
        "e = ulam.monte_carlo(jnp.exp, d.Normal(0., 1.), jax.random.key(0), 10**8);"
        "print(float(e.mean), float(e.stderr), int(e.n));"
        # VmHWM belongs to this process image; ru_maxrss would inherit the forking test worker's peak.
        "print([l.split()[1] for l in open('/proc/self/status') if l.startswith('VmHWM')][0])"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    mean, stderr, n, peak_kb = float(out[0]), float(out[1]), int(out[2]), int(out[3])
    assert n == 10**8
    assert abs(mean - E_EXP) < 4 * stderr + 1e-4  # float32 accumulation over 382 chunks
    assert peak_kb < 1024 * 1024, f"peak resident memory {peak_kb / 1024:.0f} MB exceeds 1 GB"


def test_new_distribution_parameters_reuse_the_compiled_program(key):
    # The inverse-CDF estimators take the distribution's parameters as traced arguments:
    # same kind and shape of distribution, same n -> no new compilation, and the new
    # parameters are really used (E[exp X] for X ~ N(mu, s^2) is exp(mu + s^2/2)).
    from ulam.testing import count_compilations

    calls = [
        (True, lambda p: ulam.quasi_monte_carlo(exp_f, p, key, 2**10)),
        (True, lambda p: ulam.stratified(exp_f, p, key, 2**10)),
        (False, lambda p: ulam.antithetic(exp_f, dist.Gumbel(p.loc, p.scale), key, 2**10)),
    ]
    first, second = dist.Normal(0.0, 1.0), dist.Normal(0.5, 0.5)
    for check_value, call in calls:
        call(first)
        with count_compilations() as compiled:
            est = call(second)
        assert compiled.count == 0
        if check_value:
            assert_within_stderr(est, float(np.exp(0.5 + 0.125)))


def test_second_call_with_the_same_static_configuration_does_not_recompile(key):
    # The compile-cache rule (ulam.jit_cache): stable shapes, nothing recompiles on a second call.
    from ulam.testing import count_compilations

    other_key, other_p = jax.random.fold_in(key, 1), dist.Normal(1.0, 2.0)
    ulam.monte_carlo(exp_f, NORMAL, key, 3000, batch_size=1000)
    with count_compilations() as compiled:
        ulam.monte_carlo(exp_f, NORMAL, other_key, 3000, batch_size=1000)
        ulam.monte_carlo(exp_f, other_p, key, 3000, batch_size=1000)  # new parameters: traced
    assert compiled.count == 0
    with count_compilations() as compiled:
        ulam.monte_carlo(exp_f, NORMAL, key, 4000, batch_size=1000)  # a new static configuration
    assert compiled.count >= 1


def test_every_estimator_under_jit_vmap_and_same_key(key):
    # The shared check (ulam.testing): same key -> same bits, jit(fn) == fn, vmap over keys == per key.
    from ulam.testing import assert_jit_vmap_deterministic

    controls = [(lambda x: x, 0.0)]
    estimators = {
        "monte_carlo": lambda k: ulam.monte_carlo(exp_f, NORMAL, k, 256),
        "antithetic": lambda k: ulam.antithetic(exp_f, NORMAL, k, 256),
        "quasi_monte_carlo": lambda k: ulam.quasi_monte_carlo(exp_f, NORMAL, k, 2**8),
        "stratified": lambda k: ulam.stratified(exp_f, NORMAL, k, 256),
        "control_variates": lambda k: ulam.control_variates(exp_f, NORMAL, k, 256, controls),
        "importance_sampling": lambda k: ulam.importance_sampling(exp_f, NORMAL.log_prob, dist.Normal(0.0, 2.0), k, 256),
        "sobol_points": lambda k: ulam.sobol_points(k, 16, 3),
    }
    for name, fn in estimators.items():
        assert_jit_vmap_deterministic(fn, key, num_replicates=2, msg=f"{name}: ")
