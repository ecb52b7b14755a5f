"""Detached sessions on the local backend: what submitting, attaching, replacing a lost
worker and collecting cost. One command, not a test:

    .venv/bin/python bench/sessions.py

Prints: the time `Session.map` takes to return (inputs stored), the time from a SIGKILL of
a worker (no client attached) to its replacement's launch by the supervising worker, and the
time an `attach` + `collect` from a new process takes once the work is done, beside the same
work as a plain `starburst.map`.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ITEMS = 2_000
SECONDS_PER_ITEM = 0.002

_ATTACH = """
import sys, time
t0 = time.perf_counter()
import starburst
session = starburst.attach(sys.argv[1])
results = session.collect(wait=True, timeout=600)
took = time.perf_counter() - t0
assert results[0] == [x * x for x in range(int(sys.argv[2]))]
session.cleanup()
print(took)
"""


def work(x: int) -> int:
    time.sleep(SECONDS_PER_ITEM)
    return x * x


def _control(root: Path, session_id: str) -> dict:
    return json.loads((root / "store/sessions" / session_id / "control.json").read_text())


def main() -> None:
    root = Path(tempfile.mkdtemp(prefix="starburst-bench-sessions-"))
    os.environ["STARBURST_DATA_DIR"] = str(root)
    import starburst

    t0 = time.perf_counter()
    baseline = starburst.map(work, range(ITEMS), workers=2, progress=False)
    plain = time.perf_counter() - t0

    t0 = time.perf_counter()
    session = starburst.session(workers=2, ttl="1h")
    session.map(work, range(ITEMS))
    submitted = time.perf_counter() - t0
    session.detach()  # nobody is attached from here on
    procs = root / "store/sessions" / session.id / "procs"
    while not (procs / "w0000.json").exists() or not (procs / "w0000.json").read_text():
        time.sleep(0.01)
    killed = time.time()
    os.kill(json.loads((procs / "w0000.json").read_text())["pid"], signal.SIGKILL)
    while "w0002" not in _control(root, session.id)["ledger"]:
        time.sleep(0.01)
    replaced = _control(root, session.id)["ledger"]["w0002"]["launched"] - killed
    while starburst.attach(session.id).status().state != "done":
        time.sleep(0.05)
    attach_cmd = [sys.executable, "-c", _ATTACH, session.id, str(ITEMS)]
    collected = float(subprocess.run(attach_cmd, capture_output=True, text=True, check=True).stdout)
    assert baseline == [x * x for x in range(ITEMS)]
    print(f"{ITEMS:,} items of {SECONDS_PER_ITEM * 1e3:g} ms on 2 local workers")
    print(f"  starburst.map (for comparison)            {plain:7.3f} s")
    print(f"  Session.map returns (inputs stored)       {submitted:7.3f} s")
    print(f"  SIGKILL -> replacement launched           {replaced:7.3f} s  (no client attached)")
    print(f"  new process: import, attach, collect all  {collected:7.3f} s")


if __name__ == "__main__":
    main()
