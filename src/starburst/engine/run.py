"""One run on the client side: upload its chunks, then collect each chunk's output once.

Uploading happens on a background thread, so that results can land while a long input is
still streaming in; collecting is polling ``out/`` (one list request per thousand chunks) and
reading each new output exactly once.
"""

from __future__ import annotations

import contextlib
import itertools
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from typing import Any, TypeVar

from ..errors import CancelledError, RunTimeoutError
from ..serialize import dumps_parts, unsendable_item_error
from ..store import NotFound, PreconditionFailed, Store
from ..threads import BareThread
from .chunking import Chunk, ChunkStream
from .keys import RunKeys, SessionKeys
from .manifest import RunManifest
from .outcome import ChunkOutput, decode_output
from .records import to_json

T = TypeVar("T")
K = TypeVar("K")


class Run:
    """A submitted run: its upload in progress and the outputs collected so far."""

    def __init__(
        self,
        store: Store,
        session: SessionKeys,
        manifest: RunManifest,
        health_check: Callable[[], None],
        on_change: Callable[[RunManifest], None],
    ) -> None:
        self.store = store
        self.manifest = manifest
        self.run_id = manifest.run_id
        self.keys: RunKeys = session.run(manifest.run_id)
        self._manifest_key = session.manifest(manifest.run_id)
        self._news_bell = session.news_bell
        self.n_items = manifest.n_items
        self.n_chunks: int | None = manifest.n_chunks if manifest.state == "sealed" else None
        self.spans: dict[int, tuple[int, int]] = {}  # chunk -> (first index, item count)
        self.delivered: set[int] = set()
        self.items_delivered = 0
        self.upload_error: BaseException | None = None
        self.cancelled = manifest.state == "cancelled"
        #: A worker that dies on one of its chunks fails that chunk, not the workers' start
        #: (``Driver.submit``).
        self.blames_items = False
        self._health_check = health_check
        self._on_change = on_change
        self._lowest_pending = 0
        self._lock = threading.Lock()
        self._uploaded = threading.Event()
        self._pool: ThreadPoolExecutor | None = None
        self._downloads: dict[str, Future[ChunkOutput]] = {}  # output key -> the output, coming
        self._seen: dict[int, set[str]] = {}  # undelivered chunk -> its outputs listed so far
        self._landed: dict[int, list[tuple[ChunkOutput, bool]]] = {}  # -> (output, is its end)
        self._front: dict[int, int] = {}  # undelivered chunk -> its items delivered so far
        self._next_listing = 0.0  # time.monotonic() of the next listing of out/
        self._listing_pause = store.poll_interval
        self._rings_listed = -1  # the news bell's ring count at the last listing
        self._uploader: BareThread | None = None
        self._chunks: Iterator[Chunk] = iter(())
        self._stored_chunks = self._stored_items = 0
        self._announced = True

    @classmethod
    def submit(
        cls,
        store: Store,
        session: SessionKeys,
        manifest: RunManifest,
        function_payload: bytes,
        chunks: ChunkStream,
        n_items: int | None,
        health_check: Callable[[], None],
        on_change: Callable[[RunManifest], None],
        *,
        announce_early: bool = True,
        first_chunks: int = 0,
    ) -> Run:
        """A new run: its function and its ``first_chunks`` chunks are stored (in this
        thread: on the local store, each worker's first chunk is there when it hears of the
        run); ``start_upload`` streams the rest.

        Without ``announce_early`` (a detached session's run), raises
        ``PreconditionFailed`` when another client of the session took the run id first.

        With ``announce_early`` the workers hear of the run at once and start on its first
        chunks while the rest upload; without, they hear of it once every chunk is stored
        (a detached session's run then either exists whole or not at all).
        """
        run = cls(store, session, manifest, health_check, on_change)
        run.n_items, run.n_chunks = n_items, None
        if announce_early:  # one client: its run ids are its own
            store.put(run.keys.function, function_payload)
        else:  # a detached session may have several clients: storing reserves the id
            store.put_if_absent(run.keys.function, function_payload)
        run._announced = announce_early
        run._chunks = chunks
        run._store_first(first_chunks)
        if announce_early:
            run._seal_if_all_stored()
            if run.upload_error is None:  # (a failed run is told to no one)
                store.put_if_absent(run._manifest_key, manifest.encode())
                on_change(manifest)
        return run

    @classmethod
    def existing(
        cls,
        store: Store,
        session: SessionKeys,
        manifest: RunManifest,
        on_change: Callable[[RunManifest], None],
    ) -> Run:
        """A run submitted earlier (by this process or another), to collect or cancel."""
        run = cls(store, session, manifest, lambda: None, on_change)
        run._uploaded.set()
        return run

    def _store_first(self, count: int) -> None:
        """Store the first ``count`` chunks now, in the calling thread (before any worker
        could be forked: a fork copies no other thread, and so no lock it held)."""
        try:
            for chunk in itertools.islice(self._chunks, count):
                self._store_chunk(chunk, self.store.put_parts)
        except BaseException as exc:  # the caller's iterable failed, or the store did
            self._upload_failed(exc)

    def _seal_if_all_stored(self) -> None:
        """When the first chunks were all of them (a few calls of ``submit``, a short map),
        make the run sealed before it is announced: no upload thread, and no second change
        of the manifest and the control record for the workers to read."""
        planned = self.manifest.n_chunks
        if self.upload_error is not None or planned is None or self._stored_chunks < planned:
            return
        try:  # the plan says that was all: make sure (an input's len() may be wrong)
            following = next(self._chunks, None)
        except BaseException as exc:  # the caller's iterable failed
            self._upload_failed(exc)
            return
        if following is not None:  # more after all: the upload thread stores it and the rest
            self._chunks = itertools.chain([following], self._chunks)
            return
        count, items = self._stored_chunks, self._stored_items
        self.manifest.state, self.manifest.n_chunks, self.manifest.n_items = "sealed", count, items
        self.n_chunks, self.n_items = count, items
        self._uploaded.set()

    def start_upload(self) -> None:
        """Stream the remaining chunks up on a background thread."""
        if self._uploader is None and not self._uploaded.is_set():  # set: the first failed
            self._uploader = BareThread(self._upload)

    def wait_uploaded(self) -> None:
        """Wait until every chunk is stored; raise what stopped the upload, if anything."""
        self._uploaded.wait()
        if self.upload_error is not None:
            raise self.upload_error

    # Upload ----------------------------------------------------------------------------------

    def _store_chunk(self, chunk: Chunk, put: Callable[[str, list[Any]], Any]) -> None:
        with self._lock:
            self.spans[chunk.number] = (chunk.start, len(chunk.items))
        try:
            parts = dumps_parts(
                {"start": chunk.start, "items": chunk.items}, compress=self.store.compress
            )
        except Exception as exc:
            raise unsendable_item_error(chunk.start, chunk.items, exc) from exc
        put(self.keys.input(chunk.number), parts)
        self._stored_chunks += 1
        self._stored_items += len(chunk.items)

    def _upload(self) -> None:
        try:
            with ThreadPoolExecutor(max_workers=self.store.parallelism) as pool:
                pending: deque[Future[None]] = deque()

                def put_in_background(key: str, parts: list[Any]) -> None:
                    pending.append(pool.submit(self.store.put_parts, key, parts))
                    while len(pending) > 2 * self.store.parallelism:
                        pending.popleft().result()

                put = put_in_background if self.store.parallelism > 1 else self.store.put_parts
                for chunk in self._chunks:
                    if self.cancelled:
                        return
                    self._store_chunk(chunk, put)
                for future in pending:
                    future.result()
            count, items = self._stored_chunks, self._stored_items
            if not self._announced:
                self._announce(count, items)
            else:
                self._update_manifest(state="sealed", n_chunks=count, n_items=items)
            # Only now can the run be complete: the collector, and so the call, cannot end
            # (and close the session) while this thread still writes.
            self.n_chunks, self.n_items = count, items
        except BaseException as exc:  # the caller's iterable failed, or the store did
            self._upload_failed(exc)
        finally:
            self._uploaded.set()

    def _upload_failed(self, exc: BaseException) -> None:
        self.upload_error = exc
        self.cancel()
        self._uploaded.set()

    def _announce(self, n_chunks: int, n_items: int) -> None:
        """Store the sealed run whole (its chunks' first items beside it) and tell the workers."""
        starts = [self.spans[chunk][0] for chunk in range(n_chunks)]
        self.store.put(self.keys.starts, to_json({"starts": starts}))
        self.manifest.state, self.manifest.n_chunks, self.manifest.n_items = (
            "sealed", n_chunks, n_items,
        )  # fmt: skip
        self.store.put_if_absent(self._manifest_key, self.manifest.encode())
        self._announced = True
        self._on_change(self.manifest)

    def _update_manifest(self, **changes: Any) -> None:
        """Change the manifest with compare-and-swap, so that no writer's change is lost."""
        while True:
            try:
                data, etag = self.store.get_versioned(self._manifest_key)
            except NotFound:  # never announced: nobody knows of the run
                return
            manifest = RunManifest.decode(data)
            if manifest.state == "cancelled":
                return
            for name, value in changes.items():
                setattr(manifest, name, value)
            try:
                self.store.put_if_match(self._manifest_key, manifest.encode(), etag)
            except PreconditionFailed:
                continue
            self.manifest = manifest
            self._on_change(manifest)
            return

    def cancel(self) -> None:
        """Stop uploading and tell the workers to take no more chunks of this run."""
        if self.cancelled:
            return
        self.cancelled = True
        self.close()
        self._update_manifest(state="cancelled")

    # Collection ------------------------------------------------------------------------------

    @property
    def complete(self) -> bool:
        """Every chunk's output has been delivered."""
        return self.n_chunks is not None and len(self.delivered) >= self.n_chunks

    @property
    def outstanding(self) -> bool:
        """Work remains for the workers."""
        return not self.cancelled and not self.complete

    def in_flight(self) -> list[int]:
        """Chunks that are claimed but whose output has not been delivered yet."""
        start = self.keys.claim(self._lowest_pending - 1) if self._lowest_pending else None
        claimed = map(RunKeys.chunk_of, self.store.list(self.keys.claims, start_after=start))
        end = self.n_chunks
        return [c for c in claimed if c not in self.delivered and (end is None or c < end)]

    def poll(self) -> list[ChunkOutput]:
        """The outputs downloaded since the last poll, each item delivered once.

        A poll lists ``out/`` from the lowest chunk not yet delivered, and starts downloading
        what is new, when a worker has rung the news bell since the last listing (whichever
        thread of this process heard it), or else when its listing is due: listings come
        ``poll_interval`` apart, backing off to ``max_poll_interval`` while nothing lands
        (or for good, once rings are heard). Downloads run on in the background while the
        caller handles what it got.

        A chunk's output may come in parts (``out/<chunk>.<lo>-<hi>``) before its end
        (``out/<chunk>``); each is delivered once the items before it were, without the
        items another output delivered already (two workers may both have run a chunk).
        """
        now = time.monotonic()
        rings = self.store.times_rung(self._news_bell)
        if now >= self._next_listing or rings != self._rings_listed:
            self._rings_listed = rings
            found = self._list_outputs()
            # Once this process has heard the bell, rings bring the news: a landing need not
            # bring the listings back to their quickest (as it must where nobody rings).
            pause = self._listing_pause * 1.5
            quick = found and rings == 0
            self._listing_pause = self.store.poll_interval if quick else pause
            self._listing_pause = min(self._listing_pause, self.store.max_poll_interval)
            self._next_listing = now + self._listing_pause
        landed: list[ChunkOutput] = []
        for key, download in list(self._downloads.items()):
            if download.done():
                del self._downloads[key]
                chunk = RunKeys.chunk_of(key)
                end = RunKeys.part_span(key) is None
                self._landed.setdefault(chunk, []).append((download.result(), end))
                landed += self._deliverable(chunk)
        while self._lowest_pending in self.delivered:
            self._lowest_pending += 1
        if self.complete:
            self.close()
        return landed

    def last_poll(self) -> list[ChunkOutput]:
        """List now and wait for every download: what the workers wrote before they stopped."""
        self._next_listing = 0.0
        landed = self.poll()
        for download in list(self._downloads.values()):
            with contextlib.suppress(Exception):
                download.result()
        return landed + self.poll()

    def _list_outputs(self) -> bool:
        """Start downloading the outputs listed since the last listing; say if there were."""
        start = self.keys.outputs_after(self._lowest_pending - 1) if self._lowest_pending else None
        found = False
        for key in self.store.list(self.keys.outputs, start_after=start):
            chunk = RunKeys.chunk_of(key)
            seen = self._seen.setdefault(chunk, set()) if chunk not in self.delivered else None
            if seen is not None and key not in seen:
                seen.add(key)
                self._downloads[key] = self._start(self._read_output, key)
                found = True
        return found

    def _deliverable(self, chunk: int) -> list[ChunkOutput]:
        """The landed outputs of ``chunk`` that follow what it delivered, trimmed of what it
        delivered already; the chunk is delivered once its end is."""
        landed, front, ready = self._landed[chunk], self._front.get(chunk, 0), []
        landed.sort(key=lambda pair: pair[0].offset)
        while landed and landed[0][0].offset <= front:
            output, end = landed.pop(0)
            if output.end > front:
                ready.append(output.from_offset(front))
                self.items_delivered += output.end - front
                front = output.end
            if end:
                self.delivered.add(chunk)
                for table in (self._landed, self._front, self._seen):
                    table.pop(chunk, None)
                return ready
        self._front[chunk] = front
        return ready

    def wait(self) -> None:
        """Wait until the next listing is due, a download completes, or a worker rings to
        say an output landed (the next poll then lists at once)."""
        timeout = max(0.0, self._next_listing - time.monotonic())
        if self._downloads:
            wait(list(self._downloads.values()), timeout, FIRST_COMPLETED)
        elif self.store.times_rung(self._news_bell) == self._rings_listed:
            self.store.wait_for_ring(self._news_bell, timeout)

    def _start(self, fn: Callable[[K], T], chunk: K) -> Future[T]:
        """Run ``fn(chunk)`` in the background where the store gains from it, else now."""
        if self.store.parallelism < 2:
            done: Future[T] = Future()
            try:
                done.set_result(fn(chunk))
            except BaseException as exc:
                done.set_exception(exc)
            return done
        with self._lock:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(self.store.parallelism, f"run-{self.run_id}")
            return self._pool.submit(fn, chunk)

    def map_parallel(self, fn: Callable[[int], T], chunks: list[int]) -> list[T]:
        """``fn`` of each chunk, several at a time where the store gains from it."""
        return [future.result() for future in [self._start(fn, chunk) for chunk in chunks]]

    def close(self) -> None:
        """Let go of the run's transfer threads (its data stays in the store)."""
        with self._lock:
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=False)

    def _read_output(self, key: str) -> ChunkOutput:
        """An output, as ``decode_output`` reads it: a result that cannot be unpickled here
        fails its own item only."""
        output: ChunkOutput = decode_output(self.store.get(key))
        return output

    def outputs(
        self, deadline: float | None, on_poll: Callable[[Run], None] | None = None
    ) -> Iterator[ChunkOutput]:
        """Every chunk's output as it lands, until the run is complete.

        Raises ``RunTimeoutError`` past ``deadline`` (a ``time.monotonic`` value), the
        input's own error if reading it failed, and whatever the health check raises.
        """
        while True:
            batch = self.poll()
            if on_poll is not None:
                on_poll(self)
            yield from batch
            if self.complete:
                return
            if self.upload_error is not None:
                raise self.upload_error
            if self.cancelled:
                raise CancelledError(f"run {self.run_id} was cancelled")
            self._health_check()
            if deadline is not None and time.monotonic() >= deadline:
                raise RunTimeoutError(
                    f"run {self.run_id} did not finish within its timeout; what completed "
                    "is kept (the note below says how much), and the items in "
                    "`exc.starburst_results.pending` are what is left to run"
                )
            if not batch:
                self.wait()
