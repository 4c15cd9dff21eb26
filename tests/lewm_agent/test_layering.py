"""The floors hold: no import cycle, no upward import (`python -m lewm_agent.layers`).

Floors lewm_agent < envs < agents < eval < lewm_agent.cli, every import statement
read (`__main__` blocks included), no module excused.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from lewm_agent import layers


def test_no_upward_import_and_no_cycle():
    graph = layers.build_graph()
    assert len(graph.modules) > 40  # the walk found the packages
    assert layers.upward_imports(graph) == [], layers.report(graph)
    assert layers.cycles(graph) == [], layers.report(graph)


def test_nothing_imports_the_cli():
    graph = layers.build_graph()
    cli = layers.FLOORS.index("lewm_agent.cli")
    importers = {
        src
        for src, deps in graph.edges.items()
        for dst in deps
        if graph.floor(dst) == cli and graph.floor(src) != cli
    }
    assert importers == set()


def test_the_cli_is_the_top_floor_by_longest_prefix():
    assert layers.floor_of("lewm_agent.cli") == layers.FLOORS.index("lewm_agent.cli")
    assert layers.floor_of("lewm_agent.cli.evaluate") == len(layers.FLOORS) - 1
    assert layers.floor_of("lewm_agent.client") == 0  # a prefix is not a package
    assert layers.floor_of("lewm_agent.train") == 0
    assert layers.floor_of("eval.compare") == 3
    with pytest.raises(ValueError, match="no floor"):
        layers.floor_of("numpy")


def _tree(root: Path, files: dict[str, str]) -> None:
    for pkg in layers.PACKAGES:
        (root / pkg).mkdir()
        (root / pkg / "__init__.py").write_text("")
    (root / "lewm_agent" / "cli").mkdir()
    (root / "lewm_agent" / "cli" / "__init__.py").write_text("")
    for name, text in files.items():
        (root / name).write_text(text)


def test_the_check_fails_on_an_upward_import_even_a_lazy_one(tmp_path):
    _tree(
        tmp_path,
        {
            "envs/world.py": "def f():\n    from agents.bot import Bot\n",
            "agents/bot.py": "from envs.world import f\nclass Bot: ...\n",
            "eval/run.py": "import agents.bot\n",
        },
    )
    graph = layers.build_graph(tmp_path)
    assert layers.upward_imports(graph) == [("envs.world", "agents.bot", 2)]
    assert layers.cycles(graph) == [["agents.bot", "envs.world"]]
    assert graph.edges["eval.run"] == {"agents.bot": 1}


def test_a_main_block_calling_the_cli_is_an_upward_import(tmp_path):
    """`if __name__ == "__main__": from lewm_agent.cli import main` below the CLI fails,
    and makes a cycle with the CLI command that imports the module back."""
    _tree(
        tmp_path,
        {
            "eval/run.py": "x = 1\nif __name__ == '__main__':\n    from lewm_agent.cli import main\n",
            "lewm_agent/cli/cmd.py": "def f():\n    from eval.run import x\n",
            "lewm_agent/cli/__init__.py": "from .cmd import f\n",
        },
    )
    graph = layers.build_graph(tmp_path)
    assert layers.upward_imports(graph) == [("eval.run", "lewm_agent.cli", 3)]
    assert layers.cycles(graph) == [["eval.run", "lewm_agent.cli", "lewm_agent.cli.cmd"]]


def test_the_cli_may_import_every_floor(tmp_path):
    _tree(
        tmp_path,
        {
            "eval/run.py": "import agents\nimport envs\nimport lewm_agent\n",
            "lewm_agent/cli/cmd.py": "def f():\n    import eval.run\n    import lewm_agent\n",
        },
    )
    graph = layers.build_graph(tmp_path)
    assert graph.edges["lewm_agent.cli.cmd"] == {"eval.run": 2, "lewm_agent": 3}
    assert layers.upward_imports(graph) == []
    assert layers.cycles(graph) == []


def test_the_check_fails_on_a_cycle_inside_one_floor(tmp_path):
    _tree(
        tmp_path,
        {
            "lewm_agent/a.py": "from . import b\n",
            "lewm_agent/b.py": "from .c import x\n",
            "lewm_agent/c.py": "from lewm_agent.a import y\nx = 1\n",
        },
    )
    graph = layers.build_graph(tmp_path)
    assert layers.upward_imports(graph) == []
    assert layers.cycles(graph) == [["lewm_agent.a", "lewm_agent.b", "lewm_agent.c"]]
