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

import hashlib
import json
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from tqdm.auto import tqdm

from .atomic import atomic_path
from .checkpoint import CONFIG_FILE, HASHES_KEY, CheckpointError, record_file_hashes, write_json
from .config import from_dict, replace, to_dict
from .data import ActionNormalizer, Dataset, HindsightSampler, load_dataset
from .device import autocast_context
from .model import LeWM
from .networks import mlp_stack

HEAD_WEIGHTS_FILE = "policy_head.safetensors"
HEAD_CONFIG_FILE = "policy_head.json"
HEAD_FORMAT_VERSION = 1


@dataclass(frozen=True)
class PolicyHeadConfig:
    """Architecture and training of the latent policy head."""

    hidden: int = 512
    """Width of the MLP's hidden layers."""
    layers: int = 3
    """Hidden layers (3 x 512 as in le-wm issue #74: ~0.83M parameters at D = 192)."""
    max_offset: int = 50
    """Hindsight goals are 1..max_offset env steps ahead; steps left is scaled by it."""
    steps: int = 3000
    """Optimiser steps."""
    batch_size: int = 256
    """(state, goal, action block) triples per step."""
    lr: float = 1e-3
    """Peak AdamW learning rate (cosine decay to 0, short warm-up)."""
    weight_decay: float = 1e-4
    """AdamW weight decay."""
    seed: int = 0
    """Seed of the weights and the sampled triples."""
    holdout_fraction: float = 0.1
    """Episodes held out (the last ones, as LeWM's split); set from the world model's."""
    train_episodes: int = 0
    """Only the first N training episodes (0 = all): the world model's `train_episodes`."""

    def __post_init__(self) -> None:
        from .validation import check_config_fields

        check_config_fields(self)


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


def model_digest(model: LeWM) -> str:
    """sha256 of the world model's weights (to tie a head to the model it was trained on)."""
    h = hashlib.sha256()
    for name, t in sorted(model.state_dict().items()):
        h.update(name.encode())
        h.update(t.detach().to("cpu", torch.float32).contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


@torch.inference_mode()
def _embed_frames(
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
    frames = (
        split.frames[split.frame_offsets[0] : split.frame_offsets[-1] + len(split[-1]) + 1]
        if split.frames is not None and split.frame_offsets is not None
        else np.concatenate([e.pixels for e in split.episodes])
    )  # (N_frames, H, W, 3): the split's episodes are contiguous in the shared buffer
    emb = _embed_frames(model, frames, device, progress=progress)  # (N_frames, D)
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
    data = dataset if isinstance(dataset, Dataset) else load_dataset(dataset, skip_corrupt=True)
    train_split, heldout = data.split(cfg.holdout_fraction) if len(data) > 1 else (data, None)
    if cfg.train_episodes > 0:  # the prefix the world model trained on
        train_split = train_split.head(cfg.train_episodes)
    fs, d = model.cfg.frameskip, model.cfg.embed_dim
    t0 = time.perf_counter()
    triples = _triples(train_split, model, normalizer, fs, cfg.max_offset, dev, progress)
    torch.manual_seed(cfg.seed)
    head = PolicyHead(d, model.cfg.action_block_dim, cfg).to(dev)
    opt = torch.optim.AdamW(head.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    rng = np.random.default_rng(cfg.seed)
    warmup = max(1, min(100, cfg.steps // 10))
    log: list[dict[str, float]] = []
    bar = tqdm(range(cfg.steps), desc="train policy head", disable=not progress, unit="step")
    head.train()
    for step in bar:
        lr = cfg.lr * min(1.0, (step + 1) / warmup)
        lr *= 0.5 * (1 + math.cos(math.pi * step / max(1, cfg.steps)))
        for group in opt.param_groups:
            group["lr"] = lr
        z, g, k, target = triples.sample(rng, cfg.batch_size)  # (B, D) (B, D) (B,) (B, fs*A)
        with autocast_context(dev):
            pred = head(z, g, k)  # (B, fs*A)
        loss = F.mse_loss(pred.float(), target)
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
    agent: Any, dataset: Dataset | str | os.PathLike, *, progress: bool = True, **head_config: Any
) -> dict[str, Any]:
    """Train the latent policy head for a `WorldModelAgent` (its frozen model) and attach it.

    Hindsight goals up to `max_offset` env steps ahead in the training split of
    `dataset` (the one LeWM trained on: same held-out episodes). Keyword arguments
    are `PolicyHeadConfig` fields (steps, hidden, ...). The head becomes
    `agent.policy_head` and `agent.save` writes it. Returns its meta.
    """
    tc = agent.train_config
    cfg = PolicyHeadConfig(
        holdout_fraction=tc.holdout_fraction if tc else 0.1,
        train_episodes=tc.train_episodes if tc else 0,
    )
    cfg = replace(cfg, **head_config)
    result = train_policy_head(
        agent.model, agent.normalizer, dataset, cfg, device=agent.device, progress=progress
    )
    agent.policy_head = result.head
    agent.policy_head_meta = {
        "model_digest": result.digest,
        "training": {
            "seconds": result.seconds,
            "final_loss": result.log[-1]["loss"] if result.log else None,
            "first_loss": result.log[0]["loss"] if result.log else None,
            "heldout_loss": result.heldout_loss,
            "log": result.log,
        },
    }
    return agent.policy_head_meta


def has_policy_head(path: str | os.PathLike) -> bool:
    folder = Path(path)
    return (folder / HEAD_WEIGHTS_FILE).is_file() and (folder / HEAD_CONFIG_FILE).is_file()


def save_policy_head(path: str | os.PathLike, head: PolicyHead, meta: dict[str, Any]) -> Path:
    """Write policy_head.safetensors then policy_head.json (the config, last) into `path`."""
    from safetensors.torch import save_file

    folder = Path(path)
    folder.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.detach().to("cpu").contiguous() for k, v in head.state_dict().items()}
    with atomic_path(folder / HEAD_WEIGHTS_FILE) as tmp:
        save_file(tensors, str(tmp), metadata={"format": "pt"})
    config = {
        "format_version": HEAD_FORMAT_VERSION,
        "config": to_dict(head.cfg),
        "embed_dim": head.embed_dim,
        "block_dim": head.block_dim,
        **meta,
    }
    write_json(folder / HEAD_CONFIG_FILE, config)
    # A checkpoint that lists the head's hashes (WorldModelAgent.save, the zoo) keeps
    # them current, so a retrained head is not refused as a damaged one.
    hashes = _listed_hashes(folder)
    if HEAD_WEIGHTS_FILE in hashes or HEAD_CONFIG_FILE in hashes:
        record_file_hashes(folder, (HEAD_WEIGHTS_FILE, HEAD_CONFIG_FILE))
    return folder / HEAD_WEIGHTS_FILE


def _listed_hashes(folder: Path) -> dict[str, Any]:
    """The file hashes of the checkpoint in `folder` (empty without one)."""
    try:
        hashes = json.loads((folder / CONFIG_FILE).read_text()).get(HASHES_KEY)
    except (OSError, ValueError, AttributeError):
        return {}
    return hashes if isinstance(hashes, dict) else {}


def load_policy_head(
    path: str | os.PathLike, device: str | torch.device = "cpu"
) -> tuple[PolicyHead, dict[str, Any]]:
    """(head in eval mode, its JSON meta) from a checkpoint folder."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    folder = Path(path)
    cfg_path, weights = folder / HEAD_CONFIG_FILE, folder / HEAD_WEIGHTS_FILE
    try:
        meta = json.loads(cfg_path.read_text())
        if meta.get("format_version") != HEAD_FORMAT_VERSION:
            raise ValueError(f"format_version {meta.get('format_version')!r}")
        cfg = from_dict(PolicyHeadConfig, meta["config"])
        head = PolicyHead(int(meta["embed_dim"]), int(meta["block_dim"]), cfg)
        head.load_state_dict(load_file(str(weights), device="cpu"))
    except (OSError, ValueError, KeyError, TypeError, RuntimeError, SafetensorError) as e:
        raise CheckpointError(
            f"policy head in {folder} is missing or corrupt ({e}); retrain it with "
            f"`lewm train-policy {folder} --data DATA`"
        ) from e
    return head.to(device).eval(), meta


__all__ = [
    "PolicyHead",
    "PolicyHeadConfig",
    "PolicyHeadResult",
    "train_policy_head",
    "save_policy_head",
    "load_policy_head",
    "has_policy_head",
    "model_digest",
]
