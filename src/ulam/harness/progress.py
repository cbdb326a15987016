"""Progress meters for long runs: pluggable objects on tqdm, and a host callback for compiled loops.

A meter is any object with ``start(total, initial=0, desc="")``, ``update(done, **stats)``
and ``close()`` (the idea of Diffrax's progress meters: the run takes a meter object,
not a flag). :class:`TqdmProgress` draws a tqdm bar with rate and ETA; :class:`NoProgress`
does nothing. :func:`resolve_progress` turns the library-wide ``progress=`` argument into a
meter: ``None`` (the default) means on when standard error is a terminal, off otherwise;
``True``/``False`` force it; a meter object is used as given.

Inside ``jit``/``lax.scan``, :func:`report_progress` sends the step count to the host
through ``jax.debug.callback``; on the host it goes to whichever meter is active
(:func:`active_meter`). The compiled function is the same whether a meter is active or
not, so switching progress on or off never recompiles.
"""

from __future__ import annotations

import contextlib
import sys
from typing import Any, Iterator, Optional

import jax

from ulam import checks

__all__ = ["TqdmProgress", "NoProgress", "resolve_progress", "active_meter", "report_progress"]


class NoProgress:
    """A meter that shows nothing (``progress=False``, or stderr is not a terminal).

    Example:
      >>> m = NoProgress(); m.start(10); m.update(5, loss=1.0); m.close()
      >>> m.done
      5
    """

    def __init__(self):
        self.done = 0

    def start(self, total: int, initial: int = 0, desc: str = "") -> None:
        self.done = initial

    def update(self, done: int, **stats: Any) -> None:
        self.done = max(self.done, int(done))

    def close(self) -> None:
        pass


class TqdmProgress:
    """A tqdm bar on stderr showing steps done of the total, the rate, the ETA and ``stats``.

    ``update(done, **stats)`` takes the absolute count done and optional numbers shown
    after the bar (e.g. the running objective or the largest standard error).

    Example:
      >>> import io
      >>> m = TqdmProgress(file=io.StringIO()); m.start(4, desc="demo"); m.update(2, se=0.1); m.close()
      >>> m.done
      2
    """

    def __init__(self, file=None, mininterval: float = 0.2, **tqdm_kwargs):
        checks.positive("mininterval", mininterval, allow_zero=True)
        self.file = file
        self.mininterval = mininterval
        self.tqdm_kwargs = tqdm_kwargs
        self.bar = None
        self.done = 0

    def start(self, total: int, initial: int = 0, desc: str = "") -> None:
        from tqdm.auto import tqdm

        self.done = initial
        self.bar = tqdm(total=total, initial=initial, desc=desc or None, file=self.file or sys.stderr,
                        mininterval=self.mininterval, dynamic_ncols=True, leave=False, **self.tqdm_kwargs)

    def update(self, done: int, **stats: Any) -> None:
        done = int(done)
        if done < self.done:  # a late report from inside a compiled loop: never move backwards
            return
        if self.bar is not None:
            if stats:
                self.bar.set_postfix({k: f"{v:.4g}" if isinstance(v, float) else v for k, v in stats.items()},
                                     refresh=False)
            self.bar.update(done - self.done)
        self.done = done

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


def resolve_progress(progress: Any = None):
    """The meter for ``progress``: ``None`` -> on iff stderr is a TTY; ``True``/``False``; or a meter object.

    Example:
      >>> type(resolve_progress(False)).__name__
      'NoProgress'
    """
    if progress is None:
        isatty = getattr(sys.stderr, "isatty", None)
        progress = bool(isatty and isatty())
    if progress is True:
        return TqdmProgress()
    if progress is False:
        return NoProgress()
    if all(callable(getattr(progress, m, None)) for m in ("start", "update", "close")):
        return progress
    raise TypeError(
        f"progress: expected None, True, False or an object with start/update/close, got {type(progress).__name__}"
    )


# host-side registry: report_progress() inside compiled code reaches the innermost active meter
_ACTIVE: list = []


@contextlib.contextmanager
def active_meter(meter) -> Iterator[Any]:
    """Make ``meter`` receive :func:`report_progress` calls from compiled code while the block runs."""
    _ACTIVE.append(meter)
    try:
        yield meter
    finally:
        _ACTIVE.remove(meter)


def _dispatch(done) -> None:
    if _ACTIVE:
        _ACTIVE[-1].update(int(done))


def report_progress(done: jax.Array, every: Optional[int] = None) -> None:
    """Inside a compiled loop: tell the active meter that ``done`` steps are done (a no-op without one).

    With ``every``, only steps where ``done % every == 0`` reach the host (a host call per step
    costs about as much as a small step). The call is part of the compiled function whether
    progress is shown or not, so toggling progress does not recompile.

    Example:
      >>> import jax, jax.numpy as jnp
      >>> @jax.jit
      ... def count(x):
      ...     def body(c, t):
      ...         report_progress(t + 1)
      ...         return c + 1.0, None
      ...     return jax.lax.scan(body, x, jnp.arange(3))[0]
      >>> m = NoProgress()
      >>> with active_meter(m):
      ...     _ = count(0.0).block_until_ready()
      >>> jax.effects_barrier(); m.done
      3
    """
    if every is None:
        jax.debug.callback(_dispatch, done)
    else:
        jax.lax.cond(done % every == 0, lambda d: jax.debug.callback(_dispatch, d), lambda d: None, done)
