r"""Particle filters: one ``lax.scan`` over a Feynman–Kac model.

:func:`run_filter` runs the generic SMC algorithm (Chopin & Papaspiliopoulos
2020, Alg. 10.1) for any model of :mod:`ulam.smc.models` — bootstrap, guided,
auxiliary or a user Feynman–Kac model — with adaptive resampling, and returns

* the log-likelihood :math:`\log\hat L_T = \sum_t \log\big(\sum_i \bar w^i_{t-1} G_t^i\big)`
  as an :class:`~ulam.Estimate` whose standard error is Lee & Whiteley's
  (2018, *Variance estimation in the particle filter*, Biometrika 105) single-run,
  genealogy-based estimate: with Eve indices :math:`E^i` (time-0 ancestor),
  :math:`R` resampling events and final normalized weights :math:`W^i`,

  .. math:: \frac{\widehat{\mathrm{Var}}(\hat L)}{\hat L^2}
       = 1 - \Big(\frac{N}{N-1}\Big)^{R+1} \sum_{i,j:\,E^i\neq E^j} W^i W^j,

  where :math:`\hat L^2 - \widehat{\mathrm{Var}}(\hat L)` is an unbiased
  estimate of :math:`L^2` under multinomial resampling (Du & Guyader 2021 for
  the adaptive case; other schemes make it conservative); the log-scale standard
  error reported is :math:`\sqrt{-\log(1 - \widehat{\mathrm{Var}}(\hat L)/\hat L^2)}`
  (exact when :math:`\hat L/L` is log-normal, :math:`\approx` the delta method
  when small). It is ``inf`` when all particles share one Eve (degeneracy:
  raise ``N``);
* filtering means :math:`\sum_i W_t^i \varphi(x_t^i)` with standard errors
  from the lag-based estimator of Olsson & Douc (2019, *Numerically stable
  online estimation of variance in particle filters*, Bernoulli 25):
  :math:`\widehat{\mathrm{se}}^2 = \sum_e \big(\sum_{i:\,E^i_{t-\lambda}=e} W^i_t(\varphi^i - \bar\varphi)\big)^2`
  with the ancestors :math:`E_{t-\lambda}` a lag :math:`\lambda` back;
* the ESS per step, whether each step resampled, and optionally the whole
  particle history (genealogy) for smoothing.

Missing observations (NaN) contribute a potential of 1. A step where every
weight is zero (all log-potentials ``-inf``) makes the log-likelihood ``-inf``;
outside ``jit``/``vmap`` it raises a ``ValueError`` naming the step.

Example:
  >>> import jax
  >>> from ulam.smc import LinearGaussianModel, linear_gaussian_ssm, Bootstrap, run_filter, simulate
  >>> lg = LinearGaussianModel.scalar(0.9, 0.6, 1.0, 1.0)
  >>> _, y = simulate(jax.random.key(0), linear_gaussian_ssm(lg), 50)
  >>> out = run_filter(jax.random.key(1), Bootstrap(linear_gaussian_ssm(lg)), y, 500)
  >>> out.log_likelihood.mean.shape
  ()
"""

from __future__ import annotations

import functools
import math
from typing import Any, Callable, NamedTuple, Optional

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
from jax.scipy.special import logsumexp

from ulam import checks
from ulam.estimate import Estimate
from ulam.smc.reporting import describe_array, describe_estimate, result_repr, table, without_ess
from ulam.smc.resampling import get_resampler, resampler_from_weights

__all__ = [
    "run_filter",
    "FilterResult",
    "ParticleHistory",
    "check_filter_result",
    "raise_if_degenerate",
    "weighted_mean_and_se",
    "propagate",
    "Propagated",
    "normalize",
    "forward_scan",
    "ScanResult",
    "StepView",
    "concat_first",
    "lag_ancestors",
    "EssCollector",
    "EveCollector",
    "LagCollector",
    "HistoryCollector",
    "MomentsCollector",
    "sanitize_log_weights",
    "check_inputs",
]


class ParticleHistory(NamedTuple):
    """The whole particle system: leading axis is time.

    Attributes:
      particles: ``(T, N, ...)`` particle positions :math:`x_t^i`.
      log_weights: ``(T, N)`` normalized filtering log-weights :math:`\\log W_t^i` at each time.
      ancestors: ``(T, N)``: ``ancestors[t, i]`` is the index at time ``t-1`` of
        the parent of particle ``i`` at time ``t`` (``ancestors[0]`` is the identity).

    Example:
      >>> import jax, jax.numpy as jnp
      >>> from ulam.smc import LinearGaussianModel, linear_gaussian_ssm, simulate
      >>> lg = LinearGaussianModel.scalar(0.9, 0.6, 1.0, 1.0)
      >>> ssm = linear_gaussian_ssm(lg)
      >>> _, y = simulate(jax.random.key(0), ssm, 8)
      >>> from ulam.smc import Bootstrap, run_filter
      >>> h = run_filter(jax.random.key(1), Bootstrap(ssm), y, 16, keep_history=True).history
      >>> h.log_weights.shape, h.ancestors.shape
      ((8, 16), (8, 16))
    """

    particles: Any
    log_weights: jax.Array
    ancestors: jax.Array

    def __repr__(self) -> str:
        T, N = self.log_weights.shape
        return result_repr("ParticleHistory", {"steps x particles": f"{T} x {N}", "particles": describe_array(self.particles)})


class FilterResult(NamedTuple):
    """What :func:`run_filter` returns; ``print`` shows a short summary, ``.summary()`` a table.

    Attributes:
      log_likelihood: :class:`~ulam.Estimate` of :math:`\\log p(y_{0:T-1})` with the Lee–Whiteley
        standard error and ``ess=None`` (an ESS has no meaning for it); ``info`` holds
        ``relative_variance`` (shape ``()``: the Lee–Whiteley estimate of
        :math:`\\mathrm{Var}(\\hat L)/\\hat L^2`), ``num_resampling`` (``()`` int: resampling
        events) and ``degenerate_step`` (``()`` int: first step whose weights were all zero, -1 if none).
      filtering_mean: :class:`~ulam.Estimate` with leaves of shape ``(T, ...)`` (Olsson–Douc
        standard errors, ``ess=None``).
      ess: ``(T,)`` effective sample size of the filtering weights at each step.
      resampled: ``(T,)`` whether step ``t`` resampled before moving (``False`` at 0).
      log_likelihood_increments: ``(T,)`` :math:`\\log \\hat p(y_t\\mid y_{0:t-1})`.
      particles, log_weights: the final particle system.
      history: a :class:`ParticleHistory`, when asked for with ``keep_history=True``.

    Example:
      >>> import jax, jax.numpy as jnp
      >>> from ulam.smc import LinearGaussianModel, linear_gaussian_ssm, simulate
      >>> lg = LinearGaussianModel.scalar(0.9, 0.6, 1.0, 1.0)
      >>> ssm = linear_gaussian_ssm(lg)
      >>> _, y = simulate(jax.random.key(0), ssm, 8)
      >>> from ulam.smc import Bootstrap, run_filter
      >>> out = run_filter(jax.random.key(1), Bootstrap(ssm), y, 16)
      >>> out.ess.shape, out.log_likelihood.ess is None
      ((8,), True)
    """

    log_likelihood: Estimate
    filtering_mean: Estimate
    ess: jax.Array
    resampled: jax.Array
    log_likelihood_increments: jax.Array
    particles: Any
    log_weights: jax.Array
    history: Optional[ParticleHistory]

    def __repr__(self) -> str:
        T = self.ess.shape[-1]
        N = self.log_weights.shape[-1]
        fields = {
            "log_likelihood": describe_estimate(self.log_likelihood),
            "steps x particles": f"{T} x {N}",
            "ess": describe_array(self.ess),
            "resampled steps": describe_array(jnp.sum(self.resampled, -1)),
            "filtering_mean": describe_estimate(self.filtering_mean),
            "history": "kept" if self.history is not None else "not kept (keep_history=False)",
        }
        return result_repr("FilterResult", fields)

    def summary(self, plain: bool = False):
        """One row per scalar quantity: log-likelihood, its standard error, ESS range, resampling count."""
        ll = self.log_likelihood
        ess = np.asarray(self.ess, dtype=float)
        rows = [
            {"quantity": "log_likelihood", "value": float(np.mean(ll.mean)), "stderr": float(np.mean(ll.stderr))},
            {"quantity": "relative_variance", "value": float(np.mean(ll.info["relative_variance"])), "stderr": None},
            {"quantity": "min ess", "value": float(ess.min()), "stderr": None},
            {"quantity": "median ess", "value": float(np.median(ess)), "stderr": None},
            {"quantity": "resampling events", "value": float(np.mean(ll.info["num_resampling"])), "stderr": None},
        ]
        return table(rows, plain=plain)


def _tree_take(x, idx):
    return jax.tree_util.tree_map(lambda v: jnp.take(v, idx, axis=0), x)


def weighted_mean_and_se(log_weights, values, groups):
    r"""Self-normalized mean :math:`\sum_i W^i\varphi^i` and the genealogy standard error.

    ``groups[i]`` is the Eve (or lagged ancestor) index of particle ``i``;
    :math:`\widehat{\mathrm{se}}^2 = \sum_e (\sum_{i:\,g_i = e} W^i(\varphi^i-\bar\varphi))^2`
    (Chan & Lai 2013; Olsson & Douc 2019). ``values`` is a pytree with leading axis ``N``.

    Example:
      >>> import jax.numpy as jnp
      >>> from ulam.smc import weighted_mean_and_se
      >>> m, se = weighted_mean_and_se(jnp.zeros(4), jnp.array([1.0, 2.0, 3.0, 4.0]), jnp.arange(4))
      >>> float(m)
      2.5
    """
    return _weighted_mean_and_se_w(jax.nn.softmax(log_weights), values, groups)


def _lee_whiteley(log_weights, eve, num_resampling, n):
    w = jax.nn.softmax(log_weights)
    per_eve = jax.ops.segment_sum(w, eve, num_segments=n)
    distinct_pairs = jnp.maximum(1.0 - jnp.sum(per_eve**2), 0.0)  # sum over E^i != E^j of W^i W^j
    log_factor = (num_resampling + 1).astype(w.dtype) * jnp.log(n / (n - 1.0))
    log_second_moment_ratio = log_factor + jnp.log(distinct_pairs)  # estimates log(L^2 / Lhat^2)-type ratio
    relative_variance = 1.0 - jnp.exp(log_second_moment_ratio)
    log_var = jnp.maximum(-log_second_moment_ratio, 0.0)
    return jnp.sqrt(log_var), relative_variance


class Propagated(NamedTuple):
    """One SMC step's result (:func:`propagate`)."""

    ancestors: jax.Array  # (N,) parent index at t-1 of each particle
    resampled: jax.Array  # () whether this step resampled
    previous: Any  # x_{t-1}^{A^i}, the parents
    particles: Any  # x_t^i
    log_weights: jax.Array  # (N,) normalized log-weights log W_t^i
    weights: jax.Array  # (N,) W_t^i
    log_increment: jax.Array  # () log p_hat(y_t | y_{0:t-1}); -inf when every weight is zero
    all_zero: jax.Array  # () every log-potential was -inf/NaN


def normalize(log_weights) -> tuple:
    """``(log W, W, log sum exp)`` with one exponential pass; all ``-inf`` gives uniform weights and ``-inf``.

    Example:
      >>> import jax.numpy as jnp
      >>> from ulam.smc.filtering import normalize
      >>> log_w, w, lse = normalize(jnp.log(jnp.array([1.0, 3.0])))
      >>> [round(v, 4) for v in w.tolist()], round(float(lse), 4)
      ([0.25, 0.75], 1.3863)
    """
    n = log_weights.shape[0]
    top = jnp.max(log_weights)
    safe_top = jnp.where(jnp.isfinite(top), top, 0.0)
    e = jnp.exp(log_weights - safe_top)
    total = jnp.sum(e)
    bad = ~(total > 0)
    log_total = jnp.where(bad, -jnp.inf, safe_top + jnp.log(total))
    w = jnp.where(bad, 1.0 / n, e / jnp.where(bad, 1.0, total))
    log_w = jnp.where(bad, -math.log(n), log_weights - jnp.where(bad, 0.0, log_total))
    return log_w, w, log_total


def propagate(
    fk, k_res, k_move, x, log_w, w, y, *, resample, threshold, num_particles, ancestors=None
) -> Propagated:
    r"""One step of the generic SMC algorithm (Chopin & Papaspiliopoulos 2020, Alg. 10.1).

    From normalized filtering log-weights ``log_w`` (and ``w = exp(log_w)``): resample
    when :math:`\mathrm{ESS} < \text{threshold}\cdot N` (with ``resample``, a
    ``key, weights, num -> ancestors`` function; the auxiliary filter's first-stage
    weights when the model has ``auxiliary_log_weight``), move with ``fk.transition``,
    reweight with ``fk.log_potential``. ``ancestors=(a, carried_log_weights)`` forces
    the ancestors (conditional SMC). Shared by :func:`run_filter` and the PaRIS family.
    """
    n = num_particles
    dtype = log_w.dtype
    idx = jnp.arange(n, dtype=jnp.int32)
    if ancestors is not None:
        a, carried = ancestors
        do = jnp.asarray(True)
    else:
        aux_fn = getattr(fk, "auxiliary_log_weight", None)
        if aux_fn is None:
            probs = w
        else:
            score = log_w + aux_fn(x, y)
            log_p = score - logsumexp(score)
            probs = jnp.exp(log_p)
        if threshold >= 1.0:
            do = jnp.asarray(True)
            a = resample(k_res, probs, n)
        else:
            do = 1.0 < threshold * n * jnp.sum(probs**2)  # ESS = 1 / sum p^2 < threshold * N
            a = lax.cond(do, lambda: resample(k_res, probs, n), lambda: idx)
        uniform = jnp.full((n,), -math.log(n), dtype)
        if aux_fn is None:
            carried = jnp.where(do, uniform, log_w)
        else:
            carried = jnp.where(do, log_w[a] - log_p[a] - math.log(n), log_w)
    x_prev = _tree_take(x, a)
    x_new = fk.transition(k_move, x_prev, y)
    lw_new = carried + _sanitize(fk.log_potential(x_prev, x_new, y))
    log_w_new, w_new, inc = normalize(lw_new)
    return Propagated(a, do, x_prev, x_new, log_w_new, w_new, inc, inc == -jnp.inf)


def lag_ancestors(buf, t, lag, idx):
    """Compose the last ``lag`` ancestor maps (a ring buffer written at ``t % lag``), newest first.

    Example:
      >>> import jax.numpy as jnp
      >>> buf = jnp.array([[1, 1, 0], [2, 0, 0]])  # maps written at t = 0 (slot 0) and t = 1 (slot 1)
      >>> lag_ancestors(buf, 1, 2, jnp.arange(3)).tolist()  # particle i's ancestor at t = -1
      [0, 1, 1]
    """
    enoch = idx
    for j in range(lag):
        enoch = buf[(t - j) % lag][enoch]
    return enoch


class StepView(NamedTuple):
    """What a collector sees at step ``t >= 1`` of :func:`forward_scan`.

    ``previous_particles``/``previous_log_weights`` are :math:`x_{t-1}`, :math:`\\log W_{t-1}`
    (before resampling); ``step`` is the :class:`Propagated` step (its particles and weights are
    :math:`x_t`, :math:`W_t`); ``keys`` the step's keys beyond the resampling and move keys;
    ``reference_ancestor`` the reference particle's exact backward-kernel ancestor in a
    conditional step that drew one, else ``None``.
    """

    t: jax.Array
    y: Any
    keys: tuple
    previous_particles: Any
    previous_log_weights: jax.Array
    step: Propagated
    reference_ancestor: Any = None


class ScanResult(NamedTuple):
    """What :func:`forward_scan` returns: the final particle system, the log-likelihood pieces,
    and per collector its final state, its time-0 output and its stacked per-step outputs."""

    particles: Any
    log_weights: jax.Array
    increments: jax.Array  # (T,) log p_hat(y_t | y_{0:t-1})
    resampled: jax.Array  # (T,) bool, False at t = 0
    num_resampling: jax.Array  # () int32
    degenerate_step: jax.Array  # () int32, -1 if none
    states: tuple
    first: tuple
    outputs: tuple


def forward_scan(
    key, fk, observations, num_particles, collectors=(), *, resample, threshold, num_step_keys=2,
    split_initial_key=True, step_fn=None, initial_fn=None,
) -> ScanResult:
    r"""The one forward pass of every particle algorithm here: one ``lax.scan`` of :func:`propagate`.

    Everything an algorithm computes from the particle system is a *collector* (the design of
    Chopin's ``particles``: the SMC step runs once; moments, genealogy, history, smoothing
    statistics observe it). A collector has ``init(x0, log_w0, w0, y0) -> (state, first_output)``
    and ``update(state, view: StepView) -> (state, output)``; outputs are stacked over
    ``t = 1..T-1``. ``step_fn(fk, keys, x, log_w, w, y, t) -> (Propagated, reference_ancestor)``
    replaces the plain step (conditional SMC); ``initial_fn(x0) -> x0`` edits the time-0
    particles. Each step key is split into ``num_step_keys`` keys: resampling, move, then the
    collectors' (``view.keys``). The log-likelihood is ``jnp.sum(increments)``.

    Example:
      >>> import jax
      >>> from ulam.smc import LinearGaussianModel, linear_gaussian_ssm, simulate, Bootstrap
      >>> from ulam.smc.resampling import resampler_from_weights
      >>> ssm = linear_gaussian_ssm(LinearGaussianModel.scalar(0.9, 0.6, 1.0, 1.0))
      >>> _, y = simulate(jax.random.key(0), ssm, 8)
      >>> out = forward_scan(jax.random.key(1), Bootstrap(ssm), y, 16, [EssCollector()],
      ...                    resample=resampler_from_weights("systematic"), threshold=0.5)
      >>> out.increments.shape, out.outputs[0].shape
      ((8,), (7,))
    """
    n = num_particles
    collectors = tuple(collectors)
    num_steps = jax.tree_util.tree_leaves(observations)[0].shape[0]
    y0 = jax.tree_util.tree_map(lambda v: v[0], observations)
    rest = jax.tree_util.tree_map(lambda v: v[1:], observations)
    keys = jax.random.split(key, num_steps)
    x0 = fk.initial(jax.random.split(keys[0])[0] if split_initial_key else keys[0], y0, n)
    if initial_fn is not None:
        x0 = initial_fn(x0)
    lw0, w0, lse0 = normalize(_sanitize(fk.initial_log_potential(x0, y0)))
    inc0 = lse0 - math.log(n)
    inits = [c.init(x0, lw0, w0, y0) for c in collectors]
    states0 = tuple(i[0] for i in inits)
    first = tuple(i[1] for i in inits)

    def plain_step(fk_, ks, x, lw, w, y, t):
        p = propagate(fk_, ks[0], ks[1], x, lw, w, y, resample=resample, threshold=threshold, num_particles=n)
        return p, None

    one_step = plain_step if step_fn is None else step_fn

    def step(carry, inputs):
        x, lw, w, num_res, first_bad, states = carry
        t, k, y = inputs
        ks = tuple(jax.random.split(k, num_step_keys))
        p, ref_anc = one_step(fk, ks, x, lw, w, y, t)
        first_bad = jnp.where((first_bad < 0) & p.all_zero, t, first_bad)
        view = StepView(t, y, ks[2:], x, lw, p, ref_anc)
        updated = [c.update(st, view) for c, st in zip(collectors, states)]
        new_states = tuple(u[0] for u in updated)
        outs = tuple(u[1] for u in updated)
        new = (p.particles, p.log_weights, p.weights, num_res + p.resampled.astype(jnp.int32), first_bad, new_states)
        return new, (p.log_increment, p.resampled, outs)

    first_bad0 = jnp.where(lse0 == -jnp.inf, 0, -1).astype(jnp.int32)
    carry0 = (x0, lw0, w0, jnp.int32(0), first_bad0, states0)
    ts = jnp.arange(1, num_steps, dtype=jnp.int32)
    (x, lw, _, num_res, first_bad, states), (incs, resampled, outs) = lax.scan(step, carry0, (ts, keys[1:], rest))
    incs = _cat(inc0, incs)
    resampled = _cat(jnp.asarray(False), resampled)
    return ScanResult(x, lw, incs, resampled, num_res, first_bad, states, first, outs)


def _cat(a, b):
    return jnp.concatenate([jnp.asarray(a)[None], b], axis=0)


def concat_first(first, outputs):
    """Put a collector's time-0 output in front of its stacked outputs (pytrees), giving leading axis T."""
    return jax.tree_util.tree_map(_cat, first, outputs)


class EssCollector(NamedTuple):
    """Collector: Kong's ESS :math:`1/\\sum_i (W_t^i)^2` of the filtering weights at every step."""

    def init(self, x0, log_w0, w0, y0):
        return (), 1.0 / jnp.sum(w0**2)

    def update(self, state, view):
        return state, 1.0 / jnp.sum(view.step.weights**2)


class EveCollector(NamedTuple):
    """Collector: the Eve (time-0 ancestor) index of every particle, for the Lee–Whiteley variance."""

    num_particles: int

    def init(self, x0, log_w0, w0, y0):
        return jnp.arange(self.num_particles, dtype=jnp.int32), None

    def update(self, eve, view):
        return eve[view.step.ancestors], None


class LagCollector(NamedTuple):
    """Collector: the last ``lag`` ancestor maps (ring buffer); :func:`lag_ancestors` composes them."""

    num_particles: int
    lag: int

    def init(self, x0, log_w0, w0, y0):
        idx = jnp.arange(self.num_particles, dtype=jnp.int32)
        return (jnp.tile(idx, (self.lag, 1)) if self.lag > 0 else jnp.zeros((0, self.num_particles), jnp.int32)), None

    def update(self, buf, view):
        if self.lag > 0:
            buf = lax.dynamic_update_index_in_dim(buf, view.step.ancestors, view.t % self.lag, 0)
        return buf, None

    def groups(self, buf, t):
        """Each particle's ancestor ``lag`` steps before ``t``."""
        return lag_ancestors(buf, t, self.lag, jnp.arange(self.num_particles, dtype=jnp.int32))


class HistoryCollector(NamedTuple):
    """Collector: the whole particle system (:class:`ParticleHistory` after :meth:`history`)."""

    num_particles: int

    def init(self, x0, log_w0, w0, y0):
        return (), (x0, log_w0, jnp.arange(self.num_particles, dtype=jnp.int32))

    def update(self, state, view):
        return state, (view.step.particles, view.step.log_weights, view.step.ancestors)

    @staticmethod
    def history(first, outputs) -> ParticleHistory:
        return ParticleHistory(*concat_first(first, outputs))


class MomentsCollector(NamedTuple):
    """Collector: filtering means :math:`\\sum_i W_t^i\\varphi(x_t^i)` with the Olsson–Douc lag-based
    standard errors (NaN when ``stderr`` is False)."""

    mean_fn: Callable
    num_particles: int
    lag: int
    stderr: bool

    def _lag(self):
        return LagCollector(self.num_particles, self.lag if self.stderr else 0)

    def _mean_and_se(self, w, x, groups):
        values = self.mean_fn(x)
        if self.stderr:
            return _weighted_mean_and_se_w(w, values, groups)
        mean = jax.tree_util.tree_map(lambda v: _wmean(w, v), values)
        return mean, jax.tree_util.tree_map(lambda m: jnp.full(jnp.shape(m), jnp.nan, jnp.result_type(m)), mean)

    def init(self, x0, log_w0, w0, y0):
        buf, _ = self._lag().init(x0, log_w0, w0, y0)
        return buf, self._mean_and_se(w0, x0, jnp.arange(self.num_particles, dtype=jnp.int32))

    def update(self, buf, view):
        lag = self._lag()
        if lag.lag > 0:
            buf, _ = lag.update(buf, view)
            groups = lag.groups(buf, view.t)
        else:
            groups = jnp.arange(self.num_particles, dtype=jnp.int32)
        return buf, self._mean_and_se(view.step.weights, view.step.particles, groups)


def _filter(key, fk, observations, num_particles, scheme, threshold, keep_history, mean_fn, lag, filtering_stderr):
    n = num_particles
    if mean_fn is not _identity:
        mean_fn = jax.vmap(mean_fn)
    collectors = [EveCollector(n), MomentsCollector(mean_fn, n, lag, filtering_stderr), EssCollector()]
    if keep_history:
        collectors.append(HistoryCollector(n))
    out = forward_scan(
        key, fk, observations, n, collectors, resample=resampler_from_weights(scheme), threshold=threshold
    )
    eve = out.states[0]
    means, ses = concat_first(out.first[1], out.outputs[1])
    ess = concat_first(out.first[2], out.outputs[2])
    loglik = jnp.sum(out.increments)
    num_res = out.num_resampling
    se_log, rel_var = _lee_whiteley(out.log_weights, eve, num_res, n)
    se_log = jnp.where(jnp.isfinite(loglik), se_log, jnp.nan)
    info = {"relative_variance": rel_var, "num_resampling": num_res, "degenerate_step": out.degenerate_step}
    ll = without_ess(Estimate(loglik, se_log, n, None, info))
    fmean = without_ess(Estimate(means, ses, n))
    history = HistoryCollector.history(out.first[3], out.outputs[3]) if keep_history else None
    return FilterResult(
        ll, fmean, ess, out.resampled, out.increments, out.particles, out.log_weights, history
    )


def _wmean(w, v):
    v = v.astype(w.dtype)
    return jnp.tensordot(w, v, axes=(0, 0))


def _weighted_mean_and_se_w(w, values, groups):
    n = w.shape[0]

    def one(v):
        v = v.astype(w.dtype)
        wb = w.reshape((n,) + (1,) * (v.ndim - 1))
        mean = jnp.sum(wb * v, axis=0)
        per_group = jax.ops.segment_sum(wb * (v - mean), groups, num_segments=n)
        return mean, jnp.sqrt(jnp.sum(per_group**2, axis=0))

    pairs = jax.tree_util.tree_map(one, values)
    is_pair = lambda p: isinstance(p, tuple)  # noqa: E731
    return (
        jax.tree_util.tree_map(lambda p: p[0], pairs, is_leaf=is_pair),
        jax.tree_util.tree_map(lambda p: p[1], pairs, is_leaf=is_pair),
    )


def sanitize_log_weights(lw):
    """NaN log-weights become ``-inf`` (weight zero).

    Example:
      >>> import jax.numpy as jnp
      >>> sanitize_log_weights(jnp.array([0.0, jnp.nan])).tolist()
      [0.0, -inf]
    """
    return jnp.where(jnp.isnan(lw), -jnp.inf, lw)


_sanitize = sanitize_log_weights


@functools.lru_cache(maxsize=64)
def _jitted(fk, num_particles, scheme, threshold, keep_history, mean_fn, lag, filtering_stderr):
    return jax.jit(
        functools.partial(
            _filter,
            fk=fk,
            num_particles=num_particles,
            scheme=scheme,
            threshold=threshold,
            keep_history=keep_history,
            mean_fn=mean_fn,
            lag=lag,
            filtering_stderr=filtering_stderr,
        )
    )


def _identity(x):
    return x


def check_inputs(fk, observations, num_particles, threshold=None):
    """Shape/range checks shared by the filters and smoothers (``ulam.checks`` vocabulary).

    ``num_particles`` an integer >= 2; ``threshold`` (the ESS fraction) in (0, 1];
    ``observations`` a pytree of arrays with one leading time axis, no infinite entry
    (NaN marks a missing observation), shaped as the model expects.

    Example:
      >>> import jax, jax.numpy as jnp
      >>> from ulam.smc import LinearGaussianModel, linear_gaussian_ssm, simulate
      >>> lg = LinearGaussianModel.scalar(0.9, 0.6, 1.0, 1.0)
      >>> ssm = linear_gaussian_ssm(lg)
      >>> _, y = simulate(jax.random.key(0), ssm, 8)
      >>> from ulam.smc import Bootstrap
      >>> from ulam.smc.filtering import check_inputs
      >>> check_inputs(Bootstrap(ssm), y, 1)
      Traceback (most recent call last):
      ...
      ValueError: num_particles: expected an integer >= 2, got 1
    """
    checks.count("num_particles", num_particles, minimum=2)
    if threshold is not None:
        checks.in_interval(
            "ess_threshold", threshold, 0.0, 1.0, low_open=True,
            do="resample when ESS < threshold * N; 1 resamples at every step",
        )
    leaves = jax.tree_util.tree_leaves(observations)
    if not leaves:
        raise ValueError("observations: expected an array (or pytree of arrays) with a leading time axis, got nothing")
    lengths = {jnp.shape(v)[0] if jnp.ndim(v) else None for v in leaves}
    if None in lengths or len(lengths) != 1:
        raise ValueError(
            "observations: every leaf needs the same leading time axis of length T >= 1; got shapes "
            f"{[jnp.shape(v) for v in leaves]}"
        )
    if lengths.pop() < 1:
        raise ValueError("observations: the time axis is empty (T = 0)")
    for v in leaves:
        # NumPy, not jnp: under an outer jit even a closed-over constant becomes a tracer through jnp.
        if checks.is_concrete(v) and jnp.issubdtype(jnp.result_type(v), jnp.inexact) and np.isinf(np.asarray(v)).any():
            raise ValueError(
                checks.message(
                    "observations", "finite values or NaN (a missing observation)", "an infinite entry",
                    "replace it with NaN to mark it missing",
                )
            )
    ssm = getattr(fk, "ssm", None) or getattr(getattr(fk, "fk", None), "ssm", None)
    expected = getattr(ssm, "observation_shape", None)
    if expected is not None:
        if len(leaves) != 1 or tuple(jnp.shape(leaves[0])[1:]) != tuple(expected):
            raise ValueError(
                f"observations: the model expects each y_t of shape {tuple(expected)}, so observations of shape "
                f"(T, {', '.join(map(str, expected))}){',' if len(expected) == 1 else ''}; got "
                f"{[jnp.shape(v) for v in leaves]}. Stack the observations along a leading time axis."
            )
    # The potential must be one number per particle: a y_t of the wrong shape
    # usually broadcasts into a vector here.
    y0 = jax.tree_util.tree_map(lambda v: jax.ShapeDtypeStruct(jnp.shape(v)[1:], jnp.result_type(v)), observations)
    y0_shape = jax.tree_util.tree_map(lambda v: v.shape, y0)
    try:
        shapes = _potential_shape(fk, y0, num_particles)
    except (TypeError, ValueError) as err:
        raise ValueError(
            f"observations: evaluating the model at y_0 of shape {y0_shape} failed "
            f"({err}); check the observation shape the model expects"
        ) from err
    if shapes.shape != (num_particles,):
        raise ValueError(
            f"observations: the log-potential at t=0 has shape {shapes.shape}, expected ({num_particles},), one "
            f"value per particle; y_0 has shape {y0_shape}: is the observation array "
            "shaped (T, *observation_shape)?"
        )


def _potential_shape(fk, y0, num_particles):
    """The shape of the t=0 log-potential, cached per model and observation type (a trace costs milliseconds)."""
    leaves, treedef = jax.tree_util.tree_flatten(y0)
    try:
        return _potential_shape_cached(fk, treedef, tuple((v.shape, str(v.dtype)) for v in leaves), num_particles)
    except TypeError as err:
        if "unhashable" not in str(err):
            raise
        return _eval_potential_shape(fk, y0, num_particles)


@functools.lru_cache(maxsize=256)
def _potential_shape_cached(fk, treedef, specs, num_particles):
    y0 = jax.tree_util.tree_unflatten(treedef, [jax.ShapeDtypeStruct(shape, dtype) for shape, dtype in specs])
    return _eval_potential_shape(fk, y0, num_particles)


def _eval_potential_shape(fk, y0, num_particles):
    return jax.eval_shape(
        lambda k, y: fk.initial_log_potential(fk.initial(k, y, num_particles), y), jax.random.key(0), y0
    )


def _is_concrete(tree) -> bool:
    return not any(isinstance(v, jax.core.Tracer) for v in jax.tree_util.tree_leaves(tree))


def check_filter_result(result: FilterResult) -> FilterResult:
    """Raise a ``ValueError`` naming the first step whose weights were all zero (no-op under tracing)."""
    raise_if_degenerate(result.log_likelihood.info.get("degenerate_step"))
    return result


def raise_if_degenerate(step) -> None:
    """Raise the all-weights-zero error for ``step >= 0`` (a concrete value; no-op under tracing).

    Example:
      >>> from ulam.smc.filtering import raise_if_degenerate
      >>> raise_if_degenerate(-1)  # no step with all weights zero: nothing happens
    """
    if step is not None and _is_concrete(step) and int(step) >= 0:
        raise ValueError(
            f"all particle weights are zero (every log-potential is -inf or NaN) at time step {int(step)}; "
            "likely causes: an observation far outside the model's support or an outlier, a log-density that "
            "returns NaN/-inf, observations in the wrong units or shape, or too few particles for a peaked "
            "likelihood (try more particles, a guided proposal, or a heavier-tailed observation model)"
        )


def run_filter(
    key: jax.Array,
    fk,
    observations,
    num_particles: int,
    *,
    resampling="systematic",
    ess_threshold: float = 0.5,
    keep_history: bool = False,
    mean_fn: Callable = _identity,
    variance_lag: int = 8,
    filtering_stderr: bool = True,
) -> FilterResult:
    r"""Run a particle filter on a Feynman–Kac model in one ``lax.scan``.

    Args:
      key: a JAX key.
      fk: a :class:`Bootstrap`, :class:`Guided`, :class:`Auxiliary` or :class:`FeynmanKac` model.
      observations: ``(T, ...)`` array or pytree of arrays with a leading time axis (NaN = missing).
      num_particles: ``N >= 2``.
      resampling: a scheme name (``"systematic"``, ``"stratified"``, ``"multinomial"``,
        ``"residual"``, ``"ssp"``) or a function ``key, log_weights, num -> ancestors``.
      ess_threshold: resample when :math:`\mathrm{ESS} < \text{threshold}\cdot N`; 1 resamples every step.
      keep_history: also return the particle history (for FFBS and genealogy tracing).
      mean_fn: the test function :math:`\varphi` of the filtering means (per-particle array
        in, array out; vmapped), identity by default.
      variance_lag: the lag :math:`\lambda` of the Olsson–Douc standard errors of the filtering means.
      filtering_stderr: compute those standard errors (a scatter-add and ``variance_lag``
        gathers per step); ``False`` leaves them NaN and runs the lean path. Under an outer
        ``jax.jit`` whatever the caller does not use (e.g. everything but the log-likelihood)
        is removed by dead-code elimination anyway.

    Returns:
      a :class:`FilterResult`. The log-likelihood's standard error is Lee & Whiteley's (2018).

    The call is jit-compiled and cached per model and settings; it also runs under
    ``jax.vmap``/``jax.jit`` (e.g. vmapped over parameters that the model closes over).

    Example:
      >>> import jax, jax.numpy as jnp
      >>> from ulam.smc import LinearGaussianModel, linear_gaussian_ssm, simulate
      >>> lg = LinearGaussianModel.scalar(0.9, 0.6, 1.0, 1.0)
      >>> ssm = linear_gaussian_ssm(lg)
      >>> _, y = simulate(jax.random.key(0), ssm, 8)
      >>> from ulam.smc import Bootstrap, run_filter, kalman_filter
      >>> out = run_filter(jax.random.key(1), Bootstrap(ssm), y, 256)
      >>> ll = out.log_likelihood
      >>> bool(abs(ll.mean - kalman_filter(lg, y).log_likelihood) < 5 * ll.stderr + 0.05)
      True
    """
    checks.prng_key(key)
    check_inputs(fk, observations, num_particles, ess_threshold)
    checks.count("variance_lag", variance_lag, minimum=0)
    get_resampler(resampling)
    observations = jax.tree_util.tree_map(jnp.asarray, observations)
    try:
        fn = _jitted(
            fk, num_particles, resampling, float(ess_threshold), bool(keep_history), mean_fn, variance_lag,
            bool(filtering_stderr),
        )
    except TypeError:  # an unhashable model: run without the compile cache
        fn = functools.partial(
            _filter,
            fk=fk,
            num_particles=num_particles,
            scheme=resampling,
            threshold=float(ess_threshold),
            keep_history=bool(keep_history),
            mean_fn=mean_fn,
            lag=variance_lag,
            filtering_stderr=bool(filtering_stderr),
        )
    return check_filter_result(fn(key, observations=observations))
