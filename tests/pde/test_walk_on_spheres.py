"""Walk-on-spheres against closed-form harmonic, Poisson and screened-Poisson solutions in 2-D and 3-D."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ulam.pde import (
    Ball,
    Box,
    Difference,
    DirichletProblem,
    Polygon,
    SignedDistance,
    StarShaped,
    solution_gradient,
    walk_on_spheres,
)
from ulam.testing import assert_variance_reduced, assert_within_stderr, variance_ratio, z_for_family

EPS = 1e-3
DISK = Ball(jnp.zeros(2), 1.0)
BALL = Ball(jnp.zeros(3), 1.0)
# Ten points spread through the unit disk / ball, some near the boundary.
P2 = jnp.array(
    [[0.3, 0.2], [0.8, -0.1], [-0.5, 0.5], [0.0, 0.0], [-0.9, 0.05], [0.1, -0.7], [0.6, 0.6], [-0.2, -0.3],
     [0.45, -0.45], [-0.05, 0.95]]
)
P3 = jnp.array(
    [[0.3, 0.2, -0.1], [0.7, -0.1, 0.2], [-0.4, 0.4, 0.4], [0.0, 0.0, 0.0], [0.1, -0.8, 0.1], [-0.6, -0.2, -0.5]]
)
Z = z_for_family(40)  # one family of coordinate checks per test


def harmonic(x):
    return x[0] ** 2 - x[1] ** 2


def harmonic3(x):
    return x[0] ** 2 - x[1] ** 2 + 0.5 * x[2]


def zero(x):
    return 0.0 * x[0]


def one(x):
    return 1.0 + 0.0 * x[0]


def cubic(x):  # u = x^2 y, Delta u = 2 y
    return x[0] ** 2 * x[1]


def minus_two_y(x):
    return -2.0 * x[1]


def cubic3(x):  # u = x^2 z, Delta u = 2 z
    return x[0] ** 2 * x[2]


def minus_two_z(x):
    return -2.0 * x[2]


def bias(lipschitz):
    """epsilon-shell allowance: stopping within eps of the boundary moves the answer by <= eps |grad u|."""
    return 2 * EPS * lipschitz


def linear(x):
    return x[0] + 2.0 * x[1]


def test_laplace_2d_disk_value_and_gradient():
    prob = DirichletProblem(DISK, boundary=harmonic)
    est = walk_on_spheres(prob, jax.random.key(0), P2, num_walks=8192, epsilon=EPS)
    assert_within_stderr(est, jax.vmap(harmonic)(P2), z=Z, extra_bias=bias(2.0))
    assert est.mean.shape == (10,) and est.stderr.shape == (10,) and int(est.n) == 8192
    assert float(jnp.max(est.info["truncated_fraction"])) == 0.0
    # Walk lengths grow like log(1/eps): a handful of steps in the disk.
    assert 3 < float(jnp.mean(est.info["mean_walk_length"])) < 20
    g = solution_gradient(prob, jax.random.key(9), P2, num_walks=8192, epsilon=EPS)
    assert g.mean.shape == (10, 2)
    assert_within_stderr(g, jnp.stack([2 * P2[:, 0], -2 * P2[:, 1]], axis=1), z=Z, extra_bias=0.02)


def test_laplace_3d_ball_harmonic_data():
    prob = DirichletProblem(BALL, boundary=harmonic3)
    est = walk_on_spheres(prob, jax.random.key(1), P3, num_walks=8192, epsilon=EPS)
    assert_within_stderr(est, jax.vmap(harmonic3)(P3), z=Z, extra_bias=bias(2.5))


def test_poisson_2d_constant_source_value_and_gradient():
    prob = DirichletProblem(DISK, boundary=zero, source=one)
    est = walk_on_spheres(prob, jax.random.key(2), P2, num_walks=4096, epsilon=EPS)
    assert_within_stderr(est, (1 - jnp.sum(P2**2, axis=1)) / 4, z=Z, extra_bias=bias(0.5))
    g = solution_gradient(prob, jax.random.key(10), P2, num_walks=4096, epsilon=EPS)
    assert_within_stderr(g, -P2 / 2, z=Z, extra_bias=0.01)


def test_poisson_2d_varying_source_value_and_gradient():
    prob = DirichletProblem(DISK, boundary=cubic, source=minus_two_y)
    est = walk_on_spheres(prob, jax.random.key(3), P2, num_walks=4096, epsilon=EPS)
    assert_within_stderr(est, jax.vmap(cubic)(P2), z=Z, extra_bias=bias(2.0))
    g = solution_gradient(prob, jax.random.key(11), P2, num_walks=4096, epsilon=EPS)
    x, y = P2[:, 0], P2[:, 1]
    assert_within_stderr(g, jnp.stack([2 * x * y, x**2], axis=1), z=Z, extra_bias=0.02)


def test_poisson_3d_constant_source_value_and_gradient():
    prob = DirichletProblem(BALL, boundary=zero, source=one)
    est = walk_on_spheres(prob, jax.random.key(4), P3, num_walks=4096, epsilon=EPS)
    assert_within_stderr(est, (1 - jnp.sum(P3**2, axis=1)) / 6, z=Z, extra_bias=bias(1 / 3))
    g = solution_gradient(prob, jax.random.key(12), P3, num_walks=4096, epsilon=EPS)
    assert_within_stderr(g, -P3 / 3, z=Z, extra_bias=0.01)


@pytest.mark.slow
def test_poisson_3d_varying_source():
    prob = DirichletProblem(BALL, boundary=cubic3, source=minus_two_z)
    est = walk_on_spheres(prob, jax.random.key(5), P3, num_walks=4096, epsilon=EPS)
    assert_within_stderr(est, jax.vmap(cubic3)(P3), z=Z, extra_bias=bias(2.0))


def _screened_cases(dim):
    sigma = 2.0
    a = jnp.full(dim, math.sqrt(sigma / dim))
    domain, pts = (DISK, P2) if dim == 2 else (BALL, P3)

    def expo(x):  # Delta u = sigma u, so f = 0
        return jnp.exp(x @ a)

    def quad(x):  # u = |x|^2: Delta u - sigma u = 2d - sigma |x|^2 = -f
        return jnp.sum(x * x)

    def src(x):
        return sigma * jnp.sum(x * x) - 2.0 * dim

    return sigma, domain, pts, expo, quad, src


@pytest.mark.parametrize("dim", [pytest.param(2, marks=pytest.mark.slow), 3])
def test_screened_poisson_exponential_solution(dim):
    sigma, domain, pts, expo, _, _ = _screened_cases(dim)
    prob = DirichletProblem(domain, boundary=expo, absorption=sigma)
    est = walk_on_spheres(prob, jax.random.key(6), pts, num_walks=4096, epsilon=EPS)
    assert_within_stderr(est, jax.vmap(expo)(pts), z=Z, extra_bias=bias(float(jnp.exp(jnp.sqrt(sigma))) * 1.5))


@pytest.mark.parametrize("dim", [2, pytest.param(3, marks=pytest.mark.slow)])
def test_screened_poisson_with_source(dim):
    sigma, domain, pts, _, quad, src = _screened_cases(dim)
    prob = DirichletProblem(domain, boundary=quad, source=src, absorption=sigma)
    est = walk_on_spheres(prob, jax.random.key(7), pts, num_walks=4096, epsilon=EPS)
    assert_within_stderr(est, jax.vmap(quad)(pts), z=Z, extra_bias=bias(2.0))


NON_CONVEX = {
    "box-minus-disk": (Difference(Box(jnp.zeros(2), jnp.ones(2)), Ball(jnp.array([0.6, 0.6]), 0.5)),
                       jnp.array([[-0.5, -0.5], [0.9, -0.8], [-0.8, 0.9], [0.0, 0.0]])),
    "l-polygon": (Polygon(jnp.array([[0, 0], [2, 0], [2, 1], [1, 1], [1, 2], [0, 2]], jnp.float32) - 1.0),
                  jnp.array([[-0.5, -0.5], [0.5, -0.5], [-0.5, 0.5], [-0.9, 0.9]])),
    "star": (StarShaped(jnp.zeros(2), jnp.array([0, 0, 0, 0.2, 0, 0, 0, 0.05]), jnp.zeros(8), 1.0, 256),
             jnp.array([[0.0, 0.0], [0.7, 0.0], [0.0, -0.6], [0.4, 0.4]])),
}


@pytest.mark.parametrize("name", [n if n != "star" else pytest.param(n, marks=pytest.mark.slow) for n in sorted(NON_CONVEX)])
def test_harmonic_data_is_reproduced_on_non_convex_domains(name):
    domain, pts = NON_CONVEX[name]
    prob = DirichletProblem(domain, boundary=harmonic)
    est = walk_on_spheres(prob, jax.random.key(8), pts, num_walks=4096, epsilon=EPS)
    # The 256-gon star is within ~1e-3 of its curve, but u = g holds for the polygon exactly.
    assert_within_stderr(est, jax.vmap(harmonic)(pts), z=Z, extra_bias=bias(3.0))


def test_gradient_baseline_reduces_variance():
    prob = DirichletProblem(DISK, boundary=harmonic)
    plain = solution_gradient(prob, jax.random.key(12), P2, num_walks=8192, baseline=False)
    based = solution_gradient(prob, jax.random.key(12), P2, num_walks=8192, baseline=True)
    assert variance_ratio(plain, based) > 1.0


def test_variance_reduction_is_measured_and_unbiased():
    # For a linear u the first sphere carries a fraction (1 - r)/(1 + r) of the walk variance
    # (r = |x0| in the unit disk); mirrored pairs and the gradient control variate both remove it,
    # so at r <= 0.3 the per-walk variance must drop by well over 1.5x.
    prob = DirichletProblem(DISK, boundary=linear)
    pts = jnp.array([[0.1, 0.2], [-0.2, 0.0], [0.0, -0.3]])
    truth = jax.vmap(linear)(pts)
    plain = walk_on_spheres(prob, jax.random.key(13), pts, num_walks=8192)
    anti = walk_on_spheres(prob, jax.random.key(14), pts, num_walks=8192, variance_reduction="antithetic")
    cv = walk_on_spheres(prob, jax.random.key(15), pts, num_walks=8192, variance_reduction="control_variate")
    for est in (plain, anti, cv):
        assert_within_stderr(est, truth, z=Z, extra_bias=bias(2.3))
    assert_variance_reduced(plain, anti, 1.5)
    assert_variance_reduced(plain, cv, 1.5)
    assert np.all(np.asarray(cv.info["variance_reduction"]) > 1.5)


def test_point_data_solves_a_family_in_one_pool():
    from ulam.pde import walk_moments

    def scaled(x, c):
        return c * harmonic(x)

    coefs = jnp.array([1.0, -2.0, 0.5, 3.0])
    pts = jnp.tile(P2[:2], (2, 1))
    m = walk_moments(DirichletProblem(DISK, boundary=scaled), jax.random.key(19), pts, num_walks=4096, point_data=coefs)
    from ulam import Estimate

    est = Estimate(m.mean[:, 0], jnp.sqrt(m.cov[:, 0, 0] / m.count), 4096)
    assert_within_stderr(est, coefs * jax.vmap(harmonic)(pts), z=Z, extra_bias=bias(6.0))


def test_same_key_same_result_and_chunking_keeps_memory_bounded():
    prob = DirichletProblem(DISK, boundary=harmonic)
    pts = P2
    a = walk_on_spheres(prob, jax.random.key(16), pts, num_walks=2000, batch_size=512)
    b = walk_on_spheres(prob, jax.random.key(16), pts, num_walks=2000, batch_size=512)
    np.testing.assert_array_equal(np.asarray(a.mean), np.asarray(b.mean))
    assert int(a.n) == 2000
    # A batch that does not divide the walks: the last chunk is masked, so the count is exact.
    assert_within_stderr(a, jax.vmap(harmonic)(pts), z=Z, extra_bias=bias(2.0))


def test_max_steps_truncates_and_reports_it():
    prob = DirichletProblem(DISK, boundary=harmonic)
    # Same compiled walk as the first test: max_steps is traced, so no recompilation.
    est = walk_on_spheres(prob, jax.random.key(17), P2, num_walks=8192, max_steps=2)
    # Every point but the centre (whose first sphere reaches the boundary) needs more than 2 steps.
    assert float(jnp.mean(est.info["truncated_fraction"])) > 0.5
    assert float(jnp.max(est.info["mean_walk_length"])) <= 2.0


def test_walk_on_spheres_runs_inside_jit_and_vmap_over_instances():
    from ulam.pde import walk_moments

    def label(coef, key):
        prob = DirichletProblem(DISK, boundary=lambda x: coef * (x[0] ** 2 - x[1] ** 2))
        return walk_moments(prob, key, P2[:2], num_walks=512).mean[:, 0]

    coefs = jnp.array([1.0, -2.0])
    out = jax.jit(jax.vmap(label))(coefs, jax.random.split(jax.random.key(18), 2))
    assert out.shape == (2, 2)
    np.testing.assert_allclose(np.asarray(out), np.asarray(coefs[:, None] * jax.vmap(harmonic)(P2[:2])), atol=0.15)


# -- bad input -----------------------------------------------------------------------------------------


def test_query_point_outside_domain_is_rejected():
    prob = DirichletProblem(DISK, boundary=harmonic)
    with pytest.raises(ValueError, match="outside the domain"):
        walk_on_spheres(prob, jax.random.key(0), jnp.array([[0.3, 0.2], [1.2, 0.0]]))


@pytest.mark.parametrize("eps", [0.0, -1e-3, float("nan")])
def test_non_positive_epsilon_is_rejected(eps):
    prob = DirichletProblem(DISK, boundary=harmonic)
    with pytest.raises(ValueError, match="epsilon"):
        walk_on_spheres(prob, jax.random.key(0), P2[:1], epsilon=eps)


def test_non_callable_boundary_is_rejected():
    with pytest.raises(TypeError, match=r"problem.boundary: expected a callable g\(x\) -> scalar, got float"):
        walk_on_spheres(DirichletProblem(DISK, boundary=1.0), jax.random.key(0), P2[:1])
    with pytest.raises(TypeError, match="problem.source: expected a callable f"):
        walk_on_spheres(DirichletProblem(DISK, boundary=harmonic, source="f"), jax.random.key(0), P2[:1])


def test_non_scalar_boundary_is_rejected():
    with pytest.raises(ValueError, match=r"problem.boundary: expected a scalar for one point of shape \(2,\) of shape \(\), got shape \(2,\)"):
        walk_on_spheres(DirichletProblem(DISK, boundary=lambda x: x), jax.random.key(0), P2[:1])


def test_sdf_that_is_not_a_distance_is_rejected():
    dom = SignedDistance(lambda x: jnp.sum(x * x) - 1.0, 2, (-1.0, -1.0), (1.0, 1.0))
    with pytest.raises(ValueError, match="not a distance"):
        walk_on_spheres(DirichletProblem(dom, boundary=harmonic), jax.random.key(0), P2[:1])


def test_other_bad_arguments():
    prob = DirichletProblem(DISK, boundary=harmonic)
    with pytest.raises(ValueError, match=r"points: expected shape \(num_points, 2\) for a 2-D domain, got shape \(2, 3\)"):
        walk_on_spheres(prob, jax.random.key(0), jnp.zeros((2, 3)))
    with pytest.raises(ValueError, match="num_walks: expected an integer >= 2, got 1"):
        walk_on_spheres(prob, jax.random.key(0), P2[:1], num_walks=1)
    with pytest.raises(ValueError, match="variance_reduction: expected one of 'none', 'antithetic', 'control_variate', got 'qmc'"):
        walk_on_spheres(prob, jax.random.key(0), P2[:1], variance_reduction="qmc")
    with pytest.raises(ValueError, match="problem.absorption: expected a finite number >= 0, got -1"):
        walk_on_spheres(DirichletProblem(DISK, harmonic, absorption=-1.0), jax.random.key(0), P2[:1])
    with pytest.raises(ValueError, match="absorption"):
        solution_gradient(DirichletProblem(DISK, harmonic, absorption=1.0), jax.random.key(0), P2[:1])
    with pytest.raises(TypeError, match="problem: expected a DirichletProblem"):
        walk_on_spheres((DISK, harmonic), jax.random.key(0), P2[:1])
    with pytest.raises(TypeError, match=r"key: expected a jax.random key, got the int 0; pass jax.random.key\(seed\)"):
        walk_on_spheres(prob, 0, P2[:1])
    with pytest.raises(TypeError, match="key: expected a jax.random key"):
        solution_gradient(prob, None, P2[:1])
    with pytest.raises(TypeError, match="max_steps: expected an integer, got float 100.0"):
        walk_on_spheres(prob, jax.random.key(0), P2[:1], max_steps=100.0)
    with pytest.raises(ValueError, match="batch_size: expected an integer >= 2, got 1"):
        walk_on_spheres(prob, jax.random.key(0), P2[:1], batch_size=1)
    with pytest.raises(ValueError, match=r"num_walks: expected an even number \(antithetic walks come in pairs\), got 5"):
        walk_on_spheres(prob, jax.random.key(0), P2[:1], num_walks=5, variance_reduction="antithetic")
    with pytest.raises(ValueError, match="points: expected finite values, got 1 NaN or infinite of 2"):
        walk_on_spheres(prob, jax.random.key(0), jnp.array([[jnp.nan, 0.0]]))
    with pytest.raises(ValueError, match="problem.absorption: expected a scalar, got shape"):
        walk_on_spheres(DirichletProblem(DISK, harmonic, absorption=jnp.ones(2)), jax.random.key(0), P2[:1])


# -- NaN/inf from user functions (issue #16.5) and the documented info shapes (issue #26.4) ---------------


def _log_boundary(x):
    return jnp.log(x[0])  # NaN on the left half of the circle


def _pole_source(x):
    return 1.0 / (x[0] > 0.5)  # inf wherever x[0] <= 0.5


@pytest.mark.parametrize("which", ["boundary", "source"])
def test_non_finite_user_function_raises_with_a_count(which):
    prob = (DirichletProblem(DISK, boundary=_log_boundary) if which == "boundary"
            else DirichletProblem(DISK, boundary=harmonic, source=_pole_source))
    pattern = rf"problem\.{which}: expected finite values, got NaN or inf on \d+ of 128 walks \(from \d of 2 query points"
    with pytest.raises(ValueError, match=pattern):
        walk_on_spheres(prob, jax.random.key(0), P2[:2], num_walks=64)
    with pytest.raises(ValueError, match=pattern):
        solution_gradient(prob, jax.random.key(0), P2[:2], num_walks=64)


def test_non_finite_user_function_inside_jit_is_counted_in_info():
    prob = DirichletProblem(DISK, boundary=_log_boundary)
    est = jax.jit(lambda p: walk_on_spheres(prob, jax.random.key(0), p, num_walks=64, check_domain=False))(P2[:2])
    assert not np.any(np.isfinite(np.asarray(est.mean)))
    failures = np.asarray(est.info["boundary_failures"])
    assert failures.shape == (2,) and np.all(failures > 0) and np.all(failures <= 64)
    np.testing.assert_array_equal(est.info["source_failures"], [0, 0])
    # The same walks, counted directly: a walk fails exactly when it exits with x[0] <= 0.
    finite = walk_on_spheres(DirichletProblem(DISK, boundary=lambda x: (x[0] <= 0).astype(x.dtype)),
                             jax.random.key(0), P2[:2], num_walks=64)
    np.testing.assert_allclose(failures, 64 * np.asarray(finite.mean), atol=1e-3)


def test_info_entries_have_their_documented_shapes():
    prob = DirichletProblem(DISK, boundary=harmonic)
    pts = P2[:3]
    est = walk_on_spheres(prob, jax.random.key(20), pts, num_walks=64, variance_reduction="control_variate")
    shapes = {k: np.shape(v) for k, v in est.info.items()}
    assert shapes == {
        "mean_walk_length": (3,), "overall_mean_walk_length": (), "truncated_fraction": (3,),
        "boundary_failures": (3,), "source_failures": (3,), "epsilon": (), "num_walks": (),
        "variance_reduction": (3,), "control_coefficient": (3, 2),
    }
    assert float(est.info["overall_mean_walk_length"]) == pytest.approx(float(jnp.mean(est.info["mean_walk_length"])))
    grad = solution_gradient(prob, jax.random.key(20), pts, num_walks=64)
    assert {k: np.shape(v) for k, v in grad.info.items()} == {
        "mean_walk_length": (3,), "overall_mean_walk_length": (), "truncated_fraction": (3,),
        "boundary_failures": (3,), "source_failures": (3,),
    }


def test_float64_walks_run_and_agree(x64):
    # Under x64 the walk's integer bookkeeping (cumsum/sum of masks) used to turn int64 and break
    # the while-loop carry; the float64 estimate must hold to its SE like the float32 one.
    disk64 = Ball(jnp.zeros(2, jnp.float64), 1.0)
    pts = jnp.asarray(np.asarray(P2[:2]), jnp.float64)
    est = walk_on_spheres(DirichletProblem(disk64, boundary=harmonic), jax.random.key(21), pts, num_walks=2048)
    assert est.mean.dtype == jnp.float64
    assert_within_stderr(est, jax.vmap(harmonic)(pts), z=Z, extra_bias=bias(2.0))
