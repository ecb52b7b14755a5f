"""Running a client script in a Python process of its own, as a user would."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path


def run_script(
    tmp_path: Path, source: str, *args: object, timeout: float = 180
) -> subprocess.CompletedProcess[str]:
    """Run ``source`` (dedented) as the script ``client.py`` with ``args``; return the finished
    process, its exit status and output (``subprocess.TimeoutExpired`` after ``timeout`` s).

    The process inherits this one's environment (the emulator's endpoint, the private
    config and data folders).
    """
    script = tmp_path / "client.py"
    script.write_text(textwrap.dedent(source))
    return subprocess.run(
        [sys.executable, str(script), *map(str, args)],
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def run_client(tmp_path: Path, source: str, *args: object) -> str:
    """Run ``source`` as ``run_script`` does; return its last output line. The script must
    exit cleanly."""
    done = run_script(tmp_path, source, *args)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip().splitlines()[-1]


def start_client(tmp_path: Path, source: str) -> subprocess.Popen[str]:
    """Start ``source`` (dedented) as a script that reads its standard input and writes its
    output to a pipe, for a test that talks to it, then kills it."""
    script = tmp_path / "client.py"
    script.write_text(textwrap.dedent(source))
    return subprocess.Popen(
        [sys.executable, str(script)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
