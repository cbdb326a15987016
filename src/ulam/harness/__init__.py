"""The long-run harness: progress, checkpoint/resume with a run fingerprint, graceful Ctrl-C,
time budgets, stop-at-target and Ray, under two loop shapes.

- :func:`run_rounds`: independent rounds ``r`` from ``jax.random.fold_in(key, r)`` (valuation,
  replicates, SMC replicates, BO evaluations), in-process or on Ray with the same bits.
- :func:`run_chunks`: dependent chunks of a state (MCMC chains, optimizer training), one
  compiled chunk, exact budgets; :func:`train` is the Optax training loop on top of it.

Pieces: progress meters (:class:`TqdmProgress`, :class:`NoProgress`, :func:`resolve_progress`,
:func:`report_progress` from inside compiled loops), checkpoints (:func:`save_checkpoint`,
:func:`load_checkpoint`, :func:`fingerprint`), interrupts (:class:`Interrupted`).

Example:
  >>> import jax, numpy as np
  >>> from ulam import harness
  >>> res = harness.run_rounds(lambda k, n: (np.asarray(jax.random.uniform(k, (n,))), {}),
  ...                          jax.random.key(0), 10, batch_size=4, progress=False)
  >>> res.rows.shape
  (10,)
"""

from ulam.harness.checkpoint import (
    CheckpointMismatch,
    check_fingerprint,
    fingerprint,
    hash_function,
    load_checkpoint,
    save_checkpoint,
)
from ulam.harness.chunks import ChunksResult, run_chunks
from ulam.harness.interrupt import Interrupted, install_excepthook, interrupted_message, resuming_message
from ulam.harness.progress import NoProgress, TqdmProgress, active_meter, report_progress, resolve_progress
from ulam.harness.rounds import RayBackend, RoundsResult, round_sizes, run_rounds
from ulam.harness.train import NonFiniteError, TrainResult, train

__all__ = [
    "run_rounds", "RoundsResult", "round_sizes", "RayBackend",
    "run_chunks", "ChunksResult",
    "train", "TrainResult", "NonFiniteError",
    "TqdmProgress", "NoProgress", "resolve_progress", "active_meter", "report_progress",
    "save_checkpoint", "load_checkpoint", "fingerprint", "hash_function", "check_fingerprint", "CheckpointMismatch",
    "Interrupted", "install_excepthook", "interrupted_message", "resuming_message",
]
