"""The one parser tree: every command, its sub-commands and modes, built from `Command`s.

A `Command` names what a command line offers (its help, its options, the function
that runs it, its sub-commands and its modes); `populate` turns it into argparse.
Two additions to plain argparse, both inside the tree:

- Options are added when a command is chosen (`Commands`, the sub-command action):
  `lewm data info` does not import what `lewm eval --compare` needs for its defaults,
  and `lewm -h` lists every command without building any of them.
- A mode flag (`lewm eval --compare ...`, `lewm eval --videos ...`: the README's
  spelling) is an option of its command that takes the rest of the line (`Mode`);
  argparse finds it wherever it stands, and the command's arguments, minus the
  flag, are parsed again by the mode's own parser (usage `lewm eval --compare`).

`python -m eval.compare` and the other module entry points build the same
`Command` as the root of their parser (`build_parser(command=...)`), so an option is
defined once, whichever way it is reached.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Command:
    """One command of the tree (`lewm NAME ...`), a sub-command, or a mode (`--compare`)."""

    name: str
    help: str = ""
    options: Callable[[argparse.ArgumentParser], None] | None = None
    """Adds the command's arguments (imports what their defaults need: runs lazily)."""
    run: Callable[[argparse.Namespace], int | None] | None = None
    """Runs the parsed command (`args.func`)."""
    description: str | Callable[[], str] | None = None
    """Shown by -h; a callable is called when the command is built (a module docstring)."""
    raw_description: bool = False
    """Keep the description's line breaks (a docstring with a table or a list)."""
    aliases: tuple[str, ...] = ()
    children: tuple[Command, ...] = ()
    """Sub-commands (`lewm data info`), stored in `args.<dest>`."""
    dest: str = "command"
    required: bool = True
    """Whether a sub-command must be given (else `run` runs without one)."""
    modes: tuple[Command, ...] = ()
    """Mode flags (`lewm eval --compare`): each a Command named by its flag."""
    modes_title: str = "other modes (their own options: add -h)"


def make_parser(prog: str, **kwargs: Any) -> argparse.ArgumentParser:
    """The project's one `ArgumentParser` constructor (a root, or a mode's parser)."""
    return argparse.ArgumentParser(prog=prog, **kwargs)


def populate(parser: argparse.ArgumentParser, command: Command) -> argparse.ArgumentParser:
    """Give `parser` the command's description, options, modes, sub-commands and `func`."""
    if command.description is not None:
        d = command.description
        parser.description = d() if callable(d) else d
    if command.raw_description:
        parser.formatter_class = argparse.RawDescriptionHelpFormatter
    if command.options is not None:
        command.options(parser)
    if command.run is not None:
        parser.set_defaults(func=command.run)
    if command.modes:
        group = parser.add_argument_group(command.modes_title)
        for mode in command.modes:
            group.add_argument(mode.name, action=Mode, mode=mode, help=mode.help)
    if command.children:
        sub = parser.add_subparsers(dest=command.dest, required=command.required, action=Commands)
        for child in command.children:
            sub.add_command(child)
    return parser


def find(root: Command, path: Sequence[str]) -> Command:
    """The command at `path` (names, sub-command names and mode flags) below `root`."""
    command = root
    for name in path:
        below = {c.name: c for c in (*command.children, *command.modes)}
        below |= {a: c for c in command.children for a in c.aliases}
        if name not in below:
            raise KeyError(f"no command {' '.join(path)!r} (at {name!r})")
        command = below[name]
    return command


class ModeChosen(Exception):
    """Raised by `Mode` while argparse parses: `parse_mode` takes it from there."""

    def __init__(self, parser: argparse.ArgumentParser, mode: Command, rest: list[str]):
        super().__init__(mode.name)
        self.parser, self.mode, self.rest = parser, mode, rest


class Mode(argparse.Action):
    """`--compare ...`: the rest of the line belongs to the mode `mode`."""

    def __init__(self, option_strings: list[str], dest: str, mode: Command, **kwargs: Any):
        kwargs.update(nargs=argparse.REMAINDER, default=argparse.SUPPRESS)
        super().__init__(option_strings, argparse.SUPPRESS, **kwargs)
        self.mode = mode

    def __call__(self, parser, namespace, values, option_string=None):  # noqa: ANN001
        raise ModeChosen(parser, self.mode, list(values or []))


def parse_mode(
    chosen: ModeChosen, args: list[str], namespace: argparse.Namespace
) -> argparse.Namespace:
    """Parse a command's `args` (all of them, minus the mode flag) with the mode's parser.

    The flag stands where the mode's remainder starts: len(args) - len(rest) - 1.
    """
    at = len(args) - len(chosen.rest) - 1
    mode_parser = populate(make_parser(f"{chosen.parser.prog} {chosen.mode.name}"), chosen.mode)
    sub, extras = mode_parser.parse_known_args(args[:at] + args[at + 1 :], None)
    for key, value in vars(sub).items():
        setattr(namespace, key, value)
    if extras:
        vars(namespace).setdefault(argparse._UNRECOGNIZED_ARGS_ATTR, []).extend(extras)
    return namespace


class Commands(argparse._SubParsersAction):
    """Sub-commands whose parsers are populated when chosen (or when `parser_for` asks)."""

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self._commands: dict[str, Command] = {}
        self._built: set[int] = set()

    def add_command(self, command: Command) -> argparse.ArgumentParser:
        parser = self.add_parser(command.name, help=command.help, aliases=list(command.aliases))
        for name in (command.name, *command.aliases):
            self._commands[name] = command
        return parser

    def parser_for(self, name: str) -> argparse.ArgumentParser:
        """The sub-command's parser, with its options."""
        parser = self._name_parser_map[name]
        if id(parser) not in self._built:
            self._built.add(id(parser))
            populate(parser, self._commands[name])
        return parser

    def __call__(self, parser, namespace, values, option_string=None):  # noqa: ANN001
        name, args = values[0], list(values[1:])
        if name in self._commands:  # an unknown name: argparse's own message
            self.parser_for(name)
        try:
            super().__call__(parser, namespace, values, option_string)
        except ModeChosen as chosen:
            parse_mode(chosen, args, namespace)


def parse(parser: argparse.ArgumentParser, argv: list[str]) -> argparse.Namespace:
    """`parser.parse_args(argv)`, modes of the root parser itself included."""
    try:
        return parser.parse_args(argv)
    except ModeChosen as chosen:
        namespace = parse_mode(chosen, argv, argparse.Namespace())
        extras = vars(namespace).pop(argparse._UNRECOGNIZED_ARGS_ATTR, None)
        if extras:
            parser.error(f"unrecognized arguments: {' '.join(extras)}")
        return namespace


def walk(
    parser: argparse.ArgumentParser, path: tuple[str, ...] = ()
) -> list[tuple[tuple[str, ...], argparse.ArgumentParser]]:
    """Every (path, parser) of the tree, each populated, modes included (for tests, docs)."""
    out = [(path, parser)]
    for action in parser._actions:
        if isinstance(action, Commands):
            seen: set[int] = set()
            for name in action._name_parser_map:
                sub = action.parser_for(name)
                if id(sub) not in seen:
                    seen.add(id(sub))
                    out += walk(sub, (*path, action._commands[name].name))
        elif isinstance(action, Mode):
            flag = action.mode.name
            mode_parser = populate(make_parser(f"{parser.prog} {flag}"), action.mode)
            out += walk(mode_parser, (*path, flag))
    return out
