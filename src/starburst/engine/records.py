"""How starburst's records (session, control, run, claim, heartbeat, ...) are written and
read: JSON that a person or ``jq`` can read, with a format number so that an older starburst
refuses a newer record and a newer one reads an older record."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from typing import Any, TypeVar

from .._version import __version__
from ..errors import DamagedRecordError, NewerRecordError

#: The format of the records starburst stores (session, control, run, claim, ...). A reader
#: refuses a record of a newer format and ignores keys it does not know, which a newer
#: starburst of the same format may add. Records from before formats were written are 1.
RECORD_FORMAT = 1

T = TypeVar("T")


def to_json(record: Any) -> bytes:
    """A record (a dict, or a dataclass of plain fields and dataclasses) as the JSON bytes
    stored for people and tools to read: on one line, which ``json``'s fast encoder writes
    (``jq`` or ``python -m json.tool`` lay it out). A dataclass record carries ``format``."""
    if dataclasses.is_dataclass(record) and not isinstance(record, type):
        record = {"format": RECORD_FORMAT, **vars(record)}
    return json.dumps(
        record, sort_keys=True, separators=(", ", ": "), default=_dataclass_fields
    ).encode()


def record_of(kind: Callable[..., T], raw: Any, what: str) -> T:
    """The dataclass ``kind`` from a decoded record ``raw`` (``what`` names it in errors):
    keys it does not know are ignored; a newer format, or a record that is not an object or
    lacks a field, is refused."""
    if not isinstance(raw, dict):
        raise DamagedRecordError(f"{what} is damaged: it holds {type(raw).__name__}, not a record")
    version = raw.get("format", 1)
    if not isinstance(version, int) or version > RECORD_FORMAT:
        raise NewerRecordError(
            f"{what} was written by a newer starburst (record format {version!r}; this is "
            f"{__version__}, format {RECORD_FORMAT}): upgrade (`pip install -U starburst`)"
        )
    known = {f.name for f in dataclasses.fields(kind)}  # type: ignore[arg-type]
    try:
        return kind(**{name: value for name, value in raw.items() if name in known})
    except TypeError as exc:
        raise DamagedRecordError(f"{what} is damaged: {exc}") from None


def decode_record(kind: Callable[..., T], data: bytes, what: str) -> T:
    """``record_of`` the JSON ``data``; garbage is a ``DamagedRecordError``."""
    return record_of(kind, from_json(data, what), what)


def _dataclass_fields(value: Any) -> dict[str, Any]:
    """A dataclass's fields, for ``json`` to encode in turn (``asdict`` without its copies)."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return vars(value)
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def from_json(data: bytes, what: str = "a record") -> Any:
    """Inverse of ``to_json``; data that is not JSON is a ``DamagedRecordError``."""
    try:
        return json.loads(data)
    except ValueError as exc:  # not JSON, or not text
        raise DamagedRecordError(f"{what} is damaged: it is not JSON ({exc})") from None
