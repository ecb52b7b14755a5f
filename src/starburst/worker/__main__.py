"""Entry point of ``python -m starburst.worker``."""

from .main import main

if __name__ == "__main__":
    raise SystemExit(main())
