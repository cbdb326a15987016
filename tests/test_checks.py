"""The one input-check vocabulary: each helper accepts what it should and names the argument otherwise."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, strategies as st

from ulam import checks


@given(st.integers(min_value=1, max_value=10**9))
def test_count_accepts_integers(n):
    assert checks.count("num_samples", n) == n


@pytest.mark.parametrize("bad, err", [(0, ValueError), (-3, ValueError), (2.0, TypeError), (True, TypeError), ("4", TypeError)])
def test_count_refuses(bad, err):
    with pytest.raises(err, match="num_samples: expected an integer"):
        checks.count("num_samples", bad)


def test_positive_scalar_and_array():
    assert checks.positive("step_size", 0.1) == 0.1
    checks.positive("inverse_mass_matrix", jnp.ones(3))
    with pytest.raises(ValueError, match="step_size: expected a finite number > 0, got -0.1"):
        checks.positive("step_size", -0.1)
    with pytest.raises(ValueError, match="inverse_mass_matrix: expected entries"):
        checks.positive("inverse_mass_matrix", jnp.array([1.0, 0.0, 2.0]))
    with pytest.raises(ValueError, match="step_size"):
        checks.positive("step_size", float("nan"))
    checks.positive("rate", 0.0, allow_zero=True)


def test_traced_values_are_not_inspected():
    jax.jit(lambda s: checks.positive("step_size", s))(-1.0)  # no error: traced


def test_in_interval():
    checks.in_interval("threshold", 0.5, 0.0, 1.0, low_open=True)
    with pytest.raises(ValueError, match=r"threshold: expected a finite value in \(0, 1\], got 0"):
        checks.in_interval("threshold", 0.0, 0.0, 1.0, low_open=True)


def test_finite():
    with pytest.raises(ValueError, match="observations: expected finite values, got 1 NaN"):
        checks.finite("observations", jnp.array([1.0, jnp.nan]))


def test_prng_key_both_styles_and_int():
    checks.prng_key(jax.random.key(0))
    checks.prng_key(jax.random.PRNGKey(0))
    with pytest.raises(TypeError, match=r"key: expected a jax.random key, got the int 0; pass jax.random.key"):
        checks.prng_key(0)
    with pytest.raises(TypeError, match="key: expected a jax.random key"):
        checks.prng_key(np.zeros(3))


def test_function_and_one_of():
    import numpyro.distributions as dist

    with pytest.raises(TypeError, match="logdensity_fn: .*a distribution was given"):
        checks.function("logdensity_fn", dist.Normal(), "a log-density x -> scalar")
    with pytest.raises(ValueError, match=r"kernel: expected one of 'nuts', 'hmc', got 'nut'; did you mean 'nuts'\?"):
        checks.one_of("kernel", "nut", ["nuts", "hmc"])


def test_array_and_callback_output():
    checks.array("x", np.zeros((3, 2)), ndim=2)
    with pytest.raises(ValueError, match=r"x: expected shape \(any, 2\), got shape \(3, 3\)"):
        checks.array("x", np.zeros((3, 3)), shape=(None, 2))
    with pytest.raises(ValueError, match=r"logdensity_fn: expected its output of shape \(\), got shape \(3,\)"):
        checks.callback_output("logdensity_fn", jnp.zeros(3), shape=())


def test_positive_semidefinite():
    checks.positive_semidefinite("Q", np.eye(2))
    with pytest.raises(ValueError, match="Q: expected a positive semi-definite matrix"):
        checks.positive_semidefinite("Q", -np.eye(2))
    with pytest.raises(ValueError, match="Q: expected a symmetric matrix"):
        checks.positive_semidefinite("Q", np.array([[1.0, 2.0], [0.0, 1.0]]))


def test_callback_output_works_on_tracers():
    jax.jit(lambda x: checks.callback_output("f", x.sum(), shape=()))(jnp.ones(3))
    with pytest.raises(ValueError, match=r"f: expected its output of shape \(\)"):
        jax.jit(lambda x: checks.callback_output("f", x, shape=()))(jnp.ones(3))


def test_function_distribution_hint():
    import numpyro.distributions as dist

    with pytest.raises(TypeError, match="guide: .*pass a function phi -> distribution"):
        checks.function("guide", dist.Normal(), distribution_hint="pass a function phi -> distribution")
