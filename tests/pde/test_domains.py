"""SDF domains: signs agree with independent membership tests, closest points lie on the boundary."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from matplotlib.path import Path

from ulam.pde import (
    Ball,
    Box,
    Difference,
    Intersection,
    Polygon,
    SignedDistance,
    StarShaped,
    Union,
    check_signed_distance,
    sample_interior,
)

L_SHAPE = np.array([[0, 0], [2, 0], [2, 1], [1, 1], [1, 2], [0, 2]], dtype=np.float32) - 1.0
STAR = StarShaped(jnp.zeros(2), jnp.array([0.0, 0.0, 0.0, 0.15, 0.0, 0.0, 0.0, 0.05]), jnp.zeros(8), 1.0, 512)


def star_radius(theta):
    return 1.0 + 0.15 * np.cos(4 * theta) + 0.05 * np.cos(8 * theta)


# (domain, membership test, tolerance band around the boundary where the sign is not checked, exact inside?)
DISK = Ball(jnp.array([0.1, -0.2]), 0.9)
BALL3 = Ball(jnp.array([0.0, 0.1, 0.0]), 0.8)
BOX2 = Box(jnp.array([0.2, 0.0]), jnp.array([0.7, 0.5]))
BOX3 = Box(jnp.zeros(3), jnp.array([0.5, 0.6, 0.4]))
POLY = Polygon(jnp.asarray(L_SHAPE))
HOLE = Ball(jnp.array([0.3, 0.3]), 0.4)

CASES = {
    "disk": (DISK, lambda x: np.linalg.norm(x - [0.1, -0.2]) < 0.9, 2),
    "ball3": (BALL3, lambda x: np.linalg.norm(x - [0.0, 0.1, 0.0]) < 0.8, 3),
    "box2": (BOX2, lambda x: np.all(np.abs(x - [0.2, 0.0]) < [0.7, 0.5]), 2),
    "box3": (BOX3, lambda x: np.all(np.abs(x) < [0.5, 0.6, 0.4]), 3),
    "polygon": (POLY, lambda x: Path(L_SHAPE).contains_point(x), 2),
    "star": (STAR, lambda x: np.hypot(*x) < star_radius(math.atan2(x[1], x[0])), 2),
    "union": (Union(BOX2, HOLE), lambda x: CASES["box2"][1](x) or np.linalg.norm(x - [0.3, 0.3]) < 0.4, 2),
    "intersection": (
        Intersection(DISK, BOX2),
        lambda x: CASES["disk"][1](x) and CASES["box2"][1](x),
        2,
    ),
    "difference": (Difference(POLY, HOLE), lambda x: CASES["polygon"][1](x) and np.linalg.norm(x - [0.3, 0.3]) >= 0.4, 2),
    "difference3": (
        Difference(BOX3, Ball(jnp.array([0.5, 0.0, 0.0]), 0.3)),
        lambda x: CASES["box3"][1](x) and np.linalg.norm(x - [0.5, 0.0, 0.0]) >= 0.3,
        3,
    ),
}
# Where |sdf| equals the distance to the closest point (exact SDF at that point).
EXACT_INSIDE = {"disk", "ball3", "box2", "box3", "polygon", "star", "intersection", "difference", "difference3"}
EXACT_EVERYWHERE = {"disk", "ball3", "box2", "box3", "polygon", "star"}

def _sdf_cp_and_sdf_at_cp(dom):
    def f(x):
        cp = dom.closest_point(x)
        return dom.sdf(x), cp, dom.sdf(cp)

    return jax.jit(f)


# One compiled function per domain for the property test.
_ALL = {name: _sdf_cp_and_sdf_at_cp(dom) for name, (dom, _, _) in CASES.items()}


def coords(dim):
    return st.lists(st.floats(-1.25, 1.25, allow_nan=False, width=32), min_size=dim, max_size=dim)


@pytest.mark.parametrize("name", sorted(CASES))
@settings(max_examples=25, deadline=None, derandomize=True)
@given(data=st.data())
def test_sign_matches_membership_and_closest_point_on_boundary(name, data):
    domain, member, dim = CASES[name]
    x = np.asarray(data.draw(coords(dim)), dtype=np.float32)
    phi, cp, phi_cp = _ALL[name](x)
    phi, cp, phi_cp = float(phi), np.asarray(cp), float(phi_cp)
    # The sign: negative inside, positive outside (skip a thin band where float32 rounding decides).
    if abs(phi) > 1e-4:
        assert (phi < 0) == bool(member(x)), f"{name}: sdf {phi} at {x} disagrees with membership"
    # The closest point lies on the boundary (everywhere for exact SDFs and unions; inside for
    # intersections and differences, whose exterior closest point is approximate) ...
    if name in EXACT_EVERYWHERE or name == "union" or phi < 0:
        assert abs(phi_cp) < 2e-4, f"{name}: phi(closest_point) != 0 at {x}"
    dist = float(np.linalg.norm(x - cp))
    # ... |phi| never exceeds the distance to a boundary point (walk-on-spheres balls stay inside) ...
    assert abs(phi) <= dist + 2e-4
    # ... and equals it where the SDF is exact.
    if name in EXACT_EVERYWHERE or (name in EXACT_INSIDE and phi < 0):
        assert abs(abs(phi) - dist) < 2e-4, f"{name}: |phi| = {abs(phi)} but closest point is {dist} away"


@pytest.mark.parametrize("name", sorted(CASES))
@settings(max_examples=12, deadline=None, derandomize=True)
@given(data=st.data())
def test_sdf_is_one_lipschitz(name, data):
    _, _, dim = CASES[name]
    x = np.asarray(data.draw(coords(dim)), dtype=np.float32)
    y = np.asarray(data.draw(coords(dim)), dtype=np.float32)
    px, py = float(_ALL[name](x)[0]), float(_ALL[name](y)[0])
    assert abs(px - py) <= np.linalg.norm(x - y) * (1 + 1e-5) + 1e-5


def test_star_polygon_is_close_to_smooth_curve():
    theta = np.linspace(0, 2 * np.pi, 997)
    boundary = star_radius(theta)[:, None] * np.stack([np.cos(theta), np.sin(theta)], 1)
    phi = np.asarray(jax.jit(jax.vmap(STAR.sdf))(jnp.asarray(boundary, jnp.float32)))
    # 512 chords of a curve with curvature <= ~5: sagitta <= kappa h^2 / 8 < 1e-3.
    assert np.max(np.abs(phi)) < 1e-3


def test_operators_build_combinations():
    a, b = Ball(jnp.zeros(2), 1.0), Box(jnp.zeros(2), jnp.ones(2) * 0.5)
    assert isinstance(a | b, Union) and isinstance(a & b, Intersection) and isinstance(a - b, Difference)
    x = jnp.array([0.9, 0.0])
    assert float((a - b).sdf(x)) == pytest.approx(-0.1, abs=1e-6)


def test_domains_are_pytrees_through_jit():
    f = jax.jit(lambda dom, x: dom.sdf(x))
    assert float(f(Ball(jnp.zeros(2), 1.0), jnp.array([0.5, 0.0]))) == pytest.approx(-0.5)
    assert float(f(Ball(jnp.zeros(2), 2.0), jnp.array([0.5, 0.0]))) == pytest.approx(-1.5)


@pytest.mark.parametrize("name", sorted(CASES))
def test_check_signed_distance_accepts_every_primitive_and_combination(name):
    check_signed_distance(CASES[name][0], jax.random.key(3))


@pytest.mark.parametrize(
    "fn",
    [lambda x: 2.0 * (jnp.linalg.norm(x) - 1.0), lambda x: jnp.sum(x**2) - 1.0],
    ids=["scaled", "squared"],
)
def test_check_signed_distance_rejects_a_function_that_is_not_a_distance(fn):
    dom = SignedDistance(fn, 2, (-1.0, -1.0), (1.0, 1.0))
    with pytest.raises(ValueError, match="not a distance"):
        check_signed_distance(dom, jax.random.key(0))


def test_user_signed_distance_projects_to_its_zero_set():
    dom = SignedDistance(lambda x: jnp.linalg.norm(x) - 0.7, 2, (-0.7, -0.7), (0.7, 0.7))
    check_signed_distance(dom, jax.random.key(1))
    cp = dom.closest_point(jnp.array([0.1, 0.2]))
    assert float(jnp.linalg.norm(cp)) == pytest.approx(0.7, abs=1e-5)


def test_domain_helpers_bad_input():
    disk = Ball(jnp.zeros(2), 1.0)
    with pytest.raises(TypeError, match=r"key: expected a jax.random key, got the int 3; pass jax.random.key\(seed\)"):
        sample_interior(disk, 3, 10)
    with pytest.raises(ValueError, match="n: expected an integer >= 1, got 0"):
        sample_interior(disk, jax.random.key(0), 0)
    with pytest.raises(ValueError, match=r"domain: expected at least n=10 of 10 box samples inside, got \d+; raise oversample"):
        sample_interior(disk, jax.random.key(0), 10, oversample=1)
    with pytest.raises(ValueError, match="num_samples: expected an integer >= 1, got 0"):
        check_signed_distance(disk, num_samples=0)
    with pytest.raises(ValueError, match="tolerance: expected a finite number > 0, got -0.1"):
        check_signed_distance(disk, tolerance=-0.1)
    with pytest.raises(ValueError, match="domain: expected a finite signed distance, got NaN or inf"):
        check_signed_distance(SignedDistance(lambda x: jnp.log(x[0]) + 0 * x[1], 2, (-1.0, -1.0), (1.0, 1.0)))
