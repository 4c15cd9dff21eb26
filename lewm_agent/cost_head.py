"""A learned planning cost on FROZEN LeWM embeddings: d(z, z_goal) ~ env steps from z to z_goal.

The planner's default cost, the squared latent distance, weighs every embedding
direction alike, so whatever the agent moves directly (Push-T's pusher) dominates
it and what it moves only through contact (the block's angle) barely registers.
This head is fitted reward-free on the same data instead: for two frames of one
trajectory it regresses the number of env steps between them (hindsight pairs
from `data.HindsightSampler`, as the policy head's), so a direction counts as
much as it costs time to change.

Design choices:

- **Target**: ``log(1 + min(steps, max_gap)) / log(1 + max_gap)`` in [0, 1]. The
  log spends the head's precision near the goal, where the planner has to tell
  an almost-solved plan from a solved one, and keeps far pairs from dominating
  the squared loss. `distance` maps it back to env steps, the unit the planner's
  cost uses (a scale of tens, like the latent cost, so MPPI's temperature means
  about the same thing with either).
- **Far pairs**: a share of the pairs (`far_fraction`) has its goal anywhere
  later in the episode, beyond `max_gap` too, with the target clipped at 1
  ("far"): otherwise the head never sees a pair farther apart than the ones it
  was trained on and extrapolates arbitrarily exactly where a plan starts. A
  small share (`same_fraction`) pairs a frame with itself (target 0), so
  d(z, z) is about 0.
- **Asymmetric input** [z, g, g - z]: time only runs forward in the data, and
  undoing a move need not take as long as making it, so d(a, b) != d(b, a) in
  general; the explicit difference spares the MLP learning it (as the policy head).
  The output is a softplus, so d >= 0.
- **Predicted embeddings**: at planning time the head scores the predictor's
  outputs, not encoder outputs, and a search that optimises a cost finds the
  inputs where the head is wrong. So `predicted_fraction` of every batch pairs
  an embedding the frozen predictor rolled 1..`pred_blocks` blocks from a real
  context, with the data's own actions, with a later real goal frame (target:
  the steps from the frame that prediction stands for).

Stored in the checkpoint folder beside the world model: `cost_head.safetensors`
+ `cost_head.json` (config, sizes, training log and the `model_digest` of the
world model it was trained on, so a head left over from an older model is
refused when the cost needs it). No pickle.
"""

from __future__ import annotations

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

from .config import from_dict, replace
from .data import Dataset, HindsightSampler
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

COST_HEAD_FILES = HeadFiles("cost_head", "cost head", 1, "lewm train-cost")
COST_FILES = COST_HEAD_FILES.names
COST_WEIGHTS_FILE, COST_CONFIG_FILE = COST_FILES
COST_FORMAT_VERSION = COST_HEAD_FILES.format_version
TRAIN_HINT = f"{COST_HEAD_FILES.command} RUN --data DATA"
"""The command that makes a cost head (named by every error about a missing one)."""


@dataclass(frozen=True)
class CostHeadConfig(HeadTrainConfig):
    """Architecture and training of the learned goal-distance cost (training: HeadTrainConfig)."""

    hidden: int = 256
    """Width of the MLP's hidden layers."""
    layers: int = 3
    """Hidden layers of the MLP."""
    max_gap: int = 64
    """Env steps at which the target saturates ("far"); farther pairs get the same target."""
    far_fraction: float = 0.25
    """Share of pairs whose goal may lie anywhere later in the episode (beyond max_gap too)."""
    same_fraction: float = 0.05
    """Share of pairs whose goal is the start frame itself (target 0)."""
    predicted_fraction: float = 0.5
    """Share of each batch whose start is a predicted embedding, not an encoded frame."""
    pred_blocks: int = 5
    """Predicted starts are rolled 1..pred_blocks action blocks (the planning horizon)."""
    pred_pool: int = 16384
    """Predicted (embedding, goal, steps) triples computed once before training."""


class CostHead(nn.Module):
    """MLP on [z, g, g - z] -> softplus -> the normalised log-distance (see the module doc)."""

    def __init__(self, embed_dim: int, cfg: CostHeadConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.embed_dim = embed_dim
        self.net = mlp_stack(3 * embed_dim, cfg.hidden, cfg.layers, 1, norm=True)

    def forward(self, z: Tensor, goal: Tensor) -> Tensor:
        """z (N, D), goal (N, D) -> (N,) normalised log-distance, >= 0 (about 1 = far)."""
        x = torch.cat([z, goal, goal - z], dim=-1)  # (N, 3D)
        return F.softplus(self.net(x).squeeze(-1))  # (N,)

    def distance(self, z: Tensor, goal: Tensor) -> Tensor:
        """z (N, D), goal (N, D) -> (N,) estimated env steps from z to goal (>= 0).

        The planner's "learned" cost; saturates near `max_gap` for far pairs."""
        scale = math.log1p(self.cfg.max_gap)
        # float32 before the exponential: under bf16 autocast the steps would be
        # quantised to ~3 significant digits and CEM's ranking would tie.
        return torch.expm1(self.forward(z, goal).float() * scale)  # (N,)


def target_of(steps: np.ndarray | Tensor, max_gap: int) -> Tensor:
    """Env steps (N,) -> the regression target (N,): log1p(min(steps, max_gap)) / log1p(max_gap)."""
    s = torch.as_tensor(steps, dtype=torch.float32).clamp(0, max_gap)
    return torch.log1p(s) / math.log1p(max_gap)


class _Pairs:
    """(start embedding, goal embedding, steps) pairs, from real frames and predictions."""

    def __init__(
        self,
        emb: Tensor,
        near: HindsightSampler,
        far: HindsightSampler,
        cfg: CostHeadConfig,
        pred: tuple[Tensor, Tensor, Tensor] | None,
    ) -> None:
        self.emb = emb  # (N_frames, D)
        self.near, self.far, self.cfg = near, far, cfg
        self.pred = pred  # (P, D) predicted embeddings, (P,) goal frame rows, (P,) steps

    def real(self, rng: np.random.Generator, size: int) -> tuple[np.ndarray, np.ndarray]:
        """(start frame rows (B,), steps to the goal (B,)) of `size` hindsight pairs."""
        n_far = int(rng.binomial(size, self.cfg.far_fraction))
        parts = [self.near.sample(rng, size - n_far), self.far.sample(rng, n_far)]
        frame = np.concatenate([b.frame for b in parts])  # (B,)
        k = np.concatenate([b.k for b in parts])  # (B,)
        k[rng.random(size) < self.cfg.same_fraction] = 0  # the frame itself
        return frame, k

    def sample(self, rng: np.random.Generator, size: int) -> tuple[Tensor, Tensor, Tensor]:
        """z (B, D), goal (B, D), steps (B,) float, real pairs first, then predicted ones."""
        dev = self.emb.device
        n_pred = int(rng.binomial(size, self.cfg.predicted_fraction)) if self.pred else 0
        frame, k = self.real(rng, size - n_pred)
        z = self.emb[torch.from_numpy(frame).to(dev)]  # (B_r, D)
        g = self.emb[torch.from_numpy(frame + k).to(dev)]  # (B_r, D)
        steps = torch.from_numpy(k).to(dev, torch.float32)  # (B_r,)
        if n_pred:
            pz, pgoal, psteps = self.pred
            i = torch.from_numpy(rng.integers(0, len(pz), size=n_pred)).to(dev)  # (B_p,)
            z = torch.cat([z, pz[i]])
            g = torch.cat([g, self.emb[pgoal[i]]])
            steps = torch.cat([steps, psteps[i]])
        return z, g, steps


@torch.inference_mode()
def _predicted_pool(
    model: LeWM,
    emb: Tensor,
    actions: Tensor,
    lengths: np.ndarray,
    near: HindsightSampler,
    far: HindsightSampler,
    cfg: CostHeadConfig,
    rng: np.random.Generator,
    device: torch.device,
) -> tuple[Tensor, Tensor, Tensor] | None:
    """Predicted starts paired with later real goals: (P, D) embeddings, (P,) goal rows, (P,) steps.

    A hindsight pair (t, k) of the samplers gives a real context ending at frame t
    (`history` frames `frameskip` apart, the blocks between them from the data) and
    m = 1..pred_blocks blocks of the data's own actions; the predictor's embedding
    after them stands for frame t + m*fs, k - m*fs steps before the goal. Pairs whose
    goal lies before that frame, or whose context or rollout leaves the episode, are
    dropped. None when no pair fits (episodes too short).
    """
    fs, hist = model.cfg.frameskip, model.cfg.history
    n_draw = cfg.pred_pool * 3  # about a third of the draws fit when goals are near
    n_far = int(rng.binomial(n_draw, cfg.far_fraction))
    draws = [near.sample(rng, n_draw - n_far), far.sample(rng, n_far)]
    ep = np.concatenate([b.episode for b in draws])  # (N,)
    t = np.concatenate([b.t for b in draws])
    k = np.concatenate([b.k for b in draws])
    frame = np.concatenate([b.frame for b in draws])
    m = rng.integers(1, cfg.pred_blocks + 1, size=len(t))  # (N,) rolled blocks
    ok = (t >= (hist - 1) * fs) & (k >= m * fs) & (t + m * fs <= lengths[ep])
    # shuffled before the cut: the draws are near ones first, then far ones
    keep = rng.permutation(np.flatnonzero(ok))[: cfg.pred_pool]
    if len(keep) == 0:
        return None
    ep, t, k, frame, m = ep[keep], t[keep], k[keep], frame[keep], m[keep]
    action_off = np.concatenate([[0], np.cumsum(lengths)[:-1]])  # (E,)
    a = actions.shape[1]
    zs, goals, steps = [], [], []
    for mm in np.unique(m):
        sel = np.flatnonzero(m == mm)
        for lo in range(0, len(sel), 1024):
            s = sel[lo : lo + 1024]
            # context frames t - (h-1)*fs .. t, and the blocks from t - (h-1)*fs onwards
            ctx_rows = frame[s, None] + fs * np.arange(-(hist - 1), 1)[None, :]  # (b, h)
            first = action_off[ep[s]] + t[s] - (hist - 1) * fs  # (b,)
            rows = first[:, None] + np.arange((hist - 1 + mm) * fs)[None, :]  # (b, (h-1+m)*fs)
            blocks = actions[torch.from_numpy(rows).to(device)].reshape(
                len(s), hist - 1 + mm, fs * a
            )
            z_ctx = emb[torch.from_numpy(ctx_rows).to(device)]  # (b, h, D)
            past = blocks[:, : hist - 1] if hist > 1 else None  # (b, h-1, fs*A)
            with autocast_context(device):
                pred = model.rollout(z_ctx, past, blocks[:, hist - 1 :])[:, -1].float()  # (b, D)
            zs.append(pred)
            goals.append(torch.from_numpy(frame[s] + k[s]).to(device))
            steps.append(torch.from_numpy(k[s] - mm * fs).to(device, torch.float32))
    return torch.cat(zs), torch.cat(goals), torch.cat(steps)


def _pairs(
    split: Dataset,
    model: LeWM,
    normalizer: Any,
    cfg: CostHeadConfig,
    rng: np.random.Generator,
    device: torch.device,
    progress: bool,
) -> _Pairs:
    """Embed every frame of `split` once; draw the predicted pool (if `predicted_fraction`)."""
    fs = model.cfg.frameskip
    lengths = np.asarray([len(e) for e in split.episodes], dtype=np.int64)  # (E,)
    near = HindsightSampler(lengths, fs, cfg.max_gap)
    far = HindsightSampler(lengths, fs, max(cfg.max_gap, int(lengths.max())))
    emb = embed_frames(model, split_frames(split), device, progress=progress)  # (N_frames, D)
    pred = None
    if cfg.predicted_fraction > 0:
        actions = np.concatenate([e.actions for e in split.episodes])  # (N_actions, A)
        actions = np.asarray(normalizer.normalize(actions), dtype=np.float32)
        act = torch.from_numpy(actions).to(device)  # (N_actions, A)
        pred = _predicted_pool(model, emb, act, lengths, near, far, cfg, rng, device)
    return _Pairs(emb, near, far, cfg, pred)


def spearman(x: np.ndarray | Tensor, y: np.ndarray | Tensor) -> float:
    """Spearman rank correlation of two (N,) vectors (ties ranked by order: fine for a check)."""
    rx = np.argsort(np.argsort(np.asarray(x, dtype=np.float64)))
    ry = np.argsort(np.argsort(np.asarray(y, dtype=np.float64)))
    return float(np.corrcoef(rx, ry)[0, 1])


@dataclass
class CostHeadResult:
    head: CostHead
    log: list[dict[str, float]]
    """Rows of {step, loss, lr, seconds} (loss: MSE of the normalised log-distance)."""
    heldout_loss: float | None
    """MSE on real pairs (near and far) of the held-out episodes (None without any)."""
    heldout_spearman: float | None
    """Rank correlation of `distance` with the steps on held-out pairs 1..max_gap apart."""
    seconds: float
    digest: str


@torch.inference_mode()
def heldout_check(head: CostHead, pairs: _Pairs, seed: int, n: int = 4096) -> tuple[float, float]:
    """(MSE on n real pairs, Spearman of `distance` vs steps on near pairs k >= 1)."""
    rng = np.random.default_rng(seed)
    frame, k = pairs.real(rng, n)
    dev = pairs.emb.device
    z = pairs.emb[torch.from_numpy(frame).to(dev)]
    g = pairs.emb[torch.from_numpy(frame + k).to(dev)]
    loss = float(F.mse_loss(head(z, g), target_of(k, head.cfg.max_gap).to(dev)))
    b = pairs.near.sample(rng, n)
    z = pairs.emb[torch.from_numpy(b.frame).to(dev)]
    g = pairs.emb[torch.from_numpy(b.goal_frame).to(dev)]
    return loss, spearman(head.distance(z, g).cpu(), b.k)


def train_cost_head(
    model: LeWM,
    normalizer: Any,
    dataset: Dataset | str | os.PathLike,
    cfg: CostHeadConfig | None = None,
    *,
    device: str | torch.device = "cpu",
    progress: bool = True,
    log_every: int = 50,
) -> CostHeadResult:
    """Train a CostHead on the frozen embeddings (and predictions) of `model`, training split only.

    `normalizer` is the world model's ActionNormalizer (the predictor reads
    normalised action blocks). The split is the world model's, so the protocol's
    held-out episodes stay unseen by the head too.
    """
    cfg = cfg or CostHeadConfig()
    dev = torch.device(device)
    train_split, heldout = training_split(dataset, cfg.holdout_fraction, cfg.train_episodes)
    t0 = time.perf_counter()
    rng = np.random.default_rng(cfg.seed)
    model.eval()
    pairs = _pairs(train_split, model, normalizer, cfg, rng, dev, progress)
    torch.manual_seed(cfg.seed)
    head = CostHead(model.cfg.embed_dim, cfg).to(dev)

    def batch_loss() -> Tensor:
        z, g, steps = pairs.sample(rng, cfg.batch_size)  # (B, D) (B, D) (B,)
        with autocast_context(dev):
            pred = head(z, g)  # (B,)
        return F.mse_loss(pred.float(), target_of(steps, cfg.max_gap).to(dev))

    log = train_loop(
        head,
        cfg,
        batch_loss,
        t0=t0,
        desc="train cost head",
        progress=progress,
        log_every=log_every,
    )
    held_loss = held_rho = None
    if heldout is not None and len(heldout):
        try:
            held_pairs = _pairs(
                heldout, model, normalizer, replace_pred(cfg), rng, dev, progress=False
            )
        except ValueError:  # held-out episodes too short for a pair
            held_pairs = None
        if held_pairs is not None:
            held_loss, held_rho = heldout_check(head, held_pairs, cfg.seed + 1)
    return CostHeadResult(
        head, log, held_loss, held_rho, time.perf_counter() - t0, model_digest(model)
    )


def replace_pred(cfg: CostHeadConfig) -> CostHeadConfig:
    """`cfg` without predicted pairs (the held-out check scores encoded frames only)."""
    return replace(cfg, predicted_fraction=0.0)


def fit_cost_head(
    agent: Any,
    dataset: Dataset | str | os.PathLike,
    *,
    progress: bool = True,
    **head_config_fields: Any,
) -> tuple[CostHead, dict[str, Any]]:
    """Train a cost head for a `WorldModelAgent` (its frozen model) and attach it.

    The split is the agent's training config's (held-out fraction, training
    episodes), as `fit_policy_head`'s. Keyword arguments are `CostHeadConfig`
    fields. The head becomes the agent's controller's `cost_head` (so plans with
    cost "learned" use it at once) and `agent.save` writes it. Returns (head, meta).
    """
    cfg = head_config(agent, CostHeadConfig, **head_config_fields)
    result = train_cost_head(
        agent.model, agent.normalizer, dataset, cfg, device=agent.device, progress=progress
    )
    meta = training_meta(
        result.digest,
        result.seconds,
        result.log,
        heldout_loss=result.heldout_loss,
        heldout_spearman=result.heldout_spearman,
    )
    agent.controller.cost_head, agent.cost_head_meta = result.head, meta
    return result.head, meta


# ------------------------------------------------------------------------ files
def has_cost_head(path: str | os.PathLike) -> bool:
    return has_head(path, COST_HEAD_FILES)


def save_cost_head(path: str | os.PathLike, head: CostHead, meta: dict[str, Any]) -> Path:
    """Write cost_head.safetensors then cost_head.json (the config, last) into `path`.

    Unlike the policy head's, the hashes are recorded in any checkpoint folder, not
    only one that lists them already: the cost decides what the planner optimises,
    so a changed cost file must be refused at load wherever the head came from."""
    sizes = {"embed_dim": head.embed_dim}
    return save_head(path, COST_HEAD_FILES, head, sizes, meta, always_record_hashes=True)


def _build(meta: dict[str, Any]) -> CostHead:
    return CostHead(int(meta["embed_dim"]), from_dict(CostHeadConfig, meta["config"]))


def load_cost_head(
    path: str | os.PathLike, device: str | torch.device = "cpu"
) -> tuple[CostHead, dict[str, Any]]:
    """(head in eval mode, its JSON meta) from a checkpoint folder, or a CheckpointError."""
    return load_head(path, COST_HEAD_FILES, _build, device)


__all__ = [
    "COST_CONFIG_FILE",
    "COST_FILES",
    "COST_HEAD_FILES",
    "COST_WEIGHTS_FILE",
    "CostHead",
    "CostHeadConfig",
    "CostHeadResult",
    "fit_cost_head",
    "has_cost_head",
    "load_cost_head",
    "save_cost_head",
    "spearman",
    "target_of",
    "train_cost_head",
]
