"""The dataset format: writer, reader, window sampler and action normalizer.

Pure numpy + json (no env, no torch at import time), so any process can write or
read a dataset. On disk (see docs/CONTRACTS.md)::

    DIR/meta.json            {"format_version": 1, "env_id", "image_size", "action_dim",
                              "action_low", "action_high", "state_dim", "collector",
                              "frameskip", "episodes": [{"file", "length"}, ...],
                              "num_episodes", "num_steps"}
    DIR/episodes/<name>.npz  pixels uint8 (T+1,H,W,3), actions float32 (T,A),
                             states float32 (T+1,S), terminated bool, truncated bool

Crash safety: an episode is written to a hidden temporary file in the same folder,
fsynced, then ``os.replace``d to its final name, so a reader sees either the whole
file or nothing; ``meta.json`` is rewritten the same way under an ``fcntl`` lock so
several processes (vector-env workers, each with its own name prefix) can record
into one folder. The folder listing is the truth; ``meta.json``'s list is an index,
updated in batches (at most every ``index_interval_s``, and on ``flush``/``close``),
so it may lag the folder; the next writer on the folder indexes what a crash left out.
Episodes are deflated at zlib level 1 by default (fast enough for a 0.2 ms/frame env).

Memory: in-memory datasets hold all frames in ONE uint8 array (episodes are views
into it), so window sampling is a single fancy-indexing gather and there is no
second copy. ``load_dataset(mmap=True)`` instead memory-maps each episode's arrays
straight from uncompressed ``.npz`` files (``EpisodeWriter(compress=False)``), for
datasets larger than RAM.
"""

from __future__ import annotations

import atexit
import contextlib
import dataclasses
import fcntl
import hashlib
import json
import math
import os
import re
import struct
import threading
import time
import tokenize
import warnings
import zipfile
import zlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .atomic import atomic_write, fsync_dir, temp_file
from .validation import ConfigError, check_action_bounds

FORMAT_VERSION = 1
META_FILE = "meta.json"
EPISODES_DIR = "episodes"
LOCK_FILE = ".lock"
_TMP_PREFIX = ".tmp-"  # temp files are hidden and never end in ".npz"
_EPISODE_KEYS = ("pixels", "actions", "states", "terminated", "truncated")

__all__ = [
    "FORMAT_VERSION",
    "ActionNormalizer",
    "Dataset",
    "DatasetError",
    "DiskFullError",
    "Episode",
    "EpisodeWriter",
    "VerifyReport",
    "WindowSampler",
    "dataset_info",
    "export_minari",
    "format_dataset_info",
    "iter_episodes",
    "load_dataset",
    "read_meta",
    "repack_dataset",
    "verify_dataset",
]


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
            "(`lewm collect` / `python -m envs.collect`, or envs.wrappers.RecordEpisodes)"
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
# writer
# ---------------------------------------------------------------------------------------
def _write_npz(f: Any, arrays: dict[str, np.ndarray], level: int) -> None:
    """``np.savez`` / ``np.savez_compressed`` with a chosen deflate level (0: stored).

    The layout is numpy's own (one ``<key>.npy`` member per array, zip64 forced, as
    ``np.savez`` does), so ``np.load``, the CRC checks and :func:`_npz_headers`' data
    offsets for memory maps read it unchanged. Level 1 compresses a 64 px Two-Room
    episode 2.5x faster than numpy's fixed level 6 (1.7 vs 4.2 ms) for a 1.7x larger
    file (23 vs 14 KB): the recorder must keep up with an env that renders in 0.2 ms.
    """
    if level == 0:
        zf = zipfile.ZipFile(f, "w", zipfile.ZIP_STORED, allowZip64=True)
    else:
        zf = zipfile.ZipFile(f, "w", zipfile.ZIP_DEFLATED, allowZip64=True, compresslevel=level)
    with zf:
        for key, value in arrays.items():
            array = np.asanyarray(value)
            with zf.open(f"{key}.npy", "w", force_zip64=True) as member:
                if array.flags.c_contiguous and not array.dtype.hasobject:
                    # What write_array writes, minus its copy of the data (.tobytes()):
                    # the same header, then the array's own buffer.
                    header = np.lib.format.header_data_from_array_1_0(array)
                    np.lib.format.write_array_header_1_0(member, header)
                    member.write(memoryview(array.reshape(-1).view(np.uint8)))
                else:
                    np.lib.format.write_array(member, array, allow_pickle=False)


def _set_totals(meta: dict[str, Any]) -> None:
    meta["num_episodes"] = len(meta["episodes"])
    meta["num_steps"] = int(sum(int(e["length"]) for e in meta["episodes"]))


# Writers whose newest index entries are not in meta.json yet: flushed at interpreter
# exit, so a script that never calls close() still ends with a complete index. (Strong
# references: a writer dropped without close() keeps its entries until then.)
_UNFLUSHED: set[EpisodeWriter] = set()
_UNFLUSHED_LOCK = threading.Lock()


def _flush_unflushed_writers() -> None:
    with _UNFLUSHED_LOCK:
        writers = list(_UNFLUSHED)
    for w in writers:
        if not w.root.is_dir():  # the folder was deleted meanwhile: nothing to index
            continue
        try:
            w.flush()
        except Exception as e:  # at exit: report, never mask the real exit status
            warnings.warn(
                f"could not update {w.root / META_FILE} at exit ({e}); the episode files are "
                "complete and the next EpisodeWriter on that folder indexes them",
                RuntimeWarning,
                stacklevel=1,
            )


atexit.register(_flush_unflushed_writers)


class EpisodeWriter:
    """Writes finished episodes into a dataset folder, one ``.npz`` each, crash-safely.

    Several writers (one per process, each with its own ``prefix``) may share one
    folder: file names are ``<prefix><index:06d>.npz`` with the next free index for
    that prefix, and ``meta.json`` is updated under an ``fcntl`` lock (read, merge,
    write: other writers' entries are kept). Appending to an existing dataset is
    allowed if its env, image size and dimensions match.

    Every episode file is durable when :meth:`write` returns (temp file, fsync,
    rename, folder fsync). The ``meta.json`` index is only an index (loaders list the
    folder), so its updates are batched: new entries are merged at most every
    ``index_interval_s`` seconds (on a later :meth:`write`) and always on
    :meth:`flush` / :meth:`close` (also at interpreter exit). A writer killed before
    that leaves complete but unindexed files; the next writer opened on the folder
    adds them to the index (reading only their headers).

    Args:
        root: dataset folder (created if needed).
        env_id: Gymnasium id of the env the data comes from.
        image_size: frame side in pixels (frames are ``(image_size, image_size, 3)``).
        action_low, action_high: the env's action bounds, shape ``(A,)``.
        state_dim: length ``S`` of the simulator state vectors.
        collector: free-form description of the data policy.
        frameskip: hint for training (env steps per model step).
        prefix: file name prefix (e.g. ``"w0-"`` for vector-env worker 0).
        compress: deflate-compressed members (small files) or stored ones (needed
            for ``load_dataset(mmap=True)``).
        compress_level: zlib level 1-9 when ``compress`` (1, the default, is the
            fastest; numpy's ``savez_compressed`` uses 6); 0 stores uncompressed,
            like ``compress=False``.
        index_interval_s: at most this long between ``meta.json`` updates while
            writing (0: after every episode, the old behaviour).
        env_build: how the env was built (JSON: id, module, kwargs, wrappers; see
            ``envs.build.EnvBuild``), stored as ``meta["env_build"]`` when the folder is
            created, so other commands can rebuild the env.
    """

    def __init__(
        self,
        root: str | os.PathLike[str],
        *,
        env_id: str,
        image_size: int,
        action_low: Sequence[float] | np.ndarray,
        action_high: Sequence[float] | np.ndarray,
        state_dim: int,
        collector: str = "unknown",
        frameskip: int = 5,
        prefix: str = "",
        compress: bool = True,
        compress_level: int = 1,
        index_interval_s: float = 1.0,
        env_build: dict[str, Any] | None = None,
    ) -> None:
        if not re.fullmatch(r"[A-Za-z0-9_\-]*", prefix):
            raise ValueError(f"prefix must match [A-Za-z0-9_-]*, got {prefix!r}")
        if (
            isinstance(compress_level, bool)
            or not isinstance(compress_level, (int, np.integer))
            or not 0 <= compress_level <= 9
        ):
            raise ValueError(
                f"compress_level must be an int from 0 to 9, got {compress_level!r}; use 1 "
                "(fast, the default) to 9 (smallest files), or 0 / compress=False for "
                "uncompressed files that load_dataset(mmap=True) can memory-map"
            )
        if not (isinstance(index_interval_s, (int, float)) and 0 <= index_interval_s < math.inf):
            raise ValueError(
                f"index_interval_s must be a finite number of seconds >= 0, got "
                f"{index_interval_s!r} (0 updates meta.json after every episode)"
            )
        low = np.asarray(action_low, dtype=np.float32).reshape(-1)
        high = np.asarray(action_high, dtype=np.float32).reshape(-1)
        if low.shape != high.shape or low.size == 0:
            raise ValueError(f"action_low/high must be equal-length 1-D, got {low} {high}")
        if int(image_size) < 1 or int(state_dim) < 1 or int(frameskip) < 1:
            raise ValueError("image_size, state_dim and frameskip must be positive")
        self.root = Path(root)
        self.prefix = prefix
        self.compress = compress
        self.compress_level = int(compress_level)
        self.index_interval_s = float(index_interval_s)
        self._level = self.compress_level if compress else 0  # 0: ZIP_STORED
        self.image_size = int(image_size)
        self.action_dim = int(low.size)
        self.state_dim = int(state_dim)
        self._next_index: int | None = None  # lazily found by scanning the folder
        self._pending: list[dict[str, Any]] = []  # written, not yet in meta.json
        self._mutex = threading.Lock()  # guards _pending (write may run on a thread)
        self._header: dict[str, Any] = {
            "format_version": FORMAT_VERSION,
            "env_id": str(env_id),
            "image_size": self.image_size,
            "action_dim": self.action_dim,
            "action_low": [float(v) for v in low],
            "action_high": [float(v) for v in high],
            "state_dim": self.state_dim,
            "collector": str(collector),
            "frameskip": int(frameskip),
        }
        if env_build is not None:
            self._header["env_build"] = json.loads(json.dumps(env_build))  # a JSON copy
        (self.root / EPISODES_DIR).mkdir(parents=True, exist_ok=True)
        with _locked(self.root):
            created = not (self.root / META_FILE).exists()
            meta = self._load_or_create_meta()
            # Files another writer finished but never indexed (killed before its flush).
            self.reindexed: list[dict[str, Any]] = self._unindexed_entries(meta)
            if created or self.reindexed:
                meta["episodes"].extend(self.reindexed)
                _set_totals(meta)
                self._write_meta(meta)
        self._last_index = time.monotonic()

    # -- meta ------------------------------------------------------------------------------
    def _load_or_create_meta(self) -> dict[str, Any]:
        if not (self.root / META_FILE).exists():
            return {**self._header, "episodes": [], "num_episodes": 0, "num_steps": 0}
        meta = _read_meta(self.root)
        for key in ("env_id", "image_size", "action_dim", "state_dim"):
            if meta.get(key) != self._header[key]:
                raise DatasetError(
                    f"{self.root / META_FILE} has {key}={meta.get(key)!r} but this writer has "
                    f"{key}={self._header[key]!r}; record into a new folder instead"
                )
        meta.setdefault("episodes", [])
        return meta

    def _unindexed_entries(self, meta: dict[str, Any]) -> list[dict[str, Any]]:
        """Index entries for finished files missing from ``meta`` (e.g. after a crash).

        Reads only npy headers. Unreadable files stay out of the index
        (``verify_dataset`` names them).
        """
        indexed = {str(e.get("file")) for e in meta["episodes"]}
        out = []
        for path in _episode_files(self.root):
            if path.name in indexed:
                continue
            try:
                h = _npz_headers(path)
                t = _check_shapes(
                    {k: v[0] for k, v in h.items()}, {k: v[1] for k, v in h.items()}, meta
                )
            except _READ_ERRORS:
                continue
            out.append({"file": path.name, "length": t})
        return out

    def _write_meta(self, meta: dict[str, Any]) -> None:
        # Readable but compact: header keys one per line, one line per episode (at
        # 10k episodes the file is ~0.5 MB, rewritten at most every index_interval_s).
        head = {k: v for k, v in meta.items() if k != "episodes"}
        lines = [f"  {json.dumps(k)}: {json.dumps(v)}," for k, v in head.items()]
        # One json.dumps for the list (fast), then one episode per line; file names are
        # [A-Za-z0-9_-] + ".npz", so "}, {" only occurs between entries.
        eps = json.dumps(meta.get("episodes", []))[1:-1].replace("}, {", "},\n    {")
        text = "{\n" + "\n".join(lines) + '\n  "episodes": [\n    ' + eps + "\n  ]\n}\n"
        data = text.encode()
        _atomic_write(self.root / META_FILE, lambda f: f.write(data))

    def _merge_pending(self) -> None:
        """Merge the pending entries into ``meta.json``; caller holds the folder lock and
        ``_mutex``. Read-modify-write, so other writers' entries are kept; entries another
        writer already indexed (see :meth:`_unindexed_entries`) are not duplicated."""
        if self._pending:
            meta = self._load_or_create_meta()
            known = {str(e.get("file")) for e in meta["episodes"]}
            new = [e for e in self._pending if e["file"] not in known]
            if new:
                meta["episodes"].extend(new)
                _set_totals(meta)
                self._write_meta(meta)
            self._pending.clear()
        self._last_index = time.monotonic()
        with _UNFLUSHED_LOCK:
            _UNFLUSHED.discard(self)

    def flush(self) -> None:
        """Merge every episode written so far into ``meta.json`` (no-op if none pending)."""
        if not self._pending:
            return
        with _locked(self.root), self._mutex:  # same order as in write(): no deadlock
            self._merge_pending()

    def close(self) -> None:
        """Flush the index. The writer stays usable (a later write is indexed again)."""
        self.flush()

    def __enter__(self) -> EpisodeWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- episodes --------------------------------------------------------------------------
    def _validate(
        self, pixels: np.ndarray, actions: np.ndarray, states: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        pixels = np.asarray(pixels)
        actions = np.asarray(actions)
        states = np.asarray(states)
        s = self.image_size
        if actions.ndim != 2 or actions.shape[1] != self.action_dim or actions.shape[0] < 1:
            raise ValueError(
                f"actions must be (T, {self.action_dim}) with T >= 1, got {actions.shape}"
            )
        t = actions.shape[0]
        if pixels.dtype != np.uint8 or pixels.shape != (t + 1, s, s, 3):
            raise ValueError(
                f"pixels must be uint8 ({t + 1}, {s}, {s}, 3) for {t} actions, "
                f"got {pixels.dtype} {pixels.shape}"
            )
        if states.shape != (t + 1, self.state_dim):
            raise ValueError(f"states must be ({t + 1}, {self.state_dim}), got {states.shape}")
        actions = actions.astype(np.float32, copy=False)
        states = states.astype(np.float32, copy=False)
        try:  # what every reader checks, so a written file is never skipped as corrupt
            _check_values({"actions": actions, "states": states}, self._header)
        except _CorruptEpisode as e:
            raise ValueError(f"{e}; clip actions to the env's bounds before writing") from None
        return pixels, actions, states

    def _scan_next_index(self) -> int:
        pattern = re.compile(re.escape(self.prefix) + r"(\d{6,})\.npz")
        last = -1
        for p in (self.root / EPISODES_DIR).iterdir():
            m = pattern.fullmatch(p.name)
            if m:
                last = max(last, int(m.group(1)))
        return last + 1

    def write(
        self,
        pixels: np.ndarray,
        actions: np.ndarray,
        states: np.ndarray,
        terminated: bool,
        truncated: bool,
    ) -> Path:
        """Validate and write one finished episode; returns the path of the new file.

        Shapes: pixels uint8 ``(T+1, H, W, 3)``, actions ``(T, A)`` finite, states
        ``(T+1, S)``, with ``T >= 1``. The file is complete and durable on return; its
        ``meta.json`` entry may lag up to ``index_interval_s`` (see :meth:`flush`). The
        compression happens outside the lock; only the rename (and an index merge when
        due) is serialised between processes.
        """
        pixels, actions, states = self._validate(pixels, actions, states)
        arrays = {
            "pixels": pixels,
            "actions": actions,
            "states": states,
            "terminated": np.array(bool(terminated)),
            "truncated": np.array(bool(truncated)),
        }
        folder = self.root / EPISODES_DIR
        fd, tmp = temp_file(folder, f"{_TMP_PREFIX}{self.prefix}", ".part")
        try:
            with os.fdopen(fd, "wb") as f:
                _write_npz(f, arrays, self._level)
                f.flush()
                os.fsync(f.fileno())
            with _locked(self.root):
                if self._next_index is None:
                    self._next_index = self._scan_next_index()
                while (folder / f"{self.prefix}{self._next_index:06d}.npz").exists():
                    self._next_index += 1  # another process used the same prefix
                path = folder / f"{self.prefix}{self._next_index:06d}.npz"
                os.replace(tmp, path)
                fsync_dir(folder)
                self._next_index += 1
                with self._mutex:
                    self._pending.append({"file": path.name, "length": int(actions.shape[0])})
                    with _UNFLUSHED_LOCK:
                        _UNFLUSHED.add(self)
                    if time.monotonic() - self._last_index >= self.index_interval_s:
                        self._merge_pending()
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
        return path


# ---------------------------------------------------------------------------------------
# reader
# ---------------------------------------------------------------------------------------
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


def _load_small(path: Path, *, with_pixels: bool) -> dict[str, Any]:
    """Fully read (and CRC-check) an episode's arrays; pixels only if asked."""
    with np.load(path, allow_pickle=False) as z:
        keys = [k for k in _EPISODE_KEYS if with_pixels or k != "pixels"]
        missing = [k for k in _EPISODE_KEYS if k not in z.files]
        if missing:
            raise _CorruptEpisode(f"missing arrays {missing}")
        return {k: z[k] for k in keys}


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


def load_dataset(
    root: str | os.PathLike[str], *, skip_corrupt: bool = False, mmap: bool = False
) -> Dataset:
    """Load every finished episode of a dataset folder.

    Args:
        root: the folder holding ``meta.json`` and ``episodes/``.
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
    files = _episode_files(root)

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
    for path in files:
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
                arrs = _load_small(path, with_pixels=True)
                t_read = _check_shapes(
                    {k: np.shape(v) for k, v in arrs.items()},
                    {k: np.asarray(v).dtype for k, v in arrs.items()},
                    meta,
                )
                if t_read != t:
                    raise _CorruptEpisode(f"file changed while loading ({t} -> {t_read} steps)")
                _check_values(arrs, meta)
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
        skipped = f" ({len(files)} files skipped as corrupt, see the warnings)" if files else ""
        raise DatasetError(
            f"{root} has no readable episodes in {root / EPISODES_DIR}{skipped}; record some "
            f"first (`lewm data verify {root}` names what is wrong with each file)"
        )
    return Dataset(meta, episodes, frames, frame_offsets)


# ---------------------------------------------------------------------------------------
# action normalisation
# ---------------------------------------------------------------------------------------
class ActionNormalizer:
    """Per-dimension standardisation of actions: ``(a - mean) / std``.

    Dimensions whose std is below ``min_std`` (constant in the data) get ``std = 1``
    (scikit-learn's convention): dividing by a tiny std would turn any action the data
    never showed (a planner sample, another policy's action) into a huge network input,
    while a constant dimension carries no information to rescale anyway.

    ``normalize``/``denormalize`` accept numpy arrays or torch tensors whose last
    dimension is ``A`` or a multiple of it (flattened frameskip blocks ``(..., k*A)``).
    """

    min_std: float = 1e-6

    def __init__(self, mean: Sequence[float] | np.ndarray, std: Sequence[float] | np.ndarray):
        self.mean = np.asarray(mean, dtype=np.float32).reshape(-1)  # (A,)
        self.std = np.asarray(std, dtype=np.float32).reshape(-1)  # (A,)
        if self.mean.shape != self.std.shape or self.mean.size == 0:
            raise ValueError(f"mean and std must be equal-length 1-D, got {mean} / {std}")
        if not (np.all(np.isfinite(self.mean)) and np.all(np.isfinite(self.std))):
            raise ValueError("mean and std must be finite")
        if np.any(self.std <= 0):
            raise ValueError(f"std must be positive, got {self.std}")

    @classmethod
    def fit(cls, actions: np.ndarray) -> ActionNormalizer:
        """Fit on actions ``(N, A)`` (e.g. ``np.concatenate([e.actions for e in dataset])``)."""
        a = np.asarray(actions, dtype=np.float64)
        if a.ndim != 2 or a.shape[0] == 0:
            raise ValueError(f"actions must be (N >= 1, A), got {a.shape}")
        if not np.all(np.isfinite(a)):
            raise ValueError("actions contain NaN or inf")
        std = a.std(axis=0)  # (A,)
        std = np.where(std < cls.min_std, 1.0, std)
        return cls(a.mean(axis=0), std)

    @property
    def action_dim(self) -> int:
        return int(self.mean.size)

    def _stats(self, x: Any) -> tuple[Any, Any]:
        last = x.shape[-1]
        if last % self.action_dim:
            raise ValueError(
                f"last dimension {last} is not a multiple of action_dim {self.action_dim}"
            )
        reps = last // self.action_dim
        mean, std = np.tile(self.mean, reps), np.tile(self.std, reps)  # (last,)
        if type(x).__module__.startswith("torch"):
            import torch

            return (
                torch.as_tensor(mean, dtype=x.dtype, device=x.device),
                torch.as_tensor(std, dtype=x.dtype, device=x.device),
            )
        return mean, std

    def normalize(self, actions: Any) -> Any:
        """Env units -> normalised units, same type/shape as the input."""
        if isinstance(actions, list | tuple):
            actions = np.asarray(actions, dtype=np.float32)
        mean, std = self._stats(actions)
        return (actions - mean) / std

    def denormalize(self, actions: Any) -> Any:
        """Normalised units -> env units (not clipped: clip to the env bounds yourself)."""
        if isinstance(actions, list | tuple):
            actions = np.asarray(actions, dtype=np.float32)
        mean, std = self._stats(actions)
        return actions * std + mean

    def to_dict(self) -> dict[str, list[float]]:
        """JSON-able form (saved with a checkpoint)."""
        return {"mean": [float(v) for v in self.mean], "std": [float(v) for v in self.std]}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ActionNormalizer:
        return cls(d["mean"], d["std"])

    def __repr__(self) -> str:
        return f"ActionNormalizer(mean={self.mean.tolist()}, std={self.std.tolist()})"


# ---------------------------------------------------------------------------------------
# window sampler
# ---------------------------------------------------------------------------------------
class WindowSampler:
    """Uniform random training windows: ``num_frames`` frames ``frameskip`` steps apart.

    For a window starting at step ``t`` of an episode:
    frame ``k`` = ``pixels[t + k*frameskip]`` and action block ``k`` =
    ``actions[t + k*frameskip : t + (k+1)*frameskip]`` flattened to ``(frameskip*A,)``,
    for ``k = 0 .. num_frames-1``; only starts where every block fits
    (``t + num_frames*frameskip <= T``) are valid. Episodes too short for one window
    are skipped. Each valid (episode, t) pair is equally likely.
    """

    def __init__(self, dataset: Dataset, *, num_frames: int, frameskip: int, seed: int) -> None:
        if num_frames < 1 or frameskip < 1:
            raise ValueError(
                f"num_frames and frameskip must be >= 1, got {num_frames}, {frameskip}"
            )
        self.dataset = dataset
        self.num_frames = int(num_frames)
        self.frameskip = int(frameskip)
        self.rng = np.random.default_rng(seed)
        span = self.num_frames * self.frameskip
        lengths = np.array([len(e) for e in dataset.episodes], dtype=np.int64)  # (E,)
        counts = np.maximum(lengths - span + 1, 0)  # valid starts per episode, (E,)
        self._cum = np.cumsum(counts)  # (E,)
        self.num_windows = int(self._cum[-1]) if len(counts) else 0
        if self.num_windows == 0:
            longest = int(lengths.max()) if len(lengths) else 0
            raise DatasetError(
                f"no episode is long enough for a window of {num_frames} frames x frameskip "
                f"{frameskip} (needs >= {span} steps, longest has {longest}); lower "
                "num_frames/frameskip or record longer episodes"
            )
        # Actions of all episodes in one array (small) so gathers are one fancy index.
        self._actions = np.concatenate([e.actions for e in dataset.episodes])  # (N_act, A)
        self._act_off = np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(np.int64)  # (E,)
        self._states = np.concatenate([e.states for e in dataset.episodes])  # (N_frames, S)
        self._state_off = self._act_off + np.arange(len(lengths))  # (E,) T+1 rows per episode
        if dataset.frames is not None and dataset.frame_offsets is not None:
            self._frame_off: np.ndarray | None = np.asarray(dataset.frame_offsets, np.int64)
        else:
            self._frame_off = None  # memory-mapped episodes: gather per window
        self._k = np.arange(self.num_frames, dtype=np.int64) * self.frameskip  # (F,)

    def sample_indices(
        self, batch_size: int, rng: np.random.Generator | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Uniform valid ``(episode_index, start_step)`` pairs, two int64 arrays ``(B,)``.

        ``rng`` replaces the sampler's own stream for this call: training derives one
        generator per step from ``(seed, step)`` so a batch is a pure function of its
        step (exact resume, identical global batches on every rank, prefetch-safe).
        """
        j = (rng or self.rng).integers(0, self.num_windows, size=batch_size)  # (B,)
        ep = np.searchsorted(self._cum, j, side="right")  # (B,)
        before = np.where(ep > 0, self._cum[ep - 1], 0)  # windows in earlier episodes
        return ep, j - before

    def all_indices(self) -> tuple[np.ndarray, np.ndarray]:
        """Every valid ``(episode_index, start_step)`` pair, in order (for full evaluation)."""
        counts = np.diff(np.concatenate([[0], self._cum]))  # (E,)
        ep = np.repeat(np.arange(len(counts)), counts)  # (N,)
        starts = np.arange(self.num_windows) - np.repeat(self._cum - counts, counts)  # (N,)
        return ep, starts

    def gather(self, episode: np.ndarray, start: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Windows at given indices: pixels uint8 ``(B, F, H, W, 3)``, actions float32 ``(B, F, fs*A)``."""
        ep = np.asarray(episode, dtype=np.int64)
        t = np.asarray(start, dtype=np.int64)
        b = ep.shape[0]
        fs = self.frameskip
        rel = t[:, None] + self._k[None, :]  # (B, F) frame index within the episode
        if self._frame_off is not None:
            pixels = self.dataset.frames[self._frame_off[ep][:, None] + rel]  # (B, F, H, W, 3)
        else:
            eps = self.dataset.episodes
            pixels = np.stack([eps[e].pixels[rel[i]] for i, e in enumerate(ep)])  # (B, F, H, W, 3)
        steps = rel[:, :, None] + np.arange(fs)[None, None, :]  # (B, F, fs)
        actions = self._actions[self._act_off[ep][:, None, None] + steps]  # (B, F, fs, A)
        return pixels, actions.reshape(b, self.num_frames, -1).astype(np.float32, copy=False)

    def gather_states(self, episode: np.ndarray, start: np.ndarray) -> np.ndarray:
        """States of the window frames, float32 ``(B, F, S)`` (for probes and debugging)."""
        ep = np.asarray(episode, dtype=np.int64)
        rel = np.asarray(start, dtype=np.int64)[:, None] + self._k[None, :]  # (B, F)
        return self._states[self._state_off[ep][:, None] + rel]  # (B, F, S)

    def sample(self, batch_size: int) -> tuple[np.ndarray, np.ndarray]:
        """A random batch: pixels uint8 ``(B, F, H, W, 3)``, actions float32 ``(B, F, fs*A)``."""
        return self.gather(*self.sample_indices(batch_size))

    def __len__(self) -> int:
        return self.num_windows


# ---------------------------------------------------------------------------------------
# dataset tools: info, verify, repack, Minari export (`lewm data ...`)
# ---------------------------------------------------------------------------------------


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
            arrs = _load_small(path, with_pixels=True)  # reads every byte: CRC-checked
            t_read = _check_shapes(
                {k: np.shape(v) for k, v in arrs.items()},
                {k: np.asarray(v).dtype for k, v in arrs.items()},
                meta,
            )
            if t_read != t:
                raise _CorruptEpisode(f"headers say {t} steps, arrays hold {t_read}")
            _check_values(arrs, meta)
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


def export_minari(
    root: str | os.PathLike[str],
    dataset_id: str,
    *,
    minari_root: str | os.PathLike[str] | None = None,
    include_states: bool = True,
    description: str | None = None,
) -> Path:
    """Export a dataset to a Minari dataset (the Farama offline-RL format).

    Observations are ``{"pixels": uint8 (H, W, 3), "state": float32 (S,)}`` (or just
    the pixels with ``include_states=False``), stored losslessly (no JPEG); actions are
    the env's own. Rewards are zeros: our datasets are reward-free by design, and
    LeWM needs none. Episodes are streamed one at a time, so memory stays bounded.

    Args:
        root: our dataset folder.
        dataset_id: Minari id, ``namespace/name-v0`` style (must not exist yet).
        minari_root: where Minari keeps datasets (default: ``$MINARI_DATASETS_PATH``
            or ``~/.minari/datasets``).
    Returns:
        The folder of the new Minari dataset; open it with ``minari.load_dataset(id)``.
    """
    try:
        import gymnasium as gym
        import minari
        from minari.data_collector import EpisodeBuffer
    except ImportError as e:
        raise ImportError(
            'export_minari needs the optional `minari` package: pip install "lewm-agent[minari]"'
        ) from e
    root = Path(root)
    meta = _read_meta(root)
    size, sdim = int(meta["image_size"]), int(meta["state_dim"])
    pixels_space = gym.spaces.Box(0, 255, (size, size, 3), np.uint8)
    obs_space: gym.spaces.Space = (
        gym.spaces.Dict(
            {"pixels": pixels_space, "state": gym.spaces.Box(-np.inf, np.inf, (sdim,), np.float32)}
        )
        if include_states
        else pixels_space
    )
    action_space = gym.spaces.Box(
        np.asarray(meta["action_low"], np.float32), np.asarray(meta["action_high"], np.float32)
    )

    def buffers() -> Iterator[Any]:
        for i, ep in enumerate(iter_episodes(root)):
            t = len(ep)
            terminations = np.zeros(t, dtype=bool)
            truncations = np.zeros(t, dtype=bool)
            terminations[-1], truncations[-1] = ep.terminated, ep.truncated
            obs = {"pixels": ep.pixels, "state": ep.states} if include_states else ep.pixels
            yield EpisodeBuffer(
                id=i,
                observations=obs,
                actions=ep.actions,
                rewards=np.zeros(t, dtype=np.float32),
                terminations=terminations,
                truncations=truncations,
            )

    old = os.environ.get("MINARI_DATASETS_PATH")
    if minari_root is not None:
        os.environ["MINARI_DATASETS_PATH"] = str(Path(minari_root).resolve())
    try:
        with warnings.catch_warnings():
            # Minari nags about metadata we do not have (author, permalink, an env spec:
            # lewm_agent never imports the envs); the env id is in the description.
            warnings.filterwarnings("ignore", message=r".*(is set to None|env_spec is None)")
            minari.create_dataset_from_buffers(
                dataset_id,
                buffers(),  # type: ignore[arg-type]  # any iterable works; bounds memory
                env=None,
                action_space=action_space,
                observation_space=obs_space,
                algorithm_name=str(meta.get("collector", "unknown")),
                description=description
                or (
                    f"Exported by lewm-agent from {root.name}: env {meta['env_id']}, "
                    f"frameskip hint {meta['frameskip']}, reward-free (rewards are zeros)."
                ),
                jpeg_encoding=False,
            )
        from minari.storage.datasets_root_dir import get_dataset_path

        return Path(get_dataset_path(dataset_id))
    finally:
        if minari_root is not None:
            if old is None:
                os.environ.pop("MINARI_DATASETS_PATH", None)
            else:
                os.environ["MINARI_DATASETS_PATH"] = old
