"""The image tag: a hash of everything that decides what the worker image holds."""

from __future__ import annotations

import hashlib
import json

from .capture import Environment, file_digest

#: Bump when the way images are built changes, so that old images are not reused.
BUILD_FORMAT = 1


def image_tag(environment: Environment, *, architecture: str, base: str, compression: str) -> str:
    """``py<major><minor>-<hash>``: equal for equal environments, new for any change."""
    decided_by = {
        "format": BUILD_FORMAT,
        "python": environment.python,
        "architecture": architecture,
        "base": base,
        "compression": compression,
        "starburst": environment.starburst,
        "distributions": [
            [d.name, d.version, d.requirement, d.content_digest] for d in environment.distributions
        ],
        "code": file_digest(environment.code),
    }
    digest = hashlib.sha256(json.dumps(decided_by, sort_keys=True).encode()).hexdigest()
    return f"py{environment.python.replace('.', '')}-{digest[:32]}"
