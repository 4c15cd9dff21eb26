"""Hostile input: bad input never gives a silent wrong answer.

Each case below was a silent wrong answer or an unreadable failure: damaged or
hand-edited checkpoints, datasets with NaN/huge/forged content, calls to
`predict` that changed the agent before being refused, duplicated data from a
repeated seed, a full disk, tracebacks for expected CLI errors. Fuzzing with
hypothesis checks the same properties on random inputs.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import shutil
import warnings
import zipfile
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from safetensors.torch import load_file, save_file

import envs  # noqa: F401
from lewm_agent import CheckpointError, WorldModelAgent
from lewm_agent.cli import main as lewm
from lewm_agent.config import get_preset
from lewm_agent.data import DatasetError, EpisodeWriter, dataset_info, load_dataset, verify_dataset
from tests.helpers import TEST_IMAGE, quick_train
from tests.helpers.synthetic import square_writer

FUZZ = settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


# ------------------------------------------------------------------------------ helpers
def _copy(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


def _edit_json(folder: Path, name: str, edit) -> None:
    """Replace the JSON in folder/name by edit(obj), and drop config.json's file hashes.

    Without hashes the folder is like a checkpoint saved before they were recorded,
    so the edit reaches the value checks instead of the hash check.
    """
    path = folder / name
    path.write_text(json.dumps(edit(json.loads(path.read_text()))))
    config = json.loads((folder / "config.json").read_text())
    if isinstance(config, dict):
        config.pop("sha256", None)
        (folder / "config.json").write_text(json.dumps(config))


def _set(path: str | tuple[str, ...], value):
    """An edit that sets obj["a"]["b"] = value for path "a.b" (or ("a", "b"))."""

    def edit(root):
        *parents, last = path.split(".") if isinstance(path, str) else path
        obj = root
        for key in parents:
            obj = obj[key]
        obj[last] = value
        return root

    return edit


def _obs(seed: int = 0, n: int | None = None) -> dict[str, np.ndarray]:
    env = gym.make("lewm/TwoRoom-v0", image_size=TEST_IMAGE)
    if n is None:
        return env.reset(seed=seed)[0]
    obs = [env.reset(seed=seed + i)[0] for i in range(n)]
    return {k: np.stack([o[k] for o in obs]) for k in obs[0]}


def _memory(agent: WorldModelAgent) -> list[tuple]:
    """Everything the agent remembers per env (to check a refused call changed nothing)."""
    return [
        (
            [a.tobytes() for a, _ in s.queue],
            [z.numpy().tobytes() for z in s.z_hist],
            len(s.a_hist),
            len(s.current_block),
            None if s.warm is None else s.warm.numpy().tobytes(),
            None if s.goal_image is None else s.goal_image.tobytes(),
            s.generator.get_state().numpy().tobytes(),
        )
        for s in agent._slots
    ]


def _fast_agent(folder: Path) -> WorldModelAgent:
    return WorldModelAgent.load(folder, device="cpu", samples=8, elites=2, iterations=1)


# ---------------------------------------------------------------------- collection
def _content(path: Path) -> str:
    with np.load(path) as z:
        return hashlib.sha256(b"".join(z[k].tobytes() for k in sorted(z.files))).hexdigest()


def test_repeated_collect_continues_the_seed_sequence(tmp_path):
    from envs.collect import collect

    out = tmp_path / "data"
    for _ in range(2):  # the same command twice, default seed
        collect(
            "lewm/TwoRoom-v0", "scripted", 2, out, workers=1, image_size=TEST_IMAGE, progress=False
        )
    files = sorted((out / "episodes").glob("*.npz"))
    assert len(files) == 4
    assert len({_content(p) for p in files}) == 4, "the second run repeated the first's episodes"
    report = verify_dataset(out)
    assert report.ok and not report.duplicates, report.summary()


def test_verify_reports_duplicate_episodes(tmp_path, capsys):
    from envs.collect import collect

    out = tmp_path / "data"
    for _ in range(2):  # an explicit repeated seed: verify must say so
        collect(
            "lewm/TwoRoom-v0",
            "scripted",
            2,
            out,
            workers=1,
            image_size=TEST_IMAGE,
            seed=0,
            progress=False,
        )
    report = verify_dataset(out)
    assert not report.ok
    assert sorted(map(sorted, report.duplicates)) == [
        ["w0-000000.npz", "w0-000002.npz"],
        ["w0-000001.npz", "w0-000003.npz"],
    ]
    assert lewm(["data", "verify", str(out)]) == 1
    assert "DUPLICATE w0-000000.npz == w0-000002.npz" in capsys.readouterr().out


def _fail_writes_after(monkeypatch, good: int) -> None:
    """Every episode write after the first `good` ones fails with ENOSPC (in this process
    and in forked vector-env workers, each counting its own)."""
    import lewm_agent.data.writer as data

    real, calls = data._write_npz, [0]

    def write(*args, **kwargs):
        calls[0] += 1
        if calls[0] > good:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(*args, **kwargs)

    monkeypatch.setattr(data, "_write_npz", write)


def test_full_disk_during_collect_is_one_line_and_keeps_the_data(tmp_path, monkeypatch):
    from envs.collect import collect
    from lewm_agent.data import DiskFullError

    out = tmp_path / "data"
    _fail_writes_after(monkeypatch, good=1)
    with pytest.raises(DiskFullError) as info:
        collect(
            "lewm/TwoRoom-v0", "scripted", 3, out, workers=1, image_size=TEST_IMAGE, progress=False
        )
    msg = str(info.value)
    assert "\n" not in msg and str(out) in msg and "free" in msg and "1 of 3 new episodes" in msg
    monkeypatch.undo()
    assert len(load_dataset(out)) == 1 and verify_dataset(out).ok  # flushed and intact
    assert [e["file"] for e in json.loads((out / "meta.json").read_text())["episodes"]] == [
        "w0-000000.npz"
    ]


def test_full_disk_with_worker_processes_prints_no_tracebacks(tmp_path, monkeypatch, capfd):
    out = tmp_path / "data"
    _fail_writes_after(monkeypatch, good=1)
    argv = ["collect", "--env", "lewm/TwoRoom-v0", "--episodes", "4", "--workers", "2"]
    assert lewm([*argv, "--image-size", str(TEST_IMAGE), "--out", str(out)]) == 1
    err = capfd.readouterr().err
    assert "Traceback" not in err, err
    errors = [line for line in err.splitlines() if "error" in line.lower()]
    assert len(errors) == 1 and errors[0].startswith("lewm: error: disk full while recording")
    monkeypatch.undo()
    assert verify_dataset(out).ok


# ------------------------------------------------------------------ weights, numbers
def test_nan_weights_are_refused_at_load(tiny_agent_dir, tmp_path):
    agent = WorldModelAgent.load(tiny_agent_dir, device="cpu")
    with torch.no_grad():
        for p in agent.model.parameters():
            p.fill_(float("nan"))
    agent.save(tmp_path / "nan")  # saved consistently: hashes match the NaN weights
    with pytest.raises(CheckpointError, match="NaN or infinite weights"):
        WorldModelAgent.load(tmp_path / "nan")


@pytest.mark.parametrize("part", ["encoder", "pred_proj"])
def test_nan_embeddings_or_costs_stop_predict(tiny_agent_dir, part):
    """NaN in the encoder (embeddings) or only in the predictor (costs): CEM's top-k
    over NaN costs still returned a finite, meaningless plan."""
    agent = _fast_agent(tiny_agent_dir)
    with torch.no_grad():
        for p in getattr(agent.model, part).parameters():
            p.fill_(float("nan"))
    with pytest.raises(FloatingPointError, match="NaN or infinite"):
        agent.predict(_obs())


BAD_CONFIGS = [
    ("config.json", lambda c: [], "must hold a JSON object"),
    ("config.json", lambda c: None, "must hold a JSON object"),
    ("config.json", _set("model", None), "model"),
    ("config.json", _set("model.embed_dim", "32"), "embed_dim"),
    ("config.json", _set("model.embed_dim", 32.0), "embed_dim"),
    ("config.json", _set("model.embed_dim", 5000), "embed_dim"),
    ("config.json", _set("model.embed_dim", 10**9), "embed_dim"),
    ("config.json", _set("model.cnn_channels", "8,16,32"), "cnn_channels"),
    ("config.json", _set("model.pred_dropout", float("nan")), "pred_dropout"),
    ("config.json", _set("plan.samples", 10**9), "samples"),
    ("config.json", _set("plan.init_std", -1), "init_std"),
    ("config.json", _set("plan.planner", ""), "planner"),  # found by the fuzz test below
    ("config.json", _set("plan.cost", "pixels"), "cost"),
    ("config.json", _set("train.lr", float("nan")), "lr"),
    ("config.json", _set("env.action_low", [float("nan"), float("nan")]), "NaN"),
    ("config.json", _set("env.action_high", [1.0]), "high has 1 entries"),
    ("config.json", _set("env.action_high", [-1.0, -1.0]), "below its high"),
    ("stats.json", _set("action_normalizer.mean", [float("nan"), 0.0]), "mean"),
    ("stats.json", _set("action_normalizer.std", [1.0, 1.0, 1.0]), "std"),
    ("stats.json", _set("action_normalizer", None), "action_normalizer"),
]


@pytest.mark.parametrize("name, edit, match", BAD_CONFIGS)
def test_bad_checkpoint_values_name_the_field(tiny_agent_dir, tmp_path, name, edit, match):
    folder = _copy(tiny_agent_dir, tmp_path / "ckpt")
    _edit_json(folder, name, edit)
    with pytest.raises(CheckpointError, match=match) as info:
        WorldModelAgent.load(folder)
    assert name in str(info.value)  # the file is named too


def test_weights_that_do_not_match_the_config_are_refused_from_the_header(tiny_agent_dir, tmp_path):
    folder = _copy(tiny_agent_dir, tmp_path / "ckpt")
    weights = folder / "model.safetensors"
    tensors = load_file(weights)
    name = sorted(k for k, v in tensors.items() if v.ndim == 2)[0]
    tensors[name] = torch.zeros(3, 3)  # wrong shape
    tensors["extra"] = torch.zeros(1)
    save_file(tensors, weights)
    _edit_json(folder, "config.json", lambda c: c)  # drop the hashes
    with pytest.raises(CheckpointError, match="unexpected tensors \\['extra'\\]"):
        WorldModelAgent.load(folder)
    del tensors["extra"]
    save_file(tensors, weights)
    with pytest.raises(CheckpointError, match=f"tensor '{name}' has shape \\[3, 3\\]"):
        WorldModelAgent.load(folder)
    # A header that declares more data than the file holds: refused before reading it.
    raw = bytearray(weights.read_bytes())
    n = int.from_bytes(raw[:8], "little")
    header = json.loads(raw[8 : 8 + n])
    header[name]["shape"] = [10**9, 10**9]
    text = json.dumps(header).encode()
    weights.write_bytes(len(text).to_bytes(8, "little") + text + raw[8 + n :])
    with pytest.raises(CheckpointError, match="truncated or corrupt"):
        WorldModelAgent.load(folder)


def test_flipped_bytes_fail_the_sha256_check(tiny_agent_dir, tmp_path):
    folder = _copy(tiny_agent_dir, tmp_path / "ckpt")
    weights = folder / "model.safetensors"
    good = weights.read_bytes()
    raw = bytearray(good)
    raw[-100] ^= 0x01  # one bit of one weight: still a valid safetensors file
    weights.write_bytes(bytes(raw))
    with pytest.raises(CheckpointError, match="model.safetensors is truncated or corrupt: its SHA"):
        WorldModelAgent.load(folder)
    weights.write_bytes(good)
    # Valid JSON with one changed value: only the hash can tell.
    for name, edit in [
        ("stats.json", _set("action_normalizer.mean", [0.5, 0.5])),
        ("config.json", _set("plan.seed", 1)),
    ]:
        path = folder / name
        text = path.read_text()
        path.write_text(json.dumps(edit(json.loads(text)), indent=2) + "\n")
        with pytest.raises(CheckpointError, match=f"{name} is truncated or corrupt: its SHA"):
            WorldModelAgent.load(folder)
        path.write_text(text)
    WorldModelAgent.load(folder)  # restored: loads again


def test_checkpoint_without_hashes_still_loads(tiny_agent_dir, tmp_path):
    folder = _copy(tiny_agent_dir, tmp_path / "old")
    _edit_json(folder, "config.json", lambda c: c)  # drops "sha256" as old saves had none
    assert "sha256" not in json.loads((folder / "config.json").read_text())
    obs = _obs(3)
    np.testing.assert_array_equal(
        WorldModelAgent.load(folder).predict(obs)[0],
        WorldModelAgent.load(tiny_agent_dir).predict(obs)[0],
    )


@pytest.mark.parametrize("umask, mode", [(0o022, 0o644), (0o077, 0o600)])
def test_checkpoint_files_respect_the_umask(tiny_agent_dir, tmp_path, umask, mode):
    agent = WorldModelAgent.load(tiny_agent_dir, device="cpu")
    old = os.umask(umask)
    try:
        agent.save(tmp_path / "ckpt")
    finally:
        os.umask(old)
    for name in ("config.json", "model.safetensors", "stats.json"):
        assert (tmp_path / "ckpt" / name).stat().st_mode & 0o777 == mode, name


# -------------------------------------------------------------------------- predict
def _bad_calls(ob2):
    one = {k: v[:1] for k, v in ob2.items()}
    three = {k: np.concatenate([v, v[:1]]) for k, v in ob2.items()}
    empty = {k: v[:0] for k, v in ob2.items()}
    return {
        "3 obs, 2 starts": (three, {"episode_start": np.array([False, False])}),
        "2 obs, 3 starts": (ob2, {"episode_start": np.array([False, False, False])}),
        "empty batch": (empty, {}),
        "string starts": (ob2, {"episode_start": np.array(["False", "False"])}),
        "float starts": (ob2, {"episode_start": np.array([0.0, 0.5])}),
        "repeated env_indices": (ob2, {"env_indices": [0, 0]}),
        "string env_indices": (ob2, {"env_indices": ["0", "1"]}),
        "bad goal shape": ({"pixels": ob2["pixels"], "goal": one["goal"][:, :16]}, {}),
        "float pixels": ({**ob2, "pixels": ob2["pixels"].astype(np.float32)}, {}),
        "1 obs, 2 env_indices": (one, {"env_indices": [0, 1]}),
    }


@pytest.mark.parametrize("case", list(_bad_calls(_obs(1, 2))))
def test_refused_predict_leaves_the_agent_unchanged(tiny_agent_dir, case):
    ob2, ob2_next = _obs(1, 2), _obs(5, 2)
    agent, twin = _fast_agent(tiny_agent_dir), _fast_agent(tiny_agent_dir)
    agent.predict(ob2)
    twin.predict(ob2)
    before = _memory(agent)
    obs, kwargs = _bad_calls(ob2)[case]
    with pytest.raises(ValueError):
        agent.predict(obs, **kwargs)
    assert _memory(agent) == before
    np.testing.assert_array_equal(agent.predict(ob2_next)[0], twin.predict(ob2_next)[0])


def test_integer_episode_start_is_still_accepted(tiny_agent_dir):
    agent = _fast_agent(tiny_agent_dir)
    agent.predict(_obs(1, 2))
    agent.predict(_obs(1, 2), episode_start=[1, 0])
    full = agent.plan_config.receding_horizon * agent.model_config.frameskip
    assert len(agent._slots[0].queue) == full - 1  # replanned after its reset


def _zeros(n: int | None, shape: tuple[int, ...], dtype: type) -> np.ndarray:
    return np.zeros(shape if n is None else (n, *shape), dtype)


OBS_ARRAYS = st.builds(
    _zeros,
    st.sampled_from([None, 0, 1, 2, 3]),
    st.sampled_from([(32, 32, 3), (31, 32, 3), (32, 32), (32, 32, 4), (1, 32, 32, 3)]),
    st.sampled_from([np.uint8, np.float32, np.int64, np.bool_]),
)
STARTS = st.one_of(
    st.none(),
    st.lists(st.booleans(), max_size=4),
    st.lists(st.sampled_from(["False", "True", "", "0"]), min_size=1, max_size=3).map(np.array),
    st.lists(st.integers(-1, 2), max_size=3).map(np.array),
    st.lists(st.floats(allow_nan=True), min_size=1, max_size=3).map(np.array),
    st.booleans(),
)
INDICES = st.one_of(st.none(), st.lists(st.integers(-1, 4), max_size=4))


@FUZZ
@given(pixels=OBS_ARRAYS, goal=st.one_of(st.none(), OBS_ARRAYS), starts=STARTS, indices=INDICES)
def test_fuzzed_predict_acts_or_refuses_without_side_effects(
    tiny_agent_dir, pixels, goal, starts, indices
):
    agent = _fuzz_agent(tiny_agent_dir)
    obs = {"pixels": pixels} if goal is None else {"pixels": pixels, "goal": goal}
    before = _memory(agent)
    try:
        actions, _ = agent.predict(obs, episode_start=starts, env_indices=indices)
    except ValueError:
        assert _memory(agent) == before
        return
    n = 1 if pixels.ndim == 3 else pixels.shape[0]
    assert actions.shape == ((2,) if pixels.ndim == 3 else (n, 2))
    assert np.isfinite(actions).all()
    assert (actions >= agent.action_low).all() and (actions <= agent.action_high).all()


_FUZZ_AGENTS: dict[str, WorldModelAgent] = {}


def _fuzz_agent(folder: Path) -> WorldModelAgent:
    """One agent for all fuzz examples: its memory carries over, as in a long run."""
    if str(folder) not in _FUZZ_AGENTS:
        _FUZZ_AGENTS[str(folder)] = _fast_agent(folder)
        _FUZZ_AGENTS[str(folder)].predict(_obs(1, 2))
    return _FUZZ_AGENTS[str(folder)]


JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(10**12), 10**12)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=5),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner, max_size=3)
    ),
    max_leaves=6,
)


def _paths(obj, prefix=()):
    """Every key path of nested dicts (lists are leaves)."""
    if isinstance(obj, dict):
        for k, v in obj.items():
            yield (*prefix, k)
            yield from _paths(v, (*prefix, k))


@FUZZ
@given(data=st.data())
def test_fuzzed_checkpoint_loads_or_raises_checkpoint_error(tiny_agent_dir, tmp_path_factory, data):
    folder = _copy(tiny_agent_dir, tmp_path_factory.mktemp("fuzz") / "ckpt")
    name = data.draw(st.sampled_from(["config.json", "stats.json"]))
    obj = json.loads((folder / name).read_text())
    path = data.draw(st.sampled_from([p for p in _paths(obj) if p != ("sha256",)]))
    value = data.draw(JSON)

    _edit_json(folder, name, _set(path, value))
    try:
        agent = WorldModelAgent.load(folder, device="cpu")
    except CheckpointError:
        return
    # Loaded: then every value it uses is sane.
    assert np.isfinite(agent.normalizer.mean).all() and (agent.normalizer.std > 0).all()
    assert not np.isnan(agent.action_low).any() and (agent.action_low < agent.action_high).all()


@FUZZ
@given(offset=st.integers(0, 10**9), bit=st.integers(0, 7))
def test_fuzzed_weight_byte_flip_is_always_caught(tiny_agent_dir, tmp_path_factory, offset, bit):
    folder = _copy(tiny_agent_dir, tmp_path_factory.mktemp("flip") / "ckpt")
    weights = folder / "model.safetensors"
    raw = bytearray(weights.read_bytes())
    raw[offset % len(raw)] ^= 1 << bit
    weights.write_bytes(bytes(raw))
    with pytest.raises(CheckpointError):
        WorldModelAgent.load(folder)


# ------------------------------------------------------------------------- datasets
def _write_raw_episode(path: Path, actions: np.ndarray, states: np.ndarray, size: int) -> None:
    """An episode file written without EpisodeWriter's checks (as a foreign tool might)."""
    t = actions.shape[0]
    pixels = np.zeros((t + 1, size, size, 3), np.uint8)
    np.savez(
        path,
        pixels=pixels,
        actions=actions.astype(np.float32),
        states=states.astype(np.float32),
        terminated=np.array(False),
        truncated=np.array(True),
    )


def _forged_episode(path: Path, t: int, size: int, a: int, s: int) -> None:
    """A stored .npz whose npy headers declare T = t steps but hold one step of data."""
    members = {
        "pixels": ((t + 1, size, size, 3), np.uint8),
        "actions": ((t, a), np.float32),
        "states": ((t + 1, s), np.float32),
        "terminated": ((), np.bool_),
        "truncated": ((), np.bool_),
    }
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as zf:
        for key, (shape, dtype) in members.items():
            with zf.open(f"{key}.npy", "w") as f:
                header = {
                    "descr": np.lib.format.dtype_to_descr(np.dtype(dtype)),
                    "fortran_order": False,
                    "shape": shape,
                }
                np.lib.format.write_array_header_1_0(f, header)
                f.write(b"\0" * 64)


def _square_dataset(root: Path, episodes: int, steps: int, size: int = 32) -> list:
    """A square moved by random actions, written and closed (the index is complete)."""
    rng = np.random.default_rng(0)
    with square_writer(root, size) as w:
        written = []
        for _ in range(episodes):
            acts = rng.uniform(-1, 1, (steps, 2)).astype(np.float32)
            pos = np.clip(8 + np.cumsum(np.vstack([[0, 0], acts]), axis=0), 4, size - 4)
            frames = np.full((steps + 1, size, size, 3), 240, np.uint8)
            for t, (x, y) in enumerate(pos.astype(int)):
                frames[t, y - 3 : y + 3, x - 3 : x + 3] = (200, 30, 30)
            w.write(frames, acts, pos.astype(np.float32), False, True)
            written.append((frames, acts, pos.astype(np.float32)))
    return written


@pytest.fixture()
def square_data(tmp_path) -> Path:
    _square_dataset(tmp_path / "data", episodes=6, steps=30)
    return tmp_path / "data"


def test_hostile_episodes_are_named_by_verify_and_skipped_by_training(square_data, tmp_path):
    """NaN actions, a 1e30 action, NaN states and an npy header declaring T = 1e9:
    verify names each (without a terabyte allocation), training skips each, names
    it, and still writes the model."""
    from lewm_agent.train import train

    eps = square_data / "episodes"
    acts = np.zeros((30, 2), np.float32)
    states = np.zeros((31, 2), np.float32)
    _write_raw_episode(
        eps / "000001.npz", np.where(np.arange(30)[:, None] == 4, np.nan, acts), states, 32
    )
    _write_raw_episode(
        eps / "000002.npz", np.where(np.arange(30)[:, None] == 7, 1e30, acts), states, 32
    )
    _write_raw_episode(eps / "000003.npz", acts, np.full((31, 2), np.nan), 32)
    _forged_episode(eps / "000004.npz", t=10**9, size=32, a=2, s=2)

    report = verify_dataset(square_data)
    assert set(report.bad) == {"000001.npz", "000002.npz", "000003.npz", "000004.npz"}
    assert "NaN or inf (step 4)" in report.bad["000001.npz"]
    assert "outside meta.json's bounds" in report.bad["000002.npz"]
    assert "states contain NaN" in report.bad["000003.npz"]
    assert "declares shape (1000000001, 32, 32, 3)" in report.bad["000004.npz"]
    info = dataset_info(square_data)
    assert "000004.npz" in info["unreadable"] and info["pixel_bytes"] < 10**6
    with pytest.raises(DatasetError, match=r"episodes/00000[1-4]\.npz is corrupt"):
        load_dataset(square_data)

    model_cfg, cfg = quick_train(holdout_fraction=0.0)
    with pytest.warns(RuntimeWarning, match="training skips 4 corrupt") as caught:
        result = train(square_data, model_cfg, cfg, progress=False)
    msgs = " ".join(str(w.message) for w in caught)
    assert all(f"00000{i}.npz" in msgs for i in (1, 2, 3, 4))
    assert result.dataset_meta["num_episodes"] == 2
    WorldModelAgent.from_train_result(result, get_preset("test").plan, "cpu").save(
        tmp_path / "agent"
    )
    assert WorldModelAgent.load(tmp_path / "agent").action_low.tolist() == [-1.0, -1.0]


@pytest.mark.parametrize(
    "key, value, match",
    [
        ("episodes", 5, "episodes must be a list"),
        ("episodes", [{"file": "000000.npz", "length": "30"}], "episodes must be a list"),
        ("image_size", "32", "image_size must be a positive integer"),
        ("action_dim", 0, "action_dim must be a positive integer"),
        ("action_low", [float("nan"), -1.0], "low contains NaN"),
        ("action_high", [1.0], "high has 1 entries"),
        ("env_id", None, "env_id must be a string"),
    ],
)
def test_bad_meta_json_is_a_dataset_error_naming_the_field(square_data, key, value, match):
    meta_path = square_data / "meta.json"
    meta = json.loads(meta_path.read_text())
    meta[key] = value
    meta_path.write_text(json.dumps(meta))
    for read in (load_dataset, verify_dataset, dataset_info):
        with pytest.raises(DatasetError, match=match):
            read(square_data)
    with pytest.raises(DatasetError, match=match):
        square_writer(square_data)


def test_writer_refuses_what_readers_would_skip(tmp_path):
    w = EpisodeWriter(
        tmp_path / "d", env_id="x", image_size=4, action_low=[-1], action_high=[1], state_dim=1
    )
    pixels = np.zeros((3, 4, 4, 3), np.uint8)
    with pytest.raises(ValueError, match="outside meta.json's bounds"):
        w.write(pixels, np.array([[0.5], [1e30]]), np.zeros((3, 1)), False, True)
    with pytest.raises(ValueError, match="states contain NaN"):
        w.write(pixels, np.zeros((2, 1)), np.full((3, 1), np.nan), False, True)
    assert not list((tmp_path / "d" / "episodes").glob("*.npz"))


@FUZZ
@given(data=st.data())
def test_fuzzed_meta_json_loads_or_raises_dataset_error(tmp_path_factory, data):
    root = tmp_path_factory.mktemp("meta") / "data"
    _square_dataset(root, episodes=2, steps=16)
    meta = json.loads((root / "meta.json").read_text())
    key = data.draw(st.sampled_from(sorted(meta)))
    meta[key] = data.draw(JSON)
    (root / "meta.json").write_text(json.dumps(meta))
    for read in (load_dataset, verify_dataset, dataset_info):
        # Loading or a DatasetError are both fine; any other exception fails the test.
        with contextlib.suppress(DatasetError):
            read(root)


@FUZZ
@given(offset=st.integers(0, 10**9), value=st.integers(1, 255))
def test_fuzzed_episode_bytes_are_caught_or_harmless(tmp_path_factory, offset, value):
    """A damaged episode file is reported by verify, skipped by the loader, or (if the
    byte was in zip metadata nobody reads) loads with exactly the original arrays."""
    root = tmp_path_factory.mktemp("flip") / "data"
    pixels, actions, states = _square_dataset(root, episodes=2, steps=16)[0]
    path = sorted((root / "episodes").glob("*.npz"))[0]
    raw = bytearray(path.read_bytes())
    raw[offset % len(raw)] ^= value
    path.write_bytes(bytes(raw))
    report = verify_dataset(root)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        loaded = load_dataset(root, skip_corrupt=True)
    names = [e.name for e in loaded]
    if path.name in report.bad:
        assert path.name not in names
    if path.name in names:
        ep = loaded[names.index(path.name)]
        np.testing.assert_array_equal(ep.pixels, pixels)
        np.testing.assert_array_equal(ep.actions, actions)
        np.testing.assert_array_equal(ep.states, states)


# ------------------------------------------------------------------------------ CLI
def test_cli_prints_expected_errors_without_traceback(tmp_path, capsys, square_data):
    missing = tmp_path / "nope"
    assert lewm(["info", "--agent", str(missing)]) == 1
    err = capsys.readouterr().err
    assert err == f"lewm: error: checkpoint folder {missing} does not exist\n"
    with pytest.raises(CheckpointError):
        lewm(["--debug", "info", "--agent", str(missing)])
    meta = json.loads((square_data / "meta.json").read_text())
    (square_data / "meta.json").write_text(json.dumps({**meta, "episodes": 5}))
    assert lewm(["data", "verify", str(square_data)]) == 1
    err = capsys.readouterr().err
    assert err.startswith("lewm: error: ") and "episodes must be a list" in err
    assert "Traceback" not in err and err.count("\n") == 1
    assert (
        lewm(
            [
                "train",
                "--data",
                str(square_data),
                "--out",
                str(tmp_path / "r"),
                "--plan-samples",
                "1",
            ]
        )
        == 1
    )
    assert "PlanConfig.samples must be >= 2" in capsys.readouterr().err
