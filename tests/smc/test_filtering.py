"""Particle filters against the Kalman filter: likelihood, filtering means, variance estimate, bad input."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ulam import Estimate
from ulam.smc import (
    Auxiliary,
    Bootstrap,
    Guided,
    LinearGaussianModel,
    StateSpaceModel,
    kalman_filter,
    linear_gaussian_ssm,
    run_filter,
    simulate,
)
from ulam.testing import assert_within_stderr, z_for_family

T = 25
LG = LinearGaussianModel.scalar(0.9, 0.6, 1.0, 1.0)
SSM = linear_gaussian_ssm(LG)
_, Y = simulate(jax.random.key(3), SSM, T)
KF = kalman_filter(LG, Y)

# Optimal proposal of the linear-Gaussian model: x_t | x_{t-1}, y_t is Gaussian.
_PV = 1.0 / (1.0 / 0.36 + 1.0)
_P0V = 1.0 / (0.19 / 0.36 + 1.0)
GUIDED = Guided(
    SSM,
    proposal_sample=lambda k, xp, y: _PV * (0.9 * xp / 0.36 + y) + jnp.sqrt(_PV) * jax.random.normal(k),
    proposal_log_prob=lambda xp, x, y: jax.scipy.stats.norm.logpdf(x, _PV * (0.9 * xp / 0.36 + y), jnp.sqrt(_PV)),
    initial_proposal_sample=lambda k, y: _P0V * y + jnp.sqrt(_P0V) * jax.random.normal(k),
    initial_proposal_log_prob=lambda x, y: jax.scipy.stats.norm.logpdf(x, _P0V * y, jnp.sqrt(_P0V)),
)
# Look-ahead: the predictive density of y_t at the predicted mean.
AUX = Auxiliary(Bootstrap(SSM), lambda xp, y: jax.scipy.stats.norm.logpdf(y, 0.9 * xp, jnp.sqrt(0.36 + 1.0)))


def _loglik_runs(fk, key, n, reps, **kw):
    f = lambda k: run_filter(k, fk, Y, n, **kw).log_likelihood  # noqa: E731
    return jax.jit(jax.vmap(f))(jax.random.split(key, reps))


@pytest.fixture(scope="module")
def runs():
    fks = {"bootstrap": Bootstrap(SSM), "guided": GUIDED, "auxiliary": AUX}
    return {name: _loglik_runs(fk, jax.random.key(11 + i), 64, 400) for i, (name, fk) in enumerate(fks.items())}


@pytest.mark.parametrize("name", ["bootstrap", "guided", "auxiliary"])
def test_likelihood_estimate_is_unbiased(runs, name):
    """E[exp(log L_hat - log L)] = 1 for every filter (the normalizing constant is unbiased)."""
    ratio = jnp.exp(runs[name].mean - KF.log_likelihood)
    assert_within_stderr(Estimate.from_samples(ratio), 1.0, z=4)


def test_guided_optimal_proposal_has_lower_variance(runs):
    assert float(jnp.var(runs["guided"].mean)) < 0.5 * float(jnp.var(runs["bootstrap"].mean))


def test_lee_whiteley_variance_estimate_is_unbiased(x64):
    """E[Lhat^2 * relvar_hat] = Var(Lhat): d = (Lhat/L)^2 relvar - (Lhat/L - 1)^2 has mean 0."""
    lg = LinearGaussianModel.scalar(0.9, 0.6, 1.0, 1.0)
    ssm = linear_gaussian_ssm(lg)
    y = Y[:10].astype(jnp.float64)
    truth = kalman_filter(lg, y).log_likelihood
    f = lambda k: run_filter(k, Bootstrap(ssm), y, 16, resampling="multinomial", ess_threshold=1.0).log_likelihood  # noqa: E731
    ll = jax.jit(jax.vmap(f))(jax.random.split(jax.random.key(5), 4000))
    r = jnp.exp(ll.mean - truth)
    d = r**2 * ll.info["relative_variance"] - (r - 1.0) ** 2
    assert_within_stderr(Estimate.from_samples(d), 0.0, z=4)
    # And the variance is there to detect: Var(Lhat / L) is clearly positive.
    assert float(jnp.var(r)) > 0.05


def test_filtering_means_match_kalman_within_stderr(key):
    out = run_filter(key, Bootstrap(SSM), Y, 2000)
    assert_within_stderr(out.filtering_mean, KF.filtered_means, z=z_for_family(T))
    assert out.ess.shape == (T,) and bool(jnp.all(out.ess > 0))
    assert_within_stderr(out.log_likelihood, KF.log_likelihood, z=4)


def test_missing_observations_are_skipped(key):
    y = Y.at[jnp.array([4, 5, 12])].set(jnp.nan)
    kf = kalman_filter(LG, y)
    out = run_filter(key, Bootstrap(SSM), y, 2000)
    assert bool(jnp.isfinite(out.log_likelihood.mean))
    assert_within_stderr(out.filtering_mean, kf.filtered_means, z=z_for_family(T))
    assert_within_stderr(out.log_likelihood, kf.log_likelihood, z=4)


def test_vmaps_over_parameters():
    a_values = jnp.array([0.5, 0.9])

    def loglik(a):
        ssm = linear_gaussian_ssm(LinearGaussianModel.scalar(a, 0.6, 1.0, 1.0, p0=1.0))
        return run_filter(jax.random.key(0), Bootstrap(ssm), Y, 500).log_likelihood.mean

    batched = jax.jit(jax.vmap(loglik))(a_values)
    np.testing.assert_allclose(float(batched[1]), float(loglik(a_values[1])), rtol=1e-4)
    exact = [float(kalman_filter(LinearGaussianModel.scalar(a, 0.6, 1.0, 1.0, p0=1.0), Y).log_likelihood) for a in a_values]
    # The likelihood ranks the two values like the exact one (they are ~10 nats apart).
    assert (batched[1] > batched[0]) == (exact[1] > exact[0])


def test_history_genealogy_is_consistent(key):
    out = run_filter(key, Bootstrap(SSM), Y, 2000, keep_history=True)
    h = out.history
    assert h.particles.shape == (T, 2000) and h.ancestors.shape == (T, 2000)
    np.testing.assert_allclose(np.asarray(h.log_weights[-1]), np.asarray(out.log_weights))
    resampled = np.asarray(out.resampled)
    ident = np.all(np.asarray(h.ancestors) == np.arange(2000), axis=1)
    assert np.all(ident[~resampled])


# --- bad input -------------------------------------------------------------------

_OUTLIER_SSM = StateSpaceModel(
    initial_sample=SSM.initial_sample,
    transition_sample=SSM.transition_sample,
    observation_log_prob=lambda x, y: jnp.where(jnp.abs(y - x) < 10.0, -0.5 * (y - x) ** 2, -jnp.inf),
)


def test_all_weights_zero_names_the_step(key):
    y = Y.at[7].set(1e4)
    with pytest.raises(ValueError, match=r"time step 7.*likely causes"):
        run_filter(key, Bootstrap(_OUTLIER_SSM), y, 50)


def test_too_few_particles(key):
    with pytest.raises(ValueError, match=r"num_particles: expected an integer >= 2, got 1"):
        run_filter(key, Bootstrap(SSM), Y, 1)


@pytest.mark.parametrize("threshold", [0.0, 1.01])
def test_threshold_outside_unit_interval(key, threshold):
    with pytest.raises(ValueError, match=r"ess_threshold.*\(0, 1\]"):
        run_filter(key, Bootstrap(SSM), Y, 10, ess_threshold=threshold)


def test_wrong_observation_shape(key):
    with pytest.raises(ValueError, match=r"observations.*shape"):
        run_filter(key, Bootstrap(SSM), jnp.stack([Y, Y], 1), 10)
    with pytest.raises(ValueError, match=r"observations"):
        run_filter(key, Bootstrap(SSM), jnp.asarray(1.0), 10)


def test_int_key_is_refused():
    with pytest.raises(TypeError, match=r"key: expected a jax.random key, got the int 0; pass jax.random.key"):
        run_filter(0, Bootstrap(SSM), Y, 10)


def test_legacy_key_is_accepted():
    out = run_filter(jax.random.PRNGKey(0), Bootstrap(SSM), Y, 10)
    assert np.isfinite(float(out.log_likelihood.mean))


def test_infinite_observation_is_refused(key):
    with pytest.raises(ValueError, match=r"observations: expected finite values or NaN \(a missing observation\)"):
        run_filter(key, Bootstrap(SSM), Y.at[3].set(jnp.inf), 10)


def test_misspelt_resampling_lists_the_schemes(key):
    with pytest.raises(ValueError, match=r"resampling: expected one of 'multinomial', .*did you mean 'systematic'"):
        run_filter(key, Bootstrap(SSM), Y, 10, resampling="sytematic")


def test_float_particle_count_is_refused(key):
    with pytest.raises(TypeError, match=r"num_particles: expected an integer, got float 100.0"):
        run_filter(key, Bootstrap(SSM), Y, 100.0)


def test_negative_variance_lag_is_refused(key):
    with pytest.raises(ValueError, match=r"variance_lag: expected an integer >= 0, got -1"):
        run_filter(key, Bootstrap(SSM), Y, 10, variance_lag=-1)


def test_runs_under_jit_with_closed_over_observations():
    """Input checks must not turn a closed-over constant into a traced boolean (regression)."""
    f = jax.jit(lambda k: run_filter(k, Bootstrap(SSM), Y, 16).log_likelihood.mean)
    assert float(f(jax.random.key(0))) == float(run_filter(jax.random.key(0), Bootstrap(SSM), Y, 16).log_likelihood.mean)
