"""One parser tree: every command's -h, the `python -m` aliases, modes, errors, the relaunch."""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from lewm_agent.cli import LEWM, build_parser, main, walk

ROOT = Path(__file__).resolve().parents[2]

ALIASES = {  # `python -m MODULE` -> the lewm command it is (the README, Makefile, tests)
    "envs.collect": ["collect"],
    "eval.compare": ["eval", "--compare"],
    "eval.video": ["eval", "--videos"],
    "eval.physics": ["probe"],
    "eval.zoo": ["zoo"],
    "eval.suite": ["suite"],
    "eval.bench": ["bench"],
    "eval.bench_paper_prior": ["bench", "paper-prior"],
    "eval.bench_quality": ["bench", "planning-quality"],
    "eval.bench_recorder": ["bench", "recorder"],
    "eval.bench_expert": ["bench", "expert"],
    "eval.demo": ["demo"],
    "lewm_agent.train": ["train"],
}


def _tree() -> list[tuple[tuple[str, ...], argparse.ArgumentParser]]:
    return walk(build_parser())


def _options(parser: argparse.ArgumentParser) -> dict[str, tuple]:
    """Every option and positional of one parser: its flags -> (dest, default, choices, help)."""
    return {
        "/".join(a.option_strings) or a.dest: (a.dest, a.default, a.choices, a.help)
        for a in parser._actions
        if "--debug" not in a.option_strings and not isinstance(a, argparse._SubParsersAction)
    }


def test_lewm_help_lists_every_command(capsys) -> None:
    with pytest.raises(SystemExit) as e:
        main(["-h"])
    assert e.value.code == 0
    text = capsys.readouterr().out
    for command in LEWM.children:
        assert re.search(rf"^    {re.escape(command.name)}\s", text, re.M), command.name


@pytest.mark.parametrize("path", [p for p, _ in _tree()], ids=lambda p: " ".join(p) or "lewm")
def test_every_command_of_the_tree_has_its_help(path, capsys) -> None:
    with pytest.raises(SystemExit) as e:
        main([*path, "-h"])
    assert e.value.code == 0
    text = capsys.readouterr().out
    assert text.startswith("usage: lewm" + "".join(f" {p}" for p in path)), text[:200]
    assert "%%" not in text


def test_the_tree_has_every_command_and_mode() -> None:
    paths = {" ".join(p) for p, _ in _tree()}
    for want in ("eval --compare", "eval --videos", "probe state", "probe straightness",
                 "zoo add", "bench planning", "bench paper-prior", "suite", "demo",
                 "data export-minari", "train-policy"):  # fmt: skip
        assert want in paths, want


@pytest.mark.parametrize("module", sorted(ALIASES))
def test_an_alias_has_the_options_of_its_lewm_command(module) -> None:
    command = ALIASES[module]
    alias = build_parser(f"python -m {module}", command)
    assert alias.prog == f"python -m {module}"
    lewm = dict(_tree())[tuple(command)]
    assert _options(alias) == _options(lewm)
    assert alias.description == lewm.description


@pytest.mark.slow
@pytest.mark.parametrize("module", sorted(ALIASES))
def test_python_m_alias_help_runs_the_same_parser(module) -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    out = subprocess.run(
        [sys.executable, "-m", module, "-h"], capture_output=True, text=True, env=env, cwd=ROOT
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith(f"usage: python -m {module} [-h] [--debug]"), out.stdout[:200]
    lewm = dict(_tree())[tuple(ALIASES[module])]
    for flag in _options(lewm):
        if flag.startswith("-") and flag != "-h/--help":
            assert flag.split("/")[-1] in out.stdout, flag


def test_the_python_m_commands_of_the_docs_are_aliases() -> None:
    """Every `python -m eval.*` / `envs.*` the README, Makefile and docs run is in ALIASES."""
    text = "".join((ROOT / f).read_text() for f in ("README.md", "Makefile", "docs/formats.md"))
    used = set(re.findall(r"python -m ((?:eval|envs)(?:\.[a-z_]+)+)", text))
    assert used and used <= set(ALIASES), used - set(ALIASES)


def test_a_mode_flag_may_stand_anywhere_after_eval() -> None:
    parser = build_parser()
    first = parser.parse_args(["eval", "--compare", "--env", "E", "--agents", "random"])
    later = build_parser().parse_args(["eval", "--env", "E", "--agents", "random", "--compare"])
    assert vars(first) == vars(later)
    assert first.agents == "random" and first.env == "E" and first.budget == 50
    with pytest.raises(SystemExit):  # compare's options belong to the mode, not to eval
        build_parser().parse_args(["eval", "--agent", "A", "--agents", "random"])


def test_one_argument_parser_constructor_in_the_project() -> None:
    calls = [
        f"{p.relative_to(ROOT)}:{i}"
        for pkg in ("lewm_agent", "envs", "agents", "eval")
        for p in (ROOT / pkg).rglob("*.py")
        for i, line in enumerate(p.read_text().splitlines(), 1)
        if "ArgumentParser(" in line and "class " not in line
    ]
    assert len(calls) == 1 and calls[0].startswith("lewm_agent/cli/tree.py:"), calls


def test_a_command_imports_only_its_own_floors() -> None:
    """Options are built when their command is chosen: `lewm data info` imports no eval."""
    code = (
        "import sys; from lewm_agent.cli import build_parser; "
        "build_parser().parse_args(['data', 'info', 'x']); "
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('eval', 'agents', 'envs')))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        check=True,
    )
    assert out.stdout.strip() == "[]", out.stdout


@pytest.mark.parametrize(
    "argv",
    [
        ["data", "info", "/nonexistent"],
        ["probe", "state", "/nonexistent", "--data", "/nonexistent"],
        [
            "zoo",
            "add",
            "/nonexistent",
            "--name",
            "x",
            "--data",
            "/nonexistent",
            "--collect-cmd",
            "c",
            "--train-cmd",
            "t",
        ],  # fmt: skip
        ["eval", "--agent", "/nonexistent", "--episodes-from", "env"],
    ],
    ids=lambda a: " ".join(a[:2]),
)
def test_expected_errors_are_one_line_for_every_command(argv, capsys) -> None:
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert err.startswith("lewm: error: ") and err.count("\n") == 1, err
    with pytest.raises(Exception, match="does not exist"):
        main([*argv, "--debug"])


def test_an_alias_reports_errors_under_its_own_name(capsys) -> None:
    argv = ["state", "/nonexistent", "--data", "/nonexistent"]
    assert main(argv, command=["probe"], prog="python -m eval.physics") == 1
    assert capsys.readouterr().err.startswith("python -m eval.physics: error: ")


def test_an_alias_relaunch_re_passes_the_users_argv_as_a_lewm_command(monkeypatch, tmp_path):
    """`python -m lewm_agent.train --nproc 2 ...` relaunches `-m lewm_agent.cli -- train ...`."""
    import lewm_agent.distributed as distributed

    for var in ("LOCAL_RANK", "WORLD_SIZE"):
        monkeypatch.delenv(var, raising=False)
    calls: list[tuple[int, str, list[str]]] = []
    monkeypatch.setattr(
        distributed, "launch_torchrun", lambda n, mod, argv: calls.append((n, mod, list(argv)))
    )
    argv = ["--data", str(tmp_path / "d"), "--out", str(tmp_path / "o"), "--nproc", "2",
            "--ste", "3"]  # fmt: skip
    assert main(argv, command=["train"], prog="python -m lewm_agent.train") == 0
    assert calls == [(2, "lewm_agent.cli", ["--", "train", *argv])]


def test_the_planner_choices_of_the_cli_are_the_planners_the_agent_accepts() -> None:
    # options.py may not import torch, so it restates the list; this keeps the two equal
    # (a planner added to planning.py must become a --planner choice, and vice versa).
    from lewm_agent.cli.options import PLANNERS
    from lewm_agent.planning import PLANNER_NAMES

    assert list(PLANNERS) == list(PLANNER_NAMES)
