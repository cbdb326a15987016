r"""SGLD and SGHMC against closed forms on Bayesian linear regression with minibatch gradients.

Model: :math:`y_i = x_i^\top w + e_i`, :math:`e_i\sim N(0,1)`, prior :math:`w\sim N(0,I)`; the
posterior is :math:`N(\Lambda^{-1}X^\top y, \Lambda^{-1})`, :math:`\Lambda = I + X^\top X`.
Both samplers are linear recursions in the position with zero-mean minibatch noise, so:

* their stationary **mean is the exact posterior mean** (no discretisation allowance is needed:
  at the fixed point the expected gradient vanishes, as for the exact posterior);
* their stationary **covariance** solves a discrete Lyapunov equation
  :math:`\Sigma = A\Sigma A^\top + Q(\Sigma)`, where :math:`A` is the linear map of one step and
  :math:`Q` holds the injected noise plus the minibatch-gradient covariance (sampling ``B`` of ``N``
  without replacement: :math:`N^2/B\cdot(N-B)/(N-1)` times the per-datum gradient covariance,
  averaged over the stationary law). This closed form is the discretisation allowance, exactly.

The draws come from the multi-chain driver (``mcmc.sample`` with ``mcmc.sgld_kernel(...) as the target``), and
the tolerances are the driver's MCSEs.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.linalg

from ulam import mcmc
from ulam.testing import assert_within_stderr

N, B, DIM = 64, 8, 2
_kx, _ke, _kw = jax.random.split(jax.random.key(11), 3)
X = 0.3 * jax.random.normal(_kx, (N, DIM))
Y = X @ jnp.array([1.0, -0.5]) + jax.random.normal(_ke, (N,))
DATA = (X, Y)
LAM = np.eye(DIM) + np.asarray(X, np.float64).T @ np.asarray(X, np.float64)
POST_MEAN = np.linalg.solve(LAM, np.asarray(X, np.float64).T @ np.asarray(Y, np.float64))
GRAD = mcmc.minibatch_gradient(
    lambda w: -0.5 * jnp.sum(w**2), lambda w, d: -0.5 * (d[1] - d[0] @ w) ** 2, data_size=N
)


def _minibatch_noise_cov(mean, cov):
    """E over w ~ (mean, cov) of the covariance of the minibatch estimate of the likelihood gradient."""
    x, y = np.asarray(X, np.float64), np.asarray(Y, np.float64)
    a = x * y[:, None]  # per-datum gradient g_i(w) = a_i - M_i w
    m = x[:, :, None] * x[:, None, :]
    c, dmat = a - a.mean(0), m - m.mean(0)
    r = c - dmat @ mean
    s = (r[:, :, None] * r[:, None, :] + dmat @ cov @ dmat.transpose(0, 2, 1)).mean(0)
    return N**2 / B * (N - B) / (N - 1) * s


def _sgld_stationary_cov(eps):
    a = np.eye(DIM) - eps * LAM
    cov = np.linalg.inv(LAM)
    for _ in range(200):
        cov = scipy.linalg.solve_discrete_lyapunov(a, 2 * eps * np.eye(DIM) + eps**2 * _minibatch_noise_cov(POST_MEAN, cov))
    return cov


def _sghmc_stationary_cov(eta, alpha):
    a = np.block([[np.eye(DIM), np.eye(DIM)], [-eta * LAM, (1 - alpha) * np.eye(DIM) - eta * LAM]])
    cov = np.linalg.inv(LAM)
    for _ in range(200):
        q = np.zeros((2 * DIM, 2 * DIM))
        q[DIM:, DIM:] = 2 * alpha * eta * np.eye(DIM) + eta**2 * _minibatch_noise_cov(POST_MEAN, cov)
        cov = scipy.linalg.solve_discrete_lyapunov(a, q)[:DIM, :DIM]
    return cov


def _stats(w):
    d = w - jnp.asarray(POST_MEAN, w.dtype)
    return jnp.stack([w[..., 0], w[..., 1], d[..., 0] ** 2, d[..., 1] ** 2, d[..., 0] * d[..., 1]], -1)


def _truth(cov):
    return np.array([*POST_MEAN, cov[0, 0], cov[1, 1], cov[0, 1]])


SETTINGS = {
    "sgld": (mcmc.sgld_kernel(GRAD, DATA, B, step_size=0.02), lambda: _sgld_stationary_cov(0.02)),
    "sghmc": (mcmc.sghmc_kernel(GRAD, DATA, B, step_size=0.004, friction=0.2), lambda: _sghmc_stationary_cov(0.004, 0.2)),
}


@pytest.mark.parametrize("name", sorted(SETTINGS))
def test_minibatch_sampler_matches_closed_form(name):
    kernel, stationary_cov = SETTINGS[name]
    x0 = jnp.asarray(POST_MEAN, jnp.float32) + 0.3 * jax.random.normal(jax.random.key(1), (4, DIM))
    res = mcmc.sample(kernel, jax.random.key(2), x0, num_warmup=500, num_draws=4000)
    assert int(np.sum(res.num_divergent)) == 0
    est = res.expectation(_stats)
    cov = stationary_cov()
    # Mean = exact posterior mean (zero discretisation allowance); covariance = the closed form above.
    assert_within_stderr(est, _truth(cov), z=4.0, msg=f"{name}: ")
    # Power: the minibatch and discretisation terms are large here, so the exact posterior
    # covariance (what an error in the noise scale or the N/B rescaling would approach) is rejected.
    with pytest.raises(AssertionError):
        assert_within_stderr(est, _truth(np.linalg.inv(LAM)), z=4.0)
    assert np.all(res.summary()["r_hat"] < 1.01)


def test_sgmcmc_kernel_rejects_bad_batch_size():
    with pytest.raises(ValueError, match=r"batch_size: must lie in \[1, 64\]"):
        mcmc.sgld_kernel(GRAD, DATA, 65, step_size=0.01)
    with pytest.raises(ValueError, match="batch_size"):
        mcmc.sghmc_kernel(GRAD, DATA, 0, step_size=0.01)


def test_run_sgmcmc_key_after_step_fn_and_old_order_deprecated():
    import warnings

    from ulam.mcmc import run_sgmcmc, sgld_init, sgld_step

    data = jnp.zeros((8, 1))
    step = lambda k, s, b: sgld_step(k, s, lambda theta, batch: -theta, b, 1e-2)
    key = jax.random.key(3)
    new = run_sgmcmc(step, key, sgld_init(jnp.zeros(1)), data, 4, 6)
    with pytest.warns(DeprecationWarning, match=r"run_sgmcmc\(step_fn, key"):
        old = run_sgmcmc(key, step, sgld_init(jnp.zeros(1)), data, 4, 6)
    np.testing.assert_array_equal(new[1], old[1])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(TypeError, match="key: expected a jax.random key"):
            run_sgmcmc(step, 3, sgld_init(jnp.zeros(1)), data, 4, 6)
