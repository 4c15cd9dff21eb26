"""`lewm compare --lewm zoo:NAME`: a shipped model is compared like a run folder."""

import json

import pytest

from lewm_agent.cli import main as lewm


def test_compare_takes_a_zoo_model(tmp_path):
    out = tmp_path / "cmp"
    argv = ["compare", "--env", "lewm/TwoRoom-v0", "--agents", "lewm,random"]
    argv += ["--lewm", "zoo:tworoom", "--episodes-from", "env", "--episodes", "2"]
    argv += ["--budget", "5", "--out", str(out), "--no-progress"]
    assert lewm(argv) == 0
    results = json.loads((out / "results.json").read_text())
    assert list(results) == ["lewm", "random"] and results["lewm"]["episodes"] == 2


def test_compare_names_a_missing_checkpoint(tmp_path):
    argv = ["compare", "--env", "lewm/TwoRoom-v0", "--agents", "lewm"]
    argv += ["--lewm", str(tmp_path / "nothing"), "--episodes-from", "env", "--episodes", "1"]
    with pytest.raises(SystemExit, match="no LeWM checkpoint at .*nothing"):
        lewm(argv + ["--out", str(tmp_path / "cmp")])
