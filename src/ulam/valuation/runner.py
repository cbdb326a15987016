"""Valuation's use of the long-run harness: stopping rules, the per-player estimate, the result type.

Every Monte Carlo valuation runs as independent rounds of :func:`ulam.harness.run_rounds`:
round ``r`` draws its permutations (or subsets) from ``jax.random.fold_in(key, r)``, so the
result depends only on the key and the stopping rule, not on where rounds run (in-process,
or as Ray tasks with :class:`~ulam.harness.RayBackend`). The budget is exact: ``max_permutations=100``
draws 100 permutations (rounded down to whole blocks for the antithetic and stratified
schemes). Progress, checkpoint/resume with a fingerprint (the utility's program and data, the
method and its settings, the key) and Ctrl-C come from the harness.

A round returns one row of per-player contributions per permutation; consecutive ``unit``
rows (an antithetic pair, a stratified block) form one independent draw, and the standard
error comes from the spread of those draws.
"""

from __future__ import annotations

import dataclasses
import math
import warnings
from typing import Any, Callable, Mapping, Optional

import jax
import numpy as np

from ulam import checks
from ulam.estimate import Estimate
from ulam.harness import RayBackend, fingerprint, run_rounds

__all__ = ["Stopping", "RayBackend", "ValuationResult", "history_deviation", "run_valuation"]


@dataclasses.dataclass(frozen=True)
class Stopping:
    """When to stop sampling: whichever enabled rule fires first.

    Attributes:
      max_draws: the cap on permutations (Shapley) or subsets (Banzhaf) drawn; exact when no
        other rule fires first (rounded down to whole antithetic/stratified blocks).
      target_stderr: stop once every player's standard error is at most this.
      rtol: the paper's convergence test: stop once :func:`history_deviation` over
        the last ``window`` permutations is below ``rtol`` (Ghorbani & Zou use 0.05).
      window: that test's window (100 in the paper).
      max_seconds: wall-clock budget.
      min_draws: never stop on ``target_stderr``/``rtol`` before this many draws.

    ``max_samples``/``min_samples`` are deprecated aliases of ``max_draws``/``min_draws``.

    Example:
      >>> Stopping(max_draws=500, target_stderr=0.01).max_draws
      500
    """

    max_draws: int = 1000
    target_stderr: Optional[float] = None
    rtol: Optional[float] = None
    window: int = 100
    max_seconds: Optional[float] = None
    min_draws: int = 32
    max_samples: dataclasses.InitVar[Optional[int]] = None
    min_samples: dataclasses.InitVar[Optional[int]] = None

    def __post_init__(self, max_samples, min_samples):
        for old, new, value in (("max_samples", "max_draws", max_samples), ("min_samples", "min_draws", min_samples)):
            if value is not None:
                warnings.warn(f"Stopping: {old} is deprecated, use {new}", DeprecationWarning, stacklevel=3)
                object.__setattr__(self, new, value)
        checks.count("max_draws", self.max_draws, minimum=2)
        checks.count("min_draws", self.min_draws, minimum=0)
        checks.count("window", self.window, minimum=2)
        if self.target_stderr is not None:
            checks.positive("target_stderr", self.target_stderr)
        if self.rtol is not None:
            checks.positive("rtol", self.rtol)
        if self.max_seconds is not None:
            checks.positive("max_seconds", self.max_seconds)


def history_deviation(samples: np.ndarray, window: int = 100) -> float:
    r"""Ghorbani & Zou's convergence statistic on per-permutation marginals ``(T, G)``.

    With running means :math:`\bar\phi^{(t)}`, it is
    :math:`\max_{t > T - w}\ \frac{1}{G}\sum_i |\bar\phi^{(t)}_i - \bar\phi^{(T)}_i| / (|\bar\phi^{(T)}_i| + 10^{-12})`
    (1.0 while fewer than ``window`` rows exist), as in the paper's code.

    Example:
      >>> import numpy as np
      >>> history_deviation(np.ones((200, 3)), window=100)
      0.0
    """
    window = checks.count("window", window)
    samples = np.asarray(samples)
    if samples.ndim != 2:
        raise ValueError(checks.message("samples", "per-permutation marginals of shape (T, G)", f"shape {samples.shape}"))
    T = samples.shape[0]
    if T < window:
        return 1.0
    csum = np.cumsum(samples, axis=0)
    counts = np.arange(1, T + 1)[:, None]
    last = csum[-window:] / counts[-window:]
    final = last[-1]
    return float(np.max(np.mean(np.abs(last - final) / (np.abs(final) + 1e-12), axis=1)))


@jax.tree_util.register_pytree_node_class
class ValuationResult(Estimate):
    """An :class:`~ulam.Estimate` of every player's value, with a short header and a ranked table.

    ``info`` holds ``method``, ``num_permutations`` (or ``num_subsets``) drawn, ``stop_reason``,
    ``seconds``, ``degenerate_coalitions`` (coalitions scored as the empty set because the
    learner could not be fitted on them) and the raw per-draw ``samples``.

    Example:
      >>> import numpy as np
      >>> r = ValuationResult(np.array([0.2, 0.1]), np.array([0.01, 0.02]), 50, 50,
      ...                     {"method": "tmc-plain", "stop_reason": "budget", "num_permutations": 50})
      >>> r.summary()["rank"].tolist()
      [1, 2]
    """

    def __repr__(self) -> str:
        info = self.info
        count = info.get("num_permutations", info.get("num_subsets", self.n))
        noun = "subsets" if "num_subsets" in info else "permutations"
        head = f"{info.get('method', 'valuation')}: {count} {noun}, stopped by {info.get('stop_reason', '?')!r}"
        if info.get("degenerate_coalitions"):
            head += f", {int(info['degenerate_coalitions'])} degenerate coalitions"
        return f"{head}\n  values: {super().__repr__()}"

    __str__ = __repr__

    def plot(self, top=None, ax=None):
        """Values ranked with error bars (:func:`ulam.plots.plot_values`); returns the Axes."""
        from ulam.plots import plot_values

        return plot_values(self, top=top, ax=ax)

    def plot_convergence(self, players=None, ax=None):
        """Running values of ``players`` (default: the 3 largest) with their bands against the
        number of draws (:func:`ulam.plots.plot_running` on ``info["samples"]``); returns the Axes."""
        from ulam.plots import plot_running

        mean = np.asarray(self.mean, np.float64).ravel()
        players = np.argsort(-mean)[:3] if players is None else np.asarray(players)
        return plot_running(np.asarray(self.info["samples"])[:, players], label="value", ax=ax)

    def summary(self):
        """Players ranked by value: ``player, value, stderr, rank`` (a pandas DataFrame, or plain text)."""
        mean = np.asarray(self.mean, np.float64).ravel()
        se = np.asarray(self.stderr, np.float64).ravel()
        order = np.argsort(-mean, kind="stable")
        rank = np.empty(len(mean), int)
        rank[order] = np.arange(1, len(mean) + 1)
        try:
            import pandas as pd
        except ImportError:  # pragma: no cover
            lines = ["player      value     stderr  rank"]
            lines += [f"{i:>6} {mean[i]:>10.4g} {se[i]:>10.3g} {rank[i]:>5}" for i in order]
            return "\n".join(lines)
        df = pd.DataFrame({"player": np.arange(len(mean)), "value": mean, "stderr": se, "rank": rank})
        return df.sort_values("rank").reset_index(drop=True)


def _key_fingerprint(utility, kind: str, key, unit: int, batch: int, settings: Mapping[str, Any]):
    return fingerprint(functions={"utility": utility.identity()}, key=key,
                       settings={"method": kind, "num_players": utility.num_players, "unit": unit,
                                 "batch_size": batch, **settings})


def run_valuation(
    round_fn: Callable[[jax.Array, int], tuple[np.ndarray, dict]],
    key: jax.Array,
    utility,
    *,
    unit: int,
    batch: int,
    stopping: Stopping,
    kind: str,
    settings: Optional[Mapping[str, Any]] = None,
    backend=None,
    checkpoint=None,
    force: bool = False,
    progress: Any = None,
    count_name: str = "num_permutations",
) -> ValuationResult:
    """Draw rounds until ``stopping`` fires; return the per-player :class:`ValuationResult`.

    ``round_fn(round_key, size) -> (rows (size, G), stats)`` with ``stats`` holding counters
    (``fits``, ``computed_fits``, ``degenerate``) summed over rounds. ``settings`` (truncation,
    scheme, weights, ...) enter the checkpoint's fingerprint with the utility's identity and
    the key, so a checkpoint of another run is refused (``force=True`` resumes anyway).
    """
    G = utility.num_players
    if stopping.max_draws < 2 * unit:
        raise ValueError(checks.message(
            "max_permutations", f"at least {2 * unit} (two independent draws of {unit} for a standard error)",
            stopping.max_draws))
    fp = _key_fingerprint(utility, kind, key, unit, batch, settings or {}) if checkpoint is not None else None

    def stop(rows: np.ndarray) -> Optional[str]:
        if rows.shape[0] < max(stopping.min_draws, 2 * unit):
            return None
        if stopping.target_stderr is not None:
            units = rows.reshape(-1, unit, G).mean(axis=1)
            if np.max(units.std(axis=0, ddof=1)) / math.sqrt(units.shape[0]) <= stopping.target_stderr:
                return "target_stderr"
        if stopping.rtol is not None and history_deviation(rows, stopping.window) < stopping.rtol:
            return "rtol"
        return None

    def postfix(rows: np.ndarray) -> dict:
        units = rows.reshape(-1, unit, G).mean(axis=1)
        if units.shape[0] < 2:
            return {}
        return {"max_se": float(np.max(units.std(axis=0, ddof=1)) / math.sqrt(units.shape[0]))}

    def checked(round_key, size):
        rows, stats = round_fn(round_key, size)
        if not np.all(np.isfinite(rows)):
            raise ValueError(
                "metric: produced a non-finite utility during sampling; a utility must be finite on every subset"
            )
        return rows, stats

    res = run_rounds(checked, key, stopping.max_draws, batch_size=batch, unit=unit, stop=stop,
                     max_seconds=stopping.max_seconds, backend=backend, checkpoint=checkpoint, fingerprint=fp,
                     force=force, progress=progress, postfix=postfix, desc=kind)
    all_rows = res.rows.reshape(-1, G)
    units = all_rows.reshape(-1, unit, G).mean(axis=1)
    if units.shape[0] < 2:
        raise ValueError(f"max_permutations: need at least 2 independent draws of {unit} for a standard error")
    mean = units.mean(axis=0)
    se = units.std(axis=0, ddof=1) / math.sqrt(units.shape[0])
    per_row_var = all_rows.var(axis=0, ddof=1)
    # ESS in independent draws: the plain-MC count giving the same standard error
    ess = np.full(G, float(all_rows.shape[0]))
    np.divide(per_row_var, se**2, out=ess, where=se > 0)
    n_rows = all_rows.shape[0]
    stats = res.stats
    info = {
        "method": kind,
        "stop_reason": f"max_{count_name[4:]}" if res.stop_reason == "budget" else res.stop_reason,
        count_name: n_rows,
        "fits_per_permutation": stats.get("fits", 0.0) / n_rows,
        "computed_fits": stats.get("computed_fits", 0.0),
        "degenerate_coalitions": int(stats.get("degenerate", 0.0)),
        "history_deviation": history_deviation(all_rows, stopping.window),
        "seconds": res.seconds,
        "samples": all_rows,
    }
    return ValuationResult(np.asarray(mean, np.float64), np.asarray(se, np.float64), n_rows,
                           np.asarray(ess, np.float64), info)
