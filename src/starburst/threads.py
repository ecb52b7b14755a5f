"""Threads started without waiting for them: ``threading.Thread.start`` blocks until the new
thread runs, which costs milliseconds when every CPU is busy (as they are while workers
start). Used where starburst starts a thread on a hot path.
"""

from __future__ import annotations

import _thread
import threading
import traceback
from collections.abc import Callable


class BareThread:
    """A thread running ``target()``; ``join`` waits for it to finish."""

    def __init__(self, target: Callable[[], None]) -> None:
        self._target = target
        self._done = threading.Event()
        self.ident = _thread.start_new_thread(self._run, ())

    def _run(self) -> None:
        try:
            self._target()
        except Exception:  # as threading does: report, and let the process go on
            traceback.print_exc()
        finally:
            self._done.set()

    def join(self, timeout: float | None = None) -> bool:
        """Wait until the thread has finished (at most ``timeout`` seconds); say if it has."""
        return self._done.wait(timeout)

    def is_current(self) -> bool:
        """Whether this is the thread calling."""
        return threading.get_ident() == self.ident
