"""What the worked examples share on the client side: their command line and summary line.

Nothing here runs on a worker (a worker cannot import this folder): each example keeps the
functions it sends to workers in its own script, which starburst ships by value.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from typing import Any

import starburst
from starburst.backends import backend_names


def make_parser(
    doc: str, size: int, size_help: str, workers: int | None = None
) -> argparse.ArgumentParser:
    """The examples' command line: ``--backend``, ``--workers`` and ``--size`` (whose default
    is small enough to run on the local backend in seconds); an example adds its own."""
    parser = argparse.ArgumentParser(description=doc.split("\n\n")[0])
    parser.add_argument(
        "--backend",
        default="local",
        choices=backend_names(),  # built-in, and any installed or registered
        help="where the workers run (default: local processes)",
    )
    parser.add_argument(
        "--workers",
        type=int,
        default=workers,
        help="how many workers (default: the backend's own choice)",
    )
    parser.add_argument("--size", type=int, default=size, help=f"{size_help} (default {size})")
    return parser


def cluster_options(args: argparse.Namespace) -> dict[str, Any]:
    """The keyword options of ``starburst.map`` (or ``Cluster``) that the command line set."""
    return {"backend": args.backend, "workers": args.workers, "progress": False}


def print_summary(**values: object) -> None:
    """Print the line a reader (and tests/test_examples.py) checks: ``summary: key=value ...``;
    floats to six significant digits."""
    shown = (f"{k}={v:.6g}" if isinstance(v, float) else f"{k}={v}" for k, v in values.items())
    print("summary:", " ".join(shown))


def run(main: Callable[[], None]) -> None:
    """Run an example's ``main``; a starburst error (``starburst setup`` not run yet, a cost
    cap reached) ends it with its message instead of a traceback."""
    try:
        main()
    except starburst.StarburstError as exc:
        sys.exit(f"error: {exc}")
