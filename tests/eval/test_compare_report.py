"""The comparison report: training columns, the chart, the CLI, state agents on the same episodes."""

from __future__ import annotations

import json

import numpy as np
import pytest

import agents
import envs  # noqa: F401
from eval.compare import compare, env_slug
from eval.compare_report import CHART_FILE, bar_chart, markdown_table, results_dict, write_results
from eval.protocol import agent_env_kwargs, run_protocol, sample_episodes
from lewm_agent import load_dataset
from lewm_agent.cli import main as lewm
from tests.helpers.agents import DoNothing, PixelOracle


def main(argv: list[str]) -> int:
    """`lewm compare ARGV`, in process."""
    return lewm(["compare", *argv])


ENV = "lewm/TwoRoom-v0"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _episodes(tworoom_data, n):
    _, heldout = load_dataset(tworoom_data).split(0.2)
    return sample_episodes(heldout, n=n, seed=42)


def test_report_orders_oracle_above_do_nothing_and_writes_three_files(tworoom_data, tmp_path):
    res = compare(
        ENV,
        {"nothing": DoNothing(), "oracle": PixelOracle()},
        _episodes(tworoom_data, 10),
        env_kwargs={"image_size": 32},
        progress=False,
    )
    extra = {
        "oracle": {"train_seconds": 0.0, "train_env_steps": 0, "reward_used": False},
        "nothing": {"train_seconds": 300.0, "train_env_steps": 12345, "reward_used": True},
    }
    table = results_dict(res, extra)
    assert table["oracle"]["success_rate"] > table["nothing"]["success_rate"]
    assert table["oracle"]["success_ci95"][0] > table["nothing"]["success_ci95"][0]
    json_path, md_path = write_results(table, tmp_path, header="# test")
    png = tmp_path / CHART_FILE
    assert png.read_bytes()[:8] == PNG_MAGIC and png.stat().st_size > 5_000
    loaded = json.loads(json_path.read_text())
    assert (
        loaded["nothing"]["train_env_steps"] == 12345 and loaded["oracle"]["reward_used"] is False
    )
    md = md_path.read_text()
    assert "train wall time | env steps for training | reward used" in md
    assert "| 5.0 min | 12,345 | yes |" in md and CHART_FILE in md
    rows = [
        line
        for line in md.splitlines()
        if line.startswith("| oracle") or line.startswith("| nothing")
    ]
    assert len(rows) == 2 and all(r.count("|") == 11 for r in rows)


def test_markdown_without_training_fields_keeps_the_old_columns():
    r = {
        "a": {
            "success_rate": 0.5,
            "successes": 1,
            "episodes": 2,
            "success_ci95": [0.1, 0.9],
            "mean_steps": 3.0,
            "mean_steps_to_success": None,
            "mean_return": -1.0,
            "decision_latency_ms": 0.1,
        }
    }
    md = markdown_table(r)
    assert "reward used" not in md and md.splitlines()[2].count("|") == 8


def test_bar_chart_rejects_empty(tmp_path):
    with pytest.raises(ValueError):
        bar_chart({}, tmp_path / "x.png")


def test_env_slug():
    assert env_slug("lewm/TwoRoom-v0") == "tworoom"
    assert env_slug("lewm/PushT-v0") == "pusht"
    assert env_slug("Reacher-v5") == "reacher"


class _StateSpy:
    """Records what it is fed; acts like the deterministic heuristic."""

    obs_mode = "state"

    def __init__(self):
        self.inner = agents.make("scripted", env_id=ENV, seed=0)
        self.first = None

    def predict(self, obs, state=None, episode_start=None, deterministic=True):
        if self.first is None:
            self.first = {k: np.array(v) for k, v in obs.items()}
        return self.inner.predict(obs, state, episode_start, deterministic)


def test_state_agents_play_the_same_episodes_as_pixel_agents(tworoom_data):
    eps = _episodes(tworoom_data, 5)
    spy = _StateSpy()
    assert agent_env_kwargs(spy) == {"obs_mode": "state"}
    assert agent_env_kwargs(PixelOracle()) == {}
    res, frames = run_protocol(
        ENV, spy, eps, env_kwargs={"image_size": 32}, progress=False, record=True
    )
    # It saw the GoalEnv state of exactly the protocol's start and goal states.
    np.testing.assert_array_equal(spy.first["observation"], np.stack([e.start_state for e in eps]))
    np.testing.assert_array_equal(spy.first["desired_goal"], np.stack([e.goal_state for e in eps]))
    # Its recorded frames are the same renderings a pixel agent starts from.
    _, pix_frames = run_protocol(
        ENV, DoNothing(), eps, budget=1, env_kwargs={"image_size": 32}, progress=False, record=True
    )
    for f, g in zip(frames, pix_frames, strict=True):
        np.testing.assert_array_equal(f[0], g[0])
    assert res.successes == 5  # the deterministic heuristic solves 25-step goals


def test_bad_obs_mode_is_a_clear_error(tworoom_data):
    class Bad:
        obs_mode = "voxels"

        def predict(self, *a, **k):  # pragma: no cover - never reached
            raise AssertionError

    with pytest.raises(ValueError, match="obs_mode"):
        run_protocol(ENV, Bad(), _episodes(tworoom_data, 1), progress=False)


def test_cli_end_to_end_without_training(tworoom_data, tmp_path, capsys):
    out = tmp_path / "cmp"
    rc = main(
        [
            "--env", ENV,
            "--agents", "random,scripted",
            "--data", str(tworoom_data),
            "--episodes", "6",
            "--seed", "42",
            "--out", str(out),
            "--no-progress",
        ]
    )  # fmt: skip
    assert rc == 0
    results = json.loads((out / "results.json").read_text())
    assert list(results) == ["random", "scripted"]
    assert results["scripted"]["success_rate"] >= results["random"]["success_rate"]
    assert results["random"]["episodes"] == 6 and results["random"]["reward_used"] is False
    assert (out / CHART_FILE).stat().st_size > 5_000
    assert "| scripted |" in capsys.readouterr().out
    with pytest.raises(FileNotFoundError, match="no saved ppo"):
        main(["--env", ENV, "--agents", "ppo", "--data", str(tworoom_data), "--no-train",
              "--baselines", str(tmp_path / "none"), "--out", str(out), "--no-progress"])  # fmt: skip


def test_agent_videos_keep_every_frame_of_the_episode(tworoom_data, tmp_path):
    from eval.video import agent_videos, count_frames

    eps = _episodes(tworoom_data, 2)
    spy = agents.make("scripted", env_id=ENV, seed=0)  # a state agent, shown via render()
    single, grid = agent_videos(
        ENV, spy, "scripted", eps, tmp_path, env_kwargs={"image_size": 32}, budget=50
    )
    res, _ = run_protocol(ENV, agents.make("scripted", env_id=ENV, seed=0), eps,
                          env_kwargs={"image_size": 32}, progress=False)  # fmt: skip
    steps = [e["steps"] for e in res.per_episode]
    assert single.name == "tworoom_scripted.mp4" and count_frames(single) == steps[0] + 1
    assert count_frames(grid) == max(steps) + 1
