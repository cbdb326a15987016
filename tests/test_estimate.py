import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ulam import Estimate, pool
from ulam.testing import assert_within_stderr, assert_variance_reduced, variance_ratio


def test_from_samples_matches_numpy(key):
    x = jax.random.normal(key, (1000, 3))
    est = Estimate.from_samples(x)
    np.testing.assert_allclose(est.mean, np.mean(np.asarray(x), 0), rtol=1e-5)
    np.testing.assert_allclose(est.stderr, np.std(np.asarray(x), 0, ddof=1) / np.sqrt(1000), rtol=1e-5)
    assert est.n == 1000 and est.ess == 1000


def test_estimate_is_a_pytree_through_jit_and_vmap(key):
    f = jax.jit(lambda x: Estimate.from_samples(x))
    est = f(jax.random.normal(key, (100,)))
    assert isinstance(est, Estimate)
    batched = jax.vmap(lambda k: Estimate.from_samples(jax.random.normal(k, (50,))))(jax.random.split(key, 4))
    assert batched.mean.shape == (4,)
    leaves, treedef = jax.tree_util.tree_flatten(Estimate(1.0, 0.1, 10, 9, {"k_hat": 0.3}))
    back = jax.tree_util.tree_unflatten(treedef, leaves)
    assert back.info == {"k_hat": 0.3}


def test_repr_is_readable():
    est = Estimate(jnp.array(0.60653), jnp.array(0.00121), 10000, 9871)
    assert repr(est) == "0.6065 ± 0.0012 (n=10000, ess=9871)"
    vec = Estimate(jnp.array([1.0, 2.0]), jnp.array([0.1, 0.2]), 100, jnp.array([100.0, 90.0]))
    assert "min ess=90" in repr(vec)


def test_ci_coverage_is_nominal(key):
    # 2,000 replicate 90% intervals for the mean of Exp(1): coverage must be 0.90 within 4 binomial sd.
    def one(k):
        est = Estimate.from_samples(jax.random.exponential(k, (400,)))
        lo, hi = est.ci(0.90)
        return (lo <= 1.0) & (1.0 <= hi)

    cover = jnp.mean(jax.vmap(one)(jax.random.split(key, 2000)))
    assert abs(float(cover) - 0.90) < 4 * np.sqrt(0.9 * 0.1 / 2000)


def test_ci_rejects_bad_level():
    with pytest.raises(ValueError, match="level"):
        Estimate(0.0, 1.0, 10).ci(1.5)


def test_from_samples_needs_two_draws():
    with pytest.raises(ValueError, match="at least 2"):
        Estimate.from_samples(jnp.ones((1,)))


def test_indexing_and_pytree_means(key):
    x = {"a": jax.random.normal(key, (200, 2)), "b": jax.random.normal(key, (200,))}
    est = Estimate.from_samples(x)
    assert est.mean["a"].shape == (2,)
    assert isinstance(repr(est), str)
    e0 = Estimate.from_samples(x["a"])[0]
    assert e0.mean.shape == ()


@settings(max_examples=25, deadline=None)
@given(st.lists(st.integers(min_value=2, max_value=50), min_size=1, max_size=5))
def test_pool_equals_one_big_sample_mean(sizes):
    rng = np.random.default_rng(sum(sizes))
    chunks = [rng.normal(size=s) for s in sizes]
    pooled = pool([Estimate.from_samples(jnp.asarray(c)) for c in chunks])
    np.testing.assert_allclose(pooled.mean, np.concatenate(chunks).mean(), rtol=1e-4, atol=1e-6)
    assert pooled.n == sum(sizes)


def test_assertions_fail_when_they_should():
    est = Estimate(jnp.array(1.0), jnp.array(0.1), 100)
    assert_within_stderr(est, 1.3, z=4)
    with pytest.raises(AssertionError, match="standard errors"):
        assert_within_stderr(est, 1.5, z=4)
    worse = Estimate(jnp.array(1.0), jnp.array(0.3), 100)
    assert variance_ratio(worse, est) == pytest.approx(9.0)
    assert_variance_reduced(worse, est, 8.0)
    with pytest.raises(AssertionError, match="variance reduced"):
        assert_variance_reduced(est, worse, 1.0)
