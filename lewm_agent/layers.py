"""The floors of the house and their import graph: `python -m lewm_agent.layers`.

Floors, bottom to top: `lewm_agent` (the method and the dataset format) -> `envs`
(the worlds, their data policies and the recorder) -> `agents` (the other agents
and the registry) -> `eval` (comparisons, benchmarks, demo) -> `lewm_agent.cli`
(the command line). A module may import from its own floor and the floors below
it, never from a floor above, and the imports form no cycle. A module's floor is
the longest floor name it starts with, so `lewm_agent.cli.train` is on the CLI's
floor and `lewm_agent.train` on the method's: nothing below the CLI may import it.

The graph is read from the source (an AST walk: nothing is imported), with every
`import` statement of a module, at the top, inside a function, or inside an
`if __name__ == "__main__":` block (a lazy import is still a stair). Names that
are not modules of the four packages (the standard library, torch...) are not
edges. `python -m lewm_agent.layers` prints the graph and the check and exits 1
on a cycle or an upward import; `tests/lewm_agent/test_layering.py` runs the
same check.
"""

from __future__ import annotations

import ast
import sys
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

PACKAGES = ("lewm_agent", "envs", "agents", "eval")
"""The four packages the walk reads (the CLI is inside `lewm_agent`)."""

FLOORS = ("lewm_agent", "envs", "agents", "eval", "lewm_agent.cli")
"""The floors, bottom first: a package, or (the CLI) a package inside one."""


def floor_of(module: str) -> int:
    """The floor of `module`: the longest floor name that is it or a package above it."""
    best = max(
        (f for f in FLOORS if module == f or module.startswith(f + ".")),
        key=len,
        default=None,
    )
    if best is None:
        raise ValueError(f"{module!r} is on no floor; floors are {FLOORS}")
    return FLOORS.index(best)


ROOT = Path(__file__).resolve().parent.parent


@dataclass
class Graph:
    """Modules of the four packages and the imports between them."""

    modules: dict[str, Path] = field(default_factory=dict)
    edges: dict[str, dict[str, int]] = field(default_factory=dict)  # src -> {dst: line}

    def floor(self, module: str) -> int:
        return floor_of(module)


def module_name(path: Path, root: Path = ROOT) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _imports(tree: ast.Module) -> Iterable[ast.Import | ast.ImportFrom]:
    """Every import statement of the module, wherever it stands."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Import | ast.ImportFrom):
            yield node


def _resolve(graph: Graph, name: str) -> str | None:
    """The longest prefix of `name` that is one of our modules (None: not ours)."""
    parts = name.split(".")
    while parts:
        candidate = ".".join(parts)
        if candidate in graph.modules:
            return candidate
        parts.pop()
    return None


def build_graph(root: Path = ROOT, packages: Iterable[str] = PACKAGES) -> Graph:
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
    """(importer, imported, line) for every import of a higher floor."""
    return [
        (src, dst, line)
        for src, dsts in sorted(graph.edges.items())
        for dst, line in sorted(dsts.items())
        if graph.floor(dst) > graph.floor(src)
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
    for n, floor in enumerate(FLOORS):
        lines.append(f"== {floor}")
        for mod in sorted(m for m in graph.modules if graph.floor(m) == n):
            deps = sorted(graph.edges[mod])
            lines.append(f"  {mod} -> {', '.join(deps) if deps else '(nothing of ours)'}")
    ups, cyc = upward_imports(graph), cycles(graph)
    n_edges = sum(len(d) for d in graph.edges.values())
    lines.append(f"{len(graph.modules)} modules, {n_edges} imports between them")
    lines.append(
        "upward imports: "
        + ("none" if not ups else "; ".join(f"{s} -> {d} (line {n})" for s, d, n in ups))
    )
    lines.append("cycles: " + ("none" if not cyc else "; ".join(" <-> ".join(c) for c in cyc)))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    graph = build_graph()
    print(report(graph))
    return 1 if upward_imports(graph) or cycles(graph) else 0


if __name__ == "__main__":
    sys.exit(main())
