"""Reading a dataset: `load_dataset` into one frame array (or memory maps), with checks.

Every episode file is validated (npy headers, sizes, finite values inside the
action bounds); a damaged one raises `DatasetError` naming it, or is skipped.
"""

from __future__ import annotations

import contextlib
import os
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .format import (
    _EPISODE_KEYS,
    _READ_ERRORS,
    EPISODES_DIR,
    DatasetError,
    _check_shapes,
    _check_values,
    _CorruptEpisode,
    _episode_files,
    _npz_headers,
    _read_meta,
)


@dataclass
class Episode:
    """One finished episode. ``pixels[t]`` is the frame before ``actions[t]``."""

    name: str  # file name, e.g. "w0-000012.npz"
    pixels: np.ndarray  # uint8 (T+1, H, W, 3)
    actions: np.ndarray  # float32 (T, A)
    states: np.ndarray  # float32 (T+1, S)
    terminated: bool
    truncated: bool

    def __len__(self) -> int:
        """Number of actions ``T``."""
        return int(self.actions.shape[0])


class Dataset:
    """Episodes of one dataset folder (sorted by file name) plus its ``meta``.

    Built by :func:`load_dataset` or :meth:`split`. When ``frames`` is not None, every
    episode's ``pixels`` is the view ``frames[frame_offsets[i] : frame_offsets[i] + T+1]``
    of one shared uint8 array (fast gathers, no duplicate memory).
    """

    def __init__(
        self,
        meta: dict[str, Any],
        episodes: list[Episode],
        frames: np.ndarray | None = None,
        frame_offsets: Sequence[int] | None = None,
    ) -> None:
        self.episodes = episodes
        self.frames = frames  # uint8 (N_frames, H, W, 3) or None (memory-mapped episodes)
        self.frame_offsets = list(frame_offsets) if frame_offsets is not None else None
        self.meta = dict(meta)
        self.meta["episodes"] = [{"file": e.name, "length": len(e)} for e in episodes]
        self.meta["num_episodes"] = len(episodes)
        self.meta["num_steps"] = self.num_steps

    def __len__(self) -> int:
        return len(self.episodes)

    def __iter__(self) -> Iterator[Episode]:
        return iter(self.episodes)

    def __getitem__(self, i: int) -> Episode:
        return self.episodes[i]

    def __repr__(self) -> str:
        return (
            f"Dataset(env_id={self.meta.get('env_id')!r}, episodes={len(self)}, "
            f"steps={self.num_steps}, image_size={self.image_size})"
        )

    @property
    def num_steps(self) -> int:
        """Total number of actions (env steps) over all episodes."""
        return int(sum(len(e) for e in self.episodes))

    @property
    def action_dim(self) -> int:
        return int(self.meta["action_dim"])

    @property
    def state_dim(self) -> int:
        return int(self.meta["state_dim"])

    @property
    def image_size(self) -> int:
        return int(self.meta["image_size"])

    def split(self, holdout_fraction: float = 0.1) -> tuple[Dataset, Dataset]:
        """Deterministic train / held-out split: the LAST fraction of sorted episodes is held out.

        With >= 2 episodes and ``holdout_fraction > 0`` each side gets at least one
        episode; ``holdout_fraction == 0`` (or a single episode) gives an empty held-out set.
        The two datasets share this one's frame buffer (no copy).
        """
        if not 0.0 <= holdout_fraction < 1.0:
            raise ValueError(f"holdout_fraction must be in [0, 1), got {holdout_fraction}")
        n = len(self.episodes)
        n_hold = 0
        if n >= 2 and holdout_fraction > 0:
            n_hold = min(max(int(round(n * holdout_fraction)), 1), n - 1)
        cut = n - n_hold

        def part(lo: int, hi: int) -> Dataset:
            offs = self.frame_offsets[lo:hi] if self.frame_offsets is not None else None
            return Dataset(self.meta, self.episodes[lo:hi], self.frames, offs)

        return part(0, cut), part(cut, n)

    def head(self, n: int) -> Dataset:
        """The first ``n`` episodes (all if ``n`` is larger), sharing this frame buffer."""
        if n < 1:
            raise ValueError(f"n must be >= 1, got {n}")
        offs = self.frame_offsets[:n] if self.frame_offsets is not None else None
        return Dataset(self.meta, self.episodes[:n], self.frames, offs)


def _load_small(path: Path, *, with_pixels: bool) -> dict[str, Any]:
    """Fully read (and CRC-check) an episode's arrays; pixels only if asked."""
    with np.load(path, allow_pickle=False) as z:
        keys = [k for k in _EPISODE_KEYS if with_pixels or k != "pixels"]
        missing = [k for k in _EPISODE_KEYS if k not in z.files]
        if missing:
            raise _CorruptEpisode(f"missing arrays {missing}")
        return {k: z[k] for k in keys}


def _load_checked(path: Path, steps: int, meta: dict[str, Any]) -> dict[str, Any]:
    """Every array of an episode file (CRC-checked), checked against ``meta`` and against
    the ``steps`` its headers gave (a file replaced in between is caught here)."""
    arrs = _load_small(path, with_pixels=True)
    t_read = _check_shapes(
        {k: np.shape(v) for k, v in arrs.items()},
        {k: np.asarray(v).dtype for k, v in arrs.items()},
        meta,
    )
    if t_read != steps:
        raise _CorruptEpisode(f"headers say {steps} steps, arrays hold {t_read}")
    _check_values(arrs, meta)
    return arrs


def _ensure_open_file_limit(num_files: int) -> None:
    """Raise the soft open-file limit so ``num_files`` memory maps fit.

    Python's ``mmap`` keeps a duplicate file descriptor per map, so a memory-mapped
    dataset holds one descriptor per episode; the common default soft limit (1024)
    would stop a 10k-episode dataset. The hard limit is the ceiling.
    """
    try:
        import resource
    except ImportError:  # not POSIX: nothing to adjust
        return
    needed = num_files + 256  # room for everything else the process opens
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY or soft >= needed:
        return
    target = needed if hard == resource.RLIM_INFINITY else min(hard, needed)
    with contextlib.suppress(ValueError, OSError):
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        soft = target
    if soft < needed:
        raise DatasetError(
            f"memory-mapping {num_files} episode files needs about {needed} open files, but "
            f"the limit is {soft} (hard limit {hard}); raise it (`ulimit -n {needed}`) or "
            "load the dataset into RAM (mmap=False)"
        )


def episode_steps(root: str | os.PathLike[str]) -> dict[str, int]:
    """Env steps of every finished episode file of a dataset folder, by file name, in
    file order, from the npy headers alone (no array is read)."""
    out: dict[str, int] = {}
    for path in _episode_files(Path(root)):
        try:
            out[path.name] = int(_npz_headers(path)["actions"][0][0])
        except (*_READ_ERRORS, KeyError, IndexError) as e:
            raise DatasetError(
                f"episode file {path} is corrupt or inconsistent ({e}); delete it "
                f"(`lewm data verify {root}` checks every file)"
            ) from None
    return out


def load_dataset(
    root: str | os.PathLike[str],
    *,
    skip_corrupt: bool = False,
    mmap: bool = False,
    files: Sequence[str | os.PathLike[str]] | None = None,
) -> Dataset:
    """Load every finished episode of a dataset folder (or only `files` of it).

    Args:
        root: the folder holding ``meta.json`` and ``episodes/``.
        files: load only these episode files of the folder (names or paths, e.g.
            ``heldout.heldout_files(root)``), kept in the folder's order; one that the
            folder does not hold raises DatasetError naming it.
        skip_corrupt: warn about and skip unreadable or inconsistent episode files
            (e.g. left by a disk-full error) instead of raising.
        mmap: memory-map the pixels instead of reading them into RAM (actions and
            states, which are small, are still read). Needs uncompressed files
            (``EpisodeWriter(compress=False)`` / ``RecordEpisodes(compress=False)``)
            and raises DatasetError otherwise. The pixel bytes of a memory-mapped
            file are not CRC-checked (that would read the whole file).

    Raises:
        DatasetError: missing folder/meta, no episodes, or a corrupt/inconsistent file
            (naming it) when ``skip_corrupt`` is False.
    """
    root = Path(root)
    meta = _read_meta(root)
    listed = _episode_files(root)
    if files is not None:
        wanted = {Path(f).name for f in files}
        missing = sorted(wanted - {p.name for p in listed})
        if missing:
            raise DatasetError(
                f"{root / EPISODES_DIR} holds no episode file {missing[:3]}"
                + (f" (and {len(missing) - 3} more)" if len(missing) > 3 else "")
            )
        listed = [p for p in listed if p.name in wanted]

    def corrupt(path: Path, why: object) -> None:
        msg = (
            f"episode file {path} is corrupt or inconsistent ({why}); delete it "
            "or load with skip_corrupt=True"
        )
        if not skip_corrupt:
            raise DatasetError(msg)
        warnings.warn(f"skipping {msg}", RuntimeWarning, stacklevel=3)

    # Pass 1: headers only -> shapes, so all frames can go into one preallocated array.
    headers: list[tuple[Path, dict[str, tuple[tuple[int, ...], np.dtype, bool, int]], int]] = []
    for path in listed:
        try:
            h = _npz_headers(path)
            t = _check_shapes(
                {k: v[0] for k, v in h.items()}, {k: v[1] for k, v in h.items()}, meta
            )
        except _READ_ERRORS as e:
            corrupt(path, e)
            continue
        if mmap and any(v[3] < 0 for v in h.values()):
            raise DatasetError(
                f"{path} is compressed, so it cannot be memory-mapped; load with mmap=False, "
                "or re-record with EpisodeWriter(compress=False) / RecordEpisodes(compress=False)"
            )
        headers.append((path, h, t))

    episodes: list[Episode] = []
    frames: np.ndarray | None = None
    offsets: list[int] = []
    if mmap:
        _ensure_open_file_limit(len(headers))
        for path, h, _t in headers:
            try:
                small = _load_small(path, with_pixels=False)  # CRC-checks the small arrays
                _check_values(small, meta)

                shape, dtype, fortran, off = h["pixels"]
                pixels = np.memmap(
                    path,
                    dtype=dtype,
                    mode="r",
                    offset=off,
                    shape=shape,
                    order="F" if fortran else "C",
                )  # uint8 (T+1, H, W, 3), read lazily from the page cache
            except _READ_ERRORS as e:
                corrupt(path, e)
                continue
            episodes.append(
                Episode(
                    name=path.name,
                    pixels=pixels,
                    actions=small["actions"].astype(np.float32, copy=False),
                    states=small["states"].astype(np.float32, copy=False),
                    terminated=bool(small["terminated"]),
                    truncated=bool(small["truncated"]),
                )
            )
        frame_offsets: list[int] | None = None
    else:
        size = int(meta["image_size"])
        total = sum(t + 1 for _, _, t in headers)
        frames = np.empty((total, size, size, 3), dtype=np.uint8)  # (N_frames, H, W, 3)
        pos = 0
        for path, _, t in headers:
            try:
                arrs = _load_checked(path, t, meta)
            except _READ_ERRORS as e:
                corrupt(path, e)
                continue
            frames[pos : pos + t + 1] = arrs["pixels"]
            episodes.append(
                Episode(
                    name=path.name,
                    pixels=frames[pos : pos + t + 1],  # view into the shared buffer
                    actions=arrs["actions"].astype(np.float32, copy=False),
                    states=arrs["states"].astype(np.float32, copy=False),
                    terminated=bool(arrs["terminated"]),
                    truncated=bool(arrs["truncated"]),
                )
            )
            offsets.append(pos)
            pos += t + 1
        frames = frames[:pos]  # drops the room of episodes skipped in pass 2 (rare)
        frame_offsets = offsets

    if not episodes:
        skipped = f" ({len(listed)} files skipped as corrupt, see the warnings)" if listed else ""
        raise DatasetError(
            f"{root} has no readable episodes in {root / EPISODES_DIR}{skipped}; record some "
            f"first (`lewm data verify {root}` names what is wrong with each file)"
        )
    return Dataset(meta, episodes, frames, frame_offsets)
