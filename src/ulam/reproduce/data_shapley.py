"""Reproduction of Ghorbani & Zou (ICML 2019), *Data Shapley*, at small scale on synthetic 2-class data.

Gated (exact): (a) exact Shapley by enumeration (n = 10, 1-NN utility) is efficient, and TMC-Shapley
lands within 0.01 mean absolute error of it.
Reported over seeds with standard errors, not gated (the paper's empirical "better" claims are soft):
(b) with 15 % of labels flipped, how many more flipped labels the lowest-valued 20 % of points hold than
    a random 20 % (the paper's figure: >= 2.5x), and than the lowest 20 % by leave-one-out;
(c) how much faster removing high-Shapley points first lowers held-out accuracy than removing
    random or high-LOO points;
(d) G-Shapley (one SGD epoch per permutation, logistic regression) on the same data: flipped labels
    found against random, and its rank agreement with TMC-Shapley on the same learner.
"""

from __future__ import annotations

import numpy as np

from ulam.reproduce import Outcome, Reproduction, claim, markdown_table


SOFT_FIGURES = {
    "tmc_ratio": "(b) flipped labels in lowest 20% by TMC / random expectation",
    "tmc_minus_loo": "(b) flipped found by TMC minus found by LOO",
    "auc_vs_random": "(c) mean held-out acc, remove high-Shapley first, minus random",
    "auc_vs_loo": "(c) mean held-out acc, remove high-Shapley first, minus high-LOO first",
    "g_ratio": "(d) flipped labels in lowest 20% by G-Shapley / random expectation",
    "rho": "(d) Spearman rank correlation G-Shapley vs TMC-Shapley (logistic)",
}


def _two_gaussians(rng, n, shift=1.5):
    y = rng.integers(0, 2, n)
    X = rng.normal(size=(n, 2)) + shift * (2 * y[:, None] - 1)
    return X.astype(np.float32), y


def _spearman(a, b):
    from scipy.stats import spearmanr

    return float(spearmanr(a, b).statistic)


def run(ctx) -> Outcome:
    import jax

    from ulam.valuation import (
        Truncation,
        exact_shapley,
        g_shapley,
        jax_utility,
        knn,
        leave_one_out,
        logistic_regression,
        tmc_shapley,
    )

    rng = np.random.default_rng(ctx.seed)
    claims, tables, notes = [], [], []

    # (a) exact vs TMC, n = 10, 1-NN, V = accuracy on 50 test points
    ctx.progress("(a) exact enumeration vs TMC, n = 10")
    Xa, ya = _two_gaussians(rng, 10, 1.0)
    ya[:2] = [0, 1]
    Xat, yat = _two_gaussians(rng, 50, 1.0)
    ua = jax_utility(knn(k=1), Xa, ya, Xat, yat)
    exact = exact_shapley(ua)
    phi = np.asarray(exact.mean, np.float64)
    eff = abs(phi.sum() - (ua.full_score - ua.empty_score))
    tmc_a = tmc_shapley(ua, ctx.key(1), max_permutations=ctx.size(2000, 5000), batch_size=500, truncation=Truncation(),
                        progress=False)
    mae = float(np.mean(np.abs(np.asarray(tmc_a.mean) - phi)))
    claims.append(claim("(a) exact: |sum phi - (V(D) - V(empty))|", eff, "<=", 1e-9, paper="efficiency axiom"))
    claims.append(claim("(a) TMC (paper truncation) mean abs error vs exact", mae, "<=", 0.01, paper="issue target 0.01"))
    tables.append(markdown_table(
        ["(a) n = 10, 1-NN", "value"],
        [["V(D)", ua.full_score], ["V(empty)", ua.empty_score], ["TMC permutations", float(tmc_a.n)],
         ["TMC fits per permutation (of 10)", tmc_a.info["fits_per_permutation"]],
         ["TMC mean stderr", float(np.mean(tmc_a.stderr))], ["TMC MAE vs exact", mae]],
    ))

    def noisy_labels(rng, key_b, key_g, key_l, tables_out):
        """(b)-(d) on one draw of the data and keys; returns the soft figures of this draw."""
        # (b) noisy labels: 3-NN, n = 100 train, 200 test, 15 % flipped
        ctx.progress("(b) noisy-label detection with TMC and LOO")
        n = 100
        X, y_clean = _two_gaussians(rng, n)
        Xt, yt = _two_gaussians(rng, 200)
        Xh, yh = _two_gaussians(rng, 1000)  # held out for the removal curves
        flipped = rng.choice(n, int(0.15 * n), replace=False)
        y = y_clean.copy()
        y[flipped] = 1 - y[flipped]
        is_flipped = np.zeros(n, bool)
        is_flipped[flipped] = True
        ub = jax_utility(knn(k=3), X, y, Xt, yt)
        tmc = tmc_shapley(ub, key_b, max_permutations=ctx.size(300, 1000), batch_size=100, truncation=Truncation(),
                          progress=False)
        loo = leave_one_out(ub)
        bottom = int(0.2 * n)

        def found(values):
            return float(is_flipped[np.argsort(np.asarray(values), kind="stable")[:bottom]].sum())

        random_found = 0.2 * is_flipped.sum()
        tmc_found, loo_found = found(tmc.mean), found(loo.mean)

        # (c) removal curves on held-out 3-NN accuracy
        ctx.progress("(c) removal curves")
        uh = jax_utility(knn(k=3), X, y, Xh, yh)
        fractions = np.arange(0, 0.55, 0.05)

        def curve(order):
            masks = np.ones((len(fractions), n), bool)
            for r, f in enumerate(fractions):
                masks[r, order[: int(round(f * n))]] = False
            return uh.scores(masks)

        shap_curve = curve(np.argsort(-np.asarray(tmc.mean), kind="stable"))
        loo_curve = curve(np.argsort(-np.asarray(loo.mean), kind="stable"))
        rand_curves = np.stack([curve(rng.permutation(n)) for _ in range(10)])
        rand_curve = rand_curves.mean(0)
        # mean held-out accuracy over removal fractions 5..50 % (lower = faster degradation)
        auc = lambda c: float(np.mean(c[1:]))  # noqa: E731
        tables_out.append(markdown_table(
            ["fraction removed", "high Shapley first", "high LOO first", "random (mean of 10)"],
            [[f"{f:.2f}", float(a), float(b), float(c)] for f, a, b, c in zip(fractions, shap_curve, loo_curve, rand_curve)],
        ))

        # (d) G-Shapley with logistic regression vs TMC on the same learner
        ctx.progress("(d) G-Shapley vs TMC (logistic regression)")
        ul = jax_utility(logistic_regression(), X, y, Xt, yt)
        gs = g_shapley(ul, key_g, max_permutations=ctx.size(200, 1000), batch_size=100, progress=False)
        tmc_l = tmc_shapley(ul, key_l, max_permutations=ctx.size(64, 500), batch_size=32, truncation=Truncation(),
                             progress=False)
        g_found, tl_found = found(gs.mean), found(tmc_l.mean)
        rho = _spearman(np.asarray(gs.mean), np.asarray(tmc_l.mean))
        tables_out.append(markdown_table(
            ["(b)/(d) method", "flipped in lowest 20%", "of flipped", "permutations", "mean stderr", "fits / permutation"],
            [["TMC-Shapley, 3-NN", tmc_found, int(is_flipped.sum()), float(tmc.n), float(np.mean(tmc.stderr)),
              tmc.info["fits_per_permutation"]],
             ["LOO, 3-NN", loo_found, int(is_flipped.sum()), 1.0, 0.0, float(n + 1)],
             ["TMC-Shapley, logistic", tl_found, int(is_flipped.sum()), float(tmc_l.n), float(np.mean(tmc_l.stderr)),
              tmc_l.info["fits_per_permutation"]],
             ["G-Shapley, logistic (lr %.3g)" % gs.info["learning_rate"], g_found, int(is_flipped.sum()), float(gs.n),
              float(np.mean(gs.stderr)), 0.0],
             ["random 20% (expectation)", random_found, int(is_flipped.sum()), 0.0, 0.0, 0.0]],
        ))
        return {"tmc_ratio": tmc_found / random_found, "tmc_minus_loo": tmc_found - loo_found,
                "auc_vs_random": auc(shap_curve) - auc(rand_curve), "auc_vs_loo": auc(shap_curve) - auc(loo_curve),
                "g_ratio": g_found / random_found, "rho": rho}

    # Seed 0 continues the data stream of (a) and is the run the tables show; seeds s > 0 redraw the data,
    # the flipped labels and the keys, so the soft figures come with an se over seeds.
    per_seed = [noisy_labels(rng, ctx.key(2), ctx.key(3), ctx.key(4), tables)]
    num_seeds = ctx.size(3, 5)
    for s in range(1, num_seeds):
        ctx.progress(f"(b)-(d) over seeds: seed {s + 1} of {num_seeds}")
        per_seed.append(noisy_labels(np.random.default_rng([ctx.seed, s]), *(jax.random.fold_in(ctx.key(i), s)
                                                                            for i in (2, 3, 4)), []))
    rho = per_seed[0]["rho"]
    seed_rows = []
    for name, label in SOFT_FIGURES.items():
        vals = np.array([d[name] for d in per_seed], float)
        seed_rows.append([label, vals.mean(), vals.std(ddof=1) / np.sqrt(num_seeds),
                          ", ".join(f"{v:.3g}" for v in vals)])
    tables.append(f"**(b)-(d) over {num_seeds} seeds (data, flipped labels and keys redrawn; seed 0 is the run "
                  "above)**\n\n" + markdown_table(["figure", "mean", "se", "per seed"], seed_rows))
    notes.append(
        f"(d) Spearman rank correlation of G-Shapley with TMC-Shapley (both logistic regression): {rho:.3f} "
        "(reported, no threshold set in advance). V(empty) is the majority-class frequency of the test labels, "
        "as in the paper's code; subsets missing a class get V(empty). Truncation: the paper's rule "
        "(|V(S) - V(D)| <= 0.01 V(D) for more than 5 consecutive points)."
    )
    return Outcome(claims=claims, tables=tables, notes="\n\n".join(notes))


REPRODUCTION = Reproduction(
    name="data-shapley",
    paper="Ghorbani & Zou 2019, *Data Shapley: Equitable Valuation of Data for Machine Learning* (ICML)",
    summary="exact vs TMC (n=10) gated; noisy-label detection against random and LOO, removal curves and "
    "G-Shapley reported over seeds with standard errors",
    run=run,
    changes=(
        "(b) Gate 'flipped labels in lowest 20% by TMC / random expectation >= 2.5' (last measured 5, quick; 4.89"
        " ± 0.11 over 3 seeds) dropped: an empirical 'better than random', a soft claim; reported over seeds. The"
        " exact claims of (a), the efficiency axiom and TMC's accuracy against exact enumeration, stay gated. (b)"
        " Gate 'flipped found by TMC minus found by LOO > 0' (last measured 7, quick; 5.67 ± 0.67 over 3 seeds) "
        "dropped: 'Shapley beats LOO' is a paper's 'better', a soft claim; reported over seeds. (c) Gate 'mean "
        "held-out acc, remove high-Shapley first, minus random < 0' (last measured -0.1354, quick; -0.172 ± 0.039"
        " over 3 seeds) dropped: a paper's 'better than random', a soft claim; reported over seeds. (c) Gate "
        "'mean held-out acc, remove high-Shapley first, minus high-LOO first < 0' (last measured -0.0614, quick; "
        "-0.0998 ± 0.040 over 3 seeds) dropped: 'Shapley beats LOO' is a paper's 'better', a soft claim; reported"
        " over seeds. (d) Gate 'flipped labels in lowest 20% by G-Shapley / random expectation >= 2.5' (last "
        "measured 5, quick; 5 ± 0 over 3 seeds) dropped: a paper's empirical 'better than random', a soft claim; "
        'reported over seeds.'
    ),
)
