r"""Gradient estimators: unbiased (and a few biased) estimates of :math:`\nabla_\theta E_{x\sim p_\theta}[f(x,\theta)]`.

Every estimator returns an :class:`~ulam.Estimate` of the gradient whose ``mean`` and ``stderr``
have the structure of ``params`` (per-coordinate standard errors from the per-sample gradient
terms), and runs inside ``jax.jit`` (with ``f``, ``distribution`` and ``num_samples`` static).
The common signature is ``estimator(f, distribution, params, key, num_samples, **options)`` with
``f(x, params) -> scalar`` and ``distribution(params) -> distribution`` (numpyro distributions work).

Single-choice estimators (survey: Mohamed, Rosca, Figurnov & Mnih, JMLR 2020):
  ``score_function_gradient`` (baselines: constant, ``ema_baseline``, ``'leave_one_out'``, ``'optimal'``),
  ``pathwise_gradient``, ``implicit_pathwise_gradient``, ``measure_valued_gradient``,
  ``enumeration_gradient``, ``gumbel_softmax_gradient``, ``arm_gradient``, ``disarm_gradient``,
  ``arsm_gradient`` (categorical ARM), ``categorical_disarm_gradient`` (stick-breaking DisARM),
  ``relax_gradient``, ``rebar_gradient``.
Stochastic binary neurons (Bengio, Léonard & Courville 2013): ``binary_neuron_reinforce_gradient``,
  ``decomposition_gradient``/``stochastic_times_smooth``, ``noise_injection_gradient``/``noisy_rectifier``,
  ``straight_through_gradient``/``bernoulli_straight_through``.
Programs with a strategy per random choice (ADEV / genjax.vi): ``program_gradient``,
  ``program_surrogate``, ``program_value``, ``expectation`` and the strategies ``reparam``,
  ``reinforce``, ``enum``, ``mvd``, ``baseline(...)`` with shorthands ``normal_reparam``, ``flip_enum``, ...
What the estimators share (input checks, ``log_prob``, ``compiled``) is the public
:mod:`ulam.grad.common`, which new estimators and :mod:`ulam.vi` build on.

Example:
  >>> import jax, numpyro.distributions as dist
  >>> from ulam.grad import pathwise_gradient
  >>> est = pathwise_gradient(lambda x, th: x**2, lambda th: dist.Normal(th, 1.0), 1.0, jax.random.key(0), 1000)
  >>> bool(abs(est.mean - 2.0) < 4 * est.stderr)   # d/dth E[x^2] = 2 th
  True
"""

from ulam.grad.arm import arm_gradient, arsm_gradient, disarm_gradient
from ulam.grad.categorical_disarm import categorical_disarm_gradient, stick_breaking_logits
from ulam.grad.enumeration import enumeration_gradient, support_values
from ulam.grad.measure_valued import measure_valued_gradient
from ulam.grad.pathwise import IMPLICIT_FAMILIES, implicit_pathwise_gradient, pathwise_gradient
from ulam.grad.program import (
    Choice,
    Strategy,
    baseline,
    beta_implicit,
    categorical_enum,
    categorical_mvd,
    categorical_reinforce,
    enum,
    expectation,
    flip_enum,
    flip_mvd,
    flip_reinforce,
    gamma_implicit,
    mvd,
    normal_reinforce,
    normal_reparam,
    program_gradient,
    program_surrogate,
    program_value,
    reinforce,
    reparam,
    uniform_reparam,
)
from ulam.grad.relax import rebar_control, rebar_gradient, relax_gradient
from ulam.grad.relaxed import (
    gumbel_softmax_gradient,
    gumbel_softmax_sample,
    relaxed_bernoulli_sample,
    straight_through_gumbel_sample,
    straight_through_relaxed_bernoulli_sample,
)
from ulam.grad.score_function import (
    EMABaseline,
    EMABaselineState,
    OptimalBaselineState,
    ema_baseline,
    optimal_baseline_ema,
    score_function_gradient,
)
from ulam.grad.stochastic_neurons import (
    BINARY_UNITS,
    bernoulli_straight_through,
    binary_layer,
    binary_layer_deterministic,
    reinforce_surrogate,
    binary_neuron_reinforce_gradient,
    decomposition_gradient,
    noise_injection_gradient,
    noisy_rectifier,
    stochastic_times_smooth,
    straight_through_gradient,
)

__all__ = [
    "score_function_gradient",
    "ema_baseline",
    "EMABaseline",
    "EMABaselineState",
    "optimal_baseline_ema",
    "OptimalBaselineState",
    "pathwise_gradient",
    "implicit_pathwise_gradient",
    "IMPLICIT_FAMILIES",
    "measure_valued_gradient",
    "enumeration_gradient",
    "support_values",
    "gumbel_softmax_gradient",
    "gumbel_softmax_sample",
    "straight_through_gumbel_sample",
    "relaxed_bernoulli_sample",
    "straight_through_relaxed_bernoulli_sample",
    "arm_gradient",
    "disarm_gradient",
    "arsm_gradient",
    "categorical_disarm_gradient",
    "stick_breaking_logits",
    "relax_gradient",
    "rebar_gradient",
    "rebar_control",
    "binary_neuron_reinforce_gradient",
    "decomposition_gradient",
    "stochastic_times_smooth",
    "noise_injection_gradient",
    "noisy_rectifier",
    "straight_through_gradient",
    "bernoulli_straight_through",
    "binary_layer",
    "binary_layer_deterministic",
    "reinforce_surrogate",
    "BINARY_UNITS",
    "program_gradient",
    "program_surrogate",
    "program_value",
    "expectation",
    "Strategy",
    "Choice",
    "reparam",
    "reinforce",
    "enum",
    "mvd",
    "baseline",
    "normal_reparam",
    "normal_reinforce",
    "flip_enum",
    "flip_mvd",
    "flip_reinforce",
    "categorical_enum",
    "categorical_mvd",
    "categorical_reinforce",
    "beta_implicit",
    "gamma_implicit",
    "uniform_reparam",
]
