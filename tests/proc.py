"""Looking at processes through /proc, for tests that check nothing outlives them."""

from __future__ import annotations

import os
from pathlib import Path


def alive(pid: int) -> bool:
    """Whether ``pid`` is a live process (a zombie waiting to be reaped does not count)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def _processes() -> list[tuple[int, int, str, bytes]]:
    """(pid, parent pid, state, command line) of every process."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        found.append((int(entry.name), int(stat[1]), stat[0], cmdline))
    return found


def launcher_of(pid: int) -> int | None:
    """The pid of the launcher process ``pid`` started, if it has one."""
    for child, parent, state, cmdline in _processes():
        if parent == pid and state != "Z" and b"starburst.backends.local.launcher" in cmdline:
            return child
    return None


def worker_children() -> list[int]:
    """Pids of live worker processes started by this test process: spawned ones
    (``starburst.worker``), and those its launcher forked."""
    me = os.getpid()
    launcher = launcher_of(me)
    return [
        pid
        for pid, parent, state, cmdline in _processes()
        if state != "Z"
        and ((parent == me and b"starburst.worker" in cmdline) or parent == launcher)
    ]
