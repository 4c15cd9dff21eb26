"""The training loop (`train`): one process or DDP ranks, resumable, watched.

See `lewm_agent.train` for the promises (precision, multi-process, determinism,
resume); batches come from `batches.py`, the log and its watch from `monitor.py`.

`train` reads as its phases, in order: `prepare.py`'s `_settle` (bad input fails
there, before anything is read or written), `_training_split`, `_resume_state` and
`_build`; then here `_run_steps` (the loop: `_optimisation_step`, its log row,
`_save_state` now and then) and `_finish` (final train state, curves, collapse
summary) with `_result`.
"""

from __future__ import annotations

import math
import os
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import torch
from torch import Tensor
from tqdm.auto import tqdm

from ..config import ModelConfig, TrainConfig, to_dict
from ..data import ActionNormalizer, Dataset
from ..device import autocast_context
from ..model import LeWM
from ..train_state import remove_train_state, restore_rng, save_train_state
from .batches import (
    _STREAM_SIGREG,
    _STREAM_TORCH,
    StepBatches,
    _batches,
    _load_training_data,
    step_seed,
)
from .monitor import CURVES_FILE, RunMonitor, plot_training_curves
from .prepare import (
    _build,
    _LossModule,  # noqa: F401  # tests/lewm_agent/test_distributed.py imports it from here
    _resume_state,
    _Run,
    _settle,
    _training_split,
)


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
    init_weights: dict[str, Tensor] | None = None,
    normalizer: ActionNormalizer | None = None,
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
        init_weights: a LeWM state dict of this model config to start from instead of
            fresh weights (continued training on a grown dataset, as `agents.learn`
            does); a resumed checkpoint's weights win over it.
        normalizer: the action normaliser to keep instead of fitting one to this data
            (a model that continues training keeps the action units it learnt).
    """
    setup = _settle(train_cfg, log_dir, device, resume, checkpoint_every, workers)
    # Called here, not in a phase: its warnings name the frame two up, train's caller.
    loaded = _load_training_data(dataset, ram_budget_mb, mmap, setup.info)
    split = _training_split(*loaded, model_cfg, train_cfg, setup.info)
    state = _resume_state(resume, setup, split.model_cfg, train_cfg, split.fingerprint)
    run = _build(split, train_cfg, setup, state, compile, run_meta, init_weights, normalizer)
    monitor = RunMonitor(
        run.model.enc_proj,
        run.log,
        train_cfg,
        setup.info.is_main,
        setup.out_dir,
        tensorboard,
        run.start_step,
    )
    batches = _step_batches(run)
    if state:  # for code outside the loop: the loop itself reseeds from (seed, step)
        restore_rng(state.rng, state.meta["rng"])
    clock = _Clock(run.seconds_before)
    try:
        _run_steps(run, batches, monitor, clock, progress, callback)
    finally:
        batches.close()  # stops DataLoader workers now, not at garbage collection
        monitor.close()
    seconds = clock.elapsed()
    _finish(run, monitor, seconds, keep_train_state=keep_train_state, plot=plot)
    return _result(run, seconds)


# ----------------------------------------------------------------------------- the loop
def _step_batches(run: _Run) -> Iterator[tuple[Tensor, Tensor]]:
    """This rank's batches of steps [start_step, steps), each a pure function of its step."""
    cfg, setup = run.cfg, run.setup
    source = StepBatches(
        run.sampler,
        run.normalizer,
        run.split.model_cfg.action_dim,
        cfg.batch_size,
        cfg.seed,
        setup.info,
    )
    return _batches(source, run.start_step, cfg.steps, setup.workers, pin=setup.dev.type == "cuda")


class _Clock:
    """Training seconds of the whole run: those before a resume plus this call's."""

    def __init__(self, seconds_before: float) -> None:
        self.seconds_before = seconds_before
        self.start = time.perf_counter()

    def elapsed(self) -> float:
        return self.seconds_before + time.perf_counter() - self.start


def _run_steps(
    run: _Run,
    batches: Iterator[tuple[Tensor, Tensor]],
    monitor: RunMonitor,
    clock: _Clock,
    progress: bool,
    callback: Callable[[int, dict[str, float] | None], None] | None,
) -> None:
    """The loop over steps [start_step, steps): update, log row, checkpoint, callback.

    Exists so that the per-step order is in one place: a log step's row (and its
    collapse warnings) comes before that step's checkpoint, and both before the callback.
    """
    cfg, setup = run.cfg, run.setup
    bar = tqdm(
        range(run.start_step, cfg.steps),
        initial=run.start_step,
        total=cfg.steps,
        desc="train LeWM",
        disable=not progress or not setup.info.is_main,
        unit="step",
    )
    for step in bar:
        batch = next(batches)
        is_log_step = step % cfg.log_every == 0 or step == cfg.steps - 1
        # On CUDA a per-step check would sync the stream; check at log steps there.
        done = _optimisation_step(run, step, batch, setup.dev.type != "cuda" or is_log_step)
        row: dict[str, float] | None = None
        if is_log_step:
            row, warnings_ = monitor.record(
                step, done.out, done.grad_norm, done.lr, clock.elapsed, bar
            )
            for msg in warnings_:
                tqdm.write(f"!! {msg}")
                warnings.warn(msg, RuntimeWarning, stacklevel=3)  # names train's caller
        if setup.writes and setup.every and (step + 1) % setup.every == 0 and step + 1 < cfg.steps:
            _save_state(run, step + 1, clock.elapsed())
        if callback is not None:
            callback(step, row)


class _Step(NamedTuple):
    out: dict[str, Tensor]
    """`LeWM.loss`'s outputs: loss, pred_loss, sigreg_loss, emb_std."""
    grad_norm: Tensor
    """Before clipping."""
    lr: float


def _optimisation_step(
    run: _Run, step: int, batch: tuple[Tensor, Tensor], check_finite: bool
) -> _Step:
    """One AdamW update on step `step`'s batch at its scheduled learning rate.

    Exists to keep every random number of the step seeded from (seed, step), so a
    resumed or multi-process run makes exactly the update an uninterrupted one makes.
    """
    cfg, dev, info = run.cfg, run.setup.dev, run.setup.info
    pixels, actions = batch  # uint8 (b, T, H, W, 3), float32 (b, T, A)
    pixels = pixels.to(dev, non_blocking=True)
    actions = actions.to(dev, non_blocking=True)
    lr = lr_at(step, cfg)
    for group in run.optimizer.param_groups:
        group["lr"] = lr
    # Dropout masks differ between ranks; SIGReg directions are shared by all.
    torch.manual_seed(step_seed(cfg.seed, _STREAM_TORCH, step, info.rank))
    directions_gen = torch.Generator().manual_seed(step_seed(cfg.seed, _STREAM_SIGREG, step))
    with autocast_context(dev):
        out = run.runner(pixels, actions, directions_gen)
    loss = out["loss"]
    if check_finite and not torch.isfinite(loss):
        raise FloatingPointError(
            f"loss became {loss.item()} at step {step}; lower the learning rate "
            f"(now {cfg.lr}) or check the dataset for corrupt actions"
        )
    run.optimizer.zero_grad(set_to_none=True)
    loss.backward()
    grad_norm = torch.nn.utils.clip_grad_norm_(run.model.parameters(), cfg.grad_clip)
    run.optimizer.step()
    return _Step(out, grad_norm, lr)


def _save_state(run: _Run, next_step: int, elapsed: float) -> None:
    """A resumable checkpoint in `log_dir/train_state/` (see `train_state.py`)."""
    save_train_state(
        run.setup.out_dir,  # type: ignore[arg-type]
        step=next_step,
        model_state=run.model.state_dict(),
        optimizer_state=run.optimizer.state_dict(),
        meta={
            "seconds": elapsed,
            "model_config": to_dict(run.split.model_cfg),
            "train_config": to_dict(run.cfg),
            "normalizer": run.normalizer.to_dict(),
            "dataset": {"fingerprint": run.split.fingerprint, "episodes": len(run.split.train)},
            "world_size": run.setup.info.world_size,
            "log": run.log,
            "torch_version": torch.__version__,
            "run": run.run_meta,
        },
    )


def _finish(
    run: _Run, monitor: RunMonitor, seconds: float, *, keep_train_state: bool, plot: bool
) -> None:
    """What a finished run leaves behind: the final train state (or none), the curves,
    and the collapse summary line."""
    setup = run.setup
    if setup.writes and keep_train_state:
        _save_state(run, run.cfg.steps, seconds)
    elif setup.writes:
        remove_train_state(setup.out_dir)  # type: ignore[arg-type]  # finished: nothing to resume
    if setup.writes and plot and run.log:
        title = f"LeWM on {run.split.meta.get('env_id')}"
        plot_training_curves(run.log, setup.out_dir / CURVES_FILE, title=title)  # type: ignore[operator]
    monitor.collapse_summary()


def _result(run: _Run, seconds: float) -> TrainResult:
    """The `TrainResult`, with a clean LeWM (plain BatchNorm, no compiled wrappers) for
    planning and saving."""
    final = LeWM(run.split.model_cfg)
    final.load_state_dict(run.model.state_dict())
    final.to(run.setup.dev).eval()
    split = run.split
    return TrainResult(
        model=final,
        normalizer=run.normalizer,
        model_config=split.model_cfg,
        train_config=run.cfg,
        dataset_meta={k: v for k, v in split.meta.items() if k != "episodes"},
        log=run.log,
        seconds=seconds,
        start_step=run.start_step,
        world_size=run.setup.info.world_size,
        mmap=split.used_mmap,
        skipped_files=split.skipped,
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
