"""Start a worker: one process per vCPU, each running the claim-execute loop."""

from __future__ import annotations

import argparse
import logging
import multiprocessing
import os
import sys

from ..store import open_store
from .loop import WorkerLoop


def _parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m starburst.worker", description=__doc__)
    parser.add_argument("--store", required=True, help="URL of the session's store")
    parser.add_argument("--session", required=True, help="the session id")
    parser.add_argument("--worker-id", required=True, help="this worker's id")
    parser.add_argument("--index", type=int, default=0, help="this worker's number in its session")
    parser.add_argument(
        "--processes", type=int, default=0, help="processes to run (default: one per vCPU)"
    )
    return parser.parse_args(argv)


def run_slot(store_url: str, session_id: str, worker_id: str, slot: int, process: int) -> str:
    """Run one process's loop until it stops; return why it stopped."""
    store = open_store(store_url)
    return WorkerLoop(store, session_id, f"{worker_id}.{process}", slot=slot).run()


def _vcpus() -> int:
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def main(argv: list[str] | None = None) -> int:
    """Run a worker until its work is drained, its deadline passes, or it is stopped."""
    args = _parse(argv)
    logging.basicConfig(
        level=logging.INFO, stream=sys.stderr, format="%(asctime)s %(name)s %(message)s"
    )
    processes = args.processes or _vcpus()
    first_slot = args.index * processes
    context = multiprocessing.get_context("fork" if sys.platform == "linux" else "spawn")
    children = [
        context.Process(
            target=run_slot,
            args=(args.store, args.session, args.worker_id, first_slot + offset, offset),
        )
        for offset in range(1, processes)
    ]
    for child in children:
        child.start()
    reason = run_slot(args.store, args.session, args.worker_id, first_slot, 0)
    for child in children:
        child.join()
    logging.getLogger("starburst.worker").info("worker %s stopped: %s", args.worker_id, reason)
    return 0
