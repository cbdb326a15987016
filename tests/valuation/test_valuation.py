"""Data Shapley (Ghorbani & Zou 2019): exact axioms, Monte Carlo estimators against exact oracles, bad input."""

import itertools
import math

import jax
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ulam.harness import CheckpointMismatch, Interrupted
from ulam.testing import assert_within_stderr
from ulam.valuation import (
    Stopping,
    RayBackend,
    Truncation,
    banzhaf,
    beta_position_weights,
    beta_shapley,
    choose_learning_rate,
    exact_banzhaf,
    exact_shapley,
    g_shapley,
    jax_utility,
    knn,
    leave_one_out,
    logistic_regression,
    sklearn_utility,
    tmc_shapley,
)
from ulam.valuation.permutation import neyman_inclusion, permutation_marginals, sample_permutations


def _data(n=8, m=40, seed=0, flip=0.0):
    rng = np.random.default_rng(seed)
    y = np.arange(n) % 2
    X = rng.normal(size=(n, 2)) + 1.2 * (2 * y[:, None] - 1)
    yt = rng.integers(0, 2, m)
    Xt = rng.normal(size=(m, 2)) + 1.2 * (2 * yt[:, None] - 1)
    return X, y, Xt, yt


X8, Y8, XT, YT = _data()
U8 = jax_utility(knn(k=1), X8, Y8, XT, YT)  # module level: compiled once for all tests
EXACT8 = exact_shapley(U8)


class _IgnoresFlagged:
    """Nearest-centroid classifier that ignores points whose last feature is 1 (a null player)."""

    def __init__(self, majority=0):
        self.majority = majority

    def get_params(self, deep=False):
        return {"majority": self.majority}

    def set_params(self, **p):
        self.majority = p["majority"]
        return self

    def fit(self, X, y):
        keep = X[:, -1] == 0
        self.classes_ = np.unique(y[keep])
        self.centroids_ = np.array([X[keep][y[keep] == c].mean(0) for c in self.classes_]) if keep.any() else None
        return self

    def predict(self, X):
        if self.centroids_ is None or len(self.classes_) < 2:
            return np.full(len(X), self.majority)
        d = ((X[:, None, :-1] - self.centroids_[None, :, :-1]) ** 2).sum(-1)
        return self.classes_[d.argmin(1)]

    def score(self, X, y):
        return float((self.predict(X) == y).mean())


def test_exact_efficiency():
    phi = np.asarray(EXACT8.mean, np.float64)
    assert abs(phi.sum() - (U8.full_score - U8.empty_score)) < 1e-9


def test_exact_symmetry_duplicate_points():
    X = np.concatenate([X8[:6], X8[:1]])
    y = np.concatenate([Y8[:6], Y8[:1]])
    phi = np.asarray(exact_shapley(jax_utility(knn(k=1), X, y, XT, YT)).mean)
    assert abs(phi[0] - phi[6]) < 1e-9


def test_exact_null_player_and_general_path():
    X, y = X8[:6], Y8[:6]
    flag = np.zeros((6, 1))
    flag[2] = 1.0  # point 2 is ignored by the learner: a null player
    majority = int(np.bincount(YT).argmax())
    u = sklearn_utility(_IgnoresFlagged(majority), np.hstack([X, flag]), y, np.hstack([XT, np.zeros((len(XT), 1))]), YT)
    phi = np.asarray(exact_shapley(u).mean)
    assert abs(phi[2]) < 1e-12
    assert abs(phi.sum() - (u.full_score - u.empty_score)) < 1e-9


def test_leave_one_out_matches_definition():
    loo = np.asarray(leave_one_out(U8).mean)
    for i in (0, 3):
        mask = np.ones((1, 8), bool)
        mask[0, i] = False
        assert abs(loo[i] - (U8.full_score - U8.scores(mask)[0])) < 1e-12


@pytest.mark.parametrize("scheme", ["plain", "antithetic", "stratified", "neyman"])
def test_permutation_sampling_converges_to_exact(scheme, key):
    est = tmc_shapley(U8, key, max_permutations=1024, truncation=None, scheme=scheme, batch_size=128)
    assert est.n == 1024
    assert_within_stderr(est, EXACT8.mean, z=4.5)
    if scheme != "neyman":  # Horvitz-Thompson weights break exact efficiency per permutation
        # per-permutation marginals sum to V(D) - V(empty)
        assert abs(float(est.mean.sum()) - (U8.full_score - U8.empty_score)) < 1e-6
    else:
        q = est.info["inclusion"]
        assert q[0] == 1.0 and np.all(np.diff(q) <= 0) and est.info["expected_length"] < 8


@given(st.lists(st.floats(-1, 1), min_size=12, max_size=12), st.floats(0.01, 1.0))
@settings(max_examples=30, deadline=None)
def test_neyman_inclusion_is_a_survival_function(values, floor):
    q = neyman_inclusion(np.array(values).reshape(2, 6), floor=floor, smooth=2)
    assert np.all(np.diff(q) <= 0) and np.all(q >= floor) and np.all(q <= 1)
    assert q.max() == 1.0 or np.all(q == floor)


def test_refilled_slots_and_lengths_match_one_batch():
    """Scheduling (slots refilled as permutations finish, chunk sizes) never changes the marginals."""
    perms = sample_permutations(jax.random.key(3), 8, 10)
    trunc = Truncation(rtol=0.01, patience=1)
    lengths = np.array([8, 3, 0, 8, 5, 1, 8, 8, 2, 7])
    one, s1 = permutation_marginals(U8, perms, trunc, chunk=8, slots=10, lengths=lengths)
    many, s2 = permutation_marginals(U8, perms, trunc, chunk=3, slots=3, lengths=lengths)
    np.testing.assert_array_equal(one, many)
    assert s1["fits"] == s2["fits"] <= lengths.sum()
    # a length-k scan keeps exactly the marginals of the first k positions of the full scan
    full, _ = permutation_marginals(U8, perms, trunc, chunk=8, slots=10)
    pos = np.arange(8)[None, :] < lengths[:, None]
    np.testing.assert_array_equal(np.take_along_axis(one, perms, 1), np.where(pos, np.take_along_axis(full, perms, 1), 0))


def test_tmc_with_truncation_is_unbiased_for_its_truncated_expectation(key):
    """Truncated TMC against the exact mean of the truncated marginals over all 6! permutations
    (its own expectation: no tolerance beyond its standard error)."""
    u6 = jax_utility(knn(k=1), X8[:6], Y8[:6], XT, YT)
    trunc = Truncation(rtol=0.01, patience=1)
    perms = np.array(list(itertools.permutations(range(6))), np.int32)
    rows, stats = permutation_marginals(u6, perms, trunc)
    assert stats["fits"] < 720 * 6  # truncation saved fits
    est = tmc_shapley(u6, key, max_permutations=1024, truncation=trunc, batch_size=128)
    assert est.info["fits_per_permutation"] < 6
    assert_within_stderr(est, rows.mean(axis=0), z=4.5)


def test_target_stderr_stopping(key):
    est = tmc_shapley(U8, key, max_permutations=100_000, target_stderr=0.01, truncation=None, batch_size=64)
    assert est.info["stop_reason"] == "target_stderr"
    assert float(est.stderr.max()) <= 0.01
    assert est.n < 100_000


def test_paper_convergence_rule_stops(key):
    est = tmc_shapley(U8, key, max_permutations=50_000, rtol=0.05, truncation=None, batch_size=64)
    assert est.info["stop_reason"] == "rtol" and est.info["history_deviation"] < 0.05


def test_beta_shapley_against_enumeration(key):
    alpha, beta = 4.0, 1.0
    values = np.asarray(EXACT8.info["utilities"])
    G = 8
    r = beta_position_weights(G, alpha, beta)  # weight of a marginal with j - 1 predecessors
    codes = np.arange(2**G)
    sizes = np.array([bin(c).count("1") for c in codes])
    exact = np.zeros(G)
    for i in range(G):
        S = codes[(codes >> i) & 1 == 0]
        s = sizes[S]
        w = r[s] / G / np.exp([math.lgamma(G) - math.lgamma(k + 1) - math.lgamma(G - k) for k in s])
        exact[i] = np.sum(w * (values[S | (1 << i)] - values[S]))
    np.testing.assert_allclose(beta_position_weights(G, 1.0, 1.0), np.ones(G), rtol=1e-10)
    est = beta_shapley(U8, key, alpha, beta, max_permutations=1024, batch_size=128)
    assert_within_stderr(est, exact, z=4.5)


def test_banzhaf_against_enumeration(key):
    est = banzhaf(U8, key, max_subsets=4096, batch_size=512)
    assert est.info["num_subsets"] == 4096 and est.info["stop_reason"] == "max_subsets"
    assert_within_stderr(est, exact_banzhaf(U8).mean, z=4.5)


def test_group_shapley():
    groups = np.array([0, 0, 1, 1, 2, 2, 3, 3])
    ug = U8.with_groups(groups)
    phi = np.asarray(exact_shapley(ug).mean)
    assert phi.shape == (4,)
    assert abs(phi.sum() - (U8.full_score - U8.empty_score)) < 1e-9
    singletons = np.asarray(exact_shapley(U8.with_groups(np.arange(8))).mean)
    np.testing.assert_allclose(singletons, np.asarray(EXACT8.mean), atol=1e-12)


def test_group_tmc_converges(key):
    ug = U8.with_groups(np.array([0, 0, 1, 1, 2, 2, 3, 3]))
    est = tmc_shapley(ug, key, max_permutations=512, truncation=None, batch_size=128)
    assert_within_stderr(est, exact_shapley(ug).mean, z=4.5)


def test_warm_started_paths_match_refits():
    perms = sample_permutations(jax.random.key(1), 8, 6)
    i1, f1 = U8.prefix_scores_fn(8, True)
    i2, f2 = U8.prefix_scores_fn(8, False)
    np.testing.assert_array_equal(np.asarray(f1(perms, 0, i1(perms))[0]), np.asarray(f2(perms, 0, i2(perms))[0]))
    X, y, Xt, yt = _data(n=24, m=100, seed=3)
    u = jax_utility(logistic_regression(), X, y, Xt, yt)
    perms = sample_permutations(jax.random.key(2), 24, 16)
    i1, f1 = u.prefix_scores_fn(24, True)
    i2, f2 = u.prefix_scores_fn(24, False)
    a, b = np.asarray(f1(perms, 0, i1(perms))[0]), np.asarray(f2(perms, 0, i2(perms))[0])
    assert np.mean(np.abs(a - b) < 1e-6) >= 0.99


def test_g_shapley_efficiency_and_learning_rate(key):
    X, y, Xt, yt = _data(n=30, m=60, seed=2)
    u = jax_utility(logistic_regression(), X, y, Xt, yt)
    lr, table = choose_learning_rate(u, key)
    assert lr in table and len(table) == 8
    est = g_shapley(u, key, max_permutations=64, batch_size=32)
    assert est.info["learning_rate"] == lr and float(est.stderr.max()) > 0
    # efficiency per permutation: marginals telescope to V(theta_G) - V(theta_0), a test accuracy
    v0 = float(np.mean(yt == 0))  # zero weights predict class 0
    final = est.info["samples"].sum(axis=1) + v0
    np.testing.assert_allclose(final * 60, np.round(final * 60), atol=1e-4)
    assert np.all((final >= 0) & (final <= 1)) and final.mean() > 0.7


def test_checkpoint_resume_equals_uninterrupted(key, tmp_path):
    path = tmp_path / "tmc.npz"
    tmc_shapley(U8, key, max_permutations=64, batch_size=32, checkpoint=path, progress=False)
    resumed = tmc_shapley(U8, key, max_permutations=128, batch_size=32, checkpoint=path)
    straight = tmc_shapley(U8, key, max_permutations=128, batch_size=32)
    np.testing.assert_array_equal(np.asarray(resumed.mean), np.asarray(straight.mean))
    with pytest.raises(ValueError, match=r"different run \(differs in: key\)"):
        tmc_shapley(U8, jax.random.key(5), max_permutations=128, batch_size=32, checkpoint=path)


def test_resume_refuses_another_model_or_truncation(key, tmp_path):
    path = tmp_path / "tmc.npz"
    tmc_shapley(U8, key, max_permutations=32, batch_size=32, checkpoint=path)
    u3 = jax_utility(knn(k=3), X8, Y8, XT, YT)  # another model, same data
    with pytest.raises(CheckpointMismatch, match=r"differs in: function:utility\).*force=True"):
        tmc_shapley(u3, key, max_permutations=64, batch_size=32, checkpoint=path)
    with pytest.raises(CheckpointMismatch, match=r"differs in: setting:truncation"):
        tmc_shapley(U8, key, max_permutations=64, batch_size=32, checkpoint=path, truncation=Truncation(rtol=0.05))
    forced = tmc_shapley(U8, key, max_permutations=64, batch_size=32, checkpoint=path,
                         truncation=Truncation(rtol=0.05), force=True)
    assert forced.n == 64


def test_ctrl_c_saves_and_the_same_call_resumes(key, tmp_path, monkeypatch, capsys):
    path = tmp_path / "banzhaf.npz"
    real = U8.scores
    calls = []

    def interrupted_third_round(masks):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real(masks)

    monkeypatch.setattr(U8, "scores", interrupted_third_round)
    with pytest.raises(Interrupted) as err:
        banzhaf(U8, key, max_subsets=256, batch_size=64, checkpoint=path)
    assert str(err.value) == f"interrupted at step 128 of 256; checkpoint saved to {path}; run the same call again to resume"
    resumed = banzhaf(U8, key, max_subsets=256, batch_size=64, checkpoint=path)
    assert "resuming at step 128 of 256" in capsys.readouterr().err
    monkeypatch.undo()
    straight = banzhaf(U8, key, max_subsets=256, batch_size=64)
    np.testing.assert_array_equal(np.asarray(resumed.mean), np.asarray(straight.mean))


def test_budgets_are_exact(key):
    est = tmc_shapley(U8, key, max_permutations=100, truncation=None, batch_size=64)
    assert est.n == 100 and est.info["num_permutations"] == 100 and est.info["samples"].shape == (100, 8)
    assert est.info["stop_reason"] == "max_permutations"
    est = tmc_shapley(U8, key, max_permutations=100, truncation=None, scheme="stratified", batch_size=64)
    assert est.n == 96  # whole blocks of G = 8 cyclic shifts
    # same key, same bits: a budget that is a multiple of the batch keeps its old rounds
    a = tmc_shapley(U8, key, max_permutations=128, truncation=None, batch_size=64)
    b = tmc_shapley(U8, key, max_permutations=100, truncation=None, batch_size=64)
    np.testing.assert_array_equal(a.info["samples"][:64], b.info["samples"][:64])


def test_sklearn_learner_failing_on_small_coalitions_gets_the_empty_score(key):
    from sklearn.neighbors import KNeighborsClassifier

    # 3-NN raises on coalitions of fewer than 3 points: such a coalition is valued as the empty set
    u = sklearn_utility(KNeighborsClassifier(n_neighbors=3), X8[:5], Y8[:5], XT, YT)
    mask = np.zeros((2, 5), bool)
    mask[0, :2] = True  # two points, both classes: 3-NN cannot predict
    mask[1, :3] = True
    before = u.num_degenerate
    scores = u.scores(mask)
    assert scores[0] == u.empty_score and u.num_degenerate == before + 1
    est = tmc_shapley(u, key, max_permutations=8, truncation=None, batch_size=8, progress=False)
    # every permutation passes through prefixes of sizes 1 and 2 (degenerate), at least 2 each
    assert est.info["degenerate_coalitions"] >= 16
    assert "degenerate coalitions" in repr(est)
    assert abs(float(est.mean.sum()) - (u.full_score - u.empty_score)) < 1e-9  # efficiency still holds
    with pytest.raises(ValueError, match="failed on the full training set"):
        sklearn_utility(KNeighborsClassifier(n_neighbors=9), X8, Y8, XT, YT)


def test_result_repr_and_summary(key):
    est = tmc_shapley(U8, key, max_permutations=64, truncation=None, batch_size=64)
    text = repr(est)
    assert len(text.splitlines()) < 15 and "tmc-plain: 64 permutations, stopped by 'max_permutations'" in text
    table = est.summary()
    assert list(table.columns) == ["player", "value", "stderr", "rank"] and list(table["rank"]) == list(range(1, 9))
    assert table["value"].is_monotonic_decreasing


def test_deprecated_names_warn(key):
    with pytest.warns(DeprecationWarning, match="max_samples is deprecated, use max_subsets"):
        est = banzhaf(U8, key, max_samples=64, batch_size=64)
    assert est.n == 64
    with pytest.warns(DeprecationWarning, match="max_samples is deprecated, use max_draws"):
        assert Stopping(max_samples=50).max_draws == 50


@pytest.mark.slow
def test_ray_path_equals_in_process(key):
    """The one Ray test of the harness: rounds as Ray tasks on a local cluster, results in round order,
    bit-identical to in-process (max_permutations=96 with batch 32: three rounds on two workers)."""
    ray = pytest.importorskip("ray")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        local = tmc_shapley(U8, key, max_permutations=96, batch_size=32)
        remote = tmc_shapley(U8, key, max_permutations=96, batch_size=32, backend=RayBackend())
    finally:
        ray.shutdown()
    np.testing.assert_array_equal(np.asarray(local.mean), np.asarray(remote.mean))
    np.testing.assert_array_equal(np.asarray(local.stderr), np.asarray(remote.stderr))


# -- bad input ---------------------------------------------------------------------------


def test_bad_lengths():
    with pytest.raises(ValueError, match="X and y: lengths differ"):
        jax_utility(knn(), X8, Y8[:-1], XT, YT)
    with pytest.raises(ValueError, match="X and y: lengths differ"):
        sklearn_utility(_IgnoresFlagged(), X8, Y8[:-1], XT, YT)


def test_learner_without_fit():
    with pytest.raises(TypeError, match="has no fit"):
        sklearn_utility(object(), X8, Y8, XT, YT)
    with pytest.raises(TypeError, match="expected a ulam.valuation Learner"):
        jax_utility(object(), X8, Y8, XT, YT)


def test_metric_returning_nan():
    with pytest.raises(ValueError, match="metric: returned a non-finite value"):
        jax_utility(knn(), X8, Y8, XT, YT, metric=lambda t, p: (t == p).mean() * np.nan)


def test_fewer_than_two_classes():
    with pytest.raises(ValueError, match="fewer than 2 classes"):
        jax_utility(knn(), X8, np.zeros(8, int), XT, YT)


def test_degenerate_subsets_get_empty_score():
    masks = np.zeros((3, 8), bool)
    masks[1, 0] = True  # one point: one class only
    masks[2, [0, 2, 4]] = True  # all class 0
    np.testing.assert_array_equal(U8.scores(masks), np.full(3, U8.empty_score))


def test_bad_arguments():
    with pytest.raises(ValueError, match="max_permutations: expected an integer >= 2, got 1"):
        tmc_shapley(U8, jax.random.key(0), max_permutations=1)
    with pytest.raises(ValueError, match="max_permutations: expected at least 16"):
        tmc_shapley(U8, jax.random.key(0), max_permutations=10, scheme="stratified")
    with pytest.raises(TypeError, match="key"):
        tmc_shapley(U8, 0)
    with pytest.raises(TypeError, match="batch_size: expected an integer"):
        banzhaf(U8, jax.random.key(0), batch_size=1.5)
    with pytest.raises(ValueError, match="scheme"):
        tmc_shapley(U8, jax.random.key(0), scheme="sobol")
    with pytest.raises(TypeError, match="utility"):
        tmc_shapley("not a utility", jax.random.key(0))
    with pytest.raises(ValueError, match="groups"):
        U8.with_groups(np.array([0, 0, 2, 2, 2, 2, 2, 2]))
    with pytest.raises(TypeError, match="no init/loss"):
        g_shapley(U8, jax.random.key(0), 0.1)


@pytest.mark.parametrize("name", ["ulam.valuation", "ulam.valuation.permutation", "ulam.valuation.banzhaf",
                                  "ulam.valuation.gradient_shapley", "ulam.valuation.runner"])
def test_docstring_examples(name):
    import doctest
    import importlib

    result = doctest.testmod(importlib.import_module(name), optionflags=doctest.ELLIPSIS)
    assert result.failed == 0 and result.attempted > 0, f"{result.failed} docstring example(s) failed in {name}"
