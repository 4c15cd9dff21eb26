"""The goal-directed Push-T expert (envs/push_t_expert.py) and its data mode."""

from __future__ import annotations

import math
import os

os.environ.setdefault("SDL_VIDEODRIVER", "dummy")
os.environ.setdefault("SDL_AUDIODRIVER", "dummy")

import gymnasium as gym  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

import envs  # noqa: E402, F401
from envs.push_t import PushTEnv, simulate_step  # noqa: E402
from envs.push_t_expert import PushTExpert, _PushSim, pose_cost  # noqa: E402
from envs.scripted import DATA_POLICIES, make_data_policy  # noqa: E402

# Fixed start/goal pairs (block pose + pusher), each at least 40 px or 30 deg apart:
# a translation, a rotation in place, both at once, and a goal near a wall.
PAIRS = [
    ((150.0, 400.0, 256.0, 256.0, 0.0), (300.0, 300.0, 0.0)),
    ((400.0, 100.0, 256.0, 256.0, 0.0), (256.0, 256.0, math.radians(90))),
    ((100.0, 100.0, 200.0, 300.0, 1.0), (320.0, 220.0, -1.5)),
    ((256.0, 450.0, 256.0, 256.0, 2.5), (130.0, 140.0, -2.8)),
]
BUDGET = 200


def _state(pusher_x, pusher_y, bx, by, angle):
    return np.array([pusher_x, pusher_y, bx, by, angle, 0, 0, 0, 0, 0], dtype=np.float32)


@pytest.mark.parametrize("start,goal", PAIRS)
def test_expert_solves_fixed_pairs(start, goal):
    env = PushTEnv(obs_mode="state")
    goal_state = _state(400.0, 450.0, *goal)
    obs, info = env.reset(options={"state": _state(*start), "goal_state": goal_state})
    assert not info["is_success"]
    expert = PushTExpert(seed=0)
    for t in range(BUDGET):
        action, _ = expert.predict(obs, episode_start=np.array([t == 0]), deterministic=True)
        obs, _, terminated, _, info = env.step(action)
        if terminated:
            break
    assert info["is_success"], (
        f"not solved in {BUDGET} steps: {info['pos_error']:.1f} px, "
        f"{math.degrees(info['angle_error']):.1f} deg"
    )


def test_expert_holds_a_reached_goal():
    """At the goal the expert stops pushing: the block stays inside the success region."""
    env = PushTEnv(obs_mode="state", terminate_on_success=False)
    s = _state(100.0, 100.0, 256.0, 256.0, 0.3)
    obs, info = env.reset(options={"state": s, "goal_state": s})
    expert = PushTExpert(seed=0)
    for t in range(20):
        action, _ = expert.predict(obs, episode_start=np.array([t == 0]), deterministic=True)
        obs, _, _, _, info = env.step(action)
    assert info["is_success"]


def test_push_sim_matches_the_env_physics():
    """The persistent-space rollout that ranks pushes follows the env's own steps."""
    pose = np.array([256.0, 256.0, 0.4])
    pre = np.array([256.0, 190.0])  # above the bar's top
    action = np.array([0.0, 0.4])
    sim_end = _PushSim().push(pre, pose, action, 8)
    s = np.array([pre[0], pre[1], *pose, 0, 0, 0, 0, 0], dtype=np.float32)
    for _ in range(8):
        s = simulate_step(s, action)
    assert np.abs(sim_end[:2] - s[2:4]).max() < 3.0
    assert abs(sim_end[2] - s[4]) < 0.05
    assert np.abs(s[2:5] - np.r_[pose]).max() > 5.0  # the push did move the block


def test_pose_cost_is_in_threshold_units():
    target = np.array([100.0, 100.0, 0.0])
    assert pose_cost(np.array([120.0, 100.0, 0.0]), target) == pytest.approx(1.0)
    assert pose_cost(np.array([100.0, 100.0, math.pi / 9]), target) == pytest.approx(1.0)
    assert pose_cost(np.array([100.0, 100.0, 2 * math.pi]), target) == pytest.approx(0.0, abs=1e-9)


def test_expert_is_a_registered_batched_data_policy():
    assert "expert" in DATA_POLICIES
    vec = gym.vector.SyncVectorEnv(
        [
            lambda: gym.make(
                "lewm/PushT-v0", obs_mode="state", terminate_on_success=False, max_episode_steps=30
            )
            for _ in range(2)
        ]
    )
    policy = make_data_policy("expert", "lewm/PushT-v0", vec.single_action_space, seed=3)
    assert isinstance(policy, PushTExpert) and policy.targets == "random"
    obs, _ = vec.reset(seed=0)
    start = np.ones(2, dtype=bool)
    moved = np.zeros(2, dtype=bool)
    first = obs["observation"][:, 2:5].copy()
    for _ in range(30):
        actions, _ = policy.predict(obs, episode_start=start)
        assert actions.shape == (2, 2) and actions.dtype == np.float32
        assert np.all(np.abs(actions) <= 1.0)
        obs, _, _, _, _ = vec.step(actions)
        start[:] = False
        moved |= np.abs(obs["observation"][:, 2:5] - first).max(axis=1) > 1.0
    vec.close()
    assert moved.all(), "the data-mode expert should push the block within 30 steps"


def test_single_and_batched_calls_agree():
    """One env in a batch of one acts exactly as the unbatched call (same seed)."""
    env = PushTEnv(obs_mode="state")
    obs, _ = env.reset(seed=5)
    a1, _ = PushTExpert(seed=1).predict(obs, episode_start=np.array([True]), deterministic=True)
    batched = {k: v[None] for k, v in obs.items()}
    a2, _ = PushTExpert(seed=1).predict(batched, episode_start=np.array([True]), deterministic=True)
    assert a1.shape == (2,) and a2.shape == (1, 2)
    np.testing.assert_array_equal(a1, a2[0])


def test_expert_rejects_bad_arguments():
    with pytest.raises(ValueError, match="targets"):
        PushTExpert(targets="somewhere")
    with pytest.raises(ValueError, match="push_speed"):
        PushTExpert(push_speed=0.0)
    env = PushTEnv(obs_mode="state")
    obs, _ = env.reset(seed=0)
    with pytest.raises(ValueError, match="desired_goal"):
        PushTExpert().predict({"observation": obs["observation"]})


def test_expert_agent_from_the_registry():
    import agents

    agent = agents.make("expert", env_id="lewm/PushT-v0", seed=0)
    assert agent.obs_mode == "state" and agent.name == "expert"
    env = PushTEnv(obs_mode="state")
    obs, _ = env.reset(seed=1)
    action, _ = agent.predict(obs, episode_start=np.array([True]))
    assert action.shape == (2,) and np.all(np.abs(action) <= 1.0)
    with pytest.raises(ValueError, match="no goal-directed expert"):
        agents.make("expert", env_id="lewm/TwoRoom-v0")


def test_expert_bench_reports_success_and_cost(tmp_path):
    from lewm_agent.cli import main as lewm

    def main(argv: list[str]) -> int:
        return lewm(["bench", *argv])

    out = tmp_path / "expert.json"
    assert main(["expert", "--pairs", "3", "--json", str(out)]) == 0
    import json

    result = json.loads(out.read_text())
    assert result["pairs"] == 3 and result["successes"] == 3
    assert 0.0 < result["ms_per_env_step"] and result["median_steps_to_success"] > 1
