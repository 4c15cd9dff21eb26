"""EpisodeWriter speed features: deflate level, batched meta.json index, re-indexing after a crash."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import threading
import time
import zipfile
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest

import envs  # noqa: F401
from envs.wrappers import RecordEpisodes
from lewm_agent.data import (
    EpisodeWriter,
    dataset_info,
    format_dataset_info,
    load_dataset,
    verify_dataset,
)

SIZE = 16
A, S = 2, 3
ROOT = Path(__file__).resolve().parents[3]
WRITER_ARGS = dict(
    env_id="test/Env-v0",
    image_size=SIZE,
    action_low=[-1.0] * A,
    action_high=[1.0] * A,
    state_dim=S,
    collector="pytest",
)


def make_writer(root: Path, **kwargs) -> EpisodeWriter:
    return EpisodeWriter(root, **WRITER_ARGS, **kwargs)


def episode(seed: int, length: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Random frames (incompressible, so every byte matters) plus actions and states."""
    rng = np.random.default_rng(seed)
    pixels = rng.integers(0, 256, (length + 1, SIZE, SIZE, 3), dtype=np.uint8)  # (T+1, H, W, 3)
    actions = rng.uniform(-1, 1, (length, A)).astype(np.float32)  # (T, A)
    states = rng.normal(size=(length + 1, S)).astype(np.float32)  # (T+1, S)
    return pixels, actions, states


def meta(root: Path) -> dict:
    return json.loads((root / "meta.json").read_text())


def indexed(root: Path) -> dict[str, int]:
    return {e["file"]: e["length"] for e in meta(root)["episodes"]}


# ------------------------------------------------------------------------ compression
@pytest.mark.parametrize("level", [1, 9])
def test_deflate_level_files_load_bit_exact(tmp_path: Path, level: int) -> None:
    root = tmp_path / "ds"
    with make_writer(root, compress_level=level) as w:
        paths = [w.write(*episode(i, n), i == 0, i == 1) for i, n in enumerate([4, 9])]
    with zipfile.ZipFile(paths[0]) as zf:
        assert {i.compress_type for i in zf.infolist()} == {zipfile.ZIP_DEFLATED}
    ds = load_dataset(root)
    for i, (e, n) in enumerate(zip(ds.episodes, [4, 9], strict=True)):
        px, act, st = episode(i, n)
        np.testing.assert_array_equal(e.pixels, px)  # bit-exact
        np.testing.assert_array_equal(e.actions, act)
        np.testing.assert_array_equal(e.states, st)
        assert (e.terminated, e.truncated) == (i == 0, i == 1)
    with np.load(paths[1]) as z:  # a plain numpy .npz
        np.testing.assert_array_equal(z["pixels"], episode(1, 9)[0])
    assert verify_dataset(root).ok


@pytest.mark.parametrize("kwargs", [{"compress": False}, {"compress_level": 0}])
def test_uncompressed_files_are_memory_mapped(tmp_path: Path, kwargs: dict) -> None:
    root = tmp_path / "ds"
    with make_writer(root, **kwargs) as w:
        for i, n in enumerate([3, 5]):
            w.write(*episode(i, n), False, True)
    ds = load_dataset(root, mmap=True)  # finds each member's raw data offset in the zip
    for i, (e, n) in enumerate(zip(ds.episodes, [3, 5], strict=True)):
        assert isinstance(e.pixels, np.memmap)
        np.testing.assert_array_equal(e.pixels, episode(i, n)[0])
    assert dataset_info(root)["mmap_ok"]


@pytest.mark.parametrize("level", [-1, 10, 1.5, True, "1", None])
def test_invalid_level_names_the_fix(tmp_path: Path, level: object) -> None:
    with pytest.raises(
        ValueError, match=r"compress_level must be an int from 0 to 9.*compress=False"
    ):
        make_writer(tmp_path / "ds", compress_level=level)
    with pytest.raises(ValueError, match="index_interval_s"):
        make_writer(tmp_path / "ds", index_interval_s=-1)
    assert not (tmp_path / "ds").exists()  # nothing created for a bad argument


# ------------------------------------------------------------------------ batched index
def test_index_lags_until_close_then_lists_every_episode(tmp_path: Path) -> None:
    root = tmp_path / "ds"
    lengths = [3, 1, 4, 1, 5]
    w = make_writer(root, index_interval_s=3600)
    for i, n in enumerate(lengths):
        w.write(*episode(i, n), False, True)
    assert meta(root)["num_episodes"] == 0  # the index lags ...
    assert len(load_dataset(root)) == 5  # ... but loading lists the folder
    w.close()
    m = meta(root)
    assert [e["length"] for e in m["episodes"]] == lengths
    assert m["num_episodes"] == 5 and m["num_steps"] == sum(lengths)
    w.close()  # idempotent
    assert meta(root) == m
    assert verify_dataset(root).notes == []


def test_index_is_merged_once_the_interval_has_passed(tmp_path: Path) -> None:
    root = tmp_path / "ds"
    w = make_writer(root, index_interval_s=0.2)
    w.write(*episode(0, 2), False, True)
    assert meta(root)["num_episodes"] == 0
    time.sleep(0.25)
    w.write(*episode(1, 2), False, True)  # due: merges both
    assert meta(root)["num_episodes"] == 2
    every = make_writer(tmp_path / "every", index_interval_s=0)  # the old behaviour
    every.write(*episode(0, 2), False, True)
    assert meta(tmp_path / "every")["num_episodes"] == 1


def test_record_episodes_close_flushes_the_index(tmp_path: Path) -> None:
    env = RecordEpisodes(gym.make("lewm/TwoRoom-v0", image_size=16, max_episode_steps=5), tmp_path)
    for ep in range(3):
        env.reset(seed=ep)
        done = False
        while not done:
            *_, term, trunc, _ = env.step(np.zeros(2, np.float32))
            done = term or trunc
    env.close()  # waits for the background write, then merges the index
    assert sorted(indexed(tmp_path).values()) == [5, 5, 5]
    assert meta(tmp_path)["num_episodes"] == 3


def test_two_writers_with_prefixes_end_with_a_complete_index(tmp_path: Path) -> None:
    root = tmp_path / "ds"
    writers = [make_writer(root, prefix=p, index_interval_s=0.01) for p in ("w0-", "w1-")]

    def record(w: EpisodeWriter, k: int) -> None:
        for i in range(6):
            w.write(*episode(10 * k + i, 1 + i), False, True)
        w.close()

    threads = [threading.Thread(target=record, args=(w, k)) for k, w in enumerate(writers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    expected = {f"w{k}-{i:06d}.npz": 1 + i for k in range(2) for i in range(6)}
    assert indexed(root) == expected  # every file once, with its length
    assert len(meta(root)["episodes"]) == 12 and meta(root)["num_steps"] == 2 * 21


_PROCESS_WRITER = textwrap.dedent(
    """
    import os, sys
    import numpy as np
    from lewm_agent.data import EpisodeWriter
    root, prefix, mode = sys.argv[1:4]
    w = EpisodeWriter(root, env_id="test/Env-v0", image_size=4, action_low=[-1, -1],
                      action_high=[1, 1], state_dim=3, prefix=prefix,
                      index_interval_s=0 if mode == "every" else 3600)
    for i in range(4):
        w.write(np.zeros((i + 2, 4, 4, 3), np.uint8), np.zeros((i + 1, 2), np.float32),
                np.zeros((i + 2, 3), np.float32), False, True)
    if mode == "kill":
        os._exit(0)  # like SIGKILL after the writes: no close, no atexit
    # mode "exit": no close(); the interpreter-exit hook merges the index
    """
)


def _run_writers(root: Path, *jobs: tuple[str, str]) -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    procs = [
        subprocess.Popen([sys.executable, "-c", _PROCESS_WRITER, str(root), prefix, mode], env=env)
        for prefix, mode in jobs
    ]
    assert [p.wait(timeout=60) for p in procs] == [0] * len(procs)


def test_processes_sharing_a_folder_and_exit_without_close(tmp_path: Path) -> None:
    root = tmp_path / "ds"
    _run_writers(root, ("a-", "every"), ("b-", "every"), ("c-", "exit"))
    assert indexed(root) == {f"{p}-{i:06d}.npz": i + 1 for p in "abc" for i in range(4)}


def test_next_writer_indexes_files_a_killed_writer_left_unindexed(tmp_path: Path) -> None:
    root = tmp_path / "ds"
    _run_writers(root, ("w0-", "kill"))
    assert len(list((root / "episodes").glob("*.npz"))) == 4
    assert meta(root)["num_episodes"] == 0  # killed before its index merge
    assert len(load_dataset(root)) == 4  # the files themselves are complete
    note = " ".join(verify_dataset(root).notes)
    assert "4 files are not in meta.json's index" in note and "harmless" in note
    assert "next EpisodeWriter" in note
    assert "harmless" in format_dataset_info(dataset_info(root))
    # An unreadable stray file is left out of the index (verify_dataset names it).
    (root / "episodes" / "zz-broken.npz").write_bytes(b"not a zip")
    w = EpisodeWriter(
        root,
        env_id="test/Env-v0",
        image_size=4,
        action_low=[-1, -1],
        action_high=[1, 1],
        state_dim=3,
        prefix="w0-",
    )
    assert [e["file"] for e in w.reindexed] == [f"w0-{i:06d}.npz" for i in range(4)]
    assert indexed(root) == {f"w0-{i:06d}.npz": i + 1 for i in range(4)}
    assert meta(root)["num_steps"] == 10
    report = verify_dataset(root)
    assert list(report.bad) == ["zz-broken.npz"]
    assert [n.split(":")[0] for n in report.notes] == [
        "1 files are not in meta.json's index (zz-broken.npz)"
    ]
