"""`lewm learn`: one tiny round end to end, its success column, its one-line errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from lewm_agent.cli import main as lewm

TINY = ["--preset", "test", "--envs", "2", "--train-steps-per-round", "2", "--threads", "1"]


@pytest.mark.usefixtures("one_thread")
def test_learn_runs_a_round_scored_on_the_eval_data(tworoom_data, tmp_path: Path, capsys) -> None:
    out = tmp_path / "run"
    argv = ["learn", "--env", "lewm/TwoRoom-v0", "--steps", "200", "--out", str(out)]
    argv += ["--steps-per-round", "200", "--eval-data", str(tworoom_data)]
    argv += ["--eval-episodes", "2", "--explore-pool", "64", *TINY]
    assert lewm(argv) == 0
    text = capsys.readouterr().out
    assert "round 0: 200 env steps, 2 episodes (random)" in text
    assert f"wrote {out}/learn_log.csv" in text
    row = (out / "learn_log.csv").read_text().splitlines()[1].split(",")
    assert 0.0 <= float(row[10]) <= 1.0  # the success column


def test_learn_refuses_an_unknown_env_in_one_line(tmp_path: Path, capsys) -> None:
    argv = ["learn", "--env", "lewm/NoSuchEnv-v0", "--steps", "10", "--out", str(tmp_path / "r")]
    assert lewm(argv) == 1
    err = capsys.readouterr().err
    assert err.startswith("lewm: error:") and "NoSuchEnv" in err
    assert not (tmp_path / "r").exists()
