"""Dataset format: writer/reader round trip, corruption handling, split, normalizer, sampler."""

from __future__ import annotations

import json
import os
import warnings
from pathlib import Path

import numpy as np
import pytest

from lewm_agent.data import (
    ActionNormalizer,
    DatasetError,
    Episode,
    EpisodeWriter,
    WindowSampler,
    load_dataset,
)

SIZE = 8  # tiny frames keep these tests fast
A = 2
S = 3


# Wide enough for the synthetic actions' codes (+-(1000 * ep + t)): a reader refuses
# actions outside the bounds in meta.json.
BOUND = 1e6


def make_writer(root: Path, **kwargs) -> EpisodeWriter:
    return EpisodeWriter(
        root,
        env_id="test/Env-v0",
        image_size=SIZE,
        action_low=[-BOUND] * A,
        action_high=[BOUND] * A,
        state_dim=S,
        collector="pytest",
        **kwargs,
    )


def synthetic_episode(ep: int, length: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Step index and episode id encoded in every array, to check sampling offsets.

    pixels[t] = t (channel 0) and ep (channel 1); actions[t] = (1000*ep + t, -(1000*ep + t));
    states[t] = (ep, t, 0).
    """
    t = np.arange(length + 1)
    pixels = np.zeros((length + 1, SIZE, SIZE, 3), np.uint8)  # (T+1, H, W, 3)
    pixels[..., 0] = t[:, None, None]
    pixels[..., 1] = ep
    code = 1000.0 * ep + np.arange(length)
    actions = np.stack([code, -code], axis=1).astype(np.float32)  # (T, A)
    states = np.stack([np.full(length + 1, ep), t, np.zeros(length + 1)], 1).astype(np.float32)
    return pixels, actions, states


def write_dataset(root: Path, lengths: list[int], **kwargs) -> EpisodeWriter:
    w = make_writer(root, **kwargs)
    for ep, n in enumerate(lengths):
        w.write(*synthetic_episode(ep, n), terminated=ep % 2 == 0, truncated=ep % 2 == 1)
    return w


@pytest.mark.parametrize("compress", [True, False])
def test_round_trip(tmp_path: Path, compress: bool) -> None:
    root = tmp_path / "ds"
    write_dataset(root, [5, 7, 3], compress=compress).close()  # close: meta.json complete
    ds = load_dataset(root)
    assert len(ds) == 3 and ds.num_steps == 15 and ds.action_dim == A
    assert [e.name for e in ds.episodes] == ["000000.npz", "000001.npz", "000002.npz"]
    for ep, (e, n) in enumerate(zip(ds.episodes, [5, 7, 3], strict=True)):
        assert isinstance(e, Episode)
        px, act, st = synthetic_episode(ep, n)
        np.testing.assert_array_equal(e.pixels, px)
        np.testing.assert_array_equal(e.actions, act)
        np.testing.assert_array_equal(e.states, st)
        assert e.actions.dtype == np.float32 and e.states.dtype == np.float32
        assert e.terminated == (ep % 2 == 0) and e.truncated == (ep % 2 == 1)
    meta = json.loads((root / "meta.json").read_text())
    assert meta["format_version"] == 1
    assert meta["env_id"] == "test/Env-v0" and meta["image_size"] == SIZE
    assert meta["action_dim"] == A and meta["state_dim"] == S
    assert meta["action_low"] == [-BOUND, -BOUND] and meta["frameskip"] == 5
    assert meta["num_episodes"] == 3 and meta["num_steps"] == 15
    assert [e["length"] for e in meta["episodes"]] == [5, 7, 3]
    # No temp files left behind.
    assert sorted(os.listdir(root / "episodes")) == ["000000.npz", "000001.npz", "000002.npz"]


def test_mmap_loads_uncompressed_and_rejects_compressed(tmp_path: Path) -> None:
    write_dataset(tmp_path / "raw", [6, 4], compress=False)
    ds = load_dataset(tmp_path / "raw", mmap=True)
    assert isinstance(ds.episodes[0].pixels, np.memmap)
    np.testing.assert_array_equal(ds.episodes[1].pixels, synthetic_episode(1, 4)[0])
    sampler = WindowSampler(ds, num_frames=2, frameskip=2, seed=0)
    pixels, actions = sampler.sample(5)
    assert pixels.shape == (5, 2, SIZE, SIZE, 3) and actions.shape == (5, 2, 2 * A)
    write_dataset(tmp_path / "zip", [3])
    with pytest.raises(DatasetError, match="compress"):
        load_dataset(tmp_path / "zip", mmap=True)


def test_prefixes_and_append(tmp_path: Path) -> None:
    root = tmp_path / "ds"
    w0, w1 = make_writer(root, prefix="w0-"), make_writer(root, prefix="w1-")
    w0.write(*synthetic_episode(0, 2), True, False)
    w1.write(*synthetic_episode(1, 2), True, False)
    w0.write(*synthetic_episode(2, 2), True, False)
    # A new writer (e.g. a second collection run) continues after the existing files.
    path = make_writer(root, prefix="w0-").write(*synthetic_episode(3, 2), False, True)
    assert path.name == "w0-000002.npz"
    ds = load_dataset(root)
    assert [e.name for e in ds] == [
        "w0-000000.npz",
        "w0-000001.npz",
        "w0-000002.npz",
        "w1-000000.npz",
    ]
    assert ds.meta["num_episodes"] == 4
    # Incompatible writer into the same folder is refused.
    with pytest.raises(DatasetError, match="image_size"):
        EpisodeWriter(
            root,
            env_id="test/Env-v0",
            image_size=16,
            action_low=[-1, -1],
            action_high=[1, 1],
            state_dim=S,
        )


@pytest.mark.parametrize(
    "bad",
    [
        "pixels_dtype",
        "pixels_len",
        "actions_dim",
        "states_len",
        "empty",
        "nan",
    ],
)
def test_writer_validates(tmp_path: Path, bad: str) -> None:
    w = make_writer(tmp_path / "ds")
    px, act, st = synthetic_episode(0, 4)
    if bad == "pixels_dtype":
        px = px.astype(np.float32)
    elif bad == "pixels_len":
        px = px[:-1]
    elif bad == "actions_dim":
        act = act[:, :1]
    elif bad == "states_len":
        st = st[:-1]
    elif bad == "empty":
        px, act, st = px[:1], act[:0], st[:1]
    elif bad == "nan":
        act[1, 0] = np.nan
    with pytest.raises(ValueError):
        w.write(px, act, st, True, False)
    assert list((tmp_path / "ds" / "episodes").iterdir()) == []


def test_missing_folder_and_meta(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="does not exist"):
        load_dataset(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetError, match="meta.json"):
        load_dataset(tmp_path / "empty")
    make_writer(tmp_path / "noeps")
    with pytest.raises(DatasetError, match="no readable episodes"):
        load_dataset(tmp_path / "noeps")


@pytest.mark.parametrize("damage", ["truncate", "garbage", "empty_file"])
def test_corrupt_file_named_and_skippable(tmp_path: Path, damage: str) -> None:
    root = tmp_path / "ds"
    write_dataset(root, [4, 5, 6])
    victim = root / "episodes" / "000001.npz"
    data = victim.read_bytes()
    if damage == "truncate":
        victim.write_bytes(data[: len(data) // 2])
    elif damage == "garbage":
        victim.write_bytes(data[:100] + bytes(len(data) - 100))
    else:
        victim.write_bytes(b"")
    with pytest.raises(DatasetError) as exc:
        load_dataset(root)
    msg = str(exc.value)
    assert "000001.npz" in msg and "skip_corrupt=True" in msg and "delete" in msg
    with pytest.warns(RuntimeWarning, match="000001.npz"):
        ds = load_dataset(root, skip_corrupt=True)
    assert [e.name for e in ds] == ["000000.npz", "000002.npz"]
    np.testing.assert_array_equal(ds.episodes[1].pixels, synthetic_episode(2, 6)[0])
    assert ds.meta["num_episodes"] == 2 and ds.num_steps == 10


def test_shape_mismatch_inside_episode_raises(tmp_path: Path) -> None:
    root = tmp_path / "ds"
    write_dataset(root, [4, 4])
    px, act, st = synthetic_episode(1, 4)
    np.savez(root / "episodes" / "000001.npz", pixels=px, actions=act, states=st[:-1],
             terminated=np.array(True), truncated=np.array(False))  # fmt: skip
    with pytest.raises(DatasetError, match="000001.npz.*states"):
        load_dataset(root)
    with pytest.warns(RuntimeWarning):
        assert len(load_dataset(root, skip_corrupt=True)) == 1


def test_temp_files_ignored(tmp_path: Path) -> None:
    root = tmp_path / "ds"
    write_dataset(root, [3])
    # A crash mid-write leaves a hidden partial temp file: never read.
    (root / "episodes" / ".tmp-w0-abc.part").write_bytes(b"PK\x03\x04 half a file")
    (root / "episodes" / ".tmp-x.npz").write_bytes(b"junk")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ds = load_dataset(root)
    assert [e.name for e in ds] == ["000000.npz"]


def test_folder_listing_is_the_truth(tmp_path: Path) -> None:
    root = tmp_path / "ds"
    write_dataset(root, [3, 4, 5])
    (root / "episodes" / "000001.npz").unlink()  # e.g. the user deleted a corrupt file
    ds = load_dataset(root)
    assert [e.name for e in ds] == ["000000.npz", "000002.npz"]
    assert ds.meta["num_steps"] == 8


def test_split(tmp_path: Path) -> None:
    root = tmp_path / "ds"
    write_dataset(root, [3] * 10)
    ds = load_dataset(root)
    train, held = ds.split(0.2)
    assert [e.name for e in held] == ["000008.npz", "000009.npz"]
    assert len(train) == 8 and train.episodes[0].name == "000000.npz"
    train2, held2 = ds.split(0.2)
    assert [e.name for e in held2] == [e.name for e in held]  # deterministic
    _, tiny = ds.split(0.01)
    assert len(tiny) == 1  # at least one held out
    big_train, _ = ds.split(0.99)
    assert len(big_train) == 1  # at least one for training
    train0, held0 = ds.split(0.0)
    assert len(train0) == 10 and len(held0) == 0
    # Samplers on the parts draw only from their own episodes.
    p, _ = WindowSampler(held, num_frames=1, frameskip=1, seed=0).sample(50)
    assert set(np.unique(p[:, 0, 0, 0, 1])) <= {8, 9}
    with pytest.raises(ValueError):
        ds.split(1.0)


def test_action_normalizer_round_trip() -> None:
    rng = np.random.default_rng(0)
    acts = rng.normal([0.5, -2.0, 3.0], [0.1, 2.0, 0.0], size=(1000, 3))  # last dim constant
    norm = ActionNormalizer.fit(acts)
    z = norm.normalize(acts)
    np.testing.assert_allclose(z[:, :2].mean(0), 0, atol=1e-5)
    np.testing.assert_allclose(z[:, :2].std(0), 1, atol=1e-4)
    assert norm.std[2] == 1.0  # constant dimension: std floored to 1, not divided by ~0
    np.testing.assert_allclose(norm.denormalize(z), acts, rtol=1e-5, atol=1e-5)
    # Flattened frameskip blocks (..., k*A) use the tiled statistics.
    blocks = acts[:10].reshape(5, 6)
    np.testing.assert_allclose(norm.normalize(blocks), z[:10].reshape(5, 6), rtol=1e-5)
    back = ActionNormalizer.from_dict(json.loads(json.dumps(norm.to_dict())))
    np.testing.assert_array_equal(back.mean, norm.mean)
    np.testing.assert_array_equal(back.std, norm.std)
    torch = pytest.importorskip("torch")
    t = torch.tensor(acts, dtype=torch.float32)
    zt = norm.normalize(t)
    assert isinstance(zt, torch.Tensor) and zt.dtype == torch.float32
    np.testing.assert_allclose(zt.numpy(), z, rtol=1e-4, atol=1e-4)
    with pytest.raises(ValueError):
        norm.normalize(np.zeros((4, 4)))
    with pytest.raises(ValueError):
        ActionNormalizer.fit(np.array([[np.nan, 0, 0]]))


@pytest.mark.parametrize("mmap", [False, True])
def test_sampler_offsets(tmp_path: Path, mmap: bool) -> None:
    lengths = [30, 9, 12, 50]  # episode 1 is too short for a window of 2 x 5 = 10 steps
    write_dataset(tmp_path / "ds", lengths, compress=not mmap)
    ds = load_dataset(tmp_path / "ds", mmap=mmap)
    nf, fs = 2, 5
    sampler = WindowSampler(ds, num_frames=nf, frameskip=fs, seed=0)
    assert sampler.num_windows == sum(max(n - nf * fs + 1, 0) for n in lengths)
    pixels, actions = sampler.sample(256)
    assert pixels.shape == (256, nf, SIZE, SIZE, 3) and pixels.dtype == np.uint8
    assert actions.shape == (256, nf, fs * A) and actions.dtype == np.float32
    ep = pixels[:, 0, 0, 0, 1].astype(int)  # (B,)
    t0 = pixels[:, 0, 0, 0, 0].astype(int)  # (B,)
    assert 1 not in set(ep.tolist())
    assert set(ep.tolist()) == {0, 2, 3}  # all valid episodes get sampled
    for b in range(256):
        n = lengths[ep[b]]
        assert t0[b] + nf * fs <= n  # only starts whose action blocks all fit
        for k in range(nf):
            assert pixels[b, k, 0, 0, 0] == t0[b] + k * fs  # frame k = pixels[t + k*fs]
            assert pixels[b, k, 0, 0, 1] == ep[b]
            steps = t0[b] + k * fs + np.arange(fs)
            code = 1000.0 * ep[b] + steps
            expected = np.stack([code, -code], 1).reshape(-1)  # block k flattened (fs*A,)
            np.testing.assert_array_equal(actions[b, k], expected)
    # Explicit indices and states agree with the episode arrays.
    e_idx, starts = sampler.all_indices()
    assert len(e_idx) == sampler.num_windows
    st = sampler.gather_states(e_idx, starts)  # (N, nf, S)
    np.testing.assert_array_equal(st[:, :, 0], np.repeat(e_idx[:, None], nf, 1))
    np.testing.assert_array_equal(st[:, :, 1], starts[:, None] + fs * np.arange(nf))
    # Same seed -> same batches.
    again = WindowSampler(ds, num_frames=nf, frameskip=fs, seed=0).sample(256)
    np.testing.assert_array_equal(again[0], pixels)


def test_sampler_uniform_over_windows(tmp_path: Path) -> None:
    write_dataset(tmp_path / "ds", [10, 40])  # 6 vs 36 windows of 1 x 5 steps
    sampler = WindowSampler(load_dataset(tmp_path / "ds"), num_frames=1, frameskip=5, seed=1)
    ep, _ = sampler.sample_indices(20000)
    assert abs((ep == 0).mean() - 6 / 42) < 0.015


def test_sampler_no_valid_window(tmp_path: Path) -> None:
    write_dataset(tmp_path / "ds", [3, 4])
    with pytest.raises(DatasetError, match="long enough"):
        WindowSampler(load_dataset(tmp_path / "ds"), num_frames=4, frameskip=5, seed=0)


def test_head_takes_the_first_episodes_and_shares_frames(tworoom_data):
    from lewm_agent.data import load_dataset

    data = load_dataset(tworoom_data)
    first = data.head(3)
    assert [e.name for e in first.episodes] == [e.name for e in data.episodes[:3]]
    assert first.frames is data.frames
    np.testing.assert_array_equal(first[2].pixels, data[2].pixels)
    assert len(data.head(10_000)) == len(data)
    with pytest.raises(ValueError, match="n must be"):
        data.head(0)
