"""Wire-level helpers shared by the layer and the services it answers itself."""

from __future__ import annotations

import base64
import json
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any


class ApiError(Exception):
    """An AWS error answer: ``code`` (``__type``), HTTP ``status``, ``message``."""

    def __init__(self, code: str, message: str, status: int = 400) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.status = status


@dataclass
class Call:
    """One API call as the layer sees it."""

    service: str | None  # the SigV4 signing name: ecs, s3, logs, servicequotas, pricing...
    operation: str  # API name: RunTask, PutObject... ("" if unknown)
    protocol: str  # json, rest-xml, query, ec2, other
    region: str
    account_id: str
    params: dict[str, Any] = field(default_factory=dict)  # JSON body (json protocol only)


def epoch(value: datetime) -> float:
    """A timestamp as the JSON protocol sends it."""
    return value.timestamp()


def request_id() -> str:
    return str(uuid.uuid4())


def encode_token(offset: int) -> str:
    return base64.urlsafe_b64encode(json.dumps({"offset": offset}).encode()).decode()


def decode_token(token: str | None, code: str = "InvalidNextTokenException") -> int:
    """The offset in a NextToken made by :func:`encode_token` (0 without a token)."""
    if not token:
        return 0
    try:
        return int(json.loads(base64.urlsafe_b64decode(token.encode()))["offset"])
    except (ValueError, KeyError, TypeError) as exc:
        raise ApiError(code, "The pagination token is invalid.") from exc


def page(
    items: list[Any], params: dict[str, Any], default: int = 100
) -> tuple[list[Any], str | None]:
    """Slice ``items`` by ``NextToken``/``MaxResults``; returns the page and the next token."""
    start = decode_token(params.get("NextToken"))
    size = int(params.get("MaxResults") or default)
    if not 1 <= size <= 100:
        raise ApiError("IllegalArgumentException", "MaxResults must be between 1 and 100.")
    end = start + size
    return items[start:end], (encode_token(end) if end < len(items) else None)
