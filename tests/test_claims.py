"""Leases on chunks: claiming, renewal, takeover after expiry, release, and lost items."""

from __future__ import annotations

import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path
from unittest.mock import ANY

import pytest

from starburst.engine import claims
from starburst.engine.claims import Claim
from starburst.engine.control import Control
from starburst.engine.keys import RunKeys, SessionKeys
from starburst.engine.manifest import RunFunction, RunManifest
from starburst.engine.outcome import ChunkOutput
from starburst.engine.session_record import SessionRecord, Timings
from starburst.serialize import dumps, loads
from starburst.store import LocalStore

KEYS = RunKeys("sessions/s/data/r/")


@pytest.fixture
def local(tmp_path: Path) -> LocalStore:
    return LocalStore(tmp_path / "store")


def _expire(store: LocalStore, chunk: int) -> None:
    claim = Claim.decode(store.get(KEYS.claim(chunk)))
    store.put(KEYS.claim(chunk), replace(claim, expires=time.time() - 1).encode())


def test_only_the_first_claim_wins(local: LocalStore) -> None:
    assert claims.claim_fresh(local, KEYS, 0, "a", lease=30) is not None
    assert claims.claim_fresh(local, KEYS, 0, "b", lease=30) is None
    assert Claim.decode(local.get(KEYS.claim(0))).worker == "a"


def test_a_live_lease_cannot_be_taken_over(local: LocalStore) -> None:
    claims.claim_fresh(local, KEYS, 0, "a", lease=30)
    assert claims.take_over(local, KEYS, 0, "b", lease=30, max_attempts=3) is None


def test_an_expired_lease_is_taken_over_in_isolation(local: LocalStore) -> None:
    held = claims.claim_fresh(local, KEYS, 0, "a", lease=30)
    assert held is not None
    _expire(local, 0)
    taken = claims.take_over(local, KEYS, 0, "b", lease=30, max_attempts=3)
    assert taken is not None and taken.isolate and taken.first == 0
    assert taken.attempt == 0 and taken.lost is None  # the item that killed "a" is not known
    assert not claims.renew(local, held, lease=30)  # the old holder has lost it
    assert claims.renew(local, taken, lease=30)


def test_a_takeover_starts_after_the_items_the_parts_hold(local: LocalStore) -> None:
    claims.claim_fresh(local, KEYS, 0, "a", lease=30)
    local.put(KEYS.part(0, 0, 4), b"")
    local.put(KEYS.part(0, 4, 6), b"")
    local.put(KEYS.part(0, 8, 9), b"")  # after a gap: not a place to start from
    _expire(local, 0)
    taken = claims.take_over(local, KEYS, 0, "b", lease=30, max_attempts=3)
    assert taken is not None and taken.first == 6


def test_a_chunk_whose_end_is_written_is_not_taken_over(local: LocalStore) -> None:
    claims.claim_fresh(local, KEYS, 0, "a", lease=30)
    local.put(KEYS.output(0), b"")
    _expire(local, 0)
    assert claims.take_over(local, KEYS, 0, "b", lease=30, max_attempts=3) is None


def test_an_item_is_lost_once_it_stopped_its_isolated_workers_every_attempt(
    local: LocalStore,
) -> None:
    claims.claim_fresh(local, KEYS, 0, "a.0", lease=30)
    claims.end_lease(local, KEYS, 0, {"a": "worker a: exit code 3"})
    isolated = claims.take_over(local, KEYS, 0, "b.0", lease=30, max_attempts=2)
    assert isolated is not None and isolated.isolate and isolated.attempt == 0
    local.put(KEYS.part(0, 0, 1), b"")  # "b" wrote item 0, then died on item 1
    claims.end_lease(local, KEYS, 0, {"b": "worker b: killed by SIGSEGV"})
    again = claims.take_over(local, KEYS, 0, "c.0", lease=30, max_attempts=2)
    assert again is not None and (again.first, again.attempt, again.lost) == (1, 1, None)
    claims.end_lease(local, KEYS, 0, {"c": "worker c: killed by SIGSEGV"})
    last = claims.take_over(local, KEYS, 0, "d.0", lease=30, max_attempts=2)
    assert last is not None and (last.first, last.attempt) == (1, 2)
    assert last.lost == "it stopped its worker 2 times (worker c: killed by SIGSEGV)"
    assert claims.restart(local, last, 2, lease=30)  # recorded lost: on after it, afresh
    assert Claim.decode(local.get(KEYS.claim(0))) == Claim("d.0", 0, ANY, at=2, isolate=False)


def test_expiring_a_dead_workers_claims_touches_only_that_worker(local: LocalStore) -> None:
    claims.claim_fresh(local, KEYS, 0, "w0001.0", lease=30)
    claims.claim_fresh(local, KEYS, 1, "w0002.0", lease=30)
    claims.claim_fresh(local, KEYS, 2, "w00010.0", lease=30)  # a prefix, not the same worker
    stopped: dict[str, str | None] = {"w0001": "worker w0001: exit code 1"}
    ended = [c for c in (0, 1, 2) if claims.end_lease(local, KEYS, c, stopped)]
    assert ended == [0]
    assert claims.take_over(local, KEYS, 0, "x", lease=30, max_attempts=3).isolate
    assert claims.take_over(local, KEYS, 1, "x", lease=30, max_attempts=3) is None


def test_an_interrupted_workers_claims_do_not_use_up_attempts(local: LocalStore) -> None:
    claims.claim_fresh(local, KEYS, 0, "w0001.0", lease=30)
    assert claims.end_lease(local, KEYS, 0, {"w0001": None}).holder == "w0001"
    taken = claims.take_over(local, KEYS, 0, "x", lease=30, max_attempts=1)
    assert taken.attempt == 0 and not taken.isolate


def test_a_chunk_its_stopped_worker_gave_back_is_ended_too(local: LocalStore) -> None:
    """A worker stopped gracefully releases its chunk; ending its leases still returns the
    chunk (to be requeued at once, not found at the next scan for expired leases)."""
    held = claims.claim_fresh(local, KEYS, 0, "w0001.0", lease=30)
    claims.claim_fresh(local, KEYS, 1, "w0002.0", lease=30)
    assert held is not None and claims.release(local, held)
    stopped: dict[str, str | None] = {"w0001": "worker w0001: stopped by the client"}
    ended = {c: claims.end_lease(local, KEYS, c, stopped) for c in (0, 1)}
    assert ended[1] is None and ended[0] is not None
    assert ended[0].holder == "w0001" and not ended[0].isolate
    taken = claims.take_over(local, KEYS, 0, "x", lease=30, max_attempts=1)
    assert taken is not None and taken.attempt == 0 and not taken.isolate


def _detached_run(
    store: LocalStore, n_chunks: int, control: Control, **timings: float
) -> tuple[RunKeys, Control]:
    """A session with one sealed run of ``n_chunks`` chunks of 3 items (``x * x``), as a
    client leaves it in the store, with ``control`` as its control record."""
    base = Timings.for_store(store, attached=False)
    session = SessionRecord(
        "s", "local", workers=1, cpu=1, memory_mib=None, timings=replace(base, **timings)
    )
    keys = SessionKeys("s")
    run = keys.run("r")
    store.put(keys.session, session.encode())
    store.put(run.function, dumps(RunFunction(lambda x: x * x), compress=False))
    for chunk in range(n_chunks):
        items = [3 * chunk + i for i in range(3)]
        store.put(run.input(chunk), dumps({"start": 3 * chunk, "items": items}, compress=False))
    manifest = RunManifest(
        "r", "single", retries=2, state="sealed", n_chunks=n_chunks, n_items=3 * n_chunks
    )
    control.heartbeat, control.session, control.runs = time.time(), session, {"r": manifest}
    store.put(keys.control, control.encode())
    return run, control


def _worker(store: LocalStore, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "starburst.worker", "--store", store.url, "--session", "s",
         "--worker-id", "w0000", "--processes", "1", *args],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip


def _wait_for_outputs(store: LocalStore, run: RunKeys, n_chunks: int) -> None:
    deadline = time.monotonic() + 60
    while len(list(store.list(run.outputs))) < n_chunks and time.monotonic() < deadline:
        time.sleep(0.05)


def test_a_worker_takes_over_a_chunk_whose_holder_died(local: LocalStore) -> None:
    """A real worker process finds a chunk held by a dead worker and redoes it after its lease."""
    run, _ = _detached_run(local, 2, Control(), lease=1.0, orphan_scan=0.1, idle_timeout=1.0)
    # chunk 0 is held by a worker that died: its lease runs out in 1.5 s
    local.put(run.claim(0), Claim("ghost.0", 0, expires=time.time() + 1.5).encode())

    output, _ = _worker(local).communicate(timeout=60)
    taken = [loads(local.get(key)) for key in local.list(run.output(0))]
    fresh: ChunkOutput = loads(local.get(run.output(1)))
    assert {part.worker for part in taken} == {"w0000.0"}, output
    # run in isolation (its holder's death is pinned on an item): a part after every item
    assert sorted((part.offset, part.results) for part in taken) == [(0, [0]), (1, [1]), (2, [4])]
    assert fresh.results == [9, 16, 25] and fresh.attempt == 0


def test_a_worker_takes_a_requeued_chunk_at_once(local: LocalStore) -> None:
    """A chunk the client took back from a stopped worker is redone without waiting for the
    lease (here an hour) or a scan for expired leases (here a minute)."""
    control = Control(requeued={"r": {"0": "ghost"}})
    run, control = _detached_run(local, 2, control, lease=3600.0, orphan_scan=60.0)
    held = claims.claim_fresh(local, run, 0, "ghost.0", lease=3600)
    assert held is not None and claims.end_lease(local, run, 0, {"ghost": None})

    worker = _worker(local)
    try:
        _wait_for_outputs(local, run, 2)
        taken: ChunkOutput = loads(local.get(run.output(0)))
        assert taken.worker == "w0000.0" and taken.results == [0, 1, 4]
        assert taken.attempt == 0  # given back, not lost: no attempt used up
    finally:
        local.delete(SessionKeys("s").control)  # the client closes the session: it leaves
        worker.wait(timeout=60)


@pytest.mark.parametrize("stripe", [0, 1])
def test_a_worker_claims_its_own_stripe_first_then_steals_the_rest(
    local: LocalStore, stripe: int
) -> None:
    """With no ``--index``, the roster gives the worker its stripe of two: chunks ``stripe``
    and ``stripe + 2`` come first."""
    control = Control(stripes=2, roster={"w0000": stripe})
    run, _ = _detached_run(local, 4, control, orphan_scan=0.1, idle_timeout=0.5)

    output, _ = _worker(local).communicate(timeout=60)
    claimed_at = {c: Claim.decode(local.get(run.claim(c))).expires for c in range(4)}
    order = sorted(claimed_at, key=claimed_at.__getitem__)
    assert order[:2] == [stripe, stripe + 2], output
    assert sorted(order[2:]) == [1 - stripe, 3 - stripe]
    assert [loads(local.get(run.output(c))).results for c in range(4)] == [
        [x * x for x in range(3 * c, 3 * c + 3)] for c in range(4)
    ]
