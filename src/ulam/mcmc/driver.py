r"""The multi-chain driver: warm-up, sampling, thinning, progress, streaming, checkpoints.

:func:`sample` runs ``num_chains`` chains of one kernel in a single compiled program: the
chains are ``vmap``-ed inside each step, the steps are a ``lax.fori_loop`` whose body also
carries the warm-up adaptation (:func:`~ulam.mcmc.window_adaptation`, a pure transform over
any :class:`~ulam.mcmc.MCMCKernel`; masked off after warm-up), so the kernel is traced and
compiled **once** per run, and the jitted program is cached: a second call with the same
target, settings and shapes compiles nothing (switching ``progress`` on or off included).
The step keys are ``fold_in(key, t)`` for global step ``t``, so a run cut into segments (for
progress, checkpoints, or a resumed job) gives the same draws bit for bit as an
uninterrupted one. :func:`run_kernel` is the bare loop of one chain.

Example:
  >>> import jax, jax.numpy as jnp
  >>> from ulam import mcmc
  >>> logp = lambda x: -0.5 * jnp.sum(x**2)
  >>> res = mcmc.sample(logp, jax.random.key(0), jnp.zeros((2, 3)), num_chains=2,
  ...                   num_warmup=200, num_draws=200, progress=False)
  >>> res.draws.shape
  (2, 200, 3)
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import os
import pickle
import sys
import time
import warnings
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree

from ulam import checks
from ulam.mcmc import adaptation as ad
from ulam.mcmc.base import (
    Kernel,
    MCMCKernel,
    State,
    check_inverse_mass_matrix,
    check_step_size,
    flat_logdensity,
    leapfrog,
    metric,
    ravel,
)
from ulam.mcmc.hmc import hmc_kernel
from ulam.mcmc.langevin import mala_kernel, ula_kernel
from ulam.mcmc.nuts import nuts_kernel
from ulam.mcmc.results import MCMCResult, StreamingResult
from ulam.mcmc.rwm import rwm_kernel
from ulam.mcmc.streaming import stream_init, stream_update

__all__ = [
    "sample",
    "run_kernel",
    "Sampler",
    "Run",
    "Streaming",
    "Checkpoint",
    "run_fingerprint",
    "save_checkpoint",
    "load_checkpoint",
]

KERNELS = {"nuts": nuts_kernel, "hmc": hmc_kernel, "mala": mala_kernel, "rwm": rwm_kernel, "ula": ula_kernel}


@dataclasses.dataclass(frozen=True)
class Streaming:
    """Keep only running statistics (constant memory in ``num_draws``, :mod:`ulam.mcmc.streaming`).

    ``num_batches`` batches per chain for batch-means MCSE; ``fn`` maps a flat position to the
    vector whose statistics are kept (default: the position).

    Example:
      >>> from ulam import mcmc
      >>> mcmc.Streaming(num_batches=16).num_batches
      16
    """

    num_batches: int = 32
    fn: Callable | None = None


@dataclasses.dataclass(frozen=True)
class Checkpoint:
    """Save the run to ``path`` every ``every`` steps and resume from it when the file exists.

    The file stores a fingerprint of the run (:func:`run_fingerprint`); resuming a different
    run is refused, naming what differs, unless ``force=True``. ``run_id`` replaces the hash
    of the log-density's jaxpr as the target's identity (use it when the target closes over
    data that you know has not changed, or to version runs yourself).

    Example:
      >>> from ulam import mcmc
      >>> mcmc.Checkpoint("run.pkl", every=500).every
      500
    """

    path: str | os.PathLike
    every: int | None = None
    run_id: str | None = None
    force: bool = False


class _Carry(NamedTuple):
    states: Any
    adapt: ad.WindowAdaptationState
    num_divergent: jax.Array  # (chains,) during sampling
    num_divergent_warmup: jax.Array  # (chains,)
    sum_acceptance: jax.Array  # (chains,) during sampling
    num_grad_evals: jax.Array  # (chains,) during sampling
    stream: Any  # StreamStats or ()


@dataclasses.dataclass(frozen=True)
class _Config:
    logdensity_fn: Any
    kernel: Any  # an MCMCKernel, or a ready Kernel
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
    inv_is_none = cfg.metric == "identity"

    def step(key, state, step_size, inv):
        return cfg.kernel.step(key, state, cfg.logdensity_fn, step_size, None if inv_is_none else inv)

    return step


def _energy_change(logdensity_fn, key, state: State, step_size, inv):
    """Energy change of one leapfrog step with fresh momentum (for the step-size heuristic)."""
    z, _, value_and_grad = flat_logdensity(logdensity_fn, state.position)
    m = metric(inv)
    p = m.sample_momentum(key, z)
    h0 = -state.logdensity + m.kinetic_energy(p)
    _, p1, ld1, _ = leapfrog(value_and_grad, z, p, ravel(state.logdensity_grad), step_size, m.velocity)
    return -ld1 + m.kinetic_energy(p1) - h0


def _adaptation(cfg: _Config) -> ad.WindowAdaptation:
    identity_metric = cfg.metric == "identity"
    search = None
    if isinstance(cfg.kernel, MCMCKernel) and cfg.kernel.step_size_search:

        def search(key, states, step_size, inv):
            keys = jax.random.split(key, step_size.shape[0])
            return jax.vmap(
                lambda k, s, e, i: ad.find_reasonable_step_size(
                    k, lambda kk, ee: _energy_change(cfg.logdensity_fn, kk, s, ee, None if identity_metric else i), e
                )
            )(keys, states, step_size, inv)

    return ad.window_adaptation(
        cfg.num_warmup,
        mode="pooled" if cfg.adapt == "pooled" else "per_chain",
        metric=cfg.metric,
        target_acceptance=cfg.target_acceptance,
        adapt_step_size=cfg.adapt_step_size,
        adapt_mass_matrix=cfg.adapt_mass_matrix,
        step_size_search=search,
        search_at_start=cfg.initial_step_search,
    )


def _with_lp(carry: _Carry, info):
    """The step's info with the log-density of the new state (ArviZ's ``lp``) when the state has one."""
    lp = getattr(carry.states, "logdensity", None)
    if lp is None:
        return info
    return _InfoLp(info, lp)


class _InfoLp(NamedTuple):
    info: Any
    logdensity: jax.Array


@functools.lru_cache(maxsize=64)
def _program(cfg: _Config):
    """The jitted segment runner for one configuration (cached: same config, no recompilation)."""
    kernel_step = _kernel_step(cfg)
    warm = cfg.num_warmup
    adaptation = _adaptation(cfg)

    def flat_positions(states):
        return jax.vmap(lambda s: ravel(s.position))(states)

    def step_keys(key, t):
        return jax.random.split(jax.random.fold_in(key, t))

    def one_step(t, key, carry: _Carry):
        num_chains = carry.adapt.step_size.shape[0]
        k_step, k_adapt = step_keys(key, t)
        adapt = jax.lax.cond(
            t == 0, lambda a: adaptation.update(a, t - 1, k_adapt, carry.states, None), lambda a: a, carry.adapt
        )
        step_size, inv = adaptation.final(adapt)
        states, info = jax.vmap(kernel_step)(jax.random.split(k_step, num_chains), carry.states, step_size, inv)
        in_warmup = t < warm
        div = info.is_divergent.astype(jnp.int32)
        adapt = adaptation.update(adapt, t, step_keys(key, t + 1)[1], states, info)
        carry = carry._replace(
            states=states,
            adapt=adapt,
            num_divergent_warmup=carry.num_divergent_warmup + jnp.where(in_warmup, div, 0),
            num_divergent=carry.num_divergent + jnp.where(in_warmup, 0, div),
            sum_acceptance=carry.sum_acceptance + jnp.where(in_warmup, 0.0, info.acceptance_rate),
            num_grad_evals=carry.num_grad_evals + jnp.where(in_warmup, 0, info.num_grad_evals),
        )
        return carry, info

    def segment(key, carry: _Carry, t0, num_steps, first_kept, progress_every):
        """Run steps ``t0 .. t0 + num_steps - 1``; kept draw ``j`` goes to buffer row ``j - first_kept``.

        ``progress_every`` is an argument, not part of the configuration: switching the progress
        bar on or off does not recompile.
        """
        num_chains = carry.adapt.step_size.shape[0]
        dim = flat_positions(carry.states).shape[-1]
        dtype = carry.adapt.step_size.dtype
        info_shape = jax.eval_shape(lambda c: _with_lp(*one_step(jnp.asarray(warm, jnp.int32), key, c)), carry)
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
            info = _with_lp(carry, info)
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
            jax.lax.cond(
                (progress_every > 0) & ((t + 1) % jnp.maximum(progress_every, 1) == 0),
                lambda: jax.debug.callback(_tick, t),
                lambda: None,
            )
            return carry, buffers

        return jax.lax.fori_loop(0, num_steps, body, (carry, buffers))

    return jax.jit(segment)


@functools.lru_cache(maxsize=64)
def _init_program(kernel: MCMCKernel, logdensity_fn):
    return jax.jit(jax.vmap(lambda x: kernel.init(x, logdensity_fn)))


def run_kernel(kernel: Kernel, key, initial_state, num_steps: int, *, thin: int = 1):
    """The bare MCMC loop of one chain: ``num_steps`` steps of a ready :class:`~ulam.mcmc.Kernel`.

    Step ``t`` uses the key ``fold_in(key, t)`` (a run cut in two gives the same draws);
    every ``thin``-th state is kept. Pure and jit-able (``num_steps`` and ``thin`` static);
    ``vmap`` it over keys and states for many chains. :func:`sample` adds warm-up
    adaptation, many chains, diagnostics, progress, streaming and checkpoints.

    Returns ``(final_state, states, infos)`` with ``num_steps // thin`` kept states and infos.

    Example:
      >>> import jax, jax.numpy as jnp
      >>> from ulam import mcmc
      >>> k = mcmc.mala_kernel().bind(lambda x: -0.5 * jnp.sum(x**2), step_size=0.5)
      >>> final, states, infos = mcmc.run_kernel(k, jax.random.key(0), k.init(jnp.zeros(2)), 100)
      >>> states.position.shape
      (100, 2)
    """
    checks.prng_key(key)
    num_steps = checks.count("num_steps", num_steps)
    thin = checks.count("thin", thin)
    if not (isinstance(kernel, Kernel) or (hasattr(kernel, "step") and hasattr(kernel, "init"))):
        raise TypeError(checks.message("kernel", "a ready Kernel(init, step)", type(kernel).__name__,
                                       "bind an MCMCKernel first: kernel.bind(logdensity_fn, step_size)"))
    if isinstance(kernel, MCMCKernel):
        raise TypeError(checks.message("kernel", "a ready Kernel(init, step)", "an MCMCKernel with nothing bound",
                                       "use kernel.bind(logdensity_fn, step_size, inverse_mass_matrix)"))

    def body(state, t):
        state, info = kernel.step(jax.random.fold_in(key, t), state)
        return state, (state, info)

    def outer(state, j):
        ts = j * thin + jnp.arange(thin)
        state, (states, infos) = jax.lax.scan(body, state, ts)
        last = jax.tree_util.tree_map(lambda x: x[-1], (states, infos))
        return state, last

    final, (states, infos) = jax.lax.scan(outer, initial_state, jnp.arange(num_steps // thin))
    return final, states, infos


# -- public API ---------------------------------------------------------------------------


@dataclasses.dataclass
class Run:
    """Where a run stands: the compiled loop's carry, the global step, and the draws so far (host)."""

    carry: Any
    t: int
    key_data: np.ndarray
    draws: list
    stats: list
    fingerprint: dict
    seconds: float = 0.0

    @property
    def key(self):
        return jax.random.wrap_key_data(jnp.asarray(self.key_data))

    def __repr__(self) -> str:
        return f"Run(t={self.t}, kept chunks={len(self.draws)}, seconds={self.seconds:.2f})"


def _hash_jaxpr(fn, *args) -> str:
    closed = jax.make_jaxpr(fn)(*args)
    h = hashlib.sha256(str(closed.jaxpr).encode())
    for c in closed.consts:
        c = np.asarray(c)
        h.update(f"{c.dtype}{c.shape}".encode())
        h.update(np.ascontiguousarray(c).tobytes())
    return h.hexdigest()[:16]


def run_fingerprint(target, position, *, kernel=None, settings: dict | None = None, run_id: str | None = None) -> dict:
    """What identifies a run, for refusing to resume a checkpoint of a different one.

    Entries: ``target`` (a SHA-256 of the log-density's jaxpr at ``position`` and of the
    constants it closes over, e.g. the data; or the user's ``run_id``), ``position``
    (tree structure, shapes and dtypes of one chain's position), ``kernel`` (its name and
    options; for a ready :class:`~ulam.mcmc.Kernel` the hash of its traced step),
    ``settings`` (counts, adaptation, metric, ...) and ``ulam`` (the library version).

    Example:
      >>> import jax.numpy as jnp
      >>> from ulam import mcmc
      >>> fp = mcmc.run_fingerprint(lambda x: -jnp.sum(x**2), jnp.zeros(2), kernel=mcmc.nuts_kernel())
      >>> sorted(fp)
      ['kernel', 'position', 'settings', 'target', 'ulam']
    """
    import ulam

    leaves, treedef = jax.tree_util.tree_flatten(position)
    shapes = str(treedef) + ";" + ",".join(f"{jnp.result_type(x)}{tuple(np.shape(x))}" for x in leaves)
    if run_id is not None:
        target_id = f"run_id {run_id}"
    elif isinstance(target, Kernel) or target is None:
        target_id = "see kernel"
    else:
        target_id = "jaxpr " + _hash_jaxpr(target, position)
    if isinstance(kernel, MCMCKernel):
        kernel_id = f"{kernel.name} {dict(kernel.options)}" + (
            "" if kernel.name in KERNELS else f" step_fn={getattr(kernel.step_fn, '__qualname__', kernel.step_fn)}")
    elif isinstance(kernel, Kernel):
        kernel_id = "Kernel " + (f"run_id {run_id}" if run_id is not None else
                                 _hash_jaxpr(lambda x, k: kernel.step(k, kernel.init(x)), position, jax.random.key(0)))
    else:
        kernel_id = repr(kernel)
    return {
        "target": target_id,
        "position": shapes,
        "kernel": kernel_id,
        "settings": repr(sorted((settings or {}).items())),
        "ulam": ulam.__version__,
    }


def _is_key(x) -> bool:
    dtype = getattr(x, "dtype", None)
    if dtype is None:
        return False
    return bool(jnp.issubdtype(dtype, jax.dtypes.prng_key)) or (dtype == jnp.uint32 and np.shape(x) == (2,))


_DEPRECATED = {
    "kernel_options": "pass the options to the kernel's constructor, e.g. kernel=mcmc.nuts_kernel(max_tree_depth=8)",
    "stream_batches": "pass stream=mcmc.Streaming(num_batches=...)",
    "stream_fn": "pass stream=mcmc.Streaming(fn=...)",
    "checkpoint_every": "pass checkpoint=mcmc.Checkpoint(path, every=...)",
}


def _deprecated(legacy: dict, stacklevel: int = 3) -> dict:
    unknown = set(legacy) - set(_DEPRECATED)
    if unknown:
        raise TypeError(f"sample: unexpected keyword argument(s) {sorted(unknown)}")
    for name in legacy:
        warnings.warn(f"{name} is deprecated; {_DEPRECATED[name]}", DeprecationWarning, stacklevel=stacklevel)
    return legacy


def _resolve_kernel(kernel, kernel_options):
    if isinstance(kernel, str):
        checks.one_of("kernel", kernel, list(KERNELS))
        options = dict(kernel_options or {})
        try:
            return KERNELS[kernel](**options)
        except TypeError:
            import inspect

            accepted = list(inspect.signature(KERNELS[kernel]).parameters)
            raise ValueError(
                checks.message("kernel_options", f"options of {kernel!r} ({', '.join(accepted) or 'none'})",
                               sorted(options))
            ) from None
    if kernel_options:
        raise ValueError(checks.message("kernel_options", "nothing for a kernel object", sorted(kernel_options),
                                        "give the options to its constructor"))
    if isinstance(kernel, (MCMCKernel, Kernel)):
        return kernel
    raise TypeError(checks.message(
        "kernel", f"one of {', '.join(map(repr, KERNELS))}, an MCMCKernel (e.g. mcmc.nuts_kernel()) or a ready Kernel",
        type(kernel).__name__))


class Sampler:
    """A configured multi-chain sampler; :func:`sample` is the one-call front end.

    ``init(key, initial_position) -> Run``, ``run(run, num_steps=None) -> Run`` (advance
    ``num_steps`` steps, or to the end), ``result(run)``. A :class:`Run` can be saved with
    :func:`save_checkpoint` and resumed after :func:`load_checkpoint`; the draws are
    bit-identical to an uninterrupted run with the same key. The arguments are those of
    :func:`sample`.

    Example:
      >>> import jax, jax.numpy as jnp
      >>> from ulam import mcmc
      >>> s = mcmc.Sampler(lambda x: -0.5 * jnp.sum(x**2), kernel="rwm", num_chains=2, num_warmup=50,
      ...                  num_draws=50, progress=False)
      >>> run = s.run(s.init(jax.random.key(0), jnp.zeros((2, 1))))
      >>> s.result(run).flat_draws.shape
      (2, 50, 1)
    """

    def __init__(
        self,
        target,
        *,
        kernel="nuts",
        num_chains: int = 4,
        num_warmup: int = 1000,
        num_draws: int = 1000,
        thin: int = 1,
        step_size=None,
        inverse_mass_matrix=None,
        metric: str = "diag",
        adapt: str = "per_chain",
        target_acceptance: float | None = None,
        stream: bool | Streaming = False,
        progress: bool | int | None = None,
        chunk_size: int | None = None,
        run_id: str | None = None,
        **legacy,
    ):
        legacy = _deprecated(legacy)
        self.model = None
        if _is_numpyro_model(target):
            self.model = target
            logdensity_fn = target.logdensity_fn
        elif isinstance(target, Kernel):
            logdensity_fn = None
            kernel = target
        elif isinstance(target, MCMCKernel):
            raise TypeError(checks.message(
                "target", "a log-density function, a NumPyro model or a ready Kernel", "an MCMCKernel",
                "pass the log-density first and the kernel as kernel=..."))
        else:
            logdensity_fn = target
        if isinstance(kernel, Kernel) and not isinstance(target, Kernel) and target is not None:
            raise TypeError(checks.message("kernel", "an adaptable kernel when a log-density is given",
                                           "a ready Kernel", "pass the ready Kernel as the first argument"))
        kernel = _resolve_kernel(kernel, legacy.get("kernel_options"))
        if isinstance(kernel, MCMCKernel):
            checks.function("logdensity_fn", logdensity_fn, "a function x -> scalar log-density")
        num_chains = checks.count("num_chains", num_chains)
        num_warmup = checks.count("num_warmup", num_warmup, minimum=0)
        num_draws = checks.count("num_draws", num_draws)
        thin = checks.count("thin", thin)
        checks.one_of("metric", metric, ["diag", "dense", "identity"])
        checks.one_of("adapt", adapt, ["per_chain", "pooled", "none"])
        if step_size is not None:
            check_step_size(step_size)
        if inverse_mass_matrix is not None:
            check_inverse_mass_matrix(inverse_mass_matrix)
        if not isinstance(kernel, MCMCKernel) or adapt == "none" or num_warmup == 0:
            adapt_step = adapt_mass = False
        else:
            adapt_step = kernel.target_acceptance is not None
            adapt_mass = metric != "identity" and inverse_mass_matrix is None
        if isinstance(kernel, MCMCKernel) and kernel.target_acceptance is None and step_size is None:
            raise ValueError(checks.message("step_size", f"a value for kernel {kernel.name!r}", "None",
                                            "it has no acceptance step to adapt to; pass step_size"))
        if target_acceptance is None:
            target_acceptance = kernel.target_acceptance if isinstance(kernel, MCMCKernel) else None
            target_acceptance = 0.8 if target_acceptance is None else target_acceptance
        checks.in_interval("target_acceptance", target_acceptance, 0.0, 1.0, low_open=True, high_open=True)
        if isinstance(stream, Streaming):
            streaming = stream
        elif stream:
            streaming = Streaming(legacy.get("stream_batches", 32), legacy.get("stream_fn"))
        else:
            streaming = None
        if streaming is not None:
            checks.count("num_batches", streaming.num_batches, minimum=4)
            if num_draws < streaming.num_batches:
                raise ValueError(checks.message(
                    "num_draws", f"at least num_batches={streaming.num_batches} draws when streaming", num_draws))
        if progress is None:
            progress = bool(getattr(sys.stderr, "isatty", lambda: False)())
        self.progress_every = 0
        if progress:
            total = num_warmup + num_draws * thin
            self.progress_every = max(1, total // 100) if progress is True else checks.count("progress", progress)
        self.num_chains = num_chains
        self.kernel = kernel
        self.run_id = run_id
        self._step_size0 = step_size
        self._inv0 = inverse_mass_matrix
        self._chunk_size = chunk_size
        self._cfg_kwargs = dict(
            logdensity_fn=logdensity_fn,
            kernel=kernel,
            num_warmup=num_warmup,
            num_draws=num_draws,
            thin=thin,
            adapt=adapt,
            metric=metric,
            adapt_step_size=adapt_step,
            adapt_mass_matrix=adapt_mass,
            target_acceptance=float(target_acceptance),
            stream_batches=streaming.num_batches if streaming else 0,
            stream_fn=streaming.fn if streaming else None,
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

    def init(self, key, initial_position=None) -> Run:
        """Check the starting points, initialize every chain and the adaptation state."""
        checks.prng_key(key)
        if initial_position is None:
            if self.model is None:
                raise ValueError(checks.message("initial_position", "one starting point per chain", "None"))
            initial_position = self.model.initial_positions(key, self.num_chains)
        self._check_positions(initial_position)
        initial_position = jax.tree_util.tree_map(jnp.asarray, initial_position)
        kernel = self._cfg_kwargs["kernel"]
        logdensity_fn = self._cfg_kwargs["logdensity_fn"]
        if isinstance(kernel, MCMCKernel):
            one0 = jax.tree_util.tree_map(lambda x: x[0], initial_position)
            try:
                out = jax.eval_shape(logdensity_fn, one0)
            except TypeError as e:
                raise TypeError(f"logdensity_fn: calling it on one chain's position failed: {e}") from e
            checks.callback_output("logdensity_fn", out, shape=(), what="a scalar log-density")
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
            eps0 = kernel.default_step_size(dim) if isinstance(kernel, MCMCKernel) else 1.0
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
        adapt = _adaptation(cfg).init(step_size, inv)
        stream = ()
        if cfg.stream_batches:
            out_dim = dim if cfg.stream_fn is None else jax.eval_shape(cfg.stream_fn, z).shape[0]
            stream = stream_init(c, cfg.stream_batches, out_dim, dtype)
        carry = _Carry(
            states=states,
            adapt=adapt,
            num_divergent=np.zeros((c,), np.int32),
            num_divergent_warmup=np.zeros((c,), np.int32),
            sum_acceptance=np.zeros((c,), dtype),
            num_grad_evals=np.zeros((c,), np.int32),
            stream=stream,
        )
        key_data = np.asarray(jax.random.key_data(key))
        return Run(carry, 0, key_data, [], [], self.fingerprint(one))

    def fingerprint(self, position) -> dict:
        """:func:`run_fingerprint` of this sampler's run from one chain's ``position``."""
        cfg = self._cfg_kwargs
        settings = {k: v for k, v in cfg.items() if k not in ("logdensity_fn", "kernel", "stream_fn")}
        settings["num_chains"] = self.num_chains
        settings["step_size"] = None if self._step_size0 is None else np.asarray(self._step_size0).tolist()
        settings["inverse_mass_matrix"] = (
            None if self._inv0 is None else hashlib.sha256(np.asarray(self._inv0).tobytes()).hexdigest()[:16])
        settings["stream_fn"] = None if cfg["stream_fn"] is None else "jaxpr " + _hash_jaxpr(
            cfg["stream_fn"], ravel_pytree(position)[0])
        target = cfg["logdensity_fn"] if cfg["logdensity_fn"] is not None else cfg["kernel"]
        return run_fingerprint(target, position, kernel=cfg["kernel"], settings=settings, run_id=self.run_id)

    # -- running ---------------------------------------------------------------------------
    def run(self, run: Run, num_steps: int | None = None) -> Run:
        """Advance ``run`` by ``num_steps`` steps (default: to the end) and return it."""
        if self.cfg is None:
            raise RuntimeError("Sampler.run: call init(key, initial_position) (or restore a checkpoint) first")
        cfg = self.cfg
        total = self.total_steps
        stop = total if num_steps is None else min(total, run.t + checks.count("num_steps", num_steps))
        program = _program(cfg)
        key = run.key
        progress = None
        if self.progress_every:
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
                    jnp.asarray(kept_before, jnp.int32), jnp.asarray(self.progress_every, jnp.int32),
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
                    fields = info.info._asdict() | {"logdensity": info.logdensity} if isinstance(info, _InfoLp) \
                        else info._asdict()
                    run.stats.append({k: np.asarray(v[:n_new]) for k, v in fields.items()})
                run.carry = carry
                run.t = seg_end
        finally:
            if progress is not None:
                jax.block_until_ready(run.carry)
                jax.effects_barrier()
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
            step_size=np.asarray(carry.adapt.step_size),
            inverse_mass_matrix=np.asarray(carry.adapt.inverse_mass_matrix),
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
        unravel = self._unravel
        extra = {}
        if self.model is not None:
            flat, unravel, extra = self.model.constrain_draws(flat, self._unravel)
        return MCMCResult(flat_draws=flat, unravel=unravel, stats=stats, final_state=run.carry.states, **common,
                          **extra)


def _is_numpyro_model(target) -> bool:
    return getattr(target, "_ulam_numpyro_model", False)


def sample(
    target,
    key,
    initial_position=None,
    *,
    kernel="nuts",
    num_chains: int = 4,
    num_warmup: int = 1000,
    num_draws: int = 1000,
    thin: int = 1,
    step_size=None,
    inverse_mass_matrix=None,
    metric: str = "diag",
    adapt: str = "per_chain",
    target_acceptance: float | None = None,
    stream: bool | Streaming = False,
    progress: bool | int | None = None,
    checkpoint: str | os.PathLike | Checkpoint | None = None,
    **legacy,
):
    r"""Run ``num_chains`` MCMC chains with warm-up adaptation; return draws and diagnostics.

    Args:
      target: what is sampled: ``logdensity_fn``, ``x -> scalar`` log of the (unnormalized)
        target over one position (any pytree); a NumPyro model
        (:func:`ulam.numpyro_model.numpyro_model`, draws returned in the constrained space); or
        a ready :class:`~ulam.mcmc.Kernel` (run as given, no adaptation).
      key: a JAX key (``jax.random.key`` or legacy ``PRNGKey``); the same key gives the same
        draws, bit for bit. (The old order ``sample(key, logdensity_fn, ...)`` still works for
        one release, with a ``DeprecationWarning``.)
      initial_position: one starting point per chain: every leaf has a leading axis of size
        ``num_chains`` (optional for a NumPyro model).
      kernel: an :class:`~ulam.mcmc.MCMCKernel` (``mcmc.nuts_kernel(max_tree_depth=8)``, or
        your own), or the name of a built-in one: ``"nuts"`` (default), ``"hmc"``, ``"mala"``,
        ``"rwm"``, ``"ula"``. Every MCMCKernel gets the same warm-up adaptation.
      num_warmup, num_draws, thin: warm-up steps, kept draws per chain, steps per kept draw.
      step_size: initial (adapted) step size; default: Stan's heuristic for HMC/NUTS.
      inverse_mass_matrix: fixes Σ (no mass-matrix adaptation); default: adapted.
      metric: ``"diag"``, ``"dense"`` or ``"identity"``.
      adapt: ``"per_chain"`` (default: each chain its own step size and Σ, as Stan, NumPyro
        and BlackJAX do), ``"pooled"`` (one step size from the chains' median acceptance and
        one Σ from the chains' within-chain estimates, leaving out outlying chains: see
        :func:`~ulam.mcmc.window_adaptation`) or ``"none"``.
      target_acceptance: dual-averaging target (0.8 for HMC/NUTS, 0.574 MALA, 0.234 RWM).
      stream: ``True`` or a :class:`Streaming`: keep only running statistics (constant memory
        in ``num_draws``), see :mod:`ulam.mcmc.streaming`.
      progress: a progress bar (updated from inside the compiled loop by a host callback about
        100 times; an int: every that many steps). Default: on when stderr is a terminal.
        Switching it does not recompile.
      checkpoint: a path or a :class:`Checkpoint`; the run is saved there every
        ``Checkpoint.every`` steps and, if the file exists when called, resumed from it; a
        checkpoint of a different run is refused (see :func:`run_fingerprint`).

    Returns:
      :class:`~ulam.mcmc.MCMCResult` (``draws`` with shape ``(chains, draws, ...)``, ``stats``,
      ``summary()``, ``expectation(f)``, ``to_arviz()``), or a
      :class:`~ulam.mcmc.StreamingResult` when streaming.
    """
    if _is_key(target) and not _is_key(key):
        warnings.warn(
            "sample(key, logdensity_fn, ...) is deprecated: the key comes after what is sampled, "
            "sample(logdensity_fn, key, initial_position, ...)", DeprecationWarning, stacklevel=2)
        target, key = key, target
        if target is None:
            target = kernel
    checks.prng_key(key)
    legacy = _deprecated(legacy)
    if checkpoint is not None and not isinstance(checkpoint, Checkpoint):
        checkpoint = Checkpoint(checkpoint, every=legacy.pop("checkpoint_every", None))
    legacy.pop("checkpoint_every", None)
    if checkpoint is not None and checkpoint.every is not None:
        checks.count("checkpoint.every", checkpoint.every)
    chunk = None
    if checkpoint is not None and checkpoint.every is not None:
        chunk = max(1, checkpoint.every // max(1, thin))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # already warned above
        sampler = Sampler(
            target, kernel=kernel, num_chains=num_chains, num_warmup=num_warmup, num_draws=num_draws,
            thin=thin, step_size=step_size, inverse_mass_matrix=inverse_mass_matrix, metric=metric, adapt=adapt,
            target_acceptance=target_acceptance, stream=stream, progress=progress, chunk_size=chunk,
            run_id=None if checkpoint is None else checkpoint.run_id, **legacy,
        )
    run = sampler.init(key, initial_position)
    if checkpoint is None:
        return sampler.result(sampler.run(run))
    if os.path.exists(checkpoint.path):
        run = load_checkpoint(checkpoint.path, run, force=checkpoint.force)
    every = checkpoint.every or sampler.total_steps
    while run.t < sampler.total_steps:
        run = sampler.run(run, every)
        save_checkpoint(checkpoint.path, run)
    return sampler.result(run)


def save_checkpoint(path, run: Run) -> None:
    """Write ``run`` (with its fingerprint) to ``path`` atomically (NumPy arrays in a pickle).

    Example:
      >>> from ulam import mcmc
      >>> callable(mcmc.save_checkpoint)
      True
    """
    payload = dataclasses.replace(run, carry=jax.device_get(run.carry))
    tmp = f"{path}.tmp"
    with open(tmp, "wb") as f:
        pickle.dump(payload, f, protocol=pickle.HIGHEST_PROTOCOL)
    os.replace(tmp, path)


def load_checkpoint(path, like: Run, *, force: bool = False) -> Run:
    """Read a run saved by :func:`save_checkpoint`; ``like`` (a fresh ``Sampler.init``) must be the same run.

    The stored fingerprint (:func:`run_fingerprint`) and key are compared with ``like``'s;
    a difference raises ``ValueError`` naming what differs, unless ``force=True``.

    Example:
      >>> from ulam import mcmc
      >>> callable(mcmc.load_checkpoint)
      True
    """
    with open(path, "rb") as f:
        run: Run = pickle.load(f)
    stored = run.fingerprint if isinstance(run.fingerprint, dict) else {"settings": run.fingerprint}
    differ = [k for k in sorted(set(stored) | set(like.fingerprint)) if stored.get(k) != like.fingerprint.get(k)]
    if not np.array_equal(run.key_data, like.key_data):
        differ.append("key")
    if differ and not force:
        what = "; ".join(
            "key differs" if k == "key" else
            f"{k} differs (checkpoint {stored.get(k, '?')!s:.80}, now {like.fingerprint.get(k, '?')!s:.80})"
            for k in differ)
        raise ValueError(
            f"checkpoint: {path} was written by a different run: {what}; use another path, delete the file, "
            "or pass Checkpoint(path, force=True) to resume it anyway"
        )
    run.fingerprint = like.fingerprint
    run.carry = jax.tree_util.tree_map(
        lambda a, b: jnp.asarray(a, dtype=jnp.asarray(b).dtype), run.carry, like.carry
    )
    return run
