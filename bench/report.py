"""How long a run's report takes to make, and how large its page is, for a 10,000-item run
on 100 workers (the issue's bar: under 2 s, under 5 MB).

```
.venv/bin/python bench/report.py            # prints read, render and total seconds, and MB
```

It writes into a local store the records such a run leaves (the session and control
records with a ledger of 100 Spot workers, five of them interrupted and replaced, each with
the platform's steps of its start (so each lane has four phases), a heartbeat per worker,
the manifest, and 1,000 chunk outputs of 10 items each, every item timed alone: the most
blocks a record can carry), then times ``read_run`` and the HTML page.
A benchmark, not a test: nothing here is named ``test_*``.
"""

from __future__ import annotations

import random
import tempfile
import time
from pathlib import Path

from starburst.engine.control import Control
from starburst.engine.keys import SessionKeys
from starburst.engine.manifest import RunManifest
from starburst.engine.outcome import ChunkOutput, ItemFailure
from starburst.engine.records import to_json
from starburst.engine.session_record import SessionRecord, Timings
from starburst.reporting.html import render
from starburst.reporting.record import read_run
from starburst.serialize import dumps
from starburst.store import LocalStore

WORKERS, ITEMS, CHUNK = 100, 10_000, 10
SESSION = "sb-20261206-120000-bench0"


def write_run(store: LocalStore) -> None:
    """The records of a finished 10,000-item run on 100 workers (5 interrupted)."""
    rng = random.Random(0)
    keys = SessionKeys(SESSION)
    t0 = time.time() - 600
    timings = Timings(90, 30, 0.1, 5, 60, 300, None, 90, 3.0)
    session = SessionRecord(
        SESSION, "fargate", WORKERS, 1, 2048, timings, created=t0, attached=False,
        spot=True, hourly={"on-demand": 0.05, "spot": 0.015}, launch={"image": "repo:tag1"},
    )  # fmt: skip
    store.put(keys.session, session.encode())
    workers = [f"task-{n:03d}" for n in range(WORKERS + 5)]
    ledger = {}
    for n, worker in enumerate(workers):
        launched = t0 + (0 if n < WORKERS else 200)
        pulled = launched + rng.uniform(3, 10)
        steps = {"created": launched + 0.3, "pull_started": pulled,
                 "pull_stopped": pulled + rng.uniform(5, 15)}  # fmt: skip
        steps["started"] = steps["pull_stopped"] + 1.0
        entry = {"launched": launched, "stopped": t0 + 500, "spot": True, "steps": steps}
        if n < 5:
            entry.update(stopped=t0 + 200, fault="interrupted", reason="SpotInterruption")
        ledger[worker] = entry
        beat = {
            "worker": f"{worker}.0", "started": steps["started"] + rng.uniform(1, 3),
            "heartbeat": entry["stopped"], "state": "exited", "stop_reason": "idle",
        }  # fmt: skip
        store.put(keys.worker(f"{worker}.0"), to_json(beat))
    store.put(keys.control, Control(session=session, ledger=ledger).encode())
    run_keys = keys.run("r00000")
    manifest = RunManifest("r00000", "single", 0, state="sealed", n_chunks=ITEMS // CHUNK,
                           n_items=ITEMS, created=t0 + 10)  # fmt: skip
    store.put(keys.manifest("r00000"), manifest.encode())
    clock = {worker: t0 + 80.0 for worker in workers[5:]}
    for chunk in range(ITEMS // CHUNK):
        worker = rng.choice(workers[5:])
        seconds = [rng.lognormvariate(0, 0.5) for _ in range(CHUNK)]
        clock[worker] += sum(seconds)
        start = chunk * CHUNK
        failures = {}
        if chunk % 97 == 0:
            where = f"item {start} (input: {start})"
            failures[start] = ItemFailure(
                start, "ValueError", "bad input", "Traceback ...\n", where, f"{worker}.0"
            )
        output = ChunkOutput(
            start, list(range(start, start + CHUNK)), failures, f"{worker}.0", 0, sum(seconds),
            0, clock[worker], [(1, s) for s in seconds],
        )  # fmt: skip
        store.put(run_keys.output(chunk), dumps(output, compress=False, to_client=True))


def main() -> None:
    with tempfile.TemporaryDirectory() as folder:
        store = LocalStore(Path(folder) / "store")
        write_run(store)
        began = time.perf_counter()
        record = read_run(store, SESSION)
        read = time.perf_counter() - began
        page = render(record)
        total = time.perf_counter() - began
        target = Path(folder) / "run.html"
        target.write_text(page, encoding="utf-8")
        size = target.stat().st_size / 1e6
    print(
        f"{ITEMS:,} items, {len(record['workers'])} workers, {len(record['chunks'])} chunks: "
        f"read {read:.2f} s, page {total - read:.2f} s, total {total:.2f} s; HTML {size:.2f} MB"
    )


if __name__ == "__main__":
    main()
