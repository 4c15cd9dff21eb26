"""What every head trained on a FROZEN world model shares: its files, its tie to the model, its loop.

The policy head (policy_head.py) and the cost head (cost_head.py) are small
networks fitted after LeWM on its frozen embeddings. Each is stored beside the
world model as `<stem>.safetensors` (weights) + `<stem>.json` (format version,
config, sizes, training log and the `model_digest` of the world model it was
trained on, so a head left over from an older model in the same folder is
detected, not silently used). No pickle. This module owns those files, the
digest, the frame embedding, the training split and the optimiser loop; the
heads' modules own their networks, their samples and their losses.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn
from tqdm.auto import tqdm

from .atomic import atomic_path
from .checkpoint import CONFIG_FILE, HASHES_KEY, CheckpointError, record_file_hashes, write_json
from .config import replace, to_dict
from .data import Dataset, load_dataset
from .device import autocast_context
from .model import LeWM


@dataclass(frozen=True)
class HeadFiles:
    """A head's two files in a checkpoint folder, and the command that trains one."""

    stem: str
    """File stem: `<stem>.safetensors` + `<stem>.json`."""
    what: str
    """The head's name in messages ("policy head")."""
    format_version: int
    """Version written into `<stem>.json`; another one is refused at load."""
    command: str
    """The `lewm` command that (re)trains it, named by every error about it."""

    @property
    def weights(self) -> str:
        return f"{self.stem}.safetensors"

    @property
    def config(self) -> str:
        return f"{self.stem}.json"

    @property
    def names(self) -> tuple[str, str]:
        """(weights file, config file): the order they are written and hashed in."""
        return self.weights, self.config

    def retrain(self, folder: str | os.PathLike) -> str:
        return f"`{self.command} {folder} --data DATA`"


@dataclass(frozen=True)
class HeadTrainConfig:
    """How a head is trained: the fields every head's config shares (its own add the network's)."""

    steps: int = 2000
    """Optimiser steps."""
    batch_size: int = 256
    """Training examples per step."""
    lr: float = 1e-3
    """Peak AdamW learning rate (cosine decay to 0, short warm-up)."""
    weight_decay: float = 1e-4
    """AdamW weight decay."""
    seed: int = 0
    """Seed of the weights and the sampled training examples."""
    holdout_fraction: float = 0.1
    """Episodes held out (the last ones, as LeWM's split); set from the world model's."""
    train_episodes: int = 0
    """Only the first N training episodes (0 = all): the world model's `train_episodes`."""

    def __post_init__(self) -> None:
        from .validation import check_config_fields

        check_config_fields(self)


def model_digest(model: LeWM) -> str:
    """sha256 of the world model's weights (to tie a head to the model it was trained on)."""
    h = hashlib.sha256()
    for name, t in sorted(model.state_dict().items()):
        h.update(name.encode())
        h.update(t.detach().to("cpu", torch.float32).contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


@torch.inference_mode()
def embed_frames(
    model: LeWM, frames: np.ndarray, device: torch.device, batch: int = 256, progress: bool = False
) -> Tensor:
    """uint8 frames (N, H, W, 3) -> embeddings (N, D) float32 on `device`, in eval mode.

    The training inputs stay on the device, under the device's autocast (the
    probes' `eval.probe.encode_frames` is the numpy, any-encoder counterpart)."""
    model.eval()
    out = []
    for i in tqdm(
        range(0, len(frames), batch), desc="encode frames", disable=not progress, unit="batch"
    ):
        x = torch.from_numpy(np.ascontiguousarray(frames[i : i + batch])).to(device)
        with autocast_context(device):
            out.append(model.encode(x).float())  # (b, D)
    return torch.cat(out)


def split_frames(split: Dataset) -> np.ndarray:
    """Every frame of `split`'s episodes in order, (N_frames, H, W, 3) uint8.

    A split's episodes are contiguous in the dataset's shared buffer, so this is a view there."""
    if split.frames is not None and split.frame_offsets is not None:
        return split.frames[split.frame_offsets[0] : split.frame_offsets[-1] + len(split[-1]) + 1]
    return np.concatenate([e.pixels for e in split.episodes])


def training_split(
    dataset: Dataset | str | os.PathLike, holdout_fraction: float, train_episodes: int
) -> tuple[Dataset, Dataset | None]:
    """(training episodes, held-out episodes or None): the world model's own split.

    The last `holdout_fraction` episodes are held out, as LeWM's split, and only the
    first `train_episodes` training episodes are kept (0 = all), the prefix the world
    model trained on, so the protocol's start/goal pairs stay unseen by a head too."""
    data = dataset if isinstance(dataset, Dataset) else load_dataset(dataset, skip_corrupt=True)
    train_split, heldout = data.split(holdout_fraction) if len(data) > 1 else (data, None)
    if train_episodes > 0:
        train_split = train_split.head(train_episodes)
    return train_split, heldout


def head_config(agent: Any, cls: type[HeadTrainConfig], **overrides: Any) -> Any:
    """A head config `cls` on the split of `agent`'s training config, with `overrides` fields."""
    tc = agent.train_config
    cfg = cls(
        holdout_fraction=tc.holdout_fraction if tc else 0.1,
        train_episodes=tc.train_episodes if tc else 0,
    )
    return replace(cfg, **overrides)


def train_loop(
    head: nn.Module,
    cfg: HeadTrainConfig,
    batch_loss: Callable[[], Tensor],
    *,
    t0: float,
    desc: str,
    progress: bool,
    log_every: int,
) -> list[dict[str, float]]:
    """`cfg.steps` AdamW steps on `batch_loss()` (it samples its own batch), cosine lr, warm-up.

    Returns the log rows {step, loss, lr, seconds since t0}; leaves `head` in eval mode."""
    opt = torch.optim.AdamW(head.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    warmup = max(1, min(100, cfg.steps // 10))
    log: list[dict[str, float]] = []
    bar = tqdm(range(cfg.steps), desc=desc, disable=not progress, unit="step")
    head.train()
    for step in bar:
        lr = cfg.lr * min(1.0, (step + 1) / warmup)
        lr *= 0.5 * (1 + math.cos(math.pi * step / max(1, cfg.steps)))
        for group in opt.param_groups:
            group["lr"] = lr
        loss = batch_loss()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if step % log_every == 0 or step == cfg.steps - 1:
            row = {
                "step": step,
                "loss": float(loss.detach()),
                "lr": lr,
                "seconds": time.perf_counter() - t0,
            }
            log.append(row)
            bar.set_postfix(loss=f"{row['loss']:.4f}")
    head.eval()
    return log


def training_meta(
    digest: str, seconds: float, log: list[dict[str, float]], **heldout: float | None
) -> dict[str, Any]:
    """A head's JSON meta: the model digest and its training summary (held-out scores, log)."""
    return {
        "model_digest": digest,
        "training": {
            "seconds": seconds,
            "final_loss": log[-1]["loss"] if log else None,
            "first_loss": log[0]["loss"] if log else None,
            **heldout,
            "log": log,
        },
    }


# ------------------------------------------------------------------------ files


def has_head(path: str | os.PathLike, files: HeadFiles) -> bool:
    folder = Path(path)
    return all((folder / name).is_file() for name in files.names)


def listed_hashes(folder: Path) -> dict[str, Any]:
    """The file hashes of the checkpoint in `folder` (empty without one)."""
    try:
        hashes = json.loads((folder / CONFIG_FILE).read_text()).get(HASHES_KEY)
    except (OSError, ValueError, AttributeError):
        return {}
    return hashes if isinstance(hashes, dict) else {}


def save_head(
    path: str | os.PathLike,
    files: HeadFiles,
    head: nn.Module,
    sizes: dict[str, int],
    meta: dict[str, Any],
    *,
    always_record_hashes: bool,
) -> Path:
    """Write `<stem>.safetensors` then `<stem>.json` (the config, last) into `path`.

    The JSON holds the format version, `head.cfg`, `sizes` (the constructor's
    dimensions) and `meta`. A checkpoint whose config.json lists the head's hashes
    keeps them current, so a retrained head is not refused as a damaged one;
    `always_record_hashes` records them in any checkpoint folder."""
    from safetensors.torch import save_file

    folder = Path(path)
    folder.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.detach().to("cpu").contiguous() for k, v in head.state_dict().items()}
    with atomic_path(folder / files.weights) as tmp:
        save_file(tensors, str(tmp), metadata={"format": "pt"})
    config = {
        "format_version": files.format_version,
        "config": to_dict(head.cfg),
        **sizes,
        **meta,
    }
    write_json(folder / files.config, config)
    if always_record_hashes:
        record = (folder / CONFIG_FILE).is_file()
    else:
        hashes = listed_hashes(folder)
        record = files.weights in hashes or files.config in hashes
    if record:
        record_file_hashes(folder, files.names)
    return folder / files.weights


def load_head(
    path: str | os.PathLike,
    files: HeadFiles,
    build: Callable[[dict[str, Any]], nn.Module],
    device: str | torch.device = "cpu",
) -> tuple[Any, dict[str, Any]]:
    """(head in eval mode, its JSON meta) from a checkpoint folder, or a CheckpointError.

    `build(meta)` makes the empty head from the JSON (config and sizes)."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    folder = Path(path)
    try:
        meta = json.loads((folder / files.config).read_text())
        if meta.get("format_version") != files.format_version:
            raise ValueError(f"format_version {meta.get('format_version')!r}")
        head = build(meta)
        head.load_state_dict(load_file(str(folder / files.weights), device="cpu"))
    except (OSError, ValueError, KeyError, TypeError, RuntimeError, SafetensorError) as e:
        raise CheckpointError(
            f"{files.what} in {folder} is missing or corrupt ({e}); retrain it with "
            f"{files.retrain(folder)}"
        ) from e
    return head.to(device).eval(), meta


def saved_head(
    path: str | os.PathLike,
    model: LeWM,
    files: HeadFiles,
    load: Callable[..., tuple[Any, dict[str, Any]]],
    *,
    needed_by: str | None,
    fix: str,
    device: torch.device,
) -> tuple[Any, dict[str, Any]] | None:
    """(head, meta) of checkpoint folder `path` if it has a head trained on `model`.

    `needed_by` names what needs the head (None: nothing): then a missing or
    mismatched head is a CheckpointError naming `fix`; otherwise a missing head
    is None and a mismatched one is ignored with a warning."""
    if not has_head(path, files):
        if needed_by:
            raise CheckpointError(f"{needed_by} needs a {files.what} and {path} has none; {fix}")
        return None
    head, meta = load(path, device=device)
    if meta.get("model_digest") != model_digest(model):
        msg = f"the {files.what} in {path} was trained on another world model; {fix}"
        if needed_by:
            raise CheckpointError(msg)
        # stacklevel: past this function and the controller's, to its caller
        warnings.warn(msg + "; it is ignored", RuntimeWarning, stacklevel=4)
        return None
    return head, meta


__all__ = [
    "HeadFiles",
    "HeadTrainConfig",
    "embed_frames",
    "has_head",
    "head_config",
    "load_head",
    "model_digest",
    "save_head",
    "saved_head",
    "split_frames",
    "train_loop",
    "training_meta",
    "training_split",
]
