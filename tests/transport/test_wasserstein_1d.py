"""Exact 1-D Wasserstein: closed forms, POT, derivatives and bad input."""

import jax
import jax.numpy as jnp
import numpy as np
import ot
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ulam.transport import wasserstein_1d as _wasserstein_1d

# One compiled function per shape, shared by the tests (eager dispatch is slow).
wasserstein_1d = jax.jit(_wasserstein_1d, static_argnames="p")


def test_translation_and_scaling_closed_forms(key):
    u = jax.random.normal(key, (200,))
    # A translation by c moves every quantile by c: W_p = |c|.
    np.testing.assert_allclose(wasserstein_1d(u, u + 1.5, p=1), 1.5, rtol=1e-5)
    np.testing.assert_allclose(wasserstein_1d(u, u - 0.5, p=3), 0.125, rtol=1e-4)
    # A scaling by s about 0: W_2^2 = (s - 1)^2 * mean(u^2).
    np.testing.assert_allclose(wasserstein_1d(u, 3.0 * u), 4.0 * jnp.mean(u**2), rtol=1e-5)


@pytest.mark.parametrize("p", [1.0, 2.0, 1.5])
def test_unequal_sizes_and_weights_match_pot(p, x64):
    rng = np.random.default_rng(1)
    u, v = rng.normal(size=37), rng.normal(1.0, 2.0, size=23)
    a, b = rng.random(37), rng.random(23)
    a, b = a / a.sum(), b / b.sum()
    ours = wasserstein_1d(jnp.asarray(u), jnp.asarray(v), jnp.asarray(a), jnp.asarray(b), p=p)
    np.testing.assert_allclose(ours, ot.wasserstein_1d(u, v, a, b, p=p), rtol=1e-10)
    uniform = wasserstein_1d(jnp.asarray(u), jnp.asarray(v), p=p)
    np.testing.assert_allclose(uniform, ot.wasserstein_1d(u, v, p=p), rtol=1e-10)


def test_batched_over_leading_axes(key, x64):
    u = jax.random.normal(key, (4, 30))
    v = jax.random.normal(jax.random.fold_in(key, 1), (4, 20)) + 1.0
    batched = wasserstein_1d(u, v)
    for i in range(4):
        np.testing.assert_allclose(batched[i], ot.wasserstein_1d(np.asarray(u[i]), np.asarray(v[i]), p=2), rtol=1e-10)


def test_gradient_is_the_sorted_coupling(key):
    u = jax.random.normal(key, (50,))
    v = jax.random.normal(jax.random.fold_in(key, 1), (50,))
    g = jax.jit(jax.grad(_wasserstein_1d))(u, v)
    # d/du_i mean((u_(i) - v_(i))^2) = 2 (u_i - v matched to u_i) / n.
    matched = jnp.zeros(50).at[jnp.argsort(u)].set(jnp.sort(v))
    np.testing.assert_allclose(g, 2.0 * (u - matched) / 50, rtol=1e-5, atol=1e-7)
    # The weighted path gives the same derivative for uniform weights.
    g_w = jax.jit(jax.grad(_wasserstein_1d))(u, v, jnp.full(50, 0.02), jnp.full(50, 0.02))
    np.testing.assert_allclose(g_w, g, rtol=1e-4, atol=1e-6)


@jax.jit
def _split_atoms_gap(u, v, a):
    # Splitting every atom into two halves of its weight leaves the measure unchanged.
    doubled = _wasserstein_1d(jnp.concatenate([u, u]), v, jnp.concatenate([a, a]) / 2, None)
    return doubled - _wasserstein_1d(u, v, a, None)


@settings(max_examples=20, deadline=None)
@given(st.integers(1, 12), st.integers(0, 2**31 - 1))
def test_property_split_and_zero_weight_atoms(support, seed):
    # Fixed shapes (12 atoms, some with weight 0) so one compilation serves every example.
    rng = np.random.default_rng(seed)
    u, v = rng.normal(size=12).astype(np.float32), rng.normal(size=9).astype(np.float32)
    a = np.where(np.arange(12) < support, rng.random(12) + 0.1, 0.0)
    a = (a / a.sum()).astype(np.float32)
    assert abs(float(_split_atoms_gap(jnp.asarray(u), jnp.asarray(v), jnp.asarray(a)))) < 1e-5
    # Zero-weight atoms are invisible: same as the measure on the support alone.
    full = wasserstein_1d(jnp.asarray(u), jnp.asarray(v), jnp.asarray(a))
    kept = ot.wasserstein_1d(u[:support].astype(float), v.astype(float), a[:support].astype(float) / a[:support].sum(), p=2)
    np.testing.assert_allclose(full, kept, rtol=1e-4, atol=1e-6)


def test_bad_input():
    u = jnp.ones(3)
    wasserstein_1d = _wasserstein_1d  # the value checks run on concrete inputs
    with pytest.raises(ValueError, match=r"p: expected a finite value in \[1, inf\)"):
        wasserstein_1d(u, u, p=0.5)
    with pytest.raises(ValueError, match="u, v: expected measures with at least one atom each"):
        wasserstein_1d(jnp.ones(0), u)
    with pytest.raises(ValueError, match="u_weights: expected non-negative weights"):
        wasserstein_1d(u, u, jnp.array([1.5, -0.5, 0.0]))
    with pytest.raises(ValueError, match="v_weights: expected weights that sum to 1"):
        wasserstein_1d(u, u, None, jnp.array([0.5, 0.5, 0.5]))
    with pytest.raises(ValueError, match="u_weights: expected one weight per point"):
        wasserstein_1d(u, u, jnp.array([0.5, 0.5]))
    with pytest.raises(ValueError, match="u, v: expected equal batch shapes"):
        wasserstein_1d(jnp.ones((2, 3)), jnp.ones((3, 3)))
