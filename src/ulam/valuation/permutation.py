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
  position stratum, each with a uniformly random predecessor set of that size);
  this is proportional allocation over positions;
- ``"neyman"``: Neyman allocation over positions: a pilot of plain TMC
  permutations estimates the root-mean-square marginal at each position, and each
  permutation is then scanned to a random length with
  :math:`P(\text{length} > k) = q_k \propto` that RMS (:func:`neyman_inclusion`),
  each observed marginal weighted by :math:`1/q_k` (Horvitz-Thompson, unbiased for
  the same truncated expectation). Early positions, where marginals are large,
  get scanned in every permutation; late ones, whose marginals are small (and
  zero past the truncation), in few, so more permutations fit in the same time.

Beta Shapley (Kwon & Zou, AISTATS 2022) reweights the marginal at position ``j``
(``j - 1`` predecessors) by :math:`\binom{G-1}{j-1} w_{\alpha,\beta}(j)`,
:math:`w_{\alpha,\beta}(j) = G\,B(j+\beta-1, G-j+\alpha)/B(\alpha,\beta)`;
``Beta(1, 1)`` is Shapley.
"""

from __future__ import annotations

import dataclasses
import math
import time
from functools import partial
from typing import Optional

import jax
import numpy as np
from scipy.special import betaln, gammaln

from ulam.valuation.exact import _check_utility
from ulam import checks
from ulam.valuation.runner import Stopping, ValuationResult, run_valuation
from ulam.valuation.utility import Utility

__all__ = ["Truncation", "sample_permutations", "tmc_shapley", "beta_shapley", "beta_position_weights",
           "neyman_inclusion", "permutation_marginals"]

SCHEMES = ("plain", "antithetic", "stratified", "neyman")


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
    checks.one_of("scheme", scheme, SCHEMES)
    checks.prng_key(key)
    num_players = checks.count("num_players", num_players)
    num_units = checks.count("num_units", num_units, minimum=0)
    keys = jax.random.split(key, num_units)
    base = np.asarray(jax.vmap(lambda k: jax.random.permutation(k, num_players))(keys), np.int32)
    if scheme in ("plain", "neyman"):
        return base
    if scheme == "antithetic":
        return np.stack([base, base[:, ::-1]], axis=1).reshape(-1, num_players)
    shifts = np.stack([np.roll(base, m, axis=1) for m in range(num_players)], axis=1)
    return shifts.reshape(-1, num_players)


def unit_size(scheme: str, num_players: int) -> int:
    return {"plain": 1, "antithetic": 2, "stratified": num_players, "neyman": 1}[scheme]


def beta_position_weights(num_players: int, alpha: float, beta: float) -> np.ndarray:
    r"""Weights :math:`r_j = \binom{G-1}{j-1}\,G\,B(j+\beta-1, G-j+\alpha)/B(\alpha,\beta)`, ``j = 1..G``."""
    checks.positive("alpha", alpha)
    checks.positive("beta", beta)
    G = checks.count("num_players", num_players)
    j = np.arange(1, G + 1, dtype=np.float64)
    log_binom = gammaln(G) - gammaln(j) - gammaln(G - j + 1)
    log_w = math.log(G) + betaln(j + beta - 1, G - j + alpha) - betaln(alpha, beta)
    return np.exp(log_binom + log_w)


def _truncate(scores: np.ndarray, state, j, full: float, trunc: Truncation, G: int):
    """One truncation update at positions ``j`` (0-based, scalar or per row) for every row of ``state``."""
    counter, done, cut = state
    ok = np.abs(scores - full) <= trunc.atol + trunc.rtol * abs(full)
    ok &= (np.asarray(j) + 1) >= trunc.burn_in_fraction * G
    counter = np.where(ok, counter + 1, 0)
    newly = ~done & (counter > trunc.patience)
    cut = np.where(newly, np.asarray(j) + 1, cut)
    return counter, done | newly, cut


def _default_chunk(G: int) -> int:
    return min(G, max(4, -(-G // 16)))


def permutation_marginals(
    utility: Utility,
    perms: np.ndarray,
    truncation: Optional[Truncation],
    chunk: int = 0,
    use_path: bool = True,
    slots: int = 0,
    lengths: Optional[np.ndarray] = None,
) -> tuple[np.ndarray, dict]:
    """Per-permutation marginals ``(P, G)`` (indexed by player) with truncation; also fit counts.

    Batched (JAX) utilities keep ``slots`` permutations in flight (default: all ``P``
    up to 32): every call scores the next ``chunk`` prefixes of each slot in one
    ``vmap``, and a slot whose permutation is truncated (or complete) is refilled with
    the next permutation, so truncation saves work for each permutation separately
    instead of waiting for the slowest one of a batch. The general path scores one
    prefix at a time and stops each permutation at its truncation.

    ``lengths[t]`` (default ``G``) stops permutation ``t`` after that many positions
    whatever the truncation rule says; its later marginals are returned as 0.
    """
    P, G = perms.shape
    lengths = np.full(P, G, np.int64) if lengths is None else np.asarray(lengths, np.int64)
    full = utility.full_score
    scores = np.empty((P, G))
    state = (np.zeros(P, np.int64), np.zeros(P, bool), np.full(P, G, np.int64))
    computed = 0
    if utility.batched:
        L = min(G, chunk or _default_chunk(G))
        S = min(P, slots or 32)
        init, fn = utility.prefix_scores_fn(L, use_path)
        # longest drawn lengths first, so the last calls (few live slots) are short
        order = np.argsort(-lengths, kind="stable")
        slot_perm = order[:S].copy()  # which permutation each slot holds (-1: idle)
        slot_start = np.zeros(S, np.int64)
        carry = init(perms[slot_perm])
        queue = S
        while (slot_perm >= 0).any():
            active = slot_perm >= 0
            rows = np.where(active, slot_perm, 0)
            block, carry = fn(perms[rows], slot_start, carry)
            block = np.asarray(block, np.float64)
            idx = rows[active]
            computed += int(active.sum()) * L
            for c in range(L):
                pos = slot_start[active] + c
                live = pos < lengths[idx]
                # rows already cut (or finished) ignore later columns
                live &= ~state[1][idx]
                if not live.any():
                    continue
                r, jj = idx[live], pos[live]
                scores[r, jj] = block[active][live, c]
                if truncation is not None:
                    sub = tuple(a[r] for a in state)
                    new = _truncate(scores[r, jj], sub, jj, full, truncation, G)
                    for a, b in zip(state, new):
                        a[r] = b
            slot_start[active] += L
            finished = active & ((slot_start >= lengths[rows]) | state[1][rows])
            for s_ in np.flatnonzero(finished):
                if queue < P:
                    slot_perm[s_], slot_start[s_] = order[queue], 0  # start 0: the slot's carry is reset
                    queue += 1
                else:
                    slot_perm[s_] = -1
    else:
        cuts = np.full(P, G, np.int64)
        for p in range(P):
            rank_mask = np.zeros(G, bool)
            st = (np.zeros(1, np.int64), np.zeros(1, bool), np.full(1, G, np.int64))
            for jj in range(G):
                if jj >= lengths[p]:
                    scores[p, jj:] = scores[p, jj - 1] if jj else utility.empty_score
                    break
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
    cut = np.minimum(state[2], lengths)
    pos = np.arange(G)[None, :]
    last = np.take_along_axis(scores, np.maximum(cut - 1, 0)[:, None], axis=1)
    last = np.where(cut[:, None] > 0, last, utility.empty_score)  # nothing scanned: every marginal 0
    scores = np.where(pos < cut[:, None], scores, last)  # after the cut the score is frozen: marginal 0
    prev = np.concatenate([np.full((P, 1), utility.empty_score), scores[:, :-1]], axis=1)
    marg = scores - prev
    rows = np.zeros((P, G))
    np.put_along_axis(rows, perms, marg, axis=1)
    return rows, {"fits": float(cut.sum()), "computed_fits": float(computed)}


def _permutation_round(utility, scheme, unit, truncation, weights, chunk, key, size, inclusion=None):
    num_units = size // unit
    degenerate_before = utility.num_degenerate
    if inclusion is not None:  # "neyman": random lengths with P(length > k) = inclusion[k]
        key, key_u = jax.random.split(key)
    perms = sample_permutations(key, utility.num_players, num_units, scheme)
    lengths = None
    if inclusion is not None:
        u = np.asarray(jax.random.uniform(key_u, (perms.shape[0],)), np.float64)
        lengths = (inclusion[None, :] > u[:, None]).sum(axis=1)
        # Horvitz-Thompson: a marginal at position k is observed with probability inclusion[k]
        weights = 1.0 / inclusion if weights is None else weights / inclusion
    rows, stats = permutation_marginals(utility, perms, truncation, chunk, lengths=lengths)
    if weights is not None:
        pos_weight = np.empty_like(rows)
        np.put_along_axis(pos_weight, perms, np.broadcast_to(weights, perms.shape), axis=1)
        rows = rows * pos_weight
    stats["degenerate"] = float(utility.num_degenerate - degenerate_before)
    return rows, stats


def neyman_inclusion(position_marginals: np.ndarray, floor: float = 0.05, smooth: int = 5) -> np.ndarray:
    r"""Neyman allocation over positions: the probability :math:`q_k` of scanning position ``k``.

    A permutation scanned to a random length :math:`m` with :math:`P(m > k) = q_k`,
    each observed marginal weighted by :math:`1/q_k`, is unbiased for the (truncated)
    Shapley value; with a cost of one fit per position its summed variance
    :math:`\sum_k E[\Delta_k^2]/q_k` per unit cost is smallest for :math:`q_k \propto
    \sqrt{E[\Delta_k^2]}` (Neyman allocation; the RMS, not the standard deviation,
    because an unscanned position counts 0, not its mean). ``position_marginals``
    ``(T, G)`` are a pilot's marginals by position; the RMS is smoothed over ``smooth``
    positions, scaled so its maximum is 1, raised to its smallest non-increasing
    majorant (so that :math:`q` is a survival function) and floored at ``floor`` (every position keeps a
    chance, so the estimator stays unbiased).
    """
    pm = np.asarray(position_marginals, np.float64)
    if pm.ndim != 2 or pm.shape[0] < 2:
        raise ValueError(f"position_marginals: expected (T >= 2, G) pilot marginals, got shape {pm.shape}")
    if not 0 < floor <= 1:
        raise ValueError(f"floor: must be in (0, 1], got {floor}")
    ms = np.mean(pm**2, axis=0)
    k = max(1, int(smooth))
    ms = np.convolve(np.pad(ms, (k // 2, k - 1 - k // 2), mode="edge"), np.ones(k) / k, mode="valid")
    rms = np.sqrt(ms)
    q = rms / rms.max() if rms.max() > 0 else np.ones_like(rms)
    # the smallest non-increasing majorant: never scan a position less often than the RMS asks
    q = np.maximum.accumulate(q[::-1])[::-1]
    return np.clip(q, floor, 1.0)


def _neyman_pilot(utility, key, num, truncation, chunk):
    """Plain TMC on ``num`` permutations (a key of its own) -> inclusion probabilities by position."""
    if num < 2:
        raise ValueError(f"pilot_permutations: need at least 2 for the Neyman scheme, got {num}")
    start = time.perf_counter()
    perms = sample_permutations(jax.random.fold_in(key, 0x7FFFFFFF), utility.num_players, num, "plain")
    rows, stats = permutation_marginals(utility, perms, truncation, chunk)
    inclusion = neyman_inclusion(np.take_along_axis(rows, perms, axis=1))
    info = {"inclusion": inclusion, "pilot_seconds": time.perf_counter() - start,
            "pilot_permutations": num, "expected_length": float(inclusion.sum())}
    return inclusion, info


def _resolve_stopping(stopping, max_permutations, target_stderr, rtol, max_seconds):
    if stopping is not None:
        if not isinstance(stopping, Stopping):
            raise TypeError(checks.message("stopping", "a ulam.valuation.Stopping or None", type(stopping).__name__))
        return stopping
    max_permutations = checks.count("max_permutations", max_permutations, minimum=2)
    return Stopping(max_draws=max_permutations, target_stderr=target_stderr, rtol=rtol, max_seconds=max_seconds)


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
    force: bool = False,
    progress=None,
    pilot_permutations: int = 64,
    _weights: Optional[np.ndarray] = None,
    _kind: str = "tmc",
) -> ValuationResult:
    r"""Truncated Monte Carlo Shapley (Ghorbani & Zou, ICML 2019, Algorithm 1), an :class:`~ulam.Estimate` per player.

    :math:`\hat\phi_i = \frac{1}{T}\sum_{t} [V(P^{\pi_t}_i\cup\{i\}) - V(P^{\pi_t}_i)]` over ``T``
    permutations, with truncation (``truncation=None`` gives plain permutation
    sampling, unbiased). Stops at ``max_permutations``, or when every standard error is
    below ``target_stderr``, or when the paper's convergence test falls below ``rtol``
    (0.05 in the paper), or after ``max_seconds`` — whichever comes first. The budget is
    exact: ``max_permutations=100`` draws 100 permutations (for ``"antithetic"`` and
    ``"stratified"``, rounded down to whole pairs / blocks of ``G``); ``info["num_permutations"]``
    says how many were drawn.

    ``scheme``: ``"plain"``, ``"antithetic"``, ``"stratified"`` or ``"neyman"`` (see module
    doc; ``"neyman"`` first spends ``pilot_permutations`` plain permutations, time that
    counts against ``max_seconds``, on choosing its allocation);
    ``batch_size`` permutations are drawn per round (one vmapped call for JAX
    utilities); ``backend=RayBackend(...)`` runs rounds on Ray with identical results;
    ``checkpoint=path`` saves every round and resumes from it, refusing a checkpoint written
    by a different utility (model, data, metric), method, truncation, scheme, batch size or
    key unless ``force=True``; ``progress`` (default: on in a terminal) shows a bar with the
    largest standard error; Ctrl-C stops with one line naming the checkpoint (see
    :mod:`ulam.harness`).

    ``info`` holds ``fits_per_permutation`` (refits a sequential implementation
    performs), ``computed_fits`` (what the vectorized path actually evaluated),
    ``stop_reason``, ``history_deviation``, ``degenerate_coalitions`` (see
    :class:`~ulam.valuation.SklearnUtility`) and the raw ``samples``.

    Example:
      >>> import jax, numpy as np
      >>> from ulam.valuation import jax_utility, knn, tmc_shapley
      >>> X = np.array([[0.0], [1.0], [3.0], [4.0]]); y = np.array([0, 0, 1, 1])
      >>> phi = tmc_shapley(jax_utility(knn(k=1), X, y, X, y), jax.random.key(0), max_permutations=64)
      >>> phi.mean.shape
      (4,)
    """
    _check_utility(utility)
    checks.prng_key(key)
    batch_size = checks.count("batch_size", batch_size)
    if scheme not in SCHEMES:
        raise ValueError(f"scheme: expected one of {SCHEMES}, got {scheme!r}")
    if truncation is not None and not isinstance(truncation, Truncation):
        raise TypeError(f"truncation: expected a Truncation or None, got {type(truncation).__name__}")
    G = utility.num_players
    unit = unit_size(scheme, G)
    num_units = max(1, batch_size // unit)
    stop = _resolve_stopping(stopping, max_permutations, target_stderr, rtol, max_seconds)
    inclusion, pilot_info = None, {}
    if scheme == "neyman":
        inclusion, pilot_info = _neyman_pilot(utility, key, pilot_permutations, truncation, chunk)
        # short scans: small chunks, or most of each chunk is wasted past the drawn length
        # (a fixed size, not one from the pilot, so the compiled function is reused)
        chunk = chunk or min(G, 8)
        if stop.max_seconds is not None:  # the pilot's time counts against the budget
            stop = dataclasses.replace(stop, max_seconds=max(stop.max_seconds - pilot_info["pilot_seconds"], 0.0))
    fn = partial(_permutation_round, utility, scheme, unit, truncation, _weights, chunk, inclusion=inclusion)
    settings = {"scheme": scheme, "truncation": truncation, "chunk": chunk,
                "pilot_permutations": pilot_permutations if scheme == "neyman" else None}
    est = run_valuation(
        fn, key, utility, unit=unit, batch=num_units * unit, stopping=stop, kind=f"{_kind}-{scheme}",
        settings=settings, backend=backend, checkpoint=checkpoint, force=force, progress=progress,
    )
    est.info.update({"scheme": scheme, "truncation": truncation, "empty_score": utility.empty_score,
                     "full_score": utility.full_score, **pilot_info})
    return est


def beta_shapley(utility: Utility, key: jax.Array, alpha: float = 16.0, beta: float = 1.0, **kwargs) -> ValuationResult:
    r"""Beta(:math:`\alpha,\beta`) Shapley (Kwon & Zou, AISTATS 2022) by reweighted permutation sampling.

    Takes :func:`tmc_shapley`'s keyword arguments; truncation defaults to ``None``
    here because Beta weights with :math:`\beta < \alpha` emphasize small prefixes
    but large ones still count. ``alpha = beta = 1`` is Data Shapley.

    Example:
      >>> import jax, numpy as np
      >>> from ulam.valuation import beta_shapley, jax_utility, knn
      >>> X = np.array([[0.0], [1.0], [3.0], [4.0]]); y = np.array([0, 0, 1, 1])
      >>> beta_shapley(jax_utility(knn(k=1), X, y, X, y), jax.random.key(0), 4.0, 1.0, max_permutations=32).n
      32
    """
    _check_utility(utility)
    kwargs.setdefault("truncation", None)
    weights = beta_position_weights(utility.num_players, alpha, beta)
    return tmc_shapley(utility, key, _weights=weights, _kind=f"beta-{alpha}-{beta}", **kwargs)
