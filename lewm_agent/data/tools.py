"""Dataset tools behind `lewm data ...`: info, verify, iterate, repack."""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import os
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .format import (
    _EPISODE_KEYS,
    _READ_ERRORS,
    EPISODES_DIR,
    META_FILE,
    DatasetError,
    _check_shapes,
    _check_values,
    _episode_files,
    _npz_headers,
    _read_meta,
)
from .reader import Episode, _load_checked, _load_small
from .writer import EpisodeWriter


def _unindexed_note(names: list[str]) -> str:
    return (
        f"{len(names)} files are not in meta.json's index ({', '.join(names[:5])}"
        f"{', ...' if len(names) > 5 else ''}): harmless, loading lists the folder; a "
        "recorder still running (the index lags up to EpisodeWriter(index_interval_s)) or "
        "killed before closing leaves them, and the next EpisodeWriter / `lewm collect` "
        "opened on this folder adds them"
    )


def dataset_info(root: str | os.PathLike[str]) -> dict[str, Any]:
    """Counts and sizes of a dataset folder from file headers only (fast on any size).

    Returns a JSON-able dict: env and shapes from ``meta.json``; ``num_episodes``,
    ``num_steps`` and episode length min/mean/max over the readable files;
    ``pixel_bytes`` (the RAM an in-memory load needs for frames), ``disk_bytes``,
    how many files are ``compressed`` (those cannot be memory-mapped),
    ``unreadable`` files (headers broken: run :func:`verify_dataset`) and the
    mismatches between ``meta.json``'s index and the folder listing.
    """
    root = Path(root)
    meta = _read_meta(root)
    files = _episode_files(root)
    lengths: list[int] = []
    pixel_bytes = disk_bytes = compressed = 0
    unreadable: list[str] = []
    for path in files:
        with contextlib.suppress(OSError):
            disk_bytes += path.stat().st_size
        try:
            h = _npz_headers(path)
            t = _check_shapes(
                {k: v[0] for k, v in h.items()}, {k: v[1] for k, v in h.items()}, meta
            )
        except _READ_ERRORS:
            unreadable.append(path.name)
            continue
        lengths.append(t)
        shape, dtype, _, offset = h["pixels"]
        pixel_bytes += int(np.prod(shape)) * np.dtype(dtype).itemsize
        compressed += int(any(v[3] < 0 for v in h.values()))
    indexed = {str(e.get("file")) for e in meta.get("episodes", [])}
    on_disk = {p.name for p in files}
    lens = np.asarray(lengths, dtype=np.int64)
    return {
        "root": str(root),
        "env_id": meta.get("env_id"),
        "collector": meta.get("collector"),
        "image_size": int(meta["image_size"]),
        "action_dim": int(meta["action_dim"]),
        "state_dim": int(meta["state_dim"]),
        "frameskip": int(meta["frameskip"]),
        "num_files": len(files),
        "num_episodes": len(lengths),
        "num_steps": int(lens.sum()) if lens.size else 0,
        "episode_length": {
            "min": int(lens.min()) if lens.size else 0,
            "mean": float(lens.mean()) if lens.size else 0.0,
            "max": int(lens.max()) if lens.size else 0,
        },
        "pixel_bytes": int(pixel_bytes),
        "disk_bytes": int(disk_bytes),
        "compressed_files": int(compressed),
        "mmap_ok": compressed == 0 and len(lengths) > 0,
        "unreadable": unreadable,
        "not_in_index": sorted(on_disk - indexed),
        "missing_files": sorted(indexed - on_disk),
    }


def format_dataset_info(info: dict[str, Any]) -> str:
    """Human-readable lines of :func:`dataset_info` (for `lewm data info`)."""
    mb = 1024 * 1024
    el = info["episode_length"]
    lines = [
        f"dataset {info['root']}: {info['env_id']} (collector {info['collector']!r})",
        f"  {info['num_episodes']} episodes, {info['num_steps']} steps "
        f"(length min {el['min']} / mean {el['mean']:.1f} / max {el['max']})",
        f"  frames {info['image_size']}x{info['image_size']} px, action_dim "
        f"{info['action_dim']}, state_dim {info['state_dim']}, frameskip {info['frameskip']}",
        f"  pixels {info['pixel_bytes'] / mb:.1f} MB in RAM, {info['disk_bytes'] / mb:.1f} MB "
        f"on disk; {info['compressed_files']} of {info['num_files']} files compressed "
        f"({'can' if info['mmap_ok'] else 'cannot'} be memory-mapped)",
    ]
    if info["unreadable"]:
        lines.append(f"  UNREADABLE: {', '.join(info['unreadable'])} (run `lewm data verify`)")
    if info["not_in_index"]:
        lines.append(f"  note: {_unindexed_note(info['not_in_index'])}")
    if info["missing_files"]:
        lines.append(
            f"  {len(info['missing_files'])} files in meta.json's index are missing: "
            + ", ".join(info["missing_files"][:5])
        )
    return "\n".join(lines)


@dataclass
class VerifyReport:
    """Result of :func:`verify_dataset`: every file checked, problems by file name."""

    root: Path
    checked: int
    bad: dict[str, str]  # file name -> what is wrong with it
    notes: list[str]  # index mismatches: worth knowing, not errors
    duplicates: list[list[str]] = dataclasses.field(default_factory=list)
    """Groups of files with identical content (e.g. collected twice with the same seed):
    a copy in the held-out split contaminates every evaluation on the folder."""

    @property
    def ok(self) -> bool:
        return not self.bad and not self.duplicates

    def summary(self) -> str:
        problems = [f"{len(self.bad)} CORRUPT"] if self.bad else []
        if self.duplicates:
            problems.append(f"{len(self.duplicates)} DUPLICATED episodes")
        lines = [
            f"{self.root}: checked {self.checked} episode files, "
            + (", ".join(problems) if problems else "all OK")
        ]
        lines += [f"  CORRUPT {self.root / EPISODES_DIR / n}: {why}" for n, why in self.bad.items()]
        lines += [f"  DUPLICATE {' == '.join(group)}" for group in self.duplicates]
        lines += [f"  note: {n}" for n in self.notes]
        if self.bad:
            lines.append(
                "  fix: delete or re-record the corrupt files; training skips them with a "
                "warning (load_dataset(skip_corrupt=True))"
            )
        if self.duplicates:
            lines.append(
                "  fix: delete all but the first file of each duplicate group (identical "
                "episodes come from collecting twice with the same --seed)"
            )
        return "\n".join(lines)


def verify_dataset(root: str | os.PathLike[str]) -> VerifyReport:
    """Read every episode file in full and check it; never raises for a bad episode.

    Checks per file: the zip structure (a truncated file has no central
    directory), every member's CRC-32 (a flipped byte anywhere, pixels included),
    the arrays' shapes and dtypes against each other and ``meta.json``, finite
    actions inside the bounds, finite states, and that no two files hold the same
    episode (content hash). Index mismatches between ``meta.json`` and the folder
    are notes.
    """
    root = Path(root)
    meta = _read_meta(root)
    files = _episode_files(root)
    bad: dict[str, str] = {}
    by_content: dict[bytes, list[str]] = {}
    for path in files:
        try:
            h = _npz_headers(path)
            t = _check_shapes(
                {k: v[0] for k, v in h.items()}, {k: v[1] for k, v in h.items()}, meta
            )
            arrs = _load_checked(path, t, meta)  # reads every byte: CRC-checked
        except _READ_ERRORS as e:
            bad[path.name] = f"{type(e).__name__}: {e}"
            continue
        by_content.setdefault(_content_hash(arrs), []).append(path.name)
    notes: list[str] = []
    indexed = {str(e.get("file")): e.get("length") for e in meta.get("episodes", [])}
    on_disk = {p.name for p in files}
    missing = sorted(set(indexed) - on_disk)
    if missing:
        notes.append(f"{len(missing)} files in meta.json's index are missing: {missing[:5]}")
    unindexed = sorted(on_disk - set(indexed))
    if unindexed:
        notes.append(_unindexed_note(unindexed))
    if not files:
        bad["(none)"] = f"no episode files in {root / EPISODES_DIR}"
    duplicates = [names for names in by_content.values() if len(names) > 1]
    return VerifyReport(root=root, checked=len(files), bad=bad, notes=notes, duplicates=duplicates)


def _content_hash(arrays: dict[str, np.ndarray]) -> bytes:
    """Digest of an episode's arrays (names, shapes, dtypes, bytes): equal iff same content."""
    h = hashlib.blake2b(digest_size=16)
    for key in _EPISODE_KEYS:
        a = np.ascontiguousarray(arrays[key])
        h.update(f"{key}:{a.dtype.str}:{a.shape};".encode())
        h.update(memoryview(a.reshape(-1).view(np.uint8)))
    return h.digest()


def iter_episodes(root: str | os.PathLike[str], *, skip_corrupt: bool = True) -> Iterator[Episode]:
    """Episodes one at a time in file-name order (bounded memory, for conversions)."""
    root = Path(root)
    meta = _read_meta(root)
    for path in _episode_files(root):
        try:
            arrs = _load_small(path, with_pixels=True)
            _check_shapes(
                {k: np.shape(v) for k, v in arrs.items()},
                {k: np.asarray(v).dtype for k, v in arrs.items()},
                meta,
            )
            _check_values(arrs, meta)
        except _READ_ERRORS as e:
            if not skip_corrupt:
                raise DatasetError(f"episode file {path} is corrupt ({e})") from e
            warnings.warn(
                f"skipping corrupt episode file {path} ({e})", RuntimeWarning, stacklevel=2
            )
            continue
        yield Episode(
            name=path.name,
            pixels=arrs["pixels"],
            actions=arrs["actions"].astype(np.float32, copy=False),
            states=arrs["states"].astype(np.float32, copy=False),
            terminated=bool(arrs["terminated"]),
            truncated=bool(arrs["truncated"]),
        )


def repack_dataset(
    src: str | os.PathLike[str], dst: str | os.PathLike[str], *, compress: bool = False
) -> Path:
    """Copy a dataset into a new folder, (un)compressed; corrupt files are skipped.

    ``compress=False`` makes a dataset that :func:`load_dataset` can memory-map
    (what training does when the frames exceed its RAM budget). File order, hence
    the train/held-out split, is preserved: files are renumbered in sorted order.
    """
    meta = _read_meta(Path(src))
    dst = Path(dst)
    if (dst / META_FILE).exists():
        raise DatasetError(f"{dst} already holds a dataset; pick an empty folder")
    writer = EpisodeWriter(
        dst,
        env_id=meta["env_id"],
        image_size=int(meta["image_size"]),
        action_low=meta["action_low"],
        action_high=meta["action_high"],
        state_dim=int(meta["state_dim"]),
        collector=str(meta.get("collector", "unknown")),
        frameskip=int(meta["frameskip"]),
        compress=compress,
    )
    with writer:
        for ep in iter_episodes(src):
            writer.write(ep.pixels, ep.actions, ep.states, ep.terminated, ep.truncated)
    return dst
