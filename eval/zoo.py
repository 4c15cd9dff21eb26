"""`lewm zoo list | add`: the model zoo's table, and adding a trained run to it.

    lewm zoo list
    lewm zoo add runs/pusht --name pusht --data data/pusht \
        --collect-cmd "lewm collect --env lewm/PushT-v0 ..." \
        --train-cmd "lewm train --data data/pusht --out runs/pusht ..."

`add` draws the paper protocol's episodes from the run's held-out data exactly as
`lewm eval --data` does (same split, seed 42), saves their start/goal states next
to the model, evaluates the run in float32 AND converted to float16 on those same
episodes, keeps float16 unless it solves more than `--max-drop` fewer episodes,
and writes the card (commands, wall time, both results with 95% Wilson
intervals, sizes, SHA-256 of every file). The folder format is in docs/formats.md.

`--planner NAME` measures (and ships) the model with another planner than its
checkpoint's. "policy", "cem-prior" and "mppi-prior" act with the run's latent
policy head (`lewm train-policy RUN --data DATA`): its two files are converted
WITH the model (the float16 variant is float16 model + float16 head, the
float32 one float32 + float32, so the max-drop rule measures the pair that
ships), hashed in the card, and `WorldModelAgent.load("zoo:NAME")` acts with
that planner.
"""

from __future__ import annotations

import json
import math
import os
import platform
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

from lewm_agent import zoo
from lewm_agent.checkpoint import load_checkpoint
from lewm_agent.policy_head import (
    HEAD_CONFIG_FILE,
    HEAD_WEIGHTS_FILE,
    has_policy_head,
    load_policy_head,
    model_digest,
)
from lewm_agent.stats import wilson_interval

from .protocol import BUDGET, EPISODES, GOAL_OFFSET, SEED, ProtocolEpisode, run_protocol

REGRESSION_EPISODES = 10
"""Episodes of the fast regression test (tests/eval/test_zoo.py): the first 10 shipped."""


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
    planner: str | None = None,
) -> dict[str, Any]:
    from lewm_agent import WorldModelAgent

    agent = WorldModelAgent.load(path, planner=planner, device="cpu")
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
    checkpoint's own). One that needs the latent policy head requires it in `run`.
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
        # Both dtypes go through the project's own save path (zoo.convert).
        folders = {d: zoo.convert(run, tmp_path / d, d) for d in ("float32", "float16")}
        if with_head:  # the head in the same dtype, tied to the converted model
            for d, f in folders.items():
                zoo.convert_policy_head(run, f, d, model_digest(load_checkpoint(f)[0]))
        results = {
            d: _evaluate(env_id, folders[d], eps, image_size, f"{name} {d}", planner)
            for d in ("float32", "float16")
        }
        if dtype == "auto":
            keep = results["float16"]["successes"] >= results["float32"]["successes"] - max_drop
            dtype = "float16" if keep else "float32"
        shipped = folders[dtype]
        zoo.write_episodes(
            shipped / zoo.EPISODES_FILE,
            {
                "env_id": env_id,
                "seed": seed,
                "goal_offset": GOAL_OFFSET,
                "budget": BUDGET,
                "holdout_fraction": holdout,
                "source": data_meta,
                "episodes": [
                    {
                        "episode": e.episode,
                        "start_step": e.start_step,
                        "start_state": e.start_state,
                        "goal_state": e.goal_state,
                    }
                    for e in eps
                ],
            },
        )
        res = results[dtype]
        first = [c == "1" for c in res["per_episode"][:REGRESSION_EPISODES]]
        training = stats.get("training") or {}
        card = {
            "card_version": zoo.CARD_VERSION,
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
            # The planner settings the results were measured with.
            "plan": {**(config.get("plan") or {}), "planner": planner},
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
            "size_bytes": {
                d: (folders[d] / zoo.WEIGHTS_FILE).stat().st_size for d in ("float32", "float16")
            },
            **(
                {
                    "policy_head_size_bytes": {
                        d: (folders[d] / HEAD_WEIGHTS_FILE).stat().st_size
                        for d in ("float32", "float16")
                    }
                }
                if with_head
                else {}
            ),
            "files": zoo.file_records(
                shipped, zoo.HASHED_FILES + (zoo.HEAD_FILES if with_head else ())
            ),
            "made_with": {
                "torch": _torch_version(),
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
    zoo.verify(name)
    print(f"added zoo:{name} ({dtype}, planner {planner}) to {dst}")
    return dst


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
    if not zoo.needs_head(planner):
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


def _torch_version() -> str:
    import torch

    return str(torch.__version__)


def card_readme(card: dict[str, Any]) -> str:
    """A human-readable README.md for a card (the card stays the source of truth)."""
    name, res = card["name"], card["results"]
    lines = [
        f"# zoo:{name} ({card['env_id']})",
        "",
        "Made with:",
        "",
        "```bash",
        card["commands"]["collect"],
        card["commands"]["train"],
        card["commands"]["zoo_add"] + "  # + --collect-cmd/--train-cmd: this folder",
        "```",
        "",
        f"Training wall time: {card['training']['seconds'] / 60:.1f} min "
        f"({card['training']['steps']} steps). Weights stored as {card['dtype']} "
        f"({card['size_bytes'][card['dtype']] / 1e6:.1f} MB; float32 "
        f"{card['size_bytes']['float32'] / 1e6:.1f} MB).",
        "",
        *_planner_lines(card),
        f"Paper protocol, {card['protocol']['episodes']} episodes (seed "
        f"{card['protocol']['seed']}, shipped in episodes.json): "
        f"`{card['protocol']['command']}`",
        "",
        f"| weights{' (model + head)' if zoo.needs_head(zoo.card_planner(card)) else ''} "
        "| success | 95% Wilson CI | mean steps |",
        "|---|---|---|---|",
    ]
    for d in ("float32", "float16"):
        r = res[d]
        lo, hi = r["success_ci95"]
        lines.append(
            f"| {d} | {100 * r['success_rate']:.0f}% ({r['successes']}/{r['episodes']}) "
            f"| {100 * lo:.0f}-{100 * hi:.0f}% | {r['mean_steps']:.1f} |"
        )
    if card.get("note"):
        lines += ["", card["note"]]
    return "\n".join(lines) + "\n"


def _planner_lines(card: dict[str, Any]) -> list[str]:
    """The README's planner paragraph (none for a card without a planner)."""
    planner = zoo.card_planner(card)
    if planner is None:
        return []
    text = (
        f"Measured and loaded with planner `{planner}` "
        f'(`WorldModelAgent.load("zoo:{card["name"]}")` uses it; pass `planner=` for another).'
    )
    if zoo.needs_head(planner):
        head = (card.get("policy_head_size_bytes") or {}).get(card["dtype"])
        size = f", {head / 1e6:.1f} MB" if head else ""
        text += (
            f" It acts with the latent policy head shipped beside the model "
            f"(policy_head.safetensors + policy_head.json, {card['dtype']}{size})."
        )
        trained = (card.get("policy_head") or {}).get("training") or {}
        if trained.get("seconds") is not None:
            text += (
                f" Head training: {trained['seconds'] / 60:.1f} min "
                f"({card['policy_head'].get('steps')} steps) on the frozen model."
            )
    return [text, ""]


def list_text(as_json: bool = False) -> str:
    """`lewm zoo list`: the zoo's models as a table (or JSON rows)."""
    rows = zoo.table_rows()
    if as_json:
        return json.dumps(rows, indent=2)
    return zoo.format_table(rows) if rows else f"the zoo at {zoo.zoo_root()} is empty"
