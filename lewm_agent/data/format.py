"""The dataset format on disk: names, meta.json (read, checked, locked) and errors.

See `lewm_agent.data` for the layout; every other module of the package builds on this one.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import math
import os
import struct
import tokenize
import zipfile
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from ..atomic import atomic_write
from ..validation import ConfigError, check_action_bounds

FORMAT_VERSION = 1
META_FILE = "meta.json"
EPISODES_DIR = "episodes"
LOCK_FILE = ".lock"
_TMP_PREFIX = ".tmp-"  # temp files are hidden and never end in ".npz"
_EPISODE_KEYS = ("pixels", "actions", "states", "terminated", "truncated")


class DatasetError(ValueError):
    """A dataset folder or file is missing, corrupt or inconsistent (the message says the fix)."""


class DiskFullError(OSError):
    """The disk filled up while recording a dataset (the message names the folder and free space)."""


# ---------------------------------------------------------------------------------------
# small filesystem helpers
# ---------------------------------------------------------------------------------------
def _atomic_write(path: Path, write: Any) -> None:
    """Write ``path`` via a hidden ``.tmp-`` file in the same folder (see `atomic.py`)."""
    atomic_write(path, write, prefix=f"{_TMP_PREFIX}{path.name}.", suffix="")


@contextlib.contextmanager
def _locked(root: Path) -> Iterator[None]:
    """Exclusive inter-process lock on ``root/.lock`` (released on exit or process death)."""
    with open(root / LOCK_FILE, "a+b") as f:
        fcntl.flock(f.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f.fileno(), fcntl.LOCK_UN)


def _read_meta(root: Path) -> dict[str, Any]:
    path = root / META_FILE
    if not root.is_dir():
        raise DatasetError(
            f"dataset folder {root} does not exist; record one first "
            "(`lewm collect`, or envs.wrappers.RecordEpisodes)"
        )
    if not path.is_file():
        raise DatasetError(
            f"{path} is missing, so {root} is not a dataset folder; record one with "
            "`lewm collect` (or point to the folder that contains meta.json)"
        )
    try:
        meta = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise DatasetError(
            f"{path} is not valid JSON ({e}); restore it or delete it and re-record the dataset"
        ) from e
    if not isinstance(meta, dict) or meta.get("format_version") != FORMAT_VERSION:
        raise DatasetError(
            f"{path}: unsupported format_version {meta.get('format_version') if isinstance(meta, dict) else None!r} "
            f"(this code reads version {FORMAT_VERSION}); re-record the dataset with this version"
        )
    required = ("env_id", "image_size", "action_dim", "state_dim", "frameskip")
    missing = [k for k in required if k not in meta]
    if missing:
        raise DatasetError(f"{path} lacks keys {missing}; re-record the dataset")
    _check_meta_fields(meta, path)
    return meta


def read_meta(root: str | os.PathLike[str]) -> dict[str, Any]:
    """The checked ``meta.json`` of a dataset folder (DatasetError naming the fix if bad)."""
    return _read_meta(Path(root))


def _check_meta_fields(meta: dict[str, Any], path: Path) -> None:
    """Types and ranges of meta.json's fields, so a damaged one fails here, by name."""
    fix = "restore meta.json or re-record the dataset"
    for key in ("image_size", "action_dim", "state_dim", "frameskip"):
        v = meta[key]
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise DatasetError(f"{path}: {key} must be a positive integer, got {v!r}; {fix}")
    if not isinstance(meta["env_id"], str):
        raise DatasetError(f"{path}: env_id must be a string, got {meta['env_id']!r}; {fix}")
    if "action_low" in meta or "action_high" in meta:
        try:
            check_action_bounds(
                meta.get("action_low"),
                meta.get("action_high"),
                meta["action_dim"],
                "action_low/action_high",
                strict=False,
            )
        except ConfigError as e:
            raise DatasetError(f"{path}: {e}; {fix}") from e
    episodes = meta.get("episodes", [])
    if not isinstance(episodes, list) or not all(
        isinstance(e, dict)
        and isinstance(e.get("file"), str)
        and isinstance(e.get("length"), int)
        and not isinstance(e.get("length"), bool)
        for e in episodes
    ):
        raise DatasetError(
            f'{path}: episodes must be a list of {{"file": name, "length": steps}} entries, '
            f"got {str(episodes)[:80]}; it is only an index of episodes/: delete the "
            '"episodes" key (the next EpisodeWriter rebuilds it from the files) or ' + fix
        )


def _episode_files(root: Path) -> list[Path]:
    """Finished episode files sorted by name (temp and hidden files are never listed)."""
    folder = root / EPISODES_DIR
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.glob("*.npz") if not p.name.startswith("."))


# ---------------------------------------------------------------------------------------
# episode files: what a valid one holds (the writer checks before writing, readers after)
# ---------------------------------------------------------------------------------------
class _CorruptEpisode(Exception):
    """Internal: an episode file failed to read or validate."""


# What reading a damaged episode file can raise: zipfile and zlib errors, a flipped flag
# bit ("encrypted": RuntimeError; unknown compression method: NotImplementedError), short
# reads, bad npy headers (numpy parses the header dict with Python's tokenizer: a flipped
# byte there raises tokenize.TokenError or SyntaxError). Any of these means the file is
# bad, not the program.
_READ_ERRORS = (
    _CorruptEpisode,
    tokenize.TokenError,
    SyntaxError,
    zipfile.BadZipFile,
    zlib.error,
    struct.error,
    NotImplementedError,
    RuntimeError,
    OSError,
    ValueError,
    EOFError,
    KeyError,
)


def _npz_headers(path: Path) -> dict[str, tuple[tuple[int, ...], np.dtype, bool, int]]:
    """Read each member's npy header: name -> (shape, dtype, fortran_order, data_offset).

    ``data_offset`` is the absolute file offset of the raw array data if the member
    is stored uncompressed, else -1. Only headers are read (cheap even for big files).
    """
    out: dict[str, tuple[tuple[int, ...], np.dtype, bool, int]] = {}
    disk_size = path.stat().st_size
    with zipfile.ZipFile(path) as zf, open(path, "rb") as raw:
        for info in zf.infolist():
            key = info.filename.removesuffix(".npy")
            _check_member_size(info, disk_size)
            with zf.open(info) as f:
                version = np.lib.format.read_magic(f)
                if version == (1, 0):
                    shape, fortran, dtype = np.lib.format.read_array_header_1_0(f)
                else:
                    shape, fortran, dtype = np.lib.format.read_array_header_2_0(f)
                npy_header_len = f.tell()
            declared = math.prod(shape) * np.dtype(dtype).itemsize
            if declared > info.file_size - npy_header_len:
                # Reading it would first allocate the declared size (terabytes for a
                # forged length): refuse it from the header.
                raise _CorruptEpisode(
                    f"{info.filename} declares shape {tuple(shape)} ({declared} bytes) but "
                    f"holds {info.file_size - npy_header_len} bytes"
                )
            offset = -1
            if info.compress_type == zipfile.ZIP_STORED:
                raw.seek(info.header_offset)
                local = raw.read(30)  # zip local file header
                if local[:4] != b"PK\x03\x04":
                    raise _CorruptEpisode("bad zip local header")
                name_len, extra_len = struct.unpack("<HH", local[26:30])
                offset = info.header_offset + 30 + name_len + extra_len + npy_header_len
            out[key] = (tuple(shape), np.dtype(dtype), bool(fortran), offset)
    return out


# Deflate cannot compress better than ~1032:1, so a member that claims to expand more
# than this from its compressed size is lying about its size.
_MAX_DEFLATE_RATIO = 1100


def _check_member_size(info: zipfile.ZipInfo, disk_size: int) -> None:
    """A zip member's recorded sizes must fit in the file that holds it."""
    if info.header_offset + info.compress_size > disk_size:
        raise _CorruptEpisode(
            f"{info.filename} claims {info.compress_size} bytes at offset {info.header_offset} "
            f"of a {disk_size}-byte file (truncated?)"
        )
    limit = info.compress_size if info.compress_type == zipfile.ZIP_STORED else None
    if limit is None:
        limit = info.compress_size * _MAX_DEFLATE_RATIO + 1024
    if info.file_size > limit:
        raise _CorruptEpisode(
            f"{info.filename} claims {info.file_size} bytes from {info.compress_size} stored"
        )


def _check_values(arrays: dict[str, np.ndarray], meta: dict[str, Any]) -> None:
    """Finite actions inside meta.json's action bounds, finite states.

    An action outside the env's Box was never applied to the env (the recorder
    stores the clipped action), and one huge value (1e30) squeezes the fitted
    action normaliser until the planner's search box has zero width.
    """
    actions = np.asarray(arrays["actions"])  # (T, A)
    bad_steps = np.flatnonzero(~np.isfinite(actions).all(axis=1))
    if bad_steps.size:
        raise _CorruptEpisode(f"actions contain NaN or inf (step {int(bad_steps[0])})")
    if "action_low" in meta and "action_high" in meta:
        low = np.asarray(meta["action_low"], dtype=np.float64)  # (A,)
        high = np.asarray(meta["action_high"], dtype=np.float64)
        # float32 rounding slack; infinite bounds stay infinite (-inf - inf = -inf)
        lo = low - 1e-5 * np.maximum(1.0, np.abs(low))
        hi = high + 1e-5 * np.maximum(1.0, np.abs(high))
        outside = (actions < lo) | (actions > hi)  # (T, A)
        if outside.any():
            t, d = (int(i) for i in np.argwhere(outside)[0])
            raise _CorruptEpisode(
                f"actions outside meta.json's bounds: actions[{t}][{d}] = {actions[t, d]:g}, "
                f"bounds [{low[d]:g}, {high[d]:g}] (the env cannot have applied it)"
            )
    states = np.asarray(arrays["states"])  # (T+1, S)
    bad_steps = np.flatnonzero(~np.isfinite(states).all(axis=1))
    if bad_steps.size:
        raise _CorruptEpisode(f"states contain NaN or inf (frame {int(bad_steps[0])})")


def _check_shapes(
    shapes: dict[str, tuple[int, ...]], dtypes: dict[str, np.dtype], meta: dict[str, Any]
) -> int:
    """Validate one episode's member shapes against each other and the meta; returns T."""
    missing = [k for k in _EPISODE_KEYS if k not in shapes]
    if missing:
        raise _CorruptEpisode(f"missing arrays {missing}")
    a, p, s = shapes["actions"], shapes["pixels"], shapes["states"]
    size, adim, sdim = int(meta["image_size"]), int(meta["action_dim"]), int(meta["state_dim"])
    if len(a) != 2 or a[0] < 1 or a[1] != adim:
        raise _CorruptEpisode(f"actions shape {a}, expected (T >= 1, {adim})")
    t = a[0]
    if p != (t + 1, size, size, 3) or dtypes["pixels"] != np.uint8:
        raise _CorruptEpisode(
            f"pixels {dtypes['pixels']} {p}, expected uint8 {(t + 1, size, size, 3)}"
        )
    if s != (t + 1, sdim):
        raise _CorruptEpisode(f"states shape {s}, expected {(t + 1, sdim)}")
    return int(t)
