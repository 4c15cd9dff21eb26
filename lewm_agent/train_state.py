"""Resumable training state: `OUT/train_state/step-NNNNNNNN/`, atomic, no pickle.

One folder per saved step holds::

    model.safetensors      the LeWM state dict (weights and BatchNorm buffers)
    optimizer.safetensors  AdamW per-parameter tensors, keyed "state.<index>.<name>"
    rng.safetensors        global torch / CUDA / numpy RNG states as uint8 tensors
    state.json             step, elapsed seconds, configs, log rows so far, optimizer
                           hyper-parameters, action normaliser, dataset fingerprint

The folder is filled under a hidden temporary name and renamed into place in one
`os.replace`, so a reader (the resuming run) sees a complete step folder or none;
older step folders are deleted only after the new one is in place. A killed run
therefore always leaves the last complete checkpoint.

Training draws every random number of step s from streams derived from
(seed, s), so the global RNG states stored here are not needed for an exact
resume of the training loop itself; they are restored for the benefit of any
other code in the process that draws from them.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import Tensor

from .atomic import DIR_MODE, fsync_dir, fsync_file

STATE_DIR = "train_state"
FORMAT_VERSION = 1
_PREFIX = "step-"

__all__ = [
    "STATE_DIR",
    "TrainState",
    "TrainStateError",
    "latest_train_state",
    "load_train_state",
    "read_train_state_meta",
    "remove_train_state",
    "save_train_state",
    "capture_rng",
    "restore_rng",
]


class TrainStateError(ValueError):
    """A training checkpoint is missing, corrupt or does not match this run."""


@dataclass
class TrainState:
    """Everything needed to continue a run at `step` (the next step to execute)."""

    step: int
    model: dict[str, Tensor]
    optimizer: dict[str, Any]  # a torch optimizer state_dict
    rng: dict[str, Tensor]
    meta: dict[str, Any]  # the JSON part (state.json)
    path: Path


# ------------------------------------------------------------------------ optimizer
def _flatten_optimizer(sd: dict[str, Any]) -> tuple[dict[str, Tensor], dict[str, Any]]:
    """Optimizer state_dict -> (tensors for safetensors, JSON-able rest)."""
    tensors: dict[str, Tensor] = {}
    scalars: dict[str, dict[str, Any]] = {}
    for idx, st in sd["state"].items():
        for key, value in st.items():
            if isinstance(value, Tensor):
                tensors[f"state.{idx}.{key}"] = value.detach().to("cpu").contiguous()
            else:
                scalars.setdefault(str(idx), {})[key] = value
    groups, tuple_keys = [], set()
    for g in sd["param_groups"]:
        group = {}
        for key, value in g.items():
            if isinstance(value, tuple):
                tuple_keys.add(key)
                value = list(value)
            group[key] = value
        groups.append(group)
    return tensors, {"param_groups": groups, "scalars": scalars, "tuple_keys": sorted(tuple_keys)}


def _unflatten_optimizer(tensors: dict[str, Tensor], js: dict[str, Any]) -> dict[str, Any]:
    state: dict[int, dict[str, Any]] = {}
    for name, value in tensors.items():
        _, idx, key = name.split(".", 2)
        state.setdefault(int(idx), {})[key] = value
    for idx, values in js.get("scalars", {}).items():
        state.setdefault(int(idx), {}).update(values)
    tuple_keys = set(js.get("tuple_keys", []))
    groups = [
        {k: tuple(v) if k in tuple_keys else v for k, v in g.items()} for g in js["param_groups"]
    ]
    return {"state": state, "param_groups": groups}


# ------------------------------------------------------------------------------ rng
def capture_rng() -> tuple[dict[str, Tensor], dict[str, Any]]:
    """Global torch (CPU and CUDA) and numpy RNG states: uint8 tensors + JSON scalars."""
    tensors = {"torch_cpu": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        for i, s in enumerate(torch.cuda.get_rng_state_all()):
            tensors[f"torch_cuda_{i}"] = s
    kind, keys, pos, has_gauss, cached = np.random.get_state()  # legacy global MT19937
    tensors["numpy_keys"] = torch.from_numpy(np.ascontiguousarray(keys).view(np.uint8).copy())
    js = {"numpy_kind": kind, "numpy_pos": int(pos), "numpy_has_gauss": int(has_gauss)}
    js["numpy_cached_gaussian"] = float(cached)
    return tensors, js


def restore_rng(tensors: dict[str, Tensor], js: dict[str, Any]) -> None:
    """Inverse of `capture_rng` (CUDA states only for devices that exist here)."""
    if "torch_cpu" in tensors:
        torch.set_rng_state(tensors["torch_cpu"])
    if torch.cuda.is_available():
        for i in range(torch.cuda.device_count()):
            if f"torch_cuda_{i}" in tensors:
                torch.cuda.set_rng_state(tensors[f"torch_cuda_{i}"], i)
    if "numpy_keys" in tensors and "numpy_pos" in js:
        keys = tensors["numpy_keys"].numpy().view(np.uint32)
        np.random.set_state(
            (
                js["numpy_kind"],
                keys,
                js["numpy_pos"],
                js["numpy_has_gauss"],
                js["numpy_cached_gaussian"],
            )
        )


# ------------------------------------------------------------------------ save/load
def save_train_state(
    out_dir: str | os.PathLike,
    *,
    step: int,
    model_state: dict[str, Tensor],
    optimizer_state: dict[str, Any],
    meta: dict[str, Any],
) -> Path:
    """Write `OUT/train_state/step-<step>/` atomically and delete older step folders.

    `meta` must be JSON-able; `step` is the next step to run. Returns the folder.
    """
    root = Path(out_dir) / STATE_DIR
    root.mkdir(parents=True, exist_ok=True)
    final = root / f"{_PREFIX}{step:08d}"
    tmp = Path(tempfile.mkdtemp(prefix=f".tmp-{final.name}-", dir=root))
    try:
        os.chmod(tmp, DIR_MODE)  # mkdtemp makes 0700; keep the folder readable
        weights = {k: v.detach().to("cpu").contiguous() for k, v in model_state.items()}
        save_file(weights, str(tmp / "model.safetensors"))
        opt_tensors, opt_json = _flatten_optimizer(optimizer_state)
        save_file(opt_tensors, str(tmp / "optimizer.safetensors"))
        rng_tensors, rng_json = capture_rng()
        save_file(rng_tensors, str(tmp / "rng.safetensors"))
        body = {
            "format_version": FORMAT_VERSION,
            "step": int(step),
            **meta,
            "optimizer": opt_json,
            "rng": rng_json,
        }
        (tmp / "state.json").write_text(json.dumps(body, indent=1) + "\n")
        for name in ("model.safetensors", "optimizer.safetensors", "rng.safetensors", "state.json"):
            fsync_file(tmp / name)
        fsync_dir(tmp)
        if final.exists():  # the same step saved again (e.g. a finished run resumed)
            old = root / f".old-{final.name}"
            shutil.rmtree(old, ignore_errors=True)
            os.replace(final, old)
            os.replace(tmp, final)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, final)
        fsync_dir(root)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    for p in root.iterdir():  # older checkpoints and leftovers of killed saves
        if p != final and (p.name.startswith((_PREFIX, ".tmp-", ".old-"))) and p.is_dir():
            shutil.rmtree(p, ignore_errors=True)
    return final


def latest_train_state(out_dir: str | os.PathLike) -> Path | None:
    """The newest complete step folder under `OUT/train_state/`, or None."""
    root = Path(out_dir) / STATE_DIR
    if not root.is_dir():
        return None
    done = [
        p
        for p in root.iterdir()
        if p.is_dir() and p.name.startswith(_PREFIX) and (p / "state.json").is_file()
    ]
    return max(done, key=lambda p: int(p.name[len(_PREFIX) :]), default=None)


def read_train_state_meta(path: str | os.PathLike) -> dict[str, Any]:
    """The JSON part (state.json) of a step folder, without loading any tensor."""
    folder = Path(path)
    try:
        return json.loads((folder / "state.json").read_text())
    except (OSError, ValueError) as e:
        raise TrainStateError(
            f"training checkpoint {folder} is unreadable ({e}); delete it to fall back to "
            f"an older one, or delete {folder.parent} to start over"
        ) from e


def remove_train_state(out_dir: str | os.PathLike) -> bool:
    """Delete `OUT/train_state/` (a finished run needs none); True if there was one."""
    root = Path(out_dir) / STATE_DIR
    if not root.is_dir():
        return False
    shutil.rmtree(root)
    return True


def load_train_state(path: str | os.PathLike) -> TrainState:
    """Read a step folder written by `save_train_state` (tensors stay on the CPU)."""
    folder = Path(path)
    try:
        meta = json.loads((folder / "state.json").read_text())
        model = load_file(str(folder / "model.safetensors"))
        opt_tensors = load_file(str(folder / "optimizer.safetensors"))
        rng = load_file(str(folder / "rng.safetensors"))
    except (OSError, ValueError, SafetensorError) as e:
        raise TrainStateError(
            f"training checkpoint {folder} is unreadable ({e}); delete it to fall back to "
            f"an older one, or delete {folder.parent} to start over"
        ) from e
    if meta.get("format_version") != FORMAT_VERSION:
        raise TrainStateError(
            f"{folder / 'state.json'}: format_version {meta.get('format_version')!r}, this "
            f"lewm-agent reads {FORMAT_VERSION}; delete {folder.parent} to start over"
        )
    optimizer = _unflatten_optimizer(opt_tensors, meta.pop("optimizer"))
    return TrainState(
        step=int(meta["step"]), model=model, optimizer=optimizer, rng=rng, meta=meta, path=folder
    )
