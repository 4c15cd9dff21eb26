"""The held-out split: the recorded episodes an agent never trained on.

Training leaves out the LAST `holdout_fraction` of a dataset's sorted episodes
(`Dataset.split`); the evaluation protocol, the probes, the zoo, the suite and the
videos draw their start/goal pairs from exactly those. This module is the one place
that reads the fraction a checkpoint was trained with and splits a dataset by it.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, NamedTuple

from .data import Dataset, load_dataset

DEFAULT_HOLDOUT = 0.1
"""`TrainConfig.holdout_fraction`'s default: what a checkpoint without one used."""


def trained_holdout(source: Any) -> float:
    """The held-out fraction `source` was trained with (`DEFAULT_HOLDOUT` if it records none).

    `source`: None, a checkpoint folder (its config.json), a config.json dict, a
    `TrainConfig`, or anything with a `train_config` attribute (a `WorldModelAgent`).
    """
    if source is None:
        return DEFAULT_HOLDOUT
    if isinstance(source, str | os.PathLike):
        source = json.loads((Path(source) / "config.json").read_text())
    if isinstance(source, dict):
        return float((source.get("train") or {}).get("holdout_fraction", DEFAULT_HOLDOUT))
    train_config = getattr(source, "train_config", source)
    return DEFAULT_HOLDOUT if train_config is None else float(train_config.holdout_fraction)


def heldout_files(data: str | os.PathLike[str], holdout: float = DEFAULT_HOLDOUT) -> list[Path]:
    """The held-out episode files of dataset folder `data`, without loading any.

    `Dataset.split`'s rule on the sorted files: the last round(n * holdout), at
    least one on each side; for readers that need a few arrays of a large dataset."""
    files = sorted(p for p in (Path(data) / "episodes").glob("*.npz") if not p.name.startswith("."))
    if len(files) < 2:
        raise ValueError(f"{data}: needs at least 2 episode files for a held-out split")
    n_hold = min(max(int(round(len(files) * holdout)), 1), len(files) - 1)
    return files[len(files) - n_hold :]


class Split(NamedTuple):
    """A dataset and its two parts (sharing its frame buffer)."""

    dataset: Dataset
    train: Dataset
    heldout: Dataset


def load_heldout(
    data: Dataset | str | os.PathLike[str],
    holdout: float = DEFAULT_HOLDOUT,
    *,
    require: bool = False,
    **load_kwargs: Any,
) -> Split:
    """Load dataset `data` (or take it as loaded) and split off its held-out episodes.

    `require=True` raises ValueError when the held-out part is empty (too few
    episodes for the protocol). `load_kwargs` go to `load_dataset`.
    """
    dataset = data if isinstance(data, Dataset) else load_dataset(data, **load_kwargs)
    train, heldout = dataset.split(holdout)
    if require and len(heldout) == 0:
        raise ValueError(f"{data}: no held-out episodes (holdout={holdout}); record more episodes")
    return Split(dataset, train, heldout)
