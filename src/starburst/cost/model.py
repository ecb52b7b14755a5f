"""What this account has seen, and the wall-time model built on it: worker start-up times
(launch to running) of past sessions, and the predicted wall time of a run. Kept as small
JSON files in the cache folder (the time per item ``estimate`` measured is kept there too,
by ``engine/item_times.py``, the one memory of item times)."""

from __future__ import annotations

import json
import math
import os
import statistics
from pathlib import Path
from typing import Any

#: Start-up assumed when this account has no history: AWS reports 20 to 40 s for a small
#: image pulled from the same region, about 70 s for a large one.
DEFAULT_STARTUP_SECONDS = 45.0
#: Seconds to upload the inputs and collect the results, beyond the work itself.
TRANSFER_SECONDS = 5.0
#: Start-up samples kept per backend (the newest).
KEEP = 200


def cache_dir() -> Path:
    """Where starburst caches what it fetched: ``STARBURST_CACHE_DIR``, else ``cache/`` in
    ``STARBURST_CONFIG_DIR`` when that is set, else the user's cache folder."""
    from ..settings import resolve

    chosen = resolve("cache_dir")
    if chosen is not None:
        return Path(chosen)
    config = os.environ.get("STARBURST_CONFIG_DIR")
    if config:
        return Path(config) / "cache"
    import platformdirs

    return Path(platformdirs.user_cache_dir("starburst", appauthor=False))


def read_json(path: Path) -> Any:
    """A JSON file's contents, or ``None`` when it is missing or unreadable."""
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def write_json(path: Path, body: Any) -> None:
    """Replace a cache file atomically; a read-only cache folder only costs the cache."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(body))
        os.replace(tmp, path)
    except OSError:
        pass


def _startup_path(backend: str) -> Path:
    return cache_dir() / f"startup-{backend}.json"


def _startups(backend: str) -> list[float]:
    found = read_json(_startup_path(backend))
    return [float(s) for s in found] if isinstance(found, list) else []


def record_startups(backend: str, seconds: list[float]) -> None:
    """Add the start-up times of a session's workers to the history."""
    seconds = [s for s in seconds if s >= 0]
    if seconds:
        write_json(_startup_path(backend), (_startups(backend) + seconds)[-KEEP:])


def typical_startup(backend: str) -> tuple[float, str]:
    """The start-up to expect, and where that figure comes from."""
    history = _startups(backend)
    if not history:
        text = f"a default of {DEFAULT_STARTUP_SECONDS:g} s (no {backend} workers seen yet)"
        return DEFAULT_STARTUP_SECONDS, text
    median = statistics.median(history)
    return median, f"the median of {len(history)} {backend} workers this account started"


def run_seconds(startup: float, n_items: int, per_item: float, slots: int) -> float:
    """Predicted wall time of a run: start-up, the items ``slots`` at a time, transfers."""
    return startup + math.ceil(n_items / slots) * per_item + TRANSFER_SECONDS
