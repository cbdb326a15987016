"""Programs with a strategy per random choice: unbiased against exact enumeration; clear errors."""

import jax
import jax.numpy as jnp
import numpyro.distributions as dist
import pytest

from ulam import grad as G
from ulam.testing import assert_close, assert_within_stderr

K0 = jax.random.key(11)
TH = jnp.array([1.0, 0.3])


def chain(s1, s2):
    """Two dependent flips and a Gaussian whose mean depends on the second flip."""

    def program(t, th):
        b1 = t.sample("b1", s1(logits=th[0]))
        b2 = t.sample("b2", s2(logits=th[1] + 2.0 * b1))
        y = t.sample("y", G.normal_reparam(b2 * th[0], 1.0))
        return (b1 + 2.0 * b2 - 1.3) ** 2 + y**2

    return program


def exact_chain_gradient(th):
    def expectation(th):
        total = 0.0
        for b1 in (0.0, 1.0):
            for b2 in (0.0, 1.0):
                p1 = jax.nn.sigmoid(th[0]) if b1 else 1 - jax.nn.sigmoid(th[0])
                q = jax.nn.sigmoid(th[1] + 2.0 * b1)
                p2 = q if b2 else 1 - q
                total = total + p1 * p2 * ((b1 + 2 * b2 - 1.3) ** 2 + (b2 * th[0]) ** 2 + 1.0)
        return total

    return jax.grad(expectation)(th)


@pytest.mark.slow
@pytest.mark.parametrize(
    "s1,s2",
    [(G.flip_enum, G.flip_enum), (G.flip_mvd, G.flip_mvd), (G.flip_reinforce, G.flip_mvd),
     (G.flip_mvd, G.flip_reinforce), (G.flip_enum, G.flip_reinforce)],
)
def test_mixed_strategies_unbiased(s1, s2):
    est = G.program_gradient(chain(s1, s2), TH, K0, 6000)
    assert_within_stderr(est, exact_chain_gradient(TH), z=3)


def test_mixed_strategies_unbiased_quick():
    est = G.program_gradient(chain(G.flip_mvd, G.flip_reinforce), TH, K0, 3000)
    assert_within_stderr(est, exact_chain_gradient(TH), z=3)


def test_enum_and_mvd_exact_for_the_bernoulli_example():
    s = jax.nn.sigmoid(0.3)
    for strat in (G.flip_enum, G.flip_mvd):
        est = G.program_gradient(lambda t, th: (t.sample("b", strat(logits=th)) - 0.45) ** 2, 0.3, K0, 8)
        assert_close(est.mean, 0.1 * s * (1 - s), rtol=1e-5)


def test_normal_reparam_and_reinforce_with_baseline():
    prog = lambda t, mu: t.sample("x", G.normal_reparam(mu, 1.0)) ** 2  # noqa: E731
    assert_within_stderr(G.program_gradient(prog, 1.0, K0, 6000), 2.0, z=3)
    prog_b = lambda t, mu: t.sample("x", dist.Normal(mu, 1.0), G.baseline("leave_one_out")) ** 2  # noqa: E731
    prog_r = lambda t, mu: t.sample("x", G.normal_reinforce(mu, 1.0)) ** 2  # noqa: E731
    with_b = G.program_gradient(prog_b, 1.0, K0, 6000)
    without = G.program_gradient(prog_r, 1.0, K0, 6000)
    assert_within_stderr(with_b, 2.0, z=3)
    assert float(with_b.stderr) < float(without.stderr)


def test_surrogate_gradient_matches_estimate_mean_and_value():
    prog = chain(G.flip_mvd, G.flip_enum)
    surr, value = G.program_surrogate(prog, TH, K0, 100)
    g = jax.jit(jax.grad(lambda th: G.program_surrogate(prog, th, K0, 100)[0]))(TH)
    est = jax.jit(lambda th: G.program_gradient(prog, th, K0, 100))(TH)
    assert_close(g, est.mean, rtol=1e-4, atol=1e-5)
    assert_close(value, est.info["value"], rtol=1e-5)


@pytest.mark.slow  # compiling numpyro's Beta sampler and its implicit gradient dominates; covered in test_estimators
def test_implicit_beta_choice():
    prog = lambda t, a: t.sample("p", G.beta_implicit(a, 3.0))  # noqa: E731
    assert_within_stderr(G.program_gradient(prog, 2.0, K0, 3000), 3.0 / 25.0, z=3)


def test_reparam_on_discrete_choice_names_the_choice():
    prog = lambda t, th: t.sample("coin", dist.Bernoulli(logits=th), G.reparam) * 1.0  # noqa: E731
    with pytest.raises(ValueError, match="sample site 'coin': strategy 'reparam'.*discrete"):
        G.program_gradient(prog, 0.3, K0, 10)


def test_other_program_errors():
    with pytest.raises(ValueError, match="sample site 'x': strategy 'enum' needs a finite support"):
        G.program_gradient(lambda t, m: t.sample("x", dist.Normal(m, 1.0), G.enum), 0.3, K0, 10)
    with pytest.raises(ValueError, match="used twice"):
        G.program_gradient(lambda t, m: t.sample("x", G.normal_reparam(m, 1.0)) + t.sample("x", G.normal_reparam(m, 1.0)),
                           0.3, K0, 10)
    with pytest.raises(ValueError, match="give a strategy"):
        G.program_gradient(lambda t, m: t.sample("x", dist.Normal(m, 1.0)), 0.3, K0, 10)
    with pytest.raises(ValueError, match="only a 'reinforce' strategy"):
        G.baseline(0.0, G.reparam)
