"""Worker start-up times this account has seen (launch to running), kept in the cache so
that ``estimate`` can model start-up from experience rather than a guess."""

from __future__ import annotations

import json
import os
import statistics
from pathlib import Path

from .prices import cache_dir


def _path(backend: str) -> Path:
    return cache_dir() / f"startup-{backend}.json"


#: Start-up assumed when this account has no history: AWS reports 20 to 40 s for a small
#: image pulled from the same region, about 70 s for a large one.
DEFAULT_SECONDS = 45.0
#: Samples kept per backend (the newest).
KEEP = 200


def record(backend: str, seconds: list[float]) -> None:
    """Add the start-up times of a session's workers to the history."""
    seconds = [s for s in seconds if s >= 0]
    if not seconds:
        return
    path = _path(backend)
    history = (_load(backend) + seconds)[-KEEP:]
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(history))
        os.replace(tmp, path)
    except OSError:  # no history is kept; estimates use the default
        pass


def _load(backend: str) -> list[float]:
    try:
        return [float(s) for s in json.loads(_path(backend).read_text())]
    except (OSError, ValueError, TypeError):
        return []


def typical(backend: str) -> tuple[float, str]:
    """The start-up to expect, and where that figure comes from."""
    history = _load(backend)
    if not history:
        return DEFAULT_SECONDS, f"a default of {DEFAULT_SECONDS:g} s (no {backend} runs seen yet)"
    median = statistics.median(history)
    return median, f"the median of {len(history)} {backend} workers this account started"
