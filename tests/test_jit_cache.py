"""The one compile-cache rule: a jitted function per static configuration, LRU-bounded, no recompiles."""

import jax
import jax.numpy as jnp
import pytest

import ulam
from ulam import jit_cache
from ulam.testing import count_compilations


def test_cached_builds_once_per_configuration_and_does_not_recompile():
    builds = []

    @jit_cache.cached(maxsize=2)
    def scaled(k):
        builds.append(k)
        return lambda x: x * k

    x, y = jnp.arange(3.0), jnp.ones(3)
    scaled(2)(x)
    with count_compilations() as compiled:
        out = scaled(2)(y)  # same configuration and shapes
    assert compiled.count == 0 and builds == [2]
    assert out.tolist() == [2.0, 2.0, 2.0]
    scaled(3)(x)
    scaled(4)(x)  # bound of 2: configuration 2 is dropped
    assert scaled.cache_info().currsize == 2 and builds == [2, 3, 4]
    scaled(2)
    assert builds == [2, 3, 4, 2]
    with pytest.raises(TypeError, match="scaled: expected hashable static configuration values"):
        scaled([1, 2])


def test_jit_with_static_keywords():
    @jit_cache.jit(static_argnames=("power",))
    def f(x, *, power):
        return x**power

    two, three = jnp.float32(2.0), jnp.float32(3.0)
    f(two, power=2)
    with count_compilations() as compiled:
        out = f(three, power=2)
    assert compiled.count == 0 and float(out) == 9.0
    with count_compilations() as compiled:
        f(three, power=3)
    assert compiled.count == 1 and f.cache_info().currsize == 2


def test_enable_compilation_cache_sets_the_jax_config(tmp_path, monkeypatch):
    # The settings are process-wide: restore all three, or every later compilation in this
    # test worker is written to disk (a worker crashed in the cache writer when one was left on).
    before = jax.config.jax_compilation_cache_dir
    min_time = jax.config.jax_persistent_cache_min_compile_time_secs
    min_size = jax.config.jax_persistent_cache_min_entry_size_bytes
    try:
        where = ulam.enable_compilation_cache(tmp_path / "cache")
        assert where == str(tmp_path / "cache") and jax.config.jax_compilation_cache_dir == where
        assert jax.config.jax_persistent_cache_min_compile_time_secs == 0.0
        monkeypatch.setenv("ULAM_CACHE_DIR", str(tmp_path / "env"))
        assert ulam.enable_compilation_cache() == str(tmp_path / "env")
    finally:
        ulam.jit_cache.disable_compilation_cache()
        jax.config.update("jax_compilation_cache_dir", before)
        jax.config.update("jax_persistent_cache_min_compile_time_secs", min_time)
        jax.config.update("jax_persistent_cache_min_entry_size_bytes", min_size)
