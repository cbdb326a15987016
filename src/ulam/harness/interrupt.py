"""Graceful Ctrl-C for long runs: one line instead of a traceback through JAX internals.

When a run is interrupted (SIGINT / ``KeyboardInterrupt``) between or during steps, the
harness saves its checkpoint and raises :class:`Interrupted`, a ``KeyboardInterrupt``
subclass whose message is the whole story::

    interrupted at step N of M; checkpoint saved to PATH; run the same call again to resume

Choice made: the exception propagates (so ``try/except KeyboardInterrupt`` in user code
still works and a notebook cell stops), and :func:`install_excepthook` (called by every
run) wraps ``sys.excepthook`` so that, uncaught in a script, it prints only that line on
stderr; the process then ends as any Ctrl-C'd Python process does (status 130 / SIGINT).
"""

from __future__ import annotations

import sys
from typing import Optional

__all__ = ["Interrupted", "install_excepthook", "interrupted_message", "resuming_message"]


def interrupted_message(step: int, total: int, path: Optional[str]) -> str:
    """The one line shown when a run is interrupted."""
    if path is None:
        return (f"interrupted at step {step} of {total}; no checkpoint (pass checkpoint=PATH to make the run "
                "resumable)")
    return f"interrupted at step {step} of {total}; checkpoint saved to {path}; run the same call again to resume"


def resuming_message(step: int, total: int) -> str:
    """The line shown when a run resumes from its checkpoint."""
    return f"resuming at step {step} of {total}"


class Interrupted(KeyboardInterrupt):
    """A run stopped by Ctrl-C; ``step``, ``total`` and ``path`` say where, and where it was saved.

    Example:
      >>> str(Interrupted(3, 10, "run.npz"))
      'interrupted at step 3 of 10; checkpoint saved to run.npz; run the same call again to resume'
    """

    def __init__(self, step: int, total: int, path: Optional[str] = None):
        self.step, self.total, self.path = int(step), int(total), None if path is None else str(path)
        super().__init__(interrupted_message(self.step, self.total, self.path))

    def __str__(self) -> str:
        return interrupted_message(self.step, self.total, self.path)


def _hook(previous):
    def hook(exc_type, exc, tb):
        if exc_type is not None and issubclass(exc_type, Interrupted):
            print(str(exc), file=sys.stderr)
            return
        previous(exc_type, exc, tb)

    hook._ulam_interrupt_hook = True
    return hook


def install_excepthook() -> None:
    """Wrap ``sys.excepthook`` (once) so an uncaught :class:`Interrupted` prints its one line only."""
    if not getattr(sys.excepthook, "_ulam_interrupt_hook", False):
        sys.excepthook = _hook(sys.excepthook)
