r"""Distributions as maps from uniforms: what antithetic-through-the-CDF, QMC and stratification need.

:class:`UniformTransform` / :func:`from_uniform` wrap a user map ``[0,1)^d -> draw``;
:func:`uniform_transform` turns a numpyro distribution into its inverse CDF (or Cholesky map
for a multivariate normal) with its parameters kept traced; :func:`draw_flat` draws
multi-dimensional random arrays in one flat call (same numbers, faster to compile).
"""

from __future__ import annotations

import math
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.scipy.special import ndtri

from ulam.integrate.args import check_count

__all__ = ["UniformTransform", "from_uniform", "InverseCDF", "uniform_transform", "bind_transform", "draw_flat",
           "open_uniform", "reflection"]


class UniformTransform(NamedTuple):
    """A distribution given as a map from ``dim`` independent uniforms to one draw.

    ``transform(u)`` takes ``u`` of shape ``(dim,)`` in ``[0, 1)`` and returns one draw.
    It also samples (``sample(key, (num,))``), so it can be passed as ``p`` anywhere.

    Example:
      >>> import jax, jax.numpy as jnp
      >>> square = UniformTransform(2, lambda u: u * 2.0)   # uniform on [0, 2)^2
      >>> square.sample(jax.random.key(0), (5,)).shape
      (5, 2)
    """

    dim: int
    transform: Callable

    def sample(self, key, sample_shape=()):
        shape = tuple(sample_shape)
        u = jax.random.uniform(key, (int(np.prod(shape, dtype=int)), self.dim))
        x = jax.vmap(self.transform)(u)
        return jax.tree_util.tree_map(lambda a: a.reshape(shape + a.shape[1:]), x)


def from_uniform(dim: int, transform: Callable) -> UniformTransform:
    """Wrap ``transform: [0,1)^dim -> draw`` as a distribution usable by every estimator here.

    Example:
      >>> import jax.numpy as jnp
      >>> exp2 = from_uniform(2, lambda u: -jnp.log1p(-u))   # two independent Exp(1)
      >>> exp2.dim
      2
    """
    check_count("dim", dim)
    if not callable(transform):
        raise TypeError(f"transform: expected a function of a (dim,) uniform vector, got {type(transform).__name__}")
    return UniformTransform(dim, transform)


class InverseCDF(NamedTuple):
    """The static half of a numpyro distribution's map from uniforms; its parameters travel traced.

    Keeping the parameters out of the static argument means one compiled program serves every
    call with the same kind and shape of distribution (a closure over ``p`` would recompile).
    """

    dim: int
    shape: tuple[int, ...]
    gaussian: bool  # MultivariateNormal: loc + L @ ndtri(u); otherwise the base distribution's icdf


def uniform_transform(p: Any) -> tuple[UniformTransform | InverseCDF, Any]:
    """``p`` as a map from uniforms (inverse CDF or Cholesky factor): ``(static spec, traced parameters)``."""
    import numpyro.distributions as nd

    if isinstance(p, UniformTransform):
        return p, None
    if isinstance(p, nd.MultivariateNormal):
        d = p.event_shape[0]
        if p.batch_shape:
            raise ValueError("p: a MultivariateNormal with a batch shape has no single uniform transform; pass one")
        return InverseCDF(d, (d,), True), p
    base = p.base_dist if isinstance(p, nd.Independent) else p
    shape = tuple(base.batch_shape) + tuple(base.event_shape)
    if base.event_shape:
        raise TypeError(
            f"p: {type(p).__name__} has no inverse CDF for its {len(base.event_shape)}-d event; "
            "wrap a map from uniforms with ulam.from_uniform(dim, transform)"
        )
    dim = int(np.prod(shape, dtype=int)) if shape else 1
    try:
        jax.eval_shape(base.icdf, jnp.full(shape, 0.5))
    except (NotImplementedError, ImportError, AttributeError) as err:
        raise TypeError(
            f"p: {type(p).__name__} has no usable inverse CDF ({type(err).__name__}); "
            "wrap a map from uniforms with ulam.from_uniform(dim, transform)"
        ) from None
    return InverseCDF(dim, shape, False), p


def bind_transform(spec: UniformTransform | InverseCDF, p: Any) -> Callable:
    """The map ``u (dim,) -> draw`` from a static spec and (traced) distribution parameters."""
    if isinstance(spec, UniformTransform):
        return spec.transform
    if spec.gaussian:
        return lambda u: p.loc + p.scale_tril @ ndtri(u)
    import numpyro.distributions as nd

    base = p.base_dist if isinstance(p, nd.Independent) else p
    return lambda u: base.icdf(u.reshape(spec.shape))


def draw_flat(sample: Callable, key: jax.Array, shape: tuple[int, ...], *args, **kwargs) -> jax.Array:
    """``sample(key, shape, ...)`` drawn as one flat vector and reshaped: the same numbers.

    With JAX's default (partitionable threefry) generator, XLA compiles a draw of 3 or more
    dimensions ~5x slower on CPU than the same bits drawn 1-d, e.g.
    ``draw_flat(jax.random.normal, key, (4, 5, 6))``.
    """
    return sample(key, (math.prod(shape),), *args, **kwargs).reshape(shape)


def open_uniform(key, shape, dtype):
    """Uniforms strictly inside (0, 1), so inverse CDFs stay finite."""
    eps = jnp.finfo(dtype).eps
    return jnp.clip(draw_flat(jax.random.uniform, key, shape, dtype), eps, 1.0 - eps)


def reflection(p: Any) -> Callable | None:
    """``x -> 2 c - x`` for distributions symmetric about a centre ``c``; None otherwise."""
    import numpyro.distributions as nd

    symmetric = (nd.Normal, nd.StudentT, nd.Cauchy, nd.Laplace, nd.Logistic, nd.MultivariateNormal, nd.LowRankMultivariateNormal)
    base = p.base_dist if isinstance(p, nd.Independent) else p
    if isinstance(base, symmetric):
        centre = base.loc
        return lambda x: 2.0 * centre - x
    if isinstance(base, nd.Uniform):
        return lambda x: base.low + base.high - x
    return None

