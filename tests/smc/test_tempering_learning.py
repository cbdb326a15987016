"""Tempered SMC's log Z against a conjugate closed form; Fisher scores against the Kalman gradient."""

import jax
import jax.numpy as jnp
import pytest

from ulam import Estimate
from ulam.smc import (
    LinearGaussianModel,
    fisher_score_functionals,
    kalman_filter,
    linear_gaussian_ssm,
    ppg,
    score_ascent,
    simulate,
    tempered_smc,
)
from ulam.testing import assert_within_stderr

S = 0.5
YS = jnp.array([[1.0, 0.5], [1.2, 0.3], [0.8, 0.9], [1.1, 0.4], [0.9, 0.6]])


def log_prior(x):
    return -0.5 * jnp.sum(x**2) - jnp.log(2 * jnp.pi)


def log_lik(x):
    return jnp.sum(jax.scipy.stats.norm.logpdf(YS, x, S))


def _closed_form():
    n = YS.shape[0]
    cov = S**2 * jnp.eye(n) + jnp.ones((n, n))
    log_z = sum(jax.scipy.stats.multivariate_normal.logpdf(YS[:, j], jnp.zeros(n), cov) for j in range(2))
    post_mean = YS.sum(0) / (n + S**2)
    return log_z, post_mean


def test_tempered_log_normalizer_matches_conjugate_closed_form():
    log_z, post_mean = _closed_form()
    reps = 12
    x0 = jax.random.normal(jax.random.key(1), (reps, 400, 2))
    out = jax.jit(lambda k, x: tempered_smc(k, log_prior, log_lik, x, num_replicates=reps))(jax.random.key(0), x0)
    assert int(out.num_steps.min()) >= 2  # it did temper
    # The replicate-pooled log Z (log of the unbiased mean of Z_hat) against the closed form,
    # with its own replicate standard error: this fails if that standard error is too small.
    assert_within_stderr(out.log_normalizer, log_z, z=4)
    assert_within_stderr(Estimate.from_samples(out.particles.mean(1)), post_mean, z=4)


def test_tempered_bad_input(key):
    with pytest.raises(ValueError, match="N >= 2"):
        tempered_smc(key, log_prior, log_lik, jnp.zeros((1, 2)))
    with pytest.raises(ValueError, match="target_ess"):
        tempered_smc(key, log_prior, log_lik, jnp.zeros((10, 2)), target_ess=1.5)
    with pytest.raises(ValueError, match="num_replicates"):
        tempered_smc(key, log_prior, log_lik, jnp.zeros((10, 2)), num_replicates=3)


def _model(a):
    return linear_gaussian_ssm(LinearGaussianModel.scalar(a, 0.6, 1.0, 1.0, p0=1.0))


_, Y = simulate(jax.random.key(1), _model(0.8), 20)


@pytest.mark.slow
def test_ppg_fisher_score_matches_kalman_gradient():
    a = 0.7
    exact = jax.grad(lambda th: kalman_filter(LinearGaussianModel.scalar(th, 0.6, 1.0, 1.0, p0=1.0), Y).log_likelihood)(a)
    init_fn, add_fn = fisher_score_functionals(_model, jnp.asarray(a))
    f = lambda k: ppg(k, _model(a), Y, 8, add_fn, initial_fn=init_fn, num_iterations=6, burn_in=2).estimate.mean  # noqa: E731
    vals = jax.jit(jax.vmap(f))(jax.random.split(jax.random.key(2), 48))
    assert_within_stderr(Estimate.from_samples(vals), exact, z=4)


@pytest.mark.slow
def test_score_ascent_approaches_the_mle():
    import scipy.optimize

    mle = scipy.optimize.minimize_scalar(
        lambda a: -float(kalman_filter(LinearGaussianModel.scalar(a, 0.6, 1.0, 1.0, p0=1.0), Y).log_likelihood),
        bounds=(0.0, 0.99),
        method="bounded",
    ).x
    out = jax.jit(lambda k: score_ascent(k, _model, 0.5, Y, 16, num_steps=150, step_size=0.02))(jax.random.key(3))
    tail = out.params[-50:].mean()
    assert abs(float(tail) - mle) < 0.08, (float(tail), mle)
    assert abs(float(tail) - mle) < 0.5 * abs(0.5 - mle)


def test_learning_bad_inputs(key):
    with pytest.raises(ValueError, match=r"estimator: expected one of 'ppg', 'paris', got 'pariss'; did you mean 'paris'"):
        score_ascent(key, _model, 0.5, Y, 16, num_steps=2, estimator="pariss")
    with pytest.raises(ValueError, match=r"num_steps: expected an integer >= 1, got 0"):
        score_ascent(key, _model, 0.5, Y, 16, num_steps=0)
    with pytest.raises(ValueError, match=r"step_size: expected a finite number > 0, got -0.1"):
        score_ascent(key, _model, 0.5, Y, 16, num_steps=2, step_size=-0.1)
    with pytest.raises(TypeError, match=r"key: expected a jax.random key"):
        tempered_smc(1, log_prior, log_lik, jnp.zeros((10, 2)))
