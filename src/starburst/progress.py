"""The progress display: a rich bar on a terminal, nothing otherwise."""

from __future__ import annotations

import sys
from typing import Any, Protocol


class Progress(Protocol):
    """What the front ends call while a run is collected."""

    def update(self, done: int, total: int | None, workers: str) -> None: ...

    def close(self) -> None: ...


class NoProgress:
    """Shows nothing."""

    def update(self, done: int, total: int | None, workers: str) -> None:
        pass

    def close(self) -> None:
        pass


class RichProgress:
    """Items done / total, workers running, elapsed time and ETA, on standard error."""

    def __init__(self, header: str) -> None:
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )
        from rich.progress import Progress as Bar

        self._console = Console(stderr=True)
        self._console.print(header, style="dim", highlight=False)
        self._bar = Bar(
            TextColumn("[bold]starburst"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("workers: {task.fields[workers]}"),
            TimeElapsedColumn(),
            TextColumn("eta"),
            TimeRemainingColumn(),
            console=self._console,
            transient=False,
        )
        self._task: Any = self._bar.add_task("run", total=None, workers="starting")
        self._bar.start()

    def update(self, done: int, total: int | None, workers: str) -> None:
        self._bar.update(self._task, completed=done, total=total, workers=workers)

    def close(self) -> None:
        self._bar.stop()


def make_progress(enabled: bool | None, header: str) -> Progress:
    """A rich display when ``enabled`` (``None``: when standard error is a terminal)."""
    if enabled is None:
        enabled = sys.stderr.isatty()
    return RichProgress(header) if enabled else NoProgress()
