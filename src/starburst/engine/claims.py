"""Leases on chunks: how workers share work through the store alone.

A worker owns a chunk by creating its claim with put-if-absent. It renews the lease while it
works. A claim whose lease has expired (its worker died or hung) is taken over with
put-if-match, attempt + 1; once the attempts run out, the chunk is recorded as lost instead.
A worker that stops on purpose (spot notice, shutdown) *releases* its claim: the next taker
keeps the attempt number, so such stops never count against ``retries``.
"""

from __future__ import annotations

import contextlib
import logging
import time
from dataclasses import dataclass

from ..errors import DamagedRecordError
from ..serialize import dumps
from ..store import NotFound, PreconditionFailed, Store
from .layout import RunKeys, decode_record, to_json

log = logging.getLogger("starburst.claims")


@dataclass(frozen=True)
class Claim:
    """The JSON record at ``claim/<chunk>``."""

    worker: str
    attempt: int
    expires: float
    released: bool = False

    def encode(self) -> bytes:
        return to_json(self)

    @classmethod
    def decode(cls, data: bytes) -> Claim:
        """The claim; one that cannot be read counts as expired (its chunk is taken over
        rather than stalled until the run's timeout), which the log says."""
        try:
            return decode_record(cls, data, "a claim record")
        except DamagedRecordError as exc:
            log.warning("%s; taking it as expired", exc)
            return cls(worker="(unreadable claim)", attempt=1, expires=0.0)

    def expired(self, now: float) -> bool:
        return self.released or self.expires <= now


@dataclass
class Lease:
    """A chunk a worker holds, with the ETag its next renewal must match."""

    keys: RunKeys
    chunk: int
    worker: str
    attempt: int
    etag: str


@dataclass(frozen=True)
class LostChunk:
    """The output recorded for a chunk whose workers died on every attempt."""

    attempts: int
    reason: str


def claim_fresh(store: Store, keys: RunKeys, chunk: int, worker: str, lease: float) -> Lease | None:
    """Claim a chunk nobody has claimed yet; ``None`` when another worker was first."""
    claim = Claim(worker=worker, attempt=0, expires=time.time() + lease)
    try:
        etag = store.put_if_absent(keys.claim(chunk), claim.encode())
    except PreconditionFailed:
        return None
    return Lease(keys, chunk, worker, 0, etag)


def renew(store: Store, held: Lease, lease: float) -> bool:
    """Extend a held lease; ``False`` when it was lost (taken over or released by the client)."""
    claim = Claim(worker=held.worker, attempt=held.attempt, expires=time.time() + lease)
    try:
        held.etag = store.put_if_match(held.keys.claim(held.chunk), claim.encode(), held.etag)
    except (PreconditionFailed, NotFound):
        return False
    return True


def release(store: Store, held: Lease) -> bool:
    """Give a held chunk back without using up an attempt."""
    claim = Claim(worker=held.worker, attempt=held.attempt, expires=0.0, released=True)
    try:
        store.put_if_match(held.keys.claim(held.chunk), claim.encode(), held.etag)
    except (PreconditionFailed, NotFound):
        return False
    return True


def take_over(
    store: Store, keys: RunKeys, chunk: int, worker: str, lease: float, max_attempts: int
) -> Lease | None:
    """Take a chunk whose lease has expired or was released.

    Returns the new lease, or ``None`` when the lease is still live, another worker won the
    race, or the attempts ran out (the chunk is then recorded as lost in ``out/``).
    """
    try:
        data, etag = store.get_versioned(keys.claim(chunk))
    except NotFound:
        return None
    old = Claim.decode(data)
    if not old.expired(time.time()):
        return None
    attempt = old.attempt if old.released else old.attempt + 1
    if attempt >= max_attempts:
        record_lost(store, keys, chunk, attempt, f"its worker was lost {attempt} times")
        return None
    claim = Claim(worker=worker, attempt=attempt, expires=time.time() + lease)
    try:
        new_etag = store.put_if_match(keys.claim(chunk), claim.encode(), etag)
    except (PreconditionFailed, NotFound):
        return None
    return Lease(keys, chunk, worker, attempt, new_etag)


def end_lease(store: Store, keys: RunKeys, chunk: int, stopped: dict[str, bool]) -> str | None:
    """End a chunk's lease if one of the ``stopped`` workers holds it; return that worker.

    ``stopped`` maps each stopped worker's id to whether its stop uses up an attempt
    (``False`` for a spot interruption or a stop we asked for). The chunk can then be taken
    over at once instead of when its lease would have run out.
    """
    try:
        data, etag = store.get_versioned(keys.claim(chunk))
    except NotFound:
        return None
    old = Claim.decode(data)
    holder = old.worker.rsplit(".", 1)[0]  # a worker's processes hold claims as <id>.<n>
    if old.released or holder not in stopped:
        return None
    claim = Claim(old.worker, old.attempt, expires=0.0, released=not stopped[holder])
    try:
        store.put_if_match(keys.claim(chunk), claim.encode(), etag)
    except (PreconditionFailed, NotFound):
        return None
    return holder


def record_lost(store: Store, keys: RunKeys, chunk: int, attempts: int, reason: str) -> None:
    """Write the lost-chunk record as the chunk's output, unless an output already exists
    (then with the failure marker that status counts)."""
    with contextlib.suppress(PreconditionFailed):
        store.put_if_absent(keys.output(chunk), dumps(LostChunk(attempts, reason), compress=False))
        store.put(keys.failure_marker(chunk), to_json({"lost": True, "reason": reason}))
