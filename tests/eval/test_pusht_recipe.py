"""examples/pusht_recipe.sh end to end at a tiny size: collect, train, evaluate; a rerun skips done stages."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "examples" / "pusht_recipe.sh"


@pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")
def test_recipe_runs_end_to_end_and_resumes(tmp_path: Path) -> None:
    lewm = Path(sys.executable).with_name("lewm")
    assert lewm.is_file(), "the venv's lewm console script"
    env = {
        **os.environ,
        "OUT": str(tmp_path / "recipe"),
        "EPISODES": "4",
        "WORKERS": "1",
        "PRESET": "test",
        "IMAGE_SIZE": "32",
        "EVAL_EPISODES": "1",
        "THREADS": "1",
        "DEVICE": "cpu",
        "LEWM": str(lewm),
        "PYTHONPATH": str(ROOT),
    }
    first = subprocess.run(
        ["bash", str(SCRIPT)], env=env, capture_output=True, text=True, timeout=300
    )
    assert first.returncode == 0, first.stdout[-2000:] + first.stderr[-2000:]
    out = tmp_path / "recipe"
    assert len(list((out / "data" / "episodes").glob("*.npz"))) == 4
    assert (out / "run" / "model.safetensors").is_file()
    result = json.loads((out / "eval" / "results.json").read_text())
    assert result["lewm"]["episodes"] == 1
    stages = [
        line.split(":")[0].strip() for line in (out / "wall_times.txt").read_text().splitlines()
    ]
    assert stages == ["collect", "train", "eval"]
    again = subprocess.run(
        ["bash", str(SCRIPT)], env=env, capture_output=True, text=True, timeout=120
    )
    assert again.returncode == 0, again.stderr[-2000:]
    assert "==" not in again.stdout  # every stage's output exists: nothing re-runs
    assert (out / "wall_times.txt").read_text().count("\n") == 3
