"""The floors hold: no import cycle, no upward import (`python -m lewm_agent.layers`)."""

from __future__ import annotations

from pathlib import Path

from lewm_agent import layers


def test_no_upward_import_and_no_cycle():
    graph = layers.build_graph()
    assert len(graph.modules) > 40  # the walk found the packages
    assert layers.upward_imports(graph) == [], layers.report(graph)
    assert layers.cycles(graph) == [], layers.report(graph)


def test_the_method_floor_imports_nothing_above_it_but_the_cli():
    graph = layers.build_graph()
    for mod, deps in graph.edges.items():
        if mod.startswith("lewm_agent") and not layers.is_top_floor(mod):
            assert all(d.startswith("lewm_agent") for d in deps), (mod, deps)


def test_the_top_floor_is_the_cli_package_alone():
    graph = layers.build_graph()
    top = sorted(m for m in graph.modules if layers.is_top_floor(m))
    assert "lewm_agent.cli" in top and "lewm_agent.cli.evaluate" in top
    assert all(m == "lewm_agent.cli" or m.startswith("lewm_agent.cli.") for m in top)
    assert not layers.is_top_floor("lewm_agent.client")  # a prefix is not a package


def _tree(root: Path, files: dict[str, str]) -> None:
    for pkg in layers.FLOORS:
        (root / pkg).mkdir()
        (root / pkg / "__init__.py").write_text("")
    for name, text in files.items():
        (root / name).write_text(text)


def test_the_check_fails_on_an_upward_import_even_a_lazy_one(tmp_path):
    _tree(
        tmp_path,
        {
            "envs/world.py": "def f():\n    from agents.bot import Bot\n",
            "agents/bot.py": "from envs.world import f\nclass Bot: ...\n",
            "eval/run.py": "import agents.bot\nif __name__ == '__main__':\n    import lewm_agent\n",
        },
    )
    graph = layers.build_graph(tmp_path)
    assert layers.upward_imports(graph) == [("envs.world", "agents.bot", 2)]
    assert layers.cycles(graph) == [["agents.bot", "envs.world"]]
    assert graph.edges["eval.run"] == {"agents.bot": 1}  # the __main__ block is not an edge


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
