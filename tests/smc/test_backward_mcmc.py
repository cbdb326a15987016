"""The MCMC backward kernel (Dau & Chopin 2023): exact law from an exact start, PaRIS with it matches RTS."""

import jax
import jax.numpy as jnp
import pytest

from ulam import Estimate
from ulam.smc import LinearGaussianModel, backward_indices, linear_gaussian_ssm, paris, rts_smoother, simulate
from ulam.testing import assert_within_stderr

LG = LinearGaussianModel.scalar(0.9, 0.6, 1.0, 1.0)
SSM = linear_gaussian_ssm(LG, batched=True)
N, M = 64, 4000
X_PREV = 2.0 * jax.random.normal(jax.random.key(11), (N,))
LOG_W = 0.5 * jax.random.normal(jax.random.key(12), (N,))
TARGET = jnp.asarray(0.7)
# The exact backward law of one target: P(J = j) ∝ W_j m(x_j, target).
PROBS = jax.nn.softmax(LOG_W + jax.scipy.stats.norm.logpdf(TARGET, 0.9 * X_PREV, 0.6))


@jax.jit
def _draws(key):
    k_start, k_mh, k_hyb = jax.random.split(key, 3)
    targets = jnp.full((M,), TARGET)
    start = backward_indices(k_start, SSM, LOG_W, X_PREV, targets, method="exact")
    mcmc = backward_indices(k_mh, SSM, LOG_W, X_PREV, targets, method="mcmc", start=start, num_mcmc_steps=1)
    hybrid = backward_indices(k_hyb, SSM, LOG_W, X_PREV, targets, method="hybrid", start=start)
    return start, mcmc, hybrid


@pytest.mark.parametrize("which", [1, 2])
def test_mh_backward_kernel_keeps_the_exact_law(which):
    draws = _draws(jax.random.key(3))[which]
    # Lanes are independent (own start, own chain): test E[x^J] and E[1{J = mode}] against the exact law.
    mode = jnp.argmax(PROBS)
    values = jnp.stack([X_PREV[draws], (draws == mode).astype(jnp.float32)], 1)
    truth = jnp.stack([jnp.sum(PROBS * X_PREV), PROBS[mode]])
    assert_within_stderr(Estimate.from_samples(values), truth, z=4)


def test_mh_backward_kernel_moves():
    start, mcmc, _ = _draws(jax.random.key(4))
    # Not a copy of the start: the chain moved in a sizable share of lanes (exactness alone would allow J = start).
    assert float(jnp.mean(start != mcmc)) > 0.2


def test_mcmc_needs_a_start(key):
    with pytest.raises(ValueError, match="start"):
        backward_indices(key, SSM, LOG_W, X_PREV, jnp.full((3,), TARGET), method="mcmc")


T = 15
_, Y = simulate(jax.random.key(4), SSM, T)
RTS = rts_smoother(LG, Y)
TRUTH = float(jnp.sum(RTS.smoothed_means[:-1] * RTS.smoothed_means[1:] + RTS.lag_one_covs))


@pytest.mark.parametrize("method", ["mcmc", pytest.param("auto", marks=pytest.mark.slow)])
def test_paris_with_mcmc_backward_kernel_matches_rts(method):
    # N = 300 > 256, so "auto" resolves to the hybrid sampler (rejection tries, then MH from the ancestor).
    est = jax.jit(
        lambda k: paris(k, SSM, Y, 300, lambda xp, x, y: xp * x, backward=method, num_replicates=32).estimate
    )(jax.random.key(5))
    assert_within_stderr(est, TRUTH, z=4)
