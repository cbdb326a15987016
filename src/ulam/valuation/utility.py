r"""The utility :math:`V(S)`: a metric on a held-out set of the model trained on the subset ``S``.

Ghorbani & Zou (ICML 2019, *Data Shapley*) value a training point by its average
marginal contribution to :math:`V`. Here a subset is a boolean mask over *players*;
a player is one training point, or a group of points when ``groups`` is given
(group Shapley). Two implementations share one interface:

- :func:`jax_utility`: a :class:`~ulam.valuation.learners.Learner` whose fits are
  vectorized with ``vmap`` over many masks at once (the fast path);
- :func:`sklearn_utility`: any object with scikit-learn's ``fit``/``predict`` (or
  ``score``), cloned and refitted per subset (the general path).

Degenerate subsets (empty, or missing one of the training set's classes) are not
fitted: they get the score of the empty set :math:`V(\varnothing)`, the paper's
convention (its code keeps the previous score until every class is present).
By default :math:`V(\varnothing)` is the metric of always predicting the majority
class of the test labels (for accuracy: the majority-class frequency, as in the
paper's code).

Example:
  >>> import numpy as np
  >>> from ulam.valuation import jax_utility, knn
  >>> X = np.array([[0.0], [1.0], [3.0], [4.0]]); y = np.array([0, 0, 1, 1])
  >>> u = jax_utility(knn(k=1), X, y, X, y)
  >>> u.scores(np.array([[1, 0, 1, 0], [0, 0, 0, 0]], bool)).tolist()
  [1.0, 0.5]
"""

from __future__ import annotations

import copy
import math
from typing import Callable, Optional

import jax
import jax.numpy as jnp
import numpy as np

from ulam import checks
from ulam.valuation.learners import Learner

__all__ = ["Utility", "JaxUtility", "SklearnUtility", "jax_utility", "sklearn_utility", "accuracy"]


def accuracy(y_true, y_pred):
    """Fraction of correct predictions (works on JAX and NumPy arrays)."""
    if jnp.shape(y_true) != jnp.shape(y_pred):
        raise ValueError(checks.message("y_pred", f"the shape of y_true {jnp.shape(y_true)}", f"shape {jnp.shape(y_pred)}"))
    return (y_true == y_pred).mean()


def _check_data(X, y, X_test, y_test):
    X = np.asarray(X)
    y = np.asarray(y)
    X_test = np.asarray(X_test)
    y_test = np.asarray(y_test)
    if X.ndim != 2:
        raise ValueError(f"X: expected a 2-D array (points, features), got shape {X.shape}")
    if y.ndim != 1:
        raise ValueError(f"y: expected a 1-D array of labels, got shape {y.shape}")
    if X.shape[0] != y.shape[0]:
        raise ValueError(f"X and y: lengths differ ({X.shape[0]} points, {y.shape[0]} labels); pass one label per point")
    if X_test.ndim != 2 or X_test.shape[1] != X.shape[1]:
        raise ValueError(f"X_test: expected shape (m, {X.shape[1]}), got {X_test.shape}")
    if y_test.shape != (X_test.shape[0],):
        raise ValueError(
            f"X_test and y_test: lengths differ ({X_test.shape[0]} points, {y_test.shape} labels); pass one label per point"
        )
    if X.shape[0] < 1 or X_test.shape[0] < 1:
        raise ValueError("X, X_test: need at least one training and one test point")
    if np.issubdtype(X.dtype, np.number) and not (np.all(np.isfinite(X)) and np.all(np.isfinite(X_test))):
        raise ValueError("X, X_test: contain NaN or infinite features; clean or impute them first")
    classes = np.unique(y)
    if classes.size < 2:
        raise ValueError(
            f"y: the training set has fewer than 2 classes ({classes.tolist()}); every subset would be degenerate "
            "and every value 0. Data Shapley needs at least 2 classes"
        )
    return X, y, X_test, y_test, classes


def _check_groups(groups, n: int) -> Optional[np.ndarray]:
    if groups is None:
        return None
    groups = np.asarray(groups)
    if groups.shape != (n,) or not np.issubdtype(groups.dtype, np.integer):
        raise ValueError(f"groups: expected {n} integer group ids (one per training point), got {groups.shape} {groups.dtype}")
    ids = np.unique(groups)
    if ids[0] != 0 or ids[-1] != ids.size - 1:
        raise ValueError(f"groups: ids must be 0..G-1 with every id used, got {ids.tolist()[:10]}")
    return groups.astype(np.int32)


class Utility:
    """Common interface: ``num_players``, ``empty_score``, ``full_score`` and ``scores(masks)``.

    ``scores`` maps a boolean array of shape ``(B, num_players)`` to ``B`` float64
    scores on the host, with degenerate subsets given ``empty_score``.
    """

    batched: bool = False
    num_degenerate: int = 0  # coalitions scored as the empty set because the learner failed on them
    num_players: int
    empty_score: float
    full_score: float
    groups: Optional[np.ndarray]

    def point_masks(self, player_masks: np.ndarray) -> np.ndarray:
        player_masks = np.asarray(player_masks, bool)
        return player_masks if self.groups is None else player_masks[:, self.groups]

    def scores(self, masks: np.ndarray) -> np.ndarray:  # pragma: no cover - abstract
        raise NotImplementedError

    def with_groups(self, groups) -> "Utility":
        """The same utility whose players are groups of points (``groups[i]`` = group of point ``i``)."""
        new = copy.copy(self)
        new._cache = {}
        new.groups = _check_groups(groups, self.num_points)
        new.num_players = self.num_points if new.groups is None else int(new.groups.max()) + 1
        return new

    def identity(self):
        """What identifies this utility in a checkpoint's fingerprint (model, data, metric, groups)."""
        raise NotImplementedError  # pragma: no cover

    def _check_score(self, value: float, what: str) -> float:
        if not math.isfinite(value):
            raise ValueError(
                f"metric: returned a non-finite value ({value}) on {what}; a utility must be a finite number "
                "for every subset (guard divisions, or use a metric defined on every prediction)"
            )
        return float(value)


class JaxUtility(Utility):
    """:math:`V(S)` from a JAX :class:`Learner`, vectorized over masks (the fast path)."""

    batched = True

    def __init__(self, learner, X, y, X_test, y_test, metric, empty_score, groups, dtype):
        if not isinstance(learner, Learner):
            raise TypeError(
                f"learner: expected a ulam.valuation Learner (logistic_regression(), mlp(), knn()), got {type(learner).__name__}; "
                "for a scikit-learn estimator use sklearn_utility()"
            )
        checks.function("metric", metric, "a function metric(y_true, y_pred) -> scalar, e.g. ulam.valuation.accuracy")
        X, y, X_test, y_test, classes = _check_data(X, y, X_test, y_test)
        all_classes = np.unique(np.concatenate([classes, np.unique(y_test)]))
        if all_classes.size > learner.num_classes:
            raise ValueError(
                f"learner: built for {learner.num_classes} classes but the labels have {all_classes.size} "
                f"({all_classes.tolist()[:10]}); build it with num_classes={all_classes.size}"
            )
        self.learner = learner
        self.metric = metric
        self.classes = all_classes
        self.X = jnp.asarray(X, dtype)
        self.y = jnp.asarray(np.searchsorted(all_classes, y), jnp.int32)
        self.X_test = jnp.asarray(X_test, dtype)
        self.y_test = jnp.asarray(np.searchsorted(all_classes, y_test), jnp.int32)
        self.num_points = X.shape[0]
        # A subset is degenerate unless it holds every class of the training set.
        self._train_classes = jnp.asarray(np.isin(all_classes, classes))
        self._onehot = jax.nn.one_hot(self.y, all_classes.size, dtype=jnp.float32)
        self._cache = {}
        self.groups = _check_groups(groups, self.num_points)
        self.num_players = self.num_points if self.groups is None else int(self.groups.max()) + 1
        if empty_score is None:
            majority = int(np.argmax(np.bincount(np.asarray(self.y_test), minlength=all_classes.size)))
            empty_score = float(metric(self.y_test, jnp.full_like(self.y_test, majority)))
            self.empty_score = self._check_score(empty_score, "the empty set (majority-class prediction)")
        else:
            self.empty_score = self._check_score(float(empty_score), "the empty set (the empty_score given)")
        self.full_score = self._check_score(float(self.scores(np.ones((1, self.num_players), bool))[0]), "the full training set")

    # jitted functions are rebuilt after unpickling (for Ray workers)
    def __getstate__(self):
        state = dict(self.__dict__)
        state["_cache"] = {}
        return state

    def identity(self):
        """The hash of :meth:`raw_score`'s program and the arrays it closes over (learner, data,
        metric), with the groups and the empty-set score."""
        from ulam.harness import hash_function

        program = hash_function(self.raw_score, np.ones(self.num_points, bool))
        groups = None if self.groups is None else self.groups.tolist()
        return f"jax:{program}:{self.empty_score!r}:{groups}"

    def raw_score(self, point_mask):
        """:math:`V` of one point mask, traceable; degenerate subsets give ``empty_score``."""
        w = point_mask.astype(self.X.dtype)
        params = self.learner.fit(self.X, self.y, w)
        value = self.metric(self.y_test, self.learner.predict(params, self.X_test))
        counts = w @ self._onehot
        ok = jnp.all((counts > 0) | ~self._train_classes)
        return jnp.where(ok, value, self.empty_score)

    def _points(self, player_masks):
        return player_masks if self.groups is None else player_masks[..., jnp.asarray(self.groups)]

    def scores_fn(self):
        """A jitted ``(B, num_players) bool -> (B,)`` score function (cached)."""
        if "scores" not in self._cache:
            self._cache["scores"] = jax.jit(jax.vmap(lambda m: self.raw_score(self._points(m))))
        return self._cache["scores"]

    def scores(self, masks, chunk: int = 4096) -> np.ndarray:
        masks = np.asarray(masks, bool)
        if masks.ndim != 2 or masks.shape[1] != self.num_players:
            raise ValueError(f"masks: expected shape (B, {self.num_players}), got {masks.shape}")
        fn = self.scores_fn()
        out = []
        for start in range(0, masks.shape[0], chunk):
            block = masks[start : start + chunk]
            # pad to a fixed chunk so every call reuses one compiled function
            pad = (-block.shape[0]) % min(chunk, _next_pow2(block.shape[0]))
            padded = np.concatenate([block, np.zeros((pad, block.shape[1]), bool)]) if pad else block
            out.append(np.asarray(fn(padded), np.float64)[: block.shape[0]])
        return np.concatenate(out) if out else np.zeros((0,), np.float64)

    def prefix_scores_fn(self, length: int, use_path: bool = True):
        """Jitted ``(perms (B, G), starts (B,) or scalar, carry) -> (scores (B, length), carry)``: row ``b``
        scores prefixes ``starts[b]+1 .. starts[b]+length`` of ``perms[b]`` (sizes past ``G`` repeat the
        full set); a row with ``starts[b] == 0`` starts afresh. Also ``init(perms) -> carry``.

        Learners with a warm-started ``path_step`` carry their fit along each
        permutation (``lax.scan``); others refit every prefix from scratch (``vmap``).
        Rows are independent, so a caller may give each row its own permutation and
        position (refilling finished rows with new permutations).
        """
        path = use_path and self.learner.path_step is not None and self.groups is None
        name = ("prefix", length, path)
        if name in self._cache:
            return self._cache[name]
        G = self.num_players
        learner = self.learner

        def rank_of(perm):
            return jnp.zeros((G,), jnp.int32).at[perm].set(jnp.arange(G, dtype=jnp.int32))

        if path:
            def init_one(perm, data):
                return learner.path_init(data)

            def one(perm, start, carry, data):
                carry = jax.tree.map(lambda c, c0: jnp.where(start == 0, c0, c), carry, learner.path_init(data))
                rank = rank_of(perm)
                counts = jnp.cumsum(self._onehot[perm], axis=0)

                def body(c, j):
                    jj = jnp.minimum(j, G - 1)
                    c, params = learner.path_step(c, data, rank <= jj, perm[jj])
                    value = self.metric(self.y_test, learner.predict(params, self.X_test))
                    ok = jnp.all((counts[jj] > 0) | ~self._train_classes)
                    return c, jnp.where(ok, value, self.empty_score)

                carry, scores = jax.lax.scan(body, carry, start + jnp.arange(length))
                return scores, carry

            def prepare():
                # shared by every row: computed once per call, outside vmap
                return learner.path_prepare(self.X, self.y)
        else:
            def init_one(perm, data):
                return jnp.zeros((), jnp.int32)

            def one(perm, start, carry, data):
                sizes = jnp.minimum(start + 1 + jnp.arange(length), G)
                masks = rank_of(perm)[None, :] < sizes[:, None]
                return jax.vmap(lambda m: self.raw_score(self._points(m)))(masks), carry

            def prepare():
                return ()

        init_jit = jax.jit(lambda perms: jax.vmap(init_one, in_axes=(0, None))(perms, prepare()))
        step_jit = jax.jit(lambda perms, starts, carry: jax.vmap(one, in_axes=(0, 0, 0, None))(
            perms, starts, carry, prepare()))

        def step(perms, starts, carry):
            starts = np.broadcast_to(np.asarray(starts, np.int32), (np.shape(perms)[0],))
            return step_jit(perms, starts, carry)

        fns = (init_jit, step)
        self._cache[name] = fns
        return fns


def _next_pow2(n: int) -> int:
    return 1 << max(0, (n - 1).bit_length())


class SklearnUtility(Utility):
    """:math:`V(S)` from any object with scikit-learn's ``fit`` (the general path): one refit per subset.

    A *degenerate* coalition, one that lacks a class of the training set or on which the
    learner raises (e.g. a solver that needs two classes, or k-NN with fewer than ``k``
    points), gets the utility of the empty coalition, ``empty_score`` (by default the
    score of predicting the test set's majority class for every point): such a coalition
    carries no usable model, so it counts as no data. Each one is counted in
    ``num_degenerate`` and reported in a valuation's ``info["degenerate_coalitions"]``. A
    learner that raises on the full training set is an error, not a degenerate coalition.
    """

    batched = False

    def __init__(self, model, X, y, X_test, y_test, metric, empty_score, groups):
        if not callable(getattr(model, "fit", None)):
            raise TypeError(f"model: {type(model).__name__} has no fit(X, y) method; pass a scikit-learn style estimator")
        if metric is None and not callable(getattr(model, "score", None)):
            raise TypeError(f"model: {type(model).__name__} has no score(X, y) method; pass metric=callable(y_true, y_pred)")
        if metric is not None and not callable(getattr(model, "predict", None)):
            raise TypeError(f"model: {type(model).__name__} has no predict(X) method, needed by metric")
        X, y, X_test, y_test, classes = _check_data(X, y, X_test, y_test)
        self.model = model
        self.metric = metric
        self.X, self.y, self.X_test, self.y_test = X, y, X_test, y_test
        self.classes = classes
        self.num_points = X.shape[0]
        self._cache = {}
        self.groups = _check_groups(groups, self.num_points)
        self.num_players = self.num_points if self.groups is None else int(self.groups.max()) + 1
        if empty_score is None:
            values, counts = np.unique(y_test, return_counts=True)
            constant = np.full_like(y_test, values[np.argmax(counts)])
            empty_score = float((metric or accuracy)(y_test, constant))
            self.empty_score = self._check_score(empty_score, "the empty set (majority-class prediction)")
        else:
            self.empty_score = self._check_score(float(empty_score), "the empty set (the empty_score given)")
        self.num_degenerate = 0
        self.full_score = self._check_score(self._score_points(np.ones(self.num_points, bool), degenerate_ok=False),
                                            "the full training set")

    def identity(self):
        """The model's ``repr`` (its class and parameters), a hash of the data, the metric, groups and empty score."""
        import hashlib

        h = hashlib.sha256()
        for a in (self.X, self.y, self.X_test, self.y_test):
            h.update(np.ascontiguousarray(a).tobytes())
        metric = getattr(self.metric, "__qualname__", repr(self.metric))
        groups = None if self.groups is None else self.groups.tolist()
        return f"sklearn:{self.model!r}:{h.hexdigest()[:16]}:{metric}:{self.empty_score!r}:{groups}"

    def _score_points(self, point_mask: np.ndarray, degenerate_ok: bool = True) -> float:
        if not np.all(np.isin(self.classes, self.y[point_mask])):
            self.num_degenerate += 1
            return self.empty_score
        from sklearn.base import clone

        try:
            model = clone(self.model)
        except Exception:  # not a scikit-learn estimator: fall back to a deep copy
            model = copy.deepcopy(self.model)
        try:
            model.fit(self.X[point_mask], self.y[point_mask])
            if self.metric is None:
                return float(model.score(self.X_test, self.y_test))
            return float(self.metric(self.y_test, model.predict(self.X_test)))
        except Exception as err:
            if not degenerate_ok:
                raise ValueError(
                    f"model: {type(self.model).__name__} failed on the full training set ({type(err).__name__}: {err}); "
                    "a valuation needs a learner that fits the whole data"
                ) from err
            self.num_degenerate += 1  # a coalition the learner cannot handle: valued as no data
            return self.empty_score

    def scores(self, masks) -> np.ndarray:
        masks = self.point_masks(masks)
        return np.array([self._score_points(m) for m in masks], np.float64)


def jax_utility(
    learner: Learner,
    X,
    y,
    X_test,
    y_test,
    metric: Callable = accuracy,
    *,
    empty_score: Optional[float] = None,
    groups=None,
    dtype=jnp.float32,
) -> JaxUtility:
    """The fast-path utility: ``metric(y_test, learner.predict(learner.fit(X[S], y[S]), X_test))``.

    ``metric(y_true, y_pred)`` must be JAX-traceable and receives integer-encoded
    labels. ``groups`` (one integer id per point) makes the players groups of points.
    """
    return JaxUtility(learner, X, y, X_test, y_test, metric, empty_score, groups, dtype)


def sklearn_utility(
    model, X, y, X_test, y_test, metric: Optional[Callable] = None, *, empty_score: Optional[float] = None, groups=None
) -> SklearnUtility:
    """The general-path utility: ``model.score(X_test, y_test)`` (or ``metric(y_test, model.predict(X_test))``)
    of a fresh clone of ``model`` fitted on the subset."""
    return SklearnUtility(model, X, y, X_test, y_test, metric, empty_score, groups)
