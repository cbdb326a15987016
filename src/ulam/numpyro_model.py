r"""NumPyro models as ulam targets: a model function plus its data, wherever a log-density is accepted.

:func:`numpyro_model` wraps a NumPyro model (a Python function with ``numpyro.sample``
sites) and its arguments into a :class:`NumPyroModel`. Its ``logdensity_fn`` is minus
NumPyro's potential energy over the *unconstrained* parameters (every constrained site
mapped to :math:`\mathbb R^d` by NumPyro's bijections, with the log-Jacobian added:
``numpyro.infer.util.initialize_model``), so gradient-based kernels run on
:math:`\mathbb R^d`; :meth:`NumPyroModel.constrain` maps draws back (deterministic sites
included). ``ulam.mcmc.sample(numpyro_model(model, X, y=y), key)`` is the one-line switch
from ``numpyro.infer.MCMC``: the draws come back in the constrained space, keyed by site
name, and ``to_arviz()`` gets the pointwise log-likelihood and the observed data.
"""

from __future__ import annotations

from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree

from ulam import checks

__all__ = ["NumPyroModel", "numpyro_model"]


class NumPyroModel:
    """A NumPyro model bound to its arguments (see :func:`numpyro_model`).

    Attributes:
      logdensity_fn: unconstrained parameters (a dict by site name) ``-> scalar``: the log
        joint density plus the log-Jacobian of the constraining transforms.
      model, args, kwargs: what was given.
    """

    _ulam_numpyro_model = True

    def __init__(self, model: Callable, *args, **kwargs):
        from numpyro.infer.util import initialize_model

        checks.function("model", model, "a NumPyro model function")
        self.model, self.args, self.kwargs = model, args, kwargs
        info = initialize_model(jax.random.PRNGKey(0), model, model_args=args, model_kwargs=kwargs)
        potential_fn = info.potential_fn
        self._postprocess = info.postprocess_fn
        self.logdensity_fn = lambda z: -potential_fn(z)
        self._template = info.param_info.z

    def __repr__(self) -> str:
        name = getattr(self.model, "__name__", type(self.model).__name__)
        return f"NumPyroModel({name}, {len(self.args)} args, kwargs={sorted(self.kwargs)})"

    def initial_positions(self, key, num_chains: int):
        """One unconstrained starting point per chain (NumPyro's default: uniform in (-2, 2) unconstrained)."""
        from numpyro.infer.util import initialize_model

        checks.prng_key(key)
        keys = jax.random.key_data(jax.random.split(key, checks.count("num_chains", num_chains)))
        info = initialize_model(keys, self.model, model_args=self.args, model_kwargs=self.kwargs)
        return info.param_info.z

    def constrain(self, unconstrained):
        """Map one unconstrained position to the model's sites (constrained; deterministic sites too)."""
        return self._postprocess(unconstrained)

    def constrain_draws(self, flat, unravel):
        """Flat unconstrained draws ``(chains, draws, d)`` -> flat constrained draws and their unravel."""
        c, n, d = flat.shape
        z = jax.vmap(unravel)(jnp.asarray(flat.reshape(c * n, d)))
        sites = jax.jit(jax.vmap(self.constrain))(z)
        one = jax.tree_util.tree_map(lambda x: np.asarray(x[0]), sites)
        _, unravel_c = ravel_pytree(one)
        flat_c = jax.vmap(lambda t: ravel_pytree(t)[0])(sites)
        return np.asarray(flat_c).reshape(c, n, -1), unravel_c, {"model": self}

    def log_likelihood(self, samples: dict) -> dict:
        """Pointwise log-likelihood of every observed site at constrained ``samples`` (leading axis: draws)."""
        from numpyro.infer.util import log_likelihood

        return log_likelihood(self.model, samples, *self.args, **self.kwargs)

    def observed_data(self) -> dict:
        """The values of the model's observed sites."""
        from numpyro import handlers

        tr = handlers.trace(handlers.seed(self.model, 0)).get_trace(*self.args, **self.kwargs)
        return {k: np.asarray(v["value"]) for k, v in tr.items() if v["type"] == "sample" and v.get("is_observed")}


def numpyro_model(model: Callable, *args: Any, **kwargs: Any) -> NumPyroModel:
    """Bind a NumPyro model to its data; pass the result wherever a log-density is accepted.

    Example:
      >>> import jax, jax.numpy as jnp, numpyro, numpyro.distributions as dist
      >>> from ulam import mcmc
      >>> from ulam.numpyro_model import numpyro_model
      >>> def model(y=None):
      ...     mu = numpyro.sample("mu", dist.Normal(0.0, 10.0))
      ...     numpyro.sample("y", dist.Normal(mu, 1.0), obs=y)
      >>> res = mcmc.sample(numpyro_model(model, y=jnp.ones(5)), jax.random.key(0), num_chains=2,
      ...                   num_warmup=100, num_draws=100, progress=False)
      >>> res.draws["mu"].shape
      (2, 100)
    """
    return NumPyroModel(model, *args, **kwargs)
