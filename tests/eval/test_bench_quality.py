"""`lewm bench planning-quality` on a tiny agent: valid JSON rows and a PNG."""

import json

import pytest

from lewm_agent import WorldModelAgent


@pytest.fixture(scope="module")
def quality_agent_dir(tiny_agent_dir, tworoom_data, tmp_path_factory):
    agent = WorldModelAgent.load(tiny_agent_dir)
    agent.fit_policy_head(tworoom_data, progress=False, steps=30, hidden=32, batch_size=32)
    return agent.save(tmp_path_factory.mktemp("quality") / "agent")


def test_planning_quality_writes_json_and_png(quality_agent_dir, tworoom_data, tmp_path):
    from eval.bench_quality import SETTINGS
    from lewm_agent.cli import main as lewm

    def main(argv: list[str]) -> int:
        return lewm(["bench", *argv])

    out = tmp_path / "q.json"
    names = ["cem-150x5", "cem-warm-300x2-every-block", "cem-prior-60x5", "policy"]
    code = main(
        [
            "planning-quality",
            "--agent",
            str(quality_agent_dir),
            "--data",
            str(tworoom_data),
            "--episodes",
            "2",
            "--budget",
            "8",
            "--planners",
            ",".join(names),
            "--cap",
            "cem-warm-300x2-every-block=1",
            "--json",
            str(out),
            "--no-progress",
            "--timing-repeats",
            "1",
            "--timing",
            "cem-150x5,policy",
        ]
    )
    assert code == 0
    report = json.loads(out.read_text())
    assert report["env"] == "lewm/TwoRoom-v0" and report["episodes"] == 2
    rows = {r["planner"]: r for r in report["rows"]}
    assert list(rows) == names
    for r in rows.values():
        for key in ("success_rate", "seconds_per_decision", "rollouts_per_decision"):
            assert key in r
        assert 0.0 <= r["success_rate"] <= 1.0 and r["decisions"] >= 1
        assert r["seconds_per_decision"] > 0 and r["ms_per_action"] > 0
    assert rows["cem-warm-300x2-every-block"]["episodes"] == 1  # --cap
    for name in ("cem-150x5", "policy"):  # interleaved timing of the named rows only
        assert rows[name]["timed_seconds_per_decision"] > 0
        assert rows[name]["timed_ms_per_action"] > 0
    assert "timed_seconds_per_decision" not in rows["cem-prior-60x5"]
    assert rows["cem-150x5"]["rollouts_per_decision"] == 150 * 5
    assert rows["cem-prior-60x5"]["rollouts_per_decision"] == 60 * 5 + 1
    assert rows["policy"]["rollouts_per_decision"] == 0
    # Warm replans after every block: the first plan is cold (10 iterations), then 2.
    warm = rows["cem-warm-300x2-every-block"]
    assert 300 * 2 <= warm["rollouts_per_decision"] < 300 * 10
    assert SETTINGS["cem-prior-150x5"]["samples"] * 5 * 4 == 3000  # 1/4 of 300 x 10
    png = out.with_suffix(".png")
    assert png.is_file() and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert report["complete"] is True
    # --resume reuses the finished rows (same agent, data, settings and episodes).
    from eval.bench_quality import planning_quality

    again = planning_quality(
        quality_agent_dir,
        tworoom_data,
        episodes=2,
        budget=8,
        planners=names,
        episodes_per_planner={"cem-warm-300x2-every-block": 1},
        progress=False,
        json_path=out,
        resume=True,
    )
    assert [r["wall_seconds"] for r in again["rows"]] == [r["wall_seconds"] for r in rows.values()]


def test_planning_quality_skips_policy_rows_without_a_head(tiny_agent_dir, tworoom_data):
    from eval.bench_quality import planning_quality

    report = planning_quality(
        tiny_agent_dir,
        tworoom_data,
        episodes=1,
        budget=3,
        planners=["cem-150x5", "policy"],
        progress=False,
    )
    assert [r["planner"] for r in report["rows"]] == ["cem-150x5"]
    assert report["skipped"] == ["policy"]


def test_rows_played_in_worker_processes_equal_the_serial_rows(quality_agent_dir, tworoom_data):
    """`--workers 2`: the same rows (each agent is loaded fresh with its own seeded
    planner either way), reported in the --planners order, not the finishing order."""
    from eval.bench_quality import planning_quality

    names = ["policy", "cem-30x2", "cem-prior-30x2"]  # cheapest first: workers reorder
    kw = dict(episodes=2, budget=6, planners=names, progress=False)
    serial = planning_quality(quality_agent_dir, tworoom_data, **kw)
    pooled = planning_quality(quality_agent_dir, tworoom_data, workers=2, threads=1, **kw)
    assert [r["planner"] for r in pooled["rows"]] == names and pooled["workers"] == 2
    keys = ("successes", "episodes", "env_steps", "rollouts_per_decision", "decisions")
    for a, b in zip(serial["rows"], pooled["rows"], strict=True):
        assert {k: a[k] for k in keys} == {k: b[k] for k in keys}, a["planner"]


def test_workers_must_be_positive(quality_agent_dir, tworoom_data, capsys):
    from lewm_agent.cli import main

    argv = ["bench", "planning-quality", "--agent", str(quality_agent_dir)]
    argv += ["--data", str(tworoom_data), "--workers", "0"]
    with pytest.raises(SystemExit, match="--workers must be >= 1"):
        main(argv)
