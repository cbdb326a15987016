"""The sampling loop shared by every Monte Carlo valuation: rounds, stopping, checkpoints, progress, Ray.

Round ``r`` draws its permutations (or subsets) from ``jax.random.fold_in(key, r)``,
so the result depends only on the key and the stopping rule, not on where rounds
run: in-process by default, or as Ray tasks (:class:`RayBackend`) with the results
taken in round order and the same stopping decisions, hence the same values.

A round returns one row of per-player contributions per permutation; consecutive
``unit`` rows (an antithetic pair, a stratified block) form one independent draw,
and the standard error comes from the spread of those draws.
"""

from __future__ import annotations

import dataclasses
import math
import os
import time
import zlib
from pathlib import Path
from typing import Callable, Optional

import jax
import jax.numpy as jnp
import numpy as np

from ulam.estimate import Estimate

__all__ = ["Stopping", "RayBackend", "history_deviation", "run_rounds"]


@dataclasses.dataclass(frozen=True)
class Stopping:
    """When to stop sampling: whichever enabled rule fires first.

    Attributes:
      max_samples: hard cap on permutations (or subsets) drawn.
      target_stderr: stop once every player's standard error is at most this.
      rtol: the paper's convergence test: stop once :func:`history_deviation` over
        the last ``window`` permutations is below ``rtol`` (Ghorbani & Zou use 0.05).
      window: that test's window (100 in the paper).
      max_seconds: wall-clock budget.
      min_samples: never stop (except on ``max_samples``/``max_seconds``) before this many.
    """

    max_samples: int = 1000
    target_stderr: Optional[float] = None
    rtol: Optional[float] = None
    window: int = 100
    max_seconds: Optional[float] = None
    min_samples: int = 32

    def __post_init__(self):
        if self.max_samples < 2:
            raise ValueError(f"max_samples: need at least 2 for a standard error, got {self.max_samples}")
        if self.target_stderr is not None and not self.target_stderr > 0:
            raise ValueError(f"target_stderr: must be positive, got {self.target_stderr}")
        if self.rtol is not None and not self.rtol > 0:
            raise ValueError(f"rtol: must be positive, got {self.rtol}")
        if self.window < 2:
            raise ValueError(f"window: must be at least 2, got {self.window}")


def history_deviation(samples: np.ndarray, window: int = 100) -> float:
    r"""Ghorbani & Zou's convergence statistic on per-permutation marginals ``(T, G)``.

    With running means :math:`\bar\phi^{(t)}`, it is
    :math:`\max_{t > T - w}\ \frac{1}{G}\sum_i |\bar\phi^{(t)}_i - \bar\phi^{(T)}_i| / (|\bar\phi^{(T)}_i| + 10^{-12})`
    (1.0 while fewer than ``window`` rows exist), as in the paper's code.
    """
    T = samples.shape[0]
    if T < window:
        return 1.0
    csum = np.cumsum(samples, axis=0)
    counts = np.arange(1, T + 1)[:, None]
    last = csum[-window:] / counts[-window:]
    final = last[-1]
    return float(np.max(np.mean(np.abs(last - final) / (np.abs(final) + 1e-12), axis=1)))


class RayBackend:
    """Run rounds as Ray tasks: ``RayBackend()`` uses (or starts) a local Ray; ``RayBackend("auto")``
    or ``RayBackend("ray://host:10001")`` joins a cluster.

    ``max_in_flight`` rounds are submitted at once (default: the cluster's CPUs).
    Rounds past the stopping point are discarded, so values equal the in-process run's.
    """

    def __init__(self, address: Optional[str] = None, max_in_flight: Optional[int] = None, **init_kwargs):
        try:
            import ray  # noqa: F401
        except ImportError as err:  # pragma: no cover
            raise ImportError("RayBackend needs ray: pip install 'ulam[ray]'") from err
        self.address = address
        self.max_in_flight = max_in_flight
        self.init_kwargs = init_kwargs

    def _ensure(self):
        import ray

        if not ray.is_initialized():
            ray.init(address=self.address, **self.init_kwargs)
        if self.max_in_flight is None:
            return max(1, int(ray.cluster_resources().get("CPU", 1)))
        return self.max_in_flight

    def map_ordered(self, fn: Callable, rounds: range):
        """Yield ``fn(r)`` for ``r`` in ``rounds``, in order, computed by Ray tasks."""
        import ray

        width = self._ensure()
        fn_ref = ray.put(fn)
        remote = ray.remote(_call_round)
        it = iter(rounds)
        pending = []
        while True:
            while len(pending) < width:
                r = next(it, None)
                if r is None:
                    break
                pending.append(remote.remote(fn_ref, r))
            if not pending:
                return
            head = pending.pop(0)
            try:
                yield ray.get(head)
            except GeneratorExit:
                for ref in pending:
                    ray.cancel(ref)
                raise


def _call_round(fn, r):
    return fn(r)


def _local_map(fn, rounds):
    for r in rounds:
        yield fn(r)


def _signature(kind: str, key, num_players: int, unit: int, batch: int) -> np.ndarray:
    data = np.asarray(jax.random.key_data(key)).ravel().astype(np.int64)
    return np.concatenate([np.array([zlib.crc32(kind.encode()), num_players, unit, batch], np.int64), data])


def run_rounds(
    round_fn: Callable[[jax.Array], tuple[np.ndarray, dict]],
    key: jax.Array,
    num_players: int,
    *,
    unit: int,
    batch: int,
    stopping: Stopping,
    kind: str,
    backend=None,
    checkpoint: Optional[str | os.PathLike] = None,
    progress: bool = False,
) -> Estimate:
    """Draw rounds until ``stopping`` fires; return the per-player :class:`Estimate`.

    ``round_fn(round_key) -> (rows (batch, G), stats)`` with ``stats`` holding integer
    counters (``fits``, ``computed_fits``) that are summed over rounds.
    """
    if batch % unit:
        raise ValueError(f"batch: {batch} permutations per round is not a multiple of the unit {unit}")
    sig = _signature(kind, key, num_players, unit, batch)
    rows: list[np.ndarray] = []
    stats: dict[str, float] = {}
    done_rounds = 0
    if checkpoint is not None and Path(checkpoint).exists():
        with np.load(checkpoint) as saved:
            if not np.array_equal(saved["signature"], sig):
                raise ValueError(
                    f"checkpoint: {checkpoint} was written by a different run (method, key, players or batch differ); "
                    "delete it or pass another path"
                )
            rows = [saved["rows"]]
            done_rounds = int(saved["rounds"])
            stats = {k[6:]: float(saved[k]) for k in saved.files if k.startswith("stats_")}

    start_time = time.perf_counter()
    reason = "max_samples"
    total = sum(r.shape[0] for r in rows)

    def should_stop(all_rows: Optional[np.ndarray]) -> Optional[str]:
        if total >= stopping.max_samples:
            return "max_samples"
        if stopping.max_seconds is not None and time.perf_counter() - start_time >= stopping.max_seconds:
            return "max_seconds"
        if all_rows is None or total < max(stopping.min_samples, 2 * unit):
            return None
        if stopping.target_stderr is not None:
            units = all_rows.reshape(-1, unit, num_players).mean(axis=1)
            se = units.std(axis=0, ddof=1) / math.sqrt(units.shape[0])
            if np.max(se) <= stopping.target_stderr:
                return "target_stderr"
        if stopping.rtol is not None and history_deviation(all_rows, stopping.window) < stopping.rtol:
            return "rtol"
        return None

    bar = _Progress(progress, stopping.max_samples, total)
    mapper = backend.map_ordered if backend is not None else _local_map
    stop = should_stop(np.concatenate(rows) if rows else None)
    if stop is None:
        gen = mapper(_RoundByIndex(round_fn, key), range(done_rounds, 1 << 40))
        try:
            for new_rows, new_stats in gen:
                if not np.all(np.isfinite(new_rows)):
                    raise ValueError(
                        "metric: produced a non-finite utility during sampling; a utility must be finite on every subset"
                    )
                rows.append(np.asarray(new_rows, np.float64))
                for k, v in new_stats.items():
                    stats[k] = stats.get(k, 0.0) + float(v)
                done_rounds += 1
                total += new_rows.shape[0]
                all_rows = np.concatenate(rows)
                rows = [all_rows]
                if checkpoint is not None:
                    _save(checkpoint, all_rows, done_rounds, sig, stats)
                stop = should_stop(all_rows)
                bar.update(total, all_rows, unit, num_players)
                if stop is not None:
                    break
        finally:
            gen.close()
            bar.close()
    reason = stop
    all_rows = np.concatenate(rows)
    units = all_rows.reshape(-1, unit, num_players).mean(axis=1)
    if units.shape[0] < 2:
        raise ValueError(f"max_samples: need at least 2 independent draws of {unit} permutations for a standard error")
    mean = units.mean(axis=0)
    se = units.std(axis=0, ddof=1) / math.sqrt(units.shape[0])
    per_row_var = all_rows.var(axis=0, ddof=1)
    # ESS in independent permutations: the plain-MC count giving the same standard error
    ess = np.full(num_players, float(all_rows.shape[0]))
    np.divide(per_row_var, se**2, out=ess, where=se > 0)
    n_rows = all_rows.shape[0]
    info = {
        "stop_reason": reason,
        "num_permutations": n_rows,
        "fits_per_permutation": stats.get("fits", 0.0) / n_rows,
        "computed_fits": stats.get("computed_fits", 0.0),
        "history_deviation": history_deviation(all_rows, stopping.window),
        "seconds": time.perf_counter() - start_time,
        "samples": all_rows,
    }
    return Estimate(np.asarray(mean, np.float64), np.asarray(se, np.float64), n_rows, np.asarray(ess, np.float64), info)


class _RoundByIndex:
    """Picklable ``r -> round_fn(fold_in(key, r))`` (keys are rebuilt from raw data in Ray workers)."""

    def __init__(self, round_fn, key):
        self.round_fn = round_fn
        self.key_data = np.asarray(jax.random.key_data(key))
        self.impl = str(jax.random.key_impl(key))

    def __call__(self, r: int):
        key = jax.random.wrap_key_data(jnp.asarray(self.key_data), impl=self.impl)
        return self.round_fn(jax.random.fold_in(key, r))


def _save(path, rows, rounds, sig, stats) -> None:
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp.npz")
    np.savez(tmp, rows=rows, rounds=rounds, signature=sig, **{f"stats_{k}": v for k, v in stats.items()})
    os.replace(tmp, path)  # atomic: an interrupted write never corrupts the checkpoint


class _Progress:
    def __init__(self, enabled: bool, total: int, completed: int):
        self.bar = None
        if enabled:
            from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

            self.bar = Progress(
                TextColumn("valuation"), BarColumn(), TextColumn("{task.completed}/{task.total}"),
                TextColumn("{task.description}"), TimeElapsedColumn(), transient=True,
            )
            self.bar.start()
            self.task = self.bar.add_task("", total=total, completed=completed)

    def update(self, total, rows, unit, G):
        if self.bar is None:
            return
        units = rows.reshape(-1, unit, G).mean(axis=1)
        desc = ""
        if units.shape[0] >= 2:
            desc = f"max stderr {np.max(units.std(axis=0, ddof=1)) / math.sqrt(units.shape[0]):.3g}"
        self.bar.update(self.task, completed=total, description=desc)

    def close(self):
        if self.bar is not None:
            self.bar.stop()
