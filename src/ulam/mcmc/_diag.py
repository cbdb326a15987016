"""Diagnostics used by the MCMC results: ``ulam.diagnostics`` when present, else ArviZ.

The sibling core module ``ulam.diagnostics`` is the one implementation; ArviZ is only the
fallback while that module is being written (both follow Vehtari et al. 2021).
"""

from __future__ import annotations

import numpy as np

_NAMES = ("ess_bulk", "ess_tail", "rhat", "mcse_mean")


def _core():
    try:
        from ulam import diagnostics
    except ImportError:
        return None
    if all(hasattr(diagnostics, n) for n in _NAMES):
        return diagnostics
    return None


def _arviz_per_coordinate(draws, fn):
    draws = np.asarray(draws, dtype=float)
    flat = draws.reshape(draws.shape[:2] + (-1,))
    out = np.array([float(fn(flat[:, :, i])) for i in range(flat.shape[-1])])
    return out.reshape(draws.shape[2:])


def _call(name, draws):
    core = _core()
    if core is not None:
        return np.asarray(getattr(core, name)(np.asarray(draws)), dtype=float)
    import arviz as az

    fns = {
        "ess_bulk": lambda x: az.ess(x, method="bulk"),
        "ess_tail": lambda x: az.ess(x, method="tail"),
        "rhat": lambda x: az.rhat(x, method="rank"),
        "mcse_mean": lambda x: az.mcse(x, method="mean"),
    }
    return _arviz_per_coordinate(draws, fns[name])


def ess_bulk(draws):
    return _call("ess_bulk", draws)


def ess_tail(draws):
    return _call("ess_tail", draws)


def rhat(draws):
    return _call("rhat", draws)


def mcse_mean(draws):
    return _call("mcse_mean", draws)
