r"""Permutation estimators of Data Shapley: TMC-Shapley (Ghorbani & Zou, ICML 2019) and Beta Shapley.

Shapley values are expectations over uniformly random permutations :math:`\pi`:

.. math:: \phi_i = \mathbb{E}_\pi\,[V(P^\pi_i\cup\{i\}) - V(P^\pi_i)],

where :math:`P^\pi_i` are the players before :math:`i` in :math:`\pi`. One
permutation gives every player's marginal at once (``G`` fits). *Truncated* Monte
Carlo (TMC) stops scanning a permutation once the prefix score has been within
``rtol`` of :math:`V(D)` for more than ``patience`` consecutive points, and sets the
remaining marginals to zero (the paper's "performance tolerance").

Variance reduction beyond the paper (both measured in ``benchmarks/valuation.py``
and the tests, not assumed):

- ``"antithetic"``: each permutation with its reverse, averaged as one draw;
- ``"stratified"``: blocks of ``G`` cyclic shifts of one random permutation, so
  every player occupies every position exactly once per block (one draw per
  position stratum, each with a uniformly random predecessor set of that size).

Beta Shapley (Kwon & Zou, AISTATS 2022) reweights the marginal at position ``j``
(``j - 1`` predecessors) by :math:`\binom{G-1}{j-1} w_{\alpha,\beta}(j)`,
:math:`w_{\alpha,\beta}(j) = G\,B(j+\beta-1, G-j+\alpha)/B(\alpha,\beta)`;
``Beta(1, 1)`` is Shapley.
"""

from __future__ import annotations

import dataclasses
import math
from functools import partial
from typing import Optional

import jax
import numpy as np
from scipy.special import betaln, gammaln

from ulam.estimate import Estimate
from ulam.valuation.exact import _check_utility
from ulam.valuation.runner import Stopping, run_rounds
from ulam.valuation.utility import Utility

__all__ = ["Truncation", "sample_permutations", "tmc_shapley", "beta_shapley", "beta_position_weights"]

SCHEMES = ("plain", "antithetic", "stratified")


@dataclasses.dataclass(frozen=True)
class Truncation:
    r"""The performance-tolerance truncation rule.

    After prefix ``j`` (``j`` points), if :math:`|V_j - V(D)| \le atol + rtol\,|V(D)|`
    the counter grows, otherwise it resets; the permutation stops when the counter
    exceeds ``patience``. Checks start once ``j >= burn_in_fraction * G``.

    ``Truncation()`` is Ghorbani & Zou's code (``rtol=0.01``, break after more than 5
    consecutive points). ``Truncation(rtol=0.01, patience=0, burn_in_fraction=0.4)``
    is pyDVL's ``RelativeTruncation(rtol=0.01, burn_in_fraction=0.4)`` default.
    """

    rtol: float = 0.01
    patience: int = 5
    burn_in_fraction: float = 0.0
    atol: float = 1e-8

    def __post_init__(self):
        if not self.rtol >= 0 or self.patience < 0 or not 0 <= self.burn_in_fraction <= 1:
            raise ValueError(
                f"Truncation: need rtol >= 0, patience >= 0 and 0 <= burn_in_fraction <= 1, got {self}"
            )


def sample_permutations(key: jax.Array, num_players: int, num_units: int, scheme: str = "plain") -> np.ndarray:
    """``num_units`` independent draws of permutations, as rows (``unit`` rows per draw).

    ``plain``: 1 row per draw; ``antithetic``: a permutation and its reverse;
    ``stratified``: the ``G`` cyclic shifts of one permutation (player at every position once).
    """
    if scheme not in SCHEMES:
        raise ValueError(f"scheme: expected one of {SCHEMES}, got {scheme!r}")
    keys = jax.random.split(key, num_units)
    base = np.asarray(jax.vmap(lambda k: jax.random.permutation(k, num_players))(keys), np.int32)
    if scheme == "plain":
        return base
    if scheme == "antithetic":
        return np.stack([base, base[:, ::-1]], axis=1).reshape(-1, num_players)
    shifts = np.stack([np.roll(base, m, axis=1) for m in range(num_players)], axis=1)
    return shifts.reshape(-1, num_players)


def unit_size(scheme: str, num_players: int) -> int:
    return {"plain": 1, "antithetic": 2, "stratified": num_players}[scheme]


def beta_position_weights(num_players: int, alpha: float, beta: float) -> np.ndarray:
    r"""Weights :math:`r_j = \binom{G-1}{j-1}\,G\,B(j+\beta-1, G-j+\alpha)/B(\alpha,\beta)`, ``j = 1..G``."""
    if not (alpha > 0 and beta > 0):
        raise ValueError(f"alpha, beta: must be positive, got {alpha}, {beta}")
    G = num_players
    j = np.arange(1, G + 1, dtype=np.float64)
    log_binom = gammaln(G) - gammaln(j) - gammaln(G - j + 1)
    log_w = math.log(G) + betaln(j + beta - 1, G - j + alpha) - betaln(alpha, beta)
    return np.exp(log_binom + log_w)


def _truncate(scores: np.ndarray, state, j: int, full: float, trunc: Truncation, G: int):
    counter, done, cut = state
    ok = np.abs(scores - full) <= trunc.atol + trunc.rtol * abs(full)
    ok &= (j + 1) >= trunc.burn_in_fraction * G
    counter = np.where(ok, counter + 1, 0)
    newly = ~done & (counter > trunc.patience)
    cut = np.where(newly, j + 1, cut)
    return counter, done | newly, cut


def permutation_marginals(
    utility: Utility, perms: np.ndarray, truncation: Optional[Truncation], chunk: int = 0, use_path: bool = True
) -> tuple[np.ndarray, dict]:
    """Per-permutation marginals ``(P, G)`` (indexed by player) with truncation; also fit counts.

    Batched (JAX) utilities score ``chunk`` consecutive prefixes of every permutation
    in one ``vmap`` call and stop once all permutations are truncated; the general
    path scores one prefix at a time and stops each permutation at its truncation.
    """
    P, G = perms.shape
    full = utility.full_score
    scores = np.empty((P, G))
    state = (np.zeros(P, np.int64), np.zeros(P, bool), np.full(P, G, np.int64))
    computed = 0
    if utility.batched:
        L = min(G, chunk or max(8, -(-G // 8)))
        init, fn = utility.prefix_scores_fn(L, use_path)
        carry = init(perms)
        for start in range(0, G, L):
            block, carry = fn(perms, start, carry)
            block = np.asarray(block, np.float64)
            computed += P * min(L, G - start)
            for jj in range(start, min(start + L, G)):
                scores[:, jj] = block[:, jj - start]
                if truncation is not None:
                    state = _truncate(scores[:, jj], state, jj, full, truncation, G)
            if truncation is not None and state[1].all():
                scores[:, start + L :] = 0.0  # every row is cut before here; replaced below
                break
    else:
        cuts = np.full(P, G, np.int64)
        for p in range(P):
            rank_mask = np.zeros(G, bool)
            st = (np.zeros(1, np.int64), np.zeros(1, bool), np.full(1, G, np.int64))
            for jj in range(G):
                rank_mask[perms[p, jj]] = True
                scores[p, jj] = utility.scores(rank_mask[None])[0]
                computed += 1
                if truncation is not None:
                    st = _truncate(scores[p, jj : jj + 1], st, jj, full, truncation, G)
                    if st[1][0]:
                        scores[p, jj + 1 :] = scores[p, jj]
                        break
            cuts[p] = st[2][0]
        state = (None, None, cuts)
    cut = state[2]
    pos = np.arange(G)[None, :]
    last = np.take_along_axis(scores, np.maximum(cut - 1, 0)[:, None], axis=1)
    scores = np.where(pos < cut[:, None], scores, last)  # after the cut the score is frozen: marginal 0
    prev = np.concatenate([np.full((P, 1), utility.empty_score), scores[:, :-1]], axis=1)
    marg = scores - prev
    rows = np.zeros((P, G))
    np.put_along_axis(rows, perms, marg, axis=1)
    return rows, {"fits": float(cut.sum()), "computed_fits": float(computed)}


def _permutation_round(utility, scheme, num_units, truncation, weights, chunk, key):
    perms = sample_permutations(key, utility.num_players, num_units, scheme)
    rows, stats = permutation_marginals(utility, perms, truncation, chunk)
    if weights is not None:
        pos_weight = np.empty_like(rows)
        np.put_along_axis(pos_weight, perms, np.broadcast_to(weights, perms.shape), axis=1)
        rows = rows * pos_weight
    return rows, stats


def _resolve_stopping(stopping, max_permutations, target_stderr, rtol, max_seconds):
    if stopping is not None:
        return stopping
    return Stopping(max_samples=max_permutations, target_stderr=target_stderr, rtol=rtol, max_seconds=max_seconds)


def tmc_shapley(
    utility: Utility,
    key: jax.Array,
    *,
    max_permutations: int = 1000,
    target_stderr: Optional[float] = None,
    rtol: Optional[float] = None,
    max_seconds: Optional[float] = None,
    stopping: Optional[Stopping] = None,
    truncation: Optional[Truncation] = Truncation(),
    scheme: str = "plain",
    batch_size: int = 64,
    chunk: int = 0,
    backend=None,
    checkpoint=None,
    progress: bool = False,
    _weights: Optional[np.ndarray] = None,
    _kind: str = "tmc",
) -> Estimate:
    r"""Truncated Monte Carlo Shapley (Ghorbani & Zou, ICML 2019, Algorithm 1), an :class:`~ulam.Estimate` per player.

    :math:`\hat\phi_i = \frac{1}{T}\sum_{t} [V(P^{\pi_t}_i\cup\{i\}) - V(P^{\pi_t}_i)]` over ``T``
    permutations, with truncation (``truncation=None`` gives plain permutation
    sampling, unbiased). Stops at ``max_permutations``, or when every standard error is
    below ``target_stderr``, or when the paper's convergence test falls below ``rtol``
    (0.05 in the paper), or after ``max_seconds`` — whichever comes first.

    ``scheme``: ``"plain"``, ``"antithetic"`` or ``"stratified"`` (see module doc);
    ``batch_size`` permutations are drawn per round (one vmapped call for JAX
    utilities); ``backend=RayBackend(...)`` runs rounds on Ray with identical results;
    ``checkpoint=path`` saves every round and resumes from it.

    ``info`` holds ``fits_per_permutation`` (refits a sequential implementation
    performs), ``computed_fits`` (what the vectorized path actually evaluated),
    ``stop_reason``, ``history_deviation``, and the raw ``samples``.

    Example:
      >>> import jax, numpy as np
      >>> from ulam.valuation import jax_utility, knn, tmc_shapley
      >>> X = np.array([[0.0], [1.0], [3.0], [4.0]]); y = np.array([0, 0, 1, 1])
      >>> phi = tmc_shapley(jax_utility(knn(k=1), X, y, X, y), jax.random.key(0), max_permutations=64)
      >>> phi.mean.shape
      (4,)
    """
    _check_utility(utility)
    if not isinstance(key, jax.Array):
        raise TypeError(f"key: expected a jax.random key, got {type(key).__name__}")
    if scheme not in SCHEMES:
        raise ValueError(f"scheme: expected one of {SCHEMES}, got {scheme!r}")
    if truncation is not None and not isinstance(truncation, Truncation):
        raise TypeError(f"truncation: expected a Truncation or None, got {type(truncation).__name__}")
    G = utility.num_players
    unit = unit_size(scheme, G)
    num_units = max(1, batch_size // unit)
    stop = _resolve_stopping(stopping, max_permutations, target_stderr, rtol, max_seconds)
    fn = partial(_permutation_round, utility, scheme, num_units, truncation, _weights, chunk)
    est = run_rounds(
        fn, key, G, unit=unit, batch=num_units * unit, stopping=stop, kind=f"{_kind}-{scheme}",
        backend=backend, checkpoint=checkpoint, progress=progress,
    )
    est.info.update({"scheme": scheme, "truncation": truncation, "empty_score": utility.empty_score,
                     "full_score": utility.full_score})
    return est


def beta_shapley(utility: Utility, key: jax.Array, alpha: float = 16.0, beta: float = 1.0, **kwargs) -> Estimate:
    r"""Beta(:math:`\alpha,\beta`) Shapley (Kwon & Zou, AISTATS 2022) by reweighted permutation sampling.

    Takes :func:`tmc_shapley`'s keyword arguments; truncation defaults to ``None``
    here because Beta weights with :math:`\beta < \alpha` emphasize small prefixes
    but large ones still count. ``alpha = beta = 1`` is Data Shapley.
    """
    _check_utility(utility)
    kwargs.setdefault("truncation", None)
    weights = beta_position_weights(utility.num_players, alpha, beta)
    return tmc_shapley(utility, key, _weights=weights, _kind=f"beta-{alpha}-{beta}", **kwargs)
