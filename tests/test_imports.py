"""The package's import graph, read from the source (every ``import``, lazy ones inside
functions and those under ``TYPE_CHECKING`` included): no cycle between ``cluster.py`` and
``futures.py``, planning a call depends on neither, and the worker is handed its backend
instead of importing ``backends/``."""

from __future__ import annotations

import ast
from pathlib import Path

import starburst

PACKAGE = Path(starburst.__file__).parent


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path) -> set[str]:
    """The package's modules that ``path`` imports anywhere in its text."""
    name = _module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = package.rsplit(".", node.level - 1)[0] if node.level else ""
            module = ".".join(part for part in (base, node.module) if part)
            found.add(module)
            found.update(f"{module}.{alias.name}" for alias in node.names)
    return {m for m in found if m.startswith("starburst")}


def _graph() -> dict[str, set[str]]:
    modules = {_module_name(path): path for path in PACKAGE.rglob("*.py")}
    return {name: _imports(path) & modules.keys() for name, path in modules.items()}


def _reachable(graph: dict[str, set[str]], start: str) -> set[str]:
    """Every module ``start`` may import, but not through ``starburst/__init__.py``: it
    imports its public names on first use only (``import starburst`` loads none of them)."""
    seen, todo = set(), [start]
    while todo:
        for module in graph[todo.pop()] - seen:
            seen.add(module)
            if module != "starburst":
                todo.append(module)
    return seen


def test_futures_does_not_import_cluster_even_lazily():
    graph = _graph()
    assert "starburst.futures" in graph["starburst.cluster"]  # the one direction there is
    assert "starburst.cluster" not in _reachable(graph, "starburst.futures")


def test_planning_depends_on_no_front_end():
    reached = _reachable(_graph(), "starburst.planning")
    assert not reached & {"starburst.cluster", "starburst.futures", "starburst.api"}


def test_the_worker_does_not_import_backends():
    """Only the worker program's entry point (``worker/__main__.py``) wires in the registry;
    the worker's modules are handed it, so ``backends/`` (which forks workers) and
    ``worker/`` form no import cycle."""
    graph = _graph()
    worker = [
        m for m in graph if m.startswith("starburst.worker") and m != "starburst.worker.__main__"
    ]
    found = {m: sorted(i for i in graph[m] if i.startswith("starburst.backends")) for m in worker}
    assert not {m: names for m, names in found.items() if names}
