"""What the local environment holds: Python version, exact distributions, local code.

Distributions are read from their metadata on the import path. Each becomes a requirement a
Linux installer can satisfy: ``name==version`` from the package index, the local archive or
folder it was installed from, or its VCS commit. Editable installs and modules outside
site-packages (the working directory, ``PYTHONPATH``) travel as source, and so does starburst
itself. What cannot reach a worker is collected as a :class:`Problem`, never skipped silently.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import sys
import sysconfig
import urllib.parse
import urllib.request
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

from .._version import __version__

#: Installed only to build images on the client: no worker needs them.
CLIENT_ONLY = frozenset({"pip", "uv", "starburst"})
_SKIPPED_NAMES = frozenset({"__pycache__", "setup.py", "conftest.py"})


def normalize(name: str) -> str:
    """A distribution name as the package index compares it (PEP 503)."""
    return re.sub(r"[-_.]+", "-", name).lower()


@dataclass(frozen=True)
class Distribution:
    """An installed distribution and the requirement that installs it on a worker."""

    name: str
    version: str
    requirement: str  # ``name==version``, a local path, or ``name @ vcs+url@commit``
    content_digest: str = ""  # of a local archive or folder: its contents decide the image
    size: int = field(default=0, compare=False)  # bytes installed locally


@dataclass(frozen=True)
class Problem:
    """Something that cannot reach a Linux worker, and what to do about it."""

    name: str
    fix: str

    def __str__(self) -> str:
        return f"{self.name}: {self.fix}"


@dataclass
class Environment:
    """A snapshot of the local environment, as the worker image must reproduce it."""

    python: str  # major.minor
    distributions: list[Distribution]
    code: list[tuple[str, Path]]  # path below the code folder -> local file
    problems: list[Problem] = field(default_factory=list)
    starburst: str = __version__

    @property
    def code_size(self) -> int:
        """Bytes of local code that travel with the image."""
        return sum(path.stat().st_size for _, path in self.code)


def capture(paths: Sequence[str] | None = None) -> Environment:
    """Read the environment that ``paths`` (default: the working directory and ``sys.path``)
    make importable."""
    chosen = [os.getcwd(), *sys.path] if paths is None else list(paths)
    folders = _unique_folders(chosen)
    distributions, problems, editable_roots = _distributions(folders)
    code_roots = [f for f in folders if _is_code_root(f)] + editable_roots
    code = _code_files(code_roots)
    python = f"{sys.version_info.major}.{sys.version_info.minor}"
    return Environment(python, distributions, code, problems)


def _unique_folders(paths: Iterable[str]) -> list[Path]:
    seen: list[Path] = []
    for entry in paths:
        folder = Path(entry or os.getcwd()).resolve()
        if folder.is_dir() and folder not in seen:
            seen.append(folder)
    return seen


def _interpreter_folders() -> list[Path]:
    names = ("stdlib", "platstdlib", "purelib", "platlib", "scripts")
    found = {Path(sysconfig.get_paths()[n]).resolve() for n in names}
    found.update(Path(p).resolve() for p in (sys.prefix, sys.base_prefix, sys.exec_prefix))
    return sorted(found)


def _is_code_root(folder: Path) -> bool:
    """A folder of the user's own code: not the interpreter's, not a site-packages."""
    if folder.name in ("site-packages", "dist-packages") or folder.suffix == ".zip":
        return False
    return not any(folder.is_relative_to(p) for p in _interpreter_folders())


def _distributions(
    folders: list[Path],
) -> tuple[list[Distribution], list[Problem], list[Path]]:
    """Distributions on ``folders`` (first of each name wins), problems, editable sources."""
    found: dict[str, Distribution] = {}
    problems: list[Problem] = []
    editable_roots: list[Path] = []
    for dist in metadata.distributions(path=[str(f) for f in folders]):
        name = normalize(dist.metadata["Name"] or "")
        if not name or name in found or name in CLIENT_ONLY:
            continue
        direct = _direct_url(dist)
        version = dist.version
        if direct.get("dir_info", {}).get("editable"):
            root = _local_path(direct["url"])
            editable_roots += [p for p in (root / "src", root) if p.is_dir()][:1]
            found[name] = Distribution(name, version, "")  # travels as source code
            continue
        url = direct.get("url", "")
        if url.startswith("file:"):
            path = _local_path(url)
            if not path.exists():
                problems.append(
                    Problem(
                        f"{name} {version}",
                        f"it was installed from {path}, which no longer exists: reinstall it "
                        f"from an index or an existing path (pip install {name}=={version})",
                    )
                )
                continue
            found[name] = Distribution(
                name, version, str(path), _content_digest(path), _installed_size(dist)
            )
        elif "vcs_info" in direct:
            vcs = direct["vcs_info"]
            requirement = f"{name} @ {vcs['vcs']}+{url}@{vcs.get('commit_id', '')}"
            found[name] = Distribution(name, version, requirement, size=_installed_size(dist))
        else:
            found[name] = Distribution(
                name, version, f"{name}=={version}", size=_installed_size(dist)
            )
    listed = sorted(found.values(), key=lambda d: d.name)
    return [d for d in listed if d.requirement], problems, editable_roots


def _installed_size(dist: metadata.Distribution) -> int:
    return sum(f.size or 0 for f in dist.files or [])


def _direct_url(dist: metadata.Distribution) -> dict[str, Any]:
    """Where ``dist`` was installed from (its PEP 610 ``direct_url.json``; empty if none)."""
    text = dist.read_text("direct_url.json")
    try:
        found = json.loads(text) if text else {}
    except ValueError:
        return {}
    return found if isinstance(found, dict) else {}


def _local_path(url: str) -> Path:
    return Path(urllib.request.url2pathname(urllib.parse.urlsplit(url).path))


def _content_digest(path: Path) -> str:
    files = [(f.relative_to(path).as_posix(), f) for f in _walk(path)] if path.is_dir() else []
    return file_digest(files or [(path.name, path)])


def file_digest(files: Iterable[tuple[str, Path]]) -> str:
    """One digest of named files' names and contents."""
    hasher = hashlib.sha256()
    for name, path in sorted(files):
        hasher.update(name.encode() + b"\0")
        hasher.update(hashlib.sha256(path.read_bytes()).digest())
    return hasher.hexdigest()


def _walk(folder: Path) -> list[Path]:
    files = []
    for root, dirs, names in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if d not in _SKIPPED_NAMES and not d.startswith("."))
        files += [Path(root) / n for n in sorted(names) if not n.endswith((".pyc", ".pyo"))]
    return files


def _code_files(roots: list[Path]) -> list[tuple[str, Path]]:
    """Top-level modules and packages of ``roots`` (the first root to name one wins), and
    starburst's own package."""
    import starburst

    chosen: dict[str, Path] = {"starburst": Path(starburst.__file__).parent}
    for root in roots:
        for entry in sorted(root.iterdir()):
            name = entry.name
            if name in chosen or name in _SKIPPED_NAMES or name.startswith("."):
                continue
            is_module = entry.is_file() and entry.suffix == ".py"
            if is_module or (entry.is_dir() and (entry / "__init__.py").is_file()):
                chosen[name] = entry
    files: list[tuple[str, Path]] = []
    for top, path in chosen.items():
        if path.is_file():
            files.append((top, path))
        else:
            files += [(f"{top}/{f.relative_to(path).as_posix()}", f) for f in _walk(path)]
    return sorted(files)
