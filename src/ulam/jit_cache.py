"""The one compile-cache rule of ulam: a jitted function cached per static configuration.

The rule: **stable shapes; nothing recompiles on a second call.** Everything that changes the
program's structure (the integrand, counts, chunk sizes, flags) is a *static configuration*:
hashable Python values that select one jitted function from a bounded LRU cache. Everything
else (keys, distribution parameters, data) is traced, so a second call with the same static
configuration and the same argument shapes and dtypes reuses the compiled program. Pass the
same function object (not a fresh ``lambda``) to reuse it across calls.

* :func:`cached` -- ``build(*static) -> function``; ``get(*static)`` returns its jitted version.
* :func:`jit` -- ``jax.jit`` with ``static_argnames``, but with the static configurations held
  in that same bounded cache (what :mod:`ulam.integrate` and :mod:`ulam.streaming` use).
* :func:`enable_compilation_cache` -- JAX's persistent (on-disk) compilation cache, so a
  second *process* running the same job skips compilation too.
"""

from __future__ import annotations

import collections
import functools
import os
import threading
from typing import Callable

import jax

__all__ = ["cached", "jit", "enable_compilation_cache", "disable_compilation_cache", "DEFAULT_MAXSIZE"]

DEFAULT_MAXSIZE = 64


class CacheInfo(collections.namedtuple("CacheInfo", "hits misses maxsize currsize")):
    """Hits, misses, bound and size of a :func:`cached` cache (as ``functools.lru_cache`` reports them)."""


def cached(build: Callable | None = None, *, maxsize: int = DEFAULT_MAXSIZE):
    """Decorator: ``build(*static) -> fn`` becomes ``get(*static) -> jax.jit(fn)``, LRU-cached per ``static``.

    ``static`` must be hashable (functions hash by identity). At most ``maxsize``
    configurations are kept; the least recently used is dropped (its compiled programs
    go with it). ``get.cache_info()`` and ``get.cache_clear()`` as for ``functools.lru_cache``.

    Example:
      >>> import jax.numpy as jnp
      >>> @cached
      ... def power(k):
      ...     return lambda x: x**k
      >>> float(power(3)(jnp.float32(2.0))), power(3) is power(3)
      (8.0, True)
    """

    def decorate(build_fn: Callable) -> Callable:
        entries: collections.OrderedDict = collections.OrderedDict()
        lock = threading.Lock()
        stats = {"hits": 0, "misses": 0}

        @functools.wraps(build_fn)
        def get(*static):
            try:
                hash(static)
            except TypeError as err:
                raise TypeError(
                    f"{build_fn.__name__}: expected hashable static configuration values, got {static!r}; "
                    "pass arrays as traced arguments instead"
                ) from err
            with lock:
                if static in entries:
                    entries.move_to_end(static)
                    stats["hits"] += 1
                    return entries[static]
                stats["misses"] += 1
            fn = jax.jit(build_fn(*static))
            with lock:
                entries[static] = fn
                while len(entries) > maxsize:
                    entries.popitem(last=False)
            return fn

        def cache_info() -> CacheInfo:
            return CacheInfo(stats["hits"], stats["misses"], maxsize, len(entries))

        def cache_clear() -> None:
            with lock:
                entries.clear()
                stats["hits"] = stats["misses"] = 0

        get.cache_info = cache_info
        get.cache_clear = cache_clear
        return get

    return decorate if build is None else decorate(build)


def jit(fn: Callable | None = None, *, static_argnames: tuple[str, ...], maxsize: int = DEFAULT_MAXSIZE):
    """``jax.jit`` whose static keyword arguments select a function from a :func:`cached` cache.

    Call it as the undecorated function (the static arguments by keyword). The traced
    arguments are compiled once per shape and dtype within each static configuration.

    Example:
      >>> import jax.numpy as jnp
      >>> @jit(static_argnames=("k",))
      ... def power(x, *, k):
      ...     return x**k
      >>> float(power(jnp.float32(2.0), k=3)), power.cache_info().currsize
      (8.0, 1)
    """
    names = tuple(static_argnames)

    def decorate(f: Callable) -> Callable:
        get = cached(lambda *items: functools.partial(f, **dict(items)), maxsize=maxsize)

        @functools.wraps(f)
        def call(*args, **kwargs):
            static = tuple((name, kwargs.pop(name)) for name in names if name in kwargs)
            return get(*static)(*args, **kwargs)

        call.cache_info = get.cache_info
        call.cache_clear = get.cache_clear
        return call

    return decorate if fn is None else decorate(fn)


def enable_compilation_cache(path: str | os.PathLike | None = None, *, min_compile_time_secs: float = 0.0) -> str:
    """Turn on JAX's persistent compilation cache: compiled programs are stored on disk and reused.

    A second process running the same job (same program, shapes, devices and JAX version)
    loads the compiled programs instead of compiling them. ``path`` defaults to
    ``$ULAM_CACHE_DIR`` or ``~/.cache/ulam/jax``; programs that compiled faster than
    ``min_compile_time_secs`` are not stored. Returns the directory used. Call it once,
    before the first computation.

    Example:
      >>> import tempfile, jax
      >>> before = jax.config.jax_compilation_cache_dir
      >>> where = enable_compilation_cache(tempfile.mkdtemp())
      >>> jax.config.jax_compilation_cache_dir == where
      True
      >>> disable_compilation_cache()  # (this example turns it off again)
    """
    if path is None:
        path = os.environ.get("ULAM_CACHE_DIR") or os.path.join(os.path.expanduser("~"), ".cache", "ulam", "jax")
    path = os.fspath(path)
    os.makedirs(path, exist_ok=True)
    jax.config.update("jax_compilation_cache_dir", path)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", float(min_compile_time_secs))
    try:  # also keep small programs (the default skips entries under a size threshold)
        jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
    except AttributeError:  # pragma: no cover - older JAX
        pass
    return path


def disable_compilation_cache() -> None:
    """Turn JAX's persistent compilation cache off again in this process.

    JAX decides once per process whether the cache is in use, so clearing the directory alone
    is not enough: the cache is also reset (``jax.experimental.compilation_cache``).

    Example:
      >>> import jax
      >>> disable_compilation_cache()
      >>> jax.config.jax_compilation_cache_dir is None
      True
    """
    from jax.experimental.compilation_cache import compilation_cache

    jax.config.update("jax_compilation_cache_dir", None)
    compilation_cache.reset_cache()
