"""Smoothers against the RTS smoother: FFBS (exact and rejection), PaRIS, PPG, particle Gibbs."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ulam import Estimate
from ulam.smc import (
    Bootstrap,
    LinearGaussianModel,
    backward_sample,
    linear_gaussian_ssm,
    paris,
    particle_gibbs,
    ppg,
    rts_smoother,
    run_filter,
    simulate,
)
from ulam.smc.paris import _chain_estimate
from ulam.testing import assert_within_stderr, z_for_family

T = 15
LG = LinearGaussianModel.scalar(0.9, 0.6, 1.0, 1.0)
SSM = linear_gaussian_ssm(LG)
_, Y = simulate(jax.random.key(4), SSM, T)
RTS = rts_smoother(LG, Y)
# E[sum_t x_t x_{t+1} | y], the digest's additive functional (paper 11, section 11.6).
TRUTH = float(jnp.sum(RTS.smoothed_means[:-1] * RTS.smoothed_means[1:] + RTS.lag_one_covs))


def product(xp, x, y):
    return xp * x


@pytest.mark.parametrize("method", ["exact", pytest.param("rejection", marks=pytest.mark.slow)])
def test_ffbs_smoothing_means_match_rts(method):
    def one(k):
        k1, k2 = jax.random.split(k)
        out = run_filter(k1, Bootstrap(SSM), Y, 300, keep_history=True)
        return backward_sample(k2, SSM, out.history, 20, method=method).mean(0)

    means = jax.jit(jax.vmap(one))(jax.random.split(jax.random.key(8), 40))
    # Replicates of (filter + backward sampling) give a standard error covering both.
    assert_within_stderr(Estimate.from_samples(means), RTS.smoothed_means, z=z_for_family(T))


@pytest.mark.slow
def test_paris_matches_rts_at_large_n():
    est = jax.jit(lambda k: paris(k, SSM, Y, 256, product, num_replicates=48).estimate)(jax.random.key(3))
    assert_within_stderr(est, TRUTH, z=4)  # the O(T/N) bias is below the noise at N=256


@pytest.mark.slow
def test_paris_rejection_matches_exact_backward_kernel():
    f = lambda m: jax.jit(  # noqa: E731
        lambda k: paris(k, SSM, Y, 300, product, backward=m, num_replicates=24).estimate
    )(jax.random.key(2))
    exact, rej = f("exact"), f("rejection")
    diff = Estimate(exact.mean - rej.mean, jnp.sqrt(exact.stderr**2 + rej.stderr**2), 24)
    assert_within_stderr(diff, 0.0, z=4)


def test_ppg_is_unbiased_after_burn_in():
    f = jax.jit(jax.vmap(lambda k: ppg(k, SSM, Y, 8, product, num_iterations=6, burn_in=2).estimate.mean))
    vals = f(jax.random.split(jax.random.key(9), 48))
    assert_within_stderr(Estimate.from_samples(vals), TRUTH, z=4)


@pytest.mark.parametrize("sampler", ["ancestor", pytest.param("backward", marks=pytest.mark.slow)])
def test_particle_gibbs_targets_the_smoothing_law(sampler):
    paths = jax.jit(lambda k: particle_gibbs(k, SSM, Y, 10, 400, sampler=sampler))(jax.random.key(6))
    est = _chain_estimate(paths[50:], 10)
    assert_within_stderr(est, RTS.smoothed_means, z=z_for_family(T))


def test_paris_needs_transition_density(key):
    ssm = SSM._replace(transition_log_prob=None)
    with pytest.raises(ValueError, match="transition_log_prob"):
        paris(key, ssm, Y, 10, product)


def test_paris_family_bad_inputs(key):
    from ulam.smc import conditional_smc, particle_gibbs, ppg

    with pytest.raises(TypeError, match=r"key: expected a jax.random key"):
        paris(3, SSM, Y, 10, product)
    with pytest.raises(ValueError, match=r"num_backward: expected an integer >= 1, got 0"):
        paris(key, SSM, Y, 10, product, num_backward=0)
    with pytest.raises(ValueError, match=r"num_replicates: expected an integer >= 1, got 0"):
        paris(key, SSM, Y, 10, product, num_replicates=0)
    with pytest.raises(ValueError, match=r"method: expected one of 'auto', .*did you mean 'exact'"):
        paris(key, SSM, Y, 10, product, backward="exakt")
    with pytest.raises(ValueError, match=r"burn_in: expected an integer < num_iterations = 3, got 3"):
        ppg(key, SSM, Y, 10, product, num_iterations=3, burn_in=3)
    with pytest.raises(ValueError, match=r"sampler: expected one of 'genealogy', 'ancestor', 'backward'"):
        conditional_smc(key, SSM, Y, Y, 10, sampler="gibbs")
    with pytest.raises(ValueError, match=r"num_iterations: expected an integer >= 1, got 0"):
        particle_gibbs(key, SSM, Y, 10, 0)
