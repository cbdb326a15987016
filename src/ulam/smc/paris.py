r"""PaRIS online smoothing, conditional SMC, particle Gibbs and PaRIS particle Gibbs (PPG).

All four are one forward scan (:func:`ulam.smc.filtering.forward_scan`, the filters' scan) observed by
collectors (:class:`PaRISCollector`, genealogy, history), with :func:`conditional_step` as the step of
conditional SMC; :func:`forward_pass` assembles them:

* **PaRIS** (Olsson & Westerborn 2017, *Efficient particle-based online
  smoothing in general hidden Markov models: the PaRIS algorithm*, Bernoulli 23)
  estimates a smoothing expectation of an additive functional
  :math:`h(x_{0:T-1}) = h_0(x_0, y_0) + \sum_{t=1}^{T-1}\tilde h(x_{t-1}, x_t, y_t)`
  online: each particle carries :math:`\tau_t^i`, with
  :math:`\tau_0^i = h_0(x_0^i)` and

  .. math:: \tau_{t}^i = \frac1{\tilde N}\sum_{j=1}^{\tilde N}
            \big[\tau_{t-1}^{J^{ij}} + \tilde h(x_{t-1}^{J^{ij}}, x_t^i, y_t)\big],
            \quad J^{ij}\sim W_{t-1}^{l}\, m(x_{t-1}^l, x_t^i),

  and the estimate is :math:`\sum_i W_{T-1}^i \tau_{T-1}^i`. Cost
  :math:`O(N\tilde N k)` per step with the MCMC/hybrid backward kernels of Dau &
  Chopin (2023) (``backward="auto"`` for :math:`N > 256`; see
  :mod:`ulam.smc.backward`), :math:`O(N^2)` with the exact one. Its bias is
  :math:`O(T/N)` (self-normalized importance sampling).
* **Conditional SMC** (Andrieu, Doucet & Holenstein 2010): particle ``N-1`` is
  frozen to a reference path; with ancestor sampling (Lindsten, Jordan & Schön
  2014) its ancestor is redrawn from :math:`W_{t-1}^j m(x_{t-1}^j, x^*_t)`.
  New paths come from the genealogy or from backward sampling (Whiteley 2010).
* **PPG** (Cardoso, Janati El Idrissi, Le Corff, Moulines & Olsson 2023,
  *State and parameter learning with PaRIS particle Gibbs*, ICML): PaRIS run on
  a conditional SMC particle system; the next reference is traced back through
  the PaRIS backward indices, :math:`b_{T-1}\sim W_{T-1}`,
  :math:`b_{t-1} = J_t^{b_t, U}`, :math:`U\sim\mathrm{Unif}\{1..\tilde N\}`.
  This is a Markov kernel that leaves the smoothing law invariant, so the
  roll-out average :math:`\frac1{k-k_0}\sum_{l=k_0+1}^{k}\Pi^{(l)}` is unbiased
  at stationarity and its bias decays geometrically in the burn-in :math:`k_0`.

Example:
  >>> import jax
  >>> from ulam.smc import LinearGaussianModel, linear_gaussian_ssm, simulate, paris
  >>> lg = LinearGaussianModel.scalar(0.9, 0.6, 1.0, 1.0)
  >>> ssm = linear_gaussian_ssm(lg)
  >>> _, y = simulate(jax.random.key(0), ssm, 30)
  >>> est = paris(jax.random.key(1), ssm, y, 200, lambda xp, x, yt: xp * x).estimate
"""

from __future__ import annotations

import math
from typing import Any, Callable, NamedTuple, Optional

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from ulam import checks
from ulam.estimate import Estimate
from ulam.smc.reporting import describe_array, describe_estimate, result_repr, table, without_ess
from ulam.smc.backward import AUTO_EXACT_BELOW, backward_indices, backward_sample, resolve_method, take_particles
from ulam.smc.filtering import (
    HistoryCollector,
    LagCollector,
    ParticleHistory,
    check_inputs,
    forward_scan,
    lag_ancestors,
    normalize,
    propagate,
    raise_if_degenerate,
    sanitize_log_weights,
    weighted_mean_and_se,
)
from ulam.smc.models import Bootstrap, StateSpaceModel
from ulam.smc.resampling import get_resampler, resampler_from_weights

__all__ = [
    "PaRISResult",
    "paris",
    "conditional_smc",
    "particle_gibbs",
    "ppg_step",
    "ppg",
    "PPGResult",
    "trace_reference",
    "initial_reference",
    "forward_pass",
    "ForwardPass",
    "PaRISCollector",
    "conditional_step",
    "paris_method",
]


class PaRISResult(NamedTuple):
    """PaRIS output.

    Attributes:
      estimate: :class:`~ulam.Estimate` of the smoothing expectation of the additive functional.
        With one run its ``stderr`` is NaN: the genealogy-based estimators (Lee & Whiteley 2018;
        Olsson & Douc 2019's lag-based one applied to the terminal weighted sum of the
        :math:`\tau^i`) ignore the backward-sampling dependence between the :math:`\tau^i` and
        were measured to under-state the replicate spread by more than 10x, and the published
        PaRIS-specific online estimator (Mastrototaro & Olsson, an ALVar-type estimator that
        propagates per-particle variance statistics alongside :math:`\tau`) is not implemented
        yet. ``num_replicates >= 2`` runs independent PaRIS filters and reports their average
        with the replicate standard error (calibrated; ``info["single_run_stderr_lagged"]`` keeps
        the lag-based heuristic for reference only).
      statistics: final :math:`\\tau_{T-1}^i` (pytree, leading axis N).
      particles, log_weights: the final particle system.
      log_likelihood: the filter's log-likelihood estimate (plain value).
      history: particle history when requested (particles, log-weights, ancestors).
      backward: ``(T-1, N, Ñ)`` PaRIS backward indices when requested (``backward[t-1]`` points into time t-1).

    The estimate's ``ess`` is ``None`` (no effective sample size describes a PaRIS estimate).
    Its ``info``: with one run, ``log_likelihood`` (``()``), ``degenerate_step`` (``()`` int, -1 if
    none) and ``single_run_stderr_lagged`` (shape of the estimate); with ``R`` replicates,
    ``log_likelihood`` (``(R,)``) and ``num_replicates`` (``()``).

    Example:
      >>> import jax, jax.numpy as jnp
      >>> from ulam.smc import LinearGaussianModel, linear_gaussian_ssm, simulate
      >>> lg = LinearGaussianModel.scalar(0.9, 0.6, 1.0, 1.0)
      >>> ssm = linear_gaussian_ssm(lg)
      >>> _, y = simulate(jax.random.key(0), ssm, 8)
      >>> from ulam.smc import paris
      >>> r = paris(jax.random.key(1), ssm, y, 16, lambda xp, x, yt: x)
      >>> r.statistics.shape, r.estimate.ess is None
      ((16,), True)
    """

    estimate: Estimate
    statistics: Any
    particles: Any
    log_weights: jax.Array
    log_likelihood: jax.Array
    history: Optional[ParticleHistory]
    backward: Optional[jax.Array]

    def __repr__(self) -> str:
        return result_repr(
            "PaRISResult",
            {
                "estimate": describe_estimate(self.estimate),
                "particles": self.log_weights.shape[-1],
                "log_likelihood": describe_array(self.log_likelihood),
                "history": "kept" if self.history is not None else "not kept",
                "backward": "kept" if self.backward is not None else "not kept",
            },
        )

    def summary(self, plain: bool = False):
        """The estimate (one row per entry) and the log-likelihood."""
        return table(_estimate_rows("estimate", self.estimate) + [
            {"quantity": "log_likelihood", "value": float(np.mean(self.log_likelihood)), "stderr": None}
        ], plain=plain)


def _zeros_like_out(additive_fn, x0_one, y0):
    shape = jax.eval_shape(additive_fn, x0_one, x0_one, y0)
    return jax.tree_util.tree_map(lambda s: jnp.zeros(s.shape, s.dtype), shape)


class PaRISCollector(NamedTuple):
    r"""Collector of the PaRIS statistics :math:`\tau_t^i` (module doc), observing the forward scan.

    At each step it draws :math:`\tilde N` backward indices per particle (view key 0) and
    averages :math:`\tau_{t-1}^{J} + \tilde h(x_{t-1}^J, x_t^i, y_t)`; with the MCMC/hybrid
    backward kernels each chain starts at the particle's ancestor (the reference particle's
    at its exact ancestor draw, ``view.reference_ancestor``). Output per step: the
    ``(N, Ñ)`` backward indices when ``keep_backward``.
    """

    ssm: StateSpaceModel
    additive_fn: Callable
    initial_fn: Optional[Callable]
    num_particles: int
    num_backward: int
    method: str
    max_trials: int = 32
    num_mcmc_steps: int = 2
    keep_backward: bool = False

    def init(self, x0, log_w0, w0, y0):
        n = self.num_particles
        if self.initial_fn is None:
            x_one = jax.tree_util.tree_map(lambda v: v[0], x0)
            tau0 = jax.tree_util.tree_map(
                lambda z: jnp.zeros((n,) + z.shape, z.dtype), _zeros_like_out(self.additive_fn, x_one, y0)
            )
        else:
            tau0 = jax.vmap(self.initial_fn, in_axes=(0, None))(x0, y0)
        return tau0, None

    @property
    def needs_start(self) -> bool:
        return self.method in ("mcmc", "hybrid")

    def update(self, tau, view):
        n, nb = self.num_particles, self.num_backward
        p = view.step
        x, lw = view.previous_particles, view.previous_log_weights
        targets = jax.tree_util.tree_map(lambda v: jnp.repeat(v, nb, axis=0), p.particles)
        start = None
        if self.needs_start:
            # Each particle's ancestor is a draw from the backward kernel (module doc of
            # ulam.smc.backward); the reference's is not, so it starts from an exact draw.
            anc = p.ancestors if view.reference_ancestor is None else p.ancestors.at[n - 1].set(view.reference_ancestor)
            start = jnp.repeat(anc, nb)
        J = backward_indices(
            view.keys[0], self.ssm, lw, x, targets, method=self.method, max_trials=self.max_trials,
            start=start, num_mcmc_steps=self.num_mcmc_steps,
        )
        h = jax.vmap(self.additive_fn, in_axes=(0, 0, None))(take_particles(x, J), targets, view.y)
        tau_new = jax.tree_util.tree_map(
            lambda tb, hv: jnp.mean((jnp.take(tb, J, axis=0) + hv).reshape((n, nb) + hv.shape[1:]), 1), tau, h
        )
        return tau_new, (J.reshape(n, nb) if self.keep_backward else None)


def conditional_step(ssm, reference, num_particles, *, resample, threshold, ancestor_sampling, exact_reference_ancestor):
    r"""The conditional SMC step for :func:`ulam.smc.filtering.forward_scan`: particle ``N-1`` is the reference.

    The ``N-1`` free particles resample multinomially; the reference keeps its lineage or, with
    ``ancestor_sampling`` (Lindsten, Jordan & Schön 2014), draws its ancestor from the backward
    kernel :math:`W_{t-1}^j m(x_{t-1}^j, x^*_t)`; that exact draw is also made (and reported to the
    collectors) when ``exact_reference_ancestor`` (PaRIS with MCMC backward kernels).

    Example:
      >>> import jax, jax.numpy as jnp
      >>> from ulam.smc import LinearGaussianModel, linear_gaussian_ssm
      >>> ssm = linear_gaussian_ssm(LinearGaussianModel.scalar(0.9, 0.6, 1.0, 1.0))
      >>> step = conditional_step(ssm, jnp.zeros(5), 8, resample=None, threshold=1.0,
      ...                         ancestor_sampling=True, exact_reference_ancestor=False)
      >>> callable(step)
      True
    """
    n = num_particles
    multinomial = resampler_from_weights("multinomial")

    def step(fk, ks, x, lw, w, y, t):
        k_res, k_move, k_anc = ks[0], ks[1], ks[3]
        k_res, k_perm = jax.random.split(k_res)
        # Multinomial draws come sorted: shuffle before dropping the last one.
        a_free = jax.random.permutation(k_perm, multinomial(k_res, w, n))
        ref_t = jax.tree_util.tree_map(lambda r: r[t], reference)
        a_exact = None
        if ancestor_sampling or exact_reference_ancestor:
            a_exact = backward_indices(
                k_anc, ssm, lw, x, jax.tree_util.tree_map(lambda r: r[None], ref_t), method="exact"
            )[0]
        a_ref = a_exact if ancestor_sampling else jnp.int32(n - 1)
        forced = (a_free.at[n - 1].set(a_ref), jnp.full((n,), -math.log(n), lw.dtype))
        p = propagate(
            fk, k_res, k_move, x, lw, w, y, resample=resample, threshold=threshold, num_particles=n, ancestors=forced
        )
        # The reference was moved like the others; put it back and reweight its slot.
        x_new = jax.tree_util.tree_map(lambda v, r: v.at[n - 1].set(r), p.particles, ref_t)
        x_prev_ref = jax.tree_util.tree_map(lambda v: v[n - 1], p.previous)
        lg_ref = sanitize_log_weights(
            fk.log_potential(
                jax.tree_util.tree_map(lambda v: v[None], x_prev_ref),
                jax.tree_util.tree_map(lambda v: v[None], ref_t),
                y,
            )
        )[0]
        raw = (p.log_weights + p.log_increment).at[n - 1].set(-math.log(n) + lg_ref)
        lw_new, w_new, inc = normalize(raw)
        p = p._replace(particles=x_new, log_weights=lw_new, weights=w_new, log_increment=inc, all_zero=inc == -jnp.inf)
        return p, (a_exact if exact_reference_ancestor else None)

    return step


class ForwardPass(NamedTuple):
    """What :func:`forward_pass` returns (``tau`` is ``None`` without an additive functional)."""

    particles: Any
    log_weights: jax.Array
    tau: Any
    lagged_ancestors: jax.Array
    log_likelihood: jax.Array
    degenerate_step: jax.Array
    history: Optional[ParticleHistory]
    backward: Optional[jax.Array]


def forward_pass(
    key,
    ssm: StateSpaceModel,
    fk,
    observations,
    n: int,
    *,
    additive_fn: Optional[Callable],
    initial_fn: Optional[Callable],
    num_backward: int,
    backward_method: str,
    reference=None,
    ancestor_sampling: bool = False,
    keep_history: bool = False,
    keep_backward: bool = False,
    scheme="multinomial",
    threshold: float = 1.0,
    lag: int = 8,
    max_trials: int = 32,
    num_mcmc_steps: int = 2,
) -> ForwardPass:
    """One forward pass of (conditional) SMC observed by the PaRIS, genealogy and history collectors.

    The scan is :func:`ulam.smc.filtering.forward_scan`, the one the filters use; with
    ``reference`` its step is :func:`conditional_step`.

    Example:
      >>> import jax
      >>> from ulam.smc import LinearGaussianModel, linear_gaussian_ssm, simulate, Bootstrap
      >>> ssm = linear_gaussian_ssm(LinearGaussianModel.scalar(0.9, 0.6, 1.0, 1.0))
      >>> _, y = simulate(jax.random.key(0), ssm, 6)
      >>> out = forward_pass(jax.random.key(1), ssm, Bootstrap(ssm), y, 8, additive_fn=lambda xp, x, yt: x,
      ...                    initial_fn=None, num_backward=2, backward_method="exact")
      >>> out.tau.shape
      (8,)
    """
    resample = resampler_from_weights(scheme)
    conditional = reference is not None
    with_paris = additive_fn is not None
    idx = jnp.arange(n, dtype=jnp.int32)
    collectors = [LagCollector(n, lag)]
    paris_c = None
    if with_paris:
        paris_c = PaRISCollector(
            ssm, additive_fn, initial_fn, n, num_backward, backward_method, max_trials, num_mcmc_steps, keep_backward
        )
        collectors.append(paris_c)
    if keep_history:
        collectors.append(HistoryCollector(n))
    step_fn = initial_edit = None
    if conditional:
        step_fn = conditional_step(
            ssm, reference, n, resample=resample, threshold=threshold, ancestor_sampling=ancestor_sampling,
            exact_reference_ancestor=with_paris and paris_c.needs_start,
        )
        initial_edit = lambda x0: jax.tree_util.tree_map(lambda v, r: v.at[n - 1].set(r[0]), x0, reference)  # noqa: E731
    out = forward_scan(
        key, fk, observations, n, collectors, resample=resample, threshold=threshold, num_step_keys=4,
        split_initial_key=False, step_fn=step_fn, initial_fn=initial_edit,
    )
    num_steps = out.increments.shape[0]
    enoch = lag_ancestors(out.states[0], num_steps - 1, lag, idx) if lag > 0 else idx
    tau = out.states[1] if with_paris else None
    backward = out.outputs[1] if with_paris and keep_backward else None
    history = HistoryCollector.history(out.first[-1], out.outputs[-1]) if keep_history else None
    loglik = jnp.sum(out.increments)
    return ForwardPass(out.particles, out.log_weights, tau, enoch, loglik, out.degenerate_step, history, backward)


def paris_method(ssm, backward, num_particles, fk, threshold=1.0):
    r"""Resolve ``backward``; ``"auto"`` uses the MCMC backward kernel where ancestors are valid starts.

    With a bootstrap proposal and resampling at every step, :math:`(A^i, X_t^i)\sim W^j m(x^j,\cdot)`,
    so the ancestor is an exact backward-kernel draw (Dau & Chopin 2023) and ``"hybrid"`` (with a
    bound) or ``"mcmc"`` is exact in law at :math:`O(N\tilde N k)` cost; otherwise ``"auto"``
    keeps the rejection/exact samplers of :func:`ulam.smc.backward_indices`.
    """
    if backward == "auto" and num_particles > AUTO_EXACT_BELOW and isinstance(fk, Bootstrap) and threshold >= 1.0:
        resolve_method(ssm, "exact", num_particles)  # the transition-density check
        return "hybrid" if ssm.transition_log_bound is not None else "mcmc"
    return resolve_method(ssm, backward, num_particles)


def _check_common(ssm, observations, n, num_backward, fk):
    if not isinstance(ssm, StateSpaceModel):
        raise TypeError(checks.message("ssm", "a StateSpaceModel", type(ssm).__name__))
    check_inputs(fk, observations, n)
    checks.count("num_backward", num_backward)
    if ssm.transition_log_prob is None:
        raise ValueError("ssm.transition_log_prob: PaRIS and particle Gibbs need the transition density")


def _raise_if_degenerate(first_bad):
    raise_if_degenerate(first_bad)


def paris(
    key,
    ssm: StateSpaceModel,
    observations,
    num_particles: int,
    additive_fn: Callable,
    *,
    initial_fn: Optional[Callable] = None,
    num_backward: int = 2,
    backward: str = "auto",
    fk=None,
    resampling="multinomial",
    ess_threshold: float = 1.0,
    keep_history: bool = False,
    keep_backward: bool = False,
    variance_lag: int = 8,
    max_trials: int = 32,
    num_replicates: int = 1,
    num_mcmc_steps: int = 2,
) -> PaRISResult:
    r"""PaRIS estimate of :math:`\mathbb E[h_0(X_0,y_0) + \sum_{t\ge1}\tilde h(X_{t-1}, X_t, y_t)\mid y_{0:T-1}]`.

    Args:
      key: a JAX key.
      ssm: the state-space model (needs ``transition_log_prob``; ``transition_log_bound`` enables
        the :math:`O(N)` rejection backward sampler).
      observations: ``(T, ...)`` (NaN = missing).
      num_particles: ``N >= 2``.
      additive_fn: ``x_prev, x, y_t -> h~`` per particle pair (any pytree of arrays).
      initial_fn: ``x0, y0 -> h_0`` (zeros of the same structure by default).
      num_backward: :math:`\tilde N`, backward draws per particle (2 is the usual choice).
      backward: ``"exact"`` (:math:`O(N^2)` per step, for small N), ``"rejection"`` (exact law,
        exact fallback after ``max_trials``: can approach :math:`O(N^2)` with a loose bound),
        ``"mcmc"`` (independent-MH backward kernel of Dau & Chopin 2023 started at each particle's
        ancestor, ``num_mcmc_steps`` moves per draw: :math:`O(N\tilde N k)`), ``"hybrid"``
        (2 rejection tries, then MH) or ``"auto"``: exact for :math:`N\le 256`; for larger N hybrid
        (with a bound) or mcmc when ``fk`` is the bootstrap filter resampling every step (the ancestor
        is then an exact backward-kernel draw, see :mod:`ulam.smc.backward`), else rejection/exact.
      fk: the forward Feynman–Kac model, :class:`Bootstrap` of ``ssm`` by default.
      resampling, ess_threshold: resampling scheme and ESS threshold (every step by default).
      num_replicates: independent PaRIS runs (vmapped) averaged into the estimate; with 1 the
        estimate's ``stderr`` is NaN (see :class:`PaRISResult`). With more, every other field
        gains a leading replicate axis.

    Returns:
      a :class:`PaRISResult`.

    Example:
      >>> import jax, jax.numpy as jnp
      >>> from ulam.smc import LinearGaussianModel, linear_gaussian_ssm, simulate
      >>> lg = LinearGaussianModel.scalar(0.9, 0.6, 1.0, 1.0)
      >>> ssm = linear_gaussian_ssm(lg)
      >>> _, y = simulate(jax.random.key(0), ssm, 8)
      >>> from ulam.smc import paris, rts_smoother
      >>> r = paris(jax.random.key(1), ssm, y, 64, lambda xp, x, yt: x, initial_fn=lambda x0, y0: x0, num_replicates=4)
      >>> truth = float(jnp.sum(rts_smoother(lg, y).smoothed_means))
      >>> bool(abs(r.estimate.mean - truth) < 5 * r.estimate.stderr + 0.1)
      True
    """
    checks.prng_key(key)
    fk = Bootstrap(ssm) if fk is None else fk
    _check_common(ssm, observations, num_particles, num_backward, fk)
    check_inputs(fk, observations, num_particles, ess_threshold)
    checks.count("num_replicates", num_replicates)
    checks.count("variance_lag", variance_lag, minimum=0)
    get_resampler(resampling)
    method = paris_method(ssm, backward, num_particles, fk, float(ess_threshold))

    def once(k):
        x, lw, tau, enoch, loglik, first_bad, history, back = forward_pass(
            k,
            ssm,
            fk,
            observations,
            num_particles,
            additive_fn=additive_fn,
            initial_fn=initial_fn,
            num_backward=num_backward,
            backward_method=method,
            keep_history=keep_history,
            keep_backward=keep_backward,
            scheme=resampling,
            threshold=float(ess_threshold),
            lag=variance_lag,
            max_trials=max_trials,
            num_mcmc_steps=num_mcmc_steps,
        )
        mean, se = weighted_mean_and_se(lw, tau, enoch)
        return mean, se, tau, x, lw, loglik, first_bad, history, back

    if num_replicates == 1:
        mean, se, tau, x, lw, loglik, first_bad, history, back = once(key)
        _raise_if_degenerate(first_bad)
        nan = jax.tree_util.tree_map(lambda m: jnp.full(jnp.shape(m), jnp.nan, jnp.result_type(m)), mean)
        info = {"log_likelihood": loglik, "degenerate_step": first_bad, "single_run_stderr_lagged": se}
        est = without_ess(Estimate(mean, nan, num_particles, info=info))
    else:
        mean, se, tau, x, lw, loglik, first_bad, history, back = jax.vmap(once)(jax.random.split(key, num_replicates))
        _raise_if_degenerate(jnp.max(first_bad) if _concrete(first_bad) else first_bad[0])
        est = without_ess(Estimate.from_samples(mean))
        est.n = num_replicates * num_particles
        est.info = {"log_likelihood": loglik, "num_replicates": jnp.asarray(num_replicates)}
    return PaRISResult(est, tau, x, lw, loglik, history, back)


def _concrete(x) -> bool:
    return not isinstance(x, jax.core.Tracer)


def trace_reference(key, particles, log_weights, backward):
    r"""A path drawn through PaRIS backward indices: :math:`b_{T-1}\sim W_{T-1}`, :math:`b_{t-1}=J_t^{b_t,U}`.

    ``particles``: leaves ``(T, N, ...)``; ``log_weights``: final ``(N,)``;
    ``backward``: ``(T-1, N, Ñ)``. Returns the path (leaves ``(T, ...)``).

    Example:
      >>> import jax, jax.numpy as jnp
      >>> from ulam.smc import trace_reference
      >>> particles = jnp.arange(6.0).reshape(3, 2)  # T = 3, N = 2
      >>> back = jnp.zeros((2, 2, 1), jnp.int32)  # every backward index points to particle 0
      >>> trace_reference(jax.random.key(0), particles, jnp.array([0.0, -jnp.inf]), back).tolist()
      [0.0, 2.0, 4.0]
    """
    k_last, k_u = jax.random.split(key)
    num_steps = backward.shape[0] + 1
    num_backward = backward.shape[2]
    b_last = jax.random.categorical(k_last, log_weights).astype(jnp.int32)
    us = jax.random.randint(k_u, (num_steps - 1,), 0, num_backward)

    def step(b, inputs):
        J_t, u = inputs
        b_prev = J_t[b, u]
        return b_prev, b_prev

    _, bs = lax.scan(step, b_last, (backward, us), reverse=True)
    b_all = jnp.concatenate([bs, b_last[None]], 0)
    return jax.tree_util.tree_map(lambda v: v[jnp.arange(num_steps), b_all], particles)


def ppg_step(
    key,
    ssm: StateSpaceModel,
    observations,
    reference,
    num_particles: int,
    additive_fn: Callable,
    *,
    initial_fn: Optional[Callable] = None,
    num_backward: int = 2,
    backward: str = "auto",
    fk=None,
    max_trials: int = 32,
):
    r"""One PPG iteration: conditional SMC + PaRIS; returns ``(Pi, new_reference, log_likelihood)``.

    ``Pi`` is the PaRIS estimate :math:`\sum_i W_{T-1}^i\tau_{T-1}^i` on the conditional particle
    system (Cardoso et al. 2023, Alg. 1); the new reference is traced through the
    backward indices (:func:`trace_reference`). Traceable: use inside ``jit``/``scan``.

    Example:
      >>> import jax, jax.numpy as jnp
      >>> from ulam.smc import LinearGaussianModel, linear_gaussian_ssm, simulate
      >>> lg = LinearGaussianModel.scalar(0.9, 0.6, 1.0, 1.0)
      >>> ssm = linear_gaussian_ssm(lg)
      >>> _, y = simulate(jax.random.key(0), ssm, 8)
      >>> from ulam.smc import ppg_step
      >>> ref = jnp.zeros(8)
      >>> pi, new_ref, ll = ppg_step(jax.random.key(1), ssm, y, ref, 16, lambda xp, x, yt: x)
      >>> new_ref.shape
      (8,)
    """
    fk = Bootstrap(ssm) if fk is None else fk
    method = paris_method(ssm, backward, num_particles, fk)
    k_fwd, k_trace = jax.random.split(key)
    n = num_particles
    x, lw, tau, _, loglik, _, history, back = forward_pass(
        k_fwd,
        ssm,
        fk,
        observations,
        n,
        additive_fn=additive_fn,
        initial_fn=initial_fn,
        num_backward=num_backward,
        backward_method=method,
        reference=reference,
        keep_history=True,
        keep_backward=True,
        lag=0,
        max_trials=max_trials,
    )
    w = jax.nn.softmax(lw)
    pi = jax.tree_util.tree_map(lambda v: jnp.tensordot(w, v, axes=(0, 0)), tau)
    new_ref = trace_reference(k_trace, history.particles, lw, back)
    return pi, new_ref, loglik


class PPGResult(NamedTuple):
    """PPG output: ``estimate`` (roll-out average), per-iteration estimates ``iterates`` and the last ``reference``.

    ``estimate.ess`` is the autocorrelation-corrected ESS of the kept iterates (leaves shaped
    like the estimate); ``estimate.info["num_particles"]`` (int) is the particle count per pass.

    Example:
      >>> import jax, jax.numpy as jnp
      >>> from ulam.smc import LinearGaussianModel, linear_gaussian_ssm, simulate
      >>> lg = LinearGaussianModel.scalar(0.9, 0.6, 1.0, 1.0)
      >>> ssm = linear_gaussian_ssm(lg)
      >>> _, y = simulate(jax.random.key(0), ssm, 8)
      >>> from ulam.smc import ppg
      >>> r = ppg(jax.random.key(1), ssm, y, 16, lambda xp, x, yt: x, num_iterations=3, burn_in=1)
      >>> r.iterates.shape, r.reference.shape
      ((3,), (8,))
    """

    estimate: Estimate
    iterates: Any
    reference: Any

    def __repr__(self) -> str:
        return result_repr(
            "PPGResult",
            {
                "estimate": describe_estimate(self.estimate),
                "iterations": jax.tree_util.tree_leaves(self.iterates)[0].shape[0],
                "reference": describe_array(self.reference),
            },
        )

    def summary(self, plain: bool = False):
        """The roll-out estimate, one row per entry, with its standard error and ESS."""
        return table(_estimate_rows("estimate", self.estimate), plain=plain)


def _estimate_rows(name, est):
    rows = []
    flat_m = jax.tree_util.tree_leaves(est.mean)
    flat_s = jax.tree_util.tree_leaves(est.stderr)
    flat_e = jax.tree_util.tree_leaves(est.ess)
    for j, (m, se) in enumerate(zip(flat_m, flat_s)):
        m, se = np.asarray(m, dtype=float).ravel(), np.asarray(se, dtype=float).ravel()
        e = np.asarray(flat_e[j], dtype=float).ravel() if j < len(flat_e) else None
        for i in range(min(m.size, 20)):
            label = name if m.size == 1 and len(flat_m) == 1 else f"{name}[{j},{i}]" if len(flat_m) > 1 else f"{name}[{i}]"
            row = {"quantity": label, "value": float(m[i]), "stderr": float(se[i])}
            if e is not None:
                row["ess"] = float(e[min(i, e.size - 1)])
            rows.append(row)
    return rows


def initial_reference(key, ssm, observations, num_particles, *, fk=None, num_backward=2, backward="auto", max_trials=32):
    """A first reference path: one unconditional PaRIS pass traced back through its backward indices.

    Example:
      >>> import jax, jax.numpy as jnp
      >>> from ulam.smc import LinearGaussianModel, linear_gaussian_ssm, simulate
      >>> lg = LinearGaussianModel.scalar(0.9, 0.6, 1.0, 1.0)
      >>> ssm = linear_gaussian_ssm(lg)
      >>> _, y = simulate(jax.random.key(0), ssm, 8)
      >>> from ulam.smc import initial_reference
      >>> initial_reference(jax.random.key(1), ssm, y, 16).shape
      (8,)
    """
    fk = Bootstrap(ssm) if fk is None else fk
    method = paris_method(ssm, backward, num_particles, fk)
    k1, k2 = jax.random.split(key)
    zero = lambda xp, x, y: jnp.zeros(())  # noqa: E731
    x, lw, _, _, _, first_bad, history, back = forward_pass(
        k1,
        ssm,
        fk,
        observations,
        num_particles,
        additive_fn=zero,
        initial_fn=None,
        num_backward=num_backward,
        backward_method=method,
        keep_history=True,
        keep_backward=True,
        lag=0,
        max_trials=max_trials,
    )
    return trace_reference(k2, history.particles, lw, back)


def ppg(
    key,
    ssm: StateSpaceModel,
    observations,
    num_particles: int,
    additive_fn: Callable,
    *,
    num_iterations: int,
    burn_in: int,
    initial_fn: Optional[Callable] = None,
    reference=None,
    num_backward: int = 2,
    backward: str = "auto",
    fk=None,
    max_trials: int = 32,
) -> PPGResult:
    r"""PaRIS particle Gibbs with roll-out averaging (Cardoso et al. 2023).

    Runs ``num_iterations`` PPG iterations from ``reference`` (or from
    :func:`initial_reference`) and averages the PaRIS estimates of iterations
    ``burn_in+1 .. num_iterations``:
    :math:`\Pi_{k_0,k} = \frac1{k-k_0}\sum_{l=k_0+1}^{k}\Pi^{(l)}`.
    The standard error treats the kept iterates as a Markov chain (batch-free
    initial-monotone autocorrelation sum over the iterates); with few iterates it is rough.

    Returns a :class:`PPGResult` whose ``reference`` can seed the next call (Markovian
    use in learning).

    Example:
      >>> import jax, jax.numpy as jnp
      >>> from ulam.smc import LinearGaussianModel, linear_gaussian_ssm, simulate
      >>> lg = LinearGaussianModel.scalar(0.9, 0.6, 1.0, 1.0)
      >>> ssm = linear_gaussian_ssm(lg)
      >>> _, y = simulate(jax.random.key(0), ssm, 8)
      >>> from ulam.smc import ppg
      >>> r = ppg(jax.random.key(1), ssm, y, 16, lambda xp, x, yt: x, num_iterations=4, burn_in=1)
      >>> r.estimate.mean.shape
      ()
    """
    checks.prng_key(key)
    fk = Bootstrap(ssm) if fk is None else fk
    _check_common(ssm, observations, num_particles, num_backward, fk)
    checks.count("num_iterations", num_iterations)
    checks.count("burn_in", burn_in, minimum=0)
    if burn_in >= num_iterations:
        raise ValueError(
            checks.message("burn_in", f"an integer < num_iterations = {num_iterations}", burn_in, "raise num_iterations")
        )
    k_init, k_run = jax.random.split(key)
    if reference is None:
        reference = initial_reference(
            k_init, ssm, observations, num_particles, fk=fk, num_backward=num_backward, backward=backward, max_trials=max_trials
        )

    def body(ref, k):
        pi, new_ref, _ = ppg_step(
            k,
            ssm,
            observations,
            ref,
            num_particles,
            additive_fn,
            initial_fn=initial_fn,
            num_backward=num_backward,
            backward=backward,
            fk=fk,
            max_trials=max_trials,
        )
        return new_ref, pi

    last_ref, iterates = lax.scan(body, reference, jax.random.split(k_run, num_iterations))
    kept = jax.tree_util.tree_map(lambda v: v[burn_in:], iterates)
    est = _chain_estimate(kept, num_particles)
    return PPGResult(est, iterates, last_ref)


def _chain_estimate(samples, num_particles) -> Estimate:
    """Mean of dependent iterates with an autocorrelation-corrected standard error."""

    def one(v):
        m = v.shape[0]
        mean = jnp.mean(v, 0)
        if m < 2:
            return mean, jnp.full(mean.shape, jnp.nan), jnp.ones(mean.shape)
        c = v - mean
        var = jnp.mean(c**2, 0)
        max_lag = max(1, min(m - 1, 50))
        acf = jnp.stack([jnp.mean(c[lag:] * c[: m - lag], 0) for lag in range(1, max_lag + 1)], 0) / jnp.where(
            var > 0, var, 1.0
        )
        # Sum autocorrelations until the first non-positive one (Geyer-style truncation).
        positive = jnp.cumprod(acf > 0, axis=0)
        tau = 1.0 + 2.0 * jnp.sum(acf * positive, 0)
        tau = jnp.maximum(tau, 1.0 / m)
        ess = m / tau
        se = jnp.sqrt(var * m / (m - 1) / ess)
        return mean, se, ess

    triples = jax.tree_util.tree_map(one, samples)
    pick = lambda i: jax.tree_util.tree_map(lambda p: p[i], triples, is_leaf=lambda p: isinstance(p, tuple))  # noqa: E731
    n = jax.tree_util.tree_leaves(samples)[0].shape[0]
    return Estimate(pick(0), pick(1), n, pick(2), {"num_particles": num_particles})


def conditional_smc(
    key,
    ssm: StateSpaceModel,
    observations,
    reference,
    num_particles: int,
    *,
    sampler: str = "backward",
    fk=None,
):
    r"""One conditional SMC sweep; returns a new path (leaves ``(T, ...)``).

    ``sampler``: ``"genealogy"`` (trace the ancestry of :math:`b\sim W_{T-1}`,
    Andrieu et al. 2010), ``"ancestor"`` (ancestor sampling of the reference,
    Lindsten et al. 2014, then genealogy), or ``"backward"`` (backward sampling,
    Whiteley 2010). Each leaves the smoothing law :math:`p(x_{0:T-1}\mid y)` invariant.

    Example:
      >>> import jax, jax.numpy as jnp
      >>> from ulam.smc import LinearGaussianModel, linear_gaussian_ssm, simulate
      >>> lg = LinearGaussianModel.scalar(0.9, 0.6, 1.0, 1.0)
      >>> ssm = linear_gaussian_ssm(lg)
      >>> _, y = simulate(jax.random.key(0), ssm, 8)
      >>> from ulam.smc import conditional_smc
      >>> conditional_smc(jax.random.key(1), ssm, y, jnp.zeros(8), 16, sampler="ancestor").shape
      (8,)
    """
    checks.prng_key(key)
    checks.one_of("sampler", sampler, ("genealogy", "ancestor", "backward"))
    fk = Bootstrap(ssm) if fk is None else fk
    k_fwd, k_out = jax.random.split(key)
    _, lw, _, _, _, _, history, _ = forward_pass(
        k_fwd,
        ssm,
        fk,
        observations,
        num_particles,
        additive_fn=None,
        initial_fn=None,
        num_backward=1,
        backward_method="exact",
        reference=reference,
        ancestor_sampling=sampler == "ancestor",
        keep_history=True,
        lag=0,
    )
    if sampler == "backward":
        path = backward_sample(k_out, ssm, history, 1, method="exact")
        return jax.tree_util.tree_map(lambda v: v[0], path)
    b = jax.random.categorical(k_out, lw).astype(jnp.int32)

    def step(b_t, a_t):
        return a_t[b_t], b_t  # carry the parent, emit the index at time t

    b0, bs = lax.scan(step, b, history.ancestors[1:], reverse=True)
    b_all = jnp.concatenate([b0[None], bs], 0)
    num_steps = history.log_weights.shape[0]
    return jax.tree_util.tree_map(lambda v: v[jnp.arange(num_steps), b_all], history.particles)


def particle_gibbs(
    key,
    ssm: StateSpaceModel,
    observations,
    num_particles: int,
    num_iterations: int,
    *,
    sampler: str = "backward",
    reference=None,
    fk=None,
):
    """Iterate :func:`conditional_smc` ``num_iterations`` times; returns the paths (leaves ``(iters, T, ...)``).

    Example:
      >>> import jax, jax.numpy as jnp
      >>> from ulam.smc import LinearGaussianModel, linear_gaussian_ssm, simulate
      >>> lg = LinearGaussianModel.scalar(0.9, 0.6, 1.0, 1.0)
      >>> ssm = linear_gaussian_ssm(lg)
      >>> _, y = simulate(jax.random.key(0), ssm, 8)
      >>> from ulam.smc import particle_gibbs
      >>> particle_gibbs(jax.random.key(1), ssm, y, 16, 3).shape
      (3, 8)
    """
    checks.prng_key(key)
    checks.one_of("sampler", sampler, ("genealogy", "ancestor", "backward"))
    checks.count("num_iterations", num_iterations)
    fk = Bootstrap(ssm) if fk is None else fk
    check_inputs(fk, observations, num_particles)
    k_init, k_run = jax.random.split(key)
    if reference is None:
        reference = initial_reference(k_init, ssm, observations, num_particles, fk=fk)

    def body(ref, k):
        new = conditional_smc(k, ssm, observations, ref, num_particles, sampler=sampler, fk=fk)
        return new, new

    _, paths = lax.scan(body, reference, jax.random.split(k_run, num_iterations))
    return paths
