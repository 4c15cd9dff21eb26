"""Checkpoint folders: config.json + model.safetensors + stats.json.

No pickle anywhere: weights are safetensors (a flat dict of tensors, safe to
load from strangers), everything else is JSON. A folder carries its own
configuration, so `load(path)` needs nothing else.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from .config import ModelConfig, from_dict
from .model import LeWM

FORMAT_VERSION = 1
CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
STATS_FILE = "stats.json"


class CheckpointError(ValueError):
    """A checkpoint folder is missing, incomplete or corrupt."""


def _atomic_write_bytes(path: Path, data: bytes) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_json(path: Path, obj: Any) -> None:
    """Write JSON atomically (temp file + rename): a reader never sees half a file."""
    _atomic_write_bytes(Path(path), (json.dumps(obj, indent=2) + "\n").encode())


def save_checkpoint(
    path: str | os.PathLike,
    model: LeWM,
    config: dict[str, Any],
    stats: dict[str, Any],
) -> Path:
    """Save `model` and its JSON-able `config` (must include "model") and `stats`.

    Each file is written to a temporary name and renamed, weights first and
    config last, so an interrupted save never leaves a folder that loads with
    mismatched parts.
    """
    folder = Path(path)
    folder.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.detach().to("cpu").contiguous() for k, v in model.state_dict().items()}
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{WEIGHTS_FILE}.", suffix=".tmp")
    os.close(fd)
    try:
        save_file(
            tensors, tmp, metadata={"format": "pt", "lewm_format_version": str(FORMAT_VERSION)}
        )
        os.replace(tmp, folder / WEIGHTS_FILE)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    write_json(folder / STATS_FILE, stats)
    write_json(folder / CONFIG_FILE, {"format_version": FORMAT_VERSION, **config})
    return folder


def _read_json(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise CheckpointError(
            f"checkpoint file {path} is missing; a checkpoint folder holds {CONFIG_FILE}, "
            f"{WEIGHTS_FILE} and {STATS_FILE} (save one with WorldModelAgent.save or `lewm train`)"
        )
    try:
        return json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise CheckpointError(
            f"{path} is not valid JSON ({e}); the checkpoint is corrupt: re-save it or retrain"
        ) from e


def load_checkpoint(
    path: str | os.PathLike, device: str | torch.device = "cpu"
) -> tuple[LeWM, dict[str, Any], dict[str, Any]]:
    """Load (model in eval mode, config dict, stats dict) from a checkpoint folder."""
    folder = Path(path)
    if not folder.is_dir():
        raise CheckpointError(f"checkpoint folder {folder} does not exist")
    config = _read_json(folder / CONFIG_FILE)
    stats = _read_json(folder / STATS_FILE)
    version = config.get("format_version")
    if version != FORMAT_VERSION:
        raise CheckpointError(
            f"{folder / CONFIG_FILE}: format_version {version!r}, "
            f"this lewm-agent reads {FORMAT_VERSION}"
        )
    if "model" not in config:
        raise CheckpointError(f"{folder / CONFIG_FILE} has no 'model' section")
    try:
        model_cfg = from_dict(ModelConfig, config["model"])
    except (TypeError, ValueError) as e:
        raise CheckpointError(f"{folder / CONFIG_FILE}: bad model config: {e}") from e
    weights = folder / WEIGHTS_FILE
    if not weights.is_file():
        raise CheckpointError(f"checkpoint weights {weights} are missing")
    try:
        state = load_file(str(weights), device="cpu")
    except (SafetensorError, OSError, ValueError) as e:
        raise CheckpointError(
            f"{weights} is truncated or corrupt ({e}); re-save the agent or retrain"
        ) from e
    model = LeWM(model_cfg)
    try:
        missing, unexpected = model.load_state_dict(state, strict=False)
    except RuntimeError as e:  # shape mismatch
        raise CheckpointError(f"{weights} does not match its config.json: {e}") from e
    if missing or unexpected:
        raise CheckpointError(
            f"{weights} does not match its config.json: missing {missing[:5]}, "
            f"unexpected {unexpected[:5]}"
        )
    model.to(device).eval()
    return model, config, stats
