r"""Feynman–Kac models, the one abstraction behind every particle algorithm here.

A Feynman–Kac model (Del Moral 2004; Chopin & Papaspiliopoulos 2020, *An
Introduction to Sequential Monte Carlo*, ch. 5) is an initial law
:math:`M_0`, Markov kernels :math:`M_t(x_{t-1}, dx_t)` and potentials
:math:`G_0(x_0)`, :math:`G_t(x_{t-1}, x_t)`; it defines the path measures

.. math:: \mathbb Q_t(dx_{0:t}) = \frac1{L_t} M_0(dx_0) G_0(x_0)
          \prod_{s=1}^t M_s(x_{s-1}, dx_s) G_s(x_{s-1}, x_s).

A state-space model (hidden Markov model) :math:`X_0\sim\mu`,
:math:`X_t\mid X_{t-1}\sim m(X_{t-1},\cdot)`, :math:`Y_t\mid X_t\sim g(X_t,\cdot)`
gives three of them:

* :class:`Bootstrap`: :math:`M_t = m`, :math:`G_t = g(x_t, y_t)`;
* :class:`Guided`: :math:`M_t = q(x_{t-1}, y_t, \cdot)`,
  :math:`G_t = m(x_{t-1},x_t)\,g(x_t,y_t)/q(x_{t-1},y_t,x_t)`;
* :class:`Auxiliary` (Pitt & Shephard 1999): any of the above plus a look-ahead
  weight :math:`\eta_t(x_{t-1})` that tilts resampling toward particles likely
  to fit :math:`y_t`; the filter corrects the weights for it.

In all three :math:`L_t = p(y_{0:t})`, the likelihood. Observations enter each
step as a pytree ``y_t`` (NaN entries mark a missing observation, whose
potential is then 1).

Model functions act on ONE particle by default and are vmapped; with
``batched=True`` they receive the whole particle array (leading axis ``N``) and
one key, which lets a hand-vectorized model draw all its noise in one call.

Example:
  >>> import jax, jax.numpy as jnp
  >>> from ulam.smc import StateSpaceModel, Bootstrap
  >>> from jax.scipy.stats import norm
  >>> ssm = StateSpaceModel(
  ...     initial_sample=lambda k: jax.random.normal(k),
  ...     transition_sample=lambda k, x: 0.9 * x + 0.5 * jax.random.normal(k),
  ...     observation_log_prob=lambda x, y: norm.logpdf(y, x, 1.0),
  ...     transition_log_prob=lambda x, xn: norm.logpdf(xn, 0.9 * x, 0.5))
  >>> fk = Bootstrap(ssm)
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple, Optional

import jax
import jax.numpy as jnp

__all__ = [
    "StateSpaceModel",
    "FeynmanKac",
    "Bootstrap",
    "Guided",
    "Auxiliary",
    "simulate",
    "is_missing",
    "fill_missing",
]


def is_missing(y) -> jax.Array:
    """True when any entry of the observation ``y`` (a pytree) is NaN.

    Example:
      >>> import jax.numpy as jnp
      >>> from ulam.smc import is_missing
      >>> bool(is_missing(jnp.array([1.0, jnp.nan]))), bool(is_missing(jnp.array(2.0)))
      (True, False)
    """
    leaves = [jnp.asarray(v) for v in jax.tree_util.tree_leaves(y)]
    flags = [jnp.any(jnp.isnan(v)) for v in leaves if jnp.issubdtype(v.dtype, jnp.floating)]
    if not flags:
        return jnp.asarray(False)
    out = flags[0]
    for f in flags[1:]:
        out = out | f
    return out


def fill_missing(y):
    """NaN entries of an observation (pytree) replaced by 0, so that user log-densities never see a
    NaN they could turn into a NaN gradient (the missing step's potential is set to 1 separately).

    Example:
      >>> import jax.numpy as jnp
      >>> fill_missing(jnp.array([1.0, jnp.nan])).tolist()
      [1.0, 0.0]
    """
    return jax.tree_util.tree_map(
        lambda v: jnp.where(jnp.isnan(v), 0.0, v) if jnp.issubdtype(jnp.asarray(v).dtype, jnp.floating) else v, y
    )


class StateSpaceModel(NamedTuple):
    r"""A hidden Markov model :math:`X_0\sim\mu,\ X_t\sim m(X_{t-1},\cdot),\ Y_t\sim g(X_t,\cdot)`.

    Attributes:
      initial_sample: ``key -> x0`` draws from :math:`\mu` (``key, num -> x0``
        of shape ``(num, ...)`` when ``batched``).
      transition_sample: ``key, x_prev -> x`` draws from :math:`m(x_{t-1}, \cdot)`.
      observation_log_prob: ``x, y -> log g(x, y)``.
      transition_log_prob: ``x_prev, x -> log m(x_prev, x)``; needed by guided
        filters, backward sampling, PaRIS, particle Gibbs.
      initial_log_prob: ``x0 -> log mu(x0)``; needed by guided filters.
      observation_sample: ``key, x -> y``; needed by :func:`simulate`.
      observation_shape: the shape of one ``y_t``; when given, observations of
        another shape are refused with a clear error.
      transition_log_bound: an upper bound of ``transition_log_prob`` over both
        arguments (e.g. :math:`-\tfrac12\log(2\pi\sigma^2)` for Gaussian noise);
        enables the :math:`O(N)` rejection backward samplers.
      batched: whether the functions take whole particle arrays (see module doc).

    Example:
      >>> import jax
      >>> from jax.scipy.stats import norm
      >>> from ulam.smc import StateSpaceModel
      >>> ssm = StateSpaceModel(lambda k: jax.random.normal(k), lambda k, x: 0.9 * x + jax.random.normal(k),
      ...                       lambda x, y: norm.logpdf(y, x, 1.0))
      >>> ssm.sample_initial(jax.random.key(0), 5).shape
      (5,)
    """

    initial_sample: Callable
    transition_sample: Callable
    observation_log_prob: Callable
    transition_log_prob: Optional[Callable] = None
    initial_log_prob: Optional[Callable] = None
    observation_sample: Optional[Callable] = None
    observation_shape: Optional[tuple] = None
    transition_log_bound: Optional[float] = None
    batched: bool = False

    # -- batch-level helpers used by the algorithms -----------------------------
    def sample_initial(self, key, num: int):
        if self.batched:
            return self.initial_sample(key, num)
        return jax.vmap(self.initial_sample)(jax.random.split(key, num))

    def sample_transition(self, key, x_prev):
        if self.batched:
            return self.transition_sample(key, x_prev)
        n = _num(x_prev)
        return jax.vmap(self.transition_sample)(jax.random.split(key, n), x_prev)

    def log_observation(self, x, y):
        if self.batched:
            return self.observation_log_prob(x, y)
        return jax.vmap(self.observation_log_prob, in_axes=(0, None))(x, y)

    def log_transition(self, x_prev, x):
        """``log m(x_prev[i], x[i])`` for every ``i`` (both with leading axis)."""
        if self.transition_log_prob is None:
            raise ValueError(
                "transition_log_prob: this algorithm needs the transition density; pass "
                "StateSpaceModel(..., transition_log_prob=lambda x_prev, x: ...)"
            )
        if self.batched:
            return self.transition_log_prob(x_prev, x)
        return jax.vmap(self.transition_log_prob)(x_prev, x)

    def log_initial(self, x):
        if self.initial_log_prob is None:
            raise ValueError("initial_log_prob: this algorithm needs the initial density log mu(x0)")
        if self.batched:
            return self.initial_log_prob(x)
        return jax.vmap(self.initial_log_prob)(x)


def _num(x) -> int:
    return jax.tree_util.tree_leaves(x)[0].shape[0]


def _nan_to_neg_inf(v):
    return jnp.where(jnp.isnan(v), -jnp.inf, v)


class Bootstrap(NamedTuple):
    r"""Bootstrap filter's Feynman–Kac model: :math:`M_t = m`, :math:`G_t = g(x_t, y_t)` (Gordon et al. 1993).

    Example:
      >>> import jax, jax.numpy as jnp
      >>> from ulam.smc import LinearGaussianModel, linear_gaussian_ssm, simulate
      >>> lg = LinearGaussianModel.scalar(0.9, 0.6, 1.0, 1.0)
      >>> ssm = linear_gaussian_ssm(lg)
      >>> _, y = simulate(jax.random.key(0), ssm, 8)
      >>> from ulam.smc import Bootstrap
      >>> fk = Bootstrap(ssm)
      >>> x0 = fk.initial(jax.random.key(1), y[0], 4)
      >>> fk.initial_log_potential(x0, y[0]).shape
      (4,)
    """

    ssm: StateSpaceModel

    def initial(self, key, y, num):
        return self.ssm.sample_initial(key, num)

    def initial_log_potential(self, x, y):
        return self._log_g(x, y)

    def transition(self, key, x_prev, y):
        return self.ssm.sample_transition(key, x_prev)

    def log_potential(self, x_prev, x, y):
        return self._log_g(x, y)

    def _log_g(self, x, y):
        missing = is_missing(y)
        lg = _nan_to_neg_inf(self.ssm.log_observation(x, fill_missing(y)))
        return jnp.where(missing, jnp.zeros_like(lg), lg)

    auxiliary_log_weight = None


class Guided(NamedTuple):
    r"""Guided filter: proposal :math:`q(x_{t-1}, y_t, \cdot)`, potential :math:`m\,g/q`.

    Attributes:
      ssm: the state-space model (needs ``transition_log_prob`` and ``initial_log_prob``).
      proposal_sample: ``key, x_prev, y -> x``.
      proposal_log_prob: ``x_prev, x, y -> log q``.
      initial_proposal_sample: ``key, y -> x0``.
      initial_proposal_log_prob: ``x0, y -> log q0``.

    With a missing ``y_t`` the step falls back to the model's transition (weight 1).
    The proposal functions are per-particle, or batched when ``ssm.batched``.

    Example:
      >>> import jax, jax.numpy as jnp
      >>> from ulam.smc import LinearGaussianModel, linear_gaussian_ssm, simulate
      >>> lg = LinearGaussianModel.scalar(0.9, 0.6, 1.0, 1.0)
      >>> ssm = linear_gaussian_ssm(lg)
      >>> _, y = simulate(jax.random.key(0), ssm, 8)
      >>> from jax.scipy.stats import norm
      >>> from ulam.smc import Guided, run_filter
      >>> fk = Guided(ssm, lambda k, xp, yt: 0.9 * xp + 0.6 * jax.random.normal(k),
      ...             lambda xp, x, yt: norm.logpdf(x, 0.9 * xp, 0.6),
      ...             lambda k, yt: 1.4 * jax.random.normal(k), lambda x, yt: norm.logpdf(x, 0.0, 1.4))
      >>> run_filter(jax.random.key(1), fk, y, 16).log_likelihood.mean.shape
      ()
    """

    ssm: StateSpaceModel
    proposal_sample: Callable
    proposal_log_prob: Callable
    initial_proposal_sample: Callable
    initial_proposal_log_prob: Callable

    def initial(self, key, y, num):
        k1, k2 = jax.random.split(key)
        yf = fill_missing(y)
        if self.ssm.batched:
            xq = self.initial_proposal_sample(k1, yf, num)
        else:
            xq = jax.vmap(self.initial_proposal_sample, in_axes=(0, None))(jax.random.split(k1, num), yf)
        xm = self.ssm.sample_initial(k2, num)
        return _where_tree(is_missing(y), xm, xq)

    def initial_log_potential(self, x, y):
        yf = fill_missing(y)
        if self.ssm.batched:
            lq = self.initial_proposal_log_prob(x, yf)
        else:
            lq = jax.vmap(self.initial_proposal_log_prob, in_axes=(0, None))(x, yf)
        lw = _nan_to_neg_inf(self.ssm.log_initial(x) + self.ssm.log_observation(x, yf) - lq)
        return jnp.where(is_missing(y), jnp.zeros_like(lw), lw)

    def transition(self, key, x_prev, y):
        k1, k2 = jax.random.split(key)
        yf = fill_missing(y)
        if self.ssm.batched:
            xq = self.proposal_sample(k1, x_prev, yf)
        else:
            n = _num(x_prev)
            xq = jax.vmap(self.proposal_sample, in_axes=(0, 0, None))(jax.random.split(k1, n), x_prev, yf)
        xm = self.ssm.sample_transition(k2, x_prev)
        return _where_tree(is_missing(y), xm, xq)

    def log_potential(self, x_prev, x, y):
        yf = fill_missing(y)
        if self.ssm.batched:
            lq = self.proposal_log_prob(x_prev, x, yf)
        else:
            lq = jax.vmap(self.proposal_log_prob, in_axes=(0, 0, None))(x_prev, x, yf)
        lw = _nan_to_neg_inf(self.ssm.log_transition(x_prev, x) + self.ssm.log_observation(x, yf) - lq)
        return jnp.where(is_missing(y), jnp.zeros_like(lw), lw)

    auxiliary_log_weight = None


class Auxiliary(NamedTuple):
    r"""Auxiliary particle filter (Pitt & Shephard 1999): ``fk`` plus a look-ahead weight.

    Resampling at time :math:`t` draws ancestors with probability proportional to
    :math:`W_{t-1}^i\,\eta_t(x^i_{t-1})`, where
    ``log_eta(x_prev, y_t)`` :math:`=\log\eta_t(x_{t-1})` (e.g. the log predictive
    density of :math:`y_t` at the predicted mean). The filter then carries the
    weights :math:`W_{t-1}^{a}/(N P^{a})` so that every estimate stays unbiased.
    ``log_eta`` is per-particle, or batched when the model is.

    Example:
      >>> import jax, jax.numpy as jnp
      >>> from ulam.smc import LinearGaussianModel, linear_gaussian_ssm, simulate
      >>> lg = LinearGaussianModel.scalar(0.9, 0.6, 1.0, 1.0)
      >>> ssm = linear_gaussian_ssm(lg)
      >>> _, y = simulate(jax.random.key(0), ssm, 8)
      >>> from jax.scipy.stats import norm
      >>> from ulam.smc import Auxiliary, Bootstrap, run_filter
      >>> fk = Auxiliary(Bootstrap(ssm), lambda xp, yt: norm.logpdf(yt, 0.9 * xp, 1.2))
      >>> run_filter(jax.random.key(1), fk, y, 16).log_likelihood.mean.shape
      ()
    """

    fk: Any
    log_eta: Callable

    def initial(self, key, y, num):
        return self.fk.initial(key, y, num)

    def initial_log_potential(self, x, y):
        return self.fk.initial_log_potential(x, y)

    def transition(self, key, x_prev, y):
        return self.fk.transition(key, x_prev, y)

    def log_potential(self, x_prev, x, y):
        return self.fk.log_potential(x_prev, x, y)

    def auxiliary_log_weight(self, x_prev, y):
        batched = getattr(getattr(self.fk, "ssm", None), "batched", getattr(self.fk, "batched", False))
        yf = fill_missing(y)
        lw = self.log_eta(x_prev, yf) if batched else jax.vmap(self.log_eta, in_axes=(0, None))(x_prev, yf)
        lw = _nan_to_neg_inf(lw)
        return jnp.where(is_missing(y), jnp.zeros_like(lw), lw)


class FeynmanKac(NamedTuple):
    r"""A Feynman–Kac model given directly by :math:`M_0, G_0, M_t, G_t` (per-particle functions).

    Attributes:
      initial_sample: ``key, y0 -> x0`` (:math:`M_0`).
      initial_log_potential_fn: ``x0, y0 -> log G_0(x0)``.
      transition_sample: ``key, x_prev, y -> x`` (:math:`M_t`).
      log_potential_fn: ``x_prev, x, y -> log G_t(x_prev, x)``.
      batched: functions take whole particle arrays (``initial_sample(key, y0, num)``).

    ``y`` is the per-step input (observations, or any per-step data; pass
    ``jnp.zeros(T)`` when there is none).

    Example:
      >>> import jax, jax.numpy as jnp
      >>> from ulam.smc import FeynmanKac, run_filter
      >>> fk = FeynmanKac(lambda k, y: jax.random.normal(k), lambda x, y: -0.5 * (x - y) ** 2,
      ...                 lambda k, xp, y: xp + jax.random.normal(k), lambda xp, x, y: -0.5 * (x - y) ** 2)
      >>> run_filter(jax.random.key(0), fk, jnp.zeros(5), 16).ess.shape
      (5,)
    """

    initial_sample: Callable
    initial_log_potential_fn: Callable
    transition_sample: Callable
    log_potential_fn: Callable
    batched: bool = False

    def initial(self, key, y, num):
        if self.batched:
            return self.initial_sample(key, y, num)
        return jax.vmap(self.initial_sample, in_axes=(0, None))(jax.random.split(key, num), y)

    def initial_log_potential(self, x, y):
        f = self.initial_log_potential_fn if self.batched else jax.vmap(self.initial_log_potential_fn, in_axes=(0, None))
        return _nan_to_neg_inf(f(x, y))

    def transition(self, key, x_prev, y):
        if self.batched:
            return self.transition_sample(key, x_prev, y)
        n = _num(x_prev)
        return jax.vmap(self.transition_sample, in_axes=(0, 0, None))(jax.random.split(key, n), x_prev, y)

    def log_potential(self, x_prev, x, y):
        f = self.log_potential_fn if self.batched else jax.vmap(self.log_potential_fn, in_axes=(0, 0, None))
        return _nan_to_neg_inf(f(x_prev, x, y))

    auxiliary_log_weight = None


def _where_tree(cond, a, b):
    return jax.tree_util.tree_map(lambda u, v: jnp.where(cond, u, v), a, b)


def simulate(key, ssm: StateSpaceModel, num_steps: int):
    """Draw ``(states, observations)`` of length ``num_steps`` from a state-space model.

    Example:
      >>> import jax
      >>> from ulam.smc import linear_gaussian_ssm, LinearGaussianModel
      >>> lg = LinearGaussianModel.scalar(0.9, 0.6, 1.0, 1.0)
      >>> x, y = simulate(jax.random.key(0), linear_gaussian_ssm(lg), 20)
      >>> y.shape
      (20,)
    """
    if ssm.observation_sample is None:
        raise ValueError("ssm.observation_sample: simulate needs `observation_sample(key, x) -> y`")
    if not isinstance(num_steps, int) or num_steps < 1:
        raise ValueError(f"num_steps: expected a positive int, got {num_steps!r}")
    k0, ky, kx = jax.random.split(key, 3)
    one = lambda f, k, *a: f(k, *a) if not ssm.batched else jax.tree_util.tree_map(  # noqa: E731
        lambda v: v[0], f(k, *jax.tree_util.tree_map(lambda u: u[None], a))
    )
    if ssm.batched:
        x0 = jax.tree_util.tree_map(lambda v: v[0], ssm.initial_sample(k0, 1))
    else:
        x0 = ssm.initial_sample(k0)

    def step(x, k):
        xn = one(ssm.transition_sample, k, x)
        return xn, xn

    _, xs = jax.lax.scan(step, x0, jax.random.split(kx, num_steps - 1))
    states = jax.tree_util.tree_map(lambda a, b: jnp.concatenate([a[None], b], 0), x0, xs)
    ys = jax.vmap(lambda k, x: one(ssm.observation_sample, k, x))(jax.random.split(ky, num_steps), states)
    return states, ys
