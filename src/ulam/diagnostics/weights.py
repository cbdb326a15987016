r"""Kish's effective sample size of importance weights: :func:`kish_ess` from log weights, and
:func:`kish_ess_from_sums` for streamed sums (the one formula every weighted estimator uses).
``importance_ess`` is a deprecated alias of :func:`kish_ess`.
"""

from __future__ import annotations

import warnings
from functools import partial

import jax
import jax.numpy as jnp
from jax.scipy.special import logsumexp

from ulam.diagnostics.arrays import float_array, sample_axis_last

__all__ = ["kish_ess", "kish_ess_from_sums", "importance_ess"]


@partial(jax.jit, static_argnames=("axis",))
def _importance_ess(log_weights, axis):
    log_sum = logsumexp(log_weights, axis=axis)
    log_sum_sq = logsumexp(2.0 * log_weights, axis=axis)
    return jnp.exp(2.0 * log_sum - log_sum_sq)


def kish_ess(log_weights, axis: int = -1):
    r"""Kish's effective sample size of importance weights, from log weights.

    .. math::
        \mathrm{ESS} = \frac{(\sum_i w_i)^2}{\sum_i w_i^2}
        = \exp\big(2\,\mathrm{LSE}(\log w) - \mathrm{LSE}(2\log w)\big),

    where LSE is log-sum-exp, so no weight is ever exponentiated on its own
    (stable for log weights of any size, invariant to adding a constant).
    ESS is ``n`` for equal weights and 1 when one weight dominates (Kish 1965;
    Vehtari et al. 2024, Sec. 2). Log weights of ``-inf`` are zero weights.

    Args:
      log_weights: array of log importance weights, the samples along ``axis``.
      axis: the sample axis (other axes are batch axes).

    Returns:
      an array of the batch shape (a scalar for a 1-D input). NaN if every
      weight is zero.

    Example:
      >>> import jax.numpy as jnp
      >>> from ulam.diagnostics import kish_ess
      >>> float(kish_ess(jnp.zeros(100)))  # doctest: +ELLIPSIS
      100.0...
    """
    log_weights = float_array(log_weights, "log_weights")
    log_weights = sample_axis_last(log_weights, axis, "log_weights")
    if log_weights.shape[-1] < 1:
        raise ValueError("`log_weights` must hold at least one sample along `axis`")
    return _importance_ess(log_weights, -1)



def kish_ess_from_sums(sum_weights, sum_squared_weights):
    r"""Kish's ESS :math:`(\sum w)^2 / \sum w^2` from running sums (weights may share any scale).

    What streaming estimators keep instead of the weights (:class:`ulam.streaming.Moments`,
    :func:`ulam.importance_sampling`); :func:`kish_ess` is the same number from log weights.

    Example:
      >>> import jax.numpy as jnp
      >>> round(float(kish_ess_from_sums(jnp.float32(4.0), jnp.float32(10.0))), 4)
      1.6
    """
    return sum_weights**2 / jnp.maximum(sum_squared_weights, jnp.finfo(jnp.result_type(sum_squared_weights)).tiny)


def importance_ess(log_weights, axis: int = -1):
    """Deprecated alias of :func:`kish_ess`; emits a ``DeprecationWarning``.

    Example:
      >>> import jax.numpy as jnp, warnings
      >>> with warnings.catch_warnings():
      ...     warnings.simplefilter("ignore")
      ...     round(float(importance_ess(jnp.zeros(10))), 4)
      10.0
    """
    warnings.warn("ulam.diagnostics.importance_ess is deprecated; use ulam.diagnostics.kish_ess",
                  DeprecationWarning, stacklevel=2)
    return kish_ess(log_weights, axis)
