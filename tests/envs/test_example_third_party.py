"""examples/third_party_env.py end to end: gym-pusht collected, trained, evaluated, gym loop.

Slow (about a minute) and skipped when gym-pusht is not installed (it is not a
dependency: `pip install gym-pusht==0.1.8`). Run with `make test-slow`.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow
pytest.importorskip("gym_pusht")

ROOT = Path(__file__).resolve().parents[2]


def test_gym_pusht_example_runs_through_the_cli(tmp_path: Path) -> None:
    argv = ["--out", str(tmp_path), "--episodes", "8", "--eval-episodes", "2"]
    proc = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "third_party_env.py"), *argv],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=900,
        env={**os.environ, "OMP_NUM_THREADS": "1", "SDL_VIDEODRIVER": "dummy"},
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    # The env build went data -> checkpoint, and `lewm eval` rebuilt the env from it.
    build = json.loads((tmp_path / "data" / "meta.json").read_text())["env_build"]
    assert build["module"] == "gym_pusht" and build["id"] == "gym_pusht/PushT-v0"
    assert build["wrappers"][0]["kwargs"]["state_fn"] == "examples.third_party_env:state_fn"
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    assert config["env"]["build"] == build
    results = json.loads((tmp_path / "eval" / "results.json").read_text())
    assert results["lewm"]["episodes"] == results["random"]["episodes"] == 2
    assert "gym loop: {'steps'" in proc.stdout
    # state_fn restores gym-pusht's frame: no round-trip warning from PixelGoal.
    assert "does not restore the frame" not in proc.stderr
