"""CEM/MPPI with a policy prior and warm few-iteration replans, on a known quadratic."""

import pytest
import torch

from lewm_agent.config import PlanConfig
from lewm_agent.planning import PLANNER_NAMES, make_planner, uses_policy
from tests.helpers.planning import A, H, bounds, gens, quadratic


def _targets(b=2, seed=0):
    return torch.rand(b, H, A, generator=torch.Generator().manual_seed(seed)) * 2 - 1


@pytest.mark.parametrize("name", ["cem-prior", "mppi-prior"])
def test_prior_at_the_optimum_converges_in_one_iteration(name):
    cfg = PlanConfig(planner=name, samples=64, elites=8, iterations=1, horizon=H, prior_std=0.01)
    targets = _targets()
    planner = make_planner(cfg, *bounds())
    with_prior = planner.plan(quadratic(targets, 64), gens([0, 1]), proposal=targets.clone())
    assert (with_prior.actions - targets).abs().max() < 0.03
    assert with_prior.rollouts == 64
    # The same planner without the prior is far from the optimum after one iteration,
    # so the test would fail if the proposal were ignored.
    plain = make_planner(PlanConfig(planner=name.removesuffix("-prior"), **_same(cfg)), *bounds())
    without = plain.plan(quadratic(targets, 64), gens([0, 1]))
    assert (without.actions - targets).abs().max() > 0.3


def _same(cfg: PlanConfig) -> dict:
    return {"samples": cfg.samples, "elites": cfg.elites, "iterations": 1, "horizon": H}


def test_a_wrong_prior_is_overruled_by_the_gaussian_samples():
    """A share of the samples only: with a proposal far off, CEM still finds the optimum."""
    cfg = PlanConfig(planner="cem-prior", samples=200, elites=20, iterations=25, horizon=H)
    targets = _targets(1)
    planner = make_planner(cfg, *bounds())
    result = planner.plan(quadratic(targets, 200), gens([0]), proposal=torch.full((1, H, A), -1.9))
    err = (result.actions - targets).abs()
    # Far closer to the optimum than the proposal (>= 0.9 away in every entry); a
    # wrong start costs some precision (a max error of ~0.3 in one entry seen).
    assert err.mean() < 0.1 and err.max() < 0.5


@pytest.mark.parametrize("name", ["cem-prior", "mppi-prior"])
def test_prior_samples_and_plan_stay_in_bounds(name):
    cfg = PlanConfig(planner=name, samples=50, elites=5, iterations=3, horizon=H, prior_std=2.0)
    low, high = bounds(-1.0, 1.0)
    planner = make_planner(cfg, low, high)
    calls: list = []
    proposal = torch.full((1, H, A), 4.0)  # a proposal outside the bounds is clamped
    out = planner.plan(
        quadratic(torch.full((1, H, A), 5.0), 50, calls), gens([0]), proposal=proposal
    )
    every = torch.cat(calls)
    assert every.min() >= -1.0 and every.max() <= 1.0
    assert out.actions.min() >= -1.0 and out.actions.max() <= 1.0
    torch.testing.assert_close(calls[0][0], torch.ones(H, A))  # sample 0: the clamped proposal


@pytest.mark.parametrize("name", ["cem-prior", "mppi-prior"])
def test_batched_equals_one_by_one_with_prior(name):
    cfg = PlanConfig(planner=name, samples=40, elites=5, iterations=3, horizon=H)
    planner = make_planner(cfg, *bounds())
    targets = _targets(3, seed=1)
    proposals = targets + 0.2 * _targets(3, seed=2)
    warm = _targets(3, seed=3)
    batched = planner.plan(
        quadratic(targets, 40), gens([10, 11, 12]), init_mean=warm, proposal=proposals
    ).actions
    for i in range(3):
        single = planner.plan(
            quadratic(targets[i : i + 1], 40),
            gens([10 + i]),
            init_mean=warm[i : i + 1],
            proposal=proposals[i : i + 1],
        ).actions
        torch.testing.assert_close(batched[i : i + 1], single)


def test_prior_share_and_warm_candidate_are_where_documented():
    cfg = PlanConfig(
        planner="cem-prior", samples=40, elites=5, iterations=2, horizon=H, prior_fraction=0.25
    )
    planner = make_planner(cfg, *bounds())
    assert planner.prior_samples(True) == 10 and planner.prior_samples(False) == 0
    calls: list = []
    proposal, warm = torch.full((1, H, A), 0.5), torch.full((1, H, A), -0.7)
    planner.plan(quadratic(torch.zeros(1, H, A), 40, calls), gens([0]), warm, proposal)
    first = calls[0]
    torch.testing.assert_close(first[0], proposal[0])  # the initial mean is the proposal
    torch.testing.assert_close(first[-1], warm[0])  # the warm start stays a candidate
    near = (first[1:11] - 0.5).abs().max()
    assert near < 5 * cfg.prior_std  # the prior share is drawn around the proposal
    assert (first[11:-1] - 0.5).abs().max() > near  # the rest with the wider init_std


def test_warm_replans_use_warm_iterations():
    cfg = PlanConfig(samples=20, elites=4, iterations=6, warm_iterations=2, horizon=H)
    planner = make_planner(cfg, *bounds())
    calls: list = []
    cost = quadratic(torch.zeros(1, H, A), 20, calls)
    cold = planner.plan(cost, gens([0]))
    assert len(calls) == 6 and cold.rollouts == 120
    calls.clear()
    warm = planner.plan(cost, gens([0]), init_mean=cold.actions)
    assert len(calls) == 2 and warm.rollouts == 40
    calls.clear()
    make_planner(PlanConfig(samples=20, elites=4, iterations=6, horizon=H), *bounds()).plan(
        cost, gens([0]), init_mean=cold.actions
    )
    assert len(calls) == 6  # warm_iterations=0: a warm replan runs every iteration


def test_planner_names_and_bad_prior_settings():
    assert set(PLANNER_NAMES) == {"cem", "mppi", "cem-prior", "mppi-prior", "policy"}
    assert uses_policy("policy") and uses_policy("cem-prior") and not uses_policy("mppi")
    with pytest.raises(ValueError, match="prior_fraction"):
        make_planner(PlanConfig(planner="cem-prior", prior_fraction=1.0), *bounds())
    with pytest.raises(ValueError, match="planner must be one of"):  # PlanConfig refuses it
        make_planner(PlanConfig(planner="adam-prior"), *bounds())
    planner = make_planner(PlanConfig(planner="cem-prior", samples=8, elites=2), *bounds())
    with pytest.raises(ValueError, match="proposal"):
        planner.plan(lambda p: p.sum(dim=(1, 2)), gens([0]), proposal=torch.zeros(1, 2, A))
