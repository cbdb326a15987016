"""ulam.plots on the Agg backend: each plot has the artists it promises (bars, lines, bands)."""

import doctest
import importlib
import sys

import numpy as np
import pytest

matplotlib = pytest.importorskip("matplotlib")
matplotlib.use("Agg")
import matplotlib.container  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402

from ulam import Estimate, plots  # noqa: E402


@pytest.fixture(autouse=True)
def _close():
    yield
    plt.close("all")


def test_estimate_error_bars_span_the_interval():
    est = Estimate(np.array([1.0, 2.0, 3.0]), np.array([0.1, 0.2, 0.3]), 100)
    ax = plots.plot_estimate(est, labels=["a", "b", "c"], truth=[1.0, 2.1, 2.9], level=0.95)
    (container,) = ax.containers
    segments = container.lines[2][0].get_segments()
    assert len(segments) == 3
    assert np.allclose([s[1, 1] - s[0, 1] for s in segments], 2 * 1.959964 * est.stderr, rtol=1e-4)
    assert [t.get_text() for t in ax.get_xticklabels()] == ["a", "b", "c"]


def test_paths_with_bands_compose_on_one_axes():
    t = np.arange(20.0)
    ax = plots.plot_path(np.sin(t), 0.2 * np.ones(20), t, label="filter")
    plots.plot_path(np.sin(t) + 0.05, 0.1 * np.ones(20), t, label="smoother", truth=np.sin(t), ax=ax)
    assert len(ax.collections) == 2 and len(ax.lines) == 3  # two means + the truth
    lo, hi = ax.collections[1].get_paths()[0].vertices[:, 1].min(), ax.collections[1].get_paths()[0].vertices[:, 1].max()
    assert lo < np.sin(t).min() and hi > np.sin(t).max()


def test_trace_draws_raw_and_running_mean():
    class Fit:
        values = np.linspace(-5, -1, 200)

    ax = plots.plot_trace(Fit(), window=10, label="ELBO")
    assert len(ax.lines) == 2 and ax.lines[1].get_xdata().size == 191 and ax.get_ylabel() == "ELBO"


def test_values_are_ranked_bars_with_error_bars():
    est = Estimate(np.array([0.05, 0.3, -0.1, 0.2]), np.array([0.01, 0.02, 0.03, 0.04]), 64)
    ax = plots.plot_values(est, top=3)
    assert len(ax.patches) == 3  # three bars
    assert [t.get_text() for t in ax.get_yticklabels()] == ["1", "3", "0"]
    assert np.allclose([p.get_width() for p in ax.patches], [0.3, 0.2, 0.05])
    bars = [c for c in ax.containers if isinstance(c, matplotlib.container.ErrorbarContainer)]
    assert len(bars[0].lines[2][0].get_segments()) == 3


def test_running_estimate_band_shrinks():
    x = np.random.default_rng(1).normal(size=(400, 2))
    ax = plots.plot_running(x, truth=[0.0, 0.0])
    assert len(ax.collections) == 2 and len(ax.lines) == 4  # 2 curves + 2 truth lines
    # the band's half-width at n draws is 1.96 s_n / sqrt(n): check it at the last draw
    v = ax.collections[0].get_paths()[0].vertices
    at_end = v[v[:, 0] == 400, 1]
    half = 1.959964 * x[:, 0].std(ddof=1) / np.sqrt(400)
    assert np.isclose(at_end.max() - at_end.min(), 2 * half, rtol=1e-4) and ax.get_xscale() == "log"
    mean_line = ax.lines[0].get_ydata()
    assert abs(mean_line[-1] - x[:, 0].mean()) < 1e-12


def test_bad_level_and_missing_matplotlib(monkeypatch):
    with pytest.raises(ValueError, match="level: expected a coverage in"):
        plots.plot_running(np.ones(5), level=1.5)
    monkeypatch.setitem(sys.modules, "matplotlib.pyplot", None)
    with pytest.raises(ImportError, match=r"pip install 'ulam\[plots\]'"):
        plots.plot_trace(np.ones(4))


def test_docstring_examples():
    result = doctest.testmod(importlib.import_module("ulam.plots"), optionflags=doctest.ELLIPSIS)
    assert result.failed == 0 and result.attempted > 0


def test_result_plot_helpers(key):
    import jax.numpy as jnp
    import numpyro.distributions as dist
    import optax

    from ulam import vi
    from ulam.valuation import jax_utility, knn, tmc_shapley

    X = np.array([[0.0], [1.0], [3.0], [4.0]])
    y = np.array([0, 0, 1, 1])
    est = tmc_shapley(jax_utility(knn(k=1), X, y, X, y), key, max_permutations=32, progress=False)
    assert len(est.plot().patches) == 4
    ax = est.plot_convergence(players=[0, 1])
    assert len(ax.lines) == 2 and len(ax.collections) == 2
    obj = vi.elbo(lambda z, th: dist.Normal(3.0, 1.0).log_prob(z), lambda phi: dist.Normal(phi[0], jnp.exp(phi[1])))
    res = vi.fit(obj, ((), jnp.zeros(2)), key, num_steps=40, optimizer=optax.adam(0.05), progress=False)
    assert len(res.plot().lines) == 2
