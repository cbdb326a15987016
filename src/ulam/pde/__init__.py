"""Monte Carlo PDE solvers: walk-on-spheres on signed-distance domains, and operator learning on its labels.

- :mod:`ulam.pde.domains`: balls, boxes, polygons, star-shaped curves and their
  unions, intersections and differences, as signed distance functions.
- :mod:`ulam.pde.walk_on_spheres`: walk-on-spheres (WoS) for Laplace, Poisson and
  screened Poisson with Dirichlet data in 2-D and 3-D; values and gradients as
  :class:`~ulam.Estimate`.
- :mod:`ulam.pde.green`: ball Green's functions and their samplers.
- :mod:`ulam.pde.operator_learning`: WoS-NO (Viswanath et al. 2026), a neural
  operator trained on WoS weak labels with a running-mean label cache, and a
  physics-informed baseline.
"""

from ulam.pde.domains import (
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
from ulam.pde.walk_on_spheres import (
    DirichletProblem,
    WalkMoments,
    gradient_from_moments,
    solution_gradient,
    walk_moments,
    walk_on_spheres,
)

__all__ = [
    "Ball",
    "Box",
    "Polygon",
    "StarShaped",
    "SignedDistance",
    "Union",
    "Intersection",
    "Difference",
    "check_signed_distance",
    "sample_interior",
    "DirichletProblem",
    "WalkMoments",
    "walk_moments",
    "walk_on_spheres",
    "solution_gradient",
    "gradient_from_moments",
]
