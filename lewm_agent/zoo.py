"""`zoo:NAME`: a model of the zoo, resolved to its folder.

The zoo is `zoo/` at the top of the source tree (or `$LEWM_ZOO`). Each model is
an ordinary checkpoint folder, so `WorldModelAgent.load("zoo:NAME")` is
`WorldModelAgent.load(<zoo>/NAME)`, and a copy of the folder loads the same
wherever it is: its config.json holds the planner the model acts with and the
SHA-256 of every model file (the policy head's too). Beside them a zoo folder
ships `card.json` (how the model was made and measured: a record, never read
by `load`) and `episodes.json` (its protocol episodes, so evaluating it needs
no dataset).

This module is the little `lewm_agent` needs; listing, adding and checking
models against their cards is `eval/zoo.py` (`lewm zoo`).
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from .checkpoint import CheckpointError

PREFIX = "zoo:"
ROOT_ENV = "LEWM_ZOO"
"""Environment variable naming another zoo folder (default: `zoo/` of the source tree)."""
CARD_FILE = "card.json"
EPISODES_FILE = "episodes.json"
EPISODES_VERSION = 1


class ZooError(CheckpointError):
    """An unknown zoo name, or a zoo folder that is incomplete or damaged."""


def zoo_root() -> Path:
    """The zoo folder: `$LEWM_ZOO`, else `zoo/` next to the `lewm_agent` package.

    Resolved from this file rather than the working directory, so an editable
    install (`pip install -e .`, what `make venv` does) finds it from anywhere.
    """
    env = os.environ.get(ROOT_ENV)
    if env:
        return Path(env).expanduser().resolve()
    return Path(__file__).resolve().parent.parent / "zoo"


def is_zoo_ref(path: Any) -> bool:
    """Whether `path` is a `zoo:NAME` reference (not a folder path)."""
    return isinstance(path, str) and path.startswith(PREFIX)


def names() -> list[str]:
    """Names of the zoo's models (sub-folders holding a card.json), sorted."""
    root = zoo_root()
    if not root.is_dir():
        return []
    return sorted(p.name for p in root.iterdir() if (p / CARD_FILE).is_file())


def folder(ref: str) -> Path:
    """The folder of `zoo:NAME` (or bare NAME), without checking its files."""
    name = ref.removeprefix(PREFIX)
    path = zoo_root() / name
    if not name or "/" in name or name.startswith(".") or not (path / CARD_FILE).is_file():
        available = ", ".join(PREFIX + n for n in names()) or "none"
        raise ZooError(
            f"no zoo model named {name!r} in {zoo_root()}; available: {available} "
            f"(`lewm zoo list`; set ${ROOT_ENV} for another zoo folder)"
        )
    return path


def resolve(path: str | os.PathLike[str]) -> str | os.PathLike[str]:
    """`zoo:NAME` -> its folder; any other path unchanged."""
    return folder(path) if is_zoo_ref(path) else path


def ref_of(path: str | os.PathLike[str]) -> str | None:
    """Where an agent's shipped protocol episodes come from, if it ships them.

    `zoo:NAME` itself, or (as a string) a folder holding episodes.json, a zoo
    model's folder wherever it was copied; None for other paths.
    """
    if is_zoo_ref(path):
        return str(path)
    try:
        shipped = (Path(path) / EPISODES_FILE).is_file()
    except (TypeError, OSError):
        return None
    return str(path) if shipped else None


def read_episodes(ref_or_path: str | os.PathLike[str]) -> dict[str, Any]:
    """Protocol episodes of `zoo:NAME`, of a model folder, or of an episodes.json path.

    Returns the file's fields with each episode's states as float32 arrays. In a
    folder with a card.json, the file must match the SHA-256 the card records.
    """
    if is_zoo_ref(ref_or_path):
        path = folder(str(ref_or_path)) / EPISODES_FILE
    elif Path(ref_or_path).is_dir():
        path = Path(ref_or_path) / EPISODES_FILE
    else:
        path = Path(ref_or_path)
    if not path.is_file():
        raise ZooError(f"protocol episodes file {path} is missing")
    raw = path.read_bytes()
    _check_card_record(path, raw)
    try:
        data = json.loads(raw)
        if data.get("episodes_version") != EPISODES_VERSION:
            raise ZooError(
                f"{path}: episodes_version {data.get('episodes_version')!r}, this "
                f"lewm-agent reads {EPISODES_VERSION}"
            )
        data["episodes"] = [
            {
                **ep,
                "start_state": np.asarray(ep["start_state"], dtype=np.float32),
                "goal_state": np.asarray(ep["goal_state"], dtype=np.float32),
            }
            for ep in data["episodes"]
        ]
    except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError) as e:
        raise ZooError(f"{path} is not a valid protocol episodes file ({e!r})") from e
    return data


def _check_card_record(path: Path, raw: bytes) -> None:
    """Refuse a file whose SHA-256 differs from the one its folder's card records."""
    card_path = path.parent / CARD_FILE
    if not card_path.is_file():
        return
    try:
        record = json.loads(card_path.read_text())["files"][path.name]["sha256"]
    except (OSError, ValueError, KeyError, TypeError):
        return  # no record to check against
    if hashlib.sha256(raw).hexdigest() != record:
        raise ZooError(
            f"{path} differs from the SHA-256 its card ({card_path}) records (the file "
            "changed); restore the folder from a good copy or re-add the model (`lewm zoo add`)"
        )
