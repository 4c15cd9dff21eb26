"""The model zoo: trained checkpoints shipped in the repository, loaded by name.

`WorldModelAgent.load("zoo:tworoom")` loads `zoo/tworoom/` at the top of the
source tree (or of `$LEWM_ZOO`), from any working directory. A zoo folder is an
ordinary checkpoint folder (config.json + model.safetensors + stats.json, the
weights usually stored in float16 and upcast to float32 at load) plus:

- `card.json`: how the model was made (commands, data, training wall time), its
  paper-protocol success with the 95% Wilson interval, its size, and the SHA-256
  of every file of the folder (checked at every load, so a damaged download or
  a flipped byte is a clear error instead of a silently worse agent);
- `episodes.json`: the start/goal states of its protocol episodes, so evaluating
  it needs no dataset (`lewm eval --agent zoo:NAME`);
- for a model measured with a planner that needs the latent policy head
  ("policy", "cem-prior", "mppi-prior"), the head's two files
  (`policy_head.safetensors` + `policy_head.json`), hashed like the model's.
  The card's `planner` (card_version 2) is what `WorldModelAgent.load("zoo:NAME")`
  acts with unless given another; a version-1 card has none and the model acts
  with its checkpoint's planner.

This module is pure `lewm_agent` (files, hashes, dtype conversion); running the
protocol to write a card lives in `eval/zoo.py` (`lewm zoo add`).
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .checkpoint import (
    CONFIG_FILE,
    HASHES_KEY,
    STATS_FILE,
    WEIGHTS_FILE,
    CheckpointError,
    load_checkpoint,
    save_checkpoint,
    write_json,
)
from .planning import uses_policy

PREFIX = "zoo:"
ROOT_ENV = "LEWM_ZOO"
"""Environment variable naming another zoo folder (default: `zoo/` of the source tree)."""
CARD_FILE = "card.json"
EPISODES_FILE = "episodes.json"
CARD_VERSION = 2
"""Written by `lewm zoo add`. 2 added `planner` (and the policy head's files)."""
READ_CARD_VERSIONS = (1, 2)
"""Card versions this lewm-agent reads (1: no `planner`, the checkpoint's is used)."""
EPISODES_VERSION = 1
CHECKPOINT_FILES = (CONFIG_FILE, WEIGHTS_FILE, STATS_FILE)
HASHED_FILES = (*CHECKPOINT_FILES, EPISODES_FILE)
"""Files whose SHA-256 every card records (the card itself is the index, not hashed)."""
HEAD_FILES = ("policy_head.safetensors", "policy_head.json")
"""The latent policy head's files (`policy_head.HEAD_WEIGHTS_FILE`, `HEAD_CONFIG_FILE`):
shipped and hashed when the card's planner needs the head."""

_DTYPES = {"float16": torch.float16, "float32": torch.float32}


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


def read_card(ref: str) -> dict[str, Any]:
    """The card.json of a zoo model."""
    path = folder(ref) / CARD_FILE
    try:
        card = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ZooError(f"{path} is not valid JSON ({e})") from e
    if card.get("card_version") not in READ_CARD_VERSIONS:
        raise ZooError(
            f"{path}: card_version {card.get('card_version')!r}, this lewm-agent reads "
            f"{' and '.join(map(str, READ_CARD_VERSIONS))}"
        )
    return card


def card_planner(card: dict[str, Any]) -> str | None:
    """The planner a card's results were measured with, if it records one.

    None for a version-1 card (made before `lewm zoo add --planner`): those models
    were measured with their checkpoint's own planner, which `load` then uses.
    """
    planner = card.get("planner") if card.get("card_version", 1) >= 2 else None
    if planner is not None and not isinstance(planner, str):
        raise ZooError(f"card of {card.get('name')!r}: planner {planner!r} is not a name")
    return planner


def effective_planner(card: dict[str, Any]) -> str:
    """The planner a zoo model acts with by default: the card's, else the checkpoint's."""
    return card_planner(card) or (card.get("plan") or {}).get("planner") or "cem"


def planner(ref: str) -> str | None:
    """`card_planner` of zoo model `ref` (None: act with the checkpoint's planner)."""
    return card_planner(read_card(ref))


def needs_head(planner_name: str | None) -> bool:
    """Whether a planner acts with the latent policy head (`planning.uses_policy`)."""
    return planner_name is not None and uses_policy(planner_name)


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def file_records(path: Path, files: tuple[str, ...] = HASHED_FILES) -> dict[str, dict[str, Any]]:
    """{file: {"bytes", "sha256"}} for the files of a folder (what a card records)."""
    return {
        f: {"bytes": (path / f).stat().st_size, "sha256": sha256(path / f)}
        for f in files
        if (path / f).is_file()
    }


def verify(ref: str) -> Path:
    """Check every file a zoo model's card lists against its size and SHA-256.

    Raises ZooError naming the first file that is missing, truncated or changed.
    Returns the folder.
    """
    path = folder(ref)
    card = read_card(ref)
    records = card.get("files") or {}
    required = CHECKPOINT_FILES + (HEAD_FILES if needs_head(card_planner(card)) else ())
    missing = [f for f in required if f not in records]
    if missing:
        raise ZooError(f"{path / CARD_FILE} lists no hash for {missing}")
    # A head the card does not list would be loaded unchecked (`load` attaches any
    # head a folder holds): refuse it rather than act with unverified weights.
    unlisted = [f for f in HEAD_FILES if (path / f).exists() and f not in records]
    if unlisted:
        raise ZooError(
            f"zoo model {ref!r}: {path} holds {unlisted}, which its card does not list "
            "(not part of the model as added); remove them or re-add the model "
            "(`lewm zoo add ... --planner policy`)"
        )
    for name, rec in records.items():
        file = path / name
        hint = f"restore it (`git checkout -- {file}`) or re-add the model (`lewm zoo add`)"
        if not file.is_file():
            raise ZooError(f"zoo model {ref!r}: {file} is missing; {hint}")
        size = file.stat().st_size
        if size != rec["bytes"]:
            raise ZooError(
                f"zoo model {ref!r}: {file} has {size} bytes, its card records "
                f"{rec['bytes']} (truncated or replaced); {hint}"
            )
        digest = sha256(file)
        if digest != rec["sha256"]:
            raise ZooError(
                f"zoo model {ref!r}: {file} has SHA-256 {digest[:16]}..., its card records "
                f"{rec['sha256'][:16]}... (the file is damaged); {hint}"
            )
    return path


def ref_of(path: str | os.PathLike[str]) -> str | None:
    """`zoo:NAME` for `zoo:NAME` itself or for a path to a zoo model's folder, else None.

    A zoo folder loaded by its path (`WorldModelAgent.load("zoo/cube")`) is then the
    same model as `zoo:cube`: its files are verified and it acts with its card's
    planner, not with the planner its config.json kept from training.
    """
    if is_zoo_ref(path):
        return str(path)
    try:
        folder_path = Path(path).resolve()
    except (TypeError, OSError):
        return None
    if folder_path.parent == zoo_root() and (folder_path / CARD_FILE).is_file():
        return PREFIX + folder_path.name
    return None


def resolve(path: str | os.PathLike[str]) -> str | os.PathLike[str]:
    """A zoo model (`zoo:NAME` or its folder's path) -> its verified folder; others unchanged."""
    ref = ref_of(path)
    return verify(ref) if ref is not None else path


def convert(
    src: str | os.PathLike[str], dst: str | os.PathLike[str], dtype: str = "float16"
) -> Path:
    """Re-save the checkpoint `src` with its floating-point weights in `dtype`.

    Goes through `save_checkpoint`, the project's own save path, so the result is
    a checkpoint like any other (whatever metadata that path writes). Integer
    buffers (BatchNorm's batch counter) keep their dtype. Loading upcasts to float32.
    """
    if dtype not in _DTYPES:
        raise ValueError(f"dtype must be one of {sorted(_DTYPES)}, got {dtype!r}")
    model, config, stats = load_checkpoint(src, device="cpu")
    model.to(_DTYPES[dtype])  # floating-point parameters and buffers only
    # save_checkpoint writes its own version and file hashes for the new bytes.
    config = {k: v for k, v in config.items() if k not in ("format_version", HASHES_KEY)}
    return save_checkpoint(dst, model, config, stats)


def convert_policy_head(
    src: str | os.PathLike[str],
    dst: str | os.PathLike[str],
    dtype: str,
    model_digest: str,
) -> Path:
    """Re-save the policy head of checkpoint folder `src` into `dst` in `dtype`.

    `model_digest` is the digest (`policy_head.model_digest`) of the world model
    the head ships with in `dst`: a float16 model has other weights than the
    float32 one the head was trained on, so the head's record of "its" model is
    rewritten to the converted one (the original is kept as `source_model_digest`).
    Loading upcasts the head to float32, like the model.
    """
    from .policy_head import load_policy_head, save_policy_head

    if dtype not in _DTYPES:
        raise ValueError(f"dtype must be one of {sorted(_DTYPES)}, got {dtype!r}")
    head, meta = load_policy_head(src, device="cpu")
    head.to(_DTYPES[dtype])
    # save_policy_head writes format_version, config and sizes itself.
    keep = {k: v for k, v in meta.items() if k not in ("format_version", "config")}
    keep = {k: v for k, v in keep.items() if k not in ("embed_dim", "block_dim")}
    keep["source_model_digest"] = meta.get("source_model_digest", meta.get("model_digest"))
    keep["model_digest"] = model_digest
    keep["dtype"] = dtype
    return save_policy_head(dst, head, keep)


# --------------------------------------------------------------------- protocol episodes
def write_episodes(path: str | os.PathLike[str], data: dict[str, Any]) -> Path:
    """Write protocol episodes as JSON.

    `data` holds "env_id", protocol fields ("seed", "goal_offset", "budget", ...)
    and "episodes": a list of {"episode", "start_step", "start_state",
    "goal_state"} with float32 state arrays. float32 -> Python float -> JSON ->
    float32 is exact (a double holds every float32, and JSON keeps the double's
    shortest round-trip repr), so the states restore bit for bit.
    """
    out = {
        "episodes_version": EPISODES_VERSION,
        **{k: v for k, v in data.items() if k != "episodes"},
        "episodes": [
            {
                "episode": str(ep["episode"]),
                "start_step": int(ep["start_step"]),
                "start_state": np.asarray(ep["start_state"], dtype=np.float32).tolist(),
                "goal_state": np.asarray(ep["goal_state"], dtype=np.float32).tolist(),
            }
            for ep in data["episodes"]
        ],
    }
    path = Path(path)
    write_json(path, out)
    return path


def read_episodes(ref_or_path: str | os.PathLike[str]) -> dict[str, Any]:
    """Protocol episodes of a zoo model (`zoo:NAME`) or an episodes.json path.

    Returns the file's fields with each episode's states as float32 arrays.
    """
    if is_zoo_ref(ref_or_path):
        path = folder(str(ref_or_path)) / EPISODES_FILE
    else:
        path = Path(ref_or_path)
    if not path.is_file():
        raise ZooError(f"protocol episodes file {path} is missing")
    try:
        data = json.loads(path.read_text())
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


# ------------------------------------------------------------------------------ listing
def table_rows() -> list[dict[str, Any]]:
    """One row per zoo model for `lewm zoo list`."""
    rows = []
    for name in names():
        card = read_card(name)
        res = card["results"][card["dtype"]]
        rows.append(
            {
                "name": PREFIX + name,
                "env_id": card["env_id"],
                "planner": effective_planner(card),
                "dtype": card["dtype"],
                "bytes": sum(r["bytes"] for r in card["files"].values()),
                "successes": res["successes"],
                "episodes": res["episodes"],
                "success_rate": res["success_rate"],
                "ci95": res["success_ci95"],
                "card": str(zoo_root() / name / CARD_FILE),
            }
        )
    return rows


def format_table(rows: list[dict[str, Any]]) -> str:
    """A markdown table of `table_rows()`."""
    lines = [
        "| env | name | planner | weights | size | success | 95% CI | card |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lo, hi = r["ci95"]
        lines.append(
            f"| {r['env_id']} | {r['name']} | {r['planner']} | {r['dtype']} | {r['bytes'] / 1e6:.1f} MB "
            f"| {100 * r['success_rate']:.0f}% ({r['successes']}/{r['episodes']}) "
            f"| {100 * lo:.0f}-{100 * hi:.0f}% | {r['card']} |"
        )
    return "\n".join(lines)
