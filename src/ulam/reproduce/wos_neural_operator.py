"""WoS-NO: a neural operator trained on walk-on-spheres weak labels vs physics-informed training at equal steps.

Viswanath, Nam, Deng, Berner, Anandkumar & Bera (2026), *Operator learning using weak
supervision from walk-on-spheres* (arXiv 2603.01193). Instance family: digest §15.5
item 2 — Laplace on the unit disk with boundary data
g_a(θ) = Σ_{k≤3} a_k cos kθ + b_k sin kθ, (a, b) ~ N(0, I_6), exact solution
u = Σ r^k (a_k cos kθ + b_k sin kθ).

Gated: the WoS-label excess error falls like walks^-1/2 (log-log slope in [-0.66, -0.37]).
Reported, not gated (soft or load-dependent): the physics-informed / WoS ratios of test error and
time per step (mean ± se over seeds) and of XLA's planned memory per step.
"""

from __future__ import annotations

import math

import numpy as np

from ulam.reproduce import Outcome, Reproduction, claim, markdown_table

NUM_SENSORS = 16
MODES = 3
# Fresh walks per label per epoch (WoS-NO draws several walks per point each epoch; the exact
# number is not in the paper's shipped configs). Fixed before measuring.
WALKS_PER_EPOCH = 4


def _boundary_values(coef, theta):
    """g_a at angles theta; coef (6,) = (a_1..a_3, b_1..b_3)."""
    import jax.numpy as jnp

    k = jnp.arange(1, MODES + 1)
    return jnp.cos(theta[..., None] * k) @ coef[:MODES] + jnp.sin(theta[..., None] * k) @ coef[MODES:]


def _exact(coef, x):
    import jax.numpy as jnp

    r = jnp.sqrt(jnp.sum(x * x, axis=-1))
    theta = jnp.arctan2(x[..., 1], x[..., 0])
    k = jnp.arange(1, MODES + 1)
    rk = r[..., None] ** k
    return (rk * jnp.cos(theta[..., None] * k)) @ coef[:MODES] + (rk * jnp.sin(theta[..., None] * k)) @ coef[MODES:]


def run(ctx) -> Outcome:
    import jax
    import jax.numpy as jnp
    import matplotlib
    import optax

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from ulam.pde import Ball, DirichletProblem, walk_moments
    from ulam.pde.operator_learning import (
        deeponet,
        init_deeponet,
        physics_informed_step,
        relative_l2,
        step_memory_bytes,
        train_physics_informed,
        train_weak_supervision,
        weak_supervision_step,
    )

    num_instances, num_points = 256, 32
    num_epochs = ctx.size(16, 64)
    steps_per_epoch, batch = ctx.size(30, 50), 256
    checkpoints = [2**i for i in range(int(math.log2(num_epochs)) + 1)]
    sensor_theta = jnp.linspace(0, 2 * math.pi, NUM_SENSORS, endpoint=False)
    disk = Ball(jnp.zeros(2), 1.0)

    def disk_points(key, shape):
        k1, k2 = jax.random.split(key)
        r = jnp.sqrt(jax.random.uniform(k1, shape))
        t = jax.random.uniform(k2, shape, maxval=2 * math.pi)
        return jnp.stack([r * jnp.cos(t), r * jnp.sin(t)], axis=-1) * 0.999

    k_train, k_test, k_model = jax.random.split(ctx.key(0), 3)
    coef = jax.random.normal(k_train, (num_instances, 2 * MODES))
    sensors = jax.vmap(lambda c: _boundary_values(c, sensor_theta))(coef)
    points = disk_points(jax.random.fold_in(k_train, 1), (num_instances, num_points))
    exact_train = jax.vmap(_exact)(coef, points)

    test_coef = jax.random.normal(k_test, (200, 2 * MODES))
    test_sensors = jax.vmap(lambda c: _boundary_values(c, sensor_theta))(test_coef)
    test_points = disk_points(jax.random.fold_in(k_test, 1), (200, 100))
    test_truth = jax.vmap(_exact)(test_coef, test_points)

    @jax.jit
    def evaluate(params):
        pred = jax.vmap(lambda s, xs: jax.vmap(lambda x: deeponet(params, s, x))(xs))(test_sensors, test_points)
        return relative_l2(pred, test_truth)

    flat_coef = jnp.repeat(coef, num_points, axis=0)

    def family_boundary(x, c):
        return _boundary_values(c, jnp.arctan2(x[1], x[0]))

    label_problem = DirichletProblem(disk, boundary=family_boundary)

    def make_labels(walks):
        def labels(key):
            # All instances in one walk pool: each query point carries its instance's coefficients.
            m = walk_moments(label_problem, key, points.reshape(-1, 2), num_walks=walks, epsilon=1e-3,
                             batch_size=8192, point_data=flat_coef)
            return m.mean[:, 0].reshape(num_instances, num_points)

        return labels

    wos_labels = make_labels(WALKS_PER_EPOCH)

    def exact_labels(key):
        return exact_train

    def pinn_batch(key):
        # Each batch element: a training instance, an interior collocation point and a boundary point.
        k1, k2, k3 = jax.random.split(key, 3)
        inst = jax.random.randint(k1, (batch,), 0, num_instances)
        interior = disk_points(k2, (batch,))
        theta = jax.random.uniform(k3, (batch,), maxval=2 * math.pi)
        boundary = jnp.stack([jnp.cos(theta), jnp.sin(theta)], axis=1)
        g = jax.vmap(_boundary_values)(coef[inst], theta)
        return sensors[inst], interior, boundary, g, None

    params0 = init_deeponet(k_model, NUM_SENSORS)
    total_steps = num_epochs * steps_per_epoch
    # The same optimiser and learning-rate schedule for every method.
    optimizer = optax.adam(optax.cosine_decay_schedule(1e-3, total_steps, alpha=0.01))
    schedule = dict(num_epochs=num_epochs, steps_per_epoch=steps_per_epoch)

    ctx.progress("WoS-labelled training")
    p_wos, h_wos = train_weak_supervision(
        ctx.key(1), params0, optimizer, sensors, points, wos_labels, batch_size=batch, evaluate=evaluate,
        checkpoints=checkpoints, **schedule,
    )
    ablation = {}
    if not ctx.quick:
        # Sensitivity to the two choices made for this reproduction: walks per label and the schedule.
        ctx.progress("ablations: one walk per label per epoch; constant learning rate")
        constant = optax.adam(1e-3)
        ablation["WoS, 1 walk/epoch"] = train_weak_supervision(
            ctx.key(1), params0, optimizer, sensors, points, make_labels(1), batch_size=batch, evaluate=evaluate,
            checkpoints=checkpoints, **schedule,
        )[1]
        ablation["WoS, constant lr"] = train_weak_supervision(
            ctx.key(1), params0, constant, sensors, points, wos_labels, batch_size=batch, evaluate=evaluate,
            checkpoints=checkpoints, **schedule,
        )[1]
        ablation["physics-informed, constant lr"] = train_physics_informed(
            ctx.key(2), params0, constant, pinn_batch, evaluate=evaluate, checkpoints=checkpoints, **schedule
        )[1]
    ctx.progress("exact-label training (the floor)")
    p_ex, h_ex = train_weak_supervision(
        ctx.key(1), params0, optimizer, sensors, points, exact_labels, batch_size=batch, evaluate=evaluate,
        checkpoints=checkpoints, **schedule,
    )
    ctx.progress("physics-informed training")
    p_pinn, h_pinn = train_physics_informed(
        ctx.key(2), params0, optimizer, pinn_batch, evaluate=evaluate, checkpoints=checkpoints, **schedule
    )

    # The error ratio is a soft claim (a paper's "better"): measured over seeds, reported with its SE, not gated.
    # Seed 0 is the run above; seed s > 0 draws its own initial network (shared by both methods) and keys.
    num_seeds = ctx.size(3, 5)
    histories = {"wos": [h_wos], "pinn": [h_pinn]}
    for s in range(1, num_seeds):
        ctx.progress(f"error and time ratios over seeds: seed {s + 1} of {num_seeds}")
        params_s = init_deeponet(jax.random.fold_in(k_model, s), NUM_SENSORS)
        histories["wos"].append(train_weak_supervision(
            jax.random.fold_in(ctx.key(1), s), params_s, optimizer, sensors, points, wos_labels, batch_size=batch,
            evaluate=evaluate, checkpoints=[num_epochs], **schedule,
        )[1])
        histories["pinn"].append(train_physics_informed(
            jax.random.fold_in(ctx.key(2), s), params_s, optimizer, pinn_batch, evaluate=evaluate,
            checkpoints=[num_epochs], **schedule,
        )[1])
    finals = {m: [float(h.errors[-1]) for h in hs] for m, hs in histories.items()}
    seed_err_ratio = np.asarray(finals["pinn"]) / np.asarray(finals["wos"])  # paired by seed
    err_ratio_mean = float(seed_err_ratio.mean())
    err_ratio_se = float(seed_err_ratio.std(ddof=1) / math.sqrt(num_seeds))

    e_wos, e_ex, e_pinn = (np.asarray(h.errors) for h in (h_wos, h_ex, h_pinn))
    walks_per_label = WALKS_PER_EPOCH * np.asarray(checkpoints, dtype=float)
    excess = np.sqrt(np.maximum(e_wos**2 - e_ex**2, 1e-12))
    slope = float(np.polyfit(np.log(walks_per_label), np.log(excess), 1)[0])

    # Time per step: WoS pays for its labels (amortised over the epoch's steps); memory: XLA's plan for one step.
    t_wos = (h_wos.label_seconds + h_wos.train_seconds) / total_steps
    t_pinn = h_pinn.train_seconds / total_steps
    # Time depends on machine load (4.45 measured alone, 1.44 under load): reported over the seeds, not gated.
    seed_t = {"wos": np.array([(h.label_seconds + h.train_seconds) / total_steps for h in histories["wos"]]),
              "pinn": np.array([h.train_seconds / total_steps for h in histories["pinn"]])}
    seed_time_ratio = seed_t["pinn"] / seed_t["wos"]
    time_ratio_mean = float(seed_time_ratio.mean())
    time_ratio_se = float(seed_time_ratio.std(ddof=1) / math.sqrt(num_seeds))
    # the very steps the training loops scan
    wos_step = weak_supervision_step(optimizer, sensors, points, batch)
    pinn_step = physics_informed_step(optimizer, pinn_batch)
    opt0 = optimizer.init(params0)
    mem_wos_step = step_memory_bytes(wos_step, params0, opt0, exact_train, ctx.key(5))
    mem_labels = step_memory_bytes(wos_labels, ctx.key(3))
    mem_wos = max(mem_wos_step, mem_labels)
    mem_pinn = step_memory_bytes(pinn_step, params0, opt0, ctx.key(4))

    err_ratio = float(e_pinn[-1] / e_wos[-1])
    time_ratio = t_pinn / t_wos
    mem_ratio = mem_pinn / mem_wos
    claims = [
        claim("WoS-label excess error vs walks per label: log-log slope >= -0.66", slope, ">=", -0.66, paper="-1/2"),
        claim("WoS-label excess error vs walks per label: log-log slope <= -0.37", slope, "<=", -0.37, paper="-1/2"),
    ]
    rows = [
        [c * steps_per_epoch, int(c * WALKS_PER_EPOCH), float(a), float(b), float(x), float(p)]
        + [float(h.errors[i]) for h in ablation.values()]
        for i, (c, a, b, x, p) in enumerate(zip(checkpoints, e_wos, e_ex, excess, e_pinn))
    ]
    tables = [
        markdown_table(
            ["steps", "walks per label", "WoS labels", "exact labels", "WoS excess", "physics-informed"]
            + list(ablation),
            rows,
        ),
        markdown_table(
            ["per step", "WoS-NO", "physics-informed", "ratio (paper)"],
            [
                ["test rel. L2 at the end (seed 0)", float(e_wos[-1]), float(e_pinn[-1]), f"{err_ratio:.3g} (8.75x)"],
                [f"test rel. L2 at the end, mean over {num_seeds} seeds", float(np.mean(finals["wos"])),
                 float(np.mean(finals["pinn"])), f"{err_ratio_mean:.3g} ± {err_ratio_se:.2g} (8.75x)"],
                ["seconds (labels amortised, seed 0)", t_wos, t_pinn, f"{time_ratio:.3g} (6.31x)"],
                [f"seconds (labels amortised), mean over {num_seeds} seeds", float(seed_t["wos"].mean()),
                 float(seed_t["pinn"].mean()), f"{time_ratio_mean:.3g} ± {time_ratio_se:.2g} (6.31x)"],
                ["XLA memory plan, KiB", mem_wos / 1024, mem_pinn / 1024, f"{mem_ratio:.3g} (2.97x)"],
            ],
        ),
    ]

    fig, ax = plt.subplots(figsize=(4.6, 3.4))
    steps_axis = np.asarray(checkpoints) * steps_per_epoch
    ax.loglog(steps_axis, e_wos, "o-", label="WoS labels (running mean)")
    ax.loglog(steps_axis, e_ex, "s-", label="exact labels")
    ax.loglog(steps_axis, e_pinn, "^-", label="physics-informed")
    ax.minorticks_off()
    ax.set_xticks(steps_axis, [str(int(v)) for v in steps_axis])
    ax.set_xlabel("training steps")
    ax.set_ylabel("test relative L2")
    ax.legend(fontsize=8)
    fig.tight_layout()
    path = ctx.figure_path("error_vs_steps.png")
    fig.savefig(path, dpi=110)
    plt.close(fig)

    notes = (
        "Reported, not gated (soft claims: a paper's 'better', 'faster', 'smaller'): the physics-informed / WoS "
        f"test-error ratio, {err_ratio_mean:.3g} ± {err_ratio_se:.2g} (mean ± se over {num_seeds} seeds, paired: "
        f"each seed draws one initial network for both methods; per seed "
        f"{', '.join(f'{r:.3g}' for r in seed_err_ratio)}); the time-per-step ratio, {time_ratio_mean:.3g} ± "
        f"{time_ratio_se:.2g} over the same runs (per seed {', '.join(f'{r:.3g}' for r in seed_time_ratio)}), "
        "which depends on machine load (an earlier run measured 4.45 on an idle machine and 1.44 under load); "
        f"and the memory-per-step ratio, {mem_ratio:.3g}, from XLA's plan (deterministic, so no se, but a property "
        "of this small DeepONet on this backend rather than a statement that can be made exactly). "
        f"{num_instances} training instances x {num_points} points, {total_steps} Adam steps "
        f"(learning rate 1e-3 with cosine decay to 1e-5, batch {batch}) "
        f"for every method; {WALKS_PER_EPOCH} new walks per label per epoch, folded into the running-mean cache. Test: 200 unseen "
        f"instances x 100 points. Model: DeepONet, linear branch on {NUM_SENSORS} boundary sensors, Fourier-feature "
        f"trunk MLP. WoS excess error = sqrt(err_WoS^2 - err_exact^2). Time: labelling {h_wos.label_seconds:.2f} s + "
        f"optimisation {h_wos.train_seconds:.2f} s (WoS) vs {h_pinn.train_seconds:.2f} s (physics-informed), on a "
        f"shared 2-core CPU. Memory: XLA's planned temporaries+outputs for one WoS step ({mem_wos_step / 1024:.0f} KiB), "
        f"one labelling pass ({mem_labels / 1024:.0f} KiB; WoS counts the larger) and one physics-informed step. The "
        "paper's ratios are GPU measurements of GINO models; ours are CPU measurements of a small DeepONet. "
        "Sensitivity (measured while building this reproduction, quick sizes, 800 steps): with a constant learning "
        "rate 1e-3 the physics-informed run reached 0.055 against 0.114 (1 walk per label per epoch) and 0.071 "
        "(4 walks) for WoS, so the error claim FAILED under that schedule (ratio 0.48 and 0.77); the cosine "
        "schedule, applied to every method, helps WoS (noisy labels averaged by the decaying step) and hurts the "
        "physics-informed run. Full mode reruns these ablations and shows them in the first table."
    )
    return Outcome(claims=claims, tables=tables, figures=[path], notes=notes)


REPRODUCTION = Reproduction(
    name="wos-neural-operator",
    paper="Viswanath, Nam, Deng, Berner, Anandkumar & Bera 2026, *Operator learning using weak supervision from "
    "walk-on-spheres* (WoS-NO)",
    summary="DeepONet on WoS weak labels (running-mean cache) vs exact labels vs physics-informed training at equal "
    "steps: error ~ walks^-1/2 toward the exact-label floor (gated); error, time and memory ratios against the "
    "paper's (reported over seeds with standard errors).",
    run=run,
    changes=(
        "Gate 'test error ratio physics-informed / WoS at equal steps > 1' (last measured 4.42, one seed, quick) "
        "dropped: a paper's 'better' is a soft claim; now reported as mean ± se over seeds (paired by seed). "
        "Gate 'time per step ratio physics-informed / WoS > 1' (last measured 3.00 quick; earlier 4.45 alone and "
        "1.44 under load) dropped: it depends on machine load; now reported as mean ± se over the same seeds. "
        "Gate 'memory per step ratio physics-informed / WoS > 1' (last measured 4.05) dropped: a paper's 'smaller' "
        "for one model and backend is a soft claim; now reported (XLA's memory plan, deterministic)."
    ),
)
