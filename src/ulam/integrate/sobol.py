r"""Scrambled Sobol' nets: direction numbers, the random linear scramble and digital shift (:func:`sobol_points`).

The building blocks of randomized quasi-Monte Carlo (:mod:`ulam.integrate.qmc`) and of
quasi-random directions elsewhere in ulam.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from ulam import checks, jit_cache
from ulam.deprecation import renamed_keywords
from ulam.integrate.args import check_count
from ulam.integrate.uniform import draw_flat

__all__ = ["sobol_points", "joe_kuo_table", "sobol_directions", "BIT_VALUES", "scrambled_directions", "net_points",
           "xor_span", "to_unit_interval"]


@functools.lru_cache(maxsize=1)
def joe_kuo_table() -> tuple[np.ndarray, np.ndarray]:
    """Primitive polynomials and initial direction numbers (Joe & Kuo 2008, new-joe-kuo-6.21201).

    Shipped with ulam (``joe_kuo_6_21201.npz``, under the authors' BSD-style licence in
    ``JOE_KUO_LICENSE.txt`` beside it): 21201 coordinates, the table SciPy's Sobol' engine
    also uses, read without importing ``scipy.stats`` (whose import costs seconds).
    """
    from importlib import resources

    with resources.files("ulam.integrate").joinpath("joe_kuo_6_21201.npz").open("rb") as fh:
        table = np.load(fh)
        return table["poly"].astype(np.int64), table["vinit"].astype(np.int64)


@functools.lru_cache(maxsize=64)
def sobol_directions(dim: int, bits: int) -> np.ndarray:
    """Direction numbers ``v_k`` (k < bits) of the unscrambled Sobol' sequence, as 32-bit integers (bits, dim).

    Point ``i`` of the net is :math:`\\bigoplus_k \\mathrm{bit}_k(i)\\, v_k`. Coordinate ``j`` with
    primitive polynomial :math:`x^s + a_1x^{s-1} + \\dots + a_{s-1}x + 1` and initial odd integers
    :math:`m_1..m_s` continues by the recurrence (Bratley & Fox 1988; Joe & Kuo 2008)
    :math:`m_k = 2a_1m_{k-1} \\oplus 4a_2m_{k-2} \\oplus\\dots\\oplus 2^sm_{k-s} \\oplus m_{k-s}`,
    and :math:`v_k = m_k\\,2^{31-k}` (k from 0). Coordinate 0 has every :math:`m_k = 1`.
    """
    poly, vinit = joe_kuo_table()
    if dim > len(poly):
        raise ValueError(f"dim: Sobol' direction numbers exist for at most {len(poly)} dimensions, got {dim}")
    m = np.ones((dim, 32), np.uint64)
    for j in range(1, dim):
        p = int(poly[j])
        s = p.bit_length() - 1  # degree
        m[j, :s] = vinit[j, :s]
        for k in range(s, 32):
            new = m[j, k - s] ^ (m[j, k - s] << np.uint64(s))
            for i in range(1, s):
                if (p >> (s - i)) & 1:
                    new ^= m[j, k - i] << np.uint64(i)
            m[j, k] = new
    shifts = (31 - np.arange(32)).astype(np.uint64)
    return (m << shifts).astype(np.uint32).T[:bits].copy()


BIT_VALUES = np.uint32(1) << (31 - np.arange(32, dtype=np.uint32))


def scrambled_directions(key: jax.Array, directions: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Random linear matrix scramble of the direction numbers, and a random digital shift.

    Each coordinate's bits (most significant first) are multiplied by a random
    lower-triangular binary matrix with unit diagonal (Matoušek 1998; Owen 2003).
    The scramble is linear over GF(2), so scrambling the direction numbers scrambles
    every point of the net; each scrambled, shifted point is uniform on the unit cube
    and the set keeps its net structure.
    """
    dim = directions.shape[1]
    k_mat, k_shift = jax.random.split(key)
    coin = draw_flat(lambda k, shape: jax.random.bernoulli(k, 0.5, shape), k_mat, (dim, 32, 32))
    lower = jnp.tril(coin, k=-1) | jnp.eye(32, dtype=bool)
    bit_values = jnp.asarray(BIT_VALUES)
    # masks[j, r]: row r of coordinate j's matrix as an integer (column c <-> bit 31 - c).
    masks = jnp.sum(jnp.where(lower, bit_values, jnp.uint32(0)), axis=-1, dtype=jnp.uint32)
    parity = jax.lax.population_count(directions[:, :, None] & masks[None, :, :]) & jnp.uint32(1)
    scrambled = jnp.sum(parity * bit_values, axis=-1, dtype=jnp.uint32)
    return scrambled, jax.random.bits(k_shift, (dim,), jnp.uint32)


def net_points(directions: jax.Array) -> jax.Array:
    """All :math:`2^b` points spanned by ``b`` direction numbers: point ``i`` is :math:`\\bigoplus_j \\mathrm{bit}_j(i)\\, v_j`.

    One fused pass of O(2^b b d) XORs. (Doubling by concatenation needs only O(2^b d), but
    XLA compiled its chain of concatenations ~10x slower, for a run-time gain of ~1 ms.)
    """
    index = jnp.arange(1 << directions.shape[0], dtype=jnp.uint32)[:, None]
    points = jnp.zeros((index.shape[0], directions.shape[1]), jnp.uint32)
    for j, v in enumerate(directions):
        points = points ^ jnp.where((index >> j) & jnp.uint32(1), v, jnp.uint32(0))
    return points


def xor_span(directions: jax.Array, index: jax.Array) -> jax.Array:
    """:math:`\\bigoplus_j \\mathrm{bit}_j(\\text{index})\\, v_j`."""
    bits = (index >> jnp.arange(directions.shape[0], dtype=jnp.uint32)) & jnp.uint32(1)
    terms = jnp.where(bits[:, None].astype(bool), directions, jnp.uint32(0))
    return jax.lax.reduce(terms, jnp.uint32(0), jax.lax.bitwise_xor, (0,))


def to_unit_interval(x: jax.Array, dtype) -> jax.Array:
    # The top 24 bits, centred in their cell: exactly representable in float32, never 0 or 1.
    return ((x >> jnp.uint32(8)).astype(dtype) + 0.5) * (2.0**-24)


@renamed_keywords(num="num_points")
def sobol_points(key: jax.Array, num_points: int, dim: int, dtype=jnp.float32) -> jax.Array:
    """The first ``num_points`` points of a scrambled Sobol' net in ``(0, 1)^dim``; each point is uniform.

    A power of 2 gives a whole net (every elementary interval balanced); other counts
    take the leading points of the next net, which stay uniform, so averages over them
    stay unbiased.

    Example:
      >>> import jax
      >>> u = sobol_points(jax.random.key(0), 1024, 3)
      >>> u.shape
      (1024, 3)
    """
    checks.prng_key(key)
    return _sobol_points(key, num=check_count("num_points", num_points), dim=check_count("dim", dim),
                         dtype=jnp.dtype(dtype))


@jit_cache.jit(static_argnames=("num", "dim", "dtype"))
def _sobol_points(key, *, num, dim, dtype):
    directions = jnp.asarray(sobol_directions(dim, (num - 1).bit_length()))
    scrambled, shift = scrambled_directions(key, directions)
    return to_unit_interval(net_points(scrambled)[:num] ^ shift, dtype)

