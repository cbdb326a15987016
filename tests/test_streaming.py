"""The streaming engine: exact merges (plain and weighted), exact budgets, stop-at-target, bad inputs."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ulam import diagnostics
from ulam.streaming import chunk_moments, merge_moments, moments_estimate, stream_estimate
from ulam.testing import assert_within_stderr


@settings(max_examples=20, deadline=None)
@given(st.integers(1, 60), st.integers(0, 2**31 - 1))
def test_weighted_merge_equals_one_pass(split_size, seed):
    # Any chunking of weighted draws merges to the moments of the whole set.
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(61, 2)) * [1.0, 5.0] + [3.0, -1.0]
    w = rng.exponential(size=61)
    none = jnp.zeros((61, 0))
    whole = chunk_moments(jnp.asarray(x), none, weights=jnp.asarray(w))
    parts = functools.reduce(merge_moments, [
        chunk_moments(jnp.asarray(x[i : i + split_size]), none[i : i + split_size], weights=jnp.asarray(w[i : i + split_size]))
        for i in range(0, 61, split_size)
    ])
    mu = (w @ x) / w.sum()
    np.testing.assert_allclose(parts.mean_f, mu, rtol=1e-5)
    np.testing.assert_allclose(parts.m2_f, w @ (x - mu) ** 2, rtol=1e-4)
    np.testing.assert_allclose(parts.stderr_f, np.sqrt((w**2) @ (x - mu) ** 2) / w.sum(), rtol=1e-4)
    np.testing.assert_allclose(parts.kish_ess, w.sum() ** 2 / (w**2).sum(), rtol=1e-5)
    np.testing.assert_allclose(whole.q_f, parts.q_f, rtol=1e-3)


def test_kish_ess_is_the_diagnostics_one():
    lw = jax.random.normal(jax.random.key(0), (500,))
    m = chunk_moments(jnp.zeros((500, 1)), jnp.zeros((500, 0)), weights=jnp.exp(lw))
    np.testing.assert_allclose(m.kish_ess, diagnostics.kish_ess(lw), rtol=1e-5)


def _arange_values(key, batch_index):
    # Deterministic draws: batch b holds b*100 .. b*100 + 99 (offset far from 0).
    return 1e3 + (batch_index * 100 + jnp.arange(100, dtype=jnp.float32)) / 10.0


def test_fixed_budget_is_exact_and_matches_numpy(key):
    for num in (1000, 1050, 100, 37):
        est = stream_estimate(_arange_values, key, num, batch_size=100)
        x = 1e3 + np.arange(num) / 10.0
        assert est.n == num
        np.testing.assert_allclose(float(est.mean), x.mean(), rtol=1e-6)
        np.testing.assert_allclose(float(est.stderr), x.std(ddof=1) / np.sqrt(num), rtol=1e-3)
        assert int(est.info["num_batches"]) == -(-num // 100)


def test_stop_at_target_and_cap(key):
    def values_fn(k, i):
        return jax.random.normal(k, (500, 2)) + jnp.array([0.0, 10.0])

    est = stream_estimate(values_fn, key, batch_size=500, target_stderr=0.02, max_samples=10**6)
    assert est.info["converged"] and np.all(np.asarray(est.stderr) <= 0.02)
    assert est.n % 500 == 0 and est.n < 10**6
    assert_within_stderr(est, jnp.array([0.0, 10.0]))
    # One coordinate's relative target is met at once (mean 10), the other needs the absolute one.
    capped = stream_estimate(values_fn, key, batch_size=500, target_stderr=1e-6, max_samples=1234)
    assert capped.n == 1234 and not capped.info["converged"]
    rel = stream_estimate(values_fn, key, batch_size=500, target_rtol=0.01, target_stderr=0.03, max_samples=10**5)
    assert rel.info["converged"]


def test_weighted_stream_is_self_normalised_importance_sampling(key):
    # Draws X ~ N(0, 1) with weights exp(x): the target is N(1, 1), E[X] = 1, E[X^2] = 2.
    def values_fn(k, i):
        x = jax.random.normal(k, (2000,))
        return jnp.stack([x, x**2], axis=1), jnp.exp(x)

    est = stream_estimate(values_fn, key, 100_000, batch_size=2000, weighted=True)
    assert_within_stderr(est, jnp.array([1.0, 2.0]))
    assert 0.2 * est.n < float(est.ess[0]) < 0.6 * est.n  # Kish ESS of e^X weights: n / e
    # The delta-method standard error against the spread of 200 independent replicates
    # (tolerance: 4 standard errors of a sample SD over 200 replicates, ~ 4 / sqrt(2 * 199)).
    reps = jax.vmap(lambda k: stream_estimate(values_fn, k, 4000, batch_size=2000, weighted=True))(
        jax.random.split(key, 200))
    spread = np.std(np.asarray(reps.mean), axis=0, ddof=1)
    reported = np.sqrt(np.mean(np.asarray(reps.stderr) ** 2, axis=0))
    np.testing.assert_allclose(reported / spread, 1.0, atol=4 / np.sqrt(2 * 199))


def test_nonfinite_policy(key):
    def values_fn(k, i):
        x = jax.random.normal(k, (100,))
        return jnp.where(x > 2.0, jnp.nan, x)

    with pytest.raises(ValueError, match="values_fn: expected finite values, got .* draws with a nan"):
        stream_estimate(values_fn, key, 1000, batch_size=100)
    est = stream_estimate(values_fn, key, 1000, batch_size=100, nonfinite="drop")
    assert est.n + int(est.info["num_nonfinite"]) == 1000 and est.n < 1000


def test_bad_inputs(key):
    good = _arange_values
    with pytest.raises(TypeError, match="values_fn: expected a function"):
        stream_estimate(3, key, 10, batch_size=100)
    with pytest.raises(TypeError, match="key: expected a jax.random key"):
        stream_estimate(good, 0, 10, batch_size=100)
    with pytest.raises(ValueError, match="batch_size: expected an integer >= 1, got 0"):
        stream_estimate(good, key, 10, batch_size=0)
    with pytest.raises(ValueError, match="num_samples: expected a number of draws"):
        stream_estimate(good, key, batch_size=100)
    with pytest.raises(ValueError, match="max_samples: expected a cap"):
        stream_estimate(good, key, batch_size=100, target_stderr=0.1)
    with pytest.raises(ValueError, match="num_samples: expected None when a stopping target"):
        stream_estimate(good, key, 100, batch_size=100, target_stderr=0.1, max_samples=1000)
    with pytest.raises(ValueError, match="target_stderr: expected"):
        stream_estimate(good, key, batch_size=100, target_stderr=-1.0, max_samples=1000)
    with pytest.raises(ValueError, match=r"values_fn: expected values of shape \(50,\) or \(50, k\)"):
        stream_estimate(good, key, 100, batch_size=50)
    with pytest.raises(TypeError, match="values_fn: expected a pair"):
        stream_estimate(good, key, 100, batch_size=100, weighted=True)


def test_moments_estimate_plain_matches_from_samples():
    x = jnp.array([[1.0, 2.0], [2.0, 0.0], [4.0, 1.0], [3.0, 5.0]])
    est = moments_estimate(chunk_moments(x, jnp.zeros((4, 0))))
    ref = __import__("ulam").Estimate.from_samples(x)
    np.testing.assert_allclose(est.mean, ref.mean, rtol=1e-6)
    np.testing.assert_allclose(est.stderr, ref.stderr, rtol=1e-6)
