"""Tests for ulam.diagnostics: agreement with ArviZ, statistical behaviour, jit, bad input."""

import logging
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ulam import diagnostics as D

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    import arviz as az

    logging.getLogger("arviz").setLevel(logging.ERROR)

RTOL = 1e-6


def _ar1(rng, chains, draws, phi, start=0.0):
    """AR(1) chains x_t = phi x_{t-1} + sqrt(1 - phi^2) e_t with unit stationary variance."""
    x = np.empty((chains, draws))
    x[:, 0] = start + rng.normal(size=chains)
    noise = rng.normal(size=(chains, draws)) * np.sqrt(1 - phi**2)
    for t in range(1, draws):
        x[:, t] = phi * x[:, t - 1] + noise[:, t]
    return x


def _draw_sets():
    """Draw arrays of two shapes; each event coordinate is a different kind of chain."""
    rng = np.random.default_rng(2026)
    chains, draws = 4, 201  # odd: the split drops the middle draw
    coords = [
        _ar1(rng, chains, draws, 0.3),
        _ar1(rng, chains, draws, 0.9),
        _ar1(rng, chains, draws, -0.6),  # antithetic: ESS above N, capped at N log10 N
        rng.standard_cauchy((chains, draws)),  # heavy tails
        rng.normal(size=(chains, draws)) + np.arange(chains)[:, None],  # unmixed chains
        rng.integers(0, 3, (chains, draws)).astype(float),  # many ties in the ranks
        rng.standard_t(3.0, (chains, draws)),
        np.full((chains, draws), 2.5),  # constant: ESS = N, R-hat NaN in ArviZ
    ]
    multi = np.stack(coords, axis=-1).reshape(chains, draws, 2, 4)
    single = np.stack([_ar1(rng, 1, 300, 0.7), rng.standard_t(2.0, (1, 300))], axis=-1)
    return {"4 chains, event (2, 4)": multi, "1 chain, event (2,)": single}


DRAWS = _draw_sets()

# (ulam function, ArviZ function on a (chains, draws) array)
PAIRS = {
    "ess_bulk": (D.ess_bulk, lambda x: az.ess(x, method="bulk")),
    "ess_tail": (D.ess_tail, lambda x: az.ess(x, method="tail")),
    "ess_tail_0.1": (lambda x: D.ess_tail(x, 0.1), lambda x: az.ess(x, method="tail", prob=0.1)),
    "ess_mean": (D.ess_mean, lambda x: az.ess(x, method="mean")),
    "ess_quantile": (lambda x: D.ess_quantile(x, 0.3), lambda x: az.ess(x, method="quantile", prob=0.3)),
    "r_hat": (D.r_hat, lambda x: az.rhat(x, method="rank")),
    "mcse_mean": (D.mcse_mean, lambda x: az.mcse(x, method="mean")),
    "mcse_quantile": (
        lambda x: D.mcse_quantile(x, 0.05),
        lambda x: az.mcse(x, method="quantile", prob=0.05),
    ),
    "mcse_median": (lambda x: D.mcse_quantile(x, 0.5), lambda x: az.mcse(x, method="quantile", prob=0.5)),
}


def _arviz_per_coordinate(fn, draws):
    chains, num = draws.shape[:2]
    flat = draws.reshape(chains, num, -1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        out = [float(np.squeeze(fn(np.ascontiguousarray(flat[..., i])))) for i in range(flat.shape[-1])]
    return np.array(out).reshape(draws.shape[2:])


@pytest.mark.parametrize("case", list(DRAWS))
@pytest.mark.parametrize("name", list(PAIRS))
def test_matches_arviz(x64, case, name):
    ours, theirs = PAIRS[name]
    draws = DRAWS[case]
    got = np.asarray(ours(jnp.asarray(draws)))
    assert got.dtype == np.float64
    want = _arviz_per_coordinate(theirs, draws)
    assert got.shape == want.shape
    np.testing.assert_allclose(got, want, rtol=RTOL, atol=0, equal_nan=True)


def test_psis_matches_arviz(x64):
    rng = np.random.default_rng(7)
    # rows: light tails, heavy tails (narrow proposal), very heavy (Student-t), n not a multiple of 5
    x = rng.normal(size=1003)
    log_weights = np.stack(
        [
            rng.normal(size=1003),
            -0.5 * (0.4 * x) ** 2 + 0.5 * x**2,
            np.log(np.abs(rng.standard_t(1.2, size=1003))),
        ]
    )
    smoothed_az, khat_az = az.psislw(log_weights.copy())
    smoothed, khat = D.psis_smooth(log_weights)
    np.testing.assert_allclose(np.asarray(khat), khat_az, rtol=RTOL)
    np.testing.assert_allclose(np.asarray(smoothed), smoothed_az, rtol=RTOL, atol=1e-12)
    np.testing.assert_allclose(np.asarray(D.pareto_khat(log_weights)), khat_az, rtol=RTOL)
    # sample axis first
    np.testing.assert_allclose(np.asarray(D.pareto_khat(log_weights.T, axis=0)), khat_az, rtol=RTOL)
    # r_eff changes the tail length exactly as in ArviZ
    np.testing.assert_allclose(
        np.asarray(D.pareto_khat(log_weights, r_eff=0.5)),
        az.psislw(log_weights.copy(), reff=0.5)[1],
        rtol=RTOL,
    )


N_WEIGHTS = 4000  # one shape for the float32 weight tests, so they share compiled code


def test_pareto_khat_too_few_tail_draws_is_inf():
    # n <= 20 leaves at most 4 tail draws, and all-equal weights leave none: ArviZ gives inf
    assert np.isinf(D.pareto_khat(jnp.arange(20.0)))
    assert np.isinf(D.pareto_khat(jnp.zeros(N_WEIGHTS)))


def test_pareto_khat_separates_good_and_heavy_tailed_weights(key):
    # target N(0, 1); a wider N(0, 2^2) proposal gives bounded weights (k < 0),
    # a narrower N(0, 0.3^2) proposal gives Pareto tails with k = 1 - 0.3^2 = 0.91
    z = jax.random.normal(key, (N_WEIGHTS,))

    def log_weights(scale):
        x = scale * z
        return -0.5 * x**2 - (-0.5 * z**2 - jnp.log(scale))

    assert D.pareto_khat(log_weights(2.0)) < 0.5
    assert D.pareto_khat(log_weights(0.3)) > 0.7
    # jit gives the same answer
    np.testing.assert_allclose(jax.jit(D.pareto_khat)(log_weights(0.3)), D.pareto_khat(log_weights(0.3)), rtol=1e-6)


def test_importance_ess_equal_and_dominating_weights():
    np.testing.assert_allclose(D.kish_ess(jnp.zeros(1000)), 1000.0, rtol=1e-5)
    dominated = jnp.array([0.0, -200.0, -300.0, -jnp.inf])
    np.testing.assert_allclose(D.kish_ess(dominated), 1.0, rtol=1e-6)
    # batches along the other axis; huge log weights do not overflow
    batch = jnp.stack([jnp.zeros(8), jnp.array([1000.0] + [0.0] * 7)], axis=1)
    np.testing.assert_allclose(D.kish_ess(batch, axis=0), [8.0, 1.0], rtol=1e-5)
    np.testing.assert_allclose(jax.jit(D.kish_ess)(batch.T), [8.0, 1.0], rtol=1e-5)


def test_importance_ess_matches_kish_formula(x64):
    rng = np.random.default_rng(3)
    lw = rng.normal(size=(3, 50)) * 2
    w = np.exp(lw)
    np.testing.assert_allclose(D.kish_ess(lw), w.sum(1) ** 2 / (w**2).sum(1), rtol=1e-12)


@settings(max_examples=40, deadline=None)
@given(
    log_weights=st.lists(st.floats(-50, 50), min_size=16, max_size=16),
    shift=st.floats(-500, 500),
)
def test_importance_ess_is_invariant_to_a_constant(log_weights, shift):
    with jax.enable_x64(True):
        lw = jnp.asarray(log_weights, dtype=jnp.float64)
        ess = D.kish_ess(lw)
        np.testing.assert_allclose(D.kish_ess(lw + shift), ess, rtol=1e-9)
        assert 1.0 - 1e-9 <= ess <= 16.0 + 1e-9


CHAIN_SHAPE = (4, 1000)  # one shape for the float32 chain tests, so they share compiled code


def _ar1_draws(phi, seed):
    return jnp.asarray(_ar1(np.random.default_rng(seed), *CHAIN_SHAPE, phi), dtype=jnp.float32)


def test_rhat_detects_unmixed_chains(key):
    iid = jax.random.normal(key, CHAIN_SHAPE)
    assert D.r_hat(iid) < 1.01
    shifted = iid + jnp.arange(4.0)[:, None]  # chains one sd apart
    assert D.r_hat(shifted) > 1.1
    # chains with equal means but different spreads are caught by the folded R-hat
    spread = iid * jnp.array([1.0, 1.0, 1.0, 3.0])[:, None]
    assert D.r_hat(spread) > 1.1


def test_ess_of_ar1_chains_near_theory():
    # ESS of AR(1) chains is N (1 - phi) / (1 + phi); the Geyer estimate is within ~15% here
    phi = 0.8
    truth = np.prod(CHAIN_SHAPE) * (1 - phi) / (1 + phi)
    draws = _ar1_draws(phi, seed=11)
    assert 0.7 * truth < D.ess_mean(draws) < 1.3 * truth
    assert 0.7 * truth < D.ess_bulk(draws) < 1.3 * truth
    # the MCSE of the mean is sd / sqrt(ESS)
    np.testing.assert_allclose(
        D.mcse_mean(draws), jnp.std(draws, ddof=1) / jnp.sqrt(D.ess_mean(draws)), rtol=1e-5
    )


def test_constant_chains_do_not_crash():
    const = jnp.ones(CHAIN_SHAPE)
    n = np.prod(CHAIN_SHAPE)
    assert D.ess_bulk(const) == n  # ArviZ: constant draws count as independent
    assert D.ess_tail(const) == n
    assert jnp.isnan(D.r_hat(const))
    assert D.mcse_mean(const) == 0.0
    assert D.mcse_quantile(const, 0.5) == 0.0


def test_single_chain_rhat_is_nan_like_arviz(key):
    assert jnp.isnan(D.r_hat(jax.random.normal(key, (1, 100))))


def test_float32_close_to_arviz_and_jit():
    draws = _ar1_draws(0.5, seed=12)
    reference = np.asarray(draws, dtype=np.float64)
    for name in ["ess_bulk", "ess_tail", "ess_mean", "r_hat", "mcse_mean", "mcse_median"]:
        ours, theirs = PAIRS[name]
        single = ours(draws)
        assert single.dtype == jnp.float32 and single.shape == (), name
        np.testing.assert_allclose(single, _arviz_per_coordinate(theirs, reference), rtol=1e-3, err_msg=name)
    # a whole jitted function (one compile) equals the eager result
    np.testing.assert_allclose(jax.jit(D.r_hat)(draws), D.r_hat(draws), rtol=1e-6)


def test_pytree_of_draws():
    draws = _ar1_draws(0.5, seed=12)
    out = D.ess_bulk({"a": draws, "b": [draws, draws]})
    assert set(out) == {"a", "b"} and len(out["b"]) == 2
    np.testing.assert_allclose(out["b"][1], out["a"], rtol=1e-6)


def test_autocorrelation_matches_direct_sum(x64):
    x = np.random.default_rng(5).normal(size=(2, 37))
    centered = x - x.mean(axis=1, keepdims=True)
    direct = np.stack(
        [[np.sum(c[: 37 - t] * c[t:]) / 37 for t in range(37)] for c in centered]
    )
    np.testing.assert_allclose(D.autocovariance(x), direct, rtol=1e-10, atol=1e-13)
    np.testing.assert_allclose(D.autocorrelation(x.T, axis=0), (direct / direct[:, :1]).T, rtol=1e-10, atol=1e-13)


@pytest.mark.parametrize(
    "fn", [D.ess_bulk, D.ess_tail, D.ess_mean, D.r_hat, D.mcse_mean, lambda x: D.mcse_quantile(x, 0.5)]
)
def test_bad_draws(fn):
    with pytest.raises(ValueError, match=r"`draws` must have shape \(chains, draws, \*event\)"):
        fn(jnp.zeros(100))
    with pytest.raises(ValueError, match="`draws` needs at least 4 draws per chain"):
        fn(jnp.zeros((4, 3)))
    with pytest.raises(TypeError, match="`draws`"):
        fn(jnp.zeros((2, 10), dtype=jnp.complex64))


def test_bad_probabilities_and_weights():
    draws = jnp.zeros((2, 10))
    with pytest.raises(ValueError, match="`q` must be in"):
        D.mcse_quantile(draws, 1.5)
    with pytest.raises(ValueError, match="`prob` must be in"):
        D.ess_tail(draws, 0.0)
    with pytest.raises(ValueError, match="`log_weights` needs at least 2 samples"):
        D.pareto_khat(jnp.zeros(1))
    with pytest.raises(ValueError, match="`log_weights` must have at least one axis"):
        D.kish_ess(jnp.float32(0.0))
    with pytest.raises(ValueError, match="`r_eff` must be positive"):
        D.pareto_khat(jnp.zeros(100), r_eff=0.0)


def test_summary_statistics_equal_the_separate_diagnostics(x64):
    # One compiled program for the MCMC summary table must give the same numbers as the
    # separate (ArviZ-checked) functions.
    rng = np.random.default_rng(3)
    x = np.cumsum(rng.normal(size=(4, 300, 3)), axis=1) * 0.1 + rng.normal(size=(4, 300, 3))
    s = D.summary_statistics(x)
    np.testing.assert_allclose(s["mean"], x.mean(axis=(0, 1)), rtol=1e-12)
    np.testing.assert_allclose(s["sd"], x.reshape(-1, 3).std(axis=0, ddof=1), rtol=1e-12)
    for name, fn in [("mcse_mean", D.mcse_mean), ("ess_bulk", D.ess_bulk), ("ess_tail", D.ess_tail), ("r_hat", D.r_hat)]:
        np.testing.assert_allclose(s[name], fn(x), rtol=1e-10, err_msg=name)


def test_classic_split_r_hat_matches_arviz_split(x64):
    draws = _ar1_draws(0.5, seed=12)
    ours = D.r_hat_classic(draws)
    theirs = _arviz_per_coordinate(lambda x: az.rhat(x, method="split"), np.asarray(draws))
    np.testing.assert_allclose(ours, theirs, rtol=1e-6)


def test_deprecated_names_warn_and_agree(key):
    x = jax.random.normal(key, (4, 100))
    with pytest.warns(DeprecationWarning, match="use ulam.diagnostics.r_hat"):
        old = D.rhat(x)
    np.testing.assert_array_equal(old, D.r_hat(x))
    with pytest.warns(DeprecationWarning, match="use ulam.diagnostics.kish_ess"):
        old = D.importance_ess(x[0])
    np.testing.assert_array_equal(old, D.kish_ess(x[0]))
    s = D.summary_statistics(x)
    np.testing.assert_array_equal(s["rhat"], s["r_hat"])
    # The streaming form is the same number.
    w = jnp.exp(x[0])
    np.testing.assert_allclose(D.kish_ess_from_sums(jnp.sum(w), jnp.sum(w * w)), D.kish_ess(x[0]), rtol=1e-5)
