r"""Score-function (REINFORCE) gradients and their baselines.

.. math::
   \nabla_\theta \mathbb E_{x\sim p_\theta}[f(x,\theta)]
   = \mathbb E\big[(f(x,\theta) - b)\,\nabla_\theta \log p_\theta(x) + \nabla_\theta f(x,\theta)\big]

for any baseline ``b`` independent of ``x`` (Williams 1992; Mohamed et al., JMLR 2020, §4).
"""

from __future__ import annotations

from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp

from ulam.estimate import Estimate
from ulam import checks
from ulam.grad import common as C

__all__ = [
    "score_function_gradient",
    "ema_baseline",
    "EMABaseline",
    "EMABaselineState",
    "optimal_baseline_ema",
    "OptimalBaselineState",
]

tree_map = jax.tree_util.tree_map


def _per_sample_pieces(f, distribution, params, xs):
    """Per-sample f value, score grad log p(x) and direct grad of f in params (vmapped)."""

    def one(x):
        score = jax.grad(lambda th: jnp.sum(C.log_prob(C.make_distribution(distribution, th), x)))(params)
        val, direct = jax.value_and_grad(lambda th: C.scalar_value(f, x, th))(params)
        return val, score, direct

    return jax.vmap(one)(xs)


@C.compiled
def score_function_gradient(
    f: Callable,
    distribution: Callable,
    params,
    key: jax.Array,
    num_samples: int,
    *,
    baseline=None,
) -> Estimate:
    r"""Score-function (REINFORCE / likelihood-ratio) estimate of :math:`\nabla_\theta E_{p_\theta}[f]`.

    Per sample :math:`g_i = (f(x_i,\theta) - b_i)\,\nabla_\theta\log p_\theta(x_i) + \nabla_\theta f(x_i,\theta)`;
    the estimate is their mean and the per-coordinate standard error their spread.

    Args:
      f: ``f(x, params) -> scalar``; need not be differentiable in ``x``.
      distribution: ``params -> distribution`` with ``sample(key, shape)`` and ``log_prob(x)``
        (numpyro distributions work; ``log_prob`` is summed over batch dimensions).
      params: pytree of float arrays, the :math:`\theta` to differentiate.
      key: a ``jax.random`` key.
      num_samples: static number of draws (>= 2).
      baseline: ``None``; a scalar constant (e.g. ``ema.value(state)`` of :func:`ema_baseline`);
        a pytree shaped like ``params`` (a per-coordinate constant); ``"leave_one_out"``
        (RLOO: ``b_i`` = mean of the other samples' ``f``, Kool et al. 2019); or ``"optimal"``, the
        variance-minimising per-coordinate baseline
        :math:`b_k = E[f\,s_k^2]/E[s_k^2]`, :math:`s = \nabla\log p` (Bengio et al. 2013, eq. for the
        binary neuron; Greensmith et al. 2004), estimated leave-one-out so the estimate stays unbiased.

    Returns:
      :class:`~ulam.Estimate` of the gradient, structured like ``params``. ``info`` holds the mean of
      ``f`` (``value``, ``value_stderr``) and the running-average sufficient statistics of the optimal
      baseline (``optimal_baseline_num``, ``optimal_baseline_den``) for :func:`optimal_baseline_ema`.
      With ``"leave_one_out"`` or ``"optimal"`` the terms are weakly dependent; the reported
      standard error treats them as independent (the usual practice; accurate for moderate n).

    Example:
      >>> import jax, numpyro.distributions as dist
      >>> from ulam.grad import score_function_gradient
      >>> est = score_function_gradient(lambda x, th: x**2, lambda th: dist.Normal(th, 1.0), 1.0,
      ...                               jax.random.key(0), 20_000, baseline="leave_one_out")
      >>> bool(abs(est.mean - 2.0) < 4 * est.stderr)
      True
    """
    n = C.check_estimator_args(f, distribution, key, num_samples)
    C.check_params(params)
    d = C.make_distribution(distribution, params)
    xs = C.stop(d.sample(key, (n,)))
    vals, scores, directs = _per_sample_pieces(f, distribution, params, xs)

    total = jnp.sum(vals)
    if baseline is None:
        coeff = lambda s: vals.reshape((n,) + (1,) * (s.ndim - 1))  # noqa: E731
        terms = tree_map(lambda s: coeff(s) * s, scores)
    elif isinstance(baseline, str):
        if baseline in ("leave_one_out", "rloo"):
            b = (total - vals) / (n - 1)
            c = vals - b
            terms = tree_map(lambda s: c.reshape((n,) + (1,) * (s.ndim - 1)) * s, scores)
        elif baseline == "optimal":

            def opt(s):
                fb = vals.reshape((n,) + (1,) * (s.ndim - 1))
                num = jnp.sum(fb * s**2, axis=0) - fb * s**2
                den = jnp.sum(s**2, axis=0) - s**2
                b = jnp.where(den > 0, num / jnp.where(den > 0, den, 1.0), 0.0)
                return (fb - b) * s

            terms = tree_map(opt, scores)
        else:  # the error lists the names (a number, None or a pytree like params also work)
            checks.one_of("baseline", baseline, ["leave_one_out", "rloo", "optimal"])
    else:
        if jax.tree_util.tree_structure(baseline) == jax.tree_util.tree_structure(0.0) and jnp.ndim(baseline) == 0:
            b = jnp.asarray(baseline)
            terms = tree_map(lambda s: (vals - b).reshape((n,) + (1,) * (s.ndim - 1)) * s, scores)
        else:
            C.check_same_structure(baseline, params, "baseline")
            terms = tree_map(
                lambda s, b: (vals.reshape((n,) + (1,) * (s.ndim - 1)) - b) * s, scores, baseline
            )
    terms = C.tree_add(terms, directs)
    info = {
        "optimal_baseline_num": tree_map(lambda s: jnp.mean(vals.reshape((n,) + (1,) * (s.ndim - 1)) * s**2, 0), scores),
        "optimal_baseline_den": tree_map(lambda s: jnp.mean(s**2, 0), scores),
    }
    return C.estimate_from_terms(terms, vals, info=info)


class EMABaselineState(NamedTuple):
    """Running average of ``f`` (``average``) and the total weight given to data so far (for debiasing).

    Example:
      >>> from ulam.grad import ema_baseline
      >>> ema = ema_baseline(0.5)
      >>> state = ema.update(ema.init(), 2.0)
      >>> float(state.average), float(state.weight), float(ema.value(state))
      (1.0, 0.5, 2.0)
    """

    average: jax.Array
    weight: jax.Array


class EMABaseline(NamedTuple):
    """An exponential-moving-average baseline as pure functions: ``init``, ``update``, ``value``.

    Example:
      >>> from ulam.grad import ema_baseline
      >>> ema = ema_baseline(0.9)
      >>> float(ema.value(ema.init()))   # no data yet: baseline 0
      0.0
    """

    def __repr__(self) -> str:
        return "EMABaseline(init, update, value)"

    init: Callable[[], EMABaselineState]
    update: Callable[[EMABaselineState, jax.Array], EMABaselineState]
    value: Callable[[EMABaselineState], jax.Array]


def ema_baseline(decay: float = 0.9) -> EMABaseline:
    r"""Exponential-moving-average baseline :math:`b_{t+1} = \beta b_t + (1-\beta)\bar f_t`, debiased.

    The value used at step ``t`` is built from earlier steps only, so the score-function estimate
    stays unbiased. (Williams 1992; the moving-average control variate of Mohamed et al. 2020, §7.)

    Example:
      >>> import jax, numpyro.distributions as dist
      >>> from ulam.grad import ema_baseline, score_function_gradient
      >>> ema = ema_baseline(0.9); state = ema.init()
      >>> for i in range(3):
      ...     est = score_function_gradient(lambda x, th: x**2, lambda th: dist.Normal(th, 1.0), 1.0,
      ...                                   jax.random.key(i), 100, baseline=ema.value(state))
      ...     state = ema.update(state, est.info["value"])
    """
    checks.in_interval("decay", decay, 0.0, 1.0, high_open=True)

    def init():
        return EMABaselineState(jnp.zeros(()), jnp.zeros(()))

    def update(state, value):
        value = jnp.mean(jnp.asarray(value))
        return EMABaselineState(decay * state.average + (1 - decay) * value, decay * state.weight + (1 - decay))

    def value(state):
        return jnp.where(state.weight > 0, state.average / jnp.where(state.weight > 0, state.weight, 1.0), 0.0)

    return EMABaseline(init, update, value)


class OptimalBaselineState(NamedTuple):
    """Running averages of :math:`E[f s^2]` and :math:`E[s^2]`, per coordinate of ``params``.

    Example:
      >>> import jax.numpy as jnp
      >>> from ulam.grad import optimal_baseline_ema
      >>> init, update, value = optimal_baseline_ema(0.9)
      >>> init(jnp.zeros(2))
      OptimalBaselineState(num=Array([0., 0.], dtype=float32), den=Array([0., 0.], dtype=float32))
    """

    num: object
    den: object


def optimal_baseline_ema(decay: float = 0.9):
    r"""Running-average estimate of the variance-minimising baseline :math:`E[f s_k^2]/E[s_k^2]`.

    This is how Bengio, Léonard & Courville (2013, §3) propose to estimate the per-unit baseline
    of the binary-neuron REINFORCE estimator. Returns ``(init(params), update(state, est), value(state))``;
    feed ``value(state)`` as ``baseline=`` (a per-coordinate pytree) and ``update`` with the returned
    Estimate (it reads ``info['optimal_baseline_num'/'den']``).

    Example:
      >>> import jax, numpyro.distributions as dist
      >>> from ulam.grad import optimal_baseline_ema, score_function_gradient
      >>> init, update, value = optimal_baseline_ema(0.5)
      >>> state = init(1.0)
      >>> est = score_function_gradient(lambda x, th: x**2, lambda th: dist.Normal(th, 1.0), 1.0,
      ...                               jax.random.key(0), 100, baseline=value(state))
      >>> state = update(state, est)
      >>> bool(value(state) > 0)   # E[f s^2] / E[s^2] for f = x^2 is positive
      True
    """
    checks.in_interval("decay", decay, 0.0, 1.0, high_open=True)

    def init(params):
        z = C.tree_zeros_like(params)
        return OptimalBaselineState(z, z)

    def update(state, est):
        num = tree_map(lambda a, b: decay * a + (1 - decay) * b, state.num, est.info["optimal_baseline_num"])
        den = tree_map(lambda a, b: decay * a + (1 - decay) * b, state.den, est.info["optimal_baseline_den"])
        return OptimalBaselineState(num, den)

    def value(state):
        return tree_map(lambda a, b: jnp.where(b > 0, a / jnp.where(b > 0, b, 1.0), 0.0), state.num, state.den)

    return init, update, value
