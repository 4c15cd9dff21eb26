"""The training batches: data loading, RAM budget, and a batch as a pure function of its step.

Every random number of step s comes from a stream derived from (seed, s)
(`step_seed`), so prefetching workers, a resumed run and a run with another number
of processes all see the same batches.
"""

from __future__ import annotations

import hashlib
import os
import warnings
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from ..data import (
    ActionNormalizer,
    Dataset,
    DatasetError,
    WindowSampler,
    dataset_info,
    load_dataset,
)
from ..distributed import (
    DistInfo,
)

# Independent random streams of one step (see step_seed).
_STREAM_SAMPLER, _STREAM_SIGREG, _STREAM_TORCH = 1, 2, 3
_MB = 1024 * 1024


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
