"""agents.learn: rounds of acting, recording and training; resume; frontier goals; refusals."""

from __future__ import annotations

import csv
import hashlib
import json
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import torch

from agents.learn import (
    CONFIG_FILE,
    LOG_COLUMNS,
    LOG_FILE,
    STATE_FILE,
    Coverage,
    ExploreConfig,
    learn,
    read_log,
)
from lewm_agent import WorldModelAgent
from lewm_agent.data import load_dataset
from lewm_agent.validation import ConfigError

ENV = "lewm/TwoRoom-v0"
EPISODE = 100  # Two-Room's time limit


def _learn(out: Path, total: int, **kw):
    """The tiny setting: `test` preset (32 px), 2 env copies, 2 episodes and 4
    optimiser steps per round."""
    args = {
        "out": out,
        "steps_per_round": 2 * EPISODE,
        "train_steps_per_round": 4,
        "preset": "test",
        "n_envs": 2,
        "explore": ExploreConfig(pool=128, go_steps=10, random_steps=5),
        "progress_bar": False,
        "device": "cpu",
    }
    args.update(kw)
    return learn(ENV, total, **args)


def _weights(folder: Path) -> dict[str, torch.Tensor]:
    return WorldModelAgent.load(folder, device="cpu").model.state_dict()


def _digests(folder: Path) -> dict[str, str]:
    return {
        p.name: hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted((folder / "episodes").glob("*.npz"))
    }


@pytest.mark.usefixtures("one_thread")
def test_two_rounds_record_train_log_and_checkpoint(tmp_path: Path) -> None:
    out = tmp_path / "run"
    seen: list[dict] = []
    agent = _learn(out, 4 * EPISODE, callback=seen.append)

    rows = read_log(out)
    assert [r["round"] for r in rows] == ["0", "1"]
    assert [r["policy"] for r in rows] == ["random", "frontier"]
    assert [int(r["env_steps"]) for r in rows] == [2 * EPISODE, 4 * EPISODE]
    assert [int(r["episodes"]) for r in rows] == [2, 4]
    assert all(float(r["train_loss"]) > 0 for r in rows)
    assert 0 < float(rows[0]["coverage"]) <= float(rows[1]["coverage"]) <= 1
    assert rows[0]["success"] == ""  # no eval_fn
    with (out / LOG_FILE).open() as f:
        assert tuple(next(csv.reader(f))) == LOG_COLUMNS
    # The dataset grows: one folder of finished episodes per round.
    for r in (0, 1):
        data = load_dataset(out / "data" / f"round-{r:03d}")
        assert len(data) == 2 and data.num_steps == 2 * EPISODE
    # The weights change between rounds, and the returned agent is the last round's.
    w0, w1 = _weights(out / "checkpoints/round-000"), _weights(out / "checkpoints/round-001")
    assert any(not torch.equal(w0[k], w1[k]) for k in w0)
    final = agent.model.state_dict()
    assert all(torch.equal(final[k].cpu(), w1[k]) for k in w1)
    assert json.loads((out / STATE_FILE).read_text())["rounds"] == 2
    assert [s["round"] for s in seen] == [0, 1]


@pytest.mark.usefixtures("one_thread")
def test_a_remainder_shorter_than_an_episode_starts_no_round(tmp_path: Path) -> None:
    """Half an episode of budget left after two rounds: no third round (it would train
    and evaluate for one episode); a budget grown by a whole episode gets its round."""
    out = tmp_path / "run"
    _learn(out, 4 * EPISODE + EPISODE // 2, exploration="random")
    rows = read_log(out)
    assert [int(r["env_steps"]) for r in rows] == [2 * EPISODE, 4 * EPISODE]
    assert not (out / "data/round-002").exists()
    _learn(out, 5 * EPISODE, exploration="random")
    rows = read_log(out)
    assert [int(r["env_steps"]) for r in rows] == [2 * EPISODE, 4 * EPISODE, 5 * EPISODE]


@pytest.mark.usefixtures("one_thread")
def test_the_last_round_acts_the_shortfall_of_the_rounds_before(tmp_path: Path) -> None:
    """250-step shares hold 2 whole 100-step episodes (200 steps); after two rounds
    350 steps are left, under one and a half shares: the third round acts them all
    (3 episodes) instead of leaving 150 steps for a fourth."""
    out = tmp_path / "run"
    _learn(out, 750, steps_per_round=250, exploration="random")
    assert [int(r["env_steps"]) for r in read_log(out)] == [200, 400, 700]


@pytest.mark.usefixtures("one_thread")
def test_round_two_continues_from_round_one_weights(tmp_path: Path) -> None:
    """Continued training starts from the last round's weights: after a few small
    steps the model is much closer to them than a fresh model is."""
    out = tmp_path / "run"
    _learn(out, 4 * EPISODE, train_steps_per_round=2)
    w0, w1 = _weights(out / "checkpoints/round-000"), _weights(out / "checkpoints/round-001")
    torch.manual_seed(123)
    from lewm_agent.model import LeWM

    model = LeWM(WorldModelAgent.load(out / "checkpoints/round-000", device="cpu").model_config)
    fresh = model.state_dict()
    key = next(k for k in w0 if k.startswith("encoder") and w0[k].ndim > 1)
    assert (w1[key] - w0[key]).norm() < 0.5 * (fresh[key] - w0[key]).norm()


@pytest.mark.usefixtures("one_thread")
def test_resume_after_a_stop_continues_the_same_run(tmp_path: Path) -> None:
    out = tmp_path / "run"
    _learn(out, 4 * EPISODE, callback=lambda info: False)  # stops after round 0
    assert [r["round"] for r in read_log(out)] == ["0"]
    round0 = _digests(out / "data/round-000")
    w0 = _weights(out / "checkpoints/round-000")

    # What a kill in the middle of round 1 leaves: episodes, a checkpoint, a log row.
    partial = out / "data/round-001/episodes"
    partial.mkdir(parents=True)
    (partial / "w0-000000.npz").write_bytes(b"half an episode")
    (out / "checkpoints/round-001").mkdir(parents=True)
    with (out / LOG_FILE).open("a") as f:
        f.write("1,999,9,,,,,,,,,,,\n")

    _learn(out, 4 * EPISODE)
    rows = read_log(out)
    assert [r["round"] for r in rows] == ["0", "1"]
    assert int(rows[1]["env_steps"]) == 4 * EPISODE and rows[1]["policy"] == "frontier"
    assert _digests(out / "data/round-000") == round0  # round 0's data intact
    assert len(load_dataset(out / "data/round-001")) == 2  # the partial file is gone
    w0_again = _weights(out / "checkpoints/round-000")
    assert all(torch.equal(w0[k], w0_again[k]) for k in w0)

    # A finished run called again with a larger budget extends it.
    _learn(out, 5 * EPISODE)
    assert [int(r["env_steps"]) for r in read_log(out)] == [200, 400, 500]


@pytest.mark.usefixtures("one_thread")
def test_frontier_goals_are_the_agents_own_recorded_frames(tmp_path: Path) -> None:
    out = tmp_path / "run"
    goals: dict[int, np.ndarray | None] = {}
    _learn(
        out, 4 * EPISODE, callback=lambda info: goals.update({info["round"]: info["goal_frames"]})
    )
    assert goals[0] is None  # the first round acts randomly
    recorded = load_dataset(out / "data/round-000")
    frames = {f.tobytes() for e in recorded for f in e.pixels}
    assert goals[1] is not None and len(goals[1]) >= 1
    assert all(g.tobytes() in frames for g in goals[1])


@pytest.mark.usefixtures("one_thread")
def test_slow_goal_space_plans_toward_recorded_frames_in_the_slow_features(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from lewm_agent.explore import ProjectedDistance

    calls = []
    distance = ProjectedDistance.distance
    monkeypatch.setattr(
        ProjectedDistance,
        "distance",
        lambda self, z, g: calls.append(len(z)) or distance(self, z, g),
    )
    out = tmp_path / "run"
    seen: dict[int, np.ndarray | None] = {}
    explore = ExploreConfig(pool=128, go_steps=10, random_steps=5, goal_space="slow")
    _learn(
        out,
        4 * EPISODE,
        explore=explore,
        callback=lambda info: seen.update({info["round"]: info["goal_frames"]}),
    )
    recorded = load_dataset(out / "data/round-000")
    frames = {f.tobytes() for e in recorded for f in e.pixels}
    assert seen[1] is not None and all(g.tobytes() in frames for g in seen[1])
    rows = read_log(out)
    assert [r["policy"] for r in rows] == ["random", "frontier"]
    assert int(rows[1]["round_env_steps"]) == 2 * EPISODE
    assert calls  # the exploring planner scored its plans with the slow-feature distance
    assert json.loads((out / CONFIG_FILE).read_text())["explore"]["goal_space"] == "slow"


@pytest.mark.usefixtures("one_thread")
def test_eval_fn_fills_the_success_column(tmp_path: Path) -> None:
    out = tmp_path / "run"
    calls: list[WorldModelAgent] = []

    def eval_fn(agent: WorldModelAgent) -> float:
        calls.append(agent)
        return 0.25 * len(calls)

    _learn(out, 4 * EPISODE, eval_fn=eval_fn)
    assert [float(r["success"]) for r in read_log(out)] == [0.25, 0.5]


class _NoPixels(gym.Env):
    observation_space = gym.spaces.Box(-1.0, 1.0, (2,), np.float32)
    action_space = gym.spaces.Box(-1.0, 1.0, (2,), np.float32)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"total": 0}, "total_timesteps must be a positive integer"),
        ({"total": -5}, "total_timesteps must be a positive integer"),
        ({"exploration": "curiosity"}, "unknown exploration 'curiosity'"),
        ({"steps_per_round": 0}, "steps_per_round must be a positive integer"),
        ({"n_envs": 0}, "n_envs must be a positive integer"),
        ({"preset": "huge"}, "huge"),
        ({"env": _NoPixels()}, "pass the env id"),
        ({"env": {"id": "CartPole-v1", "wrappers": []}}, "no 32x32x3 uint8 'pixels'"),
        ({"data": "no/such/dataset"}, "not a recorded dataset"),
    ],
)
def test_bad_arguments_are_refused_before_any_folder_exists(
    tmp_path: Path, kwargs: dict, message: str
) -> None:
    out = tmp_path / "run"
    env = kwargs.pop("env", ENV)
    total = kwargs.pop("total", 400)
    args = {"out": out, "preset": "test", "progress_bar": False, **kwargs}
    with pytest.raises(ConfigError, match=message):
        learn(env, total, **args)
    assert not out.exists()


def test_a_run_with_other_settings_is_refused_untouched(tmp_path: Path) -> None:
    out = tmp_path / "run"
    out.mkdir()
    saved = {"env": {"id": ENV}, "preset": "test", "n_envs": 3}
    (out / CONFIG_FILE).write_text(json.dumps(saved))
    with pytest.raises(ConfigError, match="other settings"):
        learn(ENV, 400, out=out, preset="test", n_envs=2, progress_bar=False)
    assert sorted(p.name for p in out.iterdir()) == [CONFIG_FILE]

    other = tmp_path / "not-a-run"
    other.mkdir()
    (other / "notes.txt").write_text("mine")
    with pytest.raises(ConfigError, match="is not a learn run"):
        learn(ENV, 400, out=other, preset="test", progress_bar=False)
    assert sorted(p.name for p in other.iterdir()) == ["notes.txt"]


def test_bad_explore_settings_name_the_field() -> None:
    with pytest.raises(ConfigError, match="frontier_fraction"):
        ExploreConfig(frontier_fraction=0.0)
    with pytest.raises(ConfigError, match="elites"):
        ExploreConfig(samples=4, elites=8)
    with pytest.raises(ConfigError, match="goal_space"):
        ExploreConfig(goal_space="pixels")
    with pytest.raises(ConfigError, match="slow_features"):
        ExploreConfig(slow_features=0)


def test_coverage_counts_grid_cells() -> None:
    cov = Coverage(columns=(0, 1), low=0.0, high=1.0, cells=2)
    assert cov(np.zeros((0, 2))) == 0.0
    assert cov(np.array([[0.1, 0.1], [0.2, 0.3]])) == 0.25
    assert cov(np.array([[0.1, 0.1], [0.9, 0.9], [0.1, 0.9], [1.0, 0.0]])) == 1.0


@pytest.mark.usefixtures("one_thread")
def test_a_third_party_env_learns_through_pixel_goal(tmp_path: Path) -> None:
    """A `module:id` env without our kwargs, goals or info["state"]: PixelGoal gives it
    pixels, and exploration never asks it for a goal."""
    from envs.build import EnvBuild
    from tests.helpers import foreign_env

    build = EnvBuild.from_spec(
        f"tests.helpers.foreign_env:{foreign_env.ENV_ID}",
        wrapper_kwargs=foreign_env.WRAPPER_KWARGS,
    )
    out = tmp_path / "run"
    learn(
        build,
        120,
        out=out,
        steps_per_round=60,
        train_steps_per_round=2,
        preset="test",
        n_envs=2,
        explore=ExploreConfig(pool=64, go_steps=5, random_steps=5),
        progress_bar=False,
        device="cpu",
    )
    rows = read_log(out)
    assert [r["policy"] for r in rows] == ["random", "frontier"]
    assert all(r["coverage"] == "" for r in rows)  # no known position grid
    meta = json.loads((out / "data/round-001/meta.json").read_text())
    assert meta["env_build"]["module"] == "tests.helpers.foreign_env"


@pytest.mark.usefixtures("one_thread")
def test_a_given_dataset_replaces_the_random_first_round(tworoom_data, tmp_path: Path) -> None:
    out = tmp_path / "run"
    _learn(out, 2 * EPISODE, data=tworoom_data)
    rows = read_log(out)
    assert [(r["policy"], int(r["env_steps"])) for r in rows] == [("data", 0), ("frontier", 200)]
    assert not (out / "data/round-000").exists()  # the given data is read, not copied
