"""Bengio, Léonard & Courville (2013): gradients through stochastic binary neurons, against exact enumeration.

Claims gated are what the paper states (arXiv 1308.3432; digest 18-25.md §23):

(a) One unit, L = (h - t)^2, exact gradient p(1-p)(1-2t): REINFORCE is unbiased (|z| <= 3); with the
    paper's optimal per-unit baseline E[(h-p)^2 L]/E[(h-p)^2] = (1-p)L(1) + pL(0) (computed exactly) the
    single-unit estimator is deterministic (per-sample variance <= 1e-12); straight-through (identity
    and sigmoid-adjusted) has the right sign on a single layer (over a grid of a and t in {0, 1}).
(b) Ten units feeding a fixed tanh network, L = ||W2 tanh(W1 h + c) - y||^2, exact gradient by
    enumerating 1,024 configurations: REINFORCE-type estimators (no baseline, leave-one-out, optimal
    per-unit) unbiased, max |z| <= 3 over the 10 units. Stochastic-times-smooth (STS) and straight-through
    are first-order approximations (the paper's words): their bias (norm of mean - exact, cosine to exact)
    and variance are measured and reported, not gated.
(c) A digits classifier with 32 stochastic binary hidden units trained with each estimator (reported).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import numpyro.distributions as dist
import optax

from ulam import grad as G
from ulam.grad.stochastic_neurons import binary_layer, binary_layer_deterministic, reinforce_surrogate
from ulam.reproduce import Outcome, Reproduction, claim, markdown_table


def _network(key, k=10):
    k1, k2, k3, k4 = jax.random.split(key, 4)
    W1 = jax.random.normal(k1, (8, k)) / jnp.sqrt(k)
    c = 0.1 * jax.random.normal(k2, (8,))
    W2 = jax.random.normal(k3, (3, 8)) / jnp.sqrt(8.0)
    y = jax.random.normal(k4, (3,))
    return lambda h: jnp.sum((W2 @ jnp.tanh(W1 @ h + c) - y) ** 2)


def _row(name, est, truth):
    m, s = np.asarray(est.mean), np.asarray(est.stderr)
    z = np.abs(m - truth) / np.maximum(s, 1e-30)
    var = float(np.sum(s**2) * est.n)
    cos = float(m @ truth / (np.linalg.norm(m) * np.linalg.norm(truth)))
    return [name, float(np.linalg.norm(m - truth)), float(np.max(z)), var, cos], float(np.max(z)), var


# the digits experiment's names -> ulam.grad.stochastic_neurons.binary_layer units
UNITS = {
    "deterministic sigmoid": "sigmoid",
    "REINFORCE (leave-one-out)": "reinforce",
    "straight-through (identity)": "straight_through_identity",
    "straight-through (sigmoid)": "straight_through_sigmoid",
    "decomposition (STS)": "stochastic_times_smooth",
    "noisy rectifier": "noisy_rectifier",
}


def _train(ctx, estimator, steps):
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    data = load_digits()
    xtr, xte, ytr, yte = train_test_split(data.data / 16.0, data.target, test_size=0.3, random_state=0)
    xtr, xte, ytr, yte = map(jnp.asarray, (xtr, xte, ytr, yte))
    k1, k2 = jax.random.split(ctx.key(50))
    params = {"w1": jax.random.normal(k1, (64, 32)) / 8.0, "b1": jnp.zeros(32),
              "w2": jax.random.normal(k2, (32, 10)) / jnp.sqrt(32.0), "b2": jnp.zeros(10)}

    unit = UNITS[estimator]

    def loss(p, key, x, y):
        h, logp = binary_layer(key, x @ p["w1"] + p["b1"], unit)
        per = optax.softmax_cross_entropy_with_integer_labels(h @ p["w2"] + p["b2"], y)
        return reinforce_surrogate(per, logp) if unit == "reinforce" else jnp.mean(per)

    opt = optax.adam(3e-3)

    @jax.jit
    def train(params, key):
        def body(carry, k):
            p, s = carry
            kb, kh = jax.random.split(k)
            idx = jax.random.choice(kb, xtr.shape[0], (128,), replace=False)
            g = jax.grad(loss)(p, kh, xtr[idx], ytr[idx])
            u, s = opt.update(g, s, p)
            return (optax.apply_updates(p, u), s), None

        return jax.lax.scan(body, (params, opt.init(params)), jax.random.split(key, steps))[0][0]

    p = train(params, ctx.key(51))
    h = binary_layer_deterministic(xte @ p["w1"] + p["b1"], unit)
    return float(jnp.mean(jnp.argmax(h @ p["w2"] + p["b2"], -1) == yte))


def run(ctx) -> Outcome:
    claims, tables = [], []
    n = ctx.size(10_000, 100_000)
    # (a) one unit
    a, t = 0.4, 0.2
    p = float(jax.nn.sigmoid(a))
    exact1 = p * (1 - p) * (1 - 2 * t)
    unit_loss = lambda h: jnp.sum((h - t) ** 2)  # noqa: E731
    one = G.binary_neuron_reinforce_gradient(unit_loss, jnp.array([a]), ctx.key(1), n)
    z1 = abs(float(one.mean[0]) - exact1) / float(one.stderr[0])
    claims.append(claim("(a) one unit, REINFORCE (batch-estimated optimal baseline): |z| vs exact", z1, "<=", 3.0,
                        paper="unbiased"))
    plain = G.binary_neuron_reinforce_gradient(unit_loss, jnp.array([a]), ctx.key(1), n, baseline=None)
    z1_plain = abs(float(plain.mean[0]) - exact1) / float(plain.stderr[0])
    claims.append(claim("(a) one unit, REINFORCE (no baseline): |z| vs exact", z1_plain, "<=", 3.0, paper="unbiased"))
    # the paper's optimal per-unit baseline, exactly: E[(h-p)^2 L]/E[(h-p)^2] = (1-p) L(1) + p L(0)
    l_bar = (1 - p) * (1 - t) ** 2 + p * t**2
    det = G.binary_neuron_reinforce_gradient(unit_loss, jnp.array([a]), ctx.key(1), n, baseline=jnp.array([l_bar]))
    var_det = float(det.stderr[0]) ** 2 * det.n
    claims.append(claim("(a) one unit, exact optimal baseline: per-sample variance of the estimator", var_det, "<=",
                        1e-12, paper="deterministic (variance 0)"))
    # straight-through on a single layer: independent units, one per grid point, separable loss
    grid = jnp.linspace(-4.0, 4.0, 17)
    wrong_sign, sign_rows = 0, []
    for target in (0.0, 1.0):
        exact_grid = np.asarray(jax.nn.sigmoid(grid) * (1 - jax.nn.sigmoid(grid)) * (1 - 2 * target))
        for variant in ("identity", "sigmoid"):
            st = G.straight_through_gradient(lambda h: jnp.sum((h - target) ** 2), grid, ctx.key(5), n,
                                             variant=variant)
            m_st = np.asarray(st.mean)
            bad = int(np.sum(np.sign(m_st) != np.sign(exact_grid)))
            wrong_sign += bad
            sign_rows.append([f"t = {target:g}, straight-through ({variant})", bad, len(grid),
                              float(np.min(np.abs(m_st) / np.asarray(st.stderr)))])
    claims.append(claim("(a) single layer: grid points (a in [-4, 4] x t in {0, 1} x 2 variants) where "
                        "straight-through has the wrong sign", wrong_sign, "<=", 0, paper="right sign on a single layer"))
    tables.append(markdown_table(["single unit, L = (h - t)^2, 17 values of a in [-4, 4]", "wrong sign",
                                  "grid points", "min |mean| / se"], sign_rows))
    one_rows = [
        ["REINFORCE, no baseline", float(plain.mean[0]), float(plain.stderr[0]), z1_plain, float(plain.stderr[0]) ** 2 * plain.n],
        ["REINFORCE, batch-estimated optimal baseline", float(one.mean[0]), float(one.stderr[0]), z1, float(one.stderr[0]) ** 2 * one.n],
        ["REINFORCE, exact optimal baseline", float(det.mean[0]), float(det.stderr[0]),
         abs(float(det.mean[0]) - exact1) / max(float(det.stderr[0]), 1e-30), var_det],
    ]
    tables.append(f"**(a) One unit, a = {a}, t = {t}: exact gradient {exact1:.6f}, {n} samples.**\n\n"
                  + markdown_table(["estimator", "mean", "se", "|z|", "per-sample variance"], one_rows))

    # (b) ten units, exact by enumeration
    ctx.progress("ten-unit layer: exact gradient by enumeration")
    L = _network(ctx.key(2))
    logits = 0.8 * jax.random.normal(ctx.key(3), (10,))
    f = lambda h, a: L(h.astype(jnp.float32))  # noqa: E731
    exact = np.asarray(G.enumeration_gradient(f, lambda a: dist.Bernoulli(logits=a), logits).mean)
    # the STS network's own expected loss: b ~ Bernoulli(sqrt p), h = b sqrt p
    sts_exact = np.asarray(G.enumeration_gradient(
        lambda b, a: L(b.astype(jnp.float32) * jnp.sqrt(jax.nn.sigmoid(a))),
        lambda a: dist.Bernoulli(probs=jnp.sqrt(jax.nn.sigmoid(a))), logits).mean)
    # the quantity the decomposition's backprop estimates without bias: the gradient through the smooth factor
    # sqrt(p) only, with the Bernoulli part's probability held fixed (a pathwise derivative of a non-flat unit)
    smooth_exact = np.asarray(G.enumeration_gradient(
        lambda b, a: L(b.astype(jnp.float32) * jnp.sqrt(jax.nn.sigmoid(a))),
        lambda a: dist.Bernoulli(probs=jax.lax.stop_gradient(jnp.sqrt(jax.nn.sigmoid(a)))), logits).mean)
    def sts_with_score_term(t, a):  # the STS unit as an ulam program: b's probability gets a REINFORCE term
        smooth = jnp.sqrt(jax.nn.sigmoid(a))
        b = t.sample("b", dist.Bernoulli(probs=smooth), G.baseline("leave_one_out"))
        return L(b * smooth)

    rows, rows_raw, info = [], [], {}
    estimators = [
        ("REINFORCE (no baseline)", lambda k: G.binary_neuron_reinforce_gradient(L, logits, k, n, baseline=None), exact),
        ("REINFORCE (leave-one-out)", lambda k: G.binary_neuron_reinforce_gradient(L, logits, k, n, baseline="leave_one_out"), exact),
        ("REINFORCE (optimal per-unit)", lambda k: G.binary_neuron_reinforce_gradient(L, logits, k, n), exact),
        ("decomposition (STS) vs binary-neuron exact", lambda k: G.decomposition_gradient(L, logits, k, n), exact),
        ("decomposition (STS) vs STS objective", lambda k: G.decomposition_gradient(L, logits, k, n), sts_exact),
        ("decomposition (STS) vs smooth-part gradient", lambda k: G.decomposition_gradient(L, logits, k, n), smooth_exact),
        ("STS + score term of b (program, leave-one-out) vs STS objective",
         lambda k: G.program_gradient(sts_with_score_term, logits, k, n), sts_exact),
        ("straight-through (identity)", lambda k: G.straight_through_gradient(L, logits, k, n, variant="identity"), exact),
        ("straight-through (sigmoid)", lambda k: G.straight_through_gradient(L, logits, k, n, variant="sigmoid"), exact),
        ("DisARM", lambda k: G.disarm_gradient(f, lambda a: dist.Bernoulli(logits=a), logits, k, n), exact),
    ]
    for i, (name, fn, truth) in enumerate(estimators):
        ctx.progress(f"ten-unit layer: {name}")
        est = fn(ctx.key(10 + i))
        row, zmax, var = _row(name, est, truth)
        rows.append(row)
        rows_raw.append(row + [np.asarray(est.mean)])
        info[name] = (zmax, var)
    tables.append(f"**(b) Ten units into a fixed tanh network: exact gradient by enumerating 1,024 configurations; "
                  f"{n} samples per estimator.** Gated: the REINFORCE rows (max |z| <= 3). STS and straight-through "
                  "rows: bias measured and reported, not gated.\n\n"
                  + markdown_table(["estimator", "||bias||", "max |z| (bias / se)", "total variance per sample",
                                    "cosine to exact"], rows))
    for name in ("REINFORCE (no baseline)", "REINFORCE (leave-one-out)", "REINFORCE (optimal per-unit)"):
        claims.append(claim(f"(b) {name}: max |z| over 10 units vs exact", info[name][0], "<=", 3.0, paper="unbiased"))
    st_var_ratio = info["straight-through (sigmoid)"][1] / info["REINFORCE (optimal per-unit)"][1]
    st_sign = {name: int(np.sum(np.sign(r[5]) == np.sign(exact))) for name, r in zip(
        [e[0] for e in estimators], rows_raw)}

    # (c) train on digits
    steps = ctx.size(200, 2000)
    acc_rows = []
    for name in ("deterministic sigmoid", "REINFORCE (leave-one-out)", "straight-through (identity)",
                 "straight-through (sigmoid)", "decomposition (STS)", "noisy rectifier"):
        ctx.progress(f"digits: training with {name}")
        acc_rows.append([name, _train(ctx, name, steps)])
    tables.append(markdown_table([f"hidden units trained with ({steps} Adam steps)", "test accuracy"], acc_rows))
    notes = (
        "Gated: what the paper states. REINFORCE-type estimators are unbiased (|z| <= 3 against exact enumeration, "
        "(a) and (b)); the optimal per-unit baseline, computed exactly, makes the one-unit estimator deterministic "
        "(per-sample variance <= 1e-12 in float32); straight-through has the right sign on a single layer (a grid of "
        "a and t in {0, 1}, digest §23.3(a)). Measured and reported, not gated: the bias of the stochastic-times-smooth "
        "(STS, 'decomposition') and straight-through estimators in (b), as ||mean - exact|| and the cosine to exact "
        "(the paper calls both first-order approximations), and their variance. On the ten-unit layer, straight-"
        "through (sigmoid) has variance %.3g x that of REINFORCE with the optimal per-unit baseline, and the sign of "
        "its mean agrees with the exact gradient on %d of 10 units (identity: %d of 10; STS against the binary "
        "neuron: %d of 10). Why the earlier claim 'the decomposition (STS) estimator is unbiased' was dropped: it "
        "contradicted the paper, whose abstract says the STS decomposition 'approximates the expected effect of the "
        "pure stochastic binary neuron to first order'; backprop through the smooth factor sqrt(p) drops the score "
        "term of b's probability, so the estimator is biased both for the binary neuron's gradient (row 'vs "
        "binary-neuron exact') and for its own objective E[L(b sqrt p)] (row 'vs STS objective'; for a linear loss its "
        "mean is exactly half the true gradient, tests/grad). Rows kept for information: 'vs smooth-part gradient' "
        "(the part flowing through sqrt(p) with b's probability held fixed, which it does estimate without bias, a "
        "pathwise derivative) and 'STS + score term of b' (the same unit with the dropped term put back as a REINFORCE "
        "term: unbiased for the STS objective by construction; it locates the bias). Test accuracy in (c) uses the "
        "deterministic version of each unit (ulam.grad.stochastic_neurons.binary_layer_deterministic) on the held-out "
        "30 %%. This run: %d draws per estimator and %d training steps."
        % (st_var_ratio, st_sign["straight-through (sigmoid)"], st_sign["straight-through (identity)"],
           st_sign["decomposition (STS) vs binary-neuron exact"], n, steps)
    )
    return Outcome(claims=claims, tables=tables, notes=notes)


REPRODUCTION = Reproduction(
    name="stochastic-neurons",
    paper="Bengio, Léonard & Courville 2013, *Estimating or Propagating Gradients Through Stochastic Neurons*",
    summary="REINFORCE-type estimators unbiased against exact enumeration; the exact optimal per-unit baseline makes "
    "one unit's estimator deterministic; straight-through has the right sign on a single layer; the bias of the "
    "first-order approximations (STS, straight-through) measured and reported",
    run=run,
    changes=(
        "Dropped the gate 'decomposition (STS) unbiased, max |z| vs its own objective <= 3' (it failed, and "
        "it contradicted the paper, which calls STS a first-order approximation of the binary neuron); "
        "dropped the gates 'straight-through (sigmoid) biased, max |z| >= 3' and 'variance ratio straight-"
        "through / REINFORCE <= 1' (not statements of the paper; both figures are still reported). Added "
        "gates for what the paper states: REINFORCE without baseline unbiased (one unit and ten units), the "
        "exact optimal per-unit baseline makes one unit's estimator deterministic (per-sample variance <= "
        "1e-12), straight-through has the right sign on a single layer (wrong-sign count 0 over a grid). STS "
        "and straight-through bias (norm, cosine) reported against the binary neuron's exact gradient."
    ),
)
