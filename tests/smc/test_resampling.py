"""Resampling schemes: unbiased offspring counts, the variance ordering, bad input."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ulam import Estimate
from ulam.smc import RESAMPLERS, offspring_counts, resample_if
from ulam.testing import assert_within_stderr, z_for_family

N = 8
# Non-integer N * w_i everywhere, so every scheme is random for every particle.
WEIGHTS = jnp.array([0.31, 0.02, 0.17, 0.08, 0.215, 0.005, 0.11, 0.09])
REPS = 4000


def _counts(scheme, key):
    fn = RESAMPLERS[scheme]
    keys = jax.random.split(key, REPS)
    return jax.vmap(lambda k: offspring_counts(fn(k, jnp.log(WEIGHTS), N), N))(keys)


_counts_jit = jax.jit(_counts, static_argnums=0)


@pytest.fixture(scope="module")
def counts():
    key = jax.random.key(7)
    return {s: np.asarray(_counts_jit(s, jax.random.fold_in(key, i)), float) for i, s in enumerate(RESAMPLERS)}


@pytest.mark.parametrize("scheme", sorted(RESAMPLERS))
def test_offspring_counts_are_unbiased(counts, scheme):
    c = counts[scheme]
    assert np.all(c.sum(1) == N)
    est = Estimate.from_samples(jnp.asarray(c))
    # Tiny allowance for float32 round-off in N * w; bias of one draw would be 1/REPS-scale larger.
    assert_within_stderr(est, N * WEIGHTS, z=z_for_family(len(RESAMPLERS) * N), extra_bias=1e-5)


def test_variance_ordering(counts):
    var = {s: counts[s].var(0, ddof=1).sum() for s in counts}
    frac = np.asarray(N * WEIGHTS) % 1.0
    minimal = float(np.sum(frac * (1 - frac)))  # floor/ceil counts: the smallest possible
    # multinomial: sum N w (1 - w) = 6.36; residual and stratified are well below it.
    assert var["multinomial"] > 1.3 * var["residual"]
    assert var["multinomial"] > 1.3 * var["stratified"]
    assert var["residual"] > minimal and var["stratified"] > minimal * 0.999
    for s in ("systematic", "ssp"):
        assert abs(var[s] - minimal) < 0.1 * minimal, (s, var[s], minimal)
    expected_multinomial = float(np.sum(N * WEIGHTS * (1 - WEIGHTS)))
    assert abs(var["multinomial"] - expected_multinomial) < 0.1 * expected_multinomial


@settings(max_examples=25, deadline=None)
@given(st.lists(st.floats(0.01, 1.0), min_size=2, max_size=6), st.integers(0, 2**30), st.sampled_from([5]))
def test_low_variance_schemes_give_floor_or_ceil(ws, seed, num):
    w = np.asarray(ws) / np.sum(ws)
    lw = jnp.log(jnp.asarray(_pad(w)))
    for scheme in ("systematic", "ssp"):
        c = np.asarray(_floor_ceil_jit(scheme, jax.random.key(seed), lw, num))
        expected = num * _pad(w)
        assert c.sum() == num
        assert np.all(c >= np.floor(expected - 1e-4)) and np.all(c <= np.ceil(expected + 1e-4)), (scheme, c, expected)


def _pad(w):
    # Fixed length 6 (zero weights on the padding) keeps one compilation per scheme and num.
    out = np.zeros(6)
    out[: len(w)] = w
    return out


_floor_ceil_jit = jax.jit(lambda s, k, lw, num: offspring_counts(RESAMPLERS[s](k, lw, num), 6), static_argnums=(0, 3))


def test_adaptive_resampling_carries_weights(key):
    lw = jnp.log(jnp.array([0.4, 0.3, 0.2, 0.1]))  # ESS = 3.33 of 4
    a, carried, done = resample_if(key, lw, 4, threshold=0.5)
    assert not bool(done) and np.array_equal(np.asarray(a), np.arange(4))
    np.testing.assert_allclose(np.asarray(carried), np.asarray(lw))
    a, carried, done = resample_if(key, lw, 4, threshold=0.9)
    assert bool(done) and np.all(np.asarray(carried) == 0.0)


@pytest.mark.parametrize("threshold", [0.0, -0.1, 1.5])
def test_threshold_outside_unit_interval_is_refused(key, threshold):
    with pytest.raises(ValueError, match=r"threshold.*\(0, 1\]"):
        resample_if(key, jnp.zeros(4), 4, threshold=threshold)


def test_bad_num_is_refused(key):
    with pytest.raises(ValueError, match="num: expected an integer >= 1, got 0"):
        RESAMPLERS["systematic"](key, jnp.zeros(4), 0)
    with pytest.raises(TypeError, match="num: expected an integer, got float 4.0"):
        RESAMPLERS["multinomial"](key, jnp.zeros(4), 4.0)


def test_unknown_scheme_lists_the_choices():
    from ulam.smc import get_resampler

    with pytest.raises(ValueError, match=r"resampling: expected one of .*'ssp', got 'stratfied'; did you mean 'stratified'"):
        get_resampler("stratfied")


@pytest.mark.parametrize("n", [3, 257, 4096])
def test_systematic_counting_search_equals_searchsorted(n):
    """The O(N) systematic resampler returns the searchsorted ancestors (zero weights included), except
    where a uniform ties a cumulative weight to within rounding (XLA may round (j+u)/num one ulp apart)."""
    from ulam.smc.resampling import _cdf_w, systematic_search

    def by_search(cdf, u, num):
        uniforms = (jnp.arange(num, dtype=cdf.dtype) + u) / num
        return jnp.minimum(jnp.searchsorted(cdf, uniforms, side="right"), cdf.shape[0] - 1)

    rng = np.random.default_rng(n)
    f = jax.jit(lambda cdf, u: (systematic_search(cdf, u, n), by_search(cdf, u, n)))
    for trial in range(20):
        logits = rng.standard_normal(n) * [0.1, 1.0, 5.0, 30.0][trial % 4]
        if trial % 2:
            logits[rng.random(n) < 0.5] = -np.inf
        cdf = _cdf_w(jax.nn.softmax(jnp.asarray(logits, jnp.float32)))
        u = jnp.float32(rng.random())
        a, b = map(np.asarray, f(cdf, u))
        bad = np.flatnonzero(a != b)
        assert bad.size <= max(1, n // 10000)
        uniforms = (np.arange(n, dtype=np.float32) + np.float32(u)) / np.float32(n)
        c = np.asarray(cdf)
        for j in bad:  # a mismatch is a tie: the uniform sits within 2 ulp of a cumulative weight between the two answers
            lo, hi = sorted((a[j], b[j]))
            near = np.abs(c[max(lo - 1, 0):hi + 1] - uniforms[j]) <= 2 * np.spacing(uniforms[j])
            assert near.any()
