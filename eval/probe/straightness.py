"""Temporal straightness: the mean cosine between consecutive latent velocities, per
checkpoint (straighter trajectories make extrapolation and planning easier)."""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import numpy as np
from torch import nn
from tqdm.auto import tqdm

from eval.probe.encode import Encoder, encode_episodes, model_dims
from lewm_agent.data import Episode


# ---------------------------------------------------------------------------------------
# temporal straightness
# ---------------------------------------------------------------------------------------
def velocity_cosines(z: np.ndarray, eps: float = 1e-8) -> np.ndarray:
    """Cosines between consecutive latent velocities of one trajectory.

    ``z`` is ``(T, D)``; velocities ``v_t = z_{t+1} - z_t``; returns ``(T-2,)`` with
    ``cos(v_t, v_{t+1})``, NaN where either velocity is (near) zero: an agent pressed
    against a wall does not move, and a direction of no motion is undefined, not
    "perpendicular".
    """
    z = np.asarray(z, dtype=np.float64)
    if z.ndim != 2:
        raise ValueError(f"z must be (T, D), got shape {z.shape}")
    v = np.diff(z, axis=0)  # (T-1, D)
    norm = np.linalg.norm(v, axis=1)  # (T-1,)
    num = (v[:-1] * v[1:]).sum(axis=1)  # (T-2,)
    den = norm[:-1] * norm[1:]  # (T-2,)
    scale = max(float(np.median(norm)) if norm.size else 0.0, 1.0) * eps
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where((norm[:-1] > scale) & (norm[1:] > scale), num / den, np.nan)


def straightness(trajectories: np.ndarray | Sequence[np.ndarray]) -> float:
    """Mean cosine between consecutive latent velocities over one or many ``(T, D)`` trajectories.

    1 for a straight line traversed in one direction, ~0 for a high-dimensional
    random walk, -1 for back-and-forth oscillation.
    """
    trajs = (
        [trajectories]
        if isinstance(trajectories, np.ndarray) and trajectories.ndim == 2
        else trajectories
    )
    cos = np.concatenate([velocity_cosines(z) for z in trajs])
    cos = cos[np.isfinite(cos)]
    if cos.size == 0:
        raise ValueError(
            "no pair of consecutive non-zero velocities (trajectories too short or static)"
        )
    return float(cos.mean())


def episode_straightness(
    model: Encoder,
    episodes: Sequence[Episode],
    *,
    stride: int,
    batch_size: int = 512,
) -> dict[str, float]:
    """Straightness of the embeddings of frames ``stride`` env steps apart along episodes.

    ``stride`` is usually the model's frameskip (the time step the predictor works
    at). Returns the mean and std of the cosines and the number of pairs.
    """
    if stride < 1:
        raise ValueError(f"stride must be >= 1, got {stride}")
    sel = [np.arange(0, e.pixels.shape[0], stride) for e in episodes]
    zs = encode_episodes(model, episodes, frames=sel, batch_size=batch_size)
    cos = np.concatenate([velocity_cosines(z) for z in zs])
    cos = cos[np.isfinite(cos)]
    if cos.size == 0:
        raise ValueError("no pair of consecutive non-zero velocities: episodes too short?")
    return {"straightness": float(cos.mean()), "std": float(cos.std()), "pairs": int(cos.size)}


def load_model(path: str | os.PathLike[str]) -> tuple[nn.Module, int | None]:
    """A LeWM in eval mode and its training steps, from any folder training writes.

    Accepts a checkpoint folder (``config.json`` + ``model.safetensors``), a training
    snapshot ``OUT/train_state/step-N/`` (``state.json`` + ``model.safetensors``; only
    the newest is kept by training, so copy the ones to compare aside), or a run
    folder holding only ``train_state/`` (its newest snapshot). Tracking a quantity
    over training needs the snapshots, which carry no ``config.json``.
    """
    from lewm_agent.checkpoint import CheckpointError, load_checkpoint
    from lewm_agent.config import ModelConfig, from_dict
    from lewm_agent.model import LeWM

    folder = os.fspath(path)
    if os.path.isfile(os.path.join(folder, "config.json")):
        model, _config, stats = load_checkpoint(folder)
        return model, (stats.get("training") or {}).get("steps")
    if not os.path.isfile(os.path.join(folder, "state.json")):
        from lewm_agent.train_state import latest_train_state

        snap = latest_train_state(folder) if os.path.isdir(folder) else None
        if snap is None:
            raise CheckpointError(
                f"{folder} is neither a checkpoint folder (config.json), a training snapshot "
                "(train_state/step-N with state.json) nor a run folder with train_state/"
            )
        folder = os.fspath(snap)
    from lewm_agent.train_state import load_train_state

    state = load_train_state(folder)
    try:
        cfg = from_dict(ModelConfig, state.meta["model_config"])
    except (KeyError, TypeError, ValueError) as e:
        raise CheckpointError(f"{folder}/state.json has no usable model_config: {e!r}") from e
    model = LeWM(cfg)
    model.load_state_dict(state.model)
    return model.eval(), int(state.step)


def straightness_over_checkpoints(
    checkpoints: Sequence[str | os.PathLike[str] | tuple[str, Encoder]],
    episodes: Sequence[Episode],
    *,
    stride: int | None = None,
    batch_size: int = 512,
    progress: bool = False,
) -> list[dict[str, Any]]:
    """Straightness of each of several checkpoints on the same episodes (a table).

    ``progress``: a tqdm bar in checkpoints.

    Args:
        checkpoints: folders :func:`load_model` reads (checkpoints or training
            snapshots; labelled by folder name, with training steps when recorded) or
            ``(label, model)`` pairs (e.g. ``("init", LeWM(cfg))``, the untrained model).
        stride: env steps between frames; default: each model's frameskip.
    Returns:
        One row per checkpoint: ``label``, ``steps`` (if known), ``straightness``,
        ``std``, ``pairs``.
    """
    rows: list[dict[str, Any]] = []
    for item in tqdm(checkpoints, desc="straightness", unit="checkpoint", disable=not progress):
        steps: int | None = None
        if isinstance(item, tuple):
            label, model = item
        else:
            model, steps = load_model(item)
            label = os.path.basename(os.path.normpath(os.fspath(item)))
        s = stride if stride is not None else model_dims(model, 1, None)[1]
        row = {"label": label, "steps": steps, "stride": s}
        row.update(episode_straightness(model, episodes, stride=s, batch_size=batch_size))
        rows.append(row)
    return rows
