"""Dependent chunks of a state: the loop shape of MCMC chains and optimizer training.

:func:`run_chunks` advances a state by ``num_steps`` applications of a pure step function,
in jitted ``lax.scan`` chunks of ``chunk_size`` steps. The chunk function is compiled once
per ``(step_fn, chunk_size)``: the last, shorter chunk runs the same program with a traced
``length`` and leaves the state unchanged past it, so the budget is exact without a second
compile. Between chunks, on the host, the harness updates the progress meter, checks the
time budget and a user ``stop`` predicate, and saves the checkpoint; resuming continues at
the saved step with the same per-step inputs, so it is bit-identical to an uninterrupted run.
"""

from __future__ import annotations

import dataclasses
import sys
import time
import weakref
from pathlib import Path
from typing import Any, Callable, Mapping, Optional

import jax
import jax.numpy as jnp
import numpy as np

from ulam import checks
from ulam.harness.checkpoint import check_fingerprint, load_checkpoint, save_checkpoint
from ulam.harness.interrupt import Interrupted, install_excepthook, resuming_message
from ulam.harness.progress import active_meter, report_progress, resolve_progress
from ulam.harness.rounds import _table

__all__ = ["ChunksResult", "run_chunks"]


@dataclasses.dataclass
class ChunksResult:
    """What :func:`run_chunks` returns.

    Attributes:
      state: the final state.
      outputs: the per-step outputs of ``step_fn`` stacked along a leading axis of length ``num_steps``.
      num_steps: steps done (equal to the budget unless ``stop_reason`` says otherwise).
      stop_reason: ``"budget"``, ``"max_seconds"`` or what ``stop`` returned.
      seconds: wall-clock time of this call.
      resumed_at: steps already done when this call started (0 for a fresh run).
    """

    state: Any
    outputs: Any
    num_steps: int
    stop_reason: str
    seconds: float
    resumed_at: int = 0

    def summary(self):
        """A one-row table of how the run ended (pandas DataFrame, or plain text without pandas)."""
        return _table({"num_steps": self.num_steps, "stop_reason": self.stop_reason, "seconds": self.seconds,
                       "resumed_at": self.resumed_at})

    def __repr__(self) -> str:
        return f"ChunksResult({self.num_steps} steps, stopped by {self.stop_reason!r}, {self.seconds:.3g} s)"


# one compiled chunk per (step_fn, chunk_size, scanned inputs or step index); dropped with step_fn
_CACHE: "weakref.WeakKeyDictionary[Callable, dict]" = weakref.WeakKeyDictionary()


def _chunk_fn(step_fn: Callable, chunk_size: int, has_xs: bool, report_every: Optional[int] = None):
    try:
        per_fn = _CACHE.setdefault(step_fn, {})
    except TypeError:  # not weak-referenceable: no cache
        per_fn = {}
    cache_key = (chunk_size, has_xs, report_every)
    if cache_key not in per_fn:

        def chunk(state, xs, start, length, *args):
            def body(carry, i):
                x = jax.tree_util.tree_map(lambda a: a[i], xs) if has_xs else start + i
                new, y = step_fn(carry, x, *args)
                # past the budget the state stays put: one program serves every chunk length
                new = jax.lax.cond(i < length, lambda: new, lambda: carry)
                if report_every is not None:  # progress from inside the chunk (whether shown or not)
                    report_progress(start + jnp.minimum(i + 1, length), every=report_every)
                return new, y

            return jax.lax.scan(body, state, jnp.arange(chunk_size, dtype=jnp.int32))

        per_fn[cache_key] = jax.jit(chunk)
    return per_fn[cache_key]


def _pad(xs, start: int, stop: int, chunk_size: int):
    def one(a):
        part = a[start:stop]
        if part.shape[0] < chunk_size:  # the last chunk: repeat its last row (masked out anyway)
            part = jnp.concatenate([part, jnp.repeat(part[-1:], chunk_size - part.shape[0], axis=0)])
        return part

    return jax.tree_util.tree_map(one, xs)


def run_chunks(
    step_fn: Callable,
    state: Any,
    num_steps: int,
    *,
    chunk_size: int,
    xs: Any = None,
    args: tuple = (),
    stop: Optional[Callable[[Any, Any, int], Optional[str]]] = None,
    max_seconds: Optional[float] = None,
    checkpoint=None,
    fingerprint: Optional[Mapping[str, str]] = None,
    force: bool = False,
    progress: Any = None,
    postfix: Optional[Callable[[Any], Mapping[str, Any]]] = None,
    desc: str = "steps",
    report_every: Optional[int] = None,
) -> ChunksResult:
    """Run ``state, y = step_fn(state, x, *args)`` exactly ``num_steps`` times, in jitted chunks
    (fewer only when a ``stop`` predicate or ``max_seconds`` the caller passed ends the run).

    ``x`` is ``xs[t]`` (a pytree with leading axis ``num_steps``, e.g. per-step keys) or, without
    ``xs``, the step index ``t`` (an int32, e.g. for ``jax.random.fold_in(key, t)``). ``args`` are
    passed to every step unchanged (data: arguments, not constants baked into the program).
    After each chunk: ``stop(state, outputs_of_chunk, steps_done)`` may return a reason to end
    early (or raise); ``max_seconds`` caps the wall time; ``checkpoint=path`` saves the state and
    outputs (and resumes from them, refusing a different ``fingerprint`` unless ``force``);
    the progress meter is updated (``postfix(outputs_of_chunk)`` adds numbers; with
    ``report_every=k`` also every ``k`` steps from inside the compiled chunk, through
    :func:`~ulam.harness.report_progress`: part of the program whether progress is shown or not,
    so toggling ``progress`` never recompiles). Ctrl-C raises
    :class:`~ulam.harness.Interrupted` after saving the last completed chunk.

    Example:
      >>> import jax.numpy as jnp
      >>> def step(s, t):
      ...     return s + t, s
      >>> res = run_chunks(step, jnp.int32(0), 10, chunk_size=4, progress=False)
      >>> int(res.state), res.outputs.shape, res.num_steps
      (45, (10,), 10)
    """
    checks.function("step_fn", step_fn)
    num_steps = checks.count("num_steps", num_steps)
    chunk_size = checks.count("chunk_size", chunk_size)
    if max_seconds is not None:
        checks.positive("max_seconds", max_seconds)
    if xs is not None:
        lengths = {np.shape(a)[0] if np.ndim(a) else -1 for a in jax.tree_util.tree_leaves(xs)}
        if lengths != {num_steps}:
            raise ValueError(checks.message("xs", f"arrays with leading axis num_steps={num_steps}",
                                            f"leading axes {sorted(lengths)}"))
    install_excepthook()
    chunk_size = min(chunk_size, num_steps)
    if report_every is not None:
        report_every = checks.count("report_every", report_every)
    fn = _chunk_fn(step_fn, chunk_size, xs is not None, report_every)
    fp = dict(fingerprint or {})
    x0 = jax.tree_util.tree_map(lambda a: a[0], xs) if xs is not None else jnp.int32(0)
    y_shape = jax.eval_shape(lambda s: step_fn(s, x0, *args)[1], state)
    outputs: list = []
    done = 0
    if checkpoint is not None and Path(checkpoint).exists():
        like_out = jax.tree_util.tree_map(lambda a: np.zeros((0, *a.shape), a.dtype), y_shape)
        (state, saved_out), meta = load_checkpoint(checkpoint, like=(state, like_out))
        check_fingerprint(meta.get("fingerprint", {}), fp, checkpoint, force)
        done = int(meta["steps"])
        if done > num_steps:
            raise ValueError(checks.message("num_steps", f"at least the {done} steps saved in {checkpoint}",
                                            num_steps, "pass a larger num_steps or another checkpoint path"))
        state = jax.tree_util.tree_map(jnp.asarray, state)
        outputs = [saved_out] if done else []
        print(resuming_message(done, num_steps), file=sys.stderr)
    resumed_at = done

    def save():
        if checkpoint is not None:
            out = _concat(outputs, y_shape)
            save_checkpoint(checkpoint, (state, out), {"steps": done, "fingerprint": fp})

    start_time = time.perf_counter()
    meter = resolve_progress(progress)
    reason = "budget" if done >= num_steps else None
    if reason is None:
        meter.start(num_steps, done, desc)
        scope = active_meter(meter)
        scope.__enter__()
        try:
            while reason is None:
                length = min(chunk_size, num_steps - done)
                xs_chunk = _pad(xs, done, done + length, chunk_size) if xs is not None else None
                new_state, ys = fn(state, xs_chunk, jnp.int32(done), jnp.int32(length), *args)
                # the next chunk needs this state: wait for it here rather than let XLA's
                # worker busy-wait on an unfinished input
                jax.block_until_ready(new_state)
                ys = jax.tree_util.tree_map(lambda a: np.asarray(a)[:length], ys)
                if stop is not None:
                    reason = stop(new_state, ys, done + length)
                outputs.append(ys)
                # one statement: Python checks for Ctrl-C between calls, not between these stores,
                # so state and done always agree when the handler below saves them
                state, done = new_state, done + length
                save()
                meter.update(done, **(postfix(ys) if postfix is not None else {}))
                if reason is None and done >= num_steps:
                    reason = "budget"
                elif reason is None and max_seconds is not None and time.perf_counter() - start_time >= max_seconds:
                    reason = "max_seconds"
        except KeyboardInterrupt:
            if checkpoint is not None:  # also when Ctrl-C came during a save: the file then matches `done`
                del outputs[len(outputs) - _extra_chunks(outputs, done):]
                save()
            raise Interrupted(done, num_steps, checkpoint) from None
        finally:
            jax.effects_barrier()  # in-chunk reports land before the meter closes
            scope.__exit__(None, None, None)
            meter.close()
    return ChunksResult(state, _concat(outputs, y_shape), done, reason, time.perf_counter() - start_time, resumed_at)


def _extra_chunks(outputs: list, done: int) -> int:
    """Chunks appended to ``outputs`` whose step count was not yet added to ``done`` (0 or 1)."""
    leaves = [jax.tree_util.tree_leaves(o) for o in outputs]
    if not leaves or not leaves[0]:
        return 0
    return 1 if sum(ls[0].shape[0] for ls in leaves) > done else 0


def _concat(outputs: list, y_shape):
    if not outputs:
        return jax.tree_util.tree_map(lambda a: np.zeros((0, *a.shape), a.dtype), y_shape)
    return jax.tree_util.tree_map(lambda *a: np.concatenate(a), *outputs)
