"""The child's side of a forked local worker: become a worker, never return.

Shared by the two places a local worker is forked from: the client itself, and the launcher
(``launcher.py``), a fresh interpreter that forks workers on the client's behalf.
"""

from __future__ import annotations

import contextlib
import io
import os
import signal
import sys
import traceback
from typing import NoReturn

from ...worker.main import work  # imported here, so that forked workers need not import it
from ..registry import backend_named


def become_worker(args: dict[str, str | int], log_fd: int) -> NoReturn:
    """In a freshly forked child: run the worker ``args`` describe, its output to ``log_fd``.

    The child first makes its own process session (so that a Ctrl-C in the terminal reaches
    only the client, and the client can signal the worker's whole group). It never returns
    into its parent's code and never runs its parent's exit handlers. (A stop that comes
    before the child has its own group misses it, and is followed by a kill of the group
    1.5 s later.)
    """
    code = 1
    try:
        os.setsid()
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        devnull = os.open(os.devnull, os.O_RDONLY)
        os.dup2(devnull, 0)
        os.dup2(log_fd, 1)
        os.dup2(log_fd, 2)
        # Fresh stream objects: another thread of the parent may have held the old ones' locks.
        sys.stdout = io.TextIOWrapper(io.FileIO(1, "w", closefd=False), line_buffering=True)
        sys.stderr = io.TextIOWrapper(io.FileIO(2, "w", closefd=False), line_buffering=True)
        code = work(
            str(args["store"]), str(args["session"]), backend_named, str(args["worker-id"]),
            int(args["index"]), int(args["processes"]),
        )  # fmt: skip
    except BaseException:
        with contextlib.suppress(Exception):
            traceback.print_exc()
    finally:
        with contextlib.suppress(Exception):
            sys.stdout.flush()
            sys.stderr.flush()
        os._exit(code)
