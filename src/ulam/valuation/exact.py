r"""Exact Data Shapley by enumerating every subset, and leave-one-out values.

Ghorbani & Zou (ICML 2019), eq. (1):

.. math:: \phi_i = \frac{1}{n}\sum_{S\subseteq D\setminus\{i\}} \binom{n-1}{|S|}^{-1}\,[V(S\cup\{i\}) - V(S)],

the unique value with null player, symmetry and additivity, and efficient:
:math:`\sum_i \phi_i = V(D) - V(\varnothing)`. Enumeration costs :math:`2^n` fits,
so it is the test oracle for small ``n`` (the Monte Carlo estimators are checked
against it).
"""

from __future__ import annotations

import math

import numpy as np

from ulam.estimate import Estimate
from ulam.valuation.utility import Utility

__all__ = ["exact_shapley", "leave_one_out", "all_subset_scores"]


def _check_utility(utility) -> None:
    if not isinstance(utility, Utility):
        raise TypeError(
            f"utility: expected a ulam.valuation utility (jax_utility(...) or sklearn_utility(...)), got {type(utility).__name__}"
        )


def all_subset_scores(utility: Utility, max_players: int = 20) -> np.ndarray:
    """``V`` of all ``2**G`` subsets, indexed by the bitmask ``sum_i 2**i [i in S]`` (float64)."""
    _check_utility(utility)
    G = utility.num_players
    if G > max_players:
        raise ValueError(f"utility: {G} players means 2**{G} fits; exact enumeration allows at most max_players={max_players}")
    codes = np.arange(2**G, dtype=np.int64)
    masks = ((codes[:, None] >> np.arange(G)) & 1).astype(bool)
    values = utility.scores(masks)
    if not np.all(np.isfinite(values)):
        raise ValueError("metric: returned non-finite values on some subsets; utilities must be finite")
    return values


def exact_shapley(utility: Utility, max_players: int = 20) -> Estimate:
    r"""Exact Shapley values by enumeration of all :math:`2^G` subsets (``G`` players).

    Returns an :class:`~ulam.Estimate` with zero standard error; ``info["utilities"]``
    holds the ``2**G`` subset scores (bitmask-indexed), for reuse as an oracle.

    Example:
      >>> import numpy as np
      >>> from ulam.valuation import exact_shapley, jax_utility, knn
      >>> X = np.array([[0.0], [1.0], [3.0], [4.0]]); y = np.array([0, 0, 1, 1])
      >>> phi = exact_shapley(jax_utility(knn(k=1), X, y, X, y))
      >>> round(float(phi.mean.sum()), 6)  # V(D) - V(empty) = 1 - 0.5
      0.5
    """
    values = all_subset_scores(utility, max_players)
    G = utility.num_players
    codes = np.arange(2**G, dtype=np.int64)
    sizes = _popcount(codes)
    # weight of a subset S of size s not containing i: s! (G-s-1)! / G!
    log_w = np.array([math.lgamma(s + 1) + math.lgamma(G - s) - math.lgamma(G + 1) for s in range(G)])
    phi = np.zeros(G)
    for i in range(G):
        without = codes[(codes >> i) & 1 == 0]
        phi[i] = np.sum(np.exp(log_w[sizes[without]]) * (values[without | (1 << i)] - values[without]))
    return Estimate(
        phi, np.zeros(G), 2**G, 2**G, {"utilities": values, "fits": 2**G}
    )


def _popcount(codes: np.ndarray) -> np.ndarray:
    c = codes.copy()
    out = np.zeros_like(c)
    while np.any(c):
        out += c & 1
        c >>= 1
    return out


def leave_one_out(utility: Utility) -> Estimate:
    r"""Leave-one-out values :math:`V(D) - V(D\setminus\{i\})` (Ghorbani & Zou's baseline).

    ``G + 1`` fits. The standard error is zero for a deterministic learner (all of
    ulam's JAX learners; scikit-learn models with a fixed ``random_state``).
    """
    _check_utility(utility)
    G = utility.num_players
    masks = ~np.eye(G, dtype=bool)
    values = utility.full_score - utility.scores(masks)
    if not np.all(np.isfinite(values)):
        raise ValueError("metric: returned non-finite values on some subsets; utilities must be finite")
    return Estimate(np.asarray(values, np.float64), np.zeros(G), 1, 1, {"fits": G + 1})
