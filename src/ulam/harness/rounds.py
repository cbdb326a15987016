"""Independent rounds: the loop shape of valuation, replicates, SMC replicates and BO evaluations.

Round ``r`` computes ``round_fn(jax.random.fold_in(key, r), size_r)``, so its result depends
only on the key and its index, not on where it runs: in-process (default) or as Ray tasks
(:class:`RayBackend`), results taken in round order, with the same stopping decisions and
hence the same bits. The cap ``max_items`` is exact: rounds hold ``batch_size`` items
(whole ``unit`` blocks) and the last one only what remains. After every round the harness
checks the stopping rules (the budget, ``max_seconds``, a user predicate over the rows so
far), saves the checkpoint and updates the progress meter.
"""

from __future__ import annotations

import dataclasses
import sys
import time
from pathlib import Path
from typing import Any, Callable, Mapping, Optional

import jax
import jax.numpy as jnp
import numpy as np

from ulam import checks
from ulam.harness.checkpoint import check_fingerprint, load_checkpoint, save_checkpoint
from ulam.harness.interrupt import Interrupted, install_excepthook, resuming_message
from ulam.harness.progress import resolve_progress

__all__ = ["RayBackend", "RoundsResult", "round_sizes", "run_rounds"]


@dataclasses.dataclass
class RoundsResult:
    """What :func:`run_rounds` returns: the rows of all rounds in round order, and how the run ended.

    Attributes:
      rows: ``(num_items, ...)`` float64, the rounds' rows concatenated in round order
        (``num_items``: the items actually drawn).
      stats: per-round counters (``round_fn``'s second output) summed over rounds.
      num_rounds: rounds done (including those done before a resume).
      stop_reason: ``"budget"``, ``"max_seconds"`` or what the ``stop`` predicate returned.
      seconds: wall-clock time of this call.
      resumed_at: items already done when this call started (0 for a fresh run).
    """

    rows: np.ndarray
    stats: dict
    num_rounds: int
    stop_reason: str
    seconds: float
    resumed_at: int = 0

    @property
    def num_items(self) -> int:
        """Items drawn (rows), at most the ``max_items`` cap."""
        return int(self.rows.shape[0])

    def summary(self):
        """A one-row table of how the run ended (pandas DataFrame, or plain text without pandas)."""
        return _table({"num_items": self.num_items, "num_rounds": self.num_rounds, "stop_reason": self.stop_reason,
                       "seconds": self.seconds, "resumed_at": self.resumed_at, **self.stats})

    def __repr__(self) -> str:
        return (f"RoundsResult({self.rows.shape[0]} items in {self.num_rounds} rounds, stopped by "
                f"{self.stop_reason!r}, {self.seconds:.3g} s)")


def _table(row: dict):
    """One-row summary table: a pandas DataFrame when pandas is importable, else aligned text."""
    try:
        import pandas as pd
    except ImportError:  # pragma: no cover
        return "\n".join(f"{k:>14}  {v}" for k, v in row.items())
    return pd.DataFrame([row])


def round_sizes(num_items: int, batch_size: int, unit: int = 1) -> list[int]:
    """Items per round for an exact budget: whole ``unit`` blocks, ``batch_size`` (rounded down to
    whole blocks, at least one) per round, the last round the remainder; ``num_items`` is
    rounded down to whole blocks.

    Example:
      >>> round_sizes(100, 64)
      [64, 36]
      >>> round_sizes(100, 64, unit=8)
      [64, 32]
    """
    num_items = checks.count("num_items", num_items, minimum=0)
    batch_size = checks.count("batch_size", batch_size)
    unit = checks.count("unit", unit)
    per, total = _per_round(num_items, batch_size, unit)
    sizes = [per] * (total // per)
    if total % per:
        sizes.append(total % per)
    return sizes


def _per_round(num_items: int, batch_size: int, unit: int) -> tuple[int, int]:
    return max(unit, (batch_size // unit) * unit), (num_items // unit) * unit


class RayBackend:
    """Run rounds as Ray tasks: ``RayBackend()`` uses (or starts) a local Ray; ``RayBackend("auto")``
    or ``RayBackend("ray://host:10001")`` joins a cluster.

    ``max_in_flight`` rounds are submitted at once (default: the cluster's CPUs). Rounds
    past the stopping point are cancelled, so the result equals the in-process run's.
    Ray is imported only when a backend is made.
    """

    def __init__(self, address: Optional[str] = None, max_in_flight: Optional[int] = None, **init_kwargs):
        try:
            import ray  # noqa: F401
        except ImportError as err:  # pragma: no cover
            raise ImportError("RayBackend needs ray: pip install 'ulam[ray]'") from err
        self.address = address
        self.max_in_flight = max_in_flight
        self.init_kwargs = init_kwargs

    def _width(self) -> int:
        import ray

        if not ray.is_initialized():
            ray.init(address=self.address, **self.init_kwargs)
        if self.max_in_flight is None:
            return max(1, int(ray.cluster_resources().get("CPU", 1)))
        return self.max_in_flight

    def map_ordered(self, fn: Callable, indices):
        """Yield ``fn(r)`` for ``r`` in ``indices``, in order, computed by Ray tasks."""
        import ray

        width = self._width()
        fn_ref = ray.put(fn)
        remote = ray.remote(_call)
        it = iter(indices)
        pending = []
        try:
            while True:
                while len(pending) < width:
                    r = next(it, None)
                    if r is None:
                        break
                    pending.append(remote.remote(fn_ref, r))
                if not pending:
                    return
                yield ray.get(pending.pop(0))
        finally:
            for ref in pending:
                ray.cancel(ref)


def _call(fn, r):
    return fn(r)


def _local_map(fn, indices):
    for r in indices:
        yield fn(r)


class _RoundByIndex:
    """Picklable ``r -> round_fn(fold_in(key, r), size of round r)`` (keys rebuilt from raw data in Ray workers)."""

    def __init__(self, round_fn, key, per: int, total: int):
        self.round_fn = round_fn
        self.key_data = np.asarray(jax.random.key_data(key))
        self.impl = str(jax.random.key_impl(key))
        self.per, self.total = per, total

    def __call__(self, r: int):
        key = jax.random.wrap_key_data(jnp.asarray(self.key_data), impl=self.impl)
        return self.round_fn(jax.random.fold_in(key, r), min(self.per, self.total - r * self.per))


def run_rounds(
    round_fn: Callable[[jax.Array, int], tuple[np.ndarray, Mapping[str, float]]],
    key: jax.Array,
    max_items: int,
    *,
    batch_size: int,
    unit: int = 1,
    stop: Optional[Callable[[np.ndarray], Optional[str]]] = None,
    max_seconds: Optional[float] = None,
    backend: Any = None,
    checkpoint=None,
    fingerprint: Optional[Mapping[str, str]] = None,
    force: bool = False,
    progress: Any = None,
    postfix: Optional[Callable[[np.ndarray], Mapping[str, Any]]] = None,
    desc: str = "rounds",
) -> RoundsResult:
    """Run independent rounds until ``max_items`` items, the time budget or ``stop`` ends the run.

    The cap ``max_items`` is exact when nothing else stops the run first (rounded down to whole
    ``unit`` blocks); ``result.num_items`` says how many were drawn.

    ``round_fn(round_key, size) -> (rows, stats)``: ``rows`` is ``(size, ...)``, ``stats`` a dict of
    numbers summed over rounds. ``stop(rows_so_far)`` returns a reason string to stop early
    (e.g. a target standard error reached) or ``None``. ``checkpoint=path`` saves after every
    round and resumes from it when the file exists and its ``fingerprint`` matches (else
    :class:`~ulam.harness.CheckpointMismatch`; ``force=True`` resumes anyway). Ctrl-C raises
    :class:`~ulam.harness.Interrupted` naming the step and the checkpoint. ``progress``: see
    :func:`~ulam.harness.resolve_progress`; ``postfix(rows)`` adds numbers to the bar.

    Resuming a run with the same budget is bit-identical to an uninterrupted run; resuming
    with a larger budget is too when the first budget was a multiple of ``batch_size``.

    Example:
      >>> import jax, numpy as np
      >>> def draws(k, size):
      ...     return np.asarray(jax.random.normal(k, (size,))), {"calls": 1}
      >>> res = run_rounds(draws, jax.random.key(0), 100, batch_size=64, progress=False)
      >>> res.rows.shape, res.num_rounds, res.stats["calls"], res.stop_reason
      ((100,), 2, 2.0, 'budget')
    """
    key = checks.prng_key(key)
    if not jax.dtypes.issubdtype(key.dtype, jax.dtypes.prng_key):  # a legacy uint32[2] key: same bits, typed
        key = jax.random.wrap_key_data(key)
    checks.function("round_fn", round_fn)
    max_items = checks.count("max_items", max_items)
    batch_size = checks.count("batch_size", batch_size)
    unit = checks.count("unit", unit)
    if max_seconds is not None:
        checks.positive("max_seconds", max_seconds)
    install_excepthook()
    per, total = _per_round(max_items, batch_size, unit)  # a cap of 10**12 must not build a list
    num_rounds = -(-total // per)
    fp = dict(fingerprint or {})
    rows: list[np.ndarray] = []
    stats: dict[str, float] = {}
    done_rounds = 0
    if checkpoint is not None and Path(checkpoint).exists():
        saved, meta = load_checkpoint(checkpoint)
        check_fingerprint(meta.get("fingerprint", {}), fp, checkpoint, force)
        rows = [saved[0]] if saved and saved[0].shape[0] else []
        done_rounds = int(meta["rounds"])
        stats = {k: float(v) for k, v in meta.get("stats", {}).items()}
    done = sum(r.shape[0] for r in rows)
    resumed_at = done
    if done:
        print(resuming_message(done, total), file=sys.stderr)

    start = time.perf_counter()
    meter = resolve_progress(progress)
    reason = None
    if done >= total:
        reason = "budget"
    elif rows and stop is not None:
        reason = stop(np.concatenate(rows))
    if reason is None:
        meter.start(total, done, desc)
        mapper = backend.map_ordered if backend is not None else _local_map
        gen = mapper(_RoundByIndex(round_fn, key, per, total), range(done_rounds, num_rounds))
        try:
            for new_rows, new_stats in gen:
                merged_rows = np.concatenate(rows + [np.asarray(new_rows, np.float64)])
                merged = dict(stats)
                for k, v in new_stats.items():
                    merged[k] = merged.get(k, 0.0) + float(v)
                # one statement: Ctrl-C is checked between calls, not between these stores, so the
                # rows, counters and round count always agree when the handler below saves them
                rows, stats, done_rounds, done = [merged_rows], merged, done_rounds + 1, merged_rows.shape[0]
                if checkpoint is not None:
                    save_checkpoint(checkpoint, [rows[0]], {"rounds": done_rounds, "stats": stats, "fingerprint": fp})
                meter.update(done, **(postfix(rows[0]) if postfix is not None else {}))
                if done >= total:
                    reason = "budget"
                elif max_seconds is not None and time.perf_counter() - start >= max_seconds:
                    reason = "max_seconds"
                elif stop is not None:
                    reason = stop(rows[0])
                if reason is not None:
                    break
        except KeyboardInterrupt:
            if checkpoint is not None and rows:  # also when Ctrl-C came during a save
                save_checkpoint(checkpoint, [rows[0]], {"rounds": done_rounds, "stats": stats, "fingerprint": fp})
            raise Interrupted(done, total, checkpoint) from None
        finally:
            gen.close()
            meter.close()
    all_rows = rows[0] if rows else np.zeros((0,))
    return RoundsResult(all_rows, stats, done_rounds, reason, time.perf_counter() - start, resumed_at)
