"""The `lewm` command line: plain argparse sub-commands, every -h, errors, zoo:NAME
everywhere an agent is named, the torchrun relaunch, and no `python -m` aliases."""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from lewm_agent.cli import COMMANDS, build_parser, main
from lewm_agent.cli.options import agent_path

ROOT = Path(__file__).resolve().parents[2]

AGENT_DESTS = {"agent", "lewm", "run", "checkpoint", "checkpoints"}
"""Option names that name a trained agent to load (a checkpoint folder or zoo:NAME)."""

WRITTEN_FOLDERS = {("demo", "run")}
"""Options of those names that are folders a command writes, not agents it loads."""


def walk(
    parser: argparse.ArgumentParser, path: tuple[str, ...] = ()
) -> list[tuple[tuple[str, ...], argparse.ArgumentParser]]:
    """Every (command path, parser) below `parser`, sub-commands included.

    argparse has no public way to list a parser's sub-parsers: this reads its actions.
    """
    out = [(path, parser)]
    for action in parser._actions:
        if isinstance(action.choices, dict) and not action.option_strings:
            for name, sub in action.choices.items():
                out += walk(sub, (*path, name))
    return out


def _tree() -> list[tuple[tuple[str, ...], argparse.ArgumentParser]]:
    return walk(build_parser())


def test_lewm_help_lists_every_command(capsys) -> None:
    with pytest.raises(SystemExit) as e:
        main(["-h"])
    assert e.value.code == 0
    text = capsys.readouterr().out
    for name in COMMANDS:
        assert re.search(rf"^    {re.escape(name)}\s", text, re.M), name


@pytest.mark.parametrize("path", [p for p, _ in _tree()], ids=lambda p: " ".join(p) or "lewm")
def test_every_command_of_the_tree_has_its_help(path, capsys) -> None:
    with pytest.raises(SystemExit) as e:
        main([*path, "-h"])
    assert e.value.code == 0
    text = capsys.readouterr().out
    assert text.startswith("usage: lewm" + "".join(f" {p}" for p in path)), text[:200]
    assert "%%" not in text and "python -m eval" not in text


def test_the_tree_has_every_command() -> None:
    paths = {" ".join(p) for p, _ in _tree()}
    for want in ("collect", "train", "train-policy", "eval", "compare", "videos", "info",
                 "data info", "data export-minari", "probe state", "probe surprise",
                 "probe straightness", "zoo list", "zoo add", "bench planning",
                 "bench planning-quality", "bench paper-prior", "suite", "demo"):  # fmt: skip
        assert want in paths, want
    for gone in ("probe probe", "eval --compare", "eval --videos"):
        assert gone not in paths, gone


def test_every_runnable_command_has_a_function() -> None:
    """A leaf of the tree (no sub-command left to choose) runs something, its own
    function or its parent's (`lewm data info` runs `data`'s)."""
    parsers = dict(_tree())
    for path, parser in parsers.items():
        has_sub = any(isinstance(a.choices, dict) and not a.option_strings for a in parser._actions)
        if path and (not has_sub or path == ("bench",)):
            funcs = [parsers[path[:n]].get_default("func") for n in range(1, len(path) + 1)]
            assert any(callable(f) for f in funcs), path


def test_compare_and_videos_are_commands_not_modes() -> None:
    args = build_parser().parse_args(["compare", "--env", "E", "--agents", "random"])
    assert args.agents == "random" and args.env == "E" and args.budget == 50
    with pytest.raises(SystemExit):  # compare's options are not eval's
        build_parser().parse_args(["eval", "--agent", "A", "--agents", "random"])
    with pytest.raises(SystemExit):
        build_parser().parse_args(["eval", "--agent", "A", "--compare"])


def test_every_option_naming_an_agent_takes_a_zoo_name() -> None:
    """`zoo:tworoom` is accepted wherever an agent is named, meaning the zoo's folder."""
    zoo_folder = str(ROOT / "zoo" / "tworoom")
    assert agent_path("zoo:tworoom") == zoo_folder
    assert agent_path("runs/x") == "runs/x"
    found = []
    for path, parser in _tree():
        for action in parser._actions:
            if action.dest not in AGENT_DESTS or (*path, action.dest) in WRITTEN_FOLDERS:
                continue
            found.append((*path, action.dest))
            assert action.type is agent_path, (path, action.dest)
    assert {f for f in found} >= {
        ("eval", "agent"), ("compare", "lewm"), ("videos", "lewm"), ("info", "agent"),
        ("train-policy", "run"), ("probe", "state", "checkpoint"),
        ("probe", "straightness", "checkpoints"), ("bench", "planning-quality", "agent"),
        ("zoo", "add", "run"),
    }  # fmt: skip


@pytest.mark.parametrize(
    "argv",
    [
        ["eval", "--agent", "zoo:tworoom"],
        ["compare", "--env", "lewm/TwoRoom-v0", "--lewm", "zoo:tworoom"],
        ["videos", "--env", "lewm/TwoRoom-v0", "--lewm", "zoo:tworoom"],
        ["info", "--agent", "zoo:tworoom"],
        ["train-policy", "zoo:tworoom", "--data", "d", "--out", "o"],
        ["probe", "state", "zoo:tworoom", "--data", "d"],
        ["probe", "surprise", "zoo:tworoom", "--data", "d"],
        ["probe", "straightness", "zoo:tworoom", "zoo:tworoom", "--data", "d"],
        ["bench", "planning-quality", "--agent", "zoo:tworoom"],
    ],
    ids=lambda a: " ".join(a[:2]),
)
def test_a_zoo_name_parses_to_its_folder_in_every_command(argv) -> None:
    args = build_parser().parse_args(argv)
    values = [getattr(args, d) for d in AGENT_DESTS if hasattr(args, d)]
    flat = [v for x in values for v in (x if isinstance(x, list) else [x])]
    assert flat and all(v == str(ROOT / "zoo" / "tworoom") for v in flat), flat


def test_an_unknown_zoo_name_is_a_clean_error(capsys) -> None:
    assert main(["bench", "planning-quality", "--agent", "zoo:nope"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("lewm: error: no zoo model named 'nope'") and err.count("\n") == 1
    assert "zoo:tworoom" in err


def test_train_policy_does_not_write_into_a_zoo_folder(tmp_path) -> None:
    with pytest.raises(SystemExit, match="zoo model's folder.*--out DIR"):
        main(["train-policy", "zoo:tworoom", "--data", str(tmp_path)])


def test_planning_quality_runs_a_zoo_model_without_data(tmp_path, capsys) -> None:
    """The issue's case: `lewm bench planning-quality --agent zoo:tworoom` needs no --data
    (the zoo ships its protocol episodes) and names the folder it ran."""
    out = tmp_path / "pq.json"
    argv = ["bench", "planning-quality", "--agent", "zoo:tworoom", "--planners", "cem-30x2",
            "--episodes", "1", "--budget", "5", "--json", str(out), "--no-progress"]  # fmt: skip
    assert main(argv) == 0
    import json

    report = json.loads(out.read_text())
    assert report["agent"] == str(ROOT / "zoo" / "tworoom")
    assert [r["planner"] for r in report["rows"]] == ["cem-30x2"]
    assert report["rows"][0]["episodes"] == 1


def test_no_python_m_alias_below_the_cli() -> None:
    """The `lewm` command is the interface: no module below the CLI runs it."""
    offenders = [
        str(p.relative_to(ROOT))
        for pkg in ("lewm_agent", "envs", "agents", "eval")
        for p in (ROOT / pkg).rglob("*.py")
        if "lewm_agent/cli" not in p.as_posix()
        and re.search(r"(from|import) lewm_agent\.cli\b", p.read_text())
    ]
    assert offenders == []
    assert not (ROOT / "lewm_agent" / "train" / "__main__.py").exists()
    assert not (ROOT / "eval" / "physics" / "__main__.py").exists()


def test_no_argparse_internals_in_the_cli() -> None:
    for p in (ROOT / "lewm_agent" / "cli").rglob("*.py"):
        text = p.read_text()
        assert "_SubParsersAction" not in text and "_UNRECOGNIZED_ARGS_ATTR" not in text, p


def test_library_functions_take_no_namespace() -> None:
    """No `run_*(args)` below the CLI: argparse is the CLI's business alone."""
    for pkg in ("envs", "agents", "eval"):
        for p in (ROOT / pkg).rglob("*.py"):
            text = p.read_text()
            assert "import argparse" not in text, p
            assert not re.search(r"def run_\w+\(args\b", text), p


def test_a_command_imports_only_its_own_floors() -> None:
    """Options are built for the chosen command only: `lewm data info` imports no eval."""
    code = (
        "import sys; from lewm_agent.cli import main; main(['data', 'info', '/nonexistent']); "
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('eval', 'agents')))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert out.stdout.strip().splitlines()[-1] == "[]", out.stdout + out.stderr


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


def test_the_nproc_relaunch_re_passes_the_users_argv(monkeypatch, tmp_path):
    """`lewm train --nproc 2 ...` relaunches `-m lewm_agent.cli -- train ...` unchanged."""
    import lewm_agent.distributed as distributed

    for var in ("LOCAL_RANK", "WORLD_SIZE"):
        monkeypatch.delenv(var, raising=False)
    calls: list[tuple[int, str, list[str]]] = []
    monkeypatch.setattr(
        distributed, "launch_torchrun", lambda n, mod, argv: calls.append((n, mod, list(argv)))
    )
    argv = ["train", "--data", str(tmp_path / "d"), "--out", str(tmp_path / "o"), "--nproc",
            "2", "--ste", "3"]  # fmt: skip
    assert main(argv) == 0
    assert calls == [(2, "lewm_agent.cli", ["--", *argv])]


def test_the_planner_choices_of_the_cli_are_the_planners_the_agent_accepts() -> None:
    # options.py may not import torch, so it restates the list; this keeps the two equal
    # (a planner added to planning.py must become a --planner choice, and vice versa).
    from lewm_agent.cli.options import PLANNERS
    from lewm_agent.planning import PLANNER_NAMES

    assert list(PLANNERS) == list(PLANNER_NAMES)


def test_videos_of_a_zoo_model_need_no_dataset(tmp_path, capsys) -> None:
    """`lewm videos --lewm zoo:NAME`: the episodes are the ones the zoo model ships."""
    out = tmp_path / "videos"
    argv = ["videos", "--env", "lewm/TwoRoom-v0", "--agents", "lewm,random", "--lewm",
            "zoo:tworoom", "--episodes", "1", "--columns", "1", "--budget", "3", "--out",
            str(out), "--device", "cpu"]  # fmt: skip
    assert main(argv) == 0
    names = sorted(p.name for p in out.iterdir())
    assert names == [
        "tworoom_lewm.mp4", "tworoom_lewm_grid.mp4", "tworoom_random.mp4",
        "tworoom_random_grid.mp4",
    ]  # fmt: skip


def test_compare_of_a_zoo_model_uses_its_shipped_episodes(tmp_path) -> None:
    """`lewm compare --lewm zoo:NAME` without --data: the zoo's protocol episodes, the
    same first pairs `lewm eval --agent zoo:NAME` plays."""
    import json

    from eval.zoo import protocol_episodes

    out = tmp_path / "cmp"
    argv = ["compare", "--env", "lewm/TwoRoom-v0", "--agents", "lewm,random", "--lewm",
            "zoo:tworoom", "--episodes", "2", "--budget", "3", "--out", str(out),
            "--no-progress", "--device", "cpu"]  # fmt: skip
    assert main(argv) == 0
    results = json.loads((out / "results.json").read_text())
    assert list(results) == ["lewm", "random"] and results["lewm"]["episodes"] == 2
    cached = json.loads((out / "per_agent" / "lewm.json").read_text())
    shipped = protocol_episodes("zoo:tworoom", n=2)
    assert cached["fingerprint"]["episodes"] == [[e.episode, e.start_step] for e in shipped]


def test_train_policy_out_writes_a_new_folder_and_leaves_run(
    tiny_agent_dir, tworoom_data, tmp_path
):
    """`lewm train-policy RUN --out DIR` (how a zoo model gets a head): the model and its
    head go to DIR, RUN's files stay as they were."""
    before = sorted(p.name for p in Path(tiny_agent_dir).iterdir())
    out = tmp_path / "with-head"
    argv = ["train-policy", str(tiny_agent_dir), "--data", str(tworoom_data), "--out", str(out),
            "--steps", "2", "--device", "cpu"]  # fmt: skip
    assert main(argv) == 0
    assert sorted(p.name for p in Path(tiny_agent_dir).iterdir()) == before
    written = {p.name for p in out.iterdir()}
    assert {"config.json", "model.safetensors", "stats.json", "policy_head.safetensors"} <= written
