"""Checkpoints of long runs: one file format, written atomically, tagged with a run fingerprint.

A checkpoint is one ``.npz`` file holding the leaves of a state pytree (``leaf_0``,
``leaf_1``, ...; typed PRNG keys stored as their key data) and a JSON string of
metadata (``__meta__``), among it the run's fingerprint. It is written to a temporary
file and moved into place with ``os.replace``, so an interrupted write (Ctrl-C, SIGKILL)
leaves the previous checkpoint intact.

A *fingerprint* (:func:`fingerprint`) identifies a run: a hash of the jaxpr (and its
constants) of the user functions, or a user-given ``run_id``; the shapes and dtypes of
the inputs; the key; the settings; and the ulam version. Resuming compares it with
the saved one (:func:`check_fingerprint`) and refuses a different run with an error
naming what differs (``force=True`` resumes anyway).
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any, Callable, Mapping, Optional

import jax
import numpy as np

from ulam import checks

__all__ = ["save_checkpoint", "load_checkpoint", "fingerprint", "hash_function", "check_fingerprint",
           "CheckpointMismatch"]


class CheckpointMismatch(ValueError):
    """Raised when a checkpoint was written by a different run than the one resuming from it."""


def _is_key(x) -> bool:
    return isinstance(x, jax.Array) and jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key)


def save_checkpoint(path, state: Any, meta: Optional[Mapping[str, Any]] = None) -> None:
    """Write ``state`` (a pytree of arrays) and JSON-able ``meta`` to ``path`` atomically.

    Example:
      >>> import os, tempfile, numpy as np
      >>> p = os.path.join(tempfile.mkdtemp(), "run.npz")
      >>> save_checkpoint(p, {"x": np.arange(3)}, {"step": 2})
      >>> state, meta = load_checkpoint(p, like={"x": np.zeros(3)})
      >>> state["x"].tolist(), meta["step"]
      ([0, 1, 2], 2)
    """
    path = Path(path)
    leaves = jax.tree_util.tree_leaves(state)
    arrays, key_impls = {}, {}
    for i, leaf in enumerate(leaves):
        if _is_key(leaf):
            key_impls[str(i)] = str(jax.random.key_impl(leaf))
            leaf = jax.random.key_data(leaf)
        arrays[f"leaf_{i}"] = np.asarray(leaf)
    meta = dict(meta or {})
    meta["_num_leaves"] = len(leaves)
    meta["_key_impls"] = key_impls
    tmp = path.with_name(path.name + ".tmp.npz")
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(tmp, "wb") as fh:
        np.savez(fh, __meta__=np.array(json.dumps(meta, default=str)), **arrays)
    os.replace(tmp, path)  # atomic: a reader sees the old file or the new one, never half of one


def load_checkpoint(path, like: Any = None):
    """Read a checkpoint: ``(state, meta)``; ``state`` has the structure of ``like`` (else a list of leaves)."""
    with np.load(path, allow_pickle=False) as data:
        meta = json.loads(str(data["__meta__"]))
        n = meta.pop("_num_leaves")
        impls = meta.pop("_key_impls", {})
        leaves = []
        for i in range(n):
            leaf = data[f"leaf_{i}"]
            if str(i) in impls:
                leaf = jax.random.wrap_key_data(leaf, impl=impls[str(i)])
            leaves.append(leaf)
    if like is None:
        return leaves, meta
    treedef = jax.tree_util.tree_structure(like)
    if treedef.num_leaves != n:
        raise CheckpointMismatch(f"checkpoint: {path} holds {n} arrays, the run's state has {treedef.num_leaves}")
    return jax.tree_util.tree_unflatten(treedef, leaves), meta


def _hash_bytes(*chunks: bytes) -> str:
    h = hashlib.sha256()
    for c in chunks:
        h.update(c)
    return h.hexdigest()[:16]


def hash_function(fn: Callable, *example_args) -> str:
    """A short hash of ``fn``'s jaxpr on ``example_args`` and of the constants it closes over.

    Two functions with the same program and the same captured arrays (model, data) hash
    equal; changing either changes the hash.

    Example:
      >>> import jax.numpy as jnp
      >>> hash_function(lambda x: x * 2, jnp.ones(3)) == hash_function(lambda x: x * 3, jnp.ones(3))
      False
    """
    checks.function("fn", fn, "a function to hash (traced on example_args)")
    closed = jax.make_jaxpr(fn)(*example_args)
    consts = [np.asarray(jax.random.key_data(c) if _is_key(c) else c).tobytes() for c in closed.consts]
    return _hash_bytes(str(closed.jaxpr).encode(), *consts)


def _describe_inputs(inputs) -> str:
    parts = []
    for leaf in jax.tree_util.tree_leaves(inputs):
        if _is_key(leaf):
            parts.append(f"key{tuple(leaf.shape)}")
        else:
            a = np.asarray(leaf) if not hasattr(leaf, "dtype") else leaf
            parts.append(f"{a.dtype}{tuple(np.shape(a))}")
    return ",".join(parts)


def fingerprint(
    *,
    functions: Optional[Mapping[str, Any]] = None,
    inputs: Any = None,
    key: Optional[jax.Array] = None,
    settings: Optional[Mapping[str, Any]] = None,
    run_id: Optional[str] = None,
) -> dict[str, str]:
    """The identity of a run, as a flat dict of strings (saved in every checkpoint).

    ``functions`` maps a name to ``(fn, example_args)`` (hashed by :func:`hash_function`)
    or to a string/bytes that already identifies it (e.g. a model's ``repr``). A
    ``run_id`` replaces the function hashes (for functions that cannot be traced, or to
    declare two programs the same run). ``inputs`` contributes shapes and dtypes,
    ``key`` its key data, ``settings`` their ``repr``; the ulam version is always included.

    Example:
      >>> import jax
      >>> a = fingerprint(key=jax.random.key(0), settings={"batch_size": 64})
      >>> b = fingerprint(key=jax.random.key(0), settings={"batch_size": 32})
      >>> sorted(k for k in a if a[k] != b[k])
      ['setting:batch_size']
    """
    from ulam import __version__

    if functions is not None and not isinstance(functions, Mapping):
        raise TypeError(checks.message("functions", "a mapping name -> (fn, example_args)", type(functions).__name__,
                                       "e.g. functions={'model': (log_density, (x0,))}"))
    fp: dict[str, str] = {"ulam": str(__version__)}
    if run_id is not None:
        fp["run_id"] = str(run_id)
    else:
        for name, spec in (functions or {}).items():
            if isinstance(spec, tuple) and spec and callable(spec[0]):
                fp[f"function:{name}"] = hash_function(spec[0], *spec[1])
            elif isinstance(spec, bytes):
                fp[f"function:{name}"] = _hash_bytes(spec)
            else:
                fp[f"function:{name}"] = _hash_bytes(str(spec).encode())
    if inputs is not None:
        fp["inputs"] = _describe_inputs(inputs)
    if key is not None:
        data = jax.random.key_data(key) if _is_key(key) else key
        fp["key"] = np.asarray(data).tobytes().hex()
    for name, value in (settings or {}).items():
        fp[f"setting:{name}"] = repr(value)
    return fp


def check_fingerprint(saved: Mapping[str, str], current: Mapping[str, str], path, force: bool = False) -> None:
    """Refuse to resume from ``path`` when ``saved`` and ``current`` differ (unless ``force``).

    Example:
      >>> check_fingerprint({"key": "00"}, {"key": "01"}, "run.npz")
      Traceback (most recent call last):
      ...
      ulam.harness.checkpoint.CheckpointMismatch: checkpoint: run.npz was written by a different run (differs in: key); delete it, pass another checkpoint path, or pass force=True to resume anyway
    """
    if force:
        return
    names = sorted(k for k in set(saved) | set(current) if saved.get(k) != current.get(k))
    if names:
        raise CheckpointMismatch(
            f"checkpoint: {path} was written by a different run (differs in: {', '.join(names)}); delete it, "
            "pass another checkpoint path, or pass force=True to resume anyway"
        )
