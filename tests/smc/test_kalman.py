"""Kalman filter / RTS smoother: bad model matrices raise, NaN observations are missing components."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ulam.smc import LinearGaussianModel, kalman_filter, linear_gaussian_ssm, rts_smoother


def _model2():
    """A 2-d state, 2-d observation model with correlated observation noise."""
    return LinearGaussianModel(
        transition_matrix=jnp.array([[0.9, 0.1], [0.0, 0.7]]),
        transition_cov=jnp.array([[0.5, 0.1], [0.1, 0.3]]),
        observation_matrix=jnp.array([[1.0, 0.0], [0.5, 1.0]]),
        observation_cov=jnp.array([[1.0, 0.3], [0.3, 0.8]]),
        initial_mean=jnp.array([0.2, -0.1]),
        initial_cov=jnp.eye(2),
    )


def _joint_gaussian(lg, T):
    """Mean and covariance of (x_0..x_{T-1}, y_0..y_{T-1}) stacked, built directly (no recursion)."""
    A, Q, C, R, m0, P0 = (np.asarray(v, dtype=np.float64) for v in lg[:6])
    dx, dy = A.shape[0], C.shape[0]
    # x = L e with e the stacked (x_0 noise, state noises); build the linear map explicitly.
    nx = T * dx
    M = np.zeros((nx, nx))  # x = M @ eps + mean_x, eps ~ N(0, blockdiag(P0, Q, ..., Q))
    mean_x = np.zeros(nx)
    for t in range(T):
        for s in range(t + 1):
            M[t * dx:(t + 1) * dx, s * dx:(s + 1) * dx] = np.linalg.matrix_power(A, t - s)
        mean_x[t * dx:(t + 1) * dx] = np.linalg.matrix_power(A, t) @ m0
    D = np.zeros((nx, nx))
    D[:dx, :dx] = P0
    for t in range(1, T):
        D[t * dx:(t + 1) * dx, t * dx:(t + 1) * dx] = Q
    cov_x = M @ D @ M.T
    Cb = np.kron(np.eye(T), C)
    Rb = np.kron(np.eye(T), R)
    mean = np.concatenate([mean_x, Cb @ mean_x])
    cov = np.block([[cov_x, cov_x @ Cb.T], [Cb @ cov_x, Cb @ cov_x @ Cb.T + Rb]])
    return mean, cov, nx


def test_nan_observations_are_missing_components(x64):
    """Log-likelihood and filtered means equal the exact Gaussian conditioning on the observed entries only."""
    lg = _model2()
    T = 5
    y = np.array(jax.random.normal(jax.random.key(0), (T, 2)), dtype=np.float64)
    y[1, :] = np.nan  # a whole row missing
    y[3, 0] = np.nan  # one component missing
    kf = kalman_filter(lg, jnp.asarray(y))
    mean, cov, nx = _joint_gaussian(lg, T)
    obs = ~np.isnan(y.ravel())
    yo = y.ravel()[obs]
    io = nx + np.flatnonzero(obs)
    S = cov[np.ix_(io, io)]
    r = yo - mean[io]
    loglik = -0.5 * r @ np.linalg.solve(S, r) - 0.5 * np.linalg.slogdet(2 * np.pi * S)[1]
    np.testing.assert_allclose(float(kf.log_likelihood), loglik, rtol=1e-10)
    # The last filtered mean is E[x_{T-1} | every observed entry].
    ix = np.arange((T - 1) * 2, T * 2)
    cond = mean[ix] + cov[np.ix_(ix, io)] @ np.linalg.solve(S, r)
    np.testing.assert_allclose(np.asarray(kf.filtered_means[-1]), cond, rtol=1e-9, atol=1e-12)
    # The smoother's first mean is E[x_0 | every observed entry].
    sm = rts_smoother(lg, jnp.asarray(y))
    cond0 = mean[:2] + cov[np.ix_(np.arange(2), io)] @ np.linalg.solve(S, r)
    np.testing.assert_allclose(np.asarray(sm.smoothed_means[0]), cond0, rtol=1e-8, atol=1e-12)


def test_missing_row_is_the_filter_without_it(x64):
    """A NaN row contributes nothing: the scalar filter on y with y_2 = NaN equals the closed form over the rest."""
    lg = LinearGaussianModel.scalar(0.9, 0.6, 1.0, 1.0)
    y = jnp.array([0.3, -0.4, jnp.nan, 1.1])
    mean, cov, nx = _joint_gaussian(lg, 4)
    io = nx + np.array([0, 1, 3])
    r = np.array([0.3, -0.4, 1.1]) - mean[io]
    S = cov[np.ix_(io, io)]
    loglik = -0.5 * r @ np.linalg.solve(S, r) - 0.5 * np.linalg.slogdet(2 * np.pi * S)[1]
    np.testing.assert_allclose(float(kalman_filter(lg, y).log_likelihood), loglik, rtol=1e-10)


@pytest.mark.parametrize("field", ["transition_cov", "observation_cov", "initial_cov"])
def test_covariance_not_psd_is_refused(field):
    lg = _model2()._replace(**{field: -jnp.eye(2)})
    with pytest.raises(ValueError, match=rf"lg\.{field}: expected a positive semi-definite matrix"):
        kalman_filter(lg, jnp.zeros((3, 2)))
    with pytest.raises(ValueError, match=rf"lg\.{field}: expected a positive semi-definite"):
        rts_smoother(lg, jnp.zeros((3, 2)))
    with pytest.raises(ValueError, match=rf"lg\.{field}: expected a positive semi-definite"):
        linear_gaussian_ssm(lg)


def test_scalar_negative_variance_is_refused():
    lg = LinearGaussianModel.scalar(0.9, 0.6, 1.0, 1.0)._replace(transition_cov=jnp.array([[-1.0]]))
    with pytest.raises(ValueError, match=r"lg\.transition_cov: expected a positive semi-definite"):
        kalman_filter(lg, jnp.zeros(3))


@pytest.mark.parametrize("field", ["transition_matrix", "observation_matrix", "initial_mean", "transition_cov"])
def test_nan_in_model_matrices_is_refused(field):
    lg = _model2()
    bad = getattr(lg, field).at[0].set(jnp.nan)
    with pytest.raises(ValueError, match=rf"lg\.{field}: expected finite values"):
        kalman_filter(lg._replace(**{field: bad}), jnp.zeros((3, 2)))


def test_infinite_observation_is_refused():
    with pytest.raises(ValueError, match=r"y: expected finite observations \(NaN marks a missing one\)"):
        kalman_filter(_model2(), jnp.array([[0.0, 1.0], [jnp.inf, 0.0]]))


def test_wrong_matrix_shape_is_refused():
    lg = _model2()._replace(observation_cov=jnp.eye(3))
    with pytest.raises(ValueError, match=r"lg\.observation_cov: expected shape \(2, 2\)"):
        kalman_filter(lg, jnp.zeros((3, 2)))
