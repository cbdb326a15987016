"""Plots people look at: estimates with error bars, paths with bands, objective traces, ranked
data values, and a running estimate converging inside its band.

matplotlib is optional (``pip install ulam[plots]``) and imported inside each function. Every
function draws on ``ax`` (a new figure's axes when ``None``) and returns the Axes, so plots
compose: ``plot_path(filt...); plot_path(smooth..., ax=ax)``. Bands are normal intervals
``mean ± z·stderr`` with ``z`` from ``level`` (0.95 by default).
"""

from __future__ import annotations

from typing import Any, Optional, Sequence

import numpy as np
from scipy.stats import norm

__all__ = ["plot_estimate", "plot_path", "plot_trace", "plot_values", "plot_running"]


def _axes(ax):
    try:
        import matplotlib.pyplot as plt
    except ImportError as err:
        raise ImportError("ulam.plots needs matplotlib: pip install 'ulam[plots]'") from err
    if ax is None:
        _, ax = plt.subplots()
    return ax


def _z(level: float) -> float:
    if not 0.0 < level < 1.0:
        raise ValueError(f"level: expected a coverage in (0, 1), got {level}")
    return float(norm.ppf(0.5 + level / 2))


def _flat(x) -> np.ndarray:
    return np.asarray(x, np.float64).ravel()


def _mean_stderr(estimate):
    """``(mean, stderr)`` of an Estimate-like object, flattened; a clear error for anything else."""
    if not (hasattr(estimate, "mean") and hasattr(estimate, "stderr")) or callable(getattr(estimate, "mean")):
        raise TypeError(f"estimate: expected a ulam Estimate (with .mean and .stderr), got {type(estimate).__name__}; "
                        "for raw numbers use plot_path(mean, stderr)")
    return _flat(estimate.mean), _flat(estimate.stderr)


def _labels(labels, size):
    if labels is not None and len(labels) != size:
        raise ValueError(f"labels: expected {size} labels (one per coordinate), got {len(labels)}")
    return labels


def plot_estimate(estimate, labels: Optional[Sequence[str]] = None, *, level: float = 0.95, truth=None,
                  ax: Any = None):
    """An array-valued :class:`~ulam.Estimate` as points with ``level`` error bars (one per coordinate).

    ``truth`` (same size) is drawn as crosses.

    Example:
      >>> import matplotlib; matplotlib.use("Agg")
      >>> import numpy as np
      >>> from ulam import Estimate
      >>> ax = plot_estimate(Estimate(np.array([1.0, 2.0]), np.array([0.1, 0.2]), 100))
      >>> len(ax.containers)
      1
    """
    ax = _axes(ax)
    mean, se = _mean_stderr(estimate)
    labels = _labels(labels, mean.size)
    x = np.arange(mean.size)
    ax.errorbar(x, mean, yerr=_z(level) * se, fmt="o", capsize=3, label=f"estimate ± {level:.0%} CI")
    if truth is not None:
        ax.plot(x, _flat(truth), "x", color="k", label="truth")
    ax.set_xticks(x)
    if labels is not None:
        ax.set_xticklabels(list(labels))
    ax.legend()
    return ax


def plot_path(mean, stderr=None, t=None, *, label: Optional[str] = None, level: float = 0.95, truth=None,
              ax: Any = None):
    """A path over time (filtering or smoothing means) with a ``mean ± z·stderr`` band.

    ``mean`` and ``stderr`` are ``(T,)`` (a posterior standard deviation gives a credible band;
    an estimator's standard error a confidence band). Call twice on one ``ax`` to compare
    filter and smoother; ``truth`` adds the true path as a dashed line.

    Example:
      >>> import matplotlib; matplotlib.use("Agg")
      >>> import numpy as np
      >>> ax = plot_path(np.sin(np.arange(10.0)), 0.1 * np.ones(10), label="filter")
      >>> len(ax.lines), len(ax.collections)
      (1, 1)
    """
    ax = _axes(ax)
    mean = _flat(mean)
    t = np.arange(mean.size) if t is None else _flat(t)
    (line,) = ax.plot(t, mean, label=label)
    if stderr is not None:
        stderr = _flat(stderr)
        if stderr.shape != mean.shape:
            raise ValueError(f"stderr: expected shape {mean.shape} like mean, got {stderr.shape}")
        half = _z(level) * stderr
        ax.fill_between(t, mean - half, mean + half, alpha=0.25, color=line.get_color())
    if truth is not None:
        ax.plot(t, _flat(truth), "--", color="k", label="truth")
    if label is not None or truth is not None:
        ax.legend()
    ax.set_xlabel("time")
    return ax


def plot_trace(values, *, window: Optional[int] = None, label: str = "objective", ax: Any = None):
    """An objective per optimization step (e.g. the ELBO of :func:`ulam.vi.fit`) and its running mean.

    ``values`` is an array, or anything with ``.values`` (a ``FitResult``); the running mean
    over ``window`` steps (default 5% of the steps) is drawn on top of the noisy trace.

    Example:
      >>> import matplotlib; matplotlib.use("Agg")
      >>> import numpy as np
      >>> ax = plot_trace(-1.0 / np.arange(1.0, 101.0), label="ELBO")
      >>> len(ax.lines)
      2
    """
    ax = _axes(ax)
    values = _flat(getattr(values, "values", values))
    steps = np.arange(1, values.size + 1)
    ax.plot(steps, values, alpha=0.35, label=label)
    if window is not None and (isinstance(window, bool) or not isinstance(window, (int, np.integer)) or window < 1):
        raise ValueError(f"window: expected an integer >= 1 (steps in the running mean), got {window!r}")
    w = window or max(1, values.size // 20)
    if values.size >= w:
        smooth = np.convolve(values, np.ones(w) / w, mode="valid")
        ax.plot(steps[w - 1:], smooth, label=f"{label} (mean of {w} steps)")
    ax.set_xlabel("step")
    ax.set_ylabel(label)
    ax.legend()
    return ax


def plot_values(estimate, *, top: Optional[int] = None, labels: Optional[Sequence[str]] = None,
                level: float = 0.95, ax: Any = None):
    """Data values (Shapley, Banzhaf, ...) ranked from the largest, as bars with ``level`` error bars.

    ``top`` keeps the ``top`` largest values.

    Example:
      >>> import matplotlib; matplotlib.use("Agg")
      >>> import numpy as np
      >>> from ulam import Estimate
      >>> ax = plot_values(Estimate(np.array([0.1, 0.3, 0.2]), np.full(3, 0.02), 50))
      >>> [t.get_text() for t in ax.get_yticklabels()]
      ['1', '2', '0']
    """
    ax = _axes(ax)
    mean, se = _mean_stderr(estimate)
    labels = _labels(labels, mean.size)
    if top is not None and (isinstance(top, bool) or not isinstance(top, (int, np.integer)) or top < 1):
        raise ValueError(f"top: expected an integer >= 1 (how many of the largest values to show), got {top!r}")
    order = np.argsort(-mean, kind="stable")[: top or mean.size]
    names = [str(i) for i in range(mean.size)] if labels is None else [str(s) for s in labels]
    y = np.arange(order.size)
    ax.barh(y, mean[order], xerr=_z(level) * se[order], capsize=2)
    ax.set_yticks(y)
    ax.set_yticklabels([names[i] for i in order])
    ax.invert_yaxis()  # the largest value on top
    ax.axvline(0.0, color="k", linewidth=0.8)
    ax.set_xlabel(f"value ± {level:.0%} CI")
    return ax


def plot_running(samples, *, truth=None, level: float = 0.95, label: str = "running mean", ax: Any = None):
    """A running Monte Carlo mean converging, with its running ``level`` band :math:`\\pm z\\,s_n/\\sqrt{n}`.

    ``samples`` are i.i.d. draws ``(n,)`` (or ``(n, k)``: one curve per column, e.g. a few players'
    marginals from a valuation's ``info["samples"]``); ``truth`` adds a horizontal line.

    Example:
      >>> import matplotlib; matplotlib.use("Agg")
      >>> import numpy as np
      >>> ax = plot_running(np.random.default_rng(0).normal(size=200), truth=0.0)
      >>> len(ax.lines), len(ax.collections)
      (2, 1)
    """
    ax = _axes(ax)
    x = np.asarray(samples, np.float64)
    x = x[:, None] if x.ndim == 1 else x.reshape(x.shape[0], -1)
    n = np.arange(1, x.shape[0] + 1)[:, None]
    mean = np.cumsum(x, axis=0) / n
    sq = np.cumsum(x**2, axis=0) / n
    var = np.maximum(sq - mean**2, 0.0) * n / np.maximum(n - 1, 1)
    half = _z(level) * np.sqrt(var / n)
    for j in range(x.shape[1]):
        tag = label if x.shape[1] == 1 else f"{label} [{j}]"
        (line,) = ax.plot(n[1:, 0], mean[1:, j], label=tag)
        ax.fill_between(n[1:, 0], (mean - half)[1:, j], (mean + half)[1:, j], alpha=0.2, color=line.get_color())
    if truth is not None:
        for v in np.atleast_1d(np.asarray(truth, np.float64)):
            ax.axhline(v, color="k", linestyle="--", linewidth=1.0)
    ax.set_xscale("log")
    ax.set_xlabel("draws")
    ax.legend()
    return ax
