"""eval/learn.py: the per-round protocol score of `lewm learn`, its curve and plot."""

from __future__ import annotations

from pathlib import Path

import pytest

from eval.learn import learn_curve, learn_eval_episodes, plot_learn, protocol_eval_fn
from lewm_agent import WorldModelAgent


@pytest.mark.usefixtures("one_thread")
def test_eval_fn_scores_the_same_pairs_each_call(tiny_agent_dir, tworoom_data) -> None:
    pairs = learn_eval_episodes(tworoom_data, n=2, seed=42)
    again = learn_eval_episodes(tworoom_data, n=2, seed=42)
    assert [(p.episode, p.start_step) for p in pairs] == [(p.episode, p.start_step) for p in again]
    results: list[dict] = []
    fn = protocol_eval_fn(
        "lewm/TwoRoom-v0",
        pairs,
        plan_overrides={"samples": 8, "iterations": 1, "elites": 2},
        results=results,
    )
    agent = WorldModelAgent.load(tiny_agent_dir, device="cpu")
    rate = fn(agent)
    assert 0.0 <= rate <= 1.0
    assert results[0]["episodes"] == 2 and results[0]["success_rate"] == rate
    assert agent.plan_config.samples != 8  # the agent itself keeps its planner


def test_curve_and_plot_from_a_runs_log(tmp_path: Path) -> None:
    run = tmp_path / "run"
    run.mkdir()
    head = "round,env_steps,episodes,round_env_steps,round_episodes,policy,train_loss,"
    head += "pred_loss,coverage,round_coverage,success,act_seconds,train_seconds,eval_seconds"
    rows = [
        "0,100,1,100,1,random,0.5,0.1,0.2,0.2,0.5,1,1,1",
        "1,200,2,100,1,frontier,0.4,0.1,0.3,0.2,1,1,1,1",
    ]
    (run / "learn_log.csv").write_text("\n".join([head, *rows]) + "\n")
    evals = [{"successes": 1, "episodes": 2, "mean_steps": 30.0}, {"successes": 2, "episodes": 2}]
    curve = learn_curve(run, evals)
    assert [p["env_steps"] for p in curve] == [100, 200]
    assert curve[1]["success_rate"] == 1.0 and curve[1]["successes"] == 2
    assert curve[0]["ci95"][0] < 0.5 < curve[0]["ci95"][1]
    ref = {"label": "random data", "env_steps": 200, "success_rate": 0.0, "ci95": [0.0, 0.6]}
    png = plot_learn({"curves": {"learn": curve}, "references": [ref]}, tmp_path / "c.png")
    assert png.read_bytes()[:4] == b"\x89PNG"


def test_sb3_points_come_from_a_suite_json_and_are_plotted(tmp_path) -> None:
    from eval.learn import sb3_points

    suite = {
        "source": "lewm suite --envs tworoom",
        "results": {
            "ppo": {"successes": 41, "episodes": 50, "train_env_steps": 100352},
            "sac": {"successes": 24, "episodes": 50, "train_env_steps": 10000},
            "gcbc": {"successes": 49, "episodes": 50, "train_env_steps": 90000},
            "random": {"successes": 8, "episodes": 50, "train_env_steps": 0},
        },
    }
    points = sb3_points(suite)
    assert [p["label"] for p in points] == ["PPO (reward, suite)", "SAC (reward, suite)"]
    assert points[0]["env_steps"] == 100352 and points[0]["success_rate"] == 0.82
    assert points[1]["ci95"][0] < 0.48 < points[1]["ci95"][1]
    curve = [
        {"env_steps": 5000, "success_rate": 0.5, "ci95": [0.4, 0.6], "coverage": None},
    ]
    png = plot_learn({"curves": {"learn": curve}, "sb3": points}, tmp_path / "s.png")
    assert png.stat().st_size > 1000
