"""Watching a training run: the log columns, the collapse watch, the curves, the files line.

Each log row has the embedding std, the effective rank of the batch embeddings and
SIGReg; `CollapseWatch` warns loudly on a collapse. Rows go to `train_log.csv` (and
TensorBoard on request); `train_curves.png` is drawn at the end. `RunMonitor` does all
of that for one run of `train`.
"""

from __future__ import annotations

import csv
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn
from tqdm.auto import tqdm

from ..atomic import atomic_path
from ..config import TrainConfig
from ..distributed import all_reduce_mean

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


class RunMonitor:
    """The watch over one run of `train`: its log rows, their files and the collapse watch.

    A forward hook on the encoder's projector captures each step's embeddings; at a
    log step `record` makes the row (means over ranks, so every rank calls it: the
    all-reduce needs them all) and appends it to `log`. Rank 0 alone writes the rows
    to `train_log.csv` / TensorBoard (when `out_dir` is set), shows them on the
    progress bar and runs the collapse watch.
    """

    def __init__(
        self,
        enc_proj: nn.Module,
        log: list[dict[str, float]],
        train_cfg: TrainConfig,
        is_main: bool,
        out_dir: Path | None,
        tensorboard: bool,
        start_step: int,
    ) -> None:
        self.log = log
        self.batch_size = train_cfg.batch_size
        self.is_main = is_main
        # Fresh weights start near-collapsed: watch from the end of the warm-up (or 1/5 in).
        self.watch = CollapseWatch(start_step=max(train_cfg.warmup_steps, train_cfg.steps // 5))
        self._captured: dict[str, Tensor] = {}
        self._hook = enc_proj.register_forward_hook(
            lambda _m, _i, out: self._captured.__setitem__("z", out.detach())  # (B*T, D) embeddings
        )
        self._file: Any = None
        self._writer: csv.DictWriter[str] | None = None
        self._tb: Any = None
        if is_main and out_dir is not None:
            self._open_files(out_dir, tensorboard, start_step)

    def _open_files(self, out_dir: Path, tensorboard: bool, start_step: int) -> None:
        """`train_log.csv` rewritten from `log`, and the TensorBoard writer on request: a
        killed run may have logged past its checkpoint (`start_step`); both drop that."""
        out_dir.mkdir(parents=True, exist_ok=True)
        self._file = open(out_dir / LOG_FILE, "w", newline="")  # noqa: SIM115
        self._writer = csv.DictWriter(self._file, fieldnames=LOG_FIELDS, extrasaction="ignore")
        self._writer.writeheader()
        self._writer.writerows(self.log)
        self._file.flush()
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError as e:
                raise ImportError(
                    'tensorboard=True needs the tensorboard package: pip install "lewm-agent[tensorboard]"'
                ) from e
            self._tb = SummaryWriter(str(out_dir / TENSORBOARD_DIR), purge_step=start_step or None)

    def record(
        self,
        step: int,
        out: dict[str, Tensor],
        grad_norm: Tensor,
        lr: float,
        elapsed: Callable[[], float],
        bar: Any,
    ) -> tuple[dict[str, float], list[str]]:
        """The log row of `step` (appended to `log` and written) and the collapse warnings
        it raised (rank 0; the caller shows them, so they name the caller's frame).

        `elapsed()`: the run's seconds so far, read once the row's values are in.
        """
        z = self._captured["z"]  # (b*T, D) this rank's embeddings
        local = torch.stack(
            [
                out["loss"].detach().float(),
                out["pred_loss"].float(),
                out["sigreg_loss"].float(),
                out["emb_std"].float(),
                torch.tensor(effective_rank(z), device=z.device),
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
            "seconds": elapsed(),
        }
        self.log.append(row)
        if not self.is_main:
            return row, []
        if self._writer is not None:
            self._writer.writerow(row)
            self._file.flush()
        if self._tb is not None:
            for k in LOG_FIELDS[1:-1]:
                self._tb.add_scalar(f"train/{k}", row[k], step)
        bar.set_postfix(
            pred=f"{row['pred_loss']:.4f}",
            sig=f"{row['sigreg_loss']:.2f}",
            std=f"{row['emb_std']:.2f}",
            rank=f"{row['eff_rank']:.1f}",
        )
        return row, self.watch.check(row, self.batch_size, int(z.shape[0]), int(z.shape[-1]))

    def close(self) -> None:
        """Detach the hook and close the files (also when the run fails)."""
        self._hook.remove()
        if self._file is not None:
            self._file.close()
        if self._tb is not None:
            self._tb.close()

    def collapse_summary(self) -> None:
        """One closing line (rank 0) when any collapse signal fired during the run."""
        if self.is_main and self.watch.fired and self.log:
            last = self.log[-1]
            tqdm.write(
                f"!! collapse signals fired during training at steps {self.watch.fired}; final "
                f"emb_std {last['emb_std']:.3g}, eff_rank {last['eff_rank']:.2f}, "
                f"SIGReg {last['sigreg_loss']:.3g}"
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


def written_files_line(out: str | os.PathLike[str]) -> str:
    """`wrote OUT/config.json, ...`: the files a training run leaves in its folder."""
    from ..checkpoint import CONFIG_FILE, STATS_FILE, WEIGHTS_FILE
    from ..train_state import STATE_DIR

    folder = Path(out)
    names = [CONFIG_FILE, WEIGHTS_FILE, STATS_FILE, LOG_FILE, CURVES_FILE, TENSORBOARD_DIR]
    names += [STATE_DIR]
    paths = [str(folder / n) + ("/" if (folder / n).is_dir() else "") for n in names]
    return "wrote " + ", ".join(
        p for p, n in zip(paths, names, strict=True) if (folder / n).exists()
    )
