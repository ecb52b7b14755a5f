"""Start a worker: one process per vCPU, each running the claim-execute loop."""

from __future__ import annotations

import argparse
import json
import logging
import multiprocessing
import os
import socket
import sys
import time
import urllib.request

from ..engine.manifest import runtime_versions
from ..engine.session import SessionRecord
from ..store import NotFound, open_store
from .loop import WorkerLoop


def _parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m starburst.worker", description=__doc__)
    parser.add_argument("--store", required=True, help="URL of the session's store")
    parser.add_argument("--session", required=True, help="the session id")
    parser.add_argument(
        "--worker-id", default=None, help="this worker's id (default: its ECS task id)"
    )
    parser.add_argument(
        "--index",
        type=int,
        default=None,
        help="this worker's stripe in its session (default: the control record's roster)",
    )
    parser.add_argument(
        "--processes", type=int, default=0, help="processes to run (default: one per vCPU)"
    )
    return parser.parse_args(argv)


def run_slot(
    store_url: str, session_id: str, worker_id: str, index: int | None, process: int,
    processes: int,
) -> str:  # fmt: skip
    """Run one process's loop until it stops; return why it stopped."""
    store = open_store(store_url)
    return WorkerLoop(store, session_id, worker_id, process, processes, index).run()


def _own_id(attempts: int = 5) -> str:
    """The ECS task id when running as a task (from the task metadata endpoint), else host-pid.

    The endpoint is asked a few times; if it never answers, the worker still works under its
    host-pid id (its leases then run out instead of being ended by the client).
    """
    endpoint = os.environ.get("ECS_CONTAINER_METADATA_URI_V4")
    for attempt in range(attempts if endpoint else 0):
        try:
            with urllib.request.urlopen(f"{endpoint}/task", timeout=10) as answer:
                return str(json.load(answer)["TaskARN"]).rsplit("/", 1)[1]
        except (OSError, ValueError, KeyError) as exc:
            logging.getLogger("starburst.worker").warning("task metadata: %s", exc)
            time.sleep(min(2**attempt, 10))
    return f"{socket.gethostname()}-{os.getpid()}"


def _vcpus() -> int:
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def version_mismatch(store_url: str, session_id: str) -> str | None:
    """Why this worker cannot run the session's functions (Python or cloudpickle differ from
    the client's), or None when they agree."""
    try:
        client = SessionRecord.load(open_store(store_url), session_id).versions
    except NotFound:
        return None  # the loop reports a missing session
    mine = runtime_versions()
    if (
        client["python"].split(".")[:2] == mine["python"].split(".")[:2]
        and client.get("cloudpickle") == mine["cloudpickle"]
    ):
        return None
    return (
        f"this worker has Python {mine['python']} and cloudpickle {mine['cloudpickle']}, but "
        f"the client of session {session_id} has Python {client['python']} and cloudpickle "
        f"{client.get('cloudpickle')}: functions pickled by one cannot be trusted to load on "
        "the other. Use an image with the client's versions (unset `image` so that starburst "
        "builds one, or `starburst env build --force`)"
    )


def main(argv: list[str] | None = None) -> int:
    """Run a worker until its work is drained, its deadline passes, or it is stopped."""
    args = _parse(argv)
    logging.basicConfig(
        level=logging.INFO, stream=sys.stderr, format="%(asctime)s %(name)s %(message)s"
    )
    mismatch = version_mismatch(args.store, args.session)
    if mismatch:
        logging.getLogger("starburst.worker").error("cannot start: %s", mismatch)
        return 2
    processes = args.processes or _vcpus()
    worker_id = args.worker_id or _own_id()
    logging.getLogger("starburst.worker").info(
        "worker %s of session %s starting %d processes", worker_id, args.session, processes
    )  # `starburst logs SESSION` finds a session's workers by this line
    context = multiprocessing.get_context("fork" if sys.platform == "linux" else "spawn")
    children = [
        context.Process(
            target=run_slot,
            args=(args.store, args.session, worker_id, args.index, offset, processes),
        )
        for offset in range(1, processes)
    ]
    for child in children:
        child.start()
    reason = run_slot(args.store, args.session, worker_id, args.index, 0, processes)
    for child in children:
        child.join()
    logging.getLogger("starburst.worker").info("worker %s stopped: %s", worker_id, reason)
    return 0
