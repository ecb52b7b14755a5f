"""Object stores: where the client and the workers meet (see ``base.Store``)."""

from __future__ import annotations

from urllib.parse import parse_qs, unquote, urlparse

from ..errors import ConfigurationError
from .base import NotFound, PreconditionFailed, Store
from .local import LocalStore

__all__ = ["LocalStore", "NotFound", "PreconditionFailed", "Store", "open_store"]


def open_store(url: str) -> Store:
    """Open the store a URL names: ``file:///path/to/dir`` or ``s3://bucket/prefix`` (with
    ``?owner=ACCOUNT`` when the bucket must belong to that account)."""
    parsed = urlparse(url)
    if parsed.scheme == "file":  # (a worker's: a removed store stays removed)
        return LocalStore(unquote(parsed.path), create=False)
    if parsed.scheme == "s3":
        from .s3 import S3Store

        owner = parse_qs(parsed.query).get("owner", [None])[0]
        return S3Store(parsed.netloc, parsed.path, owner=owner)
    raise ConfigurationError(f"unsupported store URL {url!r}: expected file:///path or s3://")
