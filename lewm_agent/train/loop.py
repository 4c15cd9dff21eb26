"""The training loop (`train`): one process or DDP ranks, resumable, watched.

See `lewm_agent.train` for the promises (precision, multi-process, determinism,
resume); batches come from `batches.py`, the log and its watch from `monitor.py`.

Size (~500 lines): `train()` is one loop whose resume, DDP and logging branches
share its locals; batches and monitoring are split out.
"""

from __future__ import annotations

import csv
import json
import math
import os
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn
from tqdm.auto import tqdm

from ..config import ModelConfig, TrainConfig, replace, to_dict
from ..data import (
    ActionNormalizer,
    Dataset,
    WindowSampler,
)
from ..device import autocast_context, resolve_device
from ..distributed import (
    all_reduce_mean,
    convert_global_batchnorm,
    dist_info,
)
from ..model import LeWM
from ..sigreg import SIGReg
from ..train_state import (
    TrainState,
    TrainStateError,
    latest_train_state,
    load_train_state,
    remove_train_state,
    restore_rng,
    save_train_state,
)
from .batches import (
    _STREAM_SIGREG,
    _STREAM_TORCH,
    StepBatches,
    _batches,
    _fingerprint,
    _load_training_data,
    step_seed,
)
from .monitor import (
    CURVES_FILE,
    LOG_FIELDS,
    LOG_FILE,
    TENSORBOARD_DIR,
    CollapseWatch,
    effective_rank,
    plot_training_curves,
)

# train_config fields that may change between a run and its resumption.
_RESUME_MAY_DIFFER = {"threads", "log_every"}


def lr_at(step: int, cfg: TrainConfig) -> float:
    """Linear warm-up to cfg.lr, then cosine decay to 0 at cfg.steps."""
    if step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / cfg.warmup_steps
    progress = (step - cfg.warmup_steps) / max(1, cfg.steps - cfg.warmup_steps)
    return cfg.lr * 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))


@dataclass
class TrainResult:
    model: LeWM
    normalizer: ActionNormalizer
    model_config: ModelConfig
    train_config: TrainConfig
    dataset_meta: dict[str, Any]
    log: list[dict[str, float]] = field(default_factory=list)
    seconds: float = 0.0
    start_step: int = 0
    """First step this call ran (> 0 when resumed from a checkpoint)."""
    world_size: int = 1
    mmap: bool = False
    """Whether the frames were memory-mapped instead of loaded into RAM."""
    skipped_files: list[str] = field(default_factory=list)
    """Corrupt episode files left out of training."""


class _LossModule(nn.Module):
    """`LeWM.loss` as a `forward`, so DDP sees the forward whose backward it syncs."""

    def __init__(self, model: LeWM, sigreg: SIGReg, weight: float, distributed: bool) -> None:
        super().__init__()
        self.model = model
        self.sigreg = sigreg
        self.weight = weight
        self.distributed = distributed

    def forward(
        self, pixels: Tensor, actions: Tensor, generator: torch.Generator
    ) -> dict[str, Tensor]:
        return self.model.loss(
            pixels,
            actions,
            self.sigreg,
            self.weight,
            generator=generator,
            distributed=self.distributed,
        )


def _check_resume_compatible(
    state: TrainState, model_cfg: ModelConfig, train_cfg: TrainConfig, fingerprint: str
) -> None:
    """Refuse to resume a checkpoint written by a different configuration or dataset."""
    where = state.path
    fix = (
        "`lewm train --resume` reuses the saved settings: drop the flags that change them "
        f"(or pass the original values), or delete {where.parent} to start over"
    )
    saved_model, saved_train = state.meta["model_config"], state.meta["train_config"]
    diffs = [
        f"model.{k}: {saved_model.get(k)!r} -> {v!r}"
        for k, v in json.loads(json.dumps(to_dict(model_cfg))).items()
        if saved_model.get(k) != v
    ]
    diffs += [
        f"train.{k}: {saved_train.get(k)!r} -> {v!r}"
        for k, v in to_dict(train_cfg).items()
        if k not in _RESUME_MAY_DIFFER and saved_train.get(k) != v
    ]
    if diffs:
        raise TrainStateError(
            f"cannot resume from {where}: it was written with other settings "
            f"({'; '.join(diffs)}); {fix}"
        )
    if state.meta["dataset"]["fingerprint"] != fingerprint:
        raise TrainStateError(
            f"cannot resume from {where}: the training episodes changed since it was written "
            f"({state.meta['dataset']['episodes']} episodes then); {fix}"
        )


def _auto_checkpoint_every(checkpoint_every: int | None, steps: int, log_dir: Path | None) -> int:
    if log_dir is None:
        if checkpoint_every:
            raise ValueError(
                "checkpoint_every needs log_dir (checkpoints go to LOG_DIR/train_state)"
            )
        return 0
    if checkpoint_every is None:  # about ten per run, at most every 500 steps
        return max(1, min(500, steps // 10))
    if checkpoint_every < 0:
        raise ValueError(f"checkpoint_every must be >= 0 (0 = off), got {checkpoint_every}")
    return checkpoint_every


def train(
    dataset: Dataset | str | Path,
    model_cfg: ModelConfig,
    train_cfg: TrainConfig,
    *,
    log_dir: str | Path | None = None,
    device: str | torch.device = "auto",
    progress: bool = True,
    resume: bool = False,
    checkpoint_every: int | None = None,
    workers: int | None = None,
    compile: bool = False,
    tensorboard: bool = False,
    ram_budget_mb: float | None = None,
    mmap: bool | None = None,
    plot: bool = True,
    callback: Callable[[int, dict[str, float] | None], None] | None = None,
    keep_train_state: bool = False,
    run_meta: dict[str, Any] | None = None,
) -> TrainResult:
    """Train LeWM on the training split of a recorded dataset.

    The held-out split (`train_cfg.holdout_fraction`, the last episodes) is
    never seen, so the evaluation protocol can draw its start/goal pairs
    from it. The model's `action_dim`, `frameskip` and `image_size` must match
    the dataset; `action_dim` and `image_size` are taken from it when they differ.

    Runs data-parallel when called inside an initialised multi-process group
    (torchrun; see `main`): `train_cfg.batch_size` is then the GLOBAL batch.

    Args:
        log_dir: where `train_log.csv`, `train_curves.png`, `tensorboard/` and the
            resumable `train_state/` go (rank 0 only). None: no files at all.
        resume: continue from the newest checkpoint in `log_dir/train_state/`
            (start from step 0, with a message, if there is none).
        checkpoint_every: steps between resumable checkpoints; None = about ten
            per run (when `log_dir` is set), 0 = never.
        workers: DataLoader worker processes preparing batches; None = 0 on CPU
            (the cores are busier training) and 4 on CUDA.
        compile: `torch.compile` the encoder and predictor (pays off on GPUs;
            on CPU it costs ~90 s for <= 6%).
        tensorboard: also log to `log_dir/tensorboard/` (needs the `tensorboard`
            extra).
        ram_budget_mb: memory-map the frames when they need more RAM than this
            (default: half of the available memory, split between local ranks).
        mmap: force (True) or forbid (False) memory-mapping; None = by budget.
        plot: write `train_curves.png` at the end.
        callback: called as `callback(step, row_or_None)` after every step.
        keep_train_state: at the end, save the final step's `train_state/` (to resume
            or extend the run later); by default a finished run deletes `train_state/`
            (optimiser moments are ~3x the model) and keeps only the model the caller saves.
        run_meta: JSON-able settings of the command that started the run (data folder,
            preset, plan config), stored in each checkpoint so `lewm train --resume`
            can reuse them (see `saved_run_settings`).
    """
    dev = resolve_device(device)
    info = dist_info()
    if info.enabled and dev.type == "cuda" and dev.index is None:
        dev = torch.device("cuda", info.local_rank)
    if train_cfg.threads > 0:
        torch.set_num_threads(train_cfg.threads)
    if train_cfg.batch_size % info.world_size:
        raise ValueError(
            f"batch_size {train_cfg.batch_size} is not divisible by the {info.world_size} "
            "processes; use a global batch that is a multiple of the process count"
        )
    out_dir = Path(log_dir) if log_dir is not None else None
    every = _auto_checkpoint_every(checkpoint_every, train_cfg.steps, out_dir)
    if resume and out_dir is None:
        raise ValueError("resume=True needs log_dir: checkpoints live in LOG_DIR/train_state")
    if workers is None:
        workers = 4 if dev.type == "cuda" else 0

    data, used_mmap, skipped = _load_training_data(dataset, ram_budget_mb, mmap, info)
    train_split, _ = data.split(train_cfg.holdout_fraction) if len(data) > 1 else (data, None)
    if train_cfg.train_episodes > 0:
        train_split = train_split.head(train_cfg.train_episodes)
    meta = dict(data.meta)
    image_size = int(meta["image_size"])
    if model_cfg.image_size != image_size and info.is_main:
        # Frames are used as recorded (resizing would blur what the env drew).
        tqdm.write(
            f"training at the dataset's {image_size} px, not the configured "
            f"{model_cfg.image_size} px (record with --image-size {model_cfg.image_size} "
            f"to train at {model_cfg.image_size} px)"
        )
    if model_cfg.action_dim != data.action_dim or model_cfg.image_size != image_size:
        model_cfg = replace(model_cfg, action_dim=data.action_dim, image_size=image_size)
    fingerprint = _fingerprint(train_split)

    state: TrainState | None = None
    if resume:
        path = latest_train_state(out_dir)  # type: ignore[arg-type]
        if path is None:
            if info.is_main:
                tqdm.write(f"resume: no checkpoint in {out_dir}/train_state, starting at step 0")
        else:
            state = load_train_state(path)
            _check_resume_compatible(state, model_cfg, train_cfg, fingerprint)
            if info.is_main:
                tqdm.write(f"resume: continuing from {path} (step {state.step})")

    all_actions = np.concatenate([ep.actions for ep in train_split.episodes])  # (N, A)
    normalizer = (
        ActionNormalizer.from_dict(state.meta["normalizer"])
        if state
        else ActionNormalizer.fit(all_actions)
    )
    sampler = WindowSampler(
        train_split,
        num_frames=model_cfg.history + 1,
        frameskip=model_cfg.frameskip,
        seed=train_cfg.seed,
    )
    torch.manual_seed(train_cfg.seed)  # the initial weights
    model = LeWM(model_cfg)
    if state:
        model.load_state_dict(state.model)
    model.to(dev)
    model.train()
    if info.enabled:
        convert_global_batchnorm(model)  # BatchNorm statistics of the global batch
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
    if state:
        optimizer.load_state_dict(state.optimizer)
    if compile:
        # In place, so parameter names (and checkpoints) are unchanged.
        model.encoder.compile()
        model.predictor.compile()
    loss_module = _LossModule(model, sigreg, train_cfg.sigreg_weight, distributed=info.enabled)
    runner: nn.Module = loss_module
    if info.enabled:
        from torch.nn.parallel import DistributedDataParallel as DDP

        # No buffer broadcast before each forward: every rank updates its BatchNorm
        # buffers from the same global statistics, so they stay equal. (The init sync
        # still copies rank 0's buffers, which equal every rank's: same seed or same
        # checkpoint.) `forward_sync_buffers` replaces the deprecated
        # `broadcast_buffers`, whose use warned once per rank.
        runner = DDP(
            loss_module,
            device_ids=[dev.index] if dev.type == "cuda" else None,
            forward_sync_buffers=False,
        )

    start_step = state.step if state else 0
    log: list[dict[str, float]] = list(state.meta["log"]) if state else []
    seconds_before = float(state.meta["seconds"]) if state else 0.0
    captured: dict[str, Tensor] = {}
    hook = model.enc_proj.register_forward_hook(
        lambda _m, _i, out: captured.__setitem__("z", out.detach())  # (B*T, D) embeddings
    )
    watch = CollapseWatch(start_step=max(train_cfg.warmup_steps, train_cfg.steps // 5))
    main = info.is_main and out_dir is not None
    log_file = writer = tb = None
    if main:
        out_dir.mkdir(parents=True, exist_ok=True)  # type: ignore[union-attr]
        # Rewritten from the checkpoint's rows: a killed run may have logged past it.
        log_file = open(out_dir / LOG_FILE, "w", newline="")  # type: ignore[operator]  # noqa: SIM115
        writer = csv.DictWriter(log_file, fieldnames=LOG_FIELDS, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(log)
        log_file.flush()
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError as e:
                raise ImportError(
                    'tensorboard=True needs the tensorboard package: pip install "lewm-agent[tensorboard]"'
                ) from e
            tb = SummaryWriter(str(out_dir / TENSORBOARD_DIR), purge_step=start_step or None)  # type: ignore[operator]

    def checkpoint(next_step: int, elapsed: float) -> None:
        save_train_state(
            out_dir,  # type: ignore[arg-type]
            step=next_step,
            model_state=model.state_dict(),
            optimizer_state=optimizer.state_dict(),
            meta={
                "seconds": elapsed,
                "model_config": to_dict(model_cfg),
                "train_config": to_dict(train_cfg),
                "normalizer": normalizer.to_dict(),
                "dataset": {"fingerprint": fingerprint, "episodes": len(train_split)},
                "world_size": info.world_size,
                "log": log,
                "torch_version": torch.__version__,
                "run": dict(run_meta or {}),
            },
        )

    source = StepBatches(
        sampler, normalizer, model_cfg.action_dim, train_cfg.batch_size, train_cfg.seed, info
    )
    batches = _batches(source, start_step, train_cfg.steps, workers, pin=dev.type == "cuda")
    if state:  # for code outside the loop: the loop itself reseeds from (seed, step)
        restore_rng(state.rng, state.meta["rng"])
    start = time.perf_counter()
    bar = tqdm(
        range(start_step, train_cfg.steps),
        initial=start_step,
        total=train_cfg.steps,
        desc="train LeWM",
        disable=not progress or not info.is_main,
        unit="step",
    )
    try:
        for step in bar:
            pixels, actions = next(batches)  # uint8 (b, T, H, W, 3), float32 (b, T, A)
            pixels = pixels.to(dev, non_blocking=True)
            actions = actions.to(dev, non_blocking=True)
            lr = lr_at(step, train_cfg)
            for group in optimizer.param_groups:
                group["lr"] = lr
            # Dropout masks differ between ranks; SIGReg directions are shared by all.
            torch.manual_seed(step_seed(train_cfg.seed, _STREAM_TORCH, step, info.rank))
            directions_gen = torch.Generator().manual_seed(
                step_seed(train_cfg.seed, _STREAM_SIGREG, step)
            )
            with autocast_context(dev):
                out = runner(pixels, actions, directions_gen)
            loss = out["loss"]
            is_log_step = step % train_cfg.log_every == 0 or step == train_cfg.steps - 1
            # On CUDA a per-step check would sync the stream; check at log steps there.
            if (dev.type != "cuda" or is_log_step) and not torch.isfinite(loss):
                raise FloatingPointError(
                    f"loss became {loss.item()} at step {step}; lower the learning rate "
                    f"(now {train_cfg.lr}) or check the dataset for corrupt actions"
                )
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), train_cfg.grad_clip)
            optimizer.step()
            row: dict[str, float] | None = None
            if is_log_step:
                z = captured["z"]  # (b*T, D) this rank's embeddings
                local = torch.stack(
                    [
                        out["loss"].detach().float(),
                        out["pred_loss"].float(),
                        out["sigreg_loss"].float(),
                        out["emb_std"].float(),
                        torch.tensor(effective_rank(z), device=dev),
                    ]
                )
                values = all_reduce_mean(local).tolist()  # means over ranks
                row = {
                    "step": step,
                    "loss": values[0],
                    "pred_loss": values[1],
                    "sigreg_loss": values[2],
                    "emb_std": values[3],
                    "eff_rank": values[4],
                    "grad_norm": float(grad_norm),
                    "lr": lr,
                    "seconds": seconds_before + time.perf_counter() - start,
                }
                log.append(row)
                if info.is_main:
                    if writer is not None:
                        writer.writerow(row)
                        log_file.flush()  # type: ignore[union-attr]
                    if tb is not None:
                        for k in LOG_FIELDS[1:-1]:
                            tb.add_scalar(f"train/{k}", row[k], step)
                    bar.set_postfix(
                        pred=f"{row['pred_loss']:.4f}",
                        sig=f"{row['sigreg_loss']:.2f}",
                        std=f"{row['emb_std']:.2f}",
                        rank=f"{row['eff_rank']:.1f}",
                    )
                    for msg in watch.check(
                        row, train_cfg.batch_size, int(z.shape[0]), int(z.shape[-1])
                    ):
                        tqdm.write(f"!! {msg}")
                        warnings.warn(msg, RuntimeWarning, stacklevel=2)
            if main and every and (step + 1) % every == 0 and step + 1 < train_cfg.steps:
                checkpoint(step + 1, seconds_before + time.perf_counter() - start)
            if callback is not None:
                callback(step, row)
    finally:
        batches.close()  # stops DataLoader workers now, not at garbage collection
        hook.remove()
        if log_file is not None:
            log_file.close()
        if tb is not None:
            tb.close()
    seconds = seconds_before + time.perf_counter() - start
    if main and keep_train_state:
        checkpoint(train_cfg.steps, seconds)
    elif main:
        remove_train_state(out_dir)  # type: ignore[arg-type]  # finished: nothing to resume
    if main and plot and log:
        plot_training_curves(log, out_dir / CURVES_FILE, title=f"LeWM on {meta.get('env_id')}")  # type: ignore[operator]
    if info.is_main and watch.fired and log:
        last = log[-1]
        tqdm.write(
            f"!! collapse signals fired during training at steps {watch.fired}; final "
            f"emb_std {last['emb_std']:.3g}, eff_rank {last['eff_rank']:.2f}, "
            f"SIGReg {last['sigreg_loss']:.3g}"
        )
    # A clean LeWM (plain BatchNorm, no compiled wrappers) for planning and saving.
    final = LeWM(model_cfg)
    final.load_state_dict(model.state_dict())
    final.to(dev).eval()
    return TrainResult(
        model=final,
        normalizer=normalizer,
        model_config=model_cfg,
        train_config=train_cfg,
        dataset_meta={k: v for k, v in meta.items() if k != "episodes"},
        log=log,
        seconds=seconds,
        start_step=start_step,
        world_size=info.world_size,
        mmap=used_mmap,
        skipped_files=skipped,
    )


# --------------------------------------------------------------------------- entry points
DEFAULT_PRESET = "cpu"
"""`lewm train`'s preset when --preset is not given (and no saved run is resumed)."""


def run_meta(data: str | os.PathLike[str], preset: str | None, plan_cfg: Any) -> dict[str, Any]:
    """What `lewm train` stores in its checkpoints beyond the model and train configs."""
    return {
        "data": str(Path(data).resolve()),
        "preset": preset,
        "plan_config": to_dict(plan_cfg),
    }
