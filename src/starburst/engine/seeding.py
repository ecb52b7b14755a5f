"""Per-item random state: the same seed and item index always give the same draws."""

from __future__ import annotations

import hashlib
import importlib.util
import random
import sys

_numpy_available: bool | None = None


def item_seed(seed: int, index: int) -> int:
    """A 64-bit seed for one item, derived from the run's seed and the item's input index."""
    digest = hashlib.blake2b(f"starburst:{seed}:{index}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little")


def seed_item(seed: int, index: int) -> None:
    """Seed ``random`` and NumPy's global generator for one item."""
    global _numpy_available
    value = item_seed(seed, index)
    random.seed(value)
    if _numpy_available is None:
        _numpy_available = "numpy" in sys.modules or importlib.util.find_spec("numpy") is not None
    if _numpy_available:
        import numpy

        numpy.random.seed(value % 2**32)
