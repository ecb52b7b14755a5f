"""What a backend is lives under ``backends/`` only: nothing else derives a backend's traits
from its name."""

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


def test_no_module_outside_backends_compares_a_backend_name() -> None:
    """A backend's traits are asked of its ``Backend`` object, never derived from its name."""
    names = set(BUILT_IN)
    found = []
    for module, tree in _modules():
        if module.startswith("backends/") or module == "cli.py":
            continue
        if module.startswith("emulator/"):
            continue  # (the AWS stand-in: there "ec2" is an AWS service's name)
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
