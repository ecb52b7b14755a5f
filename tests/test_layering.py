"""The package's shape, checked: what a backend is lives under ``backends/`` only, and the
worker is handed its backend instead of importing ``backends/``."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import starburst
from starburst.backends.registry import BUILT_IN

PACKAGE = Path(starburst.__file__).parent


def _modules() -> Iterator[tuple[str, ast.Module]]:
    for path in sorted(PACKAGE.rglob("*.py")):
        yield path.relative_to(PACKAGE).as_posix(), ast.parse(path.read_text(), str(path))


def _runtime_nodes(tree: ast.AST) -> Iterator[ast.AST]:
    """Every node of ``tree`` outside ``if TYPE_CHECKING:`` blocks."""
    for node in ast.iter_child_nodes(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            yield from (n for child in node.orelse for n in [child, *_runtime_nodes(child)])
            continue
        yield node
        yield from _runtime_nodes(node)


def _imported(module: str, node: ast.AST) -> list[str]:
    """The dotted ``starburst`` modules an import node of ``module`` brings in."""
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    if not isinstance(node, ast.ImportFrom):
        return []
    if node.level == 0:
        base = node.module or ""
    else:
        parts = ["starburst", *module.removesuffix(".py").split("/")]
        base = ".".join(parts[: len(parts) - node.level] + ([node.module] if node.module else []))
    return [base, *(f"{base}.{alias.name}" for alias in node.names)]


def test_no_module_outside_backends_compares_a_backend_name() -> None:
    """A backend's traits are asked of its ``Backend`` object, never derived from its name."""
    names = set(BUILT_IN)
    found = []
    for module, tree in _modules():
        if module.startswith("backends/") or module == "cli.py":
            continue
        for node in ast.walk(tree):
            if isinstance(node, ast.Compare):
                sides = [node.left, *node.comparators]
                for side in sides:
                    values = (
                        side.elts if isinstance(side, ast.Tuple | ast.List | ast.Set) else [side]
                    )
                    if any(isinstance(v, ast.Constant) and v.value in names for v in values):
                        found.append(f"{module}:{node.lineno}: {ast.unparse(node)}")
    assert not found, "backend names compared outside backends/:\n" + "\n".join(found)


def test_the_worker_does_not_import_backends() -> None:
    """Only the worker program's entry point (``worker/__main__.py``) wires in the registry;
    the worker's modules are handed it, so ``backends/`` (which forks workers) and
    ``worker/`` form no import cycle."""
    found = []
    for module, tree in _modules():
        if not module.startswith("worker/") or module == "worker/__main__.py":
            continue
        for node in _runtime_nodes(tree):
            for name in _imported(module, node):
                if name == "starburst.backends" or name.startswith("starburst.backends."):
                    found.append(f"{module}:{node.lineno}: {ast.unparse(node)}")  # type: ignore[attr-defined]
    assert not found, "worker/ imports backends/:\n" + "\n".join(found)
