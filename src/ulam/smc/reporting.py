"""Short printouts of the SMC result types: one-line estimates, a ``__repr__`` under 15 lines
and a ``.summary()`` table (a pandas DataFrame when pandas is importable, else plain text).

The result types of :mod:`ulam.smc` (filters, smoothers, samplers, learning) call these
helpers; nothing here computes anything new from the particles.

Example:
  >>> from ulam.smc.reporting import table
  >>> print(table([{"quantity": "log-likelihood", "value": -12.5}], plain=True))
  quantity       value
  log-likelihood -12.5
"""

from __future__ import annotations

from typing import Any, Iterable

import jax
import numpy as np

from ulam.estimate import Estimate

__all__ = ["without_ess", "describe_estimate", "describe_array", "table", "result_repr"]


def without_ess(est: Estimate) -> Estimate:
    """``est`` with ``ess = None``: for estimates whose ESS has no meaning (a filter's log-likelihood,
    a PaRIS smoothing expectation), rather than the ``ess = n`` an :class:`~ulam.Estimate` defaults to.

    Example:
      >>> from ulam import Estimate
      >>> without_ess(Estimate(1.0, 0.1, 100)).ess is None
      True
    """
    est.ess = None
    return est


def _is_concrete(x) -> bool:
    return not any(isinstance(v, jax.core.Tracer) for v in jax.tree_util.tree_leaves(x))


def describe_array(x: Any) -> str:
    """``shape dtype`` of an array, or ``min .. max`` of a small concrete one; never the values in full.

    Example:
      >>> import jax.numpy as jnp
      >>> describe_array(jnp.arange(5.0))
      'float32[5] in [0, 4]'
    """
    leaves = jax.tree_util.tree_leaves(x)
    if not leaves:
        return "None"
    parts = []
    for v in leaves:
        shape = ",".join(map(str, np.shape(v)))
        dtype = str(getattr(v, "dtype", type(v).__name__))
        text = f"{dtype}[{shape}]"
        if _is_concrete(v) and np.size(v) > 0 and np.issubdtype(np.asarray(v).dtype, np.number):
            a = np.asarray(v, dtype=float)
            text += f" in [{np.nanmin(a):.4g}, {np.nanmax(a):.4g}]" if np.size(v) > 1 else f" = {float(a.ravel()[0]):.4g}"
        parts.append(text)
    return parts[0] if len(parts) == 1 else "(" + ", ".join(parts) + ")"


def describe_estimate(est: Estimate | None) -> str:
    """One line for an :class:`~ulam.Estimate`: ``mean ± se`` for a scalar, else the shape and range."""
    if est is None:
        return "None"
    if not _is_concrete(est.mean):
        return "<traced>"
    leaves = jax.tree_util.tree_leaves(est.mean)
    if len(leaves) == 1 and np.size(leaves[0]) == 1:
        m = float(np.asarray(leaves[0]).ravel()[0])
        s = float(np.asarray(jax.tree_util.tree_leaves(est.stderr)[0]).ravel()[0])
        return f"{m:.6g} ± {s:.3g}"
    return "mean " + describe_array(est.mean)


def table(rows: Iterable[dict], plain: bool = False):
    """Rows (dicts with the same keys) as a pandas DataFrame, or aligned text if pandas is missing or ``plain``."""
    rows = list(rows)
    if not plain:
        try:
            import pandas as pd

            return pd.DataFrame(rows)
        except ImportError:  # pragma: no cover - pandas is in the test environment
            pass
    cols = list(rows[0]) if rows else []
    cells = [[str(c) for c in cols]] + [[str(r.get(c, "")) for c in cols] for r in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(cols))]
    return "\n".join(" ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in cells)


def result_repr(name: str, fields: dict) -> str:
    """``Name(`` then one indented ``field: text`` line per entry, then ``)``."""
    lines = [f"{name}("] + [f"  {k}: {v}" for k, v in fields.items()] + [")"]
    return "\n".join(lines)
