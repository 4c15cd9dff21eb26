"""What can be probed (`Encoder`, `WorldModelLike`) and frame / episode encoding."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from typing import Any, Protocol

import numpy as np
import torch
from torch import Tensor, nn
from tqdm.auto import tqdm

from lewm_agent.data import Episode


# ---------------------------------------------------------------------------------------
# what can be probed
# ---------------------------------------------------------------------------------------
class Encoder(Protocol):
    """Anything that maps uint8 frames ``(..., H, W, 3)`` to embeddings ``(..., D)``."""

    def encode(self, pixels: Tensor) -> Tensor: ...


class WorldModelLike(Encoder, Protocol):
    """An encoder plus a teacher-forced predictor (``LeWM`` or a test stub).

    ``predict(z (B, T, D), actions (B, T, fs*A)) -> (B, T, D)``: output ``t`` is the
    predicted embedding of the frame after action block ``t`` (normalised units).
    """

    def predict(self, z: Tensor, actions: Tensor) -> Tensor: ...


def _device_of(model: Any) -> torch.device:
    """Where the model's parameters live (CPU for parameter-free stubs)."""
    if isinstance(model, nn.Module):
        for p in model.parameters():
            return p.device
    return torch.device("cpu")


@contextlib.contextmanager
def _eval_mode(model: Any) -> Iterator[None]:
    """Evaluate in eval mode (BatchNorm running stats, no dropout), then restore.

    A probe of a model left in train mode would see batch-statistics embeddings that
    depend on what else is in the batch: not the embeddings the planner uses.
    """
    was_training = isinstance(model, nn.Module) and model.training
    if was_training:
        model.eval()
    try:
        with torch.inference_mode():
            yield
    finally:
        if was_training:
            model.train()


def model_dims(model: Any, history: int | None, frameskip: int | None) -> tuple[int, int]:
    """``(history, frameskip)``: as given, or read from ``model.cfg`` (LeWM has it; stubs pass them)."""
    cfg = getattr(model, "cfg", None)
    h = history if history is not None else getattr(cfg, "history", None)
    fs = frameskip if frameskip is not None else getattr(cfg, "frameskip", None)
    if h is None or fs is None:
        raise ValueError(
            "history and frameskip are needed: pass them, or use a model with a "
            "`cfg` holding them (LeWM does)"
        )
    if int(h) < 1 or int(fs) < 1:
        raise ValueError(f"history and frameskip must be >= 1, got {h}, {fs}")
    return int(h), int(fs)


# ---------------------------------------------------------------------------------------
# encoding
# ---------------------------------------------------------------------------------------
def encode_frames(
    model: Encoder, pixels: np.ndarray | Tensor, *, batch_size: int = 512
) -> np.ndarray:
    """Embeddings of many frames, batched: uint8 ``(N, H, W, 3)`` -> float32 ``(N, D)``.

    Runs under ``torch.inference_mode`` and eval mode; batches bound the memory of
    the encoder's activations, not the result.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    n = int(pixels.shape[0])
    if pixels.ndim != 4 or pixels.shape[-1] != 3:
        raise ValueError(f"expected uint8 frames (N, H, W, 3), got shape {tuple(pixels.shape)}")
    dev = _device_of(model)
    out: list[np.ndarray] = []
    with _eval_mode(model):
        for i in range(0, n, batch_size):
            chunk = pixels[i : i + batch_size]
            x = torch.as_tensor(
                np.ascontiguousarray(chunk) if isinstance(chunk, np.ndarray) else chunk
            )
            z = model.encode(x.to(dev))  # (b, D)
            out.append(z.float().cpu().numpy())
    if not out:
        raise ValueError("no frames to encode")
    return np.concatenate(out).astype(np.float32, copy=False)  # (N, D)


def encode_episodes(
    model: Encoder,
    episodes: Sequence[Episode],
    *,
    frames: Sequence[np.ndarray] | None = None,
    batch_size: int = 512,
    progress: bool | str = False,
) -> list[np.ndarray]:
    """Embeddings of selected frames of each episode, batched across episodes.

    Args:
        episodes: the episodes (their ``pixels`` may be memory-mapped).
        frames: per episode, the frame indices to encode (default: every frame).
        progress: a tqdm bar in frames (a string is its description).
    Returns:
        Per episode, float32 ``(len(frames[i]), D)`` (``(T+1, D)`` by default).
    """
    if frames is None:
        frames = [np.arange(e.pixels.shape[0]) for e in episodes]
    if len(frames) != len(episodes):
        raise ValueError(f"{len(frames)} frame selections for {len(episodes)} episodes")
    counts = [len(f) for f in frames]
    total = sum(counts)
    if total == 0:
        raise ValueError("no frames selected")
    h, w, c = episodes[0].pixels.shape[1:]
    buf = np.empty((min(batch_size, total), h, w, c), dtype=np.uint8)  # (b, H, W, 3)
    parts: list[np.ndarray] = []
    fill = 0
    dev = _device_of(model)
    desc = progress if isinstance(progress, str) else "encode frames"
    bar = tqdm(total=total, desc=desc, unit="frame", disable=not progress, leave=False)
    with _eval_mode(model), bar:

        def flush(k: int) -> None:
            z = model.encode(torch.from_numpy(buf[:k]).to(dev))  # (k, D)
            parts.append(z.float().cpu().numpy())
            bar.update(k)

        for ep, idx in zip(episodes, frames, strict=True):
            idx = np.asarray(idx, dtype=np.int64)
            pos = 0
            while pos < len(idx):
                take = min(len(buf) - fill, len(idx) - pos)
                buf[fill : fill + take] = ep.pixels[idx[pos : pos + take]]
                fill += take
                pos += take
                if fill == len(buf):
                    flush(fill)
                    fill = 0
        if fill:
            flush(fill)
    z_all = np.concatenate(parts)  # (total, D)
    return np.split(z_all, np.cumsum(counts)[:-1])
