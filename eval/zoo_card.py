"""A zoo model's card: reading and checking card.json, its generated README, and
`lewm zoo list`.

The card records how a model was made and measured (commands, training cost, the
planner, float32 and float16 results, every file's SHA-256); `eval.zoo` writes it
(`add`) and checks a folder against it (`verify`). The format is in docs/formats.md.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from lewm_agent import zoo
from lewm_agent.planning import uses_policy

CARD_VERSION = 3
"""The card format `add` writes and this module reads: the planner is recorded, and
config.json holds it."""


def card_folder(ref: str | os.PathLike[str]) -> Path:
    """The folder of `zoo:NAME` or of a zoo model's folder given by its path."""
    return zoo.folder(ref) if zoo.is_zoo_ref(ref) else Path(ref)


def read_card(ref: str | os.PathLike[str]) -> dict[str, Any]:
    """The card.json of a zoo model (`zoo:NAME`, bare NAME, or its folder)."""
    if isinstance(ref, str) and not zoo.is_zoo_ref(ref) and not Path(ref).is_dir():
        ref = zoo.PREFIX + ref  # a bare name
    path = card_folder(ref) / zoo.CARD_FILE
    try:
        card = json.loads(path.read_text())
    except OSError as e:
        raise zoo.ZooError(f"{path} cannot be read ({e}): not a zoo model's folder") from e
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise zoo.ZooError(f"{path} is not valid JSON ({e})") from e
    if card.get("card_version") != CARD_VERSION:
        raise zoo.ZooError(
            f"{path}: card_version {card.get('card_version')!r}, this lewm-agent reads "
            f"{CARD_VERSION}; re-add the model (`lewm zoo add`)"
        )
    if not isinstance(card.get("planner"), str):
        raise zoo.ZooError(f"{path}: planner {card.get('planner')!r} is not a planner name")
    return card


def table_rows() -> list[dict[str, Any]]:
    """One row per zoo model for `lewm zoo list`."""
    rows = []
    for name in zoo.names():
        card = read_card(zoo.PREFIX + name)
        res = card["results"][card["dtype"]]
        rows.append(
            {
                "name": zoo.PREFIX + name,
                "env_id": card["env_id"],
                "planner": card["planner"],
                "dtype": card["dtype"],
                "bytes": sum(r["bytes"] for r in card["files"].values()),
                "successes": res["successes"],
                "episodes": res["episodes"],
                "success_rate": res["success_rate"],
                "ci95": res["success_ci95"],
                "card": str(zoo.zoo_root() / name / zoo.CARD_FILE),
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
        card["commands"]["zoo_add"],
        "```",
        "",
        f"Training wall time: {card['training']['seconds'] / 60:.1f} min "
        f"({card['training']['steps']} steps). Weights stored as {card['dtype']} "
        f"({card['size_bytes'][card['dtype']] / 1e6:.1f} MB; float32 "
        f"{card['size_bytes']['float32'] / 1e6:.1f} MB).",
        "",
        _planner_text(card),
        "",
        f"Paper protocol, {card['protocol']['episodes']} episodes (seed "
        f"{card['protocol']['seed']}, shipped in episodes.json): "
        f"`{card['protocol']['command']}`",
        "",
        f"| weights{' (model + head)' if uses_policy(card['planner']) else ''} "
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


def _planner_text(card: dict[str, Any]) -> str:
    """The README's planner paragraph."""
    planner = card["planner"]
    text = (
        f"Measured with planner `{planner}`, which its config.json holds: "
        f'`WorldModelAgent.load("zoo:{card["name"]}")`, or of a copy of this folder, '
        "acts with it (pass `planner=` for another)."
    )
    if uses_policy(planner):
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
    return text


def list_text(as_json: bool = False) -> str:
    """`lewm zoo list`: the zoo's models as a table (or JSON rows)."""
    rows = table_rows()
    if as_json:
        return json.dumps(rows, indent=2)
    return format_table(rows) if rows else f"the zoo at {zoo.zoo_root()} is empty"
