"""One training path: `WorldModelAgent.fit` and `lewm train` call the same `train` and
leave the same files, stats and weights for the same seed."""

from __future__ import annotations

import csv
import json
import warnings
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from lewm_agent import WorldModelAgent
from lewm_agent.cli import main
from lewm_agent.config import get_preset, replace
from lewm_agent.train import train

STEPS, SEED, LOG_EVERY = 12, 3, 5
TRAINING_STATS = {"seconds", "steps", "final", "dataset", "world_size", "resumed_from"}


def _without_seconds(value):
    """A JSON value with every `seconds` and `sha256` entry dropped (they differ by run)."""
    if isinstance(value, dict):
        return {k: _without_seconds(v) for k, v in value.items() if k not in ("seconds", "sha256")}
    if isinstance(value, list):
        return [_without_seconds(v) for v in value]
    return value


def _written(folder: Path) -> dict:
    """What a run left in `folder`, minus what depends on the clock."""
    with open(folder / "train_log.csv", newline="") as f:
        log = [{k: v for k, v in row.items() if k != "seconds"} for row in csv.DictReader(f)]
    (state,) = (folder / "train_state").iterdir()  # the final step's, kept on request
    stats = json.loads((folder / "stats.json").read_text())
    return {
        "training_keys": sorted(stats["training"]),
        "files": sorted(p.name for p in folder.iterdir()),
        "state_files": sorted(p.name for p in state.iterdir()),
        "config": _without_seconds(json.loads((folder / "config.json").read_text())),
        "stats": _without_seconds(stats),
        "state_meta": _without_seconds(json.loads((state / "state.json").read_text())),
        "log": log,
        "weights": load_file(folder / "model.safetensors"),
        "state_weights": load_file(state / "model.safetensors"),
    }


@pytest.fixture(scope="module")
def two_runs(tworoom_data, tmp_path_factory):
    """The same tiny run made by `fit` + `save` and by `lewm train`."""
    root = tmp_path_factory.mktemp("one_path")
    agent = WorldModelAgent.fit(
        tworoom_data,
        preset="test",
        steps=STEPS,
        train_overrides={"seed": SEED, "log_every": LOG_EVERY},
        log_dir=root / "fit",
        progress=False,
        keep_train_state=True,
    )
    agent.save(root / "fit")
    flags = ["--data", str(tworoom_data), "--preset", "test", "--steps", str(STEPS)]
    flags += ["--seed", str(SEED), "--log-every", str(LOG_EVERY), "--keep-train-state"]
    assert main(["train", *flags, "--out", str(root / "cli")]) == 0
    return {name: _written(root / name) for name in ("fit", "cli")}


def test_fit_and_lewm_train_write_the_same_files_and_stats(two_runs):
    fit, cli = two_runs["fit"], two_runs["cli"]
    assert set(fit["training_keys"]) == TRAINING_STATS
    assert fit["stats"]["training"]["world_size"] == 1
    assert fit["stats"]["training"]["resumed_from"] is None
    assert fit["state_meta"]["run"]["preset"] == "test"  # `lewm train --resume` can go on
    for key in ("files", "state_files", "training_keys", "config", "stats", "state_meta", "log"):
        assert cli[key] == fit[key], f"{key} differs from fit's"


def test_fit_and_lewm_train_make_the_same_weights(two_runs):
    fit, cli = two_runs["fit"], two_runs["cli"]
    for key in ("weights", "state_weights"):
        assert cli[key].keys() == fit[key].keys()
        assert all(torch.equal(cli[key][k], fit[key][k]) for k in cli[key]), key


def test_lewm_train_has_one_code_path():
    """No second `lewm train` function chosen by its flags."""
    import lewm_agent.cli.train as command

    assert not hasattr(command, "wants_train_engine")
    assert not hasattr(command, "cmd_train_engine")


def test_training_warnings_name_the_caller(tworoom_data):
    """The collapse watch warns from inside the loop; the warning points at train's caller."""
    p = get_preset("test")
    cfg = replace(p.train, steps=30, seed=SEED, log_every=LOG_EVERY)  # SIGReg fires at step 15
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        train(tworoom_data, p.model, cfg, progress=False)
    collapse = [w for w in caught if "COLLAPSED" in str(w.message)]
    assert collapse, "expected this run's collapse warning"
    assert all(w.filename == __file__ for w in collapse), [w.filename for w in collapse]
