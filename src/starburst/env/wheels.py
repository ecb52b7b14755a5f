"""Install Linux wheels for the workers' platform into a folder, on any client, with uv.

uv resolves and installs for another platform and Python version (``--python-platform``,
``--python-version``) into a plain folder (``--target``): no Linux machine and no Docker
needed. The exact versions captured locally are pinned; Linux-only dependencies are added.
When the install fails, each requirement is tried alone, so that every package that cannot
reach a Linux worker is named.
"""

from __future__ import annotations

import subprocess
import tempfile
from pathlib import Path

from ..errors import EnvironmentProblemsError
from .capture import Distribution, Problem

#: The glibc of the official slim Python images (Debian bookworm).
GLIBC = "2_36"
ARCHITECTURES = {"x86_64": "amd64", "aarch64": "arm64"}


def uv_binary() -> str:
    """The uv executable shipped by the ``uv`` package."""
    import uv

    return uv.find_uv_bin()


def _install_command(target: Path, python: str, architecture: str) -> list[str]:
    return [
        uv_binary(), "pip", "install", "--quiet", "--target", str(target),
        "--python-platform", f"{architecture}-manylinux_{GLIBC}", "--python-version", python,
        "--link-mode", "copy", "--no-progress",
    ]  # fmt: skip


def install_linux_wheels(
    distributions: list[Distribution], target: Path, *, python: str, architecture: str
) -> None:
    """Install ``distributions`` (with their Linux dependencies) for Linux ``architecture``
    and Python ``python`` into ``target``; raise EnvironmentProblemsError naming failures."""
    if not distributions:
        target.mkdir(parents=True, exist_ok=True)
        return
    with tempfile.TemporaryDirectory(prefix="starburst-req-") as scratch:
        requirements = Path(scratch) / "requirements.txt"
        requirements.write_text("".join(f"{d.requirement}\n" for d in distributions))
        command = [*_install_command(target, python, architecture), "-r", str(requirements)]
        done = subprocess.run(command, capture_output=True, text=True, check=False)
        if done.returncode == 0:
            return
        problems = _find_problems(distributions, Path(scratch) / "probe", python, architecture)
        if not problems:
            problems = [Problem("the environment as a whole", _last_lines(done.stderr))]
        raise EnvironmentProblemsError(problems)


def _find_problems(
    distributions: list[Distribution], scratch: Path, python: str, architecture: str
) -> list[Problem]:
    """Try each requirement alone (without dependencies, without installing)."""
    problems = []
    base = [*_install_command(scratch, python, architecture), "--no-deps", "--dry-run"]
    for dist in distributions:
        done = subprocess.run(
            [*base, dist.requirement], capture_output=True, text=True, check=False
        )
        if done.returncode != 0:
            problems.append(
                Problem(
                    f"{dist.name} {dist.version}",
                    f"no Linux {architecture} wheel for Python {python} and no source "
                    "distribution that builds; upgrade it to a version that has one, or "
                    f"uninstall it if your function does not need it (uv said: "
                    f"{_last_lines(done.stderr)})",
                )
            )
    return problems


def _last_lines(text: str, lines: int = 3) -> str:
    return " ".join(line.strip() for line in text.strip().splitlines()[-lines:])
