"""Sliced Wasserstein estimators: closed forms, POT with the same directions, variance reduction, bad input."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import ot
import pytest

from ulam import Estimate
from ulam.testing import assert_within_stderr
from ulam.transport import max_sliced_wasserstein, random_directions, sliced_wasserstein, wasserstein_1d

DIM, N = 5, 400


@functools.partial(jax.jit, static_argnames=("num", "design", "cv", "power", "blocks"))
def sw(x, y, key, num, design="mc", cv=None, power=True, blocks=None):
    """SW_p^p by default here (the unbiased quantity the closed forms give); power=False for SW_p."""
    return sliced_wasserstein(x, y, key, num, directions=design, control_variate=cv, pth_power=power, num_blocks=blocks)


@functools.partial(jax.jit, static_argnames=("num", "design", "cv"))
def replicates(x, y, keys, num, design="mc", cv=None):
    """One Estimate per key (vmapped): shared by several tests to compile once per variant."""
    return jax.vmap(lambda k: sliced_wasserstein(x, y, k, num, directions=design, control_variate=cv, pth_power=True))(keys)


def replicate_means(x, y, keys, num, design="mc", cv=None):
    return replicates(x, y, keys, num, design, cv).mean


def affine_pair(scale=2.0, shift=-3.0):
    """x ~ N(1, I) and y = scale * x + shift: every slice is an affine image, so SW_2^2 is exact.

    W_2^2(theta) = mean_i ((scale-1) theta.x_i + theta.c)^2 = theta^T A theta, so
    SW_2^2 = tr(A) / d; for large n it tends to ||dm||^2/d + (s1 - s2)^2.
    """
    rng = np.random.default_rng(7)
    x = rng.normal(1.0, 1.0, size=(N, DIM))
    c = np.full(DIM, shift)
    y = scale * x + c
    z = (scale - 1.0) * x + c
    truth = np.mean(np.sum(z**2, axis=1)) / DIM
    return jnp.asarray(x, jnp.float32), jnp.asarray(y, jnp.float32), truth


X, Y, TRUTH = affine_pair()


def test_exact_value_is_close_to_the_population_closed_form():
    # N(1, I) against N(-1, 4I): ||dm||^2/d + (s1 - s2)^2 = 4 + 1 = 5, up to sampling error.
    assert abs(TRUTH - 5.0) < 0.25


@pytest.mark.parametrize(
    "design,cv",
    [("mc", None), ("mc", "lower"), ("mc", "upper"), ("rqmc", None), ("orthogonal", None), ("rqmc", "lower")],
)
def test_unbiased_for_the_exact_value(design, cv, key):
    reps = replicates(X, Y, jax.random.split(key, 64), 20, design, cv)
    assert_within_stderr(reps[0], TRUTH, msg=f"{design}/{cv} single estimate: ")
    # The average of 64 independent estimates, with a standard error from their spread.
    assert_within_stderr(Estimate.from_samples(reps.mean), TRUTH, msg=f"{design}/{cv} average: ")


def test_lower_control_variate_is_exact_for_a_translation(key):
    # y = x + c: every slice is W = (theta.c)^2, exactly the lower control variate.
    c = jnp.array([1.0, -2.0, 0.5, 0.0, 3.0])
    est = sw(X, X + c, key, 20, "mc", "lower")
    np.testing.assert_allclose(est.mean, jnp.sum(c**2) / DIM, rtol=1e-4)
    assert float(est.stderr) < 1e-4 * float(est.mean)
    plain = sw(X, X + c, key, 20)
    assert float(plain.stderr) > 100 * float(est.stderr)


def test_full_orthogonal_frames_are_exact_for_a_translation(key):
    # Over an orthonormal basis, sum_l (theta_l.c)^2 = ||c||^2 for every block.
    c = jnp.array([1.0, -2.0, 0.5, 0.0, 3.0])
    est = sw(X, X + c, key, 2 * DIM, "orthogonal", None, True, 2)
    np.testing.assert_allclose(est.mean, jnp.sum(c**2) / DIM, rtol=1e-4)
    assert float(est.stderr) < 1e-3


@pytest.mark.parametrize("p", [1.0, 2.0])
def test_matches_pot_with_the_same_directions(p, key, x64):
    rng = np.random.default_rng(3)
    xs, ys = rng.normal(size=(60, 4)), rng.normal(1.0, 2.0, size=(45, 4))
    a, b = rng.random(60), rng.random(45)
    a, b = a / a.sum(), b / b.sum()
    proj = ot.sliced.get_random_projections(4, 30, seed=5)  # (d, L), unit columns
    for weights in [(None, None), (a, b)]:
        ours = sliced_wasserstein(
            jnp.asarray(xs), jnp.asarray(ys), key, directions=jnp.asarray(proj.T), p=p,
            x_weights=None if weights[0] is None else jnp.asarray(weights[0]),
            y_weights=None if weights[1] is None else jnp.asarray(weights[1]),
        )
        theirs = ot.sliced_wasserstein_distance(xs, ys, weights[0], weights[1], projections=proj, p=p)
        np.testing.assert_allclose(float(ours.mean), theirs, rtol=1e-6)
    # Equal sizes: the sorted fast path.
    ours = sliced_wasserstein(jnp.asarray(xs[:45]), jnp.asarray(ys), key, directions=jnp.asarray(proj.T), p=p)
    theirs = ot.sliced_wasserstein_distance(xs[:45], ys, projections=proj, p=p)
    np.testing.assert_allclose(float(ours.mean), theirs, rtol=1e-6)


def _gaussian_clouds(anisotropic, key, n=1000, d=10):
    kx, ky, ka, kb = jax.random.split(key, 4)
    if not anisotropic:  # the digest's isotropic case: N(1, I) against N(-1, 4I)
        return jax.random.normal(kx, (n, d)) + 1.0, 2.0 * jax.random.normal(ky, (n, d)) - 1.0
    # The digest's anisotropic case: random covariances A A^T / d and a mean shift of 1 per coordinate.
    a, b = jax.random.normal(ka, (d, d)) / jnp.sqrt(d), jax.random.normal(kb, (d, d)) / jnp.sqrt(d)
    return jax.random.normal(kx, (n, d)) @ a.T + 1.0, jax.random.normal(ky, (n, d)) @ b.T


def test_lower_and_upper_control_variates_cut_variance_100x_isotropic(key):
    x, y = _gaussian_clouds(False, key)
    keys = jax.random.split(jax.random.fold_in(key, 2), 200)
    var_mc = jnp.var(replicate_means(x, y, keys, 10))
    for cv in ("lower", "upper"):
        ratio = float(var_mc / jnp.var(replicate_means(x, y, keys, 10, "mc", cv)))
        assert ratio >= 100, f"{cv}: variance reduced only {ratio:.1f}x at L=10"


@pytest.mark.slow
def test_lower_control_variate_no_worse_anisotropic(key):
    x, y = _gaussian_clouds(True, key)
    keys = jax.random.split(jax.random.fold_in(key, 3), 200)
    var_mc = jnp.var(replicate_means(x, y, keys, 100))
    var_lcv = jnp.var(replicate_means(x, y, keys, 100, "mc", "lower"))
    assert float(var_lcv) <= float(var_mc)


@pytest.mark.parametrize("cv", [None, "lower"])
def test_reported_stderr_matches_replicate_spread(cv, key):
    reps = replicates(X, Y, jax.random.split(key, 200), 20, "mc", cv)
    ratio = float(jnp.mean(reps.stderr**2) / jnp.var(reps.mean, ddof=1))
    # The variance of a variance estimate from 200 draws is ~10%: allow 0.6-1.6.
    assert 0.6 < ratio < 1.6, ratio


@pytest.mark.parametrize("cv", [None, "lower", "upper"])
def test_gradient_matches_finite_differences(cv, key, x64):
    rng = np.random.default_rng(11)
    x, y = jnp.asarray(rng.normal(size=(30, 3))), jnp.asarray(rng.normal(2.0, 1.5, size=(30, 3)))
    theta = jax.random.normal(key, (8, 3), jnp.float64)
    theta = theta / jnp.linalg.norm(theta, axis=1, keepdims=True)

    def f(x):
        return sliced_wasserstein(x, y, key, directions=theta, control_variate=cv).mean

    g = jax.grad(f)(x)
    eps = 1e-6
    for i, j in [(0, 0), (5, 2), (17, 1)]:
        e = jnp.zeros_like(x).at[i, j].set(eps)
        np.testing.assert_allclose(g[i, j], (f(x + e) - f(x - e)) / (2 * eps), rtol=1e-5, atol=1e-8)


def test_weights_equal_duplicated_points_and_root(key):
    x, y = X[:50], Y[:80]
    w = jnp.full(100, 0.01)
    dup = sw(jnp.concatenate([x, x]), y, key, 20)
    weighted = jax.jit(lambda x, y, w: sliced_wasserstein(x, y, key, 20, x_weights=w, pth_power=True))(jnp.concatenate([x, x]), y, w)
    np.testing.assert_allclose(weighted.mean, dup.mean, rtol=1e-5)
    plain = sw(x, y, key, 20)
    np.testing.assert_allclose(plain.mean, sw(jnp.concatenate([x, x]), y, key, 20).mean, rtol=1e-5)
    rooted = sw(x, y, key, 20, power=False)
    np.testing.assert_allclose(rooted.mean, jnp.sqrt(plain.mean), rtol=1e-6)
    np.testing.assert_allclose(rooted.stderr, plain.stderr / (2 * jnp.sqrt(plain.mean)), rtol=1e-5)
    assert plain.n == 20 and plain.info["slice_costs"].shape == (20,)


def test_max_sliced_finds_the_direction_of_largest_spread(key):
    rng = np.random.default_rng(4)
    angle = 0.7
    e = np.array([np.cos(angle), np.sin(angle)])
    x = jnp.asarray(rng.normal(size=(200, 2)) * [0.3, 0.3] + np.outer(rng.normal(size=200) * 3.0, e), jnp.float32)
    y = jnp.asarray(rng.normal(size=(200, 2)) * 0.3, jnp.float32)
    est = max_sliced_wasserstein(x, y, key, num_starts=4, num_steps=150, pth_power=True)
    grid = np.linspace(0, np.pi, 2000)
    thetas = jnp.asarray(np.stack([np.cos(grid), np.sin(grid)], 1), jnp.float32)
    best = float(jnp.max(wasserstein_1d(thetas @ x.T, thetas @ y.T)))
    assert float(est.mean) >= 0.999 * best
    assert abs(abs(float(est.info["direction"] @ e)) - 1.0) < 1e-3
    assert np.isnan(float(est.stderr))
    g = jax.grad(lambda x: max_sliced_wasserstein(x, y, key, num_starts=2, num_steps=20).mean)(x)
    assert g.shape == x.shape and bool(jnp.all(jnp.isfinite(g)))


def test_bad_input(key):
    x = jnp.ones((10, 3))
    with pytest.raises(ValueError, match=r"x, y: expected clouds in the same dimension, got different dimensions \(3 and 4\)"):
        sliced_wasserstein(x, jnp.ones((10, 4)), key)
    with pytest.raises(ValueError, match=r"x: expected a non-empty point cloud .*, got shape \(0, 3\)"):
        sliced_wasserstein(jnp.ones((0, 3)), x, key)
    with pytest.raises(ValueError, match=r"y: expected a point cloud of shape \(num_points, dim\), got shape \(10,\)"):
        sliced_wasserstein(x, jnp.ones(10), key)
    with pytest.raises(TypeError, match="y: expected floating-point positions, got dtype int32; cast with"):
        sliced_wasserstein(x, jnp.ones((10, 3), jnp.int32), key)
    with pytest.raises(ValueError, match="x_weights: expected non-negative weights, got a smallest weight of -0.8"):
        sliced_wasserstein(x, x, key, x_weights=jnp.full(10, 0.2).at[0].set(-0.8))
    with pytest.raises(ValueError, match="y_weights: expected weights that sum to 1, got a sum of 2; divide them"):
        sliced_wasserstein(x, x, key, y_weights=jnp.full(10, 0.2))
    with pytest.raises(ValueError, match=r"y_weights: expected one weight per point \(10\), got shape \(9,\)"):
        sliced_wasserstein(x, x, key, y_weights=jnp.full(9, 1 / 9))
    with pytest.raises(ValueError, match=r"p: expected a finite value in \[1, inf\), got 0.5; the Wasserstein order"):
        sliced_wasserstein(x, x, key, p=0.5)
    with pytest.raises(ValueError, match="num_directions: expected an integer >= 2, got 1"):
        sliced_wasserstein(x, x, key, 1)
    with pytest.raises(ValueError, match="num_directions: expected an integer >= 2, got 1"):
        sliced_wasserstein(x, x, key, directions=jnp.ones((1, 3)))
    with pytest.raises(TypeError, match="num_directions: expected an integer, got float 10.0"):
        sliced_wasserstein(x, x, key, 10.0)
    with pytest.raises(ValueError, match="directions: expected one of 'mc', 'rqmc', 'orthogonal', got 'halton'"):
        sliced_wasserstein(x, x, key, directions="halton")
    with pytest.raises(ValueError, match=r"directions: expected an array of shape \(L, 3\), got shape \(5, 2\)"):
        sliced_wasserstein(x, x, key, directions=jnp.ones((5, 2)))
    with pytest.raises(ValueError, match="control_variate: expected one of None, 'lower', 'upper', got 'both'"):
        sliced_wasserstein(x, x, key, control_variate="both")
    with pytest.raises(ValueError, match="num_blocks: expected a divisor of num_directions=10, got 3"):
        sliced_wasserstein(x, x, key, 10, directions="rqmc", num_blocks=3)
    with pytest.raises(ValueError, match="num_blocks: expected blocks of at most dim=3 orthogonal directions"):
        sliced_wasserstein(x, x, key, 10, directions="orthogonal", num_blocks=2)
    with pytest.raises(ValueError, match="x: expected finite values, got 1 NaN or infinite of 30"):
        sliced_wasserstein(x.at[0, 0].set(jnp.nan), x, key)
    with pytest.raises(ValueError, match="cv_centering: expected one of 'sample', 'exact', got 'mean'"):
        sliced_wasserstein(x, x, key, control_variate="lower", cv_centering="mean")
    with pytest.raises(TypeError, match=r"key: expected a jax.random key, got the int 0; pass jax.random.key\(seed\)"):
        sliced_wasserstein(x, x, 0)
    with pytest.raises(ValueError, match="num_starts: expected an integer >= 1, got 0"):
        max_sliced_wasserstein(x, x, key, num_starts=0)
    with pytest.raises(ValueError, match="learning_rate: expected a finite number > 0, got 0"):
        max_sliced_wasserstein(x, x, key, learning_rate=0.0)
    with pytest.raises(TypeError, match="key: expected a jax.random key"):
        max_sliced_wasserstein(x, x, None)
    # Legacy keys work.
    assert bool(jnp.isfinite(sliced_wasserstein(x, x + 1.0, jax.random.PRNGKey(0), 4).mean))


@pytest.mark.parametrize("cv", ["lower", "upper"])
def test_exact_centering_reproduces_the_official_estimator(cv, key, x64):
    # khainb/CV-SW GradientFlow/utils.py (LCVSW, UCVSW), written out in NumPy with the same directions.
    rng = np.random.default_rng(8)
    xs, ys = rng.normal(size=(40, 3)), rng.normal(1.0, 2.0, size=(40, 3))
    theta = rng.normal(size=(12, 3))
    theta /= np.linalg.norm(theta, axis=1, keepdims=True)
    dm = xs.mean(0) - ys.mean(0)
    g = (theta @ dm) ** 2
    g_mean = np.mean(dm**2)
    if cv == "upper":
        g = g + np.mean((theta @ (xs - xs.mean(0)).T) ** 2, 1) + np.mean((theta @ (ys - ys.mean(0)).T) ** 2, 1)
        g_mean = g_mean + np.mean((xs - xs.mean(0)) ** 2) + np.mean((ys - ys.mean(0)) ** 2)
    w = np.mean((np.sort(xs @ theta.T, 0) - np.sort(ys @ theta.T, 0)) ** 2, 0)
    alpha = np.mean((w - w.mean()) * (g - g_mean)) / (np.mean((g - g_mean) ** 2) + 1e-24)
    z = w.mean() - alpha * np.mean(g - g_mean)
    ours = sliced_wasserstein(jnp.asarray(xs), jnp.asarray(ys), key, directions=jnp.asarray(theta),
                              control_variate=cv, cv_centering="exact", pth_power=True)
    np.testing.assert_allclose(float(ours.mean), z, rtol=1e-10)


@functools.partial(jax.jit, static_argnames=("num", "cv"))
def distance_replicates(x, y, keys, num, cv=None):
    """SW_p (the default) per key: the delta-method standard error's replicate check."""
    return jax.vmap(lambda k: sliced_wasserstein(x, y, k, num, control_variate=cv))(keys)


@pytest.mark.parametrize("cv", [None, "lower"])
def test_root_stderr_by_delta_method_matches_replicate_spread(cv, key):
    # Issue #16.16: SW_p's standard error is se(SW_p^p) / (p SW_p^(p-1)); over 200 independent
    # replicates its square must match the variance of the SW_p values (the relative sd of a
    # variance from 200 draws is sqrt(2/199) = 0.10, so 0.6-1.6 is about 4 of its SEs).
    reps = distance_replicates(X, Y, jax.random.split(key, 200), 20, cv)
    ratio = float(jnp.mean(reps.stderr**2) / jnp.var(reps.mean, ddof=1))
    assert 0.6 < ratio < 1.6, ratio
    # And the average SW_p is within its SE of sqrt(SW_2^2) (the root's bias is O(1/L), far smaller here).
    assert_within_stderr(Estimate.from_samples(reps.mean), float(np.sqrt(TRUTH)), msg=f"{cv}: ")
    np.testing.assert_allclose(reps.info["pth_power_mean"], reps.mean**2, rtol=1e-5)
    np.testing.assert_allclose(reps.stderr, reps.info["pth_power_stderr"] / (2 * reps.mean), rtol=1e-5)


def test_default_is_the_distance_and_root_is_a_deprecated_alias(key):
    x, y = X[:50], Y[:60]
    distance = sliced_wasserstein(x, y, key, 10, p=1.5)
    power = sliced_wasserstein(x, y, key, 10, p=1.5, pth_power=True)
    np.testing.assert_allclose(distance.mean, power.mean ** (1 / 1.5), rtol=1e-5)
    with pytest.warns(DeprecationWarning, match="root: deprecated"):
        old = sliced_wasserstein(x, y, key, 10, p=1.5, root=True)
    np.testing.assert_array_equal(old.mean, distance.mean)
    with pytest.warns(DeprecationWarning, match="pth_power=True instead of root=False"):
        old = sliced_wasserstein(x, y, key, 10, p=1.5, root=False)
    np.testing.assert_array_equal(old.mean, power.mean)
    top = max_sliced_wasserstein(x, y, key, num_starts=2, num_steps=5)
    top_power = max_sliced_wasserstein(x, y, key, num_starts=2, num_steps=5, pth_power=True)
    np.testing.assert_allclose(top.mean, jnp.sqrt(top_power.mean), rtol=1e-5)


def test_directions_that_are_not_unit_vectors_are_refused(key):
    # Issue #16.4: a direction of norm 2 multiplied its slice cost by 2^p without a word.
    x = jax.random.normal(key, (10, 3))
    theta = random_directions(key, 8, 3)
    ok = sliced_wasserstein(x, x + 1.0, key, directions=theta)
    assert bool(jnp.isfinite(ok.mean))
    with pytest.raises(ValueError, match=r"directions: expected unit vectors \(rows of norm 1\), got row norms in "
                                         r"\[1, 2\]; divide each row by its norm"):
        sliced_wasserstein(x, x + 1.0, key, directions=theta.at[0].multiply(2.0))
    with pytest.raises(ValueError, match="directions: expected unit vectors"):
        sliced_wasserstein(x, x + 1.0, key, directions=jnp.zeros((4, 3)))
    with pytest.raises(ValueError, match="directions: expected unit vectors"):
        sliced_wasserstein(x, x + 1.0, key, directions=theta.at[1, 0].set(jnp.nan))
