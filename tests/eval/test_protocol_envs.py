"""The paper protocol on Push-T and Reacher: exact start and goal images, reachable goals."""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
import pytest

import envs  # noqa: F401
from envs.collect import collect
from eval.protocol import GOAL_OFFSET, run_protocol, sample_episodes
from lewm_agent.data import Dataset, load_dataset

SIZE = 32
ENVS = ["lewm/PushT-v0", "lewm/Reacher-v0"]
EPISODE_STEPS = 40  # >= GOAL_OFFSET + a few start steps; short keeps the test fast


@pytest.fixture(scope="module", params=ENVS)
def heldout(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Dataset:
    """Held-out split of 5 heuristic episodes of 40 steps at 32 px, per env."""
    out = tmp_path_factory.mktemp(request.param.split("/")[1]) / "data"
    collect(
        request.param,
        "scripted",
        5,
        out,
        workers=1,
        image_size=SIZE,
        seed=0,
        env_kwargs={"max_episode_steps": EPISODE_STEPS},
        progress=False,
    )
    return load_dataset(out).split(0.4)[1]


def test_start_and_goal_images_are_the_dataset_frames(heldout: Dataset) -> None:
    """reset(options={state, goal_state}) shows frame t and, as the goal, frame t + 25."""
    frames = {e.name: e.pixels for e in heldout.episodes}
    env = gym.make(heldout.meta["env_id"], image_size=SIZE)
    for ep in sample_episodes(heldout, n=6, seed=42):
        obs, info = env.reset(options={"state": ep.start_state, "goal_state": ep.goal_state})
        np.testing.assert_array_equal(obs["pixels"], frames[ep.episode][ep.start_step])
        np.testing.assert_array_equal(obs["goal"], frames[ep.episode][ep.start_step + GOAL_OFFSET])
        np.testing.assert_array_equal(info["state"], ep.start_state)
    env.close()


class ReplayAgent:
    """Replays each protocol episode's recorded actions: an agent that knows the answer."""

    supports_env_indices = True

    def __init__(self, heldout: Dataset, episodes: list[Any]) -> None:
        by_name = {e.name: e for e in heldout.episodes}
        self.actions = [
            by_name[ep.episode].actions[ep.start_step : ep.start_step + GOAL_OFFSET]
            for ep in episodes
        ]
        self.t = np.zeros(len(episodes), dtype=int)

    def predict(self, obs, state=None, episode_start=None, deterministic=True, env_indices=None):
        out = []
        for i in env_indices:
            plan = self.actions[i]
            out.append(plan[min(self.t[i], len(plan) - 1)])
            self.t[i] += 1
        return np.stack(out), None


def test_replaying_the_recorded_actions_reaches_every_goal(heldout: Dataset) -> None:
    """Exact state restore makes the goal reachable: the data's own actions always succeed."""
    eps = sample_episodes(heldout, n=8, seed=42)
    result, _ = run_protocol(
        heldout.meta["env_id"],
        ReplayAgent(heldout, eps),
        eps,
        env_kwargs={"image_size": SIZE},
        progress=False,
    )
    assert result.successes == len(eps)
    assert all(e["steps"] <= GOAL_OFFSET for e in result.per_episode)


def test_describe_goals_counts_solved_starts_and_medians():
    from eval.protocol import ProtocolEpisode, describe_goals, format_goals

    def state(bx, angle):
        return np.array([100.0, 100.0, bx, 256.0, angle, 0, 0, 0, 0, 0], dtype=np.float32)

    episodes = [
        ProtocolEpisode("a", 0, state(256.0, 0.0), state(256.0, 0.1)),  # solved at the start
        ProtocolEpisode("b", 0, state(200.0, 0.0), state(300.0, 0.0)),  # 100 px away
        ProtocolEpisode("c", 0, state(200.0, 0.0), state(260.0, 1.0)),  # 60 px, 1 rad
    ]
    summary = describe_goals("lewm/PushT-v0", episodes)
    assert summary["episodes"] == 3
    assert summary["solved_at_start"] == pytest.approx(1 / 3)
    assert summary["median_pos_error"] == pytest.approx(60.0, abs=1e-3)
    assert summary["median_angle_error"] == pytest.approx(0.1, abs=1e-3)
    assert "33% of 3 episodes solved at the start" in format_goals(summary)
