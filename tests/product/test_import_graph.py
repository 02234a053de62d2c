"""No import cycles between packages, and the host reaches the agent only through its protocol.

Why: a cycle (search -> report -> search) means neither package can be understood, tested or
replaced alone, and a function-level import hides one from a casual reader without breaking
it. So the graph counts every import statement, at module level or inside a function. A node
is a subpackage of ``hostside`` (``hostside.search``) or a top-level module
(``hostside.journal``); an import of a package's ``__init__`` re-export counts as that package.
"""

from __future__ import annotations

import ast
from pathlib import Path
from typing import Dict, Iterator, List, Set, Tuple

ROOT = Path(__file__).resolve().parents[2]


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _package(path: Path) -> str:
    """The package relative imports in ``path`` start from."""
    return _module_name(path) if path.name == "__init__.py" else _module_name(path).rsplit(".", 1)[0]


def _imports(path: Path, package: str) -> Iterator[Tuple[str, int]]:
    """Every module ``path`` imports (absolute names), with the line, functions included."""
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, node.lineno
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[:len(anchor) - (node.level - 1)]
                base = ".".join(anchor + ([base] if base else []))
            yield base, node.lineno
            for alias in node.names:  # ``from hostside import report`` imports hostside.report
                yield f"{base}.{alias.name}", node.lineno


def _node(module: str) -> str:
    """The graph node a module belongs to: ``hostside.X`` for anything under hostside.X."""
    parts = module.split(".")
    return ".".join(parts[:2]) if parts[0] == "hostside" and len(parts) > 1 else parts[0]


def _existing(module: str) -> bool:
    path = ROOT.joinpath(*module.split("."))
    return path.with_suffix(".py").is_file() or (path / "__init__.py").is_file()


def package_graph() -> Dict[str, Dict[str, List[str]]]:
    """node -> {imported node: ["file:line", ...]} over every hostside module."""
    graph: Dict[str, Dict[str, List[str]]] = {}
    for path in sorted((ROOT / "hostside").rglob("*.py")):
        source = _node(_module_name(path))
        edges = graph.setdefault(source, {})
        for module, line in _imports(path, _package(path)):
            if not module.startswith("hostside.") or not _existing(module):
                continue
            target = _node(module)
            if target != source and target != "hostside":
                edges.setdefault(target, []).append(f"{path.relative_to(ROOT)}:{line}")
    return graph


def cycles(graph: Dict[str, Dict[str, List[str]]]) -> List[List[str]]:
    """The strongly connected components with more than one node (Tarjan)."""
    index: Dict[str, int] = {}
    low: Dict[str, int] = {}
    stack: List[str] = []
    on_stack: Set[str] = set()
    found: List[List[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in graph.get(node, {}):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_no_import_cycle_between_packages():
    graph = package_graph()
    problems = []
    for component in cycles(graph):
        members = set(component)
        edges = [f"  {a} -> {b} ({', '.join(graph[a][b][:3])})" for a in component for b in graph[a] if b in members]
        problems.append(" <-> ".join(component) + "\n" + "\n".join(edges))
    assert not problems, "import cycles between packages:\n" + "\n".join(problems)


def test_the_graph_sees_imports_inside_functions(tmp_path):
    source = tmp_path / "probe.py"
    source.write_text("import json\n\ndef late():\n    from hostside.search import engine\n    from ..report import x\n")
    found = set(_imports(source, "hostside.spaces"))
    assert ("hostside.search.engine", 4) in found
    assert ("hostside.report", 5) in found


def test_host_imports_only_the_agents_protocol():
    allowed = {"device_agent.protocol", "device_agent.power"}  # power: runs analyze's local sampling
    stray = []
    for path in sorted((ROOT / "hostside").rglob("*.py")):
        for module, line in _imports(path, _package(path)):
            if module.split(".")[0] != "device_agent" or module == "device_agent":
                continue
            if not any(module == a or module.startswith(a + ".") for a in allowed) and _existing(module):
                stray.append(f"{path.relative_to(ROOT)}:{line} imports {module}")
    assert not stray, "\n".join(stray)
