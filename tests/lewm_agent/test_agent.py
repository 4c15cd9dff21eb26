"""WorldModelAgent: the gym loop, SB3 evaluate_policy, batching, save/load, bad input."""

import gymnasium as gym
import numpy as np
import pytest

import envs  # noqa: F401
from lewm_agent import CheckpointError, WorldModelAgent
from lewm_agent.config import PlanConfig
from tests.helpers import TEST_IMAGE
from tests.helpers.agents import assert_batched_predict_equals_per_env


def _env(**kw):
    return gym.make("lewm/TwoRoom-v0", image_size=TEST_IMAGE, **kw)


def test_plain_gym_loop_runs_and_actions_stay_in_bounds(tiny_agent_dir):
    agent = WorldModelAgent.load(tiny_agent_dir)
    env = _env()
    obs, _ = env.reset(seed=0)
    for _ in range(12):
        action, state = agent.predict(obs)
        assert state is None
        assert action.shape == env.action_space.shape and action.dtype == np.float32
        assert env.action_space.contains(action)
        obs, _, term, trunc, _ = env.step(action)
        if term or trunc:
            break


def test_evaluate_policy_runs_on_loaded_agent(tiny_agent_dir):
    from stable_baselines3.common.evaluation import evaluate_policy

    agent = WorldModelAgent.load(tiny_agent_dir)
    env = gym.wrappers.TimeLimit(_env().unwrapped, max_episode_steps=15)
    mean, std = evaluate_policy(agent, env, n_eval_episodes=5, warn=False)
    assert np.isfinite(mean) and np.isfinite(std)


def test_load_with_other_planner_and_overrides(tiny_agent_dir):
    agent = WorldModelAgent.load(tiny_agent_dir, planner="mppi", samples=16, elites=4)
    assert agent.plan_config.planner == "mppi" and agent.plan_config.samples == 16
    cfg = PlanConfig(samples=8, elites=2, iterations=1)
    assert WorldModelAgent.load(tiny_agent_dir, planner=cfg).plan_config == cfg


def test_save_load_round_trip_gives_identical_actions(tiny_agent_dir, tmp_path):
    a = WorldModelAgent.load(tiny_agent_dir)
    a.save(tmp_path / "copy")
    b = WorldModelAgent.load(tmp_path / "copy")
    obs, _ = _env().reset(seed=3)
    np.testing.assert_array_equal(a.predict(obs)[0], b.predict(obs)[0])


def test_batched_predict_equals_per_env_predict(tiny_agent_dir):
    """Env i of a batch gets the plan a single-env agent with seed + i gets.

    MPPI with every sample an elite makes the plan a smooth function of the
    costs, so the ~1e-7 float differences between a batched and a single
    rollout cannot flip an elite (with CEM a near-tie can, by design); the
    planner-level test in test_planning.py checks exact equality on a known cost.
    """
    kw = {"planner": "mppi", "samples": 32, "elites": 32, "iterations": 3}
    observations = [_env().reset(seed=s)[0] for s in (1, 2, 3)]
    assert_batched_predict_equals_per_env(tiny_agent_dir, observations, **kw)


def test_episode_start_resets_only_that_env(tiny_agent_dir):
    agent = WorldModelAgent.load(tiny_agent_dir)
    observations = [_env().reset(seed=s)[0] for s in (1, 2)]
    batch = {k: np.stack([o[k] for o in observations]) for k in observations[0]}
    agent.predict(batch)
    queued = [len(s.queue) for s in agent._slots]
    agent.predict(batch, episode_start=np.array([True, False]))
    # env 0 replanned (full queue minus the action just taken), env 1 kept its queue.
    full = agent.plan_config.receding_horizon * agent.model_config.frameskip
    assert len(agent._slots[0].queue) == full - 1
    assert len(agent._slots[1].queue) == queued[1] - 1


def test_set_goal_for_observations_without_goal(tiny_agent_dir):
    agent = WorldModelAgent.load(tiny_agent_dir)
    obs, _ = _env().reset(seed=0)
    with pytest.raises(ValueError, match="no goal"):
        agent.predict(obs["pixels"])
    agent.set_goal(obs["goal"])
    action, _ = agent.predict(obs["pixels"])
    assert action.shape == (2,)


@pytest.mark.parametrize(
    "bad, match",
    [
        (
            {"pixels": np.zeros((64, 64, 3), np.uint8), "goal": np.zeros((64, 64, 3), np.uint8)},
            "image_size=32",
        ),
        (
            {"pixels": np.zeros((32, 32, 3), np.float32), "goal": np.zeros((32, 32, 3), np.uint8)},
            "uint8",
        ),
        ({"pixels": np.zeros((32, 32, 3), np.uint8)}, "no goal"),
        ({"image": np.zeros((32, 32, 3), np.uint8)}, "pixels"),
        (
            {
                "pixels": np.zeros((2, 32, 32, 3), np.uint8),
                "goal": np.zeros((3, 32, 32, 3), np.uint8),
            },
            "3 goal images for 2",
        ),
    ],
)
def test_bad_observations_name_the_problem(tiny_agent_dir, bad, match):
    agent = WorldModelAgent.load(tiny_agent_dir)
    with pytest.raises(ValueError, match=match):
        agent.predict(bad)


def test_missing_checkpoint_folder(tmp_path):
    with pytest.raises(CheckpointError, match="does not exist"):
        WorldModelAgent.load(tmp_path / "nope")


def test_truncated_weights_are_reported(tiny_agent_dir, tmp_path):
    import shutil

    broken = tmp_path / "broken"
    shutil.copytree(tiny_agent_dir, broken)
    weights = broken / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    with pytest.raises(CheckpointError, match="truncated or corrupt"):
        WorldModelAgent.load(broken)


def test_missing_and_corrupt_config_are_reported(tiny_agent_dir, tmp_path):
    import shutil

    broken = tmp_path / "broken"
    shutil.copytree(tiny_agent_dir, broken)
    good_config = (broken / "config.json").read_text()
    (broken / "config.json").write_text('{"model": ')
    with pytest.raises(CheckpointError, match="not valid JSON"):
        WorldModelAgent.load(broken)
    (broken / "config.json").write_text(good_config)
    (broken / "stats.json").unlink()
    with pytest.raises(CheckpointError, match="stats.json is missing"):
        WorldModelAgent.load(broken)
