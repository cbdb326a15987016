"""Bengio, Léonard & Courville (2013): gradients through stochastic binary neurons, against exact enumeration.

(a) One unit, L = (h - t)^2: REINFORCE with the optimal baseline is exact.
(b) Ten units feeding a fixed tanh network, L = ||W2 tanh(W1 h + c) - y||^2: the exact gradient in the
    pre-activations by enumerating 1,024 configurations; bias (in standard errors), variance and
    cosine of every estimator. Claims (issue 3): REINFORCE-type and decomposition estimators unbiased
    within 3 standard errors; straight-through biased with lower variance than REINFORCE.
(c) A digits classifier with 32 stochastic binary hidden units trained with each estimator.
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
    one = G.binary_neuron_reinforce_gradient(lambda h: jnp.sum((h - t) ** 2), jnp.array([a]), ctx.key(1), n)
    z1 = abs(float(one.mean[0]) - exact1) / float(one.stderr[0])
    claims.append(claim("(a) one unit, REINFORCE + optimal baseline: |z| vs exact", z1, "<=", 3.0))

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

    rows, info = [], {}
    estimators = [
        ("REINFORCE (no baseline)", lambda k: G.binary_neuron_reinforce_gradient(L, logits, k, n, baseline=None), exact),
        ("REINFORCE (leave-one-out)", lambda k: G.binary_neuron_reinforce_gradient(L, logits, k, n, baseline="leave_one_out"), exact),
        ("REINFORCE (optimal per-unit)", lambda k: G.binary_neuron_reinforce_gradient(L, logits, k, n), exact),
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
        row, zmax, var = _row(name, fn(ctx.key(10 + i)), truth)
        rows.append(row)
        info[name] = (zmax, var)
    tables.append(markdown_table(["estimator", "||bias||", "max |z| (bias / se)", "total variance per sample",
                                  "cosine to exact"], rows))
    claims.append(claim("(b) REINFORCE-type (optimal baseline): max |z| over 10 units", info["REINFORCE (optimal per-unit)"][0], "<=", 3.0))
    claims.append(claim("(b) REINFORCE-type (leave-one-out): max |z| over 10 units", info["REINFORCE (leave-one-out)"][0], "<=", 3.0))
    claims.append(claim("(b) decomposition (STS): max |z| vs its own objective", info["decomposition (STS) vs STS objective"][0], "<=", 3.0))
    claims.append(claim("(b) straight-through (sigmoid) is biased: max |z|", info["straight-through (sigmoid)"][0], ">=", 3.0))
    claims.append(claim("(b) variance ratio straight-through / REINFORCE (optimal)",
                        info["straight-through (sigmoid)"][1] / info["REINFORCE (optimal per-unit)"][1], "<=", 1.0))

    # (c) train on digits
    steps = ctx.size(200, 2000)
    acc_rows = []
    for name in ("deterministic sigmoid", "REINFORCE (leave-one-out)", "straight-through (identity)",
                 "straight-through (sigmoid)", "decomposition (STS)", "noisy rectifier"):
        ctx.progress(f"digits: training with {name}")
        acc_rows.append([name, _train(ctx, name, steps)])
    tables.append(markdown_table([f"hidden units trained with ({steps} Adam steps)", "test accuracy"], acc_rows))
    notes = (
        "Decomposition (stochastic-times-smooth, STS) claim: FAILS, and is expected to. The estimator is the paper's "
        "STS unit, h = b*sqrt(p), b ~ Bernoulli(sqrt(p)), p = sigm(a), backpropagating through the smooth factor "
        "sqrt(p) only (digest 18-25.md §23.1 item 2). The paper (arXiv 1308.3432, abstract) says this decomposition "
        "'approximates the expected effect of the pure stochatic binary neuron to first order': it drops the score "
        "term of b's probability, so it is biased for the gradient of the objective it optimises, E[L(b*sqrt(p))] "
        "(row 'vs STS objective'); for a linear loss its mean is exactly half the true gradient (tests/grad). "
        "The issue's unbiasedness claim for this estimator contradicts the paper; the claim and its threshold are "
        "left as the issue states them. For information, row 'vs smooth-part gradient' compares the same estimator "
        "with the part of the gradient that flows through sqrt(p) with the Bernoulli probability held fixed, which "
        "it does estimate without bias (a pathwise derivative); that is a different quantity from the claim's and is "
        "not counted as reproducing it. Row 'STS + score term of b' is the same unit written as an ulam program "
        "whose Bernoulli choice takes a REINFORCE strategy (leave-one-out baseline): with the score term that STS "
        "drops put back, the estimator is unbiased for the STS objective by construction (its |z| in the table "
        "checks that, and its variance shows what dropping the term buys); it locates the bias, but it is not the "
        "paper's estimator and is not counted either. (The earlier version, arXiv 1305.2982, calls a back-propagated estimator "
        "unbiased for non-flat units such as the noisy rectifier: that is the noise-injection family, not STS.) "
        "Test accuracy uses the deterministic version of each unit (threshold at p = 1/2, or the smooth part) on the "
        "held-out 30 %. Quick mode: 10,000 draws per estimator and 200 training steps."
    )
    return Outcome(claims=claims, tables=tables, notes=notes)


REPRODUCTION = Reproduction(
    name="stochastic-neurons",
    paper="Bengio, Léonard & Courville 2013, *Estimating or Propagating Gradients Through Stochastic Neurons*",
    summary="REINFORCE-type estimator unbiased against exact enumeration; straight-through biased with lower variance",
    run=run,
)
