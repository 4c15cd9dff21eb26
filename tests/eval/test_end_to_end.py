"""Slow: the README's pipeline through the `lewm` commands, trained until it solves Two-Room.

`lewm collect` 500 scripted Two-Room episodes at 32 px -> `lewm train` (the `test`
preset with history 1, batch 64, 2000 steps, and the `cpu` preset's planner:
CEM 300 x 10, coloured noise) -> `lewm eval` on 12 held-out protocol episodes next
to a random agent. Each command runs as its own process, as a user runs it.

Training takes a minute or so on 2 CPU cores. The bar, 9/12 and 5 more than random,
sits below what this recipe solves over seeds 0-2 and above what a run trained a
third as long solves, so it fails for such a run, a planner that ignores the goal,
or a broken model.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
EPISODES = 12
MIN_SUCCESSES = 9
MIN_MARGIN_OVER_RANDOM = 5


def lewm(*argv: str, cwd: Path, timeout: float) -> str:
    """`lewm ARGV` in a fresh process (this checkout's code, one torch thread)."""
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
        "OMP_NUM_THREADS": "1",
        "SDL_VIDEODRIVER": "dummy",
        "SDL_AUDIODRIVER": "dummy",
    }
    proc = subprocess.run(
        [sys.executable, "-m", "lewm_agent.cli", *argv],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert proc.returncode == 0, (argv, proc.stdout[-3000:], proc.stderr[-3000:])
    return proc.stdout


def test_collect_train_eval_reaches_the_two_room_success_bar(tmp_path: Path) -> None:
    # fmt: off
    lewm("collect", "--env", "lewm/TwoRoom-v0", "--policy", "scripted", "--episodes", "500",
         "--workers", "1", "--image-size", "32", "--seed", "0", "--out", "data",
         cwd=tmp_path, timeout=300)
    lewm("train", "--data", "data", "--out", "run", "--preset", "test", "--steps", "2000",
         "--batch-size", "64", "--model-history", "1", "--threads", "1", "--seed", "0",
         "--plan-samples", "300", "--plan-iterations", "10", "--plan-elites", "30",
         "--plan-noise-beta", "2.0",
         cwd=tmp_path, timeout=600)
    out = lewm("eval", "--agent", "run", "--data", "data", "--episodes", str(EPISODES),
               "--random", "--out", "eval", cwd=tmp_path, timeout=300)
    # fmt: on

    config = json.loads((tmp_path / "run" / "config.json").read_text())
    assert config["train"]["steps"] == 2000 and config["plan"]["samples"] == 300
    results = json.loads((tmp_path / "eval" / "results.json").read_text())
    lewm_r, random_r = results["lewm"], results["random"]
    assert lewm_r["episodes"] == random_r["episodes"] == EPISODES
    report = f"lewm {lewm_r['successes']}/{EPISODES}, random {random_r['successes']}/{EPISODES}"
    assert lewm_r["successes"] >= MIN_SUCCESSES, report + "\n" + out
    assert lewm_r["successes"] >= random_r["successes"] + MIN_MARGIN_OVER_RANDOM, report
    assert lewm_r["mean_steps"] < random_r["mean_steps"], report
