"""CEM and MPPI: convergence on a known quadratic, determinism, bounds, batching."""

import pytest
import torch

from lewm_agent.config import PlanConfig
from lewm_agent.planning import CEM, MPPI, make_planner
from tests.helpers.planning import A, H, bounds, gens, quadratic


@pytest.mark.parametrize("name", ["cem", "mppi"])
def test_converges_to_quadratic_optimum(name):
    cfg = PlanConfig(planner=name, samples=200, elites=20, iterations=25, horizon=H)
    planner = make_planner(cfg, *bounds())
    targets = torch.tensor([[0.5, -1.0, 1.5]]).repeat(2, H, 1) * torch.tensor([[[1.0]], [[-0.5]]])
    result = planner.plan(quadratic(targets, cfg.samples), gens([0, 1]))
    assert (result.actions - targets).abs().max() < 0.1


@pytest.mark.parametrize("name", ["cem", "mppi"])
def test_optimum_outside_bounds_is_clipped_to_the_boundary(name):
    cfg = PlanConfig(planner=name, samples=100, elites=10, iterations=15, horizon=H)
    low, high = bounds(-1.0, 1.0)
    planner = make_planner(cfg, low, high)
    targets = torch.full((1, H, A), 5.0)
    seen = []

    def cost(plans):
        seen.append(plans.clone())
        return quadratic(targets, cfg.samples)(plans)

    result = planner.plan(cost, gens([0]))
    every = torch.cat(seen)
    assert every.min() >= -1.0 and every.max() <= 1.0  # samples never leave the bounds
    assert torch.allclose(result.actions, torch.ones_like(result.actions), atol=0.05)


@pytest.mark.parametrize("cls", [CEM, MPPI])
def test_same_seed_same_plan_other_seed_other_plan(cls):
    cfg = PlanConfig(samples=50, elites=5, iterations=3, horizon=H)
    planner = cls(cfg, *bounds())
    cost = quadratic(torch.zeros(1, H, A) + 0.3, cfg.samples)
    a = planner.plan(cost, gens([7])).actions
    b = planner.plan(cost, gens([7])).actions
    c = planner.plan(cost, gens([8])).actions
    assert torch.equal(a, b)
    assert not torch.equal(a, c)


@pytest.mark.parametrize("cls", [CEM, MPPI])
def test_batched_equals_one_by_one(cls):
    cfg = PlanConfig(samples=40, elites=5, iterations=4, horizon=H)
    planner = cls(cfg, *bounds())
    targets = torch.randn(3, H, A, generator=torch.Generator().manual_seed(0))
    batched = planner.plan(quadratic(targets, cfg.samples), gens([10, 11, 12])).actions
    for i in range(3):
        single = planner.plan(quadratic(targets[i : i + 1], cfg.samples), gens([10 + i])).actions
        torch.testing.assert_close(batched[i : i + 1], single)


@pytest.mark.parametrize("cls", [CEM, MPPI])
def test_warm_start_is_evaluated_first(cls):
    cfg = PlanConfig(samples=30, elites=5, iterations=2, horizon=H)
    planner = cls(cfg, *bounds())
    warm = torch.full((1, H, A), 0.7)
    calls = []

    def cost(plans):
        calls.append(plans.clone())
        return plans.square().sum(dim=(1, 2))

    planner.plan(cost, gens([0]), init_mean=warm.clone())
    torch.testing.assert_close(calls[0][0], warm[0])  # sample 0 is the warm-started mean
    planner.plan(cost, gens([0]))
    torch.testing.assert_close(calls[2][0], torch.zeros(H, A))  # cold start: the prior mean


def test_bad_config_is_rejected():
    with pytest.raises(ValueError, match="elites"):
        CEM(PlanConfig(samples=10, elites=20), *bounds())
    with pytest.raises(ValueError, match="planner must be one of"):  # PlanConfig refuses it
        make_planner(PlanConfig(planner="adam"), *bounds())


def test_coloured_noise_is_unit_variance_and_correlated_over_env_steps():
    cfg = PlanConfig(samples=2000, elites=10, horizon=5, noise_beta=2.0)
    planner = CEM(cfg, torch.full((10,), -9.0), torch.full((10,), 9.0), step_dim=2)
    eps = planner.noise(gens([0]), (cfg.samples, 5, 10))[0]  # (S, H, 5 steps * 2)
    steps = eps.reshape(cfg.samples, 25, 2)  # time-ordered env actions
    assert abs(steps.std().item() - 1.0) < 0.05
    lag1 = (steps[:, 1:] * steps[:, :-1]).mean() / steps.var()
    assert lag1 > 0.5  # successive env steps move the same way
    white = CEM(
        PlanConfig(samples=2000, elites=10, horizon=5),
        torch.full((10,), -9.0),
        torch.full((10,), 9.0),
        step_dim=2,
    ).noise(gens([0]), (2000, 5, 10))[0]
    w = white.reshape(2000, 25, 2)
    assert abs(((w[:, 1:] * w[:, :-1]).mean() / w.var()).item()) < 0.05


def test_coloured_noise_planner_still_converges():
    cfg = PlanConfig(samples=200, elites=20, iterations=25, horizon=H, noise_beta=2.0)
    planner = make_planner(cfg, *bounds())
    targets = torch.full((1, H, A), 0.4)
    result = planner.plan(quadratic(targets, cfg.samples), gens([0]))
    assert (result.actions - targets).abs().max() < 0.15
