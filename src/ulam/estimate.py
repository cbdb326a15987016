"""The one return type of ulam: a Monte Carlo estimate with its standard error.

Every estimator in the library returns an :class:`Estimate`. It is a pytree, so it
passes through ``jax.jit``, ``jax.vmap`` and ``lax.scan`` like any array, and it
works for array-valued and pytree-valued quantities (every field then holds one
entry per coordinate).
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
from jax.scipy.special import ndtri

__all__ = ["Estimate", "pool"]


@jax.tree_util.register_pytree_node_class
class Estimate:
    r"""A Monte Carlo estimate: ``mean``, ``stderr``, ``n`` and ``ess``.

    Attributes:
      mean: the point estimate (an array, or a pytree of arrays).
      stderr: its estimated standard error, with the same structure as ``mean``.
      n: how many draws of the underlying random variable went into it.
      ess: effective sample size: the number of independent draws of the
        integrand that would give the same standard error (equal to ``n`` for
        plain Monte Carlo, larger for variance-reduced estimators, smaller for
        weighted or correlated draws). Same structure as ``mean`` or a scalar.
      info: a dict of extra, estimator-specific diagnostics (Pareto k-hat,
        variance-reduction factor, number of dropped non-finite draws, ...).

    The confidence interval is the normal one,
    :math:`\hat\mu \pm z_{(1+\ell)/2}\,\widehat{\mathrm{se}}`.

    Example:
      >>> import jax.numpy as jnp
      >>> from ulam import Estimate
      >>> est = Estimate.from_samples(jnp.array([0.9, 1.1, 1.0, 1.2, 0.8]))
      >>> lo, hi = est.ci(0.95)
      >>> bool(lo < 1.0 < hi)
      True
    """

    __slots__ = ("mean", "stderr", "n", "ess", "info")

    def __init__(self, mean, stderr, n, ess=None, info=None):
        self.mean = mean
        self.stderr = stderr
        self.n = n
        self.ess = n if ess is None else ess
        self.info = {} if info is None else dict(info)

    # -- pytree protocol -------------------------------------------------------
    def tree_flatten(self):
        keys = tuple(sorted(self.info))
        children = (self.mean, self.stderr, self.n, self.ess, tuple(self.info[k] for k in keys))
        return children, keys

    @classmethod
    def tree_unflatten(cls, keys, children):
        mean, stderr, n, ess, info_values = children
        obj = object.__new__(cls)
        obj.mean, obj.stderr, obj.n, obj.ess = mean, stderr, n, ess
        obj.info = dict(zip(keys, info_values))
        return obj

    # -- constructors ------------------------------------------------------------
    @classmethod
    def from_samples(cls, samples, axis: int = 0, info=None) -> "Estimate":
        """The estimate of E[X] from i.i.d. draws stacked along ``axis``.

        ``samples`` may be a pytree; each leaf is averaged along ``axis``.
        The standard error uses the unbiased sample variance.
        """
        leaves = jax.tree_util.tree_leaves(samples)
        if not leaves:
            raise ValueError("samples: expected at least one array, got an empty pytree")
        n = leaves[0].shape[axis]
        if n < 2:
            raise ValueError(f"samples: need at least 2 draws along axis {axis} for a standard error, got {n}")
        mean = jax.tree_util.tree_map(lambda x: jnp.mean(x, axis=axis), samples)
        stderr = jax.tree_util.tree_map(lambda x: jnp.std(x, axis=axis, ddof=1) / math.sqrt(n), samples)
        return cls(mean, stderr, n, n, info)

    # -- derived quantities ------------------------------------------------------
    @property
    def variance(self):
        """The estimated variance of the estimator, ``stderr**2``."""
        return jax.tree_util.tree_map(jnp.square, self.stderr)

    def ci(self, level: float = 0.95):
        """Normal confidence interval ``(lower, upper)`` at coverage ``level``."""
        if not 0.0 < level < 1.0:
            raise ValueError(f"level: must lie strictly between 0 and 1, got {level}")
        z = float(ndtri(0.5 + level / 2.0))
        lower = jax.tree_util.tree_map(lambda m, s: m - z * s, self.mean, self.stderr)
        upper = jax.tree_util.tree_map(lambda m, s: m + z * s, self.mean, self.stderr)
        return lower, upper

    def z_score(self, truth):
        """``(mean - truth) / stderr``, per coordinate."""
        return jax.tree_util.tree_map(lambda m, s, t: (m - t) / s, self.mean, self.stderr, truth)

    def __getitem__(self, index) -> "Estimate":
        """Index an array-valued estimate coordinate-wise (``est[0]``, ``est[:, 1]``)."""

        def pick(x):
            x = jnp.asarray(x)
            return x[index] if x.ndim else x

        return Estimate(
            jax.tree_util.tree_map(pick, self.mean),
            jax.tree_util.tree_map(pick, self.stderr),
            self.n,
            jax.tree_util.tree_map(pick, self.ess),
            self.info,
        )

    # -- display -------------------------------------------------------------------
    def __repr__(self) -> str:
        try:
            return _format(self)
        except Exception:  # tracers and exotic leaves: fall back to a plain repr
            return f"Estimate(mean={self.mean!r}, stderr={self.stderr!r}, n={self.n!r}, ess={self.ess!r})"

    __str__ = __repr__


def _format_number(mean: float, stderr: float) -> str:
    if not (math.isfinite(stderr) and stderr > 0):
        return f"{mean:.6g} ± {stderr:.2g}"
    # Show the mean to the precision of two significant digits of the stderr.
    digits = max(0, 1 - int(math.floor(math.log10(stderr))))
    if abs(mean) >= 1e6 or (mean != 0 and abs(mean) < 1e-4) or digits > 10:
        return f"{mean:.4e} ± {stderr:.2e}"
    return f"{mean:.{digits}f} ± {stderr:.{digits}f}"


def _format(est: Estimate) -> str:
    if isinstance(est.mean, jax.core.Tracer):
        return f"Estimate(<traced {est.mean.shape}>)"
    n = int(np.asarray(est.n))
    means, _ = jax.tree_util.tree_flatten(est.mean)
    errs = jax.tree_util.tree_leaves(est.stderr)
    ess_leaves = jax.tree_util.tree_leaves(est.ess)
    if len(means) == 1 and np.asarray(means[0]).size == 1:
        ess = float(np.asarray(ess_leaves[0]).ravel()[0]) if ess_leaves else float(n)
        body = _format_number(float(np.asarray(means[0])), float(np.asarray(errs[0])))
        return f"{body} (n={n}, ess={ess:.0f})"
    parts = []
    for m, s in zip(means, errs):
        m, s = np.asarray(m, dtype=float).ravel(), np.asarray(s, dtype=float).ravel()
        shown = [_format_number(a, b) for a, b in zip(m[:6], s[:6])]
        if m.size > 6:
            shown.append(f"... ({m.size} values)")
        parts.append("[" + ", ".join(shown) + "]")
    ess_min = min(float(np.min(np.asarray(e))) for e in ess_leaves) if ess_leaves else float(n)
    return f"{' '.join(parts)} (n={n}, min ess={ess_min:.0f})"


def pool(estimates) -> Estimate:
    r"""Pool independent estimates of the same quantity, weighting by their ``n``.

    For estimates built from independent draws (the chunks of a sequential run,
    or the same estimator on independent keys),
    :math:`\hat\mu = \sum_j n_j \hat\mu_j / \sum_j n_j` and
    :math:`\widehat{\mathrm{se}}^2 = \sum_j (n_j / n)^2 \widehat{\mathrm{se}}_j^2`.
    """
    estimates = list(estimates)
    if not estimates:
        raise ValueError("estimates: expected at least one Estimate")
    ns = [jnp.asarray(e.n, dtype=jnp.result_type(float)) for e in estimates]
    total = sum(ns)
    mean = jax.tree_util.tree_map(lambda *ms: sum(w * m for w, m in zip(ns, ms)) / total, *[e.mean for e in estimates])
    var = jax.tree_util.tree_map(
        lambda *ss: sum((w / total) ** 2 * s**2 for w, s in zip(ns, ss)), *[e.stderr for e in estimates]
    )
    ess = jax.tree_util.tree_map(lambda *es: sum(es), *[e.ess for e in estimates])
    n = sum(e.n for e in estimates)
    return Estimate(mean, jax.tree_util.tree_map(jnp.sqrt, var), n, ess)

