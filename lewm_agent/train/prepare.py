"""Preparing a run of `train`: everything settled before its first step.

The phases in the order `train` calls them: `_settle` (device, processes and the
argument checks: bad input fails there, before anything is read or written),
`_training_split` (the episodes trained on and the model config they imply),
`_resume_state` (the checkpoint to continue from, refused when it does not match) and
`_build` (normaliser, sampler, model, optimiser and the step's runner, in the order
the initial weights depend on), which returns the `_Run` the loop works on.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn
from tqdm.auto import tqdm

from ..config import ModelConfig, TrainConfig, replace, to_dict
from ..data import ActionNormalizer, Dataset, WindowSampler
from ..device import resolve_device
from ..distributed import DistInfo, convert_global_batchnorm, dist_info
from ..model import LeWM
from ..sigreg import SIGReg
from ..train_state import (
    TrainState,
    TrainStateError,
    latest_train_state,
    load_train_state,
)
from .batches import _fingerprint

# train_config fields that may change between a run and its resumption.
_RESUME_MAY_DIFFER = {"threads", "log_every"}


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


@dataclass(frozen=True)
class _Setup:
    """Where and how the run trains, settled before anything is read or written."""

    dev: torch.device
    info: DistInfo
    out_dir: Path | None
    every: int
    """Steps between resumable checkpoints (0: none)."""
    workers: int

    @property
    def writes(self) -> bool:
        """Rank 0 of a run with a log_dir: the one process that writes files."""
        return self.info.is_main and self.out_dir is not None


def _settle(
    train_cfg: TrainConfig,
    log_dir: str | Path | None,
    device: str | torch.device,
    resume: bool,
    checkpoint_every: int | None,
    workers: int | None,
) -> _Setup:
    """Device, process group and thread count; the argument checks.

    Exists so that a bad argument fails first: nothing has been loaded, created or
    written when one of these errors is raised (the thread count is set before the
    batch check, as it always was).
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
    return _Setup(dev, info, out_dir, every, workers)


@dataclass(frozen=True)
class _Split:
    """The loaded dataset, the episodes trained on, and the model config they imply."""

    meta: dict[str, Any]
    """The dataset's meta.json (a copy)."""
    used_mmap: bool
    skipped: list[str]
    train: Dataset
    model_cfg: ModelConfig
    """The configured model with the dataset's action_dim and image_size."""
    fingerprint: str
    """Of the training episodes (see `_fingerprint`): a resume must see the same."""


def _training_split(
    data: Dataset,
    used_mmap: bool,
    skipped: list[str],
    model_cfg: ModelConfig,
    train_cfg: TrainConfig,
    info: DistInfo,
) -> _Split:
    """The training episodes (held-out split removed first) and the model config for them.

    Exists because the data decides two model fields: the frames are used as recorded
    (resizing would blur what the env drew), and the action width is the dataset's.
    """
    train_split, _ = data.split(train_cfg.holdout_fraction) if len(data) > 1 else (data, None)
    if train_cfg.train_episodes > 0:
        train_split = train_split.head(train_cfg.train_episodes)
    meta = dict(data.meta)
    image_size = int(meta["image_size"])
    if model_cfg.image_size != image_size and info.is_main:
        tqdm.write(
            f"training at the dataset's {image_size} px, not the configured "
            f"{model_cfg.image_size} px (record with --image-size {model_cfg.image_size} "
            f"to train at {model_cfg.image_size} px)"
        )
    if model_cfg.action_dim != data.action_dim or model_cfg.image_size != image_size:
        model_cfg = replace(model_cfg, action_dim=data.action_dim, image_size=image_size)
    return _Split(meta, used_mmap, skipped, train_split, model_cfg, _fingerprint(train_split))


def _resume_state(
    resume: bool,
    setup: _Setup,
    model_cfg: ModelConfig,
    train_cfg: TrainConfig,
    fingerprint: str,
) -> TrainState | None:
    """The newest checkpoint to continue from (None: start at step 0).

    Exists to refuse, before any model is built, a checkpoint written by other
    settings or on other episodes (`_check_resume_compatible`).
    """
    if not resume:
        return None
    path = latest_train_state(setup.out_dir)  # type: ignore[arg-type]
    if path is None:
        if setup.info.is_main:
            tqdm.write(f"resume: no checkpoint in {setup.out_dir}/train_state, starting at step 0")
        return None
    state = load_train_state(path)
    _check_resume_compatible(state, model_cfg, train_cfg, fingerprint)
    if setup.info.is_main:
        tqdm.write(f"resume: continuing from {path} (step {state.step})")
    return state


@dataclass
class _Run:
    """Everything the loop and the checkpoints share: configs, parts, the log so far."""

    cfg: TrainConfig
    setup: _Setup
    split: _Split
    normalizer: ActionNormalizer
    sampler: WindowSampler
    model: LeWM
    optimizer: torch.optim.Optimizer
    runner: nn.Module
    """What a step calls: `_LossModule`, DDP-wrapped in a multi-process run."""
    run_meta: dict[str, Any]
    start_step: int
    log: list[dict[str, float]]
    seconds_before: float
    """Training seconds of the run before this call (resumed runs)."""


def _build(
    split: _Split,
    train_cfg: TrainConfig,
    setup: _Setup,
    state: TrainState | None,
    compile: bool,
    run_meta: dict[str, Any] | None,
    init_weights: dict[str, Tensor] | None = None,
    normalizer: ActionNormalizer | None = None,
) -> _Run:
    """Normaliser, sampler, model, optimiser and the step's runner, fresh or from `state`.

    Exists to keep the order the initial weights depend on: the weights are drawn
    right after `torch.manual_seed(seed)`, before anything else touches torch's RNG.
    """
    if state:
        normalizer = ActionNormalizer.from_dict(state.meta["normalizer"])
    elif normalizer is None:
        all_actions = np.concatenate([ep.actions for ep in split.train.episodes])  # (N, A)
        normalizer = ActionNormalizer.fit(all_actions)
    model_cfg = split.model_cfg
    sampler = WindowSampler(
        split.train,
        num_frames=model_cfg.history + 1,
        frameskip=model_cfg.frameskip,
        seed=train_cfg.seed,
    )
    torch.manual_seed(train_cfg.seed)  # the initial weights
    model = LeWM(model_cfg)
    if state:
        model.load_state_dict(state.model)
    elif init_weights is not None:
        model.load_state_dict(init_weights)
    model.to(setup.dev)
    model.train()
    if setup.info.enabled:
        convert_global_batchnorm(model)  # BatchNorm statistics of the global batch
    sigreg = SIGReg(train_cfg.sigreg_directions, train_cfg.sigreg_knots).to(setup.dev)
    optimizer = _optimizer(model, train_cfg)
    if state:
        optimizer.load_state_dict(state.optimizer)
    if compile:
        # In place, so parameter names (and checkpoints) are unchanged.
        model.encoder.compile()
        model.predictor.compile()
    loss_module = _LossModule(model, sigreg, train_cfg.sigreg_weight, setup.info.enabled)
    return _Run(
        cfg=train_cfg,
        setup=setup,
        split=split,
        normalizer=normalizer,
        sampler=sampler,
        model=model,
        optimizer=optimizer,
        runner=_ddp(loss_module, setup.dev) if setup.info.enabled else loss_module,
        run_meta=dict(run_meta or {}),
        start_step=state.step if state else 0,
        log=list(state.meta["log"]) if state else [],
        seconds_before=float(state.meta["seconds"]) if state else 0.0,
    )


def _optimizer(model: LeWM, cfg: TrainConfig) -> torch.optim.AdamW:
    """AdamW; biases, norm gains and learned position/CLS tokens are not decayed."""
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        skip = p.ndim < 2 or name.endswith(("pos_embed", "cls_token"))
        (no_decay if skip else decay).append(p)
    return torch.optim.AdamW(
        [
            {"params": decay, "weight_decay": cfg.weight_decay},
            {"params": no_decay, "weight_decay": 0.0},
        ],
        lr=cfg.lr,
        betas=(0.9, 0.999),
        fused=False,
    )


def _ddp(loss_module: _LossModule, dev: torch.device) -> nn.Module:
    """The loss module under DDP, which averages the gradients over the ranks."""
    from torch.nn.parallel import DistributedDataParallel as DDP

    # No buffer broadcast before each forward: every rank updates its BatchNorm
    # buffers from the same global statistics, so they stay equal. (The init sync
    # still copies rank 0's buffers, which equal every rank's: same seed or same
    # checkpoint.) `forward_sync_buffers` replaces the deprecated
    # `broadcast_buffers`, whose use warned once per rank.
    return DDP(
        loss_module,
        device_ids=[dev.index] if dev.type == "cuda" else None,
        forward_sync_buffers=False,
    )
