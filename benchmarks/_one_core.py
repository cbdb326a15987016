"""Pin a benchmark process to one CPU core, so that "one XLA thread" is what it says.

``XLA_FLAGS="--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1"`` makes Eigen's
matrix products single-threaded but does not stop XLA:CPU from splitting a large fusion over its
thread pool: measured here, the 10^7-draw Monte Carlo fusion of ``benchmarks/integrate.py`` ran
on both cores (process CPU = 2x wall) while NumPy, the anchor, ran on one. Only the process's CPU
affinity limits XLA (the remedy given in jax-ml/jax#1539). Import this module before ``jax``;
set ``ULAM_BENCH_ALL_CORES=1`` to let every library use all cores instead. Child processes
inherit the affinity.
"""

from __future__ import annotations

import os


def _pin() -> str:
    cores = sorted(os.sched_getaffinity(0))
    if os.environ.get("ULAM_BENCH_ALL_CORES"):
        return f"all {len(cores)} cores (ULAM_BENCH_ALL_CORES=1)"
    os.sched_setaffinity(0, {cores[0]})
    return f"pinned to one core (CPU {cores[0]} of {os.cpu_count()}, `os.sched_setaffinity`)"


DESCRIPTION = _pin()
