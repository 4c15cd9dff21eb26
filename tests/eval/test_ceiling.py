"""The planning-ceiling harness: exact batched Push-T steps, easy pairs solved, bad input refused."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest

from envs.push_t import simulate_step
from envs.push_t_batch import rollout_exact, step_exact
from eval.ceiling import CEILING_PLAN, CostConfig, ceiling, make_cost, rollout_cost
from eval.protocol import ProtocolEpisode
from lewm_agent.config import PlanConfig

PUSHT = "lewm/PushT-v0"


def _state(pusher: tuple[float, float], block: tuple[float, float, float]) -> np.ndarray:
    return np.array([*pusher, *block, 0, 0, 0, 0, 0], dtype=np.float32)


def _random_states(n: int, rng: np.random.Generator) -> np.ndarray:
    """Start states with the pusher near (often touching) the block, some near a wall, some moving."""
    block = np.column_stack(
        [rng.uniform(90, 420, n), rng.uniform(90, 420, n), rng.uniform(-np.pi, np.pi, n)]
    )
    pusher = np.clip(block[:, :2] + rng.normal(0, 45, (n, 2)), 25, 487)
    vel = rng.normal(0, 60, (n, 5)) * (rng.random((n, 1)) < 0.5)
    vel[:, 4] /= 30.0
    return np.column_stack([pusher, block, vel]).astype(np.float32)


def test_batched_push_t_step_equals_simulate_step_bit_for_bit() -> None:
    rng = np.random.default_rng(0)
    states = _random_states(24, rng)
    actions = rng.uniform(-1.3, 1.3, (24, 12, 2)).astype(np.float32)  # beyond the bounds too
    ours = rollout_exact(states, actions)  # (24, 13, 10)
    ref = np.empty_like(ours)
    ref[:, 0] = states
    for i in range(24):
        for t in range(12):
            ref[i, t + 1] = simulate_step(ref[i, t], actions[i, t])
    moved = np.abs(ref[:, -1, 2:5] - ref[:, 0, 2:5]).max(axis=1) > 1.0
    assert moved.sum() >= 6  # the check covers pushes (contacts), not only free moves
    assert ours.dtype == np.float32
    np.testing.assert_array_equal(ours, ref)
    np.testing.assert_array_equal(step_exact(states, actions[:, 0]), ref[:, 1])
    # one start broadcast to every sequence
    one = rollout_exact(states[0], actions[:3])
    np.testing.assert_array_equal(one[0], ref[0])


def test_batched_step_rejects_bad_shapes() -> None:
    with pytest.raises(ValueError, match=r"actions must be \(N, T, 2\)"):
        rollout_exact(np.zeros(10, np.float32), np.zeros((4, 2)))
    with pytest.raises(ValueError, match=r"states must be \(N, 10\)"):
        step_exact(np.zeros((3, 9), np.float32), np.zeros((3, 2)))


# Easy pairs: the pusher 10 px off a face of the T, in line with its centre of mass
# (block at rest), the goal the same block 120 px further along that push (no turn), so
# that 5 steps of purposeful pushing are needed. In the block frame the stem ends at
# y = 79.3 and the bar's far face is at y = -40.7; angle pi/2 turns the stem to point
# left (world x = -local y).
_GAP, _DIST = 10.0, 120.0


def _pair(
    name: str, block: tuple[float, float, float], offset: tuple[float, float]
) -> ProtocolEpisode:
    """Pusher at ``block + offset``; goal: both moved ``_DIST`` px away from the pusher's side."""
    d = -np.asarray(offset) / np.linalg.norm(offset) * _DIST
    p = (block[0] + offset[0], block[1] + offset[1])
    goal = _state((p[0] + d[0], p[1] + d[1]), (block[0] + d[0], block[1] + d[1], block[2]))
    return ProtocolEpisode(name, 0, _state(p, block), goal)


EASY = [
    _pair("up", (256, 300, 0), (0, 79.3 + 15 + _GAP)),
    _pair("down", (256, 200, 0), (0, -(40.7 + 15 + _GAP))),
    _pair("right", (180, 256, np.pi / 2), (-(79.3 + 15 + _GAP), 0)),
]
SMALL = PlanConfig(
    planner="cem", samples=48, iterations=4, elites=6, horizon=3, receding_horizon=3, noise_beta=2.0
)


def test_exact_dynamics_with_block_pose_cost_solves_easy_pairs() -> None:
    out = ceiling(PUSHT, EASY, "block_pose", SMALL)
    assert out["successes"] == len(EASY), out["per_episode"]
    assert out["ci95"][0] > 0.3 and out["ci95"][1] == 1.0
    assert 0 < out["mean_steps"] <= 30
    assert out["decisions"] >= len(EASY) and out["seconds_per_decision"] > 0
    # deterministic: the same seeds give the same episodes
    again = ceiling(PUSHT, EASY[:1], "block_pose", SMALL)
    assert again["per_episode"][0] == out["per_episode"][0]


def test_random_actions_fail_the_easy_pairs() -> None:
    # A random pusher next to the block does sometimes shove it far enough (about 1 in 30
    # episode runs); the planner solves every one.
    runs = [
        ceiling(PUSHT, EASY, "block_pose", replace(SMALL, seed=seed), random_actions=True)
        for seed in range(5)
    ]
    assert sum(r["successes"] for r in runs) <= 2
    assert runs[2]["successes"] == 0 and runs[2]["mean_steps"] == 50


def test_mppi_and_two_room_run() -> None:
    mppi = ceiling(PUSHT, EASY[:1], "block_pose", replace(SMALL, planner="mppi"))
    assert mppi["method"] == "mppi" and mppi["successes"] == 1
    a = np.array([0.2, 0.3], np.float32)
    pair = ProtocolEpisode("tr", 0, a, np.array([0.35, 0.45], np.float32))
    tr = ceiling("lewm/TwoRoom-v0", [pair], "distance", SMALL, budget=20)
    assert tr["successes"] == 1


def test_cost_shaping_terms() -> None:
    goal = _state((256, 315), (256, 216, 0)).astype(np.float64)
    near = _state((256, 355), (256, 256, 0))[None]  # pusher 0.7 px off the stem's end
    far = _state((60, 60), (256, 256, 0))[None]
    base = make_cost(PUSHT, CostConfig())
    assert base(near, goal)[0] == pytest.approx((40 / 20) ** 2)
    shaped = make_cost(PUSHT, CostConfig(contact_weight=1.0))
    assert shaped(near, goal)[0] == pytest.approx(base(near, goal)[0], abs=0.05)
    assert shaped(far, goal)[0] > base(far, goal)[0] + 1.0
    pushers = make_cost(PUSHT, CostConfig(goal_pusher_weight=2.0))
    assert pushers(near, goal)[0] == pytest.approx(4.0 + 2.0 * 0.4)
    # a full turn is no error; half a turn is pi / (pi/9) = 9 thresholds
    turned = _state((256, 355), (256, 216, np.pi))[None]
    assert base(turned, goal)[0] == pytest.approx(81.0, rel=1e-5)
    surrogate = make_cost(PUSHT, CostConfig(name="latent_surrogate"))
    assert surrogate(near, goal)[0] == pytest.approx(33.5 * 0.4 + 21.6 * 0.4)
    # summed over blocks: the state at every block's end, not the start
    roll = np.stack([np.repeat(near, 11, axis=0)])  # (1, 11, 10): 2 blocks of 5
    assert rollout_cost(base, roll, goal, 5, "blocks")[0] == pytest.approx(8.0)
    assert rollout_cost(base, roll, goal, 5, "final")[0] == pytest.approx(4.0)


def test_bad_arguments_are_named() -> None:
    with pytest.raises(ValueError, match="unknown cost 'pose'.*block_pose"):
        ceiling(PUSHT, EASY, "pose", SMALL)
    with pytest.raises(ValueError, match="no exact dynamics.*lewm/PushT-v0"):
        ceiling("lewm/Reacher-v0", EASY, "block_pose", SMALL)
    with pytest.raises(ValueError, match="'cem' or 'mppi'"):
        ceiling(PUSHT, EASY, "block_pose", PlanConfig(planner="policy"))
    with pytest.raises(ValueError, match="receding_horizon"):
        ceiling(PUSHT, EASY, "block_pose", PlanConfig(horizon=2, receding_horizon=3))
    with pytest.raises(ValueError, match="over must be one of"):
        CostConfig(over="all")
    with pytest.raises(ValueError, match="need a pusher and a block"):
        make_cost("lewm/TwoRoom-v0", CostConfig(name="distance", contact_weight=1.0))
    with pytest.raises(ValueError, match="start and goal states"):
        ceiling(PUSHT, [ProtocolEpisode("s", 0, None, None, seed=1)], "block_pose", SMALL)
    assert CEILING_PLAN.samples == 200 and CEILING_PLAN.iterations == 8


def test_protocol_episodes_match_the_held_out_split(tworoom_data) -> None:
    from eval.ceiling import protocol_episodes
    from eval.protocol import sample_episodes
    from lewm_agent.heldout import load_heldout

    ours = protocol_episodes(tworoom_data, 12, seed=42)
    ref = sample_episodes(load_heldout(tworoom_data).heldout, 12, seed=42)
    assert [(e.episode, e.start_step) for e in ours] == [(e.episode, e.start_step) for e in ref]
    for a, b in zip(ours, ref, strict=True):
        np.testing.assert_array_equal(a.start_state, b.start_state)
        np.testing.assert_array_equal(a.goal_state, b.goal_state)
    out = ceiling("lewm/TwoRoom-v0", ours[:3], "distance", SMALL)
    assert out["successes"] == 3


def test_lewm_bench_ceiling_writes_its_rows(tworoom_data, tmp_path) -> None:
    from lewm_agent.cli import main

    out = tmp_path / "ceiling.json"
    argv = ["bench", "ceiling", "--data", str(tworoom_data), "--episodes", "3", "--cost"]
    argv += ["distance", "--samples", "30", "--iterations", "2", "--elites", "5", "--random"]
    assert main([*argv, "--json", str(out)]) == 0
    rows = json.loads(out.read_text())
    assert rows["env_id"] == "lewm/TwoRoom-v0" and rows["plan"]["samples"] == 30
    assert rows["planner"]["episodes"] == 3 and rows["random"]["episodes"] == 3
    with pytest.raises(ValueError, match="unknown cost 'block_pose'"):
        main([*argv[:7], "block_pose"])
