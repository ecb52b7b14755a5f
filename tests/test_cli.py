"""The command line: help, version, and the demo (a real map on the local backend)."""

from __future__ import annotations

import subprocess
import sys

import starburst


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "starburst", *args],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def test_help_lists_the_commands() -> None:
    result = _run("--help")
    assert result.returncode == 0
    assert "demo" in result.stdout and "starburst.map" in result.stdout


def test_version_is_the_package_version() -> None:
    result = _run("--version")
    assert result.returncode == 0
    assert starburst.__version__ in result.stdout


def test_demo_runs_a_monte_carlo_map_and_summarises_it() -> None:
    result = _run("demo", "--paths", "2000", "--workers", "2")
    assert result.returncode == 0, result.stderr
    assert "Simulated 2,000 portfolio paths" in result.stdout
    assert "mean Sharpe ratio" in result.stdout
