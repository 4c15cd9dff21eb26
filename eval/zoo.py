"""The model zoo: `lewm zoo add`, converting a run, and checking a model against its card.

    lewm zoo list
    lewm zoo add runs/pusht --name pusht --data data/pusht \
        --collect-cmd "lewm collect --env lewm/PushT-v0 ..." \
        --train-cmd "lewm train --data data/pusht --out runs/pusht ..."

A zoo model is an ordinary checkpoint folder (weights usually float16, upcast at
load) whose config.json holds the planner it was measured with (and lists the
policy head's files when that planner acts with the head), plus `card.json`, a
record of how it was made and measured with the SHA-256 of every file (`verify`),
and `episodes.json`, its protocol episodes (`lewm eval --agent zoo:NAME` needs no
dataset). `lewm_agent/zoo.py` resolves `zoo:NAME` for `load`; the folder format
is in docs/formats.md; reading a card, its README and `lewm zoo list` are
`eval.zoo_card`.

`add` draws the paper protocol's episodes from the run's held-out data exactly as
`lewm eval --data` does (same split, seed 42), evaluates the run in float32 AND
converted to float16 on them, keeps float16 unless it solves more than
`--max-drop` fewer episodes, and writes the card and a README generated from it.
`--planner NAME` ships the model with another planner than its checkpoint's; one
that needs the policy head converts the head WITH the model (float16 model +
float16 head), so the max-drop rule measures the pair that ships.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import platform
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from lewm_agent import zoo
from lewm_agent.checkpoint import (
    CONFIG_FILE,
    HASHES_KEY,
    STATS_FILE,
    WEIGHTS_FILE,
    load_checkpoint,
    record_file_hashes,
    save_checkpoint,
    write_json,
)
from lewm_agent.planning import uses_policy
from lewm_agent.policy_head import (
    HEAD_CONFIG_FILE,
    HEAD_WEIGHTS_FILE,
    has_policy_head,
    load_policy_head,
    model_digest,
    save_policy_head,
)
from lewm_agent.stats import wilson_interval

from .protocol import BUDGET, EPISODES, GOAL_OFFSET, SEED, ProtocolEpisode, run_protocol
from .zoo_card import CARD_VERSION, card_folder, card_readme, read_card

CHECKPOINT_FILES = (CONFIG_FILE, WEIGHTS_FILE, STATS_FILE)
HASHED_FILES = (*CHECKPOINT_FILES, zoo.EPISODES_FILE)
"""Files whose SHA-256 every card records (the card itself is the index, not hashed)."""
HEAD_FILES = (HEAD_WEIGHTS_FILE, HEAD_CONFIG_FILE)
"""The latent policy head's files: shipped and hashed when the planner needs the head."""
REGRESSION_EPISODES = 10
"""Episodes of the fast regression test (tests/eval/test_zoo.py): the first 10 shipped."""

_DTYPES = {"float16": torch.float16, "float32": torch.float32}


def sha256(path: Path) -> str:
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def file_records(path: Path, files: tuple[str, ...] = HASHED_FILES) -> dict[str, dict[str, Any]]:
    """{file: {"bytes", "sha256"}} for the files of a folder (what a card records)."""
    return {
        f: {"bytes": (path / f).stat().st_size, "sha256": sha256(path / f)}
        for f in files
        if (path / f).is_file()
    }


def verify(ref: str | os.PathLike[str]) -> Path:
    """Check a zoo model's folder against its card: every file's size and SHA-256.

    Also checks that config.json holds the planner the card records. Raises ZooError
    naming the first file that is missing, truncated or changed. Returns the folder.
    (Loading needs none of this: config.json's own hashes verify the model files.)
    """
    path = card_folder(ref)
    card = read_card(ref)
    records = card.get("files") or {}
    required = CHECKPOINT_FILES + (HEAD_FILES if uses_policy(card["planner"]) else ())
    missing = [f for f in required if f not in records]
    if missing:
        raise zoo.ZooError(f"{path / zoo.CARD_FILE} lists no hash for {missing}")
    for name, rec in records.items():
        file = path / name
        hint = f"restore it (`git checkout -- {file}`) or re-add the model (`lewm zoo add`)"
        if not file.is_file():
            raise zoo.ZooError(f"zoo model {ref!s}: {file} is missing; {hint}")
        size = file.stat().st_size
        if size != rec["bytes"]:
            raise zoo.ZooError(
                f"zoo model {ref!s}: {file} has {size} bytes, its card records "
                f"{rec['bytes']} (truncated or replaced); {hint}"
            )
        digest = sha256(file)
        if digest != rec["sha256"]:
            raise zoo.ZooError(
                f"zoo model {ref!s}: {file} has SHA-256 {digest[:16]}..., its card records "
                f"{rec['sha256'][:16]}... (the file is damaged); {hint}"
            )
    held = (json.loads((path / CONFIG_FILE).read_text()).get("plan") or {}).get("planner", "cem")
    if held != card["planner"]:
        raise zoo.ZooError(
            f"zoo model {ref!s}: its card records planner {card['planner']!r}, its "
            f"{CONFIG_FILE} holds {held!r}; re-add the model (`lewm zoo add`)"
        )
    return path


# ---------------------------------------------------------------------- conversion
def convert(
    src: str | os.PathLike[str],
    dst: str | os.PathLike[str],
    dtype: str = "float16",
    planner: str | None = None,
) -> Path:
    """Re-save the checkpoint `src` with its floating-point weights in `dtype`.

    `planner` (optional) replaces the planner its config.json holds.

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
    if planner is not None:
        config["plan"] = {**(config.get("plan") or {}), "planner": planner}
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
    Loading upcasts the head to float32, like the model. `dst`'s config.json lists
    the head's hashes, so loading the folder verifies the head too.
    """
    if dtype not in _DTYPES:
        raise ValueError(f"dtype must be one of {sorted(_DTYPES)}, got {dtype!r}")
    head, meta = load_policy_head(src, device="cpu")
    head.to(_DTYPES[dtype])
    # save_policy_head writes format_version, config and sizes itself.
    written = ("format_version", "config", "embed_dim", "block_dim")
    keep = {k: v for k, v in meta.items() if k not in written}
    keep["source_model_digest"] = meta.get("source_model_digest", meta.get("model_digest"))
    keep["model_digest"] = model_digest
    keep["dtype"] = dtype
    out = save_policy_head(dst, head, keep)
    record_file_hashes(dst, HEAD_FILES)
    return out


# --------------------------------------------------------------- protocol episodes
def write_episodes(
    path: str | os.PathLike[str], episodes: list[ProtocolEpisode], **fields: Any
) -> Path:
    """Write protocol episodes (float32 states) and `fields` ("env_id", "seed", ...) as JSON.

    float32 -> Python float -> JSON -> float32 is exact (a double holds every
    float32, and JSON keeps the double's shortest round-trip repr), so the states
    restore bit for bit (`lewm_agent.zoo.read_episodes`).
    """
    out = {
        "episodes_version": zoo.EPISODES_VERSION,
        **fields,
        "episodes": [
            {
                "episode": str(ep.episode),
                "start_step": int(ep.start_step),
                "start_state": np.asarray(ep.start_state, dtype=np.float32).tolist(),
                "goal_state": np.asarray(ep.goal_state, dtype=np.float32).tolist(),
            }
            for ep in episodes
        ],
    }
    write_json(Path(path), out)
    return Path(path)


def protocol_episodes(ref: str, n: int = EPISODES, seed: int = SEED) -> list[ProtocolEpisode]:
    """The first `n` shipped protocol episodes of zoo model `ref` (no dataset needed).

    `sample_episodes` draws episode by episode from one generator, so the first
    `n` of the 50 shipped episodes are exactly what `lewm eval --data ... --episodes n`
    would draw.
    """
    data = zoo.read_episodes(ref)
    have = data["episodes"]
    if seed != data["seed"]:
        raise zoo.ZooError(
            f"{ref} ships the protocol episodes of seed {data['seed']}; for seed {seed} "
            "pass --data with the model's dataset"
        )
    if not 1 <= n <= len(have):
        raise zoo.ZooError(
            f"{ref} ships {len(have)} protocol episodes, asked for {n}; for more pass --data"
        )
    return [
        ProtocolEpisode(ep["episode"], int(ep["start_step"]), ep["start_state"], ep["goal_state"])
        for ep in have[:n]
    ]


# ---------------------------------------------------------------------------- add
def regression_threshold(successes: int, episodes: int, first: list[bool]) -> dict[str, Any]:
    """Minimum successes on the first `REGRESSION_EPISODES` episodes for the zoo test.

    floor(10 x the 95% Wilson lower bound of the shipped rate): what a model at the
    bottom of its own interval would reach, so the test tolerates numerical drift
    (another BLAS, thread count or torch version flipping borderline episodes)
    but not a regression that takes the model out of its interval, let alone to
    random-agent rates. If the shipped run's own first 10 did worse than that
    (unlucky draw), the threshold is that count minus one.
    """
    lo, _ = wilson_interval(successes, episodes)
    recorded = int(sum(first))
    bound = math.floor(REGRESSION_EPISODES * lo)
    minimum = bound if recorded >= bound else max(0, recorded - 1)
    return {
        "episodes": REGRESSION_EPISODES,
        "min_successes": minimum,
        "recorded_successes": recorded,
        "rule": "floor(10 x 95% Wilson lower bound of the shipped 50-episode rate), "
        "or the recorded first-10 count minus one if that is lower",
    }


def _evaluate(
    env_id: str,
    path: Path,
    episodes: list[ProtocolEpisode],
    image_size: int,
    name: str,
) -> dict[str, Any]:
    from lewm_agent import WorldModelAgent

    # Loaded like any folder: it acts with the planner its config.json holds.
    agent = WorldModelAgent.load(path, device="cpu")
    # The env as `lewm eval` makes it: the recorded env build, else the id.
    result, _ = run_protocol(
        agent.env_build or env_id, agent, episodes, name=name, env_kwargs={"image_size": image_size}
    )
    lo, hi = wilson_interval(result.successes, result.episodes)
    out = {
        "successes": result.successes,
        "episodes": result.episodes,
        "success_rate": result.success_rate,
        "success_ci95": [lo, hi],
        "mean_steps": result.mean_steps,
        "seconds": result.seconds,
        "decision_latency_ms": result.decision_latency_ms,
        # One character per episode (1 = success), in episode order: compares dtypes per episode.
        "per_episode": "".join("1" if e["success"] else "0" for e in result.per_episode),
    }
    print(
        f"{name}: {result.successes}/{result.episodes} ({100 * lo:.0f}-{100 * hi:.0f}%), "
        f"{result.seconds:.0f} s"
    )
    return out


def add(
    run: str | os.PathLike[str],
    name: str,
    data: str | os.PathLike[str],
    *,
    collect_cmd: str,
    train_cmd: str,
    dtype: str = "auto",
    max_drop: int = 1,
    episodes: int = EPISODES,
    seed: int = SEED,
    note: str = "",
    force: bool = False,
    extra: dict[str, Any] | None = None,
    planner: str | None = None,
) -> Path:
    """Add the checkpoint folder `run` to the zoo as `name`; returns the zoo folder.

    `planner`: the planner to measure and ship the model with (default: the
    checkpoint's own), written into the shipped config.json and recorded in the
    card. One that needs the latent policy head requires it in `run`.
    """
    import envs  # noqa: F401  (registers lewm/*)
    from lewm_agent.data import load_dataset
    from lewm_agent.heldout import load_heldout, trained_holdout

    from .protocol import sample_episodes

    add_cmd = (
        f"lewm zoo add {run} --name {name} --data {data} --dtype {dtype} --max-drop {max_drop} "
        f"--episodes {episodes} --seed {seed}" + (f" --planner {planner}" if planner else "")
    )
    if not name or "/" in name or name.startswith("."):
        raise ValueError(f"bad zoo name {name!r}")
    dst = zoo.zoo_root() / name
    if dst.exists() and not force:
        raise FileExistsError(f"{dst} exists; pass --force to replace it")
    model, config, stats = load_checkpoint(run)  # validates the run before any work
    planner = planner or (config.get("plan") or {}).get("planner") or "cem"
    head_meta = _check_planner(run, planner, model)  # None: no head shipped
    with_head = head_meta is not None
    del model
    env_id = config["env"]["env_id"]
    image_size = int(config["model"]["image_size"])
    holdout = trained_holdout(config)

    # The protocol episodes, drawn the way `lewm eval --data` draws them.
    dataset = load_dataset(data)
    if dataset.meta.get("env_id") != env_id:
        raise ValueError(f"{data} records {dataset.meta.get('env_id')}, the run is for {env_id}")
    heldout = load_heldout(dataset, holdout).heldout
    eps = sample_episodes(heldout, n=episodes, seed=seed)
    data_meta = {
        k: dataset.meta.get(k)
        for k in ("env_id", "collector", "num_episodes", "num_steps", "image_size")
    }
    data_meta["heldout_episodes"] = len(heldout)
    del dataset, heldout  # the frames (GBs) are not needed for the evaluations below

    # Work in a hidden folder inside the zoo (never listed: names() needs a card.json
    # directly inside), so a crash never leaves a half-written model under `name`.
    zoo.zoo_root().mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=zoo.zoo_root(), prefix=".add-") as tmp:
        tmp_path = Path(tmp)
        # Both dtypes go through the project's own save path (convert), the planner
        # written into their config.json.
        folders = {d: convert(run, tmp_path / d, d, planner) for d in ("float32", "float16")}
        if with_head:  # the head in the same dtype, tied to the converted model
            for d, f in folders.items():
                convert_policy_head(run, f, d, model_digest(load_checkpoint(f)[0]))
        results = {
            d: _evaluate(env_id, folders[d], eps, image_size, f"{name} {d}")
            for d in ("float32", "float16")
        }
        if dtype == "auto":
            keep = results["float16"]["successes"] >= results["float32"]["successes"] - max_drop
            dtype = "float16" if keep else "float32"
        shipped = folders[dtype]
        write_episodes(
            shipped / zoo.EPISODES_FILE,
            eps,
            env_id=env_id,
            seed=seed,
            goal_offset=GOAL_OFFSET,
            budget=BUDGET,
            holdout_fraction=holdout,
            source=data_meta,
        )
        res = results[dtype]
        first = [c == "1" for c in res["per_episode"][:REGRESSION_EPISODES]]
        training = stats.get("training") or {}
        card = {
            "card_version": CARD_VERSION,
            "name": name,
            "env_id": env_id,
            "dtype": dtype,
            "planner": planner,
            "commands": {"collect": collect_cmd, "train": train_cmd, "zoo_add": add_cmd},
            "data": data_meta,
            "training": {
                "seconds": training.get("seconds"),
                "steps": training.get("steps"),
                "final": training.get("final"),
                "train_config": config.get("train"),
            },
            # The planner settings the results were measured with (the shipped config.json's).
            "plan": json.loads((shipped / CONFIG_FILE).read_text())["plan"],
            **({"policy_head": _head_summary(head_meta)} if with_head else {}),
            "protocol": {
                "episodes": episodes,
                "seed": seed,
                "goal_offset": GOAL_OFFSET,
                "budget": BUDGET,
                "holdout_fraction": holdout,
                "command": f"lewm eval --agent zoo:{name} --episodes {episodes}",
            },
            "results": results,
            "dtype_rule": f"float16 unless it solves more than {max_drop} fewer of the "
            f"{episodes} episodes than float32",
            "regression": regression_threshold(res["successes"], res["episodes"], first),
            "size_bytes": _sizes(folders, WEIGHTS_FILE),
            **({"policy_head_size_bytes": _sizes(folders, HEAD_WEIGHTS_FILE)} if with_head else {}),
            "files": file_records(shipped, HASHED_FILES + (HEAD_FILES if with_head else ())),
            "made_with": {
                "torch": str(torch.__version__),
                "python": platform.python_version(),
                "date": time.strftime("%Y-%m-%d"),
            },
            "note": note,
            **(extra or {}),
        }
        (shipped / zoo.CARD_FILE).write_text(json.dumps(card, indent=2) + "\n")
        (shipped / "README.md").write_text(card_readme(card))
        if dst.exists():
            shutil.rmtree(dst)
        shipped.rename(dst)
    verify(zoo.PREFIX + name)
    print(f"added zoo:{name} ({dtype}, planner {planner}) to {dst}")
    return dst


def _sizes(folders: dict[str, Path], file: str) -> dict[str, int]:
    """{dtype: bytes of `file`} over the converted folders."""
    return {d: (f / file).stat().st_size for d, f in folders.items()}


def _head_summary(meta: dict[str, Any]) -> dict[str, Any]:
    """The card's record of the shipped policy head: its config and training."""
    t = meta.get("training") or {}
    return {
        "config": meta.get("config"),
        "training": {k: t.get(k) for k in ("seconds", "first_loss", "final_loss", "heldout_loss")},
        "steps": (t.get("log") or [{}])[-1].get("step", -1) + 1,
    }


def _check_planner(run: str | os.PathLike[str], planner: str, model: Any) -> dict[str, Any] | None:
    """The run's policy head meta if `planner` needs it (else None); raises if it lacks one.

    Called before anything is written: a planner that needs the head needs one in
    `run`, trained on `run`'s world model.
    """
    from lewm_agent.planning import PLANNER_NAMES

    if planner not in PLANNER_NAMES:
        raise ValueError(f"unknown planner {planner!r}; one of {', '.join(PLANNER_NAMES)}")
    if not uses_policy(planner):
        return None
    fix = f"train it first: `lewm train-policy {run} --data DATA`"
    if not has_policy_head(run):
        raise zoo.ZooError(
            f"planner {planner!r} acts with the latent policy head and {run} has none "
            f"({HEAD_WEIGHTS_FILE} + {HEAD_CONFIG_FILE}); {fix}"
        )
    _, meta = load_policy_head(run)  # a corrupt head is a CheckpointError naming the fix
    if meta.get("model_digest") != model_digest(model):
        raise zoo.ZooError(f"the policy head in {run} was trained on another world model; {fix}")
    return meta
