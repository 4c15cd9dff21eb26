"""`lewm`: the command line, the top floor of the project.

    collect | data | train | train-policy | train-cost | train-predictor | info | learn | export | import
    | eval | compare | videos | probe | zoo | bench | suite | demo | report

Plain argparse sub-commands. Each command module owns its commands' options and
turns the parsed arguments into a call of a typed library function (`record`:
collect, data; `train`: train, train-policy, train-cost, train-predictor, info; `learn`: learn;
`export`: export, import; `evaluate`: eval, compare, videos, probe, zoo; `bench`: bench,
suite, demo, report), importing the floors below inside its functions. Nothing imports this package: it is the `lewm` console script
(`lewm_agent.cli:main`, also `python -m lewm_agent.cli`), and it sits in
`lewm_agent` only so that the script ships with the method package.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence

from . import bench, evaluate, export, learn, record, train
from .options import add_config_options, agent_path, collect_overrides, field_docs, headless
from .train import saved_run_settings

COMMANDS: dict[str, tuple[str, Callable[[argparse.ArgumentParser], None]]] = {
    **record.COMMANDS,
    **train.COMMANDS,
    **learn.COMMANDS,
    **export.COMMANDS,
    **evaluate.COMMANDS,
    **bench.COMMANDS,
}
"""Every `lewm NAME`: (help line, function adding its options and `func`), in help order."""


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """The `lewm` parser; with `only`, just that command gets its options.

    `main` builds only the chosen command's options, because some defaults come from
    the floors below (`lewm data info` need not import what `lewm compare` shows).
    """
    parser = argparse.ArgumentParser(prog="lewm", description="LeWorldModel agent toolkit")
    parser.add_argument(
        "--debug", action="store_true", help="show the full traceback of expected errors too"
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, (help, add_options) in COMMANDS.items():
        command = sub.add_parser(name, help=help, description=help)
        if only is None or only == name:
            add_options(command)
    return parser


def _expected_errors() -> tuple[type[BaseException], ...]:
    """Errors about the user's files, values or disk: their message says what to fix."""
    from ..checkpoint import CheckpointError
    from ..data import DatasetError, DiskFullError
    from ..train_state import TrainStateError
    from ..validation import ConfigError
    from .options import UnknownAgent

    return (
        CheckpointError,
        DatasetError,
        DiskFullError,
        TrainStateError,
        ConfigError,
        UnknownAgent,
    )


def main(argv: Sequence[str] | None = None) -> int:
    """`lewm ARGV`.

    An expected error prints `lewm: error: <message>` alone and returns 1; `--debug`
    (anywhere) lets it raise instead, with its full traceback. `args.argv` is what
    the user typed (`COMMAND ARGV`): `lewm train --nproc N` re-passes it to torchrun
    unchanged.
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["--"]:  # `torchrun ... -m lewm_agent.cli -- train ...` (the relaunch)
        argv = argv[1:]
    debug = "--debug" in argv
    argv = [a for a in argv if a != "--debug"]
    headless()
    chosen = next((a for a in argv if not a.startswith("-")), None)
    try:
        args = build_parser(chosen or "").parse_args(argv)
        args.argv = argv
        return int(args.func(args) or 0)
    except Exception as e:
        if debug or not isinstance(e, _expected_errors()):
            raise
        print(f"lewm: error: {e}", file=sys.stderr)
        return 1


__all__ = [
    "COMMANDS",
    "add_config_options",
    "agent_path",
    "build_parser",
    "collect_overrides",
    "field_docs",
    "main",
    "saved_run_settings",
]
