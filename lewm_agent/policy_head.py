"""A goal-conditioned policy on FROZEN LeWM embeddings: (z_t, z_goal, steps left) -> action block.

Trained after the world model by regressing the dataset's next action block
(normalised units) toward hindsight goals: the goal is the embedding of a
frame k = 1..`max_offset` env steps later in the same episode and "steps left"
is k. No reward, no gradient into LeWM. One forward pass of a small MLP per
action block, so it can act alone (`planner="policy"`) or give the planner a
prior (`planner="cem-prior"`): rolled out through the predictor for the
planning horizon (steps left = the blocks still to go), its plan is the
initial mean and the centre of a share of the samples (see planning.py).

Stored in the checkpoint folder beside the world model: `policy_head.safetensors`
(weights) + `policy_head.json` (config, sizes, training log, and a digest of
the world model it was trained on, so a head left over from an older model in
the same folder is detected, not silently used). No pickle.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .config import from_dict
from .data import ActionNormalizer, Dataset, HindsightSampler
from .device import autocast_context
from .heads import (
    HeadFiles,
    HeadTrainConfig,
    embed_frames,
    has_head,
    head_config,
    load_head,
    model_digest,
    save_head,
    split_frames,
    train_loop,
    training_meta,
    training_split,
)
from .model import LeWM
from .networks import mlp_stack

POLICY_FILES = HeadFiles("policy_head", "policy head", 1, "lewm train-policy")
HEAD_WEIGHTS_FILE, HEAD_CONFIG_FILE = POLICY_FILES.names
HEAD_FORMAT_VERSION = POLICY_FILES.format_version


@dataclass(frozen=True)
class PolicyHeadConfig(HeadTrainConfig):
    """Architecture and training of the latent policy head (training fields: HeadTrainConfig)."""

    steps: int = 3000
    """Optimiser steps."""
    hidden: int = 512
    """Width of the MLP's hidden layers."""
    layers: int = 3
    """Hidden layers (3 x 512 as in le-wm issue #74: ~0.83M parameters at D = 192)."""
    max_offset: int = 50
    """Hindsight goals are 1..max_offset env steps ahead; steps left is scaled by it."""


class PolicyHead(nn.Module):
    """MLP on [z, g, g - z, steps_left / max_offset] -> one normalised action block.

    The difference g - z is given explicitly because the action mostly depends
    on where the goal is relative to now, which an MLP otherwise has to learn.
    """

    def __init__(self, embed_dim: int, block_dim: int, cfg: PolicyHeadConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.embed_dim, self.block_dim = embed_dim, block_dim
        self.net = mlp_stack(3 * embed_dim + 1, cfg.hidden, cfg.layers, block_dim, norm=True)

    def forward(self, z: Tensor, goal: Tensor, steps_left: Tensor | float) -> Tensor:
        """z (N, D), goal (N, D), steps_left (N,) or a number, env steps -> (N, block_dim)."""
        s = torch.as_tensor(steps_left, dtype=z.dtype, device=z.device)
        s = (s / self.cfg.max_offset).expand(z.shape[0]).unsqueeze(-1)  # (N, 1)
        x = torch.cat([z, goal, goal - z, s], dim=-1)  # (N, 3D+1)
        return self.net(x)  # (N, block_dim)


class _Triples:
    """Hindsight (z_t, z_{t+k}, k, action block at t) triples over embedded episodes.

    The pairs come from `HindsightSampler`, as GCBC's: the same seed draws the same pairs.
    """

    def __init__(self, emb: Tensor, blocks: Tensor, sampler: HindsightSampler) -> None:
        self.emb = emb  # (N_frames, D)
        self.blocks = blocks  # (N_starts, fs*A) normalised action block at each valid start
        self.sampler = sampler

    def sample(self, rng: np.random.Generator, size: int) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """z (B, D), goal (B, D), steps to the goal k (B,), action blocks (B, fs*A)."""
        b = self.sampler.sample(rng, size)
        dev = self.emb.device
        z = self.emb[torch.from_numpy(b.frame).to(dev)]  # (B, D)
        g = self.emb[torch.from_numpy(b.goal_frame).to(dev)]  # (B, D)
        kt = torch.from_numpy(b.k).to(dev, torch.float32)  # (B,)
        return z, g, kt, self.blocks[torch.from_numpy(b.start).to(dev)]


def _triples(
    split: Dataset,
    model: LeWM,
    normalizer: ActionNormalizer,
    frameskip: int,
    max_offset: int,
    device: torch.device,
    progress: bool,
) -> _Triples:
    """Embed every frame of `split` once and index its (start, action block) pairs."""
    a = split.action_dim
    sampler = HindsightSampler([len(e) for e in split.episodes], frameskip, max_offset)
    emb = embed_frames(model, split_frames(split), device, progress=progress)  # (N_frames, D)
    actions = np.concatenate([e.actions for e in split.episodes])  # (N_actions, A)
    actions = np.asarray(normalizer.normalize(actions), dtype=np.float32)  # (N_actions, A)
    blocks = actions[sampler.action_rows].reshape(len(sampler), frameskip * a)  # (N_starts, fs*A)
    return _Triples(emb, torch.from_numpy(blocks).to(device), sampler)


@dataclass
class PolicyHeadResult:
    head: PolicyHead
    log: list[dict[str, float]]
    """Rows of {step, loss, lr, seconds} (training loss: MSE per action dimension)."""
    heldout_loss: float | None
    """MSE on hindsight triples of the held-out episodes (None without any)."""
    seconds: float
    digest: str


def train_policy_head(
    model: LeWM,
    normalizer: ActionNormalizer,
    dataset: Dataset | str | os.PathLike,
    cfg: PolicyHeadConfig | None = None,
    *,
    device: str | torch.device = "cpu",
    progress: bool = True,
    log_every: int = 50,
) -> PolicyHeadResult:
    """Train a PolicyHead on the frozen embeddings of `model` (the training split only).

    The split is the world model's (`cfg.holdout_fraction`, last episodes held out),
    so the protocol's start/goal pairs stay unseen by the head too.
    """
    cfg = cfg or PolicyHeadConfig()
    dev = torch.device(device)
    train_split, heldout = training_split(dataset, cfg.holdout_fraction, cfg.train_episodes)
    fs, d = model.cfg.frameskip, model.cfg.embed_dim
    t0 = time.perf_counter()
    triples = _triples(train_split, model, normalizer, fs, cfg.max_offset, dev, progress)
    torch.manual_seed(cfg.seed)
    head = PolicyHead(d, model.cfg.action_block_dim, cfg).to(dev)
    rng = np.random.default_rng(cfg.seed)

    def batch_loss() -> Tensor:
        z, g, k, target = triples.sample(rng, cfg.batch_size)  # (B, D) (B, D) (B,) (B, fs*A)
        with autocast_context(dev):
            pred = head(z, g, k)  # (B, fs*A)
        return F.mse_loss(pred.float(), target)

    log = train_loop(
        head,
        cfg,
        batch_loss,
        t0=t0,
        desc="train policy head",
        progress=progress,
        log_every=log_every,
    )
    held = None
    if heldout is not None and len(heldout):
        try:
            ht = _triples(heldout, model, normalizer, fs, cfg.max_offset, dev, False)
        except ValueError:
            ht = None
        if ht is not None:
            with torch.inference_mode():
                z, g, k, target = ht.sample(np.random.default_rng(cfg.seed + 1), 4096)
                held = float(F.mse_loss(head(z, g, k), target))
    return PolicyHeadResult(head, log, held, time.perf_counter() - t0, model_digest(model))


# ------------------------------------------------------------------------ files


def fit_policy_head(
    agent: Any,
    dataset: Dataset | str | os.PathLike,
    *,
    progress: bool = True,
    **head_config_fields: Any,
) -> dict[str, Any]:
    """Train the latent policy head for a `WorldModelAgent` (its frozen model) and attach it.

    Hindsight goals up to `max_offset` env steps ahead in the training split of
    `dataset` (the one LeWM trained on: same held-out episodes). Keyword arguments
    are `PolicyHeadConfig` fields (steps, hidden, ...). The head becomes
    `agent.policy_head` and `agent.save` writes it. Returns its meta.
    """
    cfg = head_config(agent, PolicyHeadConfig, **head_config_fields)
    result = train_policy_head(
        agent.model, agent.normalizer, dataset, cfg, device=agent.device, progress=progress
    )
    agent.policy_head = result.head
    agent.policy_head_meta = training_meta(
        result.digest, result.seconds, result.log, heldout_loss=result.heldout_loss
    )
    return agent.policy_head_meta


def has_policy_head(path: str | os.PathLike) -> bool:
    return has_head(path, POLICY_FILES)


def save_policy_head(path: str | os.PathLike, head: PolicyHead, meta: dict[str, Any]) -> Path:
    """Write policy_head.safetensors then policy_head.json (the config, last) into `path`.

    The hashes are recorded only in a checkpoint that lists them already
    (WorldModelAgent.save, the zoo), so a retrained head is not refused as a damaged one."""
    sizes = {"embed_dim": head.embed_dim, "block_dim": head.block_dim}
    return save_head(path, POLICY_FILES, head, sizes, meta, always_record_hashes=False)


def _build(meta: dict[str, Any]) -> PolicyHead:
    cfg = from_dict(PolicyHeadConfig, meta["config"])
    return PolicyHead(int(meta["embed_dim"]), int(meta["block_dim"]), cfg)


def load_policy_head(
    path: str | os.PathLike, device: str | torch.device = "cpu"
) -> tuple[PolicyHead, dict[str, Any]]:
    """(head in eval mode, its JSON meta) from a checkpoint folder, or a CheckpointError."""
    return load_head(path, POLICY_FILES, _build, device)


__all__ = [
    "PolicyHead",
    "PolicyHeadConfig",
    "PolicyHeadResult",
    "train_policy_head",
    "save_policy_head",
    "load_policy_head",
    "has_policy_head",
    "model_digest",
    "POLICY_FILES",
]
