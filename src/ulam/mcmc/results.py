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
# ArviZ's column names (the DataFrame of summary() uses them).
_ARVIZ = {"rhat": "r_hat"}


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

    def to_frame(self):
        """The table as a pandas DataFrame (ArviZ's column names; ``attrs["num_divergent"]``)."""
        import pandas as pd

        df = pd.DataFrame({_ARVIZ.get(c, c): np.asarray(getattr(self, c)) for c in _COLUMNS}, index=self.names)
        df.attrs["num_divergent"] = self.num_divergent
        return df


def _table(summary: Summary):
    try:
        return summary.to_frame()
    except ImportError:  # pragma: no cover - pandas is optional
        return summary


def _range(x) -> str:
    x = np.asarray(x, float)
    lo, hi = float(np.min(x)), float(np.max(x))
    return f"{lo:.3g}" if np.isclose(lo, hi) else f"{lo:.3g}..{hi:.3g}"


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

    def _header(self, kind: str, num_chains: int, num_draws: int, table: Summary) -> str:
        rhat = np.asarray(table.rhat, float)
        ess = np.asarray(table.ess_bulk, float)
        max_rhat = f"{np.nanmax(rhat):.3f}" if np.isfinite(rhat).any() else "nan"
        min_ess = f"{np.nanmin(ess):.0f}" if np.isfinite(ess).any() else "nan"
        lines = [
            f"{kind}: {num_chains} chains x {num_draws} draws (after {self.num_warmup} warm-up"
            + (f", thin {self.thin}" if self.thin > 1 else "") + f"), {len(table.names)} parameters",
            f"  divergences: {int(np.sum(self.num_divergent))}   max r_hat: {max_rhat}   min ess_bulk: {min_ess}",
            f"  step size: {_range(self.step_size)}   mean acceptance: {float(np.mean(self.mean_acceptance)):.3f}"
            f"   grad evals/draw: {float(np.sum(self.num_grad_evals)) / max(1, num_chains * num_draws):.1f}",
            f"  wall time: {self.seconds:.2f} s   (.summary() for the table, .draws for the draws)",
        ]
        return "\n".join(lines)


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
    model: Any = None  # a ulam.numpyro_model.NumPyroModel when the target was one

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

    def summary(self):
        """Mean, sd, MCSE of the mean, bulk and tail ESS and rank-normalized split R-hat per coordinate.

        A pandas DataFrame (ArviZ's column names, one row per coordinate) when pandas is
        installed, else a :class:`Summary` that prints as a plain table.
        """
        return _table(self._summary())

    def __repr__(self) -> str:
        return self._header("MCMCResult", self.num_chains, self.num_draws, self._summary())

    def _summary(self) -> Summary:
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

    def to_arviz(self, *, log_likelihood: Callable | None = None, observed_data: dict | None = None,
                 coords: dict | None = None, dims: dict | None = None):
        """The run for ArviZ 1.x: an ``xarray.DataTree`` (``arviz_base.from_dict``).

        Groups: ``posterior`` (the draws, by name for a dict position, else ``x``),
        ``sample_stats`` (ArviZ names: ``lp``, ``diverging``, ``tree_depth``, ``energy``,
        ``step_size``, ``n_steps``, ``acceptance_rate``), ``log_likelihood`` and
        ``observed_data``. ``log_likelihood`` is a pointwise log-likelihood, one position ->
        an array over observations (or a dict of them by name), which makes ``arviz.loo``
        work; for a NumPyro model both groups come from the model. ``coords``/``dims`` name
        the axes as in ArviZ (``dims={"beta": ["feature"]}``). Falls back to ArviZ 0.x's
        ``InferenceData`` when ``arviz_base`` is not installed.
        """
        groups = self.arviz_groups(log_likelihood=log_likelihood, observed_data=observed_data)
        try:
            import arviz_base
        except ImportError:
            import arviz as az

            return az.from_dict(**groups, coords=coords, dims=dims)
        return arviz_base.from_dict(groups, coords=coords, dims=dims)

    def arviz_groups(self, *, log_likelihood: Callable | None = None, observed_data: dict | None = None) -> dict:
        """The arrays of :meth:`to_arviz`, as ``{group: {name: array (chains, draws, ...)}}``."""
        draws = jax.tree_util.tree_map(np.asarray, self.draws)
        posterior = dict(draws) if isinstance(draws, dict) else {"x": draws}
        rename = {"is_divergent": "diverging", "num_grad_evals": "n_steps", "logdensity": "lp"}
        sample_stats = {rename.get(k, k): np.asarray(v) for k, v in self.stats.items() if k != "is_turning"}
        sample_stats["step_size"] = np.broadcast_to(self.step_size[:, None], self.flat_draws.shape[:2])
        groups = {"posterior": posterior, "sample_stats": sample_stats}
        c, n = self.flat_draws.shape[:2]
        if log_likelihood is not None:
            ll = jax.vmap(jax.vmap(log_likelihood))(self.draws)
            ll = dict(ll) if isinstance(ll, dict) else {"obs": ll}
            groups["log_likelihood"] = {k: np.asarray(v) for k, v in ll.items()}
        elif self.model is not None:
            flat = {k: v.reshape((c * n,) + v.shape[2:]) for k, v in posterior.items()}
            ll = self.model.log_likelihood(flat)
            groups["log_likelihood"] = {k: np.asarray(v).reshape((c, n) + v.shape[1:]) for k, v in ll.items()}
        if observed_data is None and self.model is not None:
            observed_data = self.model.observed_data()
        if observed_data is not None:
            groups["observed_data"] = {k: np.asarray(v) for k, v in observed_data.items()}
        return groups


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

    def summary(self):
        """As :meth:`MCMCResult.summary`, from the running statistics (tail ESS is NaN)."""
        return _table(self._summary())

    def __repr__(self) -> str:
        counts = np.asarray(self.stats.count)
        return self._header("StreamingResult", counts.shape[0], int(counts[0].sum()), self._summary())

    def _summary(self) -> Summary:
        s = self._table()
        dim = s["mean"].shape[0]
        names = _names(self.unravel, dim) if self.stream_fn is None else [f"f[{i}]" for i in range(dim)]
        return Summary(names, s["mean"], s["sd"], s["mcse_mean"], s["ess_bulk"], s["ess_tail"], s["rhat"],
                       int(np.sum(self.num_divergent)))

    def expectation(self) -> Estimate:
        """The streamed mean of ``stream_fn(x)`` (or of the flat position) with its batch-means MCSE."""
        s = self._table()
        return Estimate(s["mean"], s["mcse_mean"], int(s["n"]), s["ess_bulk"], {"rhat": s["rhat"]})
