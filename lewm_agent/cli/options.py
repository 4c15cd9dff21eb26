"""Option helpers shared by the commands: config-dataclass flags, JSON and count types."""

from __future__ import annotations

import argparse
import ast
import inspect
import json
import os
import textwrap
from dataclasses import fields
from functools import cache
from typing import Any


@cache
def field_docs(cls: type) -> dict[str, str]:
    """The docstring under each dataclass field (Python drops them at runtime)."""
    tree = ast.parse(textwrap.dedent(inspect.getsource(cls)))
    body = tree.body[0].body  # type: ignore[attr-defined]
    docs = {}
    for node, nxt in zip(body, body[1:], strict=False):
        if (
            isinstance(node, ast.AnnAssign)
            and isinstance(node.target, ast.Name)
            and isinstance(nxt, ast.Expr)
            and isinstance(nxt.value, ast.Constant)
        ):
            docs[node.target.id] = str(nxt.value.value)
    return docs


def add_config_options(parser: argparse.ArgumentParser, cls: type, prefix: str) -> None:
    """One `--{prefix}{field}` option per dataclass field, default None (= preset)."""
    group = parser.add_argument_group(f"{cls.__name__} overrides (default: the preset's)")
    docs = field_docs(cls)
    for f in fields(cls):
        flag = f"--{prefix}{f.name.replace('_', '-')}"
        kind = type(f.default)
        kw: dict[str, Any] = {
            "default": None,
            "dest": f"{prefix.replace('-', '_')}{f.name}",
            "help": docs.get(f.name, ""),
        }
        if kind is bool:
            kw["type"] = lambda s: s.lower() in ("1", "true", "yes", "on")
            kw["metavar"] = "BOOL"
        elif kind is tuple:
            kw["type"] = lambda s: tuple(int(x) for x in s.split(","))
            kw["metavar"] = "A,B,..."
        else:
            kw["type"] = kind
        group.add_argument(flag, **kw)


def collect_overrides(args: argparse.Namespace, cls: type, prefix: str) -> dict[str, Any]:
    dest = prefix.replace("-", "_")
    return {
        f.name: getattr(args, dest + f.name)
        for f in fields(cls)
        if getattr(args, dest + f.name) is not None
    }


def headless() -> None:
    os.environ.setdefault("SDL_VIDEODRIVER", "dummy")
    os.environ.setdefault("SDL_AUDIODRIVER", "dummy")
    os.environ.setdefault("MUJOCO_GL", "egl")


def json_dict(text: str) -> dict[str, Any]:
    """argparse type: a JSON object (`--env-kwargs '{"obs_type": "pixels"}'`)."""
    try:
        value = json.loads(text)
    except json.JSONDecodeError as e:
        raise argparse.ArgumentTypeError(f"not JSON ({e}): {text!r}") from e
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError(f"expected a JSON object {{...}}, got {text!r}")
    return value


def count(text: str) -> int:
    """argparse type: an integer >= 1 (`--rounds`, `--episodes`)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def comma_list(text: str | None) -> list[str] | None:
    """`"a, b,,c"` -> `["a", "b", "c"]` (None stays None)."""
    return None if text is None else [x.strip() for x in text.split(",") if x.strip()]


PLANNERS = ["cem", "mppi", "cem-prior", "mppi-prior", "policy"]
"""`--planner` choices (what `WorldModelAgent.load(planner=...)` accepts)."""


class UnknownAgent(Exception):
    """A `zoo:NAME` that names no zoo model. Not a ValueError on purpose: argparse turns
    those into its usage dump, while `main` prints this one as a one-line error."""


def agent_path(text: str) -> str:
    """argparse type of every option that names a trained agent: a checkpoint folder, or
    `zoo:NAME` (`lewm zoo list`), which becomes that zoo model's folder.

    The one place the command line resolves a zoo name, so `zoo:NAME` means the same
    in every command: the zoo folder (verified when loaded, like any folder it ships
    its checkpoint hashes), with its shipped protocol episodes used where no `--data`
    is given.
    """
    from ..zoo import folder, is_zoo_ref

    if not is_zoo_ref(text):
        return text
    try:
        return str(folder(text))
    except ValueError as e:  # an unknown name: the zoo's own message lists the models
        raise UnknownAgent(str(e)) from None


def is_zoo_folder(path: str) -> bool:
    """Whether `path` is a folder of the zoo (`agent_path("zoo:NAME")`) or a copy of one:
    it carries a card, so writing into it would break the hashes the card records."""
    from pathlib import Path

    return (Path(path) / "card.json").is_file()
