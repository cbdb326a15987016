"""Invariance of every kernel: start exactly in the target, step, and test that the target is kept.

If x_0 ~ pi and the kernel leaves pi invariant, x_k ~ pi exactly for every k. With many
independent chains, the final states are i.i.d., so plain Monte Carlo standard errors apply
(a Geweke-style "successive conditional" check without the need for MCSE).
"""

import functools
import importlib.util
import pathlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ulam import Estimate, mcmc
from ulam.testing import assert_within_stderr

_spec = importlib.util.spec_from_file_location("mcmc_targets", pathlib.Path(__file__).with_name("targets.py"))
T = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(T)

NUM_CHAINS = 4000

KERNELS = {
    "rwm": (mcmc.rwm_init, functools.partial(mcmc.rwm_step, step_size=1.2), 10),
    "mala": (mcmc.langevin_init, functools.partial(mcmc.mala_step, step_size=0.3), 10),
    "preconditioned_mala": (
        mcmc.langevin_init,
        functools.partial(mcmc.preconditioned_langevin_step, step_size=0.8, preconditioner=T.COV, adjusted=True),
        10,
    ),
    "hmc": (mcmc.hmc_init, functools.partial(mcmc.hmc_step, step_size=0.3, num_integration_steps=5), 5),
    "hmc_dense": (
        mcmc.hmc_init,
        functools.partial(mcmc.hmc_step, step_size=0.5, inverse_mass_matrix=T.COV, num_integration_steps=3),
        5,
    ),
    "nuts": (mcmc.nuts_init, functools.partial(mcmc.nuts_step, step_size=0.4, inverse_mass_matrix=jnp.array([1.0, 1.5])), 4),
    "nuts_dense": (mcmc.nuts_init, functools.partial(mcmc.nuts_step, step_size=0.6, inverse_mass_matrix=T.COV), 4),
}


@functools.partial(jax.jit, static_argnames=("name",))
def _run_from_exact_start(key, name):
    init, step, num_steps = KERNELS[name]
    k0, k1 = jax.random.split(key)
    x0 = T.gauss_exact(k0, NUM_CHAINS)
    states = jax.vmap(lambda x: init(x, T.gauss_logdensity))(x0)

    def body(states, k):
        states, info = jax.vmap(lambda kk, s: step(kk, s, T.gauss_logdensity))(jax.random.split(k, NUM_CHAINS), states)
        return states, info.acceptance_rate.mean()

    states, acc = jax.lax.scan(body, states, jax.random.split(k1, num_steps))
    return states.position, acc.mean()


@pytest.mark.parametrize(
    "name",
    [pytest.param(n, marks=pytest.mark.slow) if n in ("nuts_dense", "hmc_dense") else n for n in sorted(KERNELS)],
)
def test_kernel_leaves_target_invariant(name, key):
    x, acc = _run_from_exact_start(key, name)
    assert 0.2 < float(acc) <= 1.0, f"{name}: acceptance {float(acc)} — the test would have no power"
    est = Estimate.from_samples(T.gauss_stats(x))
    assert_within_stderr(est, T.GAUSS_TRUTH, z=4.0, msg=f"{name}: ")


def test_invariance_test_has_power(key):
    """The same test rejects a wrong kernel: MALA without its Hastings correction (ULA, large step)."""
    init, _, _ = KERNELS["mala"]
    x0 = T.gauss_exact(key, NUM_CHAINS)
    states = jax.vmap(lambda x: init(x, T.gauss_logdensity))(x0)
    step = jax.jit(jax.vmap(lambda k, s: mcmc.ula_step(k, s, T.gauss_logdensity, 0.3)))
    for k in jax.random.split(jax.random.key(1), 10):
        states, _ = step(jax.random.split(k, NUM_CHAINS), states)
    est = Estimate.from_samples(T.gauss_stats(states.position))
    with pytest.raises(AssertionError):
        assert_within_stderr(est, T.GAUSS_TRUTH, z=4.0)


def test_elliptical_slice_invariance(key):
    """Prior N(0, I), likelihood N(y; x, 0.5^2 I): the posterior is N(y/1.25, 0.2 I)."""
    y = jnp.array([1.0, -0.5])
    loglik = lambda x: -0.5 * jnp.sum((y - x) ** 2) / 0.25
    post_mean, post_var = y / 1.25, 0.2
    k0, k1 = jax.random.split(key)
    x0 = post_mean + jnp.sqrt(post_var) * jax.random.normal(k0, (NUM_CHAINS, 2))

    @jax.jit
    def run(x0, key):
        states = jax.vmap(lambda x: mcmc.elliptical_slice_init(x, loglik))(x0)

        def body(states, k):
            step = lambda kk, s: mcmc.elliptical_slice_step(kk, s, loglik, 0.0, jnp.ones(2))
            return jax.vmap(step)(jax.random.split(k, NUM_CHAINS), states)[0], None

        return jax.lax.scan(body, states, jax.random.split(key, 5))[0].position

    x = run(x0, k1)
    stats = jnp.concatenate([x, (x - post_mean) ** 2], -1)
    truth = np.concatenate([np.asarray(post_mean), [post_var, post_var]])
    assert_within_stderr(Estimate.from_samples(stats), truth, z=4.0)


@jax.jit
def _ula_gaussian_final(key, eps):
    """ULA on N(0, 1) from 0, NUM_CHAINS chains, 400 steps; eps traced, so one compilation serves every eps."""
    logp = lambda x: -0.5 * jnp.sum(x**2)
    states = jax.vmap(lambda x: mcmc.langevin_init(x, logp))(jnp.zeros((NUM_CHAINS, 1)))

    def body(states, k):
        return jax.vmap(lambda kk, s: mcmc.ula_step(kk, s, logp, eps))(jax.random.split(k, NUM_CHAINS), states)[0], None

    return jax.lax.scan(body, states, jax.random.split(key, 400))[0].position[:, 0]


@pytest.mark.parametrize("eps", [0.05, 0.25, 0.5])
def test_ula_stationary_variance_matches_closed_form(eps, key):
    r"""ULA on N(0,1) is AR(1): x' = (1 - eps) x + sqrt(2 eps) xi, stationary variance 1 / (1 - eps/2)."""
    x = _ula_gaussian_final(key, eps)
    est = Estimate.from_samples(x**2)
    assert_within_stderr(est, 1.0 / (1.0 - eps / 2.0), z=4.0)
    # ... and it is really biased for the larger steps (the closed form is not just 1).
    if eps >= 0.25:
        assert abs(float(est.mean) - 1.0) > 4 * float(est.stderr)


def test_nuts_info_and_gradient_count(key):
    logp = lambda x: -0.5 * jnp.sum(x**2)
    s = mcmc.nuts_init(jnp.zeros(3), logp)
    s, info = jax.jit(lambda k, s: mcmc.nuts_step(k, s, logp, 0.3, max_tree_depth=3))(key, s)
    assert int(info.tree_depth) <= 3
    assert 1 <= int(info.num_grad_evals) <= 2**3 - 1 + 2**2
    assert not bool(info.is_divergent)
    assert 0.0 <= float(info.acceptance_rate) <= 1.0
