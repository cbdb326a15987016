"""Results of :func:`ulam.mcmc.sample`: draws, sampler statistics, summaries, expectations."""

from __future__ import annotations

import dataclasses
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np

from ulam import diagnostics
from ulam.estimate import Estimate
from ulam.mcmc.streaming import stream_summary

__all__ = ["MCMCResult", "StreamingResult", "Summary", "chain_expectation"]

def _summary_statistics(draws) -> dict:
    """``ulam.diagnostics.summary_statistics`` (the one R-hat, ESS and MCSE) as float64 NumPy arrays."""
    out = diagnostics.summary_statistics(np.asarray(draws))
    return {k: np.asarray(v, dtype=float) for k, v in out.items()}


_COLUMNS = ("mean", "sd", "mcse_mean", "ess_bulk", "ess_tail", "rhat")


@dataclasses.dataclass
class Summary:
    """Per-parameter diagnostics; ``str()`` is the table, columns are attributes (NumPy arrays)."""

    names: list
    mean: np.ndarray
    sd: np.ndarray
    mcse_mean: np.ndarray
    ess_bulk: np.ndarray
    ess_tail: np.ndarray
    rhat: np.ndarray
    num_divergent: int = 0

    def __str__(self) -> str:
        head = f"{'':>12} " + " ".join(f"{c:>10}" for c in _COLUMNS)
        rows = [head]
        for i, name in enumerate(self.names):
            vals = [getattr(self, c)[i] for c in _COLUMNS]
            rows.append(f"{name:>12} " + " ".join(_fmt(v, c) for v, c in zip(vals, _COLUMNS)))
        rows.append(f"divergent transitions: {self.num_divergent}")
        return "\n".join(rows)

    __repr__ = __str__

    def as_dict(self) -> dict:
        return {c: getattr(self, c) for c in _COLUMNS}


def _fmt(v, col):
    if not np.isfinite(v):
        return f"{'nan':>10}"
    if col.startswith("ess"):
        return f"{v:>10.0f}"
    if col == "rhat":
        return f"{v:>10.3f}"
    return f"{v:>10.4g}"


def _names(template_unravel, dim, prefix="x") -> list:
    """Coordinate names such as ``x[0]``, or ``w[1]``/``b`` for a dict position."""
    template = template_unravel(np.arange(dim, dtype=np.float32))
    names = []
    if isinstance(template, dict):
        for k in template:
            leaf = np.asarray(template[k])
            if leaf.ndim == 0:
                names.append(str(k))
            else:
                names += [f"{k}[{','.join(map(str, idx))}]" for idx in np.ndindex(leaf.shape)]
        if len(names) == dim:
            return names
    return [f"{prefix}[{i}]" for i in range(dim)]


def chain_expectation(values) -> Estimate:
    r"""The mean of MCMC ``values`` (leaves shaped ``(chains, draws, ...)``) with its MCSE as ``stderr``.

    ``stderr`` is the Monte Carlo standard error of the mean from the effective sample
    size (Vehtari et al. 2021, *Rank-normalization, folding, and localization*), and
    ``ess = (sd / mcse)^2``; ``info["rhat"]`` holds the split R-hat.

    Example:
      >>> import numpy as np
      >>> from ulam.mcmc import chain_expectation
      >>> est = chain_expectation(np.random.default_rng(0).normal(size=(4, 500)))
      >>> bool(abs(est.mean) < 4 * est.stderr)
      True
    """
    leaves, treedef = jax.tree_util.tree_flatten(values)
    means, errs, esss, rhats = [], [], [], []
    for leaf in leaves:
        v = np.asarray(leaf, dtype=np.float64)
        if v.ndim < 2 or v.shape[1] < 4:
            raise ValueError(f"values: expected leaves shaped (chains, draws >= 4, ...), got {v.shape}")
        means.append(v.mean(axis=(0, 1)))
        stats = _summary_statistics(v)
        mcse = stats["mcse_mean"]
        sd = v.reshape((-1,) + v.shape[2:]).std(axis=0, ddof=1)
        errs.append(mcse)
        esss.append((sd / np.maximum(mcse, 1e-300)) ** 2)
        rhats.append(stats["rhat"])
    unflat = lambda xs: jax.tree_util.tree_unflatten(treedef, xs)
    n = leaves[0].shape[0] * leaves[0].shape[1]
    return Estimate(unflat(means), unflat(errs), n, unflat(esss), {"rhat": unflat(rhats)})


@dataclasses.dataclass
class _RunOutput:
    """What every run reports besides its draws: adapted parameters, divergences, cost, time."""

    unravel: Callable
    step_size: np.ndarray
    inverse_mass_matrix: np.ndarray
    num_divergent: np.ndarray
    num_divergent_warmup: np.ndarray
    mean_acceptance: np.ndarray
    num_grad_evals: np.ndarray
    seconds: float
    num_warmup: int
    thin: int

    def print_summary(self) -> None:
        print(self.summary())


@dataclasses.dataclass
class MCMCResult(_RunOutput):
    """Draws of every chain and the sampler's statistics.

    Attributes:
      flat_draws: ``(chains, draws, d)`` array of flattened positions.
      stats: dict of ``(chains, draws)`` arrays, one per info field of the kernel
        (``acceptance_rate``, ``is_divergent``, ``energy``, ``num_grad_evals``, …).
      step_size, inverse_mass_matrix: the adapted parameters (one per chain).
      num_divergent: divergent transitions per chain after warm-up.
      seconds: wall time of the sampling loop (compilation included on a first call).
    """

    flat_draws: np.ndarray
    stats: dict
    final_state: Any = None

    @property
    def draws(self):
        """Draws as the position's pytree, every leaf with leading axes ``(chains, draws)``."""
        return jax.vmap(jax.vmap(self.unravel))(jnp.asarray(self.flat_draws))

    @property
    def num_chains(self) -> int:
        return self.flat_draws.shape[0]

    @property
    def num_draws(self) -> int:
        return self.flat_draws.shape[1]

    def summary(self) -> Summary:
        """Mean, sd, MCSE of the mean, bulk and tail ESS and rank-normalized split R-hat per coordinate."""
        x = self.flat_draws
        stats = _summary_statistics(x)
        return Summary(
            names=_names(self.unravel, x.shape[-1]),
            mean=x.mean(axis=(0, 1)),
            sd=x.reshape(-1, x.shape[-1]).std(axis=0, ddof=1),
            mcse_mean=stats["mcse_mean"],
            ess_bulk=stats["ess_bulk"],
            ess_tail=stats["ess_tail"],
            rhat=stats["rhat"],
            num_divergent=int(np.sum(self.num_divergent)),
        )

    def expectation(self, f: Callable | None = None) -> Estimate:
        r"""Estimate :math:`E_\pi[f(x)]` from all chains; ``stderr`` is the MCSE (Vehtari et al. 2021).

        ``f`` maps one position (the pytree) to an array; default: the identity. The
        returned :class:`~ulam.Estimate` has ``ess = (sd / mcse)^2`` per coordinate.
        """
        draws = self.draws
        values = draws if f is None else jax.vmap(jax.vmap(f))(draws)
        return chain_expectation(values)

    def to_arviz(self):
        """An ArviZ ``InferenceData`` with the posterior and the sampler statistics (ArviZ names)."""
        import arviz as az

        draws = jax.tree_util.tree_map(np.asarray, self.draws)
        posterior = draws if isinstance(draws, dict) else {"x": draws}
        rename = {"is_divergent": "diverging", "num_grad_evals": "n_steps", "acceptance_rate": "acceptance_rate",
                  "energy": "energy", "tree_depth": "tree_depth"}
        sample_stats = {rename.get(k, k): np.asarray(v) for k, v in self.stats.items()}
        sample_stats["step_size"] = np.broadcast_to(self.step_size[:, None], self.flat_draws.shape[:2])
        return az.from_dict(posterior=posterior, sample_stats=sample_stats)


@dataclasses.dataclass
class StreamingResult(_RunOutput):
    """Running statistics of a streaming run (constant memory in the number of draws).

    ``summary()`` reports batch-means MCSE and ESS and the classic split R-hat (see
    :mod:`ulam.mcmc.streaming`); tail ESS needs every draw and is NaN here.
    """

    stats: Any
    stream_fn: Callable | None

    def _table(self) -> dict:
        return stream_summary(self.stats)

    def summary(self) -> Summary:
        s = self._table()
        dim = s["mean"].shape[0]
        names = _names(self.unravel, dim) if self.stream_fn is None else [f"f[{i}]" for i in range(dim)]
        return Summary(names, s["mean"], s["sd"], s["mcse_mean"], s["ess_bulk"], s["ess_tail"], s["rhat"],
                       int(np.sum(self.num_divergent)))

    def expectation(self) -> Estimate:
        """The streamed mean of ``stream_fn(x)`` (or of the flat position) with its batch-means MCSE."""
        s = self._table()
        return Estimate(s["mean"], s["mcse_mean"], int(s["n"]), s["ess_bulk"], {"rhat": s["rhat"]})
