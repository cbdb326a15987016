"""Markov score climbing (inclusive-KL VI with a PPG kernel) against a conjugate posterior.

Naesseth, Lindsten & Blei (NeurIPS 2020) fit :math:`q_\\lambda` by minimising
:math:`\\mathrm{KL}(p\\,\\|\\,q_\\lambda)`; its stationary point is where
:math:`E_p[\\nabla_\\lambda \\log q_\\lambda(X)] = 0`. For a two-step linear-Gaussian
state-space model the smoothing law is a Gaussian Markov chain, so a family
``q(x0) = N(m0, s0^2)``, ``q(x1 | x0) = N(c x0 + m1, s1^2)`` contains it and the minimiser is the
exact posterior, computed here in closed form.

The fitted parameters are the Polyak-Ruppert average of the second half of the iterates; their
standard error comes from batch means (10 batches, each much longer than the iterates'
autocorrelation time), and every coordinate must lie within 4 of these standard errors of the
exact value (fixed key).

The call passes every argument by keyword, so it does not depend on the order of the positional
arguments (the key's position is being made uniform across the library).
"""

import numpy as np
import jax
import jax.numpy as jnp
from jax.scipy.stats import norm

from ulam import Estimate
from ulam.smc import LinearGaussianModel, linear_gaussian_ssm, markov_score_climbing
from ulam.testing import assert_within_stderr

A, SIGMA_X, SIGMA_Y, P0 = 0.8, 1.0, 1.0, 1.0
Y = jnp.array([0.7, -0.4])
NUM_STEPS, NUM_BATCHES = 1000, 10


def exact_posterior_parameters():
    """``(m0, log s0, c, m1, log s1)`` of p(x0 | y) p(x1 | x0, y) by Gaussian conditioning."""
    precision = np.array([
        [1 / P0 + A**2 / SIGMA_X**2 + 1 / SIGMA_Y**2, -A / SIGMA_X**2],
        [-A / SIGMA_X**2, 1 / SIGMA_X**2 + 1 / SIGMA_Y**2],
    ])
    cov = np.linalg.inv(precision)
    mean = cov @ (np.asarray(Y) / SIGMA_Y**2)
    c = cov[1, 0] / cov[0, 0]
    var1 = cov[1, 1] - cov[1, 0] ** 2 / cov[0, 0]
    return np.array([mean[0], 0.5 * np.log(cov[0, 0]), c, mean[1] - c * mean[0], 0.5 * np.log(var1)])


def log_q_initial(lam, x0, y0):
    return norm.logpdf(x0, lam[0], jnp.exp(lam[1]))


def log_q_transition(lam, x_prev, x, y):
    return norm.logpdf(x, lam[2] * x_prev + lam[3], jnp.exp(lam[4]))


def test_markov_score_climbing_recovers_conjugate_posterior():
    ssm = linear_gaussian_ssm(LinearGaussianModel.scalar(A, SIGMA_X, 1.0, SIGMA_Y, p0=P0))
    out = markov_score_climbing(
        key=jax.random.key(0), ssm=ssm, log_q_initial=log_q_initial, log_q_transition=log_q_transition,
        lambda0=jnp.zeros(5), observations=Y, num_particles=16, num_steps=NUM_STEPS,
        step_size=lambda k: 0.05,
    )
    iterates = np.asarray(out.params)
    assert iterates.shape == (NUM_STEPS, 5)
    tail = iterates[NUM_STEPS // 2:]
    batch_means = tail.reshape(NUM_BATCHES, -1, 5).mean(axis=1)
    averaged = Estimate(jnp.asarray(batch_means.mean(axis=0)),
                        jnp.asarray(batch_means.std(axis=0, ddof=1) / np.sqrt(NUM_BATCHES)), NUM_BATCHES)
    # the test has power: every standard error is small against the distance from the start (0)
    exact = exact_posterior_parameters()
    assert float(jnp.max(averaged.stderr)) < 0.05 * float(np.max(np.abs(exact)))
    assert_within_stderr(averaged, jnp.asarray(exact), z=4)
    # the last iterate is the returned fit
    np.testing.assert_array_equal(np.asarray(out.final_params), iterates[-1])
