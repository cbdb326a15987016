r"""Backward kernels and forward-filtering backward-smoothing (FFBS).

The backward kernel of a filter at time :math:`t` draws an index
:math:`J` with :math:`P(J = j\mid x_{t+1}) \propto W_t^j\, m(x_t^j, x_{t+1})`
(Godsill, Doucet & West 2004). Samplers:

* ``"exact"``: evaluate all :math:`N` terms, :math:`O(N)` per draw
  (:math:`O(N^2)` per step for :math:`N` draws), memory-bounded by chunking;
* ``"rejection"``: propose :math:`J\sim W_t` and accept with probability
  :math:`m(x_t^J, x_{t+1})/\bar m` where :math:`\bar m \ge \sup m` is the
  model's ``transition_log_bound`` (Douc, Garivier, Moulines & Olsson 2011),
  :math:`O(1)` expected per draw when the bound is reasonably tight. After
  ``max_trials`` rejected proposals the remaining draws fall back to the exact
  sampler, so the law is exact either way, but the cost can approach :math:`O(N^2)`
  when the bound is loose (Dau & Chopin 2023 show the expected cost can even be infinite);
* ``"mcmc"``: the independent Metropolis–Hastings backward kernel of Dau &
  Chopin (2023, *On backward smoothing algorithms*, Ann. Statist. 51): a chain
  on the index started at a ``start`` index (the target particle's own
  ancestor), proposals :math:`J'\sim W_t`, accepted with probability
  :math:`\min\{1, m(x_t^{J'}, x_{t+1})/m(x_t^{J}, x_{t+1})\}`. Each move leaves
  the backward kernel invariant, so when the start is itself a draw from the
  backward kernel — true for the ancestor :math:`A^i` of :math:`x_{t+1}^i` in a
  bootstrap filter that resampled (multinomially or with any unbiased scheme)
  before moving, since :math:`(A^i, X^i_{t+1})\sim W^j m(x^j, \cdot)` — every
  draw has the exact backward law. Cost :math:`O(k)` per draw for ``k`` steps,
  no bound needed, no :math:`O(N^2)` path. Draws are correlated with the ancestor.
* ``"hybrid"``: a few rejection proposals first (exact, independent draws), then
  the MH chain from the start for the draws still pending: :math:`O(k +
  \text{trials})` per draw, never :math:`O(N)`.

``"auto"`` picks exact below 256 particles, else rejection when the model has a bound, else exact;
:func:`ulam.smc.paris` upgrades it to ``"hybrid"``/``"mcmc"`` where the ancestors are valid starts.

Example:
  >>> import jax
  >>> from ulam.smc import (LinearGaussianModel, linear_gaussian_ssm, simulate, Bootstrap,
  ...                       run_filter, backward_sample)
  >>> lg = LinearGaussianModel.scalar(0.9, 0.6, 1.0, 1.0)
  >>> ssm = linear_gaussian_ssm(lg)
  >>> _, y = simulate(jax.random.key(0), ssm, 20)
  >>> out = run_filter(jax.random.key(1), Bootstrap(ssm), y, 200, keep_history=True)
  >>> paths = backward_sample(jax.random.key(2), ssm, out.history, 50)
  >>> paths.shape
  (50, 20)
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax import lax

from ulam import checks
from ulam.estimate import Estimate
from ulam.smc.filtering import ParticleHistory
from ulam.smc.models import StateSpaceModel

__all__ = [
    "backward_indices",
    "backward_sample",
    "smoothing_expectation",
    "resolve_method",
    "take_particles",
    "AUTO_EXACT_BELOW",
    "BACKWARD_METHODS",
]

_EXACT_CHUNK = 256
BACKWARD_METHODS = ("auto", "exact", "rejection", "mcmc", "hybrid")
# Below this many particles the O(N^2) exact backward kernel is cheaper than rejection.
AUTO_EXACT_BELOW = 256


def take_particles(x, idx):
    return jax.tree_util.tree_map(lambda v: jnp.take(v, idx, axis=0), x)


def _bcast(target, n):
    return jax.tree_util.tree_map(lambda v: jnp.broadcast_to(v, (n,) + v.shape), target)


def _exact(key, ssm, log_w, x_prev, targets):
    n = log_w.shape[0]
    m = jax.tree_util.tree_leaves(targets)[0].shape[0]
    uniforms = jax.random.uniform(key, (m,))

    def one(args):
        u, target = args
        logits = log_w + _nan_to_neg_inf(ssm.log_transition(x_prev, _bcast(target, n)))
        # Inverse CDF with one uniform per draw: far cheaper than Gumbel-max's N uniforms.
        cdf = jnp.cumsum(jnp.exp(logits - jnp.max(logits)))
        idx = jnp.searchsorted(cdf, u * cdf[-1], side="right")
        return jnp.minimum(idx, n - 1).astype(jnp.int32)

    if m <= _EXACT_CHUNK:
        return jax.vmap(one)((uniforms, targets))  # small: one dense (M, N) pass, no loop to compile
    return lax.map(one, (uniforms, targets), batch_size=_EXACT_CHUNK)


def _nan_to_neg_inf(v):
    return jnp.where(jnp.isnan(v), -jnp.inf, v)


def _rejection(key, ssm, log_w, x_prev, targets, max_trials, fallback_chunk):
    bound = ssm.transition_log_bound
    n = log_w.shape[0]
    m = jax.tree_util.tree_leaves(targets)[0].shape[0]
    cdf = jnp.cumsum(jax.nn.softmax(log_w))
    cdf = cdf.at[-1].set(jnp.inf)
    keys = jax.random.split(key, 4)

    def attempts(k, lane_targets, out, done, trials):
        size = out.shape[0]

        def cond(state):
            return (state[2] < trials) & ~jnp.all(state[1])

        def body(state):
            out, done, trial, k = state
            k, k1, k2 = jax.random.split(k, 3)
            proposal = jnp.searchsorted(cdf, jax.random.uniform(k1, (size,)), side="right").astype(jnp.int32)
            proposal = jnp.minimum(proposal, n - 1)
            log_accept = _nan_to_neg_inf(ssm.log_transition(take_particles(x_prev, proposal), lane_targets)) - bound
            new = ~done & (jnp.log(jax.random.uniform(k2, (size,))) < log_accept)
            return jnp.where(new, proposal, out), done | new, trial + 1, k

        out, done, _, _ = lax.while_loop(cond, body, (out, done, jnp.int32(0), k))
        return out, done

    # Stage 1 runs every lane a few times; later stages run only the lanes still
    # pending, compacted into smaller arrays, so the work follows the acceptances.
    out, done = attempts(keys[0], targets, jnp.zeros((m,), jnp.int32), jnp.zeros((m,), bool), min(3, max_trials))
    used = min(3, max_trials)
    for stage, (frac, trials) in enumerate(((4, min(8, max_trials - used)), (16, max_trials - used - 8))):
        size = max(1, -(-m // frac))
        if trials <= 0 or size >= m:
            continue
        (lanes,) = jnp.nonzero(~done, size=size, fill_value=m)
        valid = lanes < m
        safe = jnp.where(valid, lanes, 0)
        sub_out, sub_done = attempts(
            keys[1 + stage], take_particles(targets, safe), jnp.zeros((size,), jnp.int32), ~valid, trials
        )
        write = jnp.where(valid & sub_done, lanes, m)
        out = out.at[write].set(sub_out, mode="drop")
        done = done.at[write].set(True, mode="drop")

    # Exact draws for whatever is still pending, `fallback_chunk` targets at a time.
    def fcond(state):
        return ~jnp.all(state[1])

    def fbody(state):
        out, done, k = state
        k, k1 = jax.random.split(k)
        (pending,) = jnp.nonzero(~done, size=_fallback_size(m, fallback_chunk), fill_value=m)
        valid = pending < m
        draws = _exact(k1, ssm, log_w, x_prev, take_particles(targets, jnp.where(valid, pending, 0)))
        write = jnp.where(valid, pending, m)
        return out.at[write].set(draws, mode="drop"), done.at[write].set(True, mode="drop"), k

    out, _, _ = lax.while_loop(fcond, fbody, (out, done, keys[3]))
    return out


def _weights_cdf(log_w):
    cdf = jnp.cumsum(jax.nn.softmax(log_w))
    return cdf.at[-1].set(jnp.inf)


def _draw_from_cdf(key, cdf, size):
    n = cdf.shape[0]
    idx = jnp.searchsorted(cdf, jax.random.uniform(key, (size,)), side="right").astype(jnp.int32)
    return jnp.minimum(idx, n - 1)


def _independent_mh(key, ssm, cdf, x_prev, targets, start, num_steps):
    """``num_steps`` independent-MH moves per lane from ``start`` (Dau & Chopin 2023), proposals ~ W."""
    m = start.shape[0]
    cur = start.astype(jnp.int32)
    log_cur = _nan_to_neg_inf(ssm.log_transition(take_particles(x_prev, cur), targets))
    for k in jax.random.split(key, num_steps):  # small static k: unrolled, no loop overhead
        k1, k2 = jax.random.split(k)
        proposal = _draw_from_cdf(k1, cdf, m)
        log_prop = _nan_to_neg_inf(ssm.log_transition(take_particles(x_prev, proposal), targets))
        # Independent MH with proposal W: the W factors cancel, leaving m(x^J', x)/m(x^J, x).
        # A start of zero density (-inf) accepts any finite proposal (inf > log u).
        accept = jnp.log(jax.random.uniform(k2, (m,))) < log_prop - log_cur
        cur = jnp.where(accept, proposal, cur)
        log_cur = jnp.where(accept, log_prop, log_cur)
    return cur


def _hybrid(key, ssm, log_w, x_prev, targets, start, trials, num_steps):
    """Up to ``trials`` rejection proposals per lane, then MH from ``start`` for the lanes still pending."""
    bound = ssm.transition_log_bound
    m = start.shape[0]
    cdf = _weights_cdf(log_w)
    k_rej, k_mh = jax.random.split(key)
    out = jnp.zeros((m,), jnp.int32)
    done = jnp.zeros((m,), bool)
    for k in jax.random.split(k_rej, trials):
        k1, k2 = jax.random.split(k)
        proposal = _draw_from_cdf(k1, cdf, m)
        log_accept = _nan_to_neg_inf(ssm.log_transition(take_particles(x_prev, proposal), targets)) - bound
        new = ~done & (jnp.log(jax.random.uniform(k2, (m,))) < log_accept)
        out = jnp.where(new, proposal, out)
        done = done | new
    # The rejection outcome is independent of the start given the target, so a pending
    # lane's start is still a backward-kernel draw and the MH chain keeps that law.
    mh = _independent_mh(k_mh, ssm, cdf, x_prev, targets, start, num_steps)
    return jnp.where(done, out, mh)


def _fallback_size(m, fallback_chunk):
    # At most ~16 exact passes even when most proposals were rejected.
    return max(fallback_chunk, -(-m // 16))


def backward_indices(
    key,
    ssm: StateSpaceModel,
    log_weights,
    particles,
    targets,
    *,
    method: str = "auto",
    max_trials: int = 32,
    fallback_chunk: int = 64,
    start=None,
    num_mcmc_steps: int = 2,
    hybrid_trials: int = 2,
):
    r"""Draw one index per target from the backward kernel :math:`\propto W^j m(x^j, \text{target})`.

    Args:
      key: a JAX key.
      ssm: the model (its ``transition_log_prob``, and ``transition_log_bound`` for rejection).
      log_weights: ``(N,)`` filtering log-weights at time t.
      particles: particles at time t (leading axis N).
      targets: particles at time t+1 (leading axis M), one draw each.
      method: ``"exact"``, ``"rejection"``, ``"mcmc"``, ``"hybrid"`` or ``"auto"`` (module doc).
      max_trials: rejection proposals per draw before the exact fallback (``"rejection"``).
      fallback_chunk: how many leftover draws the exact fallback handles per pass.
      start: ``(M,)`` indices where the MH chains start (``"mcmc"``/``"hybrid"``): each
        should be a draw from the backward kernel, e.g. the target's ancestor.
      num_mcmc_steps: MH moves per draw (``"mcmc"``/``"hybrid"``).
      hybrid_trials: rejection proposals per draw before MH (``"hybrid"``).

    Returns:
      ``(M,)`` int32 indices into ``particles``.

    Example:
      >>> import jax, jax.numpy as jnp
      >>> from ulam.smc import LinearGaussianModel, linear_gaussian_ssm, simulate
      >>> lg = LinearGaussianModel.scalar(0.9, 0.6, 1.0, 1.0)
      >>> ssm = linear_gaussian_ssm(lg)
      >>> _, y = simulate(jax.random.key(0), ssm, 8)
      >>> from ulam.smc import backward_indices
      >>> x = jnp.linspace(-1.0, 1.0, 8)
      >>> backward_indices(jax.random.key(1), ssm, jnp.zeros(8), x, x[:3], method="exact").shape
      (3,)
    """
    method = resolve_method(ssm, method, log_weights.shape[0])
    if method == "exact":
        return _exact(key, ssm, log_weights, particles, targets)
    if method in ("mcmc", "hybrid"):
        m = jax.tree_util.tree_leaves(targets)[0].shape[0]
        if start is None or jnp.shape(start) != (m,):
            raise ValueError(
                f"start: method={method!r} needs one start index per target, shape ({m},) (e.g. the targets' "
                f"ancestors); got {None if start is None else jnp.shape(start)}"
            )
        checks.count("num_mcmc_steps", num_mcmc_steps)
        if method == "mcmc":
            return _independent_mh(key, ssm, _weights_cdf(log_weights), particles, targets, start, num_mcmc_steps)
        return _hybrid(key, ssm, log_weights, particles, targets, start, hybrid_trials, num_mcmc_steps)
    return _rejection(key, ssm, log_weights, particles, targets, max_trials, fallback_chunk)


def resolve_method(ssm, method, num_particles=None):
    num_particles = AUTO_EXACT_BELOW + 1 if num_particles is None else num_particles
    checks.one_of("method", method, BACKWARD_METHODS)
    if ssm.transition_log_prob is None:
        raise ValueError("ssm.transition_log_prob: backward sampling needs the transition density")
    if method in ("rejection", "hybrid") and ssm.transition_log_bound is None:
        raise ValueError(
            f"method={method!r} needs ssm.transition_log_bound, an upper bound of log m(x, x'); "
            "give one or use method='exact' or 'mcmc'"
        )
    if method == "auto":
        return "rejection" if ssm.transition_log_bound is not None and num_particles > AUTO_EXACT_BELOW else "exact"
    return method


def backward_sample(
    key,
    ssm: StateSpaceModel,
    history: ParticleHistory,
    num_trajectories: int,
    *,
    method: str = "auto",
    max_trials: int = 32,
    num_mcmc_steps: int = 2,
):
    r"""Forward-filtering backward-sampling: ``num_trajectories`` draws of :math:`X_{0:T-1}` given the filter.

    :math:`B_{T-1}\sim W_{T-1}`, then :math:`B_t \sim W_t^j m(x_t^j, x_{t+1}^{B_{t+1}})`
    backwards (Godsill, Doucet & West 2004). ``method="exact"`` costs
    :math:`O(MN)` per step; ``"rejection"`` :math:`O(M)` expected; ``"mcmc"``/``"hybrid"``
    start each chain at the genealogical ancestor :math:`A_{t+1}^{B_{t+1}}` (Dau & Chopin
    2023), exact in law for a bootstrap filter that resampled at every step
    (``ess_threshold=1``), a few MH moves from a slightly-off start otherwise (see module doc).
    Returns a pytree with leaves ``(num_trajectories, T, ...)``.

    Example:
      >>> import jax, jax.numpy as jnp
      >>> from ulam.smc import LinearGaussianModel, linear_gaussian_ssm, simulate
      >>> lg = LinearGaussianModel.scalar(0.9, 0.6, 1.0, 1.0)
      >>> ssm = linear_gaussian_ssm(lg)
      >>> _, y = simulate(jax.random.key(0), ssm, 8)
      >>> from ulam.smc import Bootstrap, run_filter, backward_sample
      >>> out = run_filter(jax.random.key(1), Bootstrap(ssm), y, 16, keep_history=True)
      >>> backward_sample(jax.random.key(2), ssm, out.history, 5).shape
      (5, 8)
    """
    checks.prng_key(key)
    checks.count("num_trajectories", num_trajectories)
    method = resolve_method(ssm, method, history.log_weights.shape[1])
    xs, lws, ancestors = history.particles, history.log_weights, history.ancestors
    num_steps = lws.shape[0]
    k_last, k_rest = jax.random.split(key)
    last = jax.random.categorical(k_last, lws[-1], shape=(num_trajectories,)).astype(jnp.int32)
    x_last = take_particles(_at(xs, num_steps - 1), last)

    def step(carry, inputs):
        x_next, b_next = carry
        k, t = inputs
        x_t, lw_t = _at(xs, t), lws[t]
        idx = backward_indices(
            k, ssm, lw_t, x_t, x_next, method=method, max_trials=max_trials,
            start=ancestors[t + 1][b_next], num_mcmc_steps=num_mcmc_steps,
        )
        x_new = take_particles(x_t, idx)
        return (x_new, idx), x_new

    ts = jnp.arange(num_steps - 2, -1, -1)
    _, path = lax.scan(step, (x_last, last), (jax.random.split(k_rest, num_steps - 1), ts))
    # path is reversed in time (T-2 .. 0); put time on axis 1.
    full = jax.tree_util.tree_map(lambda p, l: jnp.concatenate([p[::-1], l[None]], 0), path, x_last)
    return jax.tree_util.tree_map(lambda v: jnp.swapaxes(v, 0, 1), full)


def _at(x, t):
    return jax.tree_util.tree_map(lambda v: v[t], x)


def smoothing_expectation(paths, fn=lambda path: path) -> Estimate:
    """The mean of ``fn(path)`` over backward-sampled paths, with the i.i.d.-draws standard error.

    The paths are conditionally independent given the particle system, so the
    standard error covers the backward-sampling noise, not the forward filter's.

    Example:
      >>> import jax.numpy as jnp
      >>> from ulam.smc import smoothing_expectation
      >>> est = smoothing_expectation(jnp.array([[0.0, 1.0], [2.0, 3.0]]), lambda p: p[0])
      >>> float(est.mean)
      1.0
    """
    values = jax.vmap(fn)(paths)
    return Estimate.from_samples(values)
