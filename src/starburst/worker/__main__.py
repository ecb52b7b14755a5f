"""Entry point of ``python -m starburst.worker``: the one place that hands the worker the
backend registry (the worker's own modules never import ``backends/``)."""

from ..backends.registry import backend_named
from .main import main

if __name__ == "__main__":
    raise SystemExit(main(backend_named))
