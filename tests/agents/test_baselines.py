"""SB3 baselines and the agent registry: train tiny, save with SB3, load, act on the protocol."""

from __future__ import annotations

import inspect

import numpy as np
import pytest

import agents
import envs  # noqa: F401
from agents.baselines import (
    BaselineConfig,
    SB3Agent,
    baseline_name,
    parse_baseline_name,
    train_baseline,
)
from eval.protocol import run_protocol, sample_episodes
from lewm_agent import load_dataset

ENV = "lewm/TwoRoom-v0"
SB3_ARGS = ["observation", "state", "episode_start", "deterministic"]


def _has_predict_signature(agent) -> bool:
    params = list(inspect.signature(agent.predict).parameters)
    return params[:4] == SB3_ARGS


def _episodes(tworoom_data, n=3):
    _, heldout = load_dataset(tworoom_data).split(0.2)
    return sample_episodes(heldout, n=n, seed=42)


def test_names_round_trip_and_reject_unknown():
    assert parse_baseline_name("ppo") == ("ppo", "state")
    assert parse_baseline_name("ppo-pixels") == ("ppo", "pixels")
    assert parse_baseline_name("ppo_pixels") == ("ppo", "pixels")
    assert baseline_name("sac", "state") == "sac"
    with pytest.raises(ValueError, match="unknown baseline"):
        parse_baseline_name("dqn")
    with pytest.raises(ValueError, match="algo"):
        BaselineConfig(ENV, algo="a2c").resolved()
    with pytest.raises(ValueError, match="unknown agent"):
        agents.make("nope")


def test_registry_random_and_scripted_have_the_predict_signature(tworoom_data):
    rnd = agents.make("random", env_id=ENV, seed=0)
    scr = agents.make("scripted", env_id=ENV, seed=0)
    for a in (rnd, scr):
        assert _has_predict_signature(a)
    assert scr.obs_mode == "state" and not hasattr(rnd, "obs_mode")
    eps = _episodes(tworoom_data, n=4)
    res, _ = run_protocol(ENV, scr, eps, env_kwargs={"image_size": 32}, progress=False)
    # The deterministic heuristic walks through the door: it solves these 25-step goals.
    assert res.successes == 4
    with pytest.raises(ValueError, match="path"):
        agents.make("lewm")
    with pytest.raises(ValueError, match="env_id"):
        agents.make("ppo")


def test_registry_lewm_loads_the_world_model(tiny_agent_dir):
    agent = agents.make("lewm", path=tiny_agent_dir, device="cpu")
    assert type(agent).__name__ == "WorldModelAgent" and _has_predict_signature(agent)
    info = agents.training_info(agent)
    assert info["reward_used"] is False and info["train_env_steps"] > 0


def test_ppo_state_trains_saves_loads_and_acts_on_protocol_obs(tworoom_data, tmp_path):
    folder = tmp_path / "ppo"
    agent = train_baseline(ENV, "ppo", "state", total_timesteps=256, n_envs=2, save_to=folder)
    assert (folder / "model.zip").is_file() and (folder / "baseline.json").is_file()
    assert agent.training_stats["env_steps"] >= 256 and agent.training_stats["reward_used"]
    loaded = agents.make("ppo", path=folder)
    assert isinstance(loaded, SB3Agent) and loaded.obs_mode == "state"
    assert _has_predict_signature(loaded)
    # Same weights: identical deterministic actions on a batch of state observations.
    obs = {
        "observation": np.array([[0.2, 0.3], [0.8, 0.7]], np.float32),
        "achieved_goal": np.array([[0.2, 0.3], [0.8, 0.7]], np.float32),
        "desired_goal": np.array([[0.7, 0.5], [0.1, 0.1]], np.float32),
    }
    np.testing.assert_allclose(agent.predict(obs)[0], loaded.predict(obs)[0], atol=1e-6)
    # The protocol gives it state observations (pixels would raise a clear error).
    res, frames = run_protocol(
        ENV,
        loaded,
        _episodes(tworoom_data),
        budget=5,
        env_kwargs={"image_size": 32},
        progress=False,
        record=True,
    )
    assert res.episodes == 3 and all(f[0].shape == (32, 32, 3) for f in frames)
    with pytest.raises(ValueError, match="obs_mode='state'"):
        loaded.predict({"pixels": np.zeros((32, 32, 3), np.uint8)})
    with pytest.raises(ValueError, match="holds a ppo baseline"):
        agents.make("sac", path=folder)


def test_sac_her_trains_saves_loads_and_acts(tworoom_data, tmp_path):
    folder = tmp_path / "sac"
    # HER starts learning after the first full episode (100 steps): 140 steps = 39 updates.
    agent = agents.make("sac", path=folder, env_id=ENV, total_timesteps=140)
    assert agent.config.her and SB3Agent.is_saved(folder)
    from stable_baselines3.her import HerReplayBuffer

    assert isinstance(agent.model.replay_buffer, HerReplayBuffer)
    loaded = SB3Agent.load(folder)
    assert loaded.config.her and loaded.training_stats["env_steps"] == 140
    res, _ = run_protocol(
        ENV,
        loaded,
        _episodes(tworoom_data),
        budget=4,
        env_kwargs={"image_size": 32},
        progress=False,
    )
    assert res.episodes == 3 and 0 <= res.success_rate <= 1


def test_ppo_pixels_acts_on_the_world_models_observation(tmp_path):
    folder = tmp_path / "ppo-pixels"
    agent = train_baseline(
        ENV, "ppo", "pixels", total_timesteps=256, n_envs=2, image_size=64, save_to=folder
    )
    loaded = agents.make("ppo-pixels", path=folder)
    assert loaded.obs_mode == "pixels" and loaded.image_size == 64
    import gymnasium as gym

    env = gym.make(ENV, image_size=64)
    obs, _ = env.reset(seed=0)  # the default {"pixels", "goal"} observation LeWM gets
    a1, _ = agent.predict(obs)
    a2, _ = loaded.predict(obs)
    assert a1.shape == (2,) and np.allclose(a1, a2, atol=1e-6)
    assert env.action_space.contains(np.clip(a2, -1, 1).astype(np.float32))
