"""Bad inputs give clear errors; non-finite log-densities during sampling are rejections, not crashes."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ulam import mcmc
from ulam.testing import assert_within_stderr

KEY = jax.random.key(3)


def half_normal(x):
    # -inf (or NaN) outside the support: proposals there must be rejected.
    return jnp.where(x[0] > 0, -0.5 * jnp.sum(x**2), -jnp.inf)


def nan_outside(x):
    return jnp.where(x[0] > 0, -0.5 * jnp.sum(x**2), jnp.nan)


@pytest.mark.parametrize("bad", [jnp.nan, -jnp.inf])
def test_nonfinite_initial_logdensity_is_a_clear_error(bad):
    logp = lambda x: jnp.where(x[0] > 10, bad, -0.5 * jnp.sum(x**2))
    x0 = jnp.array([[0.0, 0.0], [11.0, 0.0]])
    with pytest.raises(ValueError, match=r"initial_position: the log-density is not finite .* chain\(s\) \[1\]"):
        mcmc.sample(logp, KEY, x0, kernel="rwm", num_chains=2, num_warmup=10, num_draws=10)
    with pytest.raises(ValueError, match=r"log-density there is -?\w+ \(not finite\)"):
        mcmc.hmc_init(x0[1], logp)
    with pytest.raises(ValueError, match="not finite"):
        mcmc.rwm_init(x0[1], logp)


def test_initial_position_must_match_num_chains():
    with pytest.raises(ValueError, match="leading chain axis of size num_chains=4, got shape \\(3, 2\\)"):
        mcmc.sample(half_normal, KEY, jnp.ones((3, 2)), num_chains=4)
    with pytest.raises(ValueError, match="leading chain axis"):
        mcmc.sample(half_normal, KEY, jnp.ones(()), num_chains=4)


def test_integer_position_is_a_type_error():
    with pytest.raises(TypeError, match="floating-point"):
        mcmc.sample(half_normal, KEY, jnp.ones((4, 2), jnp.int32), num_chains=4)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"kernel": "gibbs"}, "kernel: expected one of"),
        ({"num_draws": 0}, "num_draws: expected an integer >= 1"),
        ({"thin": 0}, "thin"),
        ({"metric": "full"}, "metric"),
        ({"adapt": "global"}, "adapt"),
        ({"target_acceptance": 1.5}, "target_acceptance"),
        ({"kernel": "ula"}, "step_size: expected a value for kernel 'ula'"),
        ({"inverse_mass_matrix": jnp.ones(5)}, "inverse_mass_matrix: expected shape"),
    ],
)
def test_bad_settings(kwargs, match):
    with pytest.raises((ValueError, TypeError), match=match):
        mcmc.sample(half_normal, KEY, jnp.ones((4, 2)), **{"num_warmup": 10, "num_draws": 10, **kwargs})


def test_logdensity_must_return_a_scalar():
    with pytest.raises(ValueError, match=r"logdensity_fn: expected a scalar log-density of shape \(\), got shape \(2,\)"):
        mcmc.rwm_init(jnp.ones(2), lambda x: -0.5 * x**2)


@pytest.mark.parametrize("logp", [half_normal, nan_outside], ids=["-inf", "nan"])
def test_nonfinite_proposals_are_rejections(logp):
    """A half-normal via -inf / NaN outside x0 > 0: RWM proposals there are rejected and reported."""
    res = mcmc.sample(logp, KEY, jnp.ones((4, 1)), kernel="rwm", num_chains=4, num_warmup=300, num_draws=3000)
    assert np.all(res.flat_draws > 0)
    assert int(res.num_divergent.sum()) > 0  # reported as divergences
    est = res.expectation()
    assert_within_stderr(est, np.sqrt(2 / np.pi), z=4.0)


_NONFINITE_STEPS = (
    (mcmc.nuts_init, lambda k, s: mcmc.nuts_step(k, s, nan_outside, 2.0)),
    (mcmc.hmc_init, lambda k, s: mcmc.hmc_step(k, s, nan_outside, 2.0, num_integration_steps=3)),
    (mcmc.langevin_init, lambda k, s: mcmc.mala_step(k, s, nan_outside, 2.0)),
    (mcmc.langevin_init, lambda k, s: mcmc.ula_step(k, s, nan_outside, 2.0)),
)


@jax.jit
def _one_step_each(keys, x):
    # One compiled program for the four kernels (64 chains each, one step from x).
    out = []
    for init, step in _NONFINITE_STEPS:
        states, infos = jax.vmap(step, in_axes=(0, None))(keys, init(x, nan_outside))
        out.append((states.position, states.logdensity, infos.is_divergent))
    return out


def test_nuts_hmc_mala_reject_nonfinite_without_crashing():
    for pos, logdensity, divergent in _one_step_each(jax.random.split(KEY, 64), jnp.array([0.05, 0.0])):
        pos = np.asarray(pos)
        assert np.all(np.isfinite(pos)) and np.all(pos[:, 0] > 0)
        assert np.all(np.isfinite(np.asarray(logdensity)))
        assert bool(np.any(divergent))
