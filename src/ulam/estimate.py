"""The one return type of ulam: a Monte Carlo estimate with its standard error.

Every estimator in the library returns an :class:`Estimate`. It is a pytree, so it
passes through ``jax.jit``, ``jax.vmap`` and ``lax.scan`` like any array, and it
works for array-valued and pytree-valued quantities (every field then holds one
entry per coordinate). It behaves like a number where that is meaningful:
``float(est)``, ``a * est + b``, ``est1 - est2`` and ``sum([...])`` propagate the standard
error (for independent estimates; :func:`difference` and :meth:`Estimate.combine` take a
correlation). :func:`pool` merges independent estimates of the same quantity.
"""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
from jax.scipy.special import ndtri

__all__ = ["Estimate", "pool", "difference"]

_N_DEFAULT = object()  # ``ess`` not given: it defaults to ``n`` (plain Monte Carlo)


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
        Left out, it is ``n``; ``ess=None`` says it has no meaning here (e.g. a
        log-likelihood estimate), and nothing is printed for it.
      info: a dict of extra, estimator-specific diagnostics (Pareto k-hat,
        variance-reduction factor, number of dropped non-finite draws, ...).

    The confidence interval is the normal one,
    :math:`\hat\mu \pm z_{(1+\ell)/2}\,\widehat{\mathrm{se}}`.

    Arithmetic. ``a * est + b`` (``a``, ``b`` numbers or arrays) is the estimate of
    :math:`a\mu + b` with standard error :math:`|a|\,\mathrm{se}`; it keeps ``n``, ``ess``
    (a variance-equivalent ESS does not change under an affine map) and ``info``.
    ``est1 + est2``, ``est1 - est2``, ``sum([...])`` ASSUME INDEPENDENT estimates (different
    keys): :math:`\mathrm{se}^2 = \mathrm{se}_1^2 + \mathrm{se}_2^2`; for estimates from
    common draws use :func:`difference` or :meth:`combine` with their correlation. A
    combination of several estimates reports ``n`` as the total number of draws spent
    (``n1 + n2``), ``ess=None`` (no single integrand whose draws it counts) and an empty
    ``info``. ``float(est)`` works for a scalar estimate and returns the mean.

    Example:
      >>> import jax.numpy as jnp
      >>> from ulam import Estimate
      >>> est = Estimate.from_samples(jnp.array([0.9, 1.1, 1.0, 1.2, 0.8]))
      >>> lo, hi = est.ci(0.95)
      >>> bool(lo < 1.0 < hi)
      True
      >>> diff = 2 * est - Estimate(1.0, 0.1, 100)   # independent: sqrt(0.1414**2 + 0.1**2)
      >>> round(float(diff), 6), round(float(diff.stderr), 4)
      (1.0, 0.1732)
    """

    __slots__ = ("mean", "stderr", "n", "ess", "info")

    def __init__(self, mean, stderr, n, ess=_N_DEFAULT, info=None):
        self.mean = mean
        self.stderr = stderr
        self.n = n
        self.ess = n if ess is _N_DEFAULT else ess
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
        """Normal confidence interval ``(lower, upper)`` at coverage ``level``.

        Python floats for a scalar estimate (outside ``jit``); arrays (pytrees) otherwise.
        """
        if not 0.0 < level < 1.0:
            raise ValueError(f"level: expected a coverage strictly between 0 and 1, got {level}")
        z = float(ndtri(0.5 + level / 2.0))
        lower = jax.tree_util.tree_map(lambda m, s: m - z * s, self.mean, self.stderr)
        upper = jax.tree_util.tree_map(lambda m, s: m + z * s, self.mean, self.stderr)
        if self._is_concrete_scalar():
            return float(np.asarray(lower)), float(np.asarray(upper))
        return lower, upper

    # -- behaving like a number --------------------------------------------------
    def _is_concrete_scalar(self) -> bool:
        leaves = jax.tree_util.tree_leaves(self.mean)
        return (
            len(leaves) == 1
            and not isinstance(leaves[0], jax.core.Tracer)
            and np.size(leaves[0]) == 1
            and not isinstance(self.mean, (dict, list, tuple))
        )

    def __float__(self) -> float:
        leaves = jax.tree_util.tree_leaves(self.mean)
        if len(leaves) != 1 or np.size(leaves[0]) != 1 or isinstance(self.mean, (dict, list, tuple)):
            shape = np.shape(leaves[0]) if len(leaves) == 1 else f"a pytree of {len(leaves)} arrays"
            raise TypeError(
                f"Estimate: expected a scalar estimate for float(), got a mean of shape {shape}; "
                "index it first (float(est[0])) or use est.mean"
            )
        return float(np.asarray(leaves[0]).reshape(()))

    def _affine(self, scale, shift) -> "Estimate":
        """``scale * self + shift`` for numbers (or arrays) ``scale`` and ``shift``."""
        mean = jax.tree_util.tree_map(lambda m: m * scale + shift, self.mean)
        stderr = jax.tree_util.tree_map(lambda s: s * jnp.abs(scale) + 0 * jnp.asarray(shift), self.stderr)
        ess = self.ess
        if ess is not None:
            ess = jax.tree_util.tree_map(lambda e, m: jnp.broadcast_to(e, jnp.shape(m)) if jnp.ndim(e) else e,
                                         ess, mean) if jnp.ndim(scale) or jnp.ndim(shift) else ess
        return Estimate(mean, stderr, self.n, ess, self.info)

    def __add__(self, other):
        if isinstance(other, Estimate):
            return Estimate.combine([self, other], [1.0, 1.0])
        if _is_number_like(other):
            return self._affine(1.0, other)
        return NotImplemented

    def __radd__(self, other):
        if isinstance(other, (int, float)) and not isinstance(other, bool) and other == 0:
            return self  # sum([...]) starts from 0
        return self.__add__(other)

    def __sub__(self, other):
        if isinstance(other, Estimate):
            return Estimate.combine([self, other], [1.0, -1.0])
        if _is_number_like(other):
            return self._affine(1.0, -other)
        return NotImplemented

    def __rsub__(self, other):
        if _is_number_like(other):
            return self._affine(-1.0, other)
        return NotImplemented

    def __mul__(self, other):
        if isinstance(other, Estimate):
            raise TypeError(
                "Estimate * Estimate: expected a number or an array, got an Estimate; the product of two "
                "estimates has no standard error without their joint distribution -- estimate the product directly"
            )
        if _is_number_like(other):
            return self._affine(other, 0.0)
        return NotImplemented

    __rmul__ = __mul__

    def __truediv__(self, other):
        if isinstance(other, Estimate):
            raise TypeError("Estimate / Estimate: expected a number or an array, got an Estimate; "
                            "estimate the ratio directly (e.g. self-normalised importance sampling)")
        if _is_number_like(other):
            return self._affine(1.0 / jnp.asarray(other) if jnp.ndim(other) else 1.0 / other, 0.0)
        return NotImplemented

    def __neg__(self):
        return self._affine(-1.0, 0.0)

    def __pos__(self):
        return self

    @staticmethod
    def combine(estimates, coefficients, correlation=None) -> "Estimate":
        r"""The linear combination :math:`\sum_i c_i \hat\mu_i` of estimates, with its standard error.

        :math:`\mathrm{se}^2 = \sum_{ij} c_i c_j \rho_{ij}\,\mathrm{se}_i\mathrm{se}_j`, where
        ``correlation`` is the correlation matrix :math:`\rho` of the estimates (a number
        for two estimates; ``None``: independent, :math:`\rho = I`). Use the correlation of
        the paired draws when two estimates share them (common random numbers). Per
        coordinate for array-valued estimates (a matrix or number ``correlation`` applies
        to every coordinate; it may be traced). ``n`` is the total draws spent: the sum for
        independent estimates, the largest ``n`` when a correlation is given (the estimates
        share draws). ``ess`` is None, ``info`` empty.

        Example:
          >>> a, b = Estimate(1.0, 0.1, 100), Estimate(0.8, 0.1, 100)
          >>> round(float(Estimate.combine([a, b], [1, -1], correlation=0.5).stderr), 6)
          0.1
        """
        estimates = list(estimates)
        coefficients = [float(c) if isinstance(c, (int, float)) else c for c in coefficients]
        if not estimates or len(estimates) != len(coefficients):
            raise ValueError(
                f"coefficients: expected one coefficient per estimate ({len(estimates)}), got {len(coefficients)}"
            )
        for i, e in enumerate(estimates):
            if not isinstance(e, Estimate):
                raise TypeError(f"estimates[{i}]: expected an Estimate, got {type(e).__name__}")
        k = len(estimates)
        if correlation is None:
            rho = np.eye(k)
        elif jnp.ndim(correlation) == 0:
            if k != 2:
                raise ValueError(f"correlation: expected a {k}x{k} matrix for {k} estimates, got a number")
            r = correlation
            if not isinstance(r, jax.core.Tracer) and not -1.0 <= float(r) <= 1.0:
                raise ValueError(f"correlation: expected a number in [-1, 1], got {float(r)}")
            rho = [[1.0, r], [r, 1.0]]
        else:
            rho = jnp.asarray(correlation)
            if rho.shape != (k, k):
                raise ValueError(f"correlation: expected a {k}x{k} matrix, got shape {rho.shape}")
        mean = jax.tree_util.tree_map(lambda *ms: sum(c * m for c, m in zip(coefficients, ms)),
                                      *[e.mean for e in estimates])

        def var(*ss):
            return sum(coefficients[i] * coefficients[j] * rho[i][j] * ss[i] * ss[j]
                       for i in range(k) for j in range(k) if correlation is not None or i == j)

        stderr = jax.tree_util.tree_map(lambda *ss: jnp.sqrt(jnp.maximum(var(*ss), 0.0)), *[e.stderr for e in estimates])
        ns = [e.n for e in estimates]
        n = functools.reduce(jnp.maximum, ns) if correlation is not None else sum(ns)
        return Estimate(mean, stderr, n, None)

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
            None if self.ess is None else jax.tree_util.tree_map(pick, self.ess),
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
        body = _format_number(float(np.asarray(means[0]).reshape(())), float(np.asarray(errs[0]).reshape(())))
        if not ess_leaves:
            return f"{body} (n={n})"
        ess = float(np.asarray(ess_leaves[0]).ravel()[0])
        return f"{body} (n={n}, ess={ess:.0f})"
    parts = []
    for m, s in zip(means, errs):
        m, s = np.asarray(m, dtype=float).ravel(), np.asarray(s, dtype=float).ravel()
        shown = [_format_number(a, b) for a, b in zip(m[:6], s[:6])]
        if m.size > 6:
            shown.append(f"... ({m.size} values)")
        parts.append("[" + ", ".join(shown) + "]")
    if not ess_leaves:
        return f"{' '.join(parts)} (n={n})"
    ess_min = min(float(np.min(np.asarray(e))) for e in ess_leaves)
    return f"{' '.join(parts)} (n={n}, min ess={ess_min:.0f})"


def pool(estimates) -> Estimate:
    r"""Pool independent estimates of the same quantity, weighting by their ``n``.

    For estimates built from independent draws (the chunks of a sequential run,
    or the same estimator on independent keys),
    :math:`\hat\mu = \sum_j n_j \hat\mu_j / \sum_j n_j` and
    :math:`\widehat{\mathrm{se}}^2 = \sum_j (n_j / n)^2 \widehat{\mathrm{se}}_j^2`.
    ``ess`` adds up (None if any part has none).

    Example:
      >>> est = pool([Estimate(1.0, 0.2, 100), Estimate(2.0, 0.2, 100)])
      >>> float(est), round(float(est.stderr), 4), est.n
      (1.5, 0.1414, 200)
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
    if any(e.ess is None for e in estimates):
        ess = None
    else:
        ess = jax.tree_util.tree_map(lambda *es: sum(es), *[e.ess for e in estimates])
    n = sum(e.n for e in estimates)
    return Estimate(mean, jax.tree_util.tree_map(jnp.sqrt, var), n, ess)


def difference(a: Estimate, b: Estimate, correlation: float = 0.0) -> Estimate:
    r"""The estimate of :math:`\mu_a - \mu_b`, with the correlation of the two estimates.

    :math:`\mathrm{se}^2 = \mathrm{se}_a^2 + \mathrm{se}_b^2 - 2\rho\,\mathrm{se}_a\mathrm{se}_b`.
    ``correlation=0`` (default) is ``a - b`` for independent estimates; for paired estimates
    (the same draws, e.g. two integrands on one key) pass the correlation of the paired
    draws, e.g. ``np.corrcoef(f_draws, g_draws)[0, 1]``. See :meth:`Estimate.combine`.

    Example:
      >>> from ulam import Estimate, difference
      >>> d = difference(Estimate(1.0, 0.1, 100), Estimate(0.5, 0.1, 100), correlation=0.9)
      >>> round(float(d), 6), round(float(d.stderr), 4)
      (0.5, 0.0447)
    """
    plain = isinstance(correlation, (int, float)) and correlation == 0.0
    return Estimate.combine([a, b], [1.0, -1.0], correlation=None if plain else correlation)


def _is_number_like(x) -> bool:
    if isinstance(x, bool):
        return False
    if isinstance(x, (int, float, np.number)):
        return True
    return isinstance(x, (np.ndarray, jax.Array)) and (
        jnp.issubdtype(x.dtype, jnp.number) and not jnp.issubdtype(x.dtype, jnp.complexfloating)
    )

