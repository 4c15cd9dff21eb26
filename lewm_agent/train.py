"""Training loop of LeWM: one process or many (DDP via torchrun), resumable, watched.

- Precision: CPU runs in fp32 (bf16 autocast is 15-20x slower on CPUs without bf16
  units); CUDA runs under bf16 autocast, with pinned host memory, non-blocking copies
  and optional DataLoader workers.
- Multi-process: `torchrun --nproc_per_node=N -m lewm_agent.train --data D --out O`
  (`lewm train`'s options; or `lewm train --nproc N`, which relaunches itself so).
  Each rank takes its 1/N share of the SAME global batch, SIGReg and the
  projectors' BatchNorm see the global batch, and DDP averages gradients, so N
  processes train the single-process objective. Rank 0 alone writes logs and
  checkpoints.
- Determinism: every random number of step s (the batch, the SIGReg directions,
  dropout) comes from a stream derived from (seed, s), so a batch is a pure
  function of its step. That makes a killed-and-resumed run repeat the
  uninterrupted one exactly, keeps prefetching workers deterministic, and lets a
  run resume with a different number of processes on the same data.
- Resume: `train(..., log_dir=OUT, resume=True)` continues from the newest
  `OUT/train_state/step-N/` (see `train_state.py`).
- Collapse watch: each log row has the embedding std, the effective rank of the
  batch embeddings and SIGReg; a collapse warns loudly. Rows go to
  `train_log.csv` (and TensorBoard on request); `train_curves.png` at the end.
"""

from __future__ import annotations

import csv
import hashlib
import json
import math
import os
import sys
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn
from tqdm.auto import tqdm

from .atomic import atomic_path
from .config import ModelConfig, TrainConfig, replace, to_dict
from .data import (
    ActionNormalizer,
    Dataset,
    DatasetError,
    WindowSampler,
    dataset_info,
    load_dataset,
)
from .device import autocast_context, resolve_device
from .distributed import (
    DistInfo,
    all_reduce_mean,
    convert_global_batchnorm,
    dist_info,
)
from .model import LeWM
from .sigreg import SIGReg
from .train_state import (
    TrainState,
    TrainStateError,
    latest_train_state,
    load_train_state,
    remove_train_state,
    restore_rng,
    save_train_state,
)

LOG_FIELDS = [
    "step",
    "loss",
    "pred_loss",
    "sigreg_loss",
    "emb_std",
    "eff_rank",
    "grad_norm",
    "lr",
    "seconds",
]
LOG_FILE = "train_log.csv"
CURVES_FILE = "train_curves.png"
TENSORBOARD_DIR = "tensorboard"

# Independent random streams of one step (see step_seed).
_STREAM_SAMPLER, _STREAM_SIGREG, _STREAM_TORCH = 1, 2, 3
# train_config fields that may change between a run and its resumption.
_RESUME_MAY_DIFFER = {"threads", "log_every"}
_MB = 1024 * 1024


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


def step_seed(seed: int, stream: int, step: int, rank: int = 0) -> int:
    """A 63-bit seed for one random stream of one step (and rank), from the run's seed.

    Hash-derived (numpy's SeedSequence), so neighbouring steps and streams are
    statistically independent and the value does not depend on what ran before.
    """
    entropy = [seed % 2**63, stream, step, rank]
    return int(np.random.SeedSequence(entropy).generate_state(1, np.uint64)[0] >> np.uint64(1))


def effective_rank(z: Tensor) -> float:
    """exp(entropy) of the normalised singular values of a centred batch (N, D).

    1 when all embeddings lie on a line, min(N, D) when the spread is equal in
    every direction: the number of directions the batch actually uses. A
    dimensional collapse shows here before the per-dimension std gives it away.
    """
    x = z.detach().reshape(-1, z.shape[-1]).float()  # (N, D)
    x = x - x.mean(dim=0)
    s = torch.linalg.svdvals(x)  # (min(N, D),)
    total = s.sum()
    if not torch.isfinite(total) or total <= 0:
        return 0.0
    p = s / total
    p = p[p > 0]
    return float(torch.exp(-(p * p.log()).sum()))


@dataclass
class CollapseWatch:
    """Turns the logged diagnostics into loud warnings when the embedding collapses.

    Signals, each reported once when it has held for `patience` consecutive log
    rows from `start_step` on (fresh weights start near-collapsed: the embedding
    std at step 0 is ~0.1 and SIGReg needs some steps to spread it):
    - `emb_std` below `min_emb_std`: every dimension shrank (complete collapse);
    - effective rank below `min_rank_fraction` of its maximum min(N, D): the batch
      uses only a few directions (dimensional collapse). Scale-free, so it also
      sees a collapse that BatchNorm's rescaling hides from the std;
    - SIGReg above `max_sigreg_per_sample` x batch: the batch-size-scaled
      statistic is O(1) for a Gaussian batch and 0.40 x batch for a point mass.
    """

    start_step: int
    min_emb_std: float = 0.05
    min_rank_fraction: float = 0.05
    max_sigreg_per_sample: float = 0.3
    patience: int = 2
    fired: dict[str, int] = field(default_factory=dict)
    _streak: dict[str, int] = field(default_factory=dict)

    def check(
        self, row: dict[str, float], batch_size: int, n_embeddings: int, dim: int
    ) -> list[str]:
        """New warnings for this log row (empty when healthy or already reported).

        `batch_size`: sequences per SIGReg evaluation (the global batch);
        `n_embeddings`, `dim`: shape of the batch the effective rank was taken on.
        """
        if row["step"] < self.start_step:
            return []
        max_rank = max(1, min(n_embeddings, dim))
        signals = {
            "emb_std": (
                row["emb_std"] < self.min_emb_std,
                f"embedding std {row['emb_std']:.3g} < {self.min_emb_std} (complete collapse)",
            ),
            "eff_rank": (
                row["eff_rank"] < self.min_rank_fraction * max_rank,
                f"effective rank {row['eff_rank']:.2f} of at most {max_rank} "
                "(dimensional collapse)",
            ),
            "sigreg": (
                row["sigreg_loss"] > self.max_sigreg_per_sample * batch_size,
                f"SIGReg {row['sigreg_loss']:.3g} > {self.max_sigreg_per_sample} x batch "
                f"{batch_size} (a point mass scores 0.40 x batch)",
            ),
        }
        new = []
        for key, (bad, text) in signals.items():
            self._streak[key] = self._streak.get(key, 0) + 1 if bad else 0
            if self._streak[key] >= self.patience and key not in self.fired:
                self.fired[key] = int(row["step"])
                new.append(text)
        if not new:
            return []
        return [
            f"LeWM embeddings look COLLAPSED at step {int(row['step'])}: "
            + "; ".join(new)
            + ". Raise sigreg_weight (lambda; paper 0.09), lower lr, or check that "
            "the projectors keep their BatchNorm."
        ]


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


class StepBatches:
    """Map-style batch source: step -> this rank's share of that step's global batch.

    The global batch of step s is drawn with a generator seeded from (seed, s), and
    rank r takes rows [r*b, (r+1)*b) of it (b = global batch / world size). So the
    union over ranks is exactly the single-process batch of that step, and any
    worker can produce any step's batch independently.
    """

    def __init__(
        self,
        sampler: WindowSampler,
        normalizer: ActionNormalizer,
        action_dim: int,
        global_batch: int,
        seed: int,
        info: DistInfo,
    ) -> None:
        self.sampler = sampler
        self.normalizer = normalizer
        self.action_dim = action_dim
        self.global_batch = global_batch
        self.local_batch = global_batch // info.world_size
        self.seed = seed
        self.offset = info.rank * self.local_batch

    def __getitem__(self, step: int) -> tuple[Tensor, Tensor]:
        rng = np.random.default_rng(step_seed(self.seed, _STREAM_SAMPLER, int(step)))
        ep, start = self.sampler.sample_indices(self.global_batch, rng=rng)  # (B_global,)
        rows = slice(self.offset, self.offset + self.local_batch)
        pixels, actions = self.sampler.gather(ep[rows], start[rows])  # (b,T,H,W,3), (b,T,A)
        actions = normalize_blocks(actions, self.normalizer, self.action_dim)
        return torch.from_numpy(np.asarray(pixels)), torch.from_numpy(actions)


def _batches(
    source: StepBatches, start: int, stop: int, workers: int, pin: bool
) -> Iterator[tuple[Tensor, Tensor]]:
    """Batches of steps [start, stop): in-process, or from DataLoader worker processes."""
    if workers > 0:
        from torch.utils.data import DataLoader

        loader = DataLoader(
            source,  # type: ignore[arg-type]  # any __getitem__ works as a map-style dataset
            batch_size=None,
            sampler=range(start, stop),
            num_workers=workers,
            pin_memory=pin,
            prefetch_factor=4,
        )
        yield from loader
        return
    for step in range(start, stop):
        pixels, actions = source[step]
        if pin:
            pixels, actions = pixels.pin_memory(), actions.pin_memory()
        yield pixels, actions


def default_ram_budget_mb() -> float:
    """Half of the memory available now (MemAvailable), or infinity if unknown."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) / 1024 / 2
    except OSError:
        pass
    return float("inf")


def _load_training_data(
    dataset: Dataset | str | os.PathLike,
    ram_budget_mb: float | None,
    mmap: bool | None,
    info: DistInfo,
) -> tuple[Dataset, bool, list[str]]:
    """Load a dataset for training: memory-mapped when its frames exceed the RAM budget.

    Corrupt episode files are skipped with a warning (every other episode is used).
    Each process of a multi-process run loads its own copy, so the budget is split
    between the processes of a machine; memory maps share the page cache instead.
    Returns (dataset, memory-mapped?, skipped file names).
    """
    if isinstance(dataset, Dataset):
        return dataset, dataset.frames is None, []
    root = Path(dataset)
    info_d = dataset_info(root)
    budget = default_ram_budget_mb() if ram_budget_mb is None else float(ram_budget_mb)
    budget /= max(1, info.local_world_size)
    pixel_mb = info_d["pixel_bytes"] / _MB
    use_mmap = bool(mmap) if mmap is not None else pixel_mb > budget
    if use_mmap and mmap is None and not info_d["mmap_ok"]:
        raise DatasetError(
            f"the frames of {root} need {pixel_mb:.0f} MB of RAM but the budget is "
            f"{budget:.0f} MB per process, and {info_d['compressed_files']} of its episode "
            "files are compressed, which cannot be memory-mapped; repack it uncompressed "
            "(lewm_agent.data.repack_dataset(src, dst, compress=False)) or raise ram_budget_mb"
        )
    # Listed before loading: a recorder still writing into the folder adds files
    # during the load, and those are new, not corrupt.
    all_files = sorted(p.name for p in (root / "episodes").glob("*.npz") if p.name[0] != ".")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        data = load_dataset(root, skip_corrupt=True, mmap=use_mmap)
    kept = {e.name for e in data.episodes}
    skipped = [n for n in all_files if n not in kept]
    if info.is_main:
        for w in caught:
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
        if skipped:
            warnings.warn(
                f"training skips {len(skipped)} corrupt episode file(s) of {root}: "
                f"{', '.join(skipped[:10])}; {len(kept)} episodes are used. Run "
                f"`lewm data verify {root}` for details.",
                RuntimeWarning,
                stacklevel=3,
            )
    return data, use_mmap, skipped


def _fingerprint(split: Dataset) -> str:
    """Hash of the training episodes (names and lengths) to catch resuming on other data."""
    h = hashlib.sha256()
    for e in split.episodes:
        h.update(f"{e.name}:{len(e)};".encode())
    return h.hexdigest()[:16]


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


def plot_training_curves(
    log: list[dict[str, float]], path: str | os.PathLike, title: str | None = None
) -> Path:
    """Write a 2x2 PNG: prediction loss, SIGReg, embedding std, effective rank vs step.

    Uses matplotlib's object API with the Agg canvas, so it never touches the
    global pyplot backend of the calling program.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    path = Path(path)
    steps = [r["step"] for r in log]
    fig = Figure(figsize=(10, 7), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(2, 2, sharex=True)
    panels = [
        ("pred_loss", "prediction loss (MSE)", True, "tab:blue"),
        ("sigreg_loss", "SIGReg (N-scaled Epps-Pulley)", True, "tab:orange"),
        ("emb_std", "embedding std (mean over dims)", False, "tab:green"),
        ("eff_rank", "effective rank of batch embeddings", False, "tab:purple"),
    ]
    for ax, (key, label, logy, color) in zip(axes.flat, panels, strict=True):
        values = [r.get(key, float("nan")) for r in log]
        ax.plot(steps, values, color=color, lw=1.5)
        if key == "emb_std":  # where CollapseWatch calls it a complete collapse
            ax.axhline(CollapseWatch.min_emb_std, color="tab:red", ls=":", lw=1)
            ax.text(steps[0], CollapseWatch.min_emb_std, " collapse", color="tab:red", va="bottom")
        ax.set_title(label)
        ax.grid(alpha=0.3)
        if logy and all(v > 0 for v in values if np.isfinite(v)) and values:
            ax.set_yscale("log")
    for ax in axes[1]:
        ax.set_xlabel("step")
    fig.suptitle(title or "LeWM training")
    with atomic_path(path, suffix=".tmp.png") as tmp:
        fig.savefig(tmp)
    return path


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


def written_files_line(out: str | os.PathLike[str]) -> str:
    """`wrote OUT/config.json, ...`: the files a training run leaves in its folder."""
    from .checkpoint import CONFIG_FILE, STATS_FILE, WEIGHTS_FILE
    from .train_state import STATE_DIR

    folder = Path(out)
    names = [CONFIG_FILE, WEIGHTS_FILE, STATS_FILE, LOG_FILE, CURVES_FILE, TENSORBOARD_DIR]
    names += [STATE_DIR]
    paths = [str(folder / n) + ("/" if (folder / n).is_dir() else "") for n in names]
    return "wrote " + ", ".join(
        p for p, n in zip(paths, names, strict=True) if (folder / n).exists()
    )


if __name__ == "__main__":
    # `python -m lewm_agent.train ...` / `torchrun ... -m lewm_agent.train ...` is
    # `lewm train ...`: the command line (the top floor) parses and runs it.
    from lewm_agent.cli import main

    sys.exit(main(["train", *sys.argv[1:]]))
