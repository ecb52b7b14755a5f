"""Leases on chunks: how workers share work through the store alone.

A worker owns a chunk by creating its claim with put-if-absent. It renews the lease while it
works, and writes the chunk's finished items as parts of its output as it goes (``out/``).
A claim whose lease has expired (its worker died or hung) is taken over with put-if-match,
from the chunk's first item no part holds. A worker that stops on purpose (spot notice,
shutdown) writes what it finished and *releases* its claim: such stops never count against
``retries``.

A worker's death is pinned on an item by running the rest of the chunk *in isolation*: the
next taker writes a part after every item, so when it dies too, the item it died on is the
first one no part holds. That item's deaths are counted in the claim (``at``, ``attempt``);
once they reach the run's attempts, the next taker records that item alone as lost and runs
the rest of the chunk afresh.
"""

from __future__ import annotations

import logging
import signal
import time
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from ..errors import DamagedRecordError
from ..store import NotFound, PreconditionFailed, Store
from .keys import RunKeys, chain_end
from .records import decode_record, to_json

if TYPE_CHECKING:
    from ..backends.base import WorkerInfo

log = logging.getLogger("starburst.claims")


@dataclass(frozen=True)
class Claim:
    """The JSON record at ``claim/<chunk>``."""

    worker: str
    attempt: int  # how many workers died running item ``at`` in isolation
    expires: float
    released: bool = False
    at: int = 0  # the first item (chunk offset) no part held when this holder took the chunk
    isolate: bool = False  # the holder writes a part after every item
    cause: str = ""  # how the last holder stopped, when the client or a supervisor saw it

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

    @property
    def holder(self) -> str:
        """The worker holding the claim (its processes hold claims as ``<id>.<n>``)."""
        return self.worker.rsplit(".", 1)[0]


@dataclass
class Lease:
    """A chunk a worker holds, with the ETag its next renewal must match.

    ``first`` is the chunk's first item no part holds yet (where this holder starts);
    ``isolate`` says to write a part after every item; ``lost`` (how its workers died) says
    that item ``first`` used up its attempts: record it as lost and go on after it.
    """

    keys: RunKeys
    chunk: int
    worker: str
    attempt: int
    etag: str
    first: int = 0
    isolate: bool = False
    lost: str | None = None
    out_of_memory: bool = False  # the workers that ``lost`` tells of ran out of memory

    def claim(self, expires: float, released: bool = False) -> Claim:
        return Claim(self.worker, self.attempt, expires, released, self.first, self.isolate)


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
    try:
        held.etag = store.put_if_match(
            held.keys.claim(held.chunk), held.claim(time.time() + lease).encode(), held.etag
        )
    except (PreconditionFailed, NotFound):
        return False
    return True


def release(store: Store, held: Lease) -> bool:
    """Give a held chunk back without using up an attempt (its finished items are written)."""
    try:
        store.put_if_match(held.keys.claim(held.chunk), held.claim(0.0, True).encode(), held.etag)
    except (PreconditionFailed, NotFound):
        return False
    return True


def restart(store: Store, held: Lease, first: int, lease: float) -> bool:
    """Go on from item ``first`` with fresh attempts, not in isolation (the item before it
    was recorded as lost); ``False`` when the lease was lost meanwhile."""
    held.first, held.attempt, held.isolate, held.lost = first, 0, False, None
    return renew(store, held, lease)


def take_over(
    store: Store, keys: RunKeys, chunk: int, worker: str, lease: float, max_attempts: int
) -> Lease | None:
    """Take a chunk whose lease has expired or was released, from its first item no part
    holds (the listing of its outputs says which).

    Returns the new lease, or ``None`` when the lease is still live, the chunk is done, or
    another worker won the race.
    """
    try:
        data, etag = store.get_versioned(keys.claim(chunk))
    except NotFound:
        return None
    old = Claim.decode(data)
    if not old.expired(time.time()):
        return None
    outputs = list(store.list(keys.output(chunk)))
    if keys.output(chunk) in outputs:
        return None  # done: its end is written
    first = chain_end(span for key in outputs if (span := RunKeys.part_span(key)))
    if old.released:  # a stop on purpose uses up no attempt
        attempt = old.attempt if first == old.at else 0
        isolate = old.isolate
    elif old.isolate:  # the holder wrote every item: it died on the first it did not write
        attempt = old.attempt + 1 if first == old.at else 1
        isolate = True
    else:  # it died on one of the items from ``first`` on: run them in isolation to find it
        attempt, isolate = 0, True
    claim = Claim(worker, attempt, time.time() + lease, at=first, isolate=isolate)
    try:
        new_etag = store.put_if_match(keys.claim(chunk), claim.encode(), etag)
    except (PreconditionFailed, NotFound):
        return None
    taken = Lease(keys, chunk, worker, attempt, new_etag, first, isolate)
    if attempt >= max_attempts:
        taken.lost = f"it stopped its worker {attempt} times ({old.cause or _EXPIRED})"
        taken.out_of_memory = OUT_OF_MEMORY in old.cause
    return taken


#: The cause of a holder's stop when nobody saw it stop.
_EXPIRED = "its last worker stopped renewing its lease"
#: What the cause of a worker killed for its memory use says.
OUT_OF_MEMORY = "ran out of memory"
#: How much of a dead worker's log its cause quotes.
_LOG_TAIL_CHARS = 200
#: Signal names by number.
_SIGNALS = {int(number): number.name for number in signal.Signals}


def stop_cause(info: WorkerInfo, memory_mib: int | None, log_tail: str) -> str:
    """How a worker stopped, for the claims it held: ``exit code 3``, ``killed by SIGSEGV``,
    or out of memory (with its memory and a larger one to ask for), and its log's end."""
    code = info.exit_code
    if info.fault == "out_of_memory":
        memory = "the default memory" if memory_mib is None else f"memory={memory_mib / 1024:g} GB"
        larger = 2 * (memory_mib or 2048) / 1024
        how = (
            f"{OUT_OF_MEMORY} with {memory}; give each worker more: e.g. memory='{larger:g}GB' "
            "(with a larger cpu= if Fargate needs it)"
        )
    elif code is not None and code < 0 and -code in _SIGNALS:
        how = f"killed by {_SIGNALS[-code]}"
    elif code is not None and code > 128 and code - 128 in _SIGNALS:  # a container's shell
        how = f"exit code {code} (killed by {_SIGNALS[code - 128]})"
    elif code is not None:
        how = f"exit code {code}"
    else:
        how = info.reason or "stopped"
    tail = " | ".join([line for line in log_tail.splitlines() if line][-2:])
    if len(tail) > _LOG_TAIL_CHARS:
        tail = "..." + tail[-_LOG_TAIL_CHARS:]
    return f"worker {info.worker_id}: {how}" + (f", its log ending {tail!r}" if tail else "")


def end_lease(
    store: Store, keys: RunKeys, chunk: int, stopped: dict[str, str | None]
) -> Claim | None:
    """End a chunk's lease if one of the ``stopped`` workers holds it; return its claim.

    ``stopped`` maps each stopped worker's id to how it stopped (e.g. ``"worker w1: exit
    code 3"``), or to ``None`` when its stop uses up no attempt (a spot interruption or a
    stop we asked for). The chunk can then be taken over at once instead of when its lease
    would have run out. A chunk the stopped worker gave back itself (a graceful stop) is
    returned too, as given back, not isolated: it is offered at once as well, rather than
    at an idle worker's next scan for expired leases.
    """
    try:
        data, etag = store.get_versioned(keys.claim(chunk))
    except NotFound:
        return None
    old = Claim.decode(data)
    if old.holder not in stopped:
        return None
    if old.released:  # (its holder did not die of it: no item is to blame)
        return replace(old, isolate=False)
    cause = stopped[old.holder]
    claim = Claim(
        old.worker, old.attempt, 0.0, cause is None, old.at, old.isolate, cause or old.cause
    )
    try:
        store.put_if_match(keys.claim(chunk), claim.encode(), etag)
    except (PreconditionFailed, NotFound):
        return None
    return old
