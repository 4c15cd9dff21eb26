"""Crash-safe file writes: a hidden temp file in the same folder, fsync, rename, folder fsync.

Every writer of the project (datasets, checkpoints, training state and curves, policy
heads, baselines, GCBC, the suite, videos, the zoo) goes through here, so a reader
(or a run resumed after a kill) sees either the old file or the whole new one,
never half a file under a final name.

- The temp file sits in the target's folder because a rename is only atomic within
  one filesystem; its name is hidden (starts with a dot) and never ends like the
  final name, so folder listings skip it.
- It gets the permissions `open()` would give (0666 & the umask in force at the write;
  `tempfile.mkstemp` makes 0600, which would leave a renamed file unreadable by the
  group).
- The data is fsynced before the rename (a crash never leaves a complete-looking
  name over incomplete data) and the folder after it (the rename itself survives a
  power cut; best effort: not every filesystem supports a folder fsync).
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any

UMASK = os.umask(0)  # read the process umask once, at import (os.umask can only swap it)
os.umask(UMASK)
DIR_MODE = 0o777 & ~UMASK  # for temp folders (mkdtemp makes 0700): train_state


def fsync_file(path: str | os.PathLike[str]) -> None:
    """Flush a written file's data to disk."""
    with open(path, "rb") as f:
        os.fsync(f.fileno())


def fsync_dir(path: str | os.PathLike[str]) -> None:
    """Persist the renames in folder `path` (best effort: not every filesystem can)."""
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def temp_file(folder: str | os.PathLike[str], prefix: str, suffix: str = "") -> tuple[int, Path]:
    """A new temp file `folder/PREFIX<random>SUFFIX` (open fd, path).

    Created like `open()` creates a file (mode 0666, the kernel applies the umask in
    force at this call), exclusively (O_EXCL: never an existing file).
    """
    for _ in range(100):
        tmp = Path(folder) / f"{prefix}{secrets.token_hex(6)}{suffix}"
        try:
            return os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666), tmp
        except FileExistsError:
            continue
    raise FileExistsError(f"could not create a temporary file {prefix}...{suffix} in {folder}")


def _temp_names(path: Path, prefix: str | None, suffix: str | None) -> tuple[str, str]:
    return (f".{path.name}." if prefix is None else prefix), (".tmp" if suffix is None else suffix)


@contextlib.contextmanager
def atomic_path(
    path: str | os.PathLike[str], *, prefix: str | None = None, suffix: str | None = None
) -> Iterator[Path]:
    """Yield a temp path next to `path` for a writer that takes a file name.

    When the block ends the temp file is fsynced and renamed to `path` (and the
    folder fsynced); if the block raises, it is removed and `path` is untouched.
    `suffix` (default ".tmp") matters to writers that pick a format from the name
    (matplotlib, ffmpeg): pass e.g. ".tmp.png".
    """
    path = Path(path)
    prefix, suffix = _temp_names(path, prefix, suffix)
    fd, tmp = temp_file(path.parent, prefix, suffix)
    os.close(fd)
    try:
        yield tmp
        if not tmp.exists():
            raise FileNotFoundError(f"the writer of {path} left no file at {tmp}")
        # A writer may replace the file it was given (safetensors' save_file leaves
        # 0600): give it back the permissions open() would have given.
        os.chmod(tmp, 0o666 & ~UMASK)
        fsync_file(tmp)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)


def atomic_write(
    path: str | os.PathLike[str],
    write: Callable[[IO[bytes]], Any],
    *,
    prefix: str | None = None,
    suffix: str | None = None,
) -> Path:
    """Write `path` atomically; `write(fileobj)` produces the content. Returns `path`."""
    path = Path(path)
    prefix, suffix = _temp_names(path, prefix, suffix)
    fd, tmp = temp_file(path.parent, prefix, suffix)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)
    return path


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes, **names: Any) -> Path:
    """Write `data` to `path` atomically."""
    return atomic_write(path, lambda f: f.write(data), **names)


def atomic_write_text(path: str | os.PathLike[str], text: str, **names: Any) -> Path:
    """Write `text` (UTF-8) to `path` atomically."""
    return atomic_write_bytes(path, text.encode(), **names)


def atomic_write_json(path: str | os.PathLike[str], obj: Any, indent: int = 2, **kw: Any) -> Path:
    """Write `obj` as JSON (`indent`, a final newline) to `path` atomically.

    `kw` go to `json.dumps` (e.g. `default=str`).
    """
    return atomic_write_text(path, json.dumps(obj, indent=indent, **kw) + "\n")
