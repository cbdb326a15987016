import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ulam import Estimate, difference, pool
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


# -- Estimate behaves like a number ---------------------------------------------------


def test_float_and_scalar_ci():
    est = Estimate(jnp.asarray(2.0), jnp.asarray(0.5), 100)
    assert float(est) == 2.0
    lo, hi = est.ci(0.95)
    assert type(lo) is float and type(hi) is float
    np.testing.assert_allclose([lo, hi], [2.0 - 1.959964 * 0.5, 2.0 + 1.959964 * 0.5], rtol=1e-6)
    vec = Estimate(jnp.ones(3), jnp.ones(3), 10)
    with pytest.raises(TypeError, match=r"Estimate: expected a scalar estimate for float\(\), got a mean of shape \(3,\)"):
        float(vec)
    assert float(vec[1]) == 1.0
    assert vec.ci()[0].shape == (3,)


def test_affine_maps_and_sums_keep_the_rules():
    a = Estimate(1.0, 0.1, 100, 80)
    b = Estimate(2.0, 0.2, 50)
    c = 3 * a + 1
    assert (float(c), float(c.stderr), c.n, c.ess) == (4.0, pytest.approx(0.3), 100, 80)
    assert float(-a) == -1.0 and float((-a).stderr) == pytest.approx(0.1)
    assert float(a / 2) == 0.5 and float((a / 2).stderr) == pytest.approx(0.05)
    assert float(1 - a) == 0.0
    d = a - b
    assert float(d) == -1.0 and float(d.stderr) == pytest.approx(np.hypot(0.1, 0.2))
    assert d.n == 150 and d.ess is None and "ess" not in repr(d)
    s = sum([a, b, a])
    assert float(s) == 4.0 and float(s.stderr) == pytest.approx(np.sqrt(0.01 + 0.04 + 0.01))
    with pytest.raises(TypeError, match="Estimate \\* Estimate: expected a number"):
        a * b
    with pytest.raises(ValueError, match="correlation: expected a number in \\[-1, 1\\], got 2.0"):
        Estimate.combine([a, b], [1, -1], correlation=2.0)
    with pytest.raises(ValueError, match="coefficients: expected one coefficient per estimate"):
        Estimate.combine([a, b], [1])


def test_ess_none_prints_nothing_and_survives_pytrees():
    est = Estimate(1.0, 0.1, 10, None)
    assert est.ess is None and repr(est) == "1.00 ± 0.10 (n=10)"
    back = jax.jit(lambda e: e)(est)
    assert back.ess is None
    assert pool([est, est]).ess is None


def test_propagated_stderr_matches_replicate_spread(key):
    # 400 replicates of 3*A - B + 1 (independent A, B) and of the paired difference A - C
    # (C shares A's draws); the propagated stderr must match the replicates' spread within
    # 4 standard errors of a sample SD (relative SE of an SD over R replicates ~ 1/sqrt(2(R-1))).
    R = 400

    def one(k):
        ka, kb, kc = jax.random.split(k, 3)
        x = jax.random.normal(ka, (64,)) * 2.0 + 1.0
        a = Estimate.from_samples(x)
        b = Estimate.from_samples(jnp.exp(jax.random.normal(kb, (100,))))
        c_draws = x + 0.7 * jax.random.normal(kc, (64,))
        c = Estimate.from_samples(c_draws)
        paired = difference(a, c, correlation=jnp.corrcoef(x, c_draws)[0, 1])
        combo = 3 * a - b + 1
        return combo.mean, combo.stderr, paired.mean, paired.stderr

    m, s, pm, ps = jax.vmap(one)(jax.random.split(key, R))
    tol = 4.0 / np.sqrt(2 * (R - 1))
    np.testing.assert_allclose(np.sqrt(np.mean(np.asarray(s) ** 2)) / np.std(np.asarray(m), ddof=1), 1.0, atol=tol)
    np.testing.assert_allclose(np.sqrt(np.mean(np.asarray(ps) ** 2)) / np.std(np.asarray(pm), ddof=1), 1.0, atol=tol)
    # ... and the paired standard error is exactly the one of the paired differences.
    x = np.asarray(jax.random.normal(key, (64,)))
    y = x + 0.7 * np.asarray(jax.random.normal(jax.random.fold_in(key, 1), (64,)))
    a, c = Estimate.from_samples(jnp.asarray(x)), Estimate.from_samples(jnp.asarray(y))
    rho = float(np.corrcoef(x, y)[0, 1])
    d = difference(a, c, correlation=rho)
    np.testing.assert_allclose(float(d.stderr), np.std(x - y, ddof=1) / 8.0, rtol=1e-4)
