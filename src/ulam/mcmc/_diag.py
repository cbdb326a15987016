"""The MCMC results' diagnostics: one compiled program per draws shape (``ulam.diagnostics``)."""

from __future__ import annotations

import numpy as np

from ulam import diagnostics


def summary_statistics(draws) -> dict:
    """``ulam.diagnostics.summary_statistics`` as float64 NumPy arrays."""
    out = diagnostics.summary_statistics(np.asarray(draws))
    return {k: np.asarray(v, dtype=float) for k, v in out.items()}
