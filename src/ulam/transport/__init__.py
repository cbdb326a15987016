"""Optimal transport by Monte Carlo: sliced Wasserstein distances with error bars.

* :func:`wasserstein_1d` — exact W_p^p between 1-D (weighted, unequal-size) empirical measures;
* :func:`sliced_wasserstein` — SW_p as an :class:`~ulam.Estimate`, with i.i.d., randomized-QMC or
  orthogonal directions and the lower/upper Gaussian control variates of Nguyen & Ho (ICLR 2024);
* :func:`max_sliced_wasserstein` — the direction of largest 1-D distance, by optimization;
* :func:`gradient_flow` — a point cloud moved by gradient descent on N·SW, with exact W2 recorded;
* :func:`exact_wasserstein` — W_p between equal-size clouds by optimal assignment (host, small n);
* direction designs: :func:`random_directions`, :func:`sobol_directions`, :func:`orthogonal_directions`.
"""

from ulam.transport.directions import orthogonal_directions, random_directions, sobol_directions
from ulam.transport.flow import FlowTrace, exact_wasserstein, gradient_flow
from ulam.transport.sliced import max_sliced_wasserstein, sliced_wasserstein
from ulam.transport.wasserstein_1d import wasserstein_1d

__all__ = [
    "wasserstein_1d",
    "sliced_wasserstein",
    "max_sliced_wasserstein",
    "gradient_flow",
    "FlowTrace",
    "exact_wasserstein",
    "random_directions",
    "sobol_directions",
    "orthogonal_directions",
]
