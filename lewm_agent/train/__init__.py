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

Modules: `loop` (`train` as a short sequence of phases, the step loop, `TrainResult`,
`run_meta`), `prepare` (the phases before the first step: argument checks, training
split, resume checks, model and optimiser), `batches` (data loading, RAM budget,
step-seeded batches), `monitor` (log columns, `CollapseWatch`, `RunMonitor`, curves).
The command line is `lewm train` (lewm_agent/cli/train.py), which calls `train`.
"""

from ..device import autocast_context, resolve_device
from .batches import StepBatches, default_ram_budget_mb, normalize_blocks, step_seed
from .loop import DEFAULT_PRESET, TrainResult, lr_at, run_meta, train
from .monitor import (
    CURVES_FILE,
    LOG_FIELDS,
    LOG_FILE,
    TENSORBOARD_DIR,
    CollapseWatch,
    effective_rank,
    plot_training_curves,
    written_files_line,
)

__all__ = [
    "CURVES_FILE",
    "DEFAULT_PRESET",
    "LOG_FIELDS",
    "LOG_FILE",
    "TENSORBOARD_DIR",
    "CollapseWatch",
    "StepBatches",
    "TrainResult",
    "autocast_context",
    "default_ram_budget_mb",
    "effective_rank",
    "lr_at",
    "normalize_blocks",
    "plot_training_curves",
    "resolve_device",
    "run_meta",
    "step_seed",
    "train",
    "written_files_line",
]
