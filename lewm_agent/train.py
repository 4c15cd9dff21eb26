"""Training loop of LeWM: AdamW, warm-up + cosine, grad clip, CSV log, tqdm.

CPU runs in fp32 (bf16 autocast is 15-20x slower on CPUs without bf16 units);
CUDA runs under bf16 autocast.
"""

from __future__ import annotations

import csv
import math
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from .config import ModelConfig, TrainConfig, replace
from .data import ActionNormalizer, Dataset, WindowSampler, load_dataset
from .model import LeWM
from .sigreg import SIGReg

LOG_FIELDS = ["step", "loss", "pred_loss", "sigreg_loss", "emb_std", "lr", "seconds"]


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """ "auto" -> CUDA when available, else CPU."""
    if str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(
            "device='cuda' requested but CUDA is not available; use device='auto' or 'cpu'"
        )
    return dev


def autocast_context(device: torch.device) -> Any:
    """bf16 autocast on CUDA; a no-op on CPU (fp32 is faster there)."""
    if device.type == "cuda":
        return torch.autocast(device_type="cuda", dtype=torch.bfloat16)
    return torch.autocast(device_type="cpu", enabled=False)


def lr_at(step: int, cfg: TrainConfig) -> float:
    """Linear warm-up to cfg.lr, then cosine decay to 0 at cfg.steps."""
    if step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / cfg.warmup_steps
    progress = (step - cfg.warmup_steps) / max(1, cfg.steps - cfg.warmup_steps)
    return cfg.lr * 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))


def normalize_blocks(
    actions: np.ndarray, normalizer: ActionNormalizer, action_dim: int
) -> np.ndarray:
    """Normalise flattened action blocks (..., frameskip*A) step by step."""
    shape = actions.shape
    steps = actions.reshape(*shape[:-1], -1, action_dim)  # (..., frameskip, A)
    return np.asarray(normalizer.normalize(steps), dtype=np.float32).reshape(shape)


@dataclass
class TrainResult:
    model: LeWM
    normalizer: ActionNormalizer
    model_config: ModelConfig
    train_config: TrainConfig
    dataset_meta: dict[str, Any]
    log: list[dict[str, float]] = field(default_factory=list)
    seconds: float = 0.0


def train(
    dataset: Dataset | str | Path,
    model_cfg: ModelConfig,
    train_cfg: TrainConfig,
    *,
    log_dir: str | Path | None = None,
    device: str | torch.device = "auto",
    progress: bool = True,
) -> TrainResult:
    """Train LeWM on the training split of a recorded dataset.

    The held-out split (`train_cfg.holdout_fraction`, the last episodes) is
    never seen, so the evaluation protocol can draw its start/goal pairs
    from it. The model's `action_dim`, `frameskip` and `image_size` must match
    the dataset; `action_dim` and `image_size` are taken from it when they differ.
    """
    dev = resolve_device(device)
    if train_cfg.threads > 0:
        torch.set_num_threads(train_cfg.threads)
    data = load_dataset(dataset) if not isinstance(dataset, Dataset) else dataset
    train_split, _ = data.split(train_cfg.holdout_fraction) if len(data) > 1 else (data, None)
    meta = dict(data.meta)
    image_size = int(meta["image_size"])
    if model_cfg.action_dim != data.action_dim or model_cfg.image_size != image_size:
        model_cfg = replace(model_cfg, action_dim=data.action_dim, image_size=image_size)

    torch.manual_seed(train_cfg.seed)
    all_actions = np.concatenate([ep.actions for ep in train_split.episodes])  # (N, A)
    normalizer = ActionNormalizer.fit(all_actions)
    sampler = WindowSampler(
        train_split,
        num_frames=model_cfg.history + 1,
        frameskip=model_cfg.frameskip,
        seed=train_cfg.seed,
    )
    model = LeWM(model_cfg).to(dev)
    model.train()
    sigreg = SIGReg(train_cfg.sigreg_directions, train_cfg.sigreg_knots).to(dev)
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        # Biases, norm gains and learned position/CLS tokens are not decayed.
        skip = p.ndim < 2 or name.endswith(("pos_embed", "cls_token"))
        (no_decay if skip else decay).append(p)
    optimizer = torch.optim.AdamW(
        [
            {"params": decay, "weight_decay": train_cfg.weight_decay},
            {"params": no_decay, "weight_decay": 0.0},
        ],
        lr=train_cfg.lr,
        betas=(0.9, 0.999),
        fused=False,
    )
    # SIGReg directions come from their own generator so they do not depend on
    # how many random numbers the rest of the step drew.
    sig_gen = torch.Generator().manual_seed(train_cfg.seed + 1)

    log: list[dict[str, float]] = []
    writer = None
    log_file = None
    if log_dir is not None:
        Path(log_dir).mkdir(parents=True, exist_ok=True)
        log_file = open(Path(log_dir) / "train_log.csv", "w", newline="")  # noqa: SIM115
        writer = csv.DictWriter(log_file, fieldnames=LOG_FIELDS)
        writer.writeheader()
    start = time.perf_counter()
    bar = tqdm(range(train_cfg.steps), desc="train LeWM", disable=not progress, unit="step")
    try:
        for step in bar:
            lr = lr_at(step, train_cfg)
            for group in optimizer.param_groups:
                group["lr"] = lr
            pixels_np, actions_np = sampler.sample(train_cfg.batch_size)  # (B,T,H,W,3), (B,T,A)
            pixels = torch.from_numpy(pixels_np).to(dev, non_blocking=True)
            actions = torch.from_numpy(
                normalize_blocks(actions_np, normalizer, model_cfg.action_dim)
            ).to(dev, non_blocking=True)
            with autocast_context(dev):
                out = model.loss(
                    pixels, actions, sigreg, train_cfg.sigreg_weight, generator=sig_gen
                )
            loss = out["loss"]
            if not torch.isfinite(loss):
                raise FloatingPointError(
                    f"loss became {loss.item()} at step {step}; lower the learning rate "
                    f"(now {train_cfg.lr}) or check the dataset for corrupt actions"
                )
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), train_cfg.grad_clip)
            optimizer.step()
            if step % train_cfg.log_every == 0 or step == train_cfg.steps - 1:
                row = {"step": step, "lr": lr, "seconds": time.perf_counter() - start}
                row.update(
                    {
                        k: float(out[k].detach())
                        for k in ("loss", "pred_loss", "sigreg_loss", "emb_std")
                    }
                )
                log.append(row)
                if writer is not None:
                    writer.writerow(row)
                    log_file.flush()
                bar.set_postfix(
                    pred=f"{row['pred_loss']:.4f}",
                    sig=f"{row['sigreg_loss']:.2f}",
                    std=f"{row['emb_std']:.2f}",
                )
                if step > train_cfg.warmup_steps and row["emb_std"] < 0.05:
                    warnings.warn(
                        f"embeddings look collapsed at step {step} (per-dim std "
                        f"{row['emb_std']:.3f}); raise sigreg_weight",
                        stacklevel=2,
                    )
    finally:
        if log_file is not None:
            log_file.close()
    model.eval()
    return TrainResult(
        model=model,
        normalizer=normalizer,
        model_config=model_cfg,
        train_config=train_cfg,
        dataset_meta={k: v for k, v in meta.items() if k != "episodes"},
        log=log,
        seconds=time.perf_counter() - start,
    )
