"""The long-run harness: exact budgets, stop rules, checkpoint/resume bit-identical, fingerprints,
progress without recompiles, graceful Ctrl-C (subprocess + SIGINT). The one Ray test (slow, a local
ray.init(num_cpus=2)) runs the harness's RayBackend through valuation: tests/valuation/test_valuation.py."""

import io
import os
import signal
import subprocess
import sys
import textwrap
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from ulam import harness

_COMPILES = []


def _on_event(event, duration, **kwargs):
    if event == "/jax/core/compile/backend_compile_duration":
        _COMPILES.append(event)


jax.monitoring.register_event_duration_secs_listener(_on_event)


def _normal_round(k, size):
    return np.asarray(jax.random.normal(k, (size, 2)), np.float64), {"calls": 1.0}


# -- run_rounds -------------------------------------------------------------------------------


def test_round_sizes_are_an_exact_budget():
    assert harness.round_sizes(100, 64) == [64, 36]
    assert harness.round_sizes(128, 64) == [64, 64]
    assert harness.round_sizes(100, 64, unit=8) == [64, 32]  # whole blocks of 8
    assert harness.round_sizes(5, 64, unit=2) == [4]


def test_run_rounds_exact_budget_and_round_keys(key):
    res = harness.run_rounds(_normal_round, key, 100, batch_size=64, progress=False)
    assert res.rows.shape == (100, 2) and res.num_rounds == 2 and res.stop_reason == "budget"
    assert res.num_items == 100 and len(repr(res).splitlines()) == 1
    assert list(res.summary()["num_items"]) == [100] and list(res.summary()["calls"]) == [2.0]
    # round r is drawn from fold_in(key, r) with its own size
    np.testing.assert_array_equal(res.rows[64:], _normal_round(jax.random.fold_in(key, 1), 36)[0])


def test_legacy_keys_give_the_same_rounds():
    typed = harness.run_rounds(_normal_round, jax.random.key(3), 20, batch_size=8, progress=False)
    legacy = harness.run_rounds(_normal_round, jax.random.PRNGKey(3), 20, batch_size=8, progress=False)
    np.testing.assert_array_equal(typed.rows, legacy.rows)


def test_run_rounds_stop_predicate_and_time_budget(key):
    res = harness.run_rounds(_normal_round, key, 10_000, batch_size=10, progress=False,
                             stop=lambda rows: "enough" if rows.shape[0] >= 30 else None)
    assert res.stop_reason == "enough" and res.rows.shape[0] == 30

    def slow(k, size):
        time.sleep(0.05)
        return _normal_round(k, size)

    res = harness.run_rounds(slow, key, 10_000, batch_size=10, progress=False, max_seconds=0.12)
    assert res.stop_reason == "max_seconds" and 20 <= res.rows.shape[0] < 10_000


def test_run_rounds_resume_is_bit_identical(key, tmp_path, capsys):
    path = tmp_path / "rounds.npz"
    fp = harness.fingerprint(key=key, settings={"batch_size": 16})
    first = harness.run_rounds(_normal_round, key, 100, batch_size=16, checkpoint=path, fingerprint=fp,
                               progress=False, stop=lambda rows: "halt" if rows.shape[0] >= 48 else None)
    assert first.rows.shape[0] == 48
    resumed = harness.run_rounds(_normal_round, key, 100, batch_size=16, checkpoint=path, fingerprint=fp,
                                 progress=False)
    assert "resuming at step 48 of 100" in capsys.readouterr().err
    straight = harness.run_rounds(_normal_round, key, 100, batch_size=16, progress=False)
    np.testing.assert_array_equal(resumed.rows, straight.rows)
    assert resumed.stats["calls"] == straight.stats["calls"] == 7 and resumed.resumed_at == 48


def test_resume_refuses_a_different_run(key, tmp_path):
    path = tmp_path / "rounds.npz"
    fp = harness.fingerprint(key=key, settings={"batch_size": 16, "truncation": 0.01})
    harness.run_rounds(_normal_round, key, 32, batch_size=16, checkpoint=path, fingerprint=fp, progress=False)
    other = harness.fingerprint(key=key, settings={"batch_size": 16, "truncation": 0.05})
    with pytest.raises(harness.CheckpointMismatch,
                       match=r"different run \(differs in: setting:truncation\).*force=True"):
        harness.run_rounds(_normal_round, key, 64, batch_size=16, checkpoint=path, fingerprint=other, progress=False)
    res = harness.run_rounds(_normal_round, key, 64, batch_size=16, checkpoint=path, fingerprint=other,
                             progress=False, force=True)
    assert res.rows.shape[0] == 64 and res.resumed_at == 32


def test_fingerprint_hashes_program_and_captured_data():
    x = jnp.ones(3)
    a = harness.fingerprint(functions={"f": (lambda v: jnp.sum(v * jnp.arange(3.0)), (x,))})
    b = harness.fingerprint(functions={"f": (lambda v: jnp.sum(v * jnp.arange(1.0, 4.0)), (x,))})  # other data
    c = harness.fingerprint(functions={"f": (lambda v: jnp.sum(v * jnp.arange(3.0)), (x,))})
    assert a == c and a["function:f"] != b["function:f"]
    assert harness.fingerprint(run_id="mine")["run_id"] == "mine"
    assert harness.fingerprint(inputs=(jnp.zeros((2, 3)),))["inputs"] == "float32(2, 3)"


def test_checkpoint_round_trips_keys_and_is_atomic(tmp_path, key):
    path = tmp_path / "s.npz"
    state = {"k": jax.random.split(key, 3), "x": jnp.arange(4.0)}
    harness.save_checkpoint(path, state, {"step": 7})
    back, meta = harness.load_checkpoint(path, like=state)
    assert meta["step"] == 7 and not (tmp_path / "s.npz.tmp.npz").exists()
    np.testing.assert_array_equal(jax.random.key_data(back["k"]), jax.random.key_data(state["k"]))


def test_bad_arguments(key):
    with pytest.raises(ValueError, match="max_items: expected an integer >= 1, got 0"):
        harness.run_rounds(_normal_round, key, 0, batch_size=4)
    with pytest.raises(TypeError, match="key"):
        harness.run_rounds(_normal_round, 0, 10, batch_size=4)
    with pytest.raises(ValueError, match="chunk_size: expected an integer >= 1"):
        harness.run_chunks(lambda s, t: (s, s), 0.0, 10, chunk_size=0)
    with pytest.raises(ValueError, match="xs: expected arrays with leading axis num_steps=10"):
        harness.run_chunks(lambda s, x: (s, s), 0.0, 10, chunk_size=2, xs=jnp.zeros(9))
    with pytest.raises(TypeError, match="progress: expected None, True, False"):
        harness.resolve_progress("yes")


# -- run_chunks --------------------------------------------------------------------------------


def _walk(state, t, scale):
    k, x = state
    x = x + scale * jax.random.normal(jax.random.fold_in(k, t))
    return (k, x), x


def test_run_chunks_exact_budget_one_compile(key):
    # warm-up with another chunk size: the one-off compiles of scalar conversions are not counted
    harness.run_chunks(_walk, (key, jnp.float32(0)), 4, chunk_size=3, args=(jnp.float32(1.0),), progress=False)
    start = len(_COMPILES)
    for n in (25, 23):
        res = harness.run_chunks(_walk, (key, jnp.float32(0)), n, chunk_size=10, args=(jnp.float32(1.0),),
                                 progress=False)
        assert res.num_steps == n and res.outputs.shape == (n,)
        # the state is the last step's output: the masked tail of the last chunk did not move it
        assert float(res.state[1]) == float(res.outputs[-1])
    assert len(_COMPILES) - start == 1  # chunks of 10, 10, 5 and 10, 10, 3: one program
    whole = harness.run_chunks(_walk, (key, jnp.float32(0)), 23, chunk_size=23, args=(jnp.float32(1.0),),
                               progress=False)
    np.testing.assert_array_equal(whole.outputs, res.outputs)  # chunking does not change the bits


def test_toggling_progress_does_not_recompile(key):
    state = (key, jnp.float32(0))
    harness.run_chunks(_walk, state, 12, chunk_size=4, args=(jnp.float32(2.0),), progress=False)
    start = len(_COMPILES)
    meter = harness.TqdmProgress(file=io.StringIO())
    harness.run_chunks(_walk, state, 12, chunk_size=4, args=(jnp.float32(2.0),), progress=meter)
    harness.run_chunks(_walk, state, 12, chunk_size=4, args=(jnp.float32(2.0),), progress=False)
    assert len(_COMPILES) == start and meter.done == 12


def test_report_progress_from_compiled_loop_without_recompiling():
    @jax.jit
    def loop(x):
        def body(c, t):
            harness.report_progress(t + 1, every=5)
            return c + 1.0, None

        return jax.lax.scan(body, x, jnp.arange(20))[0]

    loop(0.0).block_until_ready()
    start = len(_COMPILES)
    meter = harness.NoProgress()
    with harness.active_meter(meter):
        loop(0.0).block_until_ready()
        jax.effects_barrier()
    loop(0.0).block_until_ready()
    assert meter.done == 20 and len(_COMPILES) == start


class _Recorder(harness.NoProgress):
    def __init__(self):
        super().__init__()
        self.seen = []

    def update(self, done, **stats):
        self.seen.append(int(done))
        super().update(done)


def test_in_chunk_reports_reach_the_meter_without_recompiling(key):
    state = (key, jnp.float32(0))
    harness.run_chunks(_walk, state, 20, chunk_size=10, args=(jnp.float32(1.0),), progress=False, report_every=2)
    start = len(_COMPILES)
    meter = _Recorder()
    res = harness.run_chunks(_walk, state, 20, chunk_size=10, args=(jnp.float32(1.0),), progress=meter,
                             report_every=2)
    assert len(_COMPILES) == start and res.num_steps == 20
    assert {2, 4, 6, 8, 10, 12, 14, 16, 18, 20} <= set(meter.seen) and meter.done == 20


def test_run_chunks_resume_after_k_chunks_is_bit_identical(key, tmp_path, capsys):
    path = tmp_path / "chunks.npz"
    state = (key, jnp.float32(0))
    args = (jnp.float32(1.0),)
    fp = harness.fingerprint(functions={"step": (lambda s: _walk(s, 0, *args), (state,))}, key=key)
    first = harness.run_chunks(_walk, state, 30, chunk_size=7, args=args, checkpoint=path, fingerprint=fp,
                               progress=False, stop=lambda s, out, done: "halt" if done >= 14 else None)
    assert first.num_steps == 14 and first.stop_reason == "halt"
    resumed = harness.run_chunks(_walk, state, 30, chunk_size=7, args=args, checkpoint=path, fingerprint=fp,
                                 progress=False)
    assert "resuming at step 14 of 30" in capsys.readouterr().err
    straight = harness.run_chunks(_walk, state, 30, chunk_size=7, args=args, progress=False)
    np.testing.assert_array_equal(resumed.outputs, straight.outputs)
    assert float(resumed.state[1]) == float(straight.state[1])
    other = harness.fingerprint(functions={"step": (lambda s: _walk(s, 0, jnp.float32(3.0)), (state,))}, key=key)
    assert other != fp  # a different scale is baked in: a different program
    with pytest.raises(harness.CheckpointMismatch, match="function:step"):
        harness.run_chunks(_walk, state, 30, chunk_size=7, args=args, checkpoint=path, fingerprint=other)


def test_progress_default_follows_the_terminal(monkeypatch):
    monkeypatch.setattr(sys.stderr, "isatty", lambda: False, raising=False)
    assert isinstance(harness.resolve_progress(None), harness.NoProgress)
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True, raising=False)
    assert isinstance(harness.resolve_progress(None), harness.TqdmProgress)
    assert isinstance(harness.resolve_progress(False), harness.NoProgress)


def test_tqdm_meter_shows_rate_and_eta():
    out = io.StringIO()
    meter = harness.TqdmProgress(file=out, mininterval=0)
    meter.start(10, desc="demo")
    meter.update(5, se=0.25)
    text = out.getvalue()
    meter.close()
    assert "demo" in text and "5/10" in text and "it/s" in text or "s/it" in text
    assert "<" in text and "se=0.25" in text  # elapsed<remaining (the ETA)


# -- train --------------------------------------------------------------------------------------


def _quadratic_update(opt, log_of=None, sqrt_of=None):
    def update(p, s, k, target):
        def loss(q):
            val = jnp.sum((q["w"] - target) ** 2) + 0.0 * q["b"]
            if sqrt_of is not None:  # finite value, infinite gradient at b = sqrt_of
                return val + jnp.sqrt(q["b"] - sqrt_of)
            return val if log_of is None else val + jnp.log(q["b"] - log_of)

        v, g = jax.value_and_grad(loss)(p)
        u, s = opt.update(g, s, p)
        return optax.apply_updates(p, u), s, v, g

    return update


def test_train_exact_steps_and_nonfinite_stop(key):
    opt = optax.sgd(0.1)
    p = {"w": jnp.zeros(2), "b": jnp.float32(1.0)}
    res = harness.train(_quadratic_update(opt), p, opt.init(p), key, 25, chunk_size=10, args=(jnp.ones(2),),
                        progress=False)
    assert res.num_steps == 25 and res.values.shape == (25,)
    # a diverging learning rate: w grows as (1 - 2 * lr)^t, float32 overflows after ~ 40 steps
    opt = optax.sgd(10.0)
    with pytest.raises(harness.NonFiniteError, match=r"loss: went non-finite at step \d+ of 200 \("):
        harness.train(_quadratic_update(opt), p, opt.init(p), key, 200, args=(jnp.ones(2),), progress=False)
    # log of a negative number: the value is NaN at the first step
    opt = optax.sgd(0.1)
    with pytest.raises(harness.NonFiniteError, match=r"step 1 of 25 \(the loss itself \(nan\)\)"):
        harness.train(_quadratic_update(opt, log_of=2.0), p, opt.init(p), key, 25, args=(jnp.ones(2),),
                      progress=False)
    # sqrt at 0: a finite value, an infinite gradient of b
    with pytest.raises(harness.NonFiniteError, match=r"step 1 of 25 \(gradient leaf \['b'\]\)"):
        harness.train(_quadratic_update(opt, sqrt_of=1.0), p, opt.init(p), key, 25, args=(jnp.ones(2),),
                      progress=False)


# -- interrupts ---------------------------------------------------------------------------------

_SCRIPT = textwrap.dedent("""
    import sys, time, jax, jax.numpy as jnp, numpy as np
    from ulam import harness

    def step(s, t):
        return s + jnp.float32(t), s

    def slow(state, out, done):
        time.sleep(0.3)  # a long run: gives the parent time to interrupt
        return None

    res = harness.run_chunks(step, jnp.float32(0), 40, chunk_size=2, checkpoint=sys.argv[1], progress=False,
                             stop=slow if sys.argv[2] == "slow" else None)
    print("final", float(res.state), res.outputs.shape[0])
""")


def test_ctrl_c_prints_one_line_and_resumes(tmp_path):
    path = tmp_path / "run.npz"
    script = tmp_path / "run.py"
    script.write_text(_SCRIPT)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in sys.path if p))
    proc = subprocess.Popen([sys.executable, str(script), str(path), "slow"], stderr=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True, env=env)
    deadline = time.time() + 120
    while not path.exists() and time.time() < deadline:
        time.sleep(0.05)
    time.sleep(0.4)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=120)
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    assert "Traceback" not in err and proc.returncode != 0
    assert lines[0].startswith("interrupted at step ") and lines[0].endswith(
        f"of 40; checkpoint saved to {path}; run the same call again to resume")
    step = int(lines[0].split()[3])
    assert 2 <= step < 40 and step % 2 == 0
    done = subprocess.run([sys.executable, str(script), str(path), "fast"], capture_output=True, text=True,
                          env=env, timeout=120)
    assert f"resuming at step {step} of 40" in done.stderr
    assert done.stdout.split() == ["final", str(float(sum(range(40)))), "40"]


@pytest.mark.parametrize("name", ["ulam.harness", "ulam.harness.progress", "ulam.harness.checkpoint",
                                  "ulam.harness.interrupt", "ulam.harness.rounds", "ulam.harness.chunks",
                                  "ulam.harness.train"])
def test_docstring_examples(name):
    import doctest
    import importlib

    result = doctest.testmod(importlib.import_module(name), optionflags=doctest.ELLIPSIS)
    assert result.failed == 0 and result.attempted > 0, f"{result.failed} docstring example(s) failed in {name}"


def test_ctrl_c_inside_a_step_saves_a_consistent_checkpoint(key, tmp_path):
    """A KeyboardInterrupt raised by the host during chunk 3 (from the stop hook): the checkpoint
    holds exactly the steps reported, and the same call resumes to the uninterrupted result."""
    path = tmp_path / "c.npz"
    state = (key, jnp.float32(0))
    args = (jnp.float32(1.0),)

    def ctrl_c_at(k):
        def stop(s, out, done):
            if done == k:
                raise KeyboardInterrupt
            return None

        return stop

    with pytest.raises(harness.Interrupted, match=f"interrupted at step 8 of 20; checkpoint saved to {path}"):
        harness.run_chunks(_walk, state, 20, chunk_size=4, args=args, checkpoint=path, progress=False,
                           stop=ctrl_c_at(12))
    (_, saved_out), meta = harness.load_checkpoint(path, like=(state, np.zeros(0, np.float32)))
    assert meta["steps"] == 8 and saved_out.shape == (8,)
    resumed = harness.run_chunks(_walk, state, 20, chunk_size=4, args=args, checkpoint=path, progress=False)
    straight = harness.run_chunks(_walk, state, 20, chunk_size=4, args=args, progress=False)
    np.testing.assert_array_equal(resumed.outputs, straight.outputs)
