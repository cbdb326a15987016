"""Direction designs are uniform on the sphere; exact W2 matches POT; gradient flows converge."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import ot
import pytest

from ulam import Estimate
from ulam.testing import assert_within_stderr
from ulam.transport import (
    exact_wasserstein,
    gradient_flow,
    orthogonal_directions,
    random_directions,
    sobol_directions,
)

DIM, BLOCK = 4, 8


@functools.partial(jax.jit, static_argnames="design")
def block_second_moments(keys, design):
    """Per key, the block average of theta theta^T (independent across keys)."""

    def one(k):
        if design == "mc":
            t = random_directions(k, BLOCK, DIM)
        elif design == "rqmc":
            t = sobol_directions(k, BLOCK, DIM)
        else:
            t = orthogonal_directions(k, BLOCK, DIM, block_size=DIM)
        return t.T @ t / BLOCK, jnp.linalg.norm(t, axis=1), t

    return jax.vmap(one)(keys)


@pytest.mark.parametrize("design", ["mc", "rqmc", "orthogonal"])
def test_directions_are_unit_and_uniform(design, key):
    moments, norms, thetas = block_second_moments(jax.random.split(key, 400), design)
    np.testing.assert_allclose(norms, 1.0, rtol=1e-5)
    # Uniform on the sphere: E[theta theta^T] = I/d, and E[theta] = 0 (odd moments vanish).
    # (A full orthonormal block gives exactly I/d, hence the rounding allowance.)
    assert_within_stderr(Estimate.from_samples(moments), jnp.eye(DIM) / DIM, extra_bias=1e-5, msg=f"{design}: ")
    assert_within_stderr(Estimate.from_samples(thetas.mean(axis=1)), jnp.zeros(DIM), msg=f"{design}: ")
    if design == "orthogonal":
        block = thetas[0, :DIM]
        np.testing.assert_allclose(block @ block.T, jnp.eye(DIM), atol=1e-5)


def test_sobol_directions_are_deterministic_per_key(key):
    draw = jax.jit(lambda k: sobol_directions(k, 8, 3))
    a, b = draw(key), draw(key)
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a, draw(jax.random.fold_in(key, 1)))


def test_direction_bad_input(key):
    with pytest.raises(ValueError, match=r"block_size: expected a divisor of num_directions=10, got 4 \(sobol directions\)"):
        sobol_directions(key, 10, 3, block_size=4)
    with pytest.raises(ValueError, match=r"block_size: expected at most dim=3 \(orthogonal directions\), got 4"):
        orthogonal_directions(key, 8, 3, block_size=4)
    with pytest.raises(ValueError, match="num_directions: expected an integer >= 1, got 0"):
        random_directions(key, 0, 3)
    with pytest.warns(DeprecationWarning, match="num= is deprecated; use num_directions="):
        old = sobol_directions(key, dim=3, num=8)
    np.testing.assert_array_equal(old, sobol_directions(key, 8, 3))
    with pytest.raises(TypeError, match="dim: expected an integer, got float 3.0"):
        random_directions(key, 4, 3.0)
    with pytest.raises(TypeError, match=r"key: expected a jax.random key, got the int 0; pass jax.random.key\(seed\)"):
        sobol_directions(0, 4, 3)
    # Legacy uint32[2] keys are accepted.
    assert random_directions(jax.random.PRNGKey(0), 4, 3).shape == (4, 3)


def test_exact_wasserstein_matches_pot_emd(x64):
    rng = np.random.default_rng(2)
    x, y = rng.normal(size=(40, 3)), rng.normal(1.0, 2.0, size=(40, 3))
    cost = ot.dist(x, y)  # squared Euclidean
    expected = np.sqrt(ot.emd2(np.full(40, 1 / 40), np.full(40, 1 / 40), cost))
    np.testing.assert_allclose(exact_wasserstein(x, y), expected, rtol=1e-9)
    # Issue #16.16: the distance by default, its p-th power (POT's emd2 value) on request.
    np.testing.assert_allclose(exact_wasserstein(x, y, pth_power=True), expected**2, rtol=1e-9)
    l1 = ot.emd2(np.full(40, 1 / 40), np.full(40, 1 / 40), ot.dist(x, y, metric="euclidean") ** 3)
    np.testing.assert_allclose(exact_wasserstein(x, y, p=3.0, pth_power=True), l1, rtol=1e-9)
    np.testing.assert_allclose(exact_wasserstein(x, y, p=3.0), l1 ** (1 / 3), rtol=1e-9)
    with pytest.raises(ValueError, match=r"x, y: expected clouds of equal size for the exact assignment, got 40 and 30"):
        exact_wasserstein(x, y[:30])
    with pytest.raises(ValueError, match=r"x, y: expected clouds in the same dimension, got different dimensions \(3 and 2\)"):
        exact_wasserstein(x, y[:, :2])
    with pytest.raises(ValueError, match=r"p: expected a finite value in \[1, inf\), got 0.5"):
        exact_wasserstein(x, y, p=0.5)


def test_gradient_flow_moves_the_cloud_to_the_target(key):
    k1, k2, k3 = jax.random.split(key, 3)
    x = jax.random.normal(k1, (64, 3))
    y = 0.5 * jax.random.normal(k2, (64, 3)) + jnp.array([3.0, -2.0, 1.0])
    trace = gradient_flow(x, y, k3, 900, learning_rate=0.01, record_every=300, control_variate="lower")
    assert list(trace.steps) == [0, 300, 600, 900]
    assert trace.positions.shape == x.shape
    # Each step moves each point by about lr * N * grad SW ~ 0.01 * direction: W2 falls steadily.
    assert np.all(np.diff(trace.wasserstein) < 0)
    assert trace.wasserstein[-1] < 0.25 * trace.wasserstein[0]
    with pytest.raises(ValueError, match="num_steps: expected an integer >= 1, got 0"):
        gradient_flow(x, y, k3, 0)
    with pytest.raises(ValueError, match="learning_rate: expected a finite number > 0, got -1"):
        gradient_flow(x, y, k3, 10, learning_rate=-1.0)
    with pytest.raises(TypeError, match="record_every: expected an integer, got float"):
        gradient_flow(x, y, k3, 10, record_every=5.0)
    with pytest.raises(ValueError, match="num_directions: expected an integer >= 2, got 1"):
        gradient_flow(x, y, k3, 10, num_directions=1)
    with pytest.raises(TypeError, match="key: expected a jax.random key"):
        gradient_flow(x, y, 3, 10)
