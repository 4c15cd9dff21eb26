"""Checkpoint folders: config.json + model.safetensors + stats.json.

No pickle anywhere: weights are safetensors (a flat dict of tensors, safe to
load from strangers), everything else is JSON. A folder carries its own
configuration, so `load(path)` needs nothing else.

Loading checks before it builds: file hashes (recorded in config.json at save,
covering every file of the folder's model: the policy head's too), config types
and ranges, the weights' header against the shapes the config implies, finite
weights (`read_checkpoint`), the agent's sections (`agent_sections`); only then
`build_model` allocates.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load as load_bytes
from safetensors.torch import save as save_bytes

from .atomic import atomic_write_bytes
from .config import ModelConfig, PlanConfig, TrainConfig, from_dict, to_dict
from .data import ActionNormalizer
from .model import LeWM
from .validation import ConfigError, check_action_bounds, check_finite_vector

FORMAT_VERSION = 1
CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
STATS_FILE = "stats.json"


class CheckpointError(ValueError):
    """A checkpoint folder is missing, incomplete or corrupt."""


HASHES_KEY = "sha256"
"""config.json key holding {file name: SHA-256 hex} of the folder's files. The entry for
config.json itself is the hash of its canonical JSON without this key. Files besides
the three core ones (a policy head) are listed by `record_file_hashes`."""
CORE_FILES = (CONFIG_FILE, WEIGHTS_FILE, STATS_FILE)

# safetensors dtype names and sizes of the dtypes a LeWM state dict holds.
_DTYPE_NAMES = {
    torch.float32: "F32",
    torch.float16: "F16",
    torch.bfloat16: "BF16",
    torch.float64: "F64",
    torch.int64: "I64",
    torch.int32: "I32",
    torch.uint8: "U8",
    torch.bool: "BOOL",
}
_HALF_DTYPES = ("F16", "BF16")
"""Stored dtypes accepted for float32 tensors: they are upcast to float32 at load."""
_DTYPE_BYTES = {"F64": 8, "I64": 8, "F32": 4, "I32": 4, "F16": 2, "BF16": 2, "U8": 1, "BOOL": 1}


def _json_bytes(obj: Any) -> bytes:
    return (json.dumps(obj, indent=2) + "\n").encode()


def write_json(path: Path, obj: Any) -> None:
    """Write JSON atomically (temp file + rename): a reader never sees half a file."""
    atomic_write_bytes(Path(path), _json_bytes(obj))


def config_sha256(config: dict[str, Any]) -> str:
    """SHA-256 of a config dict's canonical JSON, leaving out its own HASHES_KEY entry."""
    body = {k: v for k, v in config.items() if k != HASHES_KEY}
    return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()


def save_checkpoint(
    path: str | os.PathLike,
    model: LeWM,
    config: dict[str, Any],
    stats: dict[str, Any],
) -> Path:
    """Save `model` and its JSON-able `config` (must include "model") and `stats`.

    Each file is written to a temporary name and renamed, weights first and
    config last, so an interrupted save never leaves a folder that loads with
    mismatched parts. config.json records the SHA-256 of every file (see
    HASHES_KEY), which `load_checkpoint` verifies.
    """
    folder = Path(path)
    folder.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.detach().to("cpu").contiguous() for k, v in model.state_dict().items()}
    # Serialised in memory and written like the JSON files (safetensors' own save_file
    # creates its file 0600); the bytes in hand also give the hash.
    weights = save_bytes(
        tensors, metadata={"format": "pt", "lewm_format_version": str(FORMAT_VERSION)}
    )
    atomic_write_bytes(folder / WEIGHTS_FILE, weights)
    stats_bytes = _json_bytes(stats)
    atomic_write_bytes(folder / STATS_FILE, stats_bytes)
    # Hashed as it will read back (tuples become lists), so load computes the same digest.
    full = json.loads(json.dumps({"format_version": FORMAT_VERSION, **config}))
    full[HASHES_KEY] = {
        WEIGHTS_FILE: hashlib.sha256(weights).hexdigest(),
        STATS_FILE: hashlib.sha256(stats_bytes).hexdigest(),
        CONFIG_FILE: config_sha256(full),
    }
    write_json(folder / CONFIG_FILE, full)
    return folder


def record_file_hashes(path: str | os.PathLike, names: tuple[str, ...]) -> None:
    """Add the SHA-256 of files `names` of checkpoint folder `path` to its config.json.

    For files saved beside a checkpoint (the policy head), so that `read_checkpoint`
    verifies them too and the folder stays self-contained wherever it is copied.
    A name whose file is absent loses its entry.
    """
    folder = Path(path)
    config = _read_json(folder / CONFIG_FILE)
    hashes = dict(config.get(HASHES_KEY) or {})
    for name in names:
        file = folder / name
        if file.is_file():
            hashes[name] = hashlib.sha256(file.read_bytes()).hexdigest()
        else:
            hashes.pop(name, None)
    config[HASHES_KEY] = hashes
    hashes[CONFIG_FILE] = config_sha256(config)
    write_json(folder / CONFIG_FILE, config)


def _read_bytes(path: Path) -> bytes:
    if not path.is_file():
        raise CheckpointError(
            f"checkpoint file {path} is missing; a checkpoint folder holds {CONFIG_FILE}, "
            f"{WEIGHTS_FILE} and {STATS_FILE} (save one with WorldModelAgent.save or `lewm train`)"
        )
    try:
        return path.read_bytes()
    except OSError as e:
        raise CheckpointError(f"cannot read checkpoint file {path}: {e}") from e


def _parse_json_object(path: Path, data: bytes) -> dict[str, Any]:
    try:
        obj = json.loads(data)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise CheckpointError(
            f"{path} is not valid JSON ({e}); the checkpoint is corrupt: re-save it or retrain"
        ) from e
    if not isinstance(obj, dict):
        raise CheckpointError(
            f"{path} must hold a JSON object, got {type(obj).__name__}; the checkpoint is "
            "corrupt: re-save it or retrain"
        )
    return obj


def _read_json(path: Path) -> dict[str, Any]:
    return _parse_json_object(path, _read_bytes(path))


def _check_hash(path: Path, actual: str, hashes: dict[str, Any]) -> None:
    expected = hashes.get(path.name)
    if expected is not None and expected != actual:
        raise CheckpointError(
            f"{path} is truncated or corrupt: its SHA-256 differs from the one {CONFIG_FILE} "
            "recorded when the checkpoint was saved (the file changed since); restore the "
            "folder from a good copy, re-save the agent or retrain"
        )


def _check_listed_file(folder: Path, name: Any, hashes: dict[str, Any]) -> None:
    """A file besides the core three that config.json lists: present and unchanged."""
    config_path = folder / CONFIG_FILE
    if not isinstance(name, str) or not name or "/" in name or "\\" in name or name[0] == ".":
        raise CheckpointError(f"{config_path}: {HASHES_KEY!r} lists {name!r}, not a file name")
    file = folder / name
    if not file.is_file():
        raise CheckpointError(
            f"{file} is missing: {config_path} lists it as part of this checkpoint; restore "
            "the folder from a good copy or re-save the agent"
        )
    _check_hash(file, hashlib.sha256(_read_bytes(file)).hexdigest(), hashes)


def _safetensors_header(data: bytes, path: Path) -> dict[str, tuple[str, tuple[int, ...]]]:
    """name -> (dtype name, shape) from a safetensors file's header, with its sizes checked.

    Reading only the header (8-byte length + JSON) means a file that declares more
    data than it holds is refused before anything is allocated for it.
    """
    bad = f"{path} is truncated or corrupt"
    if len(data) < 8:
        raise CheckpointError(f"{bad}: {len(data)} bytes, shorter than a safetensors header")
    n = int.from_bytes(data[:8], "little")
    if n > len(data) - 8:
        raise CheckpointError(f"{bad}: its header claims {n} bytes, the file has {len(data)}")
    try:
        header = json.loads(data[8 : 8 + n])
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise CheckpointError(f"{bad}: its header is not JSON ({e})") from e
    if not isinstance(header, dict):
        raise CheckpointError(f"{bad}: its header is not a JSON object")
    body = len(data) - 8 - n
    out: dict[str, tuple[str, tuple[int, ...]]] = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        try:
            dtype, shape = str(info["dtype"]), tuple(int(d) for d in info["shape"])
            begin, end = (int(o) for o in info["data_offsets"])
            size = math.prod(shape) * _DTYPE_BYTES[dtype]
        except (KeyError, TypeError, ValueError) as e:
            raise CheckpointError(f"{bad}: bad header entry for {name!r} ({e!r})") from e
        if min(shape, default=0) < 0 or not 0 <= begin <= end <= body or end - begin != size:
            raise CheckpointError(
                f"{bad}: tensor {name!r} {dtype}{list(shape)} needs {size} bytes at "
                f"[{begin}, {end}) of a {body}-byte data section"
            )
        out[name] = (dtype, shape)
    return out


# No layer of a model that fits in memory is this wide (a hint in error messages only).
_IMPLAUSIBLE_DIM = 1 << 20


def _expected_tensors(cfg: ModelConfig, where: Path) -> dict[str, tuple[str, tuple[int, ...]]]:
    """name -> (dtype name, shape) of the state dict a config builds, allocating nothing.

    The model is built on PyTorch's "meta" device, where tensors have shapes but no
    storage, so even an absurd config (embed_dim 10**9) costs nothing to check.
    """
    try:
        with torch.device("meta"):
            state = LeWM(cfg).state_dict()
    except Exception as e:  # any config the model code refuses (asserts included)
        big = [
            f"model.{f.name}={getattr(cfg, f.name)}"
            for f in fields(cfg)
            if isinstance(getattr(cfg, f.name), int) and getattr(cfg, f.name) > _IMPLAUSIBLE_DIM
        ]
        hint = f"; implausibly large: {', '.join(big)}" if big else ""
        raise CheckpointError(
            f"{where}: the model section cannot be built ({type(e).__name__}: {e}){hint}"
        ) from e
    return {k: (_DTYPE_NAMES.get(v.dtype, str(v.dtype)), tuple(v.shape)) for k, v in state.items()}


def _suspect_fields(cfg: ModelConfig, dims: set[int]) -> str:
    """Config fields whose value is one of the dims that disagree with the weights."""
    names = [
        f"model.{f.name}={getattr(cfg, f.name)}"
        for f in fields(cfg)
        if isinstance(getattr(cfg, f.name), int) and getattr(cfg, f.name) in dims
    ]
    return f" (check {', '.join(names)})" if names else ""


def _compare_tensors(
    found: dict[str, tuple[str, tuple[int, ...]]],
    expected: dict[str, tuple[str, tuple[int, ...]]],
    cfg: ModelConfig,
    weights: Path,
) -> None:
    where = f"{weights} does not match its {CONFIG_FILE}"
    missing = sorted(set(expected) - set(found))
    unexpected = sorted(set(found) - set(expected))
    if missing or unexpected:
        raise CheckpointError(
            f"{where}: missing tensors {missing[:5]}, unexpected tensors {unexpected[:5]}; "
            "the config's model section and the weights come from different models"
        )
    for name, (dtype, shape) in expected.items():
        f_dtype, f_shape = found[name]
        if f_shape != shape:
            dims = {d for d, e in zip(shape, f_shape, strict=False) if d != e}
            raise CheckpointError(
                f"{where}: tensor {name!r} has shape {list(f_shape)} in the file but "
                f"{list(shape)} from the config{_suspect_fields(cfg, dims)}"
            )
        # Half precision stands in for float32 (the zoo stores float16 to halve its
        # size); read_checkpoint upcasts it.
        if f_dtype != dtype and not (dtype == "F32" and f_dtype in _HALF_DTYPES):
            raise CheckpointError(f"{where}: tensor {name!r} is {f_dtype}, expected {dtype}")


@dataclass
class CheckpointContents:
    """A checkpoint folder read and checked, before any model is built from it."""

    folder: Path
    config: dict[str, Any]
    """config.json (with format_version and the file hashes)."""
    stats: dict[str, Any]
    """stats.json."""
    model_config: ModelConfig
    tensors: dict[str, torch.Tensor]
    """The weights (CPU; half precision upcast to float32), names and shapes matching
    `model_config`, all finite."""


def read_checkpoint(path: str | os.PathLike) -> CheckpointContents:
    """Read and check a checkpoint folder without building the model.

    In order: config.json and stats.json are JSON objects; the SHA-256 of each file
    matches the one recorded at save (checkpoints saved before hashes were recorded
    skip this); the model section has the right types and ranges; the safetensors
    header (names, shapes, dtypes) matches what the model section builds (read from
    the header, so a huge declared tensor allocates nothing); every weight is finite.
    Every failure is a CheckpointError naming the file and the field or tensor.
    """
    folder = Path(path)
    if not folder.is_dir():
        raise CheckpointError(f"checkpoint folder {folder} does not exist")
    config_path, stats_path = folder / CONFIG_FILE, folder / STATS_FILE
    config = _read_json(config_path)
    stats_bytes = _read_bytes(stats_path)
    stats = _parse_json_object(stats_path, stats_bytes)
    version = config.get("format_version")
    if version != FORMAT_VERSION:
        raise CheckpointError(
            f"{config_path}: format_version {version!r}, this lewm-agent reads {FORMAT_VERSION}"
        )
    hashes = config.get(HASHES_KEY, {})  # absent in checkpoints saved before hashes
    if not isinstance(hashes, dict):
        raise CheckpointError(f"{config_path}: {HASHES_KEY!r} must be an object of file hashes")
    _check_hash(config_path, config_sha256(config), hashes)
    _check_hash(stats_path, hashlib.sha256(stats_bytes).hexdigest(), hashes)
    for name in sorted(set(hashes) - set(CORE_FILES)):
        _check_listed_file(folder, name, hashes)
    if "model" not in config:
        raise CheckpointError(f"{config_path} has no 'model' section")
    try:
        model_cfg = from_dict(ModelConfig, config["model"])
    except ValueError as e:
        raise CheckpointError(f"{config_path}: bad model section: {e}") from e
    weights = folder / WEIGHTS_FILE
    if not weights.is_file():
        raise CheckpointError(f"checkpoint weights {weights} are missing")
    data = _read_bytes(weights)
    _check_hash(weights, hashlib.sha256(data).hexdigest(), hashes)
    found = _safetensors_header(data, weights)
    _compare_tensors(found, _expected_tensors(model_cfg, config_path), model_cfg, weights)
    try:
        tensors = load_bytes(data)
    except (SafetensorError, OSError, ValueError) as e:
        raise CheckpointError(
            f"{weights} is truncated or corrupt ({e}); re-save the agent or retrain"
        ) from e
    # float16/bfloat16 weights run as float32 on CPU (the model is built in float32).
    tensors = {
        k: v.float() if v.dtype in (torch.float16, torch.bfloat16) else v
        for k, v in tensors.items()
    }
    nonfinite = [k for k, v in tensors.items() if v.is_floating_point() and not v.isfinite().all()]
    if nonfinite:
        raise CheckpointError(
            f"{weights} holds NaN or infinite weights in {len(nonfinite)} tensors "
            f"({', '.join(nonfinite[:5])}); the run that saved it diverged or the file was "
            "damaged: retrain, or use an earlier checkpoint"
        )
    return CheckpointContents(folder, config, stats, model_cfg, tensors)


@dataclass
class AgentSections:
    """The agent's parts of a checkpoint besides the model, each value checked."""

    plan: PlanConfig
    train: TrainConfig | None
    env: dict[str, Any]
    """config.json's env section: env_id, build (how the data's env was made), bounds."""
    action_low: np.ndarray
    action_high: np.ndarray
    normalizer: ActionNormalizer


def agent_config(
    model: ModelConfig,
    plan: PlanConfig,
    train: TrainConfig | None,
    env: dict[str, Any],
    action_low: np.ndarray,
    action_high: np.ndarray,
) -> dict[str, Any]:
    """The config.json body of an agent (what `agent_sections` reads back).

    `env`: {"env_id", "build"} of the training data's env.
    """
    return {
        "model": to_dict(model),
        "plan": to_dict(plan),
        "train": to_dict(train) if train else None,
        "env": {
            "env_id": env.get("env_id"),
            "build": env.get("build"),
            "action_low": action_low.tolist(),
            "action_high": action_high.tolist(),
        },
    }


def agent_sections(contents: CheckpointContents) -> AgentSections:
    """The plan, train and env sections and the action normaliser of a read checkpoint.

    Raises CheckpointError naming the file and field: a NaN bound or normaliser
    statistic would otherwise turn every planned action into NaN.
    """
    config, stats = contents.config, contents.stats
    a = contents.model_config.action_dim
    config_path, stats_path = contents.folder / CONFIG_FILE, contents.folder / STATS_FILE
    section = "plan"
    try:
        plan = config.get("plan")
        plan_cfg = from_dict(PlanConfig, {} if plan is None else plan)
        section = "train"
        train = config.get("train")
        train_cfg = None if train is None else from_dict(TrainConfig, train)
        section = "env"
        env = config.get("env")
        if not isinstance(env, dict):
            raise ConfigError(f"must be an object with action_low/action_high, got {env!r}")
        if not isinstance(env.get("env_id"), str | None):
            raise ConfigError(f"env_id must be a string or null, got {env.get('env_id')!r}")
        build = env.get("build")  # how the data's env was made (envs/build.py); optional
        if build is not None and not (isinstance(build, dict) and isinstance(build.get("id"), str)):
            raise ConfigError(f"build must be null or an object with an 'id', got {build!r}")
        low, high = check_action_bounds(
            env.get("action_low"), env.get("action_high"), a, "action_low/action_high"
        )
    except ValueError as e:
        raise CheckpointError(f"{config_path}: bad {section} section: {e}") from e
    section = "action_normalizer"
    try:
        norm = stats.get("action_normalizer")
        if not isinstance(norm, dict):
            raise ConfigError(f"must be an object with mean and std, got {norm!r}")
        mean = check_finite_vector(norm.get("mean"), a, "mean")
        std = check_finite_vector(norm.get("std"), a, "std")
        if np.any(std <= 0):
            raise ConfigError(f"std must be positive, got {std.tolist()}")
        section = "training"
        if not isinstance(stats.get("training"), dict | None):
            raise ConfigError(f"must be an object, got {stats.get('training')!r}")
    except ValueError as e:
        raise CheckpointError(f"{stats_path}: bad {section} section: {e}") from e
    return AgentSections(plan_cfg, train_cfg, env, low, high, ActionNormalizer(mean, std))


def build_model(contents: CheckpointContents, device: str | torch.device = "cpu") -> LeWM:
    """The LeWM of a checked checkpoint, in eval mode on `device`."""
    model = LeWM(contents.model_config)
    try:
        model.load_state_dict(contents.tensors, strict=True)
    except RuntimeError as e:  # read_checkpoint compared names and shapes: not expected
        raise CheckpointError(f"{contents.folder / WEIGHTS_FILE} does not load: {e}") from e
    return model.to(device).eval()


def load_checkpoint(
    path: str | os.PathLike, device: str | torch.device = "cpu"
) -> tuple[LeWM, dict[str, Any], dict[str, Any]]:
    """Load (model in eval mode, config dict, stats dict) from a checkpoint folder."""
    contents = read_checkpoint(path)
    return build_model(contents, device), contents.config, contents.stats
