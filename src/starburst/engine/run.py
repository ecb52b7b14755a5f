"""One run on the client side: upload its chunks, then collect each chunk's output once.

Uploading happens on a background thread, so that results can land while a long input is
still streaming in; collecting is polling ``out/`` (one list request per thousand chunks) and
reading each new output exactly once.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, TypeVar

from ..errors import CancelledError, RunTimeoutError
from ..serialize import dumps, loads
from ..store import PreconditionFailed, Store
from .chunking import Chunk
from .claims import LostChunk
from .layout import RunKeys, SessionKeys
from .manifest import RunManifest
from .outcome import ChunkOutput, ItemFailure

T = TypeVar("T")


class Run:
    """A submitted run: its upload in progress and the outputs collected so far."""

    def __init__(
        self,
        store: Store,
        session: SessionKeys,
        manifest: RunManifest,
        function_payload: bytes,
        chunks: Iterator[Chunk],
        n_items: int | None,
        health_check: Callable[[], None],
        on_change: Callable[[RunManifest], None],
    ) -> None:
        self.store = store
        self.manifest = manifest
        self.run_id = manifest.run_id
        self.keys: RunKeys = session.run(manifest.run_id)
        self._manifest_key = session.manifest(manifest.run_id)
        self.n_items = n_items
        self.n_chunks: int | None = None
        self.spans: dict[int, tuple[int, int]] = {}  # chunk -> (first index, item count)
        self.delivered: set[int] = set()
        self.items_delivered = 0
        self.upload_error: BaseException | None = None
        self.cancelled = False
        self._health_check = health_check
        self._on_change = on_change
        self._lowest_pending = 0
        self._lock = threading.Lock()
        self._uploaded = threading.Event()
        self._pool: ThreadPoolExecutor | None = None
        store.put(self.keys.function, function_payload)
        store.put_if_absent(self._manifest_key, manifest.encode())
        on_change(manifest)
        self._uploader = threading.Thread(
            target=self._upload, args=(chunks,), name=f"upload-{self.run_id}", daemon=True
        )
        self._uploader.start()

    # Upload ----------------------------------------------------------------------------------

    def _upload(self, chunks: Iterator[Chunk]) -> None:
        count, items = 0, 0
        try:
            with ThreadPoolExecutor(max_workers=self.store.parallelism) as pool:
                pending: deque[Future[str]] = deque()
                for chunk in chunks:
                    if self.cancelled:
                        return
                    with self._lock:
                        self.spans[chunk.number] = (chunk.start, len(chunk.items))
                    data = dumps(
                        {"start": chunk.start, "items": chunk.items}, compress=self.store.compress
                    )
                    key = self.keys.input(chunk.number)
                    if self.store.parallelism > 1:
                        pending.append(pool.submit(self.store.put, key, data))
                        while len(pending) > 2 * self.store.parallelism:
                            pending.popleft().result()
                    else:
                        self.store.put(key, data)
                    count, items = count + 1, items + len(chunk.items)
                for future in pending:
                    future.result()
            self.n_chunks, self.n_items = count, items
            self._update_manifest(state="sealed", n_chunks=count, n_items=items)
        except BaseException as exc:  # the caller's iterable failed, or the store did
            self.upload_error = exc
            self.cancel()
        finally:
            self._uploaded.set()

    def _update_manifest(self, **changes: Any) -> None:
        """Change the manifest with compare-and-swap, so that no writer's change is lost."""
        while True:
            data, etag = self.store.get_versioned(self._manifest_key)
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
        """Read the chunk outputs that landed since the last poll; each is delivered once."""
        start = self.keys.output(self._lowest_pending - 1) if self._lowest_pending else None
        listed = map(RunKeys.chunk_of, self.store.list(self.keys.outputs, start_after=start))
        new = [chunk for chunk in listed if chunk not in self.delivered]
        landed: list[ChunkOutput] = []
        for chunk, record in zip(new, self.map_parallel(self._read_output, new), strict=True):
            self.delivered.add(chunk)
            self.items_delivered += len(record.results)
            landed.append(record)
        while self._lowest_pending in self.delivered:
            self._lowest_pending += 1
        if self.complete:
            self.close()
        return landed

    def map_parallel(self, fn: Callable[[int], T], chunks: list[int]) -> list[T]:
        """``fn`` of each chunk, several at a time where the store gains from it."""
        if len(chunks) < 2 or self.store.parallelism < 2:
            return [fn(chunk) for chunk in chunks]
        with self._lock:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(self.store.parallelism, f"run-{self.run_id}")
        return list(self._pool.map(fn, chunks))

    def close(self) -> None:
        """Let go of the run's transfer threads (its data stays in the store)."""
        with self._lock:
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=False)

    def _read_output(self, chunk: int) -> ChunkOutput:
        record = loads(self.store.get(self.keys.output(chunk)))
        return self._lost_output(chunk, record) if isinstance(record, LostChunk) else record

    def _lost_output(self, chunk: int, lost: LostChunk) -> ChunkOutput:
        """A lost chunk as an output whose every item failed with ``WorkerLostError``."""
        start, count = self._span(chunk)
        failures = {i: ItemFailure.worker_lost(i, lost.reason) for i in range(start, start + count)}
        return ChunkOutput(start=start, results=[None] * count, failures=failures)

    def _span(self, chunk: int) -> tuple[int, int]:
        with self._lock:
            if chunk in self.spans:
                return self.spans[chunk]
        payload = loads(self.store.get(self.keys.input(chunk)))
        return payload["start"], len(payload["items"])

    def outputs(
        self, deadline: float | None, on_poll: Callable[[Run], None] | None = None
    ) -> Iterator[ChunkOutput]:
        """Every chunk's output as it lands, until the run is complete.

        Raises ``RunTimeoutError`` past ``deadline`` (a ``time.monotonic`` value), the
        input's own error if reading it failed, and whatever the health check raises.
        """
        pause = self.store.poll_interval
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
                    f"run {self.run_id} did not finish within its timeout: "
                    f"{self.items_delivered} items completed"
                )
            if batch:
                pause = self.store.poll_interval
            else:
                time.sleep(pause)
                pause = min(pause * 1.5, self.store.max_poll_interval)
