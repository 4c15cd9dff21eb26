"""Dataset tools and big-data training: info, verify, corrupt files, RAM budget, Minari."""

from __future__ import annotations

import json
import tracemalloc
import warnings
from pathlib import Path

import numpy as np
import pytest

from lewm_agent.cli import main as lewm
from lewm_agent.data import (
    DatasetError,
    dataset_info,
    export_minari,
    load_dataset,
    repack_dataset,
    verify_dataset,
)
from lewm_agent.train import train
from tests.helpers import quick_train
from tests.helpers.synthetic import moving_square_dataset

EPISODES, STEPS, SIZE = 10, 40, 32


@pytest.fixture()
def data(tmp_path: Path) -> Path:
    moving_square_dataset(tmp_path / "data", episodes=EPISODES, steps=STEPS, size=SIZE)
    return tmp_path / "data"


def _corrupt(root: Path) -> tuple[str, str]:
    """Truncate one episode file and flip a byte in the middle of another."""
    files = sorted((root / "episodes").glob("*.npz"))
    truncated, flipped = files[2], files[5]
    truncated.write_bytes(truncated.read_bytes()[: truncated.stat().st_size // 2])
    raw = bytearray(flipped.read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    flipped.write_bytes(bytes(raw))
    return truncated.name, flipped.name


def test_info_counts_and_sizes(data: Path, capsys) -> None:
    info = dataset_info(data)
    assert info["num_episodes"] == EPISODES and info["num_steps"] == EPISODES * STEPS
    assert info["pixel_bytes"] == EPISODES * (STEPS + 1) * SIZE * SIZE * 3
    assert info["compressed_files"] == EPISODES and not info["mmap_ok"]
    assert info["episode_length"] == {"min": STEPS, "mean": float(STEPS), "max": STEPS}
    assert lewm(["data", "info", str(data), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["num_steps"] == EPISODES * STEPS
    assert lewm(["data", "info", str(data)]) == 0
    assert f"{EPISODES} episodes" in capsys.readouterr().out


def test_verify_names_corrupt_files_and_exits_nonzero(data: Path, capsys) -> None:
    assert verify_dataset(data).ok
    assert lewm(["data", "verify", str(data)]) == 0
    assert "all OK" in capsys.readouterr().out
    truncated, flipped = _corrupt(data)
    report = verify_dataset(data)
    assert sorted(report.bad) == sorted([truncated, flipped])
    assert report.checked == EPISODES
    assert lewm(["data", "verify", str(data)]) == 1
    out = capsys.readouterr().out
    assert truncated in out and flipped in out and "2 CORRUPT" in out


def test_verify_catches_a_flipped_pixel_in_an_uncompressed_file(tmp_path: Path) -> None:
    """Headers intact, only the CRC-32 of the pixels can tell (what mmap loading skips)."""
    src = tmp_path / "data"
    moving_square_dataset(src, episodes=3, steps=10, size=SIZE)
    flat = repack_dataset(src, tmp_path / "flat", compress=False)
    path = sorted((flat / "episodes").glob("*.npz"))[1]
    raw = bytearray(path.read_bytes())
    raw[2000] ^= 0x01  # inside the pixel array (the first member)
    path.write_bytes(bytes(raw))
    report = verify_dataset(flat)
    assert list(report.bad) == [path.name] and "CRC" in report.bad[path.name]


def test_training_skips_corrupt_files_and_uses_every_other_episode(data: Path) -> None:
    truncated, flipped = _corrupt(data)
    model_cfg, cfg = quick_train(holdout_fraction=0.0)
    with pytest.warns(RuntimeWarning, match="training skips 2 corrupt") as caught:
        result = train(data, model_cfg, cfg, progress=False)
    msgs = " ".join(str(w.message) for w in caught)
    assert truncated in msgs and flipped in msgs
    assert sorted(result.skipped_files) == sorted([truncated, flipped])
    assert result.dataset_meta["num_episodes"] == EPISODES - 2
    assert len(result.log) == 3


def test_repack_round_trip(data: Path, tmp_path: Path) -> None:
    flat = repack_dataset(data, tmp_path / "flat", compress=False)
    assert dataset_info(flat)["mmap_ok"]
    a, b = load_dataset(data), load_dataset(flat, mmap=True)
    assert [len(e) for e in a] == [len(e) for e in b]
    for x, y in zip(a.episodes, b.episodes, strict=True):
        np.testing.assert_array_equal(x.pixels, y.pixels)
        np.testing.assert_array_equal(x.actions, y.actions)


def _peak_traced_bytes(fn) -> tuple[object, int]:
    """Peak bytes allocated through Python/numpy while `fn` runs (torch is not traced)."""
    tracemalloc.start()
    try:
        out = fn()
        return out, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_training_memory_maps_a_dataset_larger_than_the_ram_budget(tmp_path: Path) -> None:
    src = tmp_path / "data"
    moving_square_dataset(src, episodes=8, steps=250, size=SIZE)
    flat = repack_dataset(src, tmp_path / "flat", compress=False)
    pixel_bytes = dataset_info(flat)["pixel_bytes"]  # ~6 MB
    budget_mb = pixel_bytes / 1024 / 1024 / 4  # the frames are 4x the budget
    model_cfg, cfg = quick_train()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        # Untraced warm-up: the first run's lazy imports would dwarf the frames.
        train(flat, model_cfg, cfg, progress=False, ram_budget_mb=1e6)
        in_ram, peak_ram = _peak_traced_bytes(
            lambda: train(flat, model_cfg, cfg, progress=False, ram_budget_mb=1e6)
        )
        mapped, peak_map = _peak_traced_bytes(
            lambda: train(flat, model_cfg, cfg, progress=False, ram_budget_mb=budget_mb)
        )
    assert not in_ram.mmap and mapped.mmap  # type: ignore[attr-defined]
    assert peak_ram >= pixel_bytes  # the measurement sees an in-RAM load...
    assert peak_map < pixel_bytes / 4  # ...and the memory-mapped run stays under budget
    # Same frames, same batches: the same losses whichever way the frames are read.
    assert [r["loss"] for r in mapped.log] == [r["loss"] for r in in_ram.log]  # type: ignore[attr-defined]


def test_compressed_dataset_over_budget_says_how_to_fix(data: Path) -> None:
    model_cfg, cfg = quick_train()
    with pytest.raises(DatasetError, match="repack_dataset"):
        train(data, model_cfg, cfg, progress=False, ram_budget_mb=0.01)


def test_export_minari_round_trip(data: Path, tmp_path: Path, monkeypatch, capsys) -> None:
    minari = pytest.importorskip("minari")
    root = tmp_path / "minari"
    path = export_minari(data, "lewm/square-test-v0", minari_root=root)
    assert path.is_dir()
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(root))
    ds = minari.load_dataset("lewm/square-test-v0")
    assert ds.total_episodes == EPISODES and ds.total_steps == EPISODES * STEPS
    ours = load_dataset(data)
    ep = next(ds.iterate_episodes())
    np.testing.assert_array_equal(ep.observations["pixels"], ours[0].pixels)  # lossless
    np.testing.assert_array_equal(ep.observations["state"], ours[0].states)
    np.testing.assert_array_equal(ep.actions, ours[0].actions)
    assert ep.truncations[-1] and not ep.truncations[:-1].any()
    code = lewm(
        ["data", "export-minari", str(data), "--id", "lewm/cli-v0", "--minari-root", str(root)]
    )
    assert code == 0 and "lewm/cli-v0" in capsys.readouterr().out
