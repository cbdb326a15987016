r"""Sequential estimation: draw fixed-size chunks until a target standard error is met (:func:`sequential`)."""

from __future__ import annotations

from typing import Callable

import jax
import numpy as np

from ulam.estimate import Estimate, pool
from ulam import checks
from ulam.deprecation import renamed_keywords
from ulam.integrate.args import check_count

__all__ = ["sequential"]


@renamed_keywords(chunk_size="batch_size", max_n="max_samples")
def sequential(
    estimator: Callable[[jax.Array, int], Estimate],
    key: jax.Array,
    *,
    batch_size: int,
    target_stderr: float | None = None,
    target_rtol: float | None = None,
    max_samples: int,
) -> Estimate:
    r"""Draw batches until the standard error reaches a target (absolute or relative) or ``max_samples``.

    ``estimator(key, batch_size)`` is called on fresh keys (e.g.
    ``functools.partial(monte_carlo, f, p)`` — note ulam's key-then-n order) and the
    chunks are pooled (:func:`ulam.pool`). The loop stops at the first chunk where
    every coordinate has :math:`\widehat{\mathrm{se}} \le` ``target_stderr`` or
    :math:`\widehat{\mathrm{se}} \le` ``target_rtol`` :math:`\cdot|\hat\mu|`. The chunk
    size is fixed, so the estimator compiles once. ``info["converged"]`` says whether a
    target was met. (Stopping on an estimated error adds a small bias of order
    :math:`1/n`; use a large ``batch_size`` when that matters.) ``chunk_size=`` and ``max_n=``
    are deprecated aliases of ``batch_size=`` and ``max_samples=``. For one compiled loop
    over a function of (key, batch index), see :func:`ulam.streaming.stream_estimate`.

    Example:
      >>> import functools, jax, jax.numpy as jnp, numpyro.distributions as dist
      >>> from ulam import monte_carlo
      >>> est = sequential(functools.partial(monte_carlo, jnp.exp, dist.Normal(0.0, 1.0)),
      ...                  jax.random.key(0), batch_size=10_000, target_stderr=0.01, max_samples=10**7)
      >>> bool(est.info["converged"] and est.stderr <= 0.01)
      True
    """
    if not callable(estimator):
        raise TypeError(f"estimator: expected a function (key, n) -> Estimate, got {type(estimator).__name__}")
    checks.prng_key(key)
    chunk_size = check_count("batch_size", batch_size, 2)
    max_n = check_count("max_samples", max_samples, chunk_size)
    if target_stderr is None and target_rtol is None:
        raise ValueError("target_stderr, target_rtol: give at least one stopping target")
    for name, value in (("target_stderr", target_stderr), ("target_rtol", target_rtol)):
        if value is not None and not (np.isfinite(value) and value > 0):
            raise ValueError(f"{name}: must be a positive number, got {value}")
    chunks: list[Estimate] = []
    total = 0
    converged = False
    while total + chunk_size <= max_n:
        key, sub = jax.random.split(key)
        chunks.append(estimator(sub, chunk_size))
        total += chunk_size
        est = pool(chunks)
        se = np.concatenate([np.ravel(np.asarray(s)) for s in jax.tree_util.tree_leaves(est.stderr)])
        mu = np.concatenate([np.ravel(np.asarray(m)) for m in jax.tree_util.tree_leaves(est.mean)])
        ok = np.zeros_like(se, dtype=bool)
        if target_stderr is not None:
            ok |= se <= target_stderr
        if target_rtol is not None:
            ok |= se <= target_rtol * np.abs(mu)
        if np.all(ok):
            converged = True
            break
    est = pool(chunks)
    est.info = {"converged": converged, "num_chunks": len(chunks)}
    return est
