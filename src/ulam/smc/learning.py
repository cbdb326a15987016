r"""Parameter learning with smoothed additive functionals: score ascent and Markov score climbing.

* **Maximum likelihood by stochastic approximation.** By Fisher's identity the
  score is a smoothing expectation of an additive functional,

  .. math:: \nabla_\theta \log p_\theta(y_{0:T-1}) = \mathbb E_\theta\Big[
     \nabla_\theta\log \mu_\theta(X_0) g_\theta(X_0, y_0)
     + \sum_{t\ge1} \nabla_\theta \log m_\theta(X_{t-1}, X_t) g_\theta(X_t, y_t)
     \,\Big|\, y_{0:T-1}\Big],

  estimated by PaRIS (fresh each update) or PPG (one conditional-SMC PaRIS
  pass per update, the reference path carried from one update to the next:
  Markovian stochastic approximation, Cardoso et al. 2023, §4). The gradients
  of the model's log-densities come from ``jax.grad`` of ``model_fn(theta)``.
* **Markov score climbing** (Naesseth, Lindsten & Blei 2020) fits a
  variational law :math:`q_\lambda(x_{0:T-1})` by minimizing
  :math:`\mathrm{KL}(p\,\|\,q_\lambda)`; the gradient
  :math:`-\mathbb E_p[\nabla_\lambda \log q_\lambda(X_{0:T-1})]` is additive when
  :math:`q_\lambda` factorizes over time, and PPG estimates it (Cardoso et al. 2023).

Updates are :math:`\theta_{k+1} = \theta_k + \gamma_k \hat s_k` with
:math:`\gamma_k` = ``step_size(k)`` (or an Optax transform applied to
:math:`-\hat s_k`).

Example:
  >>> import jax, jax.numpy as jnp
  >>> from ulam.smc import LinearGaussianModel, linear_gaussian_ssm, simulate, score_ascent
  >>> def model_fn(a):
  ...     return linear_gaussian_ssm(LinearGaussianModel.scalar(a, 0.6, 1.0, 1.0, p0=1.0))
  >>> _, y = simulate(jax.random.key(0), model_fn(0.9), 50)
  >>> out = score_ascent(jax.random.key(1), model_fn, 0.5, y, 32, num_steps=20, step_size=0.01)
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple, Optional

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from ulam import checks
from ulam.smc.reporting import describe_array, result_repr, table
from ulam.smc.filtering import check_inputs
from ulam.smc.models import Bootstrap, fill_missing, is_missing
from ulam.smc.paris import forward_pass, initial_reference, paris_method, ppg_step

__all__ = ["LearningResult", "score_ascent", "markov_score_climbing", "fisher_score_functionals"]


class LearningResult(NamedTuple):
    """Learning trace: ``params`` after each update (leaves ``(num_steps, ...)``), the estimated
    ``scores`` (same shapes), ``final_params`` and the final PPG ``reference`` path (leaves ``(T, ...)``).

    Example:
      >>> import jax
      >>> from ulam.smc import LinearGaussianModel, linear_gaussian_ssm, simulate, score_ascent
      >>> model_fn = lambda a: linear_gaussian_ssm(LinearGaussianModel.scalar(a, 0.6, 1.0, 1.0, p0=1.0))
      >>> _, y = simulate(jax.random.key(0), model_fn(0.9), 8)
      >>> r = score_ascent(jax.random.key(1), model_fn, 0.5, y, 8, num_steps=2)
      >>> r.params.shape, r.scores.shape
      ((2,), (2,))
    """

    params: Any
    scores: Any
    final_params: Any
    reference: Any

    def __repr__(self) -> str:
        return result_repr(
            "LearningResult",
            {
                "steps": jax.tree_util.tree_leaves(self.params)[0].shape[0],
                "final_params": describe_array(self.final_params),
                "last score": describe_array(jax.tree_util.tree_map(lambda v: v[-1], self.scores)),
            },
        )

    def summary(self, plain: bool = False):
        """The final parameters and the last score, one row per entry."""
        rows = []
        for j, (p, sc) in enumerate(zip(jax.tree_util.tree_leaves(self.final_params), jax.tree_util.tree_leaves(self.scores))):
            p, sc = np.asarray(p, dtype=float).ravel(), np.asarray(sc[-1], dtype=float).ravel()
            rows += [{"param": f"{j}[{i}]", "final value": p[i], "last score": sc[i]} for i in range(min(p.size, 20))]
        return table(rows, plain=plain)


def fisher_score_functionals(model_fn: Callable, theta):
    r"""``(initial_fn, additive_fn)`` whose smoothed sum is the score :math:`\nabla_\theta\log p_\theta(y)`.

    ``model_fn(theta)`` must return a per-particle :class:`StateSpaceModel` with
    ``initial_log_prob`` and ``transition_log_prob``. Missing observations add no term.

    Example:
      >>> import jax
      >>> from ulam.smc import LinearGaussianModel, linear_gaussian_ssm, fisher_score_functionals
      >>> model_fn = lambda a: linear_gaussian_ssm(LinearGaussianModel.scalar(a, 0.6, 1.0, 1.0, p0=1.0))
      >>> initial_fn, additive_fn = fisher_score_functionals(model_fn, 0.5)
      >>> round(float(additive_fn(1.0, 0.5, 0.0)), 4)  # d/da log N(0.5; a * 1.0, 0.36) at a = 0.5
      0.0
    """

    def obs_term(th, x, y):
        lg = model_fn(th).observation_log_prob(x, fill_missing(y))
        return jnp.where(is_missing(y), 0.0, lg)

    def initial_fn(x0, y0):
        return jax.grad(lambda th: model_fn(th).initial_log_prob(x0) + obs_term(th, x0, y0))(theta)

    def additive_fn(x_prev, x, y):
        return jax.grad(lambda th: model_fn(th).transition_log_prob(x_prev, x) + obs_term(th, x, y))(theta)

    return initial_fn, additive_fn


def _step_size_fn(step_size):
    if callable(step_size):
        return step_size
    gamma = float(checks.positive("step_size", step_size, do="or pass a function k -> gamma_k"))
    return lambda k: gamma / jnp.sqrt(k + 1.0)


def _ascent(key, theta0, make, observations, num_particles, *, num_steps, step_size, estimator, optimizer,
            num_backward, backward, reference, ssm0):
    checks.prng_key(key)
    checks.one_of("estimator", estimator, ("ppg", "paris"))
    checks.count("num_steps", num_steps)
    checks.count("num_backward", num_backward)
    check_inputs(Bootstrap(ssm0), observations, num_particles)
    gamma = _step_size_fn(step_size)
    method = paris_method(ssm0, backward, num_particles, Bootstrap(ssm0))
    k_ref, k_run = jax.random.split(key)
    if reference is None:
        reference = initial_reference(k_ref, ssm0, observations, num_particles, num_backward=num_backward,
                                      backward=method)
    opt_state = optimizer.init(theta0) if optimizer is not None else None

    def body(carry, inputs):
        theta, ref, opt_state = carry
        k, step = inputs
        ssm, initial_fn, additive_fn = make(theta)
        # A bound computed from traced parameters is unknown at trace time: fall back to exact.
        m = method
        if ssm.transition_log_bound is None:
            m = {"rejection": "exact", "hybrid": "mcmc"}.get(method, method)
        if estimator == "ppg":
            score, ref, _ = ppg_step(k, ssm, observations, ref, num_particles, additive_fn, initial_fn=initial_fn,
                                     num_backward=num_backward, backward=m)
        else:
            _, lw, tau, *_ = forward_pass(k, ssm, Bootstrap(ssm), observations, num_particles, additive_fn=additive_fn,
                                      initial_fn=initial_fn, num_backward=num_backward, backward_method=m, lag=0)
            w = jax.nn.softmax(lw)
            score = jax.tree_util.tree_map(lambda v: jnp.tensordot(w, v, axes=(0, 0)), tau)
        if optimizer is None:
            theta = jax.tree_util.tree_map(lambda p, s: p + gamma(step) * s, theta, score)
        else:
            import optax

            updates, opt_state = optimizer.update(jax.tree_util.tree_map(jnp.negative, score), opt_state, theta)
            theta = optax.apply_updates(theta, updates)
        return (theta, ref, opt_state), (theta, score)

    steps = jnp.arange(num_steps, dtype=jnp.float32)
    (theta, ref, _), (thetas, scores) = lax.scan(
        body, (theta0, reference, opt_state), (jax.random.split(k_run, num_steps), steps)
    )
    return LearningResult(thetas, scores, theta, ref)


def score_ascent(
    key,
    model_fn: Callable,
    theta0,
    observations,
    num_particles: int,
    *,
    num_steps: int,
    step_size=0.05,
    estimator: str = "ppg",
    optimizer=None,
    num_backward: int = 2,
    backward: str = "auto",
    reference=None,
) -> LearningResult:
    r"""Maximum likelihood by stochastic approximation with the Fisher-identity score (see module doc).

    Args:
      key: a JAX key.
      model_fn: ``theta -> StateSpaceModel`` (per-particle, with ``initial_log_prob`` and
        ``transition_log_prob``; differentiable in ``theta``).
      theta0: initial parameters (any pytree of float arrays).
      observations: ``(T, ...)``.
      num_particles: particles per PaRIS / PPG pass.
      num_steps: parameter updates.
      step_size: :math:`\gamma` with :math:`\gamma_k = \gamma/\sqrt{k+1}`, or a function ``k -> gamma_k``.
      estimator: ``"ppg"`` (Markovian, reference carried over) or ``"paris"``.
      optimizer: optional Optax transform (applied to the negated score) instead of plain ascent.
      num_backward, backward: PaRIS backward draws per particle and backward sampler.
      reference: starting PPG reference path (from a previous run's ``reference``).

    Example:
      >>> import jax
      >>> from ulam.smc import LinearGaussianModel, linear_gaussian_ssm, simulate, score_ascent
      >>> model_fn = lambda a: linear_gaussian_ssm(LinearGaussianModel.scalar(a, 0.6, 1.0, 1.0, p0=1.0))
      >>> _, y = simulate(jax.random.key(0), model_fn(0.9), 8)
      >>> score_ascent(jax.random.key(1), model_fn, 0.5, y, 8, num_steps=3).final_params.shape
      ()
    """
    theta0 = jax.tree_util.tree_map(jnp.asarray, theta0)

    def make(theta):
        initial_fn, additive_fn = fisher_score_functionals(model_fn, theta)
        return model_fn(theta), initial_fn, additive_fn

    return _ascent(key, theta0, make, observations, num_particles, num_steps=num_steps, step_size=step_size,
                   estimator=estimator, optimizer=optimizer, num_backward=num_backward, backward=backward,
                   reference=reference, ssm0=model_fn(theta0))


def markov_score_climbing(
    key,
    ssm,
    log_q_initial: Callable,
    log_q_transition: Callable,
    lambda0,
    observations,
    num_particles: int,
    *,
    num_steps: int,
    step_size=0.05,
    optimizer=None,
    num_backward: int = 2,
    backward: str = "auto",
    reference=None,
) -> LearningResult:
    r"""Markov score climbing with PPG: fit :math:`q_\lambda` to the smoothing law by inclusive KL.

    :math:`\log q_\lambda(x_{0:T-1}) = ` ``log_q_initial(lam, x0, y0)`` :math:`+\sum_{t\ge1}`
    ``log_q_transition(lam, x_prev, x, y_t)``; each update adds
    :math:`\gamma_k\,\widehat{\mathbb E}_p[\nabla_\lambda\log q_\lambda(X)]`, estimated by one PPG
    pass whose reference is carried between updates (Naesseth et al. 2020; Cardoso et al. 2023).

    Example:
      >>> import jax, jax.numpy as jnp
      >>> from ulam.smc import LinearGaussianModel, linear_gaussian_ssm, simulate, markov_score_climbing
      >>> ssm = linear_gaussian_ssm(LinearGaussianModel.scalar(0.9, 0.6, 1.0, 1.0))
      >>> _, y = simulate(jax.random.key(0), ssm, 8)
      >>> lq0 = lambda lam, x0, y0: -0.5 * (x0 - lam) ** 2
      >>> lqt = lambda lam, xp, x, yt: -0.5 * (x - lam * xp) ** 2
      >>> r = markov_score_climbing(jax.random.key(1), ssm, lq0, lqt, jnp.asarray(0.3), y, 8, num_steps=2)
      >>> r.params.shape
      (2,)
    """
    lambda0 = jax.tree_util.tree_map(jnp.asarray, lambda0)

    def make(lam):
        initial_fn = lambda x0, y0: jax.grad(lambda l: log_q_initial(l, x0, y0))(lam)  # noqa: E731
        additive_fn = lambda xp, x, y: jax.grad(lambda l: log_q_transition(l, xp, x, y))(lam)  # noqa: E731
        return ssm, initial_fn, additive_fn

    return _ascent(key, lambda0, make, observations, num_particles, num_steps=num_steps, step_size=step_size,
                   estimator="ppg", optimizer=optimizer, num_backward=num_backward, backward=backward,
                   reference=reference, ssm0=ssm)
