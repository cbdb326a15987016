r"""The multi-chain driver: warm-up, sampling, thinning, progress, streaming, checkpoints.

:func:`sample` runs ``num_chains`` chains of one kernel in a single compiled program: the
chains are ``vmap``-ed inside each step, the steps are a ``lax.fori_loop`` whose body also
carries the warm-up adaptation (dual-averaging step size and Stan's windowed mass-matrix
estimate; masked off after warm-up), so the kernel is traced and compiled **once** per run,
and the jitted program is cached: a second call with the same target, settings and shapes
compiles nothing. The step keys are ``fold_in(key, t)`` for global step ``t``, so a run cut
into segments (for progress, checkpoints, or a resumed job) gives the same draws bit for
bit as an uninterrupted one.

Example:
  >>> import jax, jax.numpy as jnp
  >>> from ulam import mcmc
  >>> logp = lambda x: -0.5 * jnp.sum(x**2)
  >>> res = mcmc.sample(jax.random.key(0), logp, jnp.zeros((2, 3)), num_chains=2,
  ...                   num_warmup=200, num_draws=200)
  >>> res.draws.shape
  (2, 200, 3)
"""

from __future__ import annotations

import dataclasses
import functools
import os
import pickle
import sys
import time
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree

from ulam.mcmc import adaptation as ad
from ulam.mcmc.base import Kernel, State, flat_logdensity, leapfrog, metric, ravel
from ulam.mcmc.hmc import hmc_init, hmc_step
from ulam.mcmc.langevin import langevin_init, mala_step, ula_step
from ulam.mcmc.nuts import nuts_init, nuts_step
from ulam.mcmc.results import MCMCResult, StreamingResult
from ulam.mcmc.rwm import rwm_init, rwm_step
from ulam.mcmc.streaming import StreamStats, stream_init, stream_update

__all__ = ["sample", "Sampler", "Run", "save_checkpoint", "load_checkpoint"]


@dataclasses.dataclass(frozen=True)
class _Spec:
    init: Callable
    step: Callable
    options: tuple
    target: float | None
    hamiltonian: bool


_KERNELS = {
    "nuts": _Spec(nuts_init, nuts_step, ("max_tree_depth", "max_energy_error"), 0.8, True),
    "hmc": _Spec(hmc_init, hmc_step, ("num_integration_steps", "max_energy_error"), 0.8, True),
    "mala": _Spec(langevin_init, mala_step, (), 0.574, False),
    "rwm": _Spec(rwm_init, rwm_step, (), 0.234, False),
    "ula": _Spec(langevin_init, ula_step, (), None, False),
}


class _Carry(NamedTuple):
    states: Any
    step_size: jax.Array  # (chains,)
    inverse_mass_matrix: jax.Array  # (chains, d) or (chains, d, d)
    dual_averaging: ad.DualAveragingState  # (chains,) fields, or scalars when pooled
    welford: ad.WelfordState  # batched over chains, or pooled
    num_divergent: jax.Array  # (chains,) during sampling
    num_divergent_warmup: jax.Array  # (chains,)
    sum_acceptance: jax.Array  # (chains,) during sampling
    num_grad_evals: jax.Array  # (chains,) during sampling
    stream: Any  # StreamStats or ()


@dataclasses.dataclass(frozen=True)
class _Config:
    logdensity_fn: Any
    kernel: Any  # a name in _KERNELS, or a Kernel
    kernel_options: tuple
    num_warmup: int
    num_draws: int
    thin: int
    adapt: str
    metric: str
    adapt_step_size: bool
    adapt_mass_matrix: bool
    target_acceptance: float
    stream_batches: int
    stream_fn: Any
    progress_every: int
    initial_step_search: bool
    chunk: int


# -- progress -------------------------------------------------------------------------

_ACTIVE_PROGRESS: list = []


class _Progress:
    """A host-side progress bar fed by ``jax.debug.callback`` from inside the compiled loop."""

    def __init__(self, total: int, start: int, num_warmup: int):
        self.total, self.num_warmup = total, num_warmup
        self._bar = None
        try:
            from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

            self._bar = Progress(
                TextColumn("{task.description}"), BarColumn(), TextColumn("{task.completed}/{task.total}"),
                TimeRemainingColumn(), transient=False,
            )
            self._task = self._bar.add_task("warm-up" if start < num_warmup else "sampling", total=total, completed=start)
            self._bar.start()
        except ImportError:  # pragma: no cover
            self._last = start

    def update(self, t: int):
        desc = "warm-up" if t < self.num_warmup else "sampling"
        if self._bar is not None:
            self._bar.update(self._task, completed=t, description=desc)
        else:  # pragma: no cover
            print(f"{desc}: {t}/{self.total}", file=sys.stderr)

    def close(self):
        if self._bar is not None:
            self._bar.stop()


def _tick(t):
    if _ACTIVE_PROGRESS:
        _ACTIVE_PROGRESS[-1].update(int(t) + 1)


# -- the compiled program -------------------------------------------------------------


def _kernel_step(cfg: _Config):
    if isinstance(cfg.kernel, Kernel):
        return lambda key, state, step_size, inv: cfg.kernel.step(key, state)
    spec = _KERNELS[cfg.kernel]
    options = dict(cfg.kernel_options)
    inv_is_none = cfg.metric == "identity"

    def step(key, state, step_size, inv):
        return spec.step(key, state, cfg.logdensity_fn, step_size, None if inv_is_none else inv, **options)

    return step


def _energy_change(logdensity_fn, key, state: State, step_size, inv):
    """Energy change of one leapfrog step with fresh momentum (for the step-size heuristic)."""
    z, _, value_and_grad = flat_logdensity(logdensity_fn, state.position)
    m = metric(inv)
    p = m.sample_momentum(key, z)
    h0 = -state.logdensity + m.kinetic_energy(p)
    _, p1, ld1, _ = leapfrog(value_and_grad, z, p, ravel(state.logdensity_grad), step_size, m.velocity)
    return -ld1 + m.kinetic_energy(p1) - h0


@functools.lru_cache(maxsize=64)
def _program(cfg: _Config):
    """The jitted segment runner for one configuration (cached: same config, no recompilation)."""
    kernel_step = _kernel_step(cfg)
    warm = cfg.num_warmup
    slow_np, end_np = ad.window_schedule(warm)
    slow = jnp.asarray(np.concatenate([slow_np, [False]]))
    end = jnp.asarray(np.concatenate([end_np, [False]]))
    pooled = cfg.adapt == "pooled"
    heuristic = isinstance(cfg.kernel, str) and _KERNELS[cfg.kernel].hamiltonian and cfg.adapt_step_size
    identity_metric = cfg.metric == "identity"
    initial_search = heuristic and cfg.initial_step_search

    def flat_positions(states):
        return jax.vmap(lambda s: ravel(s.position))(states)

    def retune_step_size(key, states, step_size, inv):
        keys = jax.random.split(key, step_size.shape[0])
        eps = jax.vmap(
            lambda k, s, e, i: ad.find_reasonable_step_size(
                k, lambda kk, ee: _energy_change(cfg.logdensity_fn, kk, s, ee, None if identity_metric else i), e
            )
        )(keys, states, step_size, inv)
        if pooled:
            eps = jnp.broadcast_to(jnp.exp(jnp.mean(jnp.log(eps))), eps.shape)
        return eps

    def retune(carry: _Carry, t, key):
        """At t = 0 (initial step size) or right after a slow window closed (new metric)."""
        inv, welford = carry.inverse_mass_matrix, carry.welford
        if cfg.adapt_mass_matrix:
            if pooled:
                new_inv = jnp.broadcast_to(ad.regularized_inverse_mass_matrix(welford), inv.shape)
            else:
                new_inv = jax.vmap(ad.regularized_inverse_mass_matrix)(welford)
            inv = jnp.where(t > 0, new_inv, inv)
            welford = jax.tree_util.tree_map(jnp.zeros_like, welford)
        eps = carry.step_size
        if heuristic:
            eps = retune_step_size(key, carry.states, eps, inv)
        da = ad.dual_averaging_init(eps[0] if pooled else eps)
        return carry._replace(inverse_mass_matrix=inv, welford=welford, step_size=eps, dual_averaging=da)

    def one_step(t, key, carry: _Carry):
        num_chains = carry.step_size.shape[0]
        k_t = jax.random.fold_in(key, t)
        k_step, k_adapt = jax.random.split(k_t)
        if warm > 0 and (cfg.adapt_mass_matrix or initial_search):
            after_window = end[jnp.clip(t - 1, 0, warm)] & (t > 0) & (t <= warm)
            due = after_window | ((t == 0) & initial_search)
            carry = jax.lax.cond(due, retune, lambda c, t, k: c, carry, t, k_adapt)
        states, info = jax.vmap(kernel_step)(
            jax.random.split(k_step, num_chains), carry.states, carry.step_size, carry.inverse_mass_matrix
        )
        in_warmup = t < warm
        div = info.is_divergent.astype(jnp.int32)
        carry = carry._replace(
            states=states,
            num_divergent_warmup=carry.num_divergent_warmup + jnp.where(in_warmup, div, 0),
            num_divergent=carry.num_divergent + jnp.where(in_warmup, 0, div),
            sum_acceptance=carry.sum_acceptance + jnp.where(in_warmup, 0.0, info.acceptance_rate),
            num_grad_evals=carry.num_grad_evals + jnp.where(in_warmup, 0, info.num_grad_evals),
        )
        if warm == 0:
            return carry, info
        tc = jnp.minimum(t, warm)
        if cfg.adapt_step_size:
            acc = info.acceptance_rate
            update = functools.partial(ad.dual_averaging_update, target=cfg.target_acceptance)
            da = update(carry.dual_averaging, jnp.mean(acc)) if pooled else jax.vmap(update)(carry.dual_averaging, acc)
            eps = jnp.exp(jnp.where(t == warm - 1, da.log_step_size_avg, da.log_step_size))
            eps = jnp.broadcast_to(eps, carry.step_size.shape)
            carry = carry._replace(
                dual_averaging=jax.tree_util.tree_map(lambda a, b: jnp.where(in_warmup, a, b), da, carry.dual_averaging),
                step_size=jnp.where(in_warmup, eps, carry.step_size),
            )
        if cfg.adapt_mass_matrix:
            x = flat_positions(states)
            if pooled:
                batch = ad.WelfordState(
                    jnp.asarray(x.shape[0], x.dtype), x.mean(0),
                    ((x - x.mean(0)).T @ (x - x.mean(0))) if cfg.metric == "dense" else ((x - x.mean(0)) ** 2).sum(0),
                )
                welford = ad.welford_merge(carry.welford, batch)
            else:
                welford = jax.vmap(ad.welford_update)(carry.welford, x)
            take = in_warmup & slow[tc]
            carry = carry._replace(
                welford=jax.tree_util.tree_map(lambda a, b: jnp.where(take, a, b), welford, carry.welford)
            )
        return carry, info

    def segment(key, carry: _Carry, t0, num_steps, first_kept):
        """Run steps ``t0 .. t0 + num_steps - 1``; kept draw ``j`` goes to buffer row ``j - first_kept``."""
        num_chains = carry.step_size.shape[0]
        dim = flat_positions(carry.states).shape[-1]
        dtype = carry.step_size.dtype
        info_shape = jax.eval_shape(
            lambda c: one_step(jnp.asarray(warm, jnp.int32), key, c)[1], carry
        )
        if cfg.stream_batches:
            buffers = ()
        else:
            buffers = (
                jnp.zeros((cfg.chunk, num_chains, dim), dtype),
                jax.tree_util.tree_map(lambda s: jnp.zeros((cfg.chunk,) + s.shape, s.dtype), info_shape),
            )

        def body(i, c):
            carry, buffers = c
            t = t0 + i
            carry, info = one_step(t, key, carry)
            keep = (t >= warm) & ((t - warm + 1) % cfg.thin == 0)
            draw = (t - warm + 1) // cfg.thin - 1
            if cfg.stream_batches:
                def add(carry):
                    x = flat_positions(carry.states)
                    values = jax.vmap(cfg.stream_fn)(x) if cfg.stream_fn is not None else x
                    return carry._replace(stream=stream_update(carry.stream, draw, cfg.num_draws, values))

                carry = jax.lax.cond(keep, add, lambda c: c, carry)
            else:
                row = jnp.clip(draw - first_kept, 0, cfg.chunk - 1)

                def write(b):
                    pos, inf = b
                    pos = jax.lax.dynamic_update_index_in_dim(pos, flat_positions(carry.states), row, 0)
                    inf = jax.tree_util.tree_map(
                        lambda buf, v: jax.lax.dynamic_update_index_in_dim(buf, v, row, 0), inf, info
                    )
                    return pos, inf

                buffers = jax.lax.cond(keep, write, lambda b: b, buffers)
            if cfg.progress_every:
                jax.lax.cond(
                    (t + 1) % cfg.progress_every == 0,
                    lambda: jax.debug.callback(_tick, t),
                    lambda: None,
                )
            return carry, buffers

        return jax.lax.fori_loop(0, num_steps, body, (carry, buffers))

    return jax.jit(segment)


@functools.lru_cache(maxsize=64)
def _init_program(kernel: str, logdensity_fn):
    return jax.jit(jax.vmap(lambda x: _KERNELS[kernel].init(x, logdensity_fn)))


# -- public API ---------------------------------------------------------------------------


@dataclasses.dataclass
class Run:
    """Where a run stands: the compiled loop's carry, the global step, and the draws so far (host)."""

    carry: Any
    t: int
    key_data: np.ndarray
    draws: list
    stats: list
    fingerprint: str
    seconds: float = 0.0

    @property
    def key(self):
        return jax.random.wrap_key_data(jnp.asarray(self.key_data))


def _fingerprint(cfg: _Config, num_chains: int, dim: int) -> str:
    kernel = cfg.kernel if isinstance(cfg.kernel, str) else "custom"
    return repr((kernel, cfg.kernel_options, cfg.num_warmup, cfg.num_draws, cfg.thin, cfg.adapt, cfg.metric,
                 cfg.adapt_step_size, cfg.adapt_mass_matrix, cfg.target_acceptance, cfg.stream_batches,
                 num_chains, dim))


class Sampler:
    """A configured multi-chain sampler; :func:`sample` is the one-call front end.

    ``init(key, initial_position) -> Run``, ``run(run, num_steps=None) -> Run`` (advance
    ``num_steps`` steps, or to the end), ``result(run)``. A :class:`Run` can be saved with
    :func:`save_checkpoint` and resumed after :func:`load_checkpoint`; the draws are
    bit-identical to an uninterrupted run with the same key.
    """

    def __init__(
        self,
        logdensity_fn,
        *,
        kernel="nuts",
        num_chains: int = 4,
        num_warmup: int = 1000,
        num_draws: int = 1000,
        thin: int = 1,
        step_size=None,
        inverse_mass_matrix=None,
        metric: str = "diag",
        adapt: str = "pooled",
        target_acceptance: float | None = None,
        kernel_options: dict | None = None,
        stream: bool = False,
        stream_batches: int = 32,
        stream_fn: Callable | None = None,
        progress: bool | int = False,
        chunk_size: int | None = None,
    ):
        if isinstance(kernel, str):
            if kernel not in _KERNELS:
                raise ValueError(f"kernel: expected one of {sorted(_KERNELS)} or a Kernel, got {kernel!r}")
            spec = _KERNELS[kernel]
            if logdensity_fn is None or not callable(logdensity_fn):
                raise TypeError("logdensity_fn: expected a callable x -> scalar log-density")
            unknown = set(kernel_options or {}) - set(spec.options)
            if unknown:
                raise ValueError(
                    f"kernel_options: {sorted(unknown)} are not options of {kernel!r} (it takes {list(spec.options)})"
                )
        elif isinstance(kernel, Kernel):
            spec = None
            if kernel_options:
                raise ValueError("kernel_options: a ready-made Kernel carries its own options")
        else:
            raise TypeError(f"kernel: expected a name in {sorted(_KERNELS)} or a Kernel(init, step), got {type(kernel)}")
        for name, value, low in (("num_chains", num_chains, 1), ("num_warmup", num_warmup, 0),
                                 ("num_draws", num_draws, 1), ("thin", thin, 1)):
            if not isinstance(value, (int, np.integer)) or value < low:
                raise ValueError(f"{name}: expected an integer >= {low}, got {value!r}")
        if metric not in ("diag", "dense", "identity"):
            raise ValueError(f"metric: expected 'diag', 'dense' or 'identity', got {metric!r}")
        if adapt not in ("per_chain", "pooled", "none"):
            raise ValueError(f"adapt: expected 'per_chain', 'pooled' or 'none', got {adapt!r}")
        if spec is None or adapt == "none" or num_warmup == 0:
            adapt_step = adapt_mass = False
        else:
            adapt_step = spec.target is not None
            adapt_mass = metric != "identity" and inverse_mass_matrix is None
        if spec is not None and spec.target is None and step_size is None:
            raise ValueError(f"step_size: kernel {kernel!r} has no acceptance step to adapt to; pass step_size")
        if target_acceptance is None:
            target_acceptance = spec.target if spec is not None and spec.target is not None else 0.8
        if not 0.0 < target_acceptance < 1.0:
            raise ValueError(f"target_acceptance: must lie in (0, 1), got {target_acceptance}")
        if stream and num_draws < stream_batches:
            raise ValueError(f"num_draws: streaming needs at least stream_batches={stream_batches} draws, got {num_draws}")
        progress_every = 0
        if progress:
            total = num_warmup + num_draws * thin
            progress_every = max(1, total // 100) if progress is True else int(progress)
        self.num_chains = int(num_chains)
        self._step_size0 = step_size
        self._inv0 = inverse_mass_matrix
        self._chunk_size = chunk_size
        self._cfg_kwargs = dict(
            logdensity_fn=logdensity_fn,
            kernel=kernel,
            kernel_options=tuple(sorted((kernel_options or {}).items())),
            num_warmup=int(num_warmup),
            num_draws=int(num_draws),
            thin=int(thin),
            adapt=adapt,
            metric=metric,
            adapt_step_size=adapt_step,
            adapt_mass_matrix=adapt_mass,
            target_acceptance=float(target_acceptance),
            stream_batches=int(stream_batches) if stream else 0,
            stream_fn=stream_fn,
            progress_every=progress_every,
            initial_step_search=step_size is None,
        )
        self.cfg: _Config | None = None

    @property
    def total_steps(self) -> int:
        k = self._cfg_kwargs
        return k["num_warmup"] + k["num_draws"] * k["thin"]

    # -- set-up ---------------------------------------------------------------------------
    def _check_positions(self, initial_position):
        leaves = jax.tree_util.tree_leaves(initial_position)
        if not leaves:
            raise ValueError("initial_position: expected at least one array, got an empty pytree")
        for leaf in leaves:
            leaf = jnp.asarray(leaf)
            if not jnp.issubdtype(leaf.dtype, jnp.floating):
                raise TypeError(
                    f"initial_position: expected floating-point arrays, got dtype {leaf.dtype}; "
                    "convert with jnp.asarray(x, jnp.float32)"
                )
            if leaf.ndim == 0 or leaf.shape[0] != self.num_chains:
                raise ValueError(
                    f"initial_position: every leaf needs a leading chain axis of size num_chains="
                    f"{self.num_chains}, got shape {leaf.shape}; pass one starting point per chain, e.g. "
                    f"x0 + 0.1 * jax.random.normal(key, ({self.num_chains},) + x0.shape)"
                )

    def init(self, key, initial_position) -> Run:
        """Check the starting points, initialize every chain and the adaptation state."""
        self._check_positions(initial_position)
        initial_position = jax.tree_util.tree_map(jnp.asarray, initial_position)
        kernel = self._cfg_kwargs["kernel"]
        logdensity_fn = self._cfg_kwargs["logdensity_fn"]
        if isinstance(kernel, str):
            states = _init_program(kernel, logdensity_fn)(initial_position)
            ld = np.asarray(states.logdensity)
            bad = np.flatnonzero(~np.isfinite(ld))
            if bad.size:
                raise ValueError(
                    f"initial_position: the log-density is not finite (value {ld[bad[0]]}) for chain(s) "
                    f"{bad.tolist()}; start every chain inside the support of the target"
                )
            if hasattr(states, "logdensity_grad"):
                g = np.concatenate(
                    [np.asarray(l).reshape(self.num_chains, -1) for l in jax.tree_util.tree_leaves(states.logdensity_grad)],
                    axis=1)
                bad = np.flatnonzero(~np.all(np.isfinite(g), axis=1))
                if bad.size:
                    raise ValueError(
                        f"initial_position: the gradient of the log-density is not finite for chain(s) "
                        f"{bad.tolist()}; start where the target is differentiable"
                    )
        else:
            states = jax.vmap(kernel.init)(initial_position)
        # The adaptation state below is built with NumPy on the host: built with jax.numpy, each
        # first-time eager op compiled a program of its own (13 of them, ~0.5 s of a first call).
        one = jax.tree_util.tree_map(lambda x: np.asarray(x)[0], initial_position)
        z, unravel = ravel_pytree(one)
        dim, dtype = z.shape[0], z.dtype
        self._unravel = unravel
        self._template = one
        chunk = self._chunk_size
        if chunk is None:
            # Bound the draw buffer to about 64 MB.
            chunk = max(1, min(self._cfg_kwargs["num_draws"], 16_000_000 // max(1, self.num_chains * dim)))
        self.cfg = _Config(**self._cfg_kwargs, chunk=int(chunk))
        cfg = self.cfg
        c = self.num_chains
        if self._step_size0 is None:
            eps0 = 1.0 if (isinstance(kernel, str) and _KERNELS[kernel].hamiltonian) else (
                2.38 / np.sqrt(dim) if kernel == "rwm" else 0.5 / dim ** (1 / 3))
        else:
            eps0 = self._step_size0
        dtype = np.dtype(dtype)
        step_size = np.full((c,), eps0, dtype)
        inv = self._inv0
        if inv is None:
            inv = np.ones((dim,), dtype) if cfg.metric != "dense" else np.eye(dim, dtype=dtype)
        inv = np.asarray(inv, dtype)
        expected = (dim,) if cfg.metric != "dense" else (dim, dim)
        if inv.shape == expected:
            inv = np.broadcast_to(inv, (c,) + expected).copy()
        elif inv.shape != (c,) + expected:
            raise ValueError(
                f"inverse_mass_matrix: expected shape {expected} (or {(c,) + expected} per chain) for "
                f"metric={cfg.metric!r}, got {inv.shape}"
            )
        dense = cfg.metric == "dense"
        welford = ad.welford_init(dim, dense, dtype, xp=np)
        da = ad.dual_averaging_init(step_size[0] if cfg.adapt == "pooled" else step_size, xp=np)
        if cfg.adapt != "pooled":
            welford = jax.tree_util.tree_map(lambda x: np.broadcast_to(x, (c,) + x.shape).copy(), welford)
        stream = ()
        if cfg.stream_batches:
            out_dim = dim if cfg.stream_fn is None else jax.eval_shape(cfg.stream_fn, z).shape[0]
            stream = stream_init(c, cfg.stream_batches, out_dim, dtype)
        carry = _Carry(
            states=states,
            step_size=step_size,
            inverse_mass_matrix=inv,
            dual_averaging=da,
            welford=welford,
            num_divergent=np.zeros((c,), np.int32),
            num_divergent_warmup=np.zeros((c,), np.int32),
            sum_acceptance=np.zeros((c,), dtype),
            num_grad_evals=np.zeros((c,), np.int32),
            stream=stream,
        )
        key_data = np.asarray(jax.random.key_data(key))
        return Run(carry, 0, key_data, [], [], _fingerprint(cfg, c, dim))

    # -- running ---------------------------------------------------------------------------
    def run(self, run: Run, num_steps: int | None = None) -> Run:
        """Advance ``run`` by ``num_steps`` steps (default: to the end) and return it."""
        if self.cfg is None:
            raise RuntimeError("Sampler.run: call init(key, initial_position) (or restore a checkpoint) first")
        cfg = self.cfg
        total = self.total_steps
        stop = total if num_steps is None else min(total, run.t + int(num_steps))
        program = _program(cfg)
        key = run.key
        progress = None
        if cfg.progress_every:
            progress = _Progress(total, run.t, cfg.num_warmup)
            _ACTIVE_PROGRESS.append(progress)
        start_time = time.perf_counter()
        try:
            while run.t < stop:
                t0 = run.t
                kept_before = max(0, (t0 - cfg.num_warmup) // cfg.thin)
                # A segment ends at warm-up's end or when the buffer of kept draws is full.
                seg_end = min(stop, cfg.num_warmup) if t0 < cfg.num_warmup else min(
                    stop, cfg.num_warmup + (kept_before + cfg.chunk) * cfg.thin
                )
                carry, buffers = program(
                    key, run.carry, jnp.asarray(t0, jnp.int32), jnp.asarray(seg_end - t0, jnp.int32),
                    jnp.asarray(kept_before, jnp.int32),
                )
                # Wait for the segment before dispatching the next: the next depends on this carry
                # anyway, and dispatched early its XLA worker thread busy-waits on the carry, taking
                # a core from the running segment (on 2 cores: +0.7 s wall, +2.5 s CPU per NUTS run).
                jax.block_until_ready(carry)
                kept_after = max(0, (seg_end - cfg.num_warmup) // cfg.thin)
                n_new = kept_after - kept_before
                if buffers and n_new > 0:
                    pos, info = jax.device_get(buffers)
                    run.draws.append(np.asarray(pos[:n_new]))
                    run.stats.append({k: np.asarray(v[:n_new]) for k, v in info._asdict().items()})
                run.carry = carry
                run.t = seg_end
        finally:
            if progress is not None:
                jax.block_until_ready(run.carry)
                _ACTIVE_PROGRESS.remove(progress)
                progress.close()
        jax.block_until_ready(run.carry)
        run.seconds += time.perf_counter() - start_time
        return run

    def result(self, run: Run):
        """The :class:`MCMCResult` (or :class:`StreamingResult` in streaming mode) of a finished run."""
        cfg = self.cfg
        if run.t < self.total_steps:
            raise RuntimeError(f"Sampler.result: the run stopped at step {run.t} of {self.total_steps}; call run() again")
        carry = jax.device_get(run.carry)
        common = dict(
            step_size=np.asarray(carry.step_size),
            inverse_mass_matrix=np.asarray(carry.inverse_mass_matrix),
            num_divergent=np.asarray(carry.num_divergent),
            num_divergent_warmup=np.asarray(carry.num_divergent_warmup),
            mean_acceptance=np.asarray(carry.sum_acceptance) / (cfg.num_draws * cfg.thin),
            num_grad_evals=np.asarray(carry.num_grad_evals),
            seconds=run.seconds,
            num_warmup=cfg.num_warmup,
            thin=cfg.thin,
        )
        if cfg.stream_batches:
            return StreamingResult(stats=carry.stream, stream_fn=cfg.stream_fn, unravel=self._unravel, **common)
        flat = np.concatenate(run.draws, axis=0).swapaxes(0, 1)  # (chains, draws, d)
        stats = {k: np.concatenate([s[k] for s in run.stats], axis=0).swapaxes(0, 1) for k in run.stats[0]}
        return MCMCResult(flat_draws=flat, unravel=self._unravel, stats=stats, final_state=run.carry.states, **common)


def sample(
    key,
    logdensity_fn,
    initial_position,
    *,
    kernel="nuts",
    num_chains: int = 4,
    num_warmup: int = 1000,
    num_draws: int = 1000,
    thin: int = 1,
    step_size=None,
    inverse_mass_matrix=None,
    metric: str = "diag",
    adapt: str = "pooled",
    target_acceptance: float | None = None,
    kernel_options: dict | None = None,
    stream: bool = False,
    stream_batches: int = 32,
    stream_fn: Callable | None = None,
    progress: bool | int = False,
    checkpoint: str | os.PathLike | None = None,
    checkpoint_every: int | None = None,
):
    r"""Run ``num_chains`` MCMC chains with warm-up adaptation; return draws and diagnostics.

    Args:
      key: a JAX key; the same key gives the same draws, bit for bit.
      logdensity_fn: ``x -> scalar`` log of the (unnormalized) target over one position
        (any pytree). Ignored when ``kernel`` is a ready-made :class:`~ulam.mcmc.Kernel`.
      initial_position: one starting point per chain: every leaf has a leading axis of size
        ``num_chains``.
      kernel: ``"nuts"`` (default), ``"hmc"``, ``"mala"``, ``"rwm"``, ``"ula"``, or a
        :class:`~ulam.mcmc.Kernel` (run as given, no adaptation).
      num_warmup, num_draws, thin: warm-up steps, kept draws per chain, steps per kept draw.
      step_size: initial (adapted) step size; default: Stan's heuristic for HMC/NUTS.
      inverse_mass_matrix: fixes Σ (no mass-matrix adaptation); default: adapted.
      metric: ``"diag"``, ``"dense"`` or ``"identity"``.
      adapt: ``"pooled"`` (default: one step size from the chains' mean acceptance and one Σ
        from all chains' warm-up draws), ``"per_chain"`` (each chain its own step size and Σ,
        as BlackJAX's vmapped window adaptation, NumPyro and Stan do) or ``"none"``. Pooling is
        the default because the chains run vmapped in lock step: with one step size and metric
        their trajectories have similar lengths, so fewer leapfrog steps are spent waiting for
        the longest chain, and Σ is estimated from ``num_chains`` times as many draws per window
        (TFP's ``windowed_adaptive_nuts`` likewise shares the step size and variance across
        chains). On the benchmark's logistic regression it cut warm-up + sampling time by
        ~20 % at the same ESS (``docs/benchmarks.md``). Use ``"per_chain"`` when chains may
        settle in different modes and should not share a metric.
      target_acceptance: dual-averaging target (0.8 for HMC/NUTS, 0.574 MALA, 0.234 RWM).
      kernel_options: static kernel options (``max_tree_depth``, ``num_integration_steps``, …).
      stream: keep only running statistics (constant memory in ``num_draws``), see
        :mod:`ulam.mcmc.streaming`; ``stream_fn`` maps a flat position to the vector whose
        statistics are kept (default: the position).
      progress: ``True`` for a progress bar (updated from inside the compiled loop by a host
        callback about 100 times), or an int: update every that many steps.
      checkpoint: a file path; the run is saved there every ``checkpoint_every`` steps and,
        if the file exists when called, resumed from it (same settings required).

    Returns:
      :class:`~ulam.mcmc.MCMCResult` (``draws`` with shape ``(chains, draws, ...)``, ``stats``,
      ``summary()``, ``expectation(f)``, ``to_arviz()``), or a
      :class:`~ulam.mcmc.StreamingResult` when ``stream=True``.
    """
    if checkpoint_every is not None and (not isinstance(checkpoint_every, int) or checkpoint_every < 1):
        raise ValueError(f"checkpoint_every: expected a positive integer, got {checkpoint_every!r}")
    chunk = None
    if checkpoint is not None and checkpoint_every is not None:
        chunk = max(1, checkpoint_every // max(1, thin))
    sampler = Sampler(
        logdensity_fn, kernel=kernel, num_chains=num_chains, num_warmup=num_warmup, num_draws=num_draws,
        thin=thin, step_size=step_size, inverse_mass_matrix=inverse_mass_matrix, metric=metric, adapt=adapt,
        target_acceptance=target_acceptance, kernel_options=kernel_options, stream=stream,
        stream_batches=stream_batches, stream_fn=stream_fn, progress=progress, chunk_size=chunk,
    )
    run = sampler.init(key, initial_position)
    if checkpoint is None:
        return sampler.result(sampler.run(run))
    if os.path.exists(checkpoint):
        run = load_checkpoint(checkpoint, run)
    every = checkpoint_every or sampler.total_steps
    while run.t < sampler.total_steps:
        run = sampler.run(run, every)
        save_checkpoint(checkpoint, run)
    return sampler.result(run)


def save_checkpoint(path, run: Run) -> None:
    """Write ``run`` to ``path`` atomically (NumPy arrays in a pickle)."""
    payload = dataclasses.replace(run, carry=jax.device_get(run.carry))
    tmp = f"{path}.tmp"
    with open(tmp, "wb") as f:
        pickle.dump(payload, f, protocol=pickle.HIGHEST_PROTOCOL)
    os.replace(tmp, path)


def load_checkpoint(path, like: Run) -> Run:
    """Read a run saved by :func:`save_checkpoint`; ``like`` (a fresh ``Sampler.init``) checks the settings."""
    with open(path, "rb") as f:
        run: Run = pickle.load(f)
    if run.fingerprint != like.fingerprint:
        raise ValueError(
            f"checkpoint: {path} was written by a run with different settings ({run.fingerprint}); "
            f"expected {like.fingerprint}. Delete it or use another path"
        )
    if not np.array_equal(run.key_data, like.key_data):
        raise ValueError(f"checkpoint: {path} was written by a run with a different key")
    run.carry = jax.tree_util.tree_map(
        lambda a, b: jnp.asarray(a, dtype=jnp.asarray(b).dtype), run.carry, like.carry
    )
    return run
