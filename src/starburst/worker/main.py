"""Start a worker: one process per vCPU, each running the claim-execute loop."""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import socket
import sys
import threading
import time
from typing import Any

from ..engine.control import Control
from ..engine.keys import SessionKeys
from ..store import NotFound, open_store
from . import spot_notices as spot
from .loop import FindBackend, SessionClosed, WorkerLoop


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
    parser.add_argument(
        "--spot-notices",
        action="store_true",
        help="watch the instance metadata for a Spot interruption notice (on EC2)",
    )
    return parser.parse_args(argv)


def run_slot(
    store_url: str, session_id: str, worker_id: str, index: int | None, process: int,
    processes: int, find_backend: FindBackend,
) -> str:  # fmt: skip
    """Run one process's loop until it stops; return why it stopped."""
    store = open_store(store_url)
    try:
        loop = WorkerLoop(store, session_id, worker_id, find_backend, process, processes, index)
    except SessionClosed as closed:
        return str(closed)
    return loop.run()


def _own_id(attempts: int = 5) -> str:
    """The ECS task id when running as a task (from the task metadata endpoint), else host-pid.

    The endpoint is asked a few times; if it never answers, the worker still works under its
    host-pid id (its leases then run out instead of being ended by the client).
    """
    import urllib.request  # only on ECS: a local worker forked from the client skips it

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
    """Why this worker cannot run the session's functions (its Python or cloudpickle differ
    from the client's, as the control record tells), or None when they agree."""
    try:
        control = Control.load(open_store(store_url), SessionKeys(session_id))
    except NotFound:
        return None  # the loop reports a closed session
    return control.session.version_problem() if control.session else None


def main(find_backend: FindBackend, argv: list[str] | None = None) -> int:
    """Run a worker until its work is drained, its deadline passes, or it is stopped;
    ``find_backend`` gives its session's backend by name (the registry's ``backend_named``).

    A worker started this way (in a container, or spawned) first checks that it can load
    what the client pickles; one forked from the client (``work``) is the client's twin.
    """
    args = _parse(argv)
    _configure_logging()
    mismatch = version_mismatch(args.store, args.session)
    if mismatch:
        logging.getLogger("starburst.worker").error("cannot start: %s", mismatch)
        return 2
    return work(
        args.store, args.session, find_backend, args.worker_id, args.index, args.processes,
        spot_notices=args.spot_notices,
    )  # fmt: skip


def _configure_logging() -> None:
    logging.basicConfig(
        level=logging.INFO, stream=sys.stderr, format="%(asctime)s %(name)s %(message)s"
    )


def work(
    store_url: str, session_id: str, find_backend: FindBackend, worker_id: str | None = None,
    index: int | None = None, processes: int = 0, *, spot_notices: bool = False,
) -> int:  # fmt: skip
    """What ``main`` does once its arguments are read (a forked local worker starts here).
    With ``spot_notices``, a Spot interruption notice stops every process of the worker as
    ``SIGTERM`` does: each writes what it finished and gives the rest back."""
    _configure_logging()
    processes = processes or _vcpus()
    worker_id = worker_id or _own_id()
    logging.getLogger("starburst.worker").info(
        "worker %s of session %s starting %d processes", worker_id, session_id, processes
    )  # `starburst logs SESSION` finds a session's workers by this line
    children = []
    if processes > 1:
        import multiprocessing  # a one-process worker (most local ones) need not import it

        context = multiprocessing.get_context("fork" if sys.platform == "linux" else "spawn")
        for offset in range(1, processes):
            slot = (store_url, session_id, worker_id, index, offset, processes, find_backend)
            children.append(context.Process(target=run_slot, args=slot))
            children[-1].start()
    watching = threading.Event()
    if spot_notices:

        def stop_all(notice: dict[str, Any]) -> None:
            for child in children:
                child.terminate()  # SIGTERM
            os.kill(os.getpid(), signal.SIGTERM)

        spot.watch(spot.InstanceMetadata(spot.endpoint()), stop_all, watching)
    reason = run_slot(store_url, session_id, worker_id, index, 0, processes, find_backend)
    watching.set()
    for child in children:
        child.join()
    logging.getLogger("starburst.worker").info("worker %s stopped: %s", worker_id, reason)
    return 0
