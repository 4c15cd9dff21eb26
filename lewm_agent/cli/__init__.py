"""`lewm`: the command line, one parser for every command.

    collect | train | train-policy | eval [--compare | --videos] | info | data | probe
    | zoo | bench | suite | demo

The top floor of the project: it is the only place that knows every floor. Each
command's options are defined here once, in the module of its group (`record`:
collect, data; `train`: train, train-policy, info; `evaluate`: eval and its modes,
probe, zoo; `bench`: bench, suite, demo), and its function calls a `run_*` function of
the floor that does the work (`envs.collect.run_collect`, `eval.compare.run_compare`,
...), importing it inside the function, so `lewm_agent` itself never depends on the
floors above (`lewm_agent.layers.TOP_FLOOR` allows this package alone). `tree` builds
argparse from the `Command`s; `options` holds the shared option helpers.

The module entry points the README documents (`python -m envs.collect`,
`python -m eval.compare`, `eval.video`, `eval.physics`, `eval.zoo`, `eval.suite`,
`eval.bench`, `eval.bench_paper_prior`, `eval.demo`, `lewm_agent.train`) are aliases:
their `if __name__ == "__main__":` block calls `main(command=[...], prog=...)`, which
builds the same command as the root of the parser (help and errors named after the
module). It sits in `lewm_agent` so that the `lewm` console script
(`lewm_agent.cli:main`) ships with the method package.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from .bench import BENCH, DEMO, SUITE
from .evaluate import EVAL, PROBE, ZOO
from .options import add_config_options, collect_overrides, field_docs, headless
from .record import COLLECT, DATA
from .train import (
    INFO,
    TRAIN,
    TRAIN_POLICY,
    cmd_train_engine,
    saved_run_settings,
    wants_train_engine,
)
from .tree import Command, find, make_parser, parse, populate, walk


def _debug_option(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--debug", action="store_true", help="show the full traceback of expected errors too"
    )


LEWM = Command(
    "lewm",
    description="LeWorldModel agent toolkit",
    options=_debug_option,
    children=(COLLECT, TRAIN, TRAIN_POLICY, EVAL, INFO, DATA, PROBE, ZOO, BENCH, SUITE, DEMO),
)
"""The whole tree: `lewm COMMAND ...`."""


def build_parser(prog: str = "lewm", command: Sequence[str] = ()) -> argparse.ArgumentParser:
    """The `lewm` parser, or (`command`, e.g. `["eval", "--compare"]`) that command's own
    parser as a root named `prog` (what `python -m eval.compare` parses with)."""
    if not command:
        return populate(make_parser(prog), LEWM)
    parser = make_parser(prog)
    _debug_option(parser)
    return populate(parser, find(LEWM, command))


def _expected_errors() -> tuple[type[BaseException], ...]:
    """Errors about the user's files, values or disk: their message says what to fix."""
    from ..checkpoint import CheckpointError
    from ..data import DatasetError, DiskFullError
    from ..train_state import TrainStateError
    from ..validation import ConfigError

    return (CheckpointError, DatasetError, DiskFullError, TrainStateError, ConfigError)


def main(
    argv: Sequence[str] | None = None, *, command: Sequence[str] = (), prog: str = "lewm"
) -> int:
    """`lewm ARGV`, or with `command` `python -m MODULE ARGV` (= `lewm COMMAND ARGV`).

    An expected error prints `PROG: error: <message>` alone and returns 1; `--debug`
    (anywhere) lets it raise instead, with its full traceback. `args.argv` is what
    the user typed as `lewm` arguments (`COMMAND ARGV`): `lewm train --nproc N`
    re-passes it to torchrun unchanged.
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["--"]:  # `torchrun ... -m lewm_agent.cli -- train ...` (the relaunch)
        argv = argv[1:]
    debug = "--debug" in argv
    argv = [a for a in argv if a != "--debug"]
    headless()
    try:
        args = parse(build_parser(prog, command), argv)
        args.argv = [*command, *argv]
        return int(args.func(args) or 0)
    except Exception as e:
        if debug or not isinstance(e, _expected_errors()):
            raise
        print(f"{prog}: error: {e}", file=sys.stderr)
        return 1


__all__ = [
    "LEWM",
    "Command",
    "add_config_options",
    "build_parser",
    "cmd_train_engine",
    "collect_overrides",
    "field_docs",
    "main",
    "saved_run_settings",
    "walk",
    "wants_train_engine",
]
