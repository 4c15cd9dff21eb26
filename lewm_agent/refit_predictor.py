"""A new predictor on a FROZEN encoder: LeWM's prediction loss on cached embeddings.

Training LeWM end to end runs the encoder on every frame of every batch, which is
most of a CPU training step. With the encoder (and its projector) frozen, every
frame is embedded once and a fresh predictor trains on the cached embeddings: many
times more steps per second, with any history length or predictor size. The
embedding space is unchanged (the latent cost, every goal embedding, the cost's
geometry): only how well the model predicts in it changes. It is the cheap way to
pair an encoder whose geometry plans well with a predictor that keeps up.

The split is the world model's (its held-out fraction; the protocol's pairs stay
unseen), the loss LeWM's teacher-forced next-embedding MSE on windows of
``history + 1`` frames ``frameskip`` steps apart. The held-out report is the
open-loop rollout error per planned block, for the run's own predictor and the new
one on the same windows.

The policy and cost heads of the source run are not carried over: their files are
tied to the whole model's digest (retrain them with `lewm train-policy` /
`lewm train-cost`).
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from tqdm.auto import tqdm

from .config import ModelConfig, replace
from .data import Dataset, DatasetError
from .data.windows import WindowSampler
from .device import autocast_context
from .heads import embed_frames, split_frames, training_split
from .model import LeWM
from .validation import ConfigError

__all__ = ["PREDICTOR_FIELDS", "PredictorRefitConfig", "refit_predictor"]

PREDICTOR_FIELDS: tuple[str, ...] = (
    "history",
    "pred_depth",
    "pred_heads",
    "pred_head_dim",
    "pred_mlp",
    "pred_dropout",
    "action_mlp_ratio",
)
"""ModelConfig fields a refit may change: the predictor's and the action embedder's, not the encoder's."""


@dataclass(frozen=True)
class PredictorRefitConfig:
    """How the new predictor is trained."""

    steps: int = 8000
    batch_size: int = 128
    lr: float = 5e-4
    """Peak AdamW learning rate (linear warm-up, cosine decay)."""
    weight_decay: float = 1e-3
    warmup_steps: int = 200
    grad_clip: float = 1.0
    seed: int = 0
    eval_windows: int = 2000
    """Held-out windows for the per-block rollout error."""
    eval_blocks: int = 5
    """Planned blocks rolled out open-loop in the held-out report (the plan horizon)."""
    model: dict[str, Any] = field(default_factory=dict)
    """ModelConfig overrides, only :data:`PREDICTOR_FIELDS` (e.g. {"history": 3})."""

    def __post_init__(self) -> None:
        for name in ("steps", "batch_size", "eval_windows", "eval_blocks"):
            if int(getattr(self, name)) < 1:
                raise ConfigError(f"PredictorRefitConfig.{name} must be >= 1")
        if not self.lr > 0 or self.weight_decay < 0 or self.grad_clip <= 0:
            raise ConfigError(
                "PredictorRefitConfig: lr and grad_clip must be > 0, weight_decay >= 0"
            )
        bad = sorted(set(self.model) - set(PREDICTOR_FIELDS))
        if bad:
            raise ConfigError(
                f"a predictor refit cannot change {bad}: the encoder is frozen; "
                f"only {list(PREDICTOR_FIELDS)} may change (retrain with `lewm train` otherwise)"
            )


class _Cache:
    """Every frame's embedding of one split, and its windows (frame rows + action blocks)."""

    def __init__(
        self,
        split: Dataset,
        model: LeWM,
        normalizer: Any,
        frames: int,
        device: torch.device,
        seed: int,
        progress: bool,
    ) -> None:
        fs = model.cfg.frameskip
        self.sampler = WindowSampler(split, num_frames=frames, frameskip=fs, seed=seed)
        self.z = embed_frames(model, split_frames(split), device, progress=progress)  # (N, D)
        lengths = np.array([len(e) + 1 for e in split.episodes], dtype=np.int64)  # frames
        self.first = np.concatenate([[0], np.cumsum(lengths)[:-1]])  # (E,) row of frame 0
        self.k = np.arange(frames, dtype=np.int64) * fs  # (F,)
        self.normalizer = normalizer
        self.device = device

    def windows(self, n: int, rng: np.random.Generator) -> tuple[Tensor, Tensor]:
        """n windows: embeddings (n, F, D) and normalised action blocks (n, F, fs*A)."""
        ep, t = self.sampler.sample_indices(n, rng)  # (n,), (n,)
        rows = self.first[ep][:, None] + t[:, None] + self.k[None, :]  # (n, F)
        actions = self.sampler.gather_actions(ep, t)  # (n, F, fs*A) env units
        a = self.normalizer.normalize(
            actions.reshape(n, len(self.k), -1, self.normalizer.action_dim)
        )
        a = np.asarray(a, dtype=np.float32).reshape(n, len(self.k), -1)  # (n, F, fs*A)
        return self.z[torch.from_numpy(rows).to(self.z.device)], torch.from_numpy(a).to(self.device)


@torch.inference_mode()
def _rollout_error(model: LeWM, z: Tensor, a: Tensor, context: int, blocks: int) -> list[float]:
    """Mean squared error per planned block of an open-loop rollout.

    z (n, C + B, D), a (n, C + B, fs*A) with C >= `model`'s history; the model sees the
    last min(C, history) context frames and the blocks between them."""
    h = min(model.cfg.history, context)
    z_ctx = z[:, context - h : context]  # (n, h, D)
    past = a[:, context - h : context - 1] if h > 1 else None  # (n, h - 1, fs*A)
    plan = a[:, context - 1 : context - 1 + blocks]  # (n, B, fs*A)
    with autocast_context(z.device):
        pred = model.rollout(z_ctx, past, plan).float()  # (n, B, D)
    err = (pred - z[:, context : context + blocks]).square().sum(-1).mean(0)  # (B,)
    return [round(float(e), 3) for e in err]


def _new_model(source: LeWM, overrides: dict[str, Any], seed: int) -> LeWM:
    """A LeWM with `source`'s encoder and projector (frozen) and a fresh predictor."""
    cfg: ModelConfig = replace(source.cfg, **overrides)
    torch.manual_seed(seed)
    model = LeWM(cfg)
    frozen = {
        k: v for k, v in source.state_dict().items() if k.startswith(("encoder.", "enc_proj."))
    }
    missing, unexpected = model.load_state_dict(frozen, strict=False)
    assert not unexpected and all(not k.startswith(("encoder.", "enc_proj.")) for k in missing)
    for p in (*model.encoder.parameters(), *model.enc_proj.parameters()):
        p.requires_grad_(False)
    return model


def refit_predictor(
    agent: Any,
    dataset: Dataset | str | os.PathLike[str],
    cfg: PredictorRefitConfig | None = None,
    *,
    progress: bool = True,
    log_every: int = 100,
) -> tuple[Any, dict[str, Any]]:
    """Train a fresh predictor on `agent`'s frozen embeddings of `dataset` (its training split).

    Returns (a new WorldModelAgent with the same encoder, normaliser, bounds, plan and
    env, and the new predictor; a JSON-ready report: config, seconds, log, held-out
    rollout error per block of the source and the new predictor)."""
    from .agent import WorldModelAgent

    cfg = cfg or PredictorRefitConfig()
    dev = agent.device
    source: LeWM = agent.model.eval()
    tc = agent.train_config
    holdout = tc.holdout_fraction if tc else 0.1
    train_split, heldout = training_split(dataset, holdout, tc.train_episodes if tc else 0)
    size = int(train_split.meta.get("image_size", source.cfg.image_size))
    if size != source.cfg.image_size:
        raise ConfigError(
            f"the dataset's frames are {size} px but the model sees {source.cfg.image_size} px: "
            f"pass the dataset it was trained on (or `lewm data rerender DATA --out DATA2 "
            f"--image-size {source.cfg.image_size}`)"
        )
    model = _new_model(source, dict(cfg.model), cfg.seed).to(dev)
    h = model.cfg.history
    t0 = time.perf_counter()
    train = _Cache(train_split, model, agent.normalizer, h + 1, dev, cfg.seed, progress)

    held: dict[str, Any] | None = None
    if heldout is not None and len(heldout):
        context = max(h, source.cfg.history)
        try:
            hc = _Cache(
                heldout, model, agent.normalizer, context + cfg.eval_blocks, dev, cfg.seed, False
            )
        except DatasetError as err:  # held-out episodes too short for the report's windows
            hc = None
            held = {"skipped": str(err)}
        if hc is not None:
            z_h, a_h = hc.windows(cfg.eval_windows, np.random.default_rng([cfg.seed, 1]))
            held = {
                "windows": cfg.eval_windows,
                "source": _rollout_error(source, z_h, a_h, context, cfg.eval_blocks),
            }

    modules = nn.ModuleList([model.action_embed, model.predictor, model.pred_proj])
    params = [p for p in modules.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    rng = np.random.default_rng([cfg.seed, 0])
    log: list[dict[str, float]] = []
    warmup = max(1, min(cfg.warmup_steps, cfg.steps // 10))
    bar = tqdm(range(cfg.steps), desc="refit predictor", disable=not progress, unit="step")
    model.eval()
    modules.train()  # dropout in the predictor; the frozen encoder is never run here
    for step in bar:
        lr = cfg.lr * min(1.0, (step + 1) / warmup)
        lr *= 0.5 * (1 + math.cos(math.pi * step / cfg.steps))
        for group in opt.param_groups:
            group["lr"] = lr
        z, a = train.windows(cfg.batch_size, rng)  # (B, h+1, D), (B, h+1, fs*A)
        with autocast_context(dev):
            pred = model.predict(z[:, :-1], a[:, :-1])  # (B, h, D): frames 1..h
        loss = F.mse_loss(pred.float(), z[:, 1:])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip)
        opt.step()
        if step % log_every == 0 or step == cfg.steps - 1:
            row = {"step": step, "loss": float(loss.detach()), "lr": lr}
            row["seconds"] = time.perf_counter() - t0
            log.append(row)
            bar.set_postfix(loss=f"{row['loss']:.4f}")
    model.eval()
    if held is not None and "source" in held:
        held["refit"] = _rollout_error(model, z_h, a_h, context, cfg.eval_blocks)
    seconds = time.perf_counter() - t0
    report = {
        "config": asdict(cfg),
        "history": h,
        "seconds": seconds,
        "first_loss": log[0]["loss"],
        "final_loss": log[-1]["loss"],
        "heldout_rollout_error": held,
        "log": log,
    }
    stats = {**(agent.training_stats or {}), "predictor_refit": report}
    new = WorldModelAgent(
        model,
        agent.normalizer,
        agent.action_low,
        agent.action_high,
        agent.plan_config,
        train_config=agent.train_config,
        env_id=agent.env_id,
        device=dev,
        training_stats=stats,
        env_build=agent.env_build,
    )
    return new, report
