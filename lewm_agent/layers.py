"""The floors of the house and their import graph: `python -m lewm_agent.layers`.

Floors, bottom to top: `lewm_agent` (the method and the dataset format) -> `envs`
(the worlds, their data policies and the recorder) -> `agents` (the other agents
and the registry) -> `eval` (comparisons, benchmarks, demo). A module may import
from its own floor and the floors below it, never from a floor above, and the
imports form no cycle.

The graph is read from the source (an AST walk: nothing is imported), with every
`import` statement of a module, at the top or inside a function (a lazy import is
still a stair). Two things are not edges:
- the body of `if __name__ == "__main__":`, which only runs when the module is the
  program itself (then it is the top floor, above everything it imports);
- names that are not modules of the four packages (the standard library, torch...).

`TOP_FLOOR` is the allow-list: modules (or packages) that may import every floor, each
with the reason. `python -m lewm_agent.layers` prints the graph and the check and exits 1 on
a cycle or an upward import; `tests/lewm_agent/test_layering.py` runs the same check.
"""

from __future__ import annotations

import ast
import sys
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

FLOORS = ("lewm_agent", "envs", "agents", "eval")
"""The four packages, bottom floor first."""

TOP_FLOOR = {
    "lewm_agent.cli": "the command line: one parser whose commands run every floor "
    "(a package, one module per command group; it lives in lewm_agent so that the `lewm` "
    "entry point ships with the method; it imports the other floors only inside its "
    "command and option functions)",
}
"""Modules (and packages: with every module inside them) allowed to import upward
(nothing imports them back: a cycle still fails)."""


def is_top_floor(module: str) -> bool:
    """Whether `module` is a `TOP_FLOOR` entry or inside a `TOP_FLOOR` package."""
    return any(module == top or module.startswith(top + ".") for top in TOP_FLOOR)


ROOT = Path(__file__).resolve().parent.parent


@dataclass
class Graph:
    """Modules of the four packages and the imports between them."""

    modules: dict[str, Path] = field(default_factory=dict)
    edges: dict[str, dict[str, int]] = field(default_factory=dict)  # src -> {dst: line}

    def floor(self, module: str) -> int:
        return FLOORS.index(module.split(".")[0])


def module_name(path: Path, root: Path = ROOT) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _is_main_guard(node: ast.stmt) -> bool:
    if not isinstance(node, ast.If) or not isinstance(node.test, ast.Compare):
        return False
    t = node.test
    names = [t.left, *t.comparators]
    return any(isinstance(n, ast.Name) and n.id == "__name__" for n in names) and any(
        isinstance(n, ast.Constant) and n.value == "__main__" for n in names
    )


def _imports(tree: ast.Module) -> Iterable[ast.Import | ast.ImportFrom]:
    stack: list[ast.AST] = [n for n in tree.body if not _is_main_guard(n)]
    while stack:
        node = stack.pop()
        if isinstance(node, ast.Import | ast.ImportFrom):
            yield node
        stack.extend(
            n
            for n in ast.iter_child_nodes(node)
            if not (isinstance(n, ast.stmt) and _is_main_guard(n))
        )


def _resolve(graph: Graph, name: str) -> str | None:
    """The longest prefix of `name` that is one of our modules (None: not ours)."""
    parts = name.split(".")
    while parts:
        candidate = ".".join(parts)
        if candidate in graph.modules:
            return candidate
        parts.pop()
    return None


def build_graph(root: Path = ROOT, packages: Iterable[str] = FLOORS) -> Graph:
    """The import graph of every module under `root`'s packages."""
    graph = Graph()
    for pkg in packages:
        for path in sorted((root / pkg).rglob("*.py")):
            graph.modules[module_name(path, root)] = path
    for mod, path in graph.modules.items():
        is_pkg = path.name == "__init__.py"
        package = mod if is_pkg else mod.rpartition(".")[0]
        out: dict[str, int] = {}
        for node in _imports(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            else:
                if node.level:
                    base = package.split(".")
                    base = base[: len(base) - (node.level - 1)]
                    prefix = ".".join(base + ([node.module] if node.module else []))
                else:
                    prefix = node.module or ""
                # `from pkg import sub` imports the module pkg.sub when there is one.
                targets = [
                    f"{prefix}.{a.name}" if f"{prefix}.{a.name}" in graph.modules else prefix
                    for a in node.names
                ]
            for target in targets:
                dst = _resolve(graph, target)
                if dst is not None and dst != mod:
                    out.setdefault(dst, node.lineno)
        graph.edges[mod] = out
    return graph


def upward_imports(graph: Graph) -> list[tuple[str, str, int]]:
    """(importer, imported, line) for every import of a higher floor, the CLI aside."""
    return [
        (src, dst, line)
        for src, dsts in sorted(graph.edges.items())
        for dst, line in sorted(dsts.items())
        if graph.floor(dst) > graph.floor(src) and not is_top_floor(src)
    ]


def cycles(graph: Graph) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    counter = 0

    def visit(v: str) -> None:
        nonlocal counter
        index[v] = low[v] = counter
        counter += 1
        stack.append(v)
        on_stack.add(v)
        for w in graph.edges.get(v, {}):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                found.append(sorted(comp))

    sys.setrecursionlimit(max(sys.getrecursionlimit(), 10 * len(graph.modules) + 100))
    for v in sorted(graph.modules):
        if v not in index:
            visit(v)
    return found


def report(graph: Graph) -> str:
    """The graph, floor by floor, and the verdict."""
    lines = []
    for floor in FLOORS:
        lines.append(f"== {floor}")
        for mod in sorted(m for m in graph.modules if m.split(".")[0] == floor):
            deps = sorted(graph.edges[mod])
            tag = "  [top floor]" if is_top_floor(mod) else ""
            lines.append(f"  {mod}{tag} -> {', '.join(deps) if deps else '(nothing of ours)'}")
    ups, cyc = upward_imports(graph), cycles(graph)
    n_edges = sum(len(d) for d in graph.edges.values())
    lines.append(f"{len(graph.modules)} modules, {n_edges} imports between them")
    lines.append(
        "upward imports: "
        + ("none" if not ups else "; ".join(f"{s} -> {d} (line {n})" for s, d, n in ups))
    )
    lines.append("cycles: " + ("none" if not cyc else "; ".join(" <-> ".join(c) for c in cyc)))
    allowed = sorted(
        {d.split(".")[0] for m in graph.edges if is_top_floor(m) for d in graph.edges[m]}
        - {"lewm_agent"}
    )
    for mod, why in TOP_FLOOR.items():
        lines.append(f"allowed upward: {mod} -> {', '.join(allowed)}: {why}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    graph = build_graph()
    print(report(graph))
    return 1 if upward_imports(graph) or cycles(graph) else 0


if __name__ == "__main__":
    sys.exit(main())
