"""The store's keys: where everything lives, one prefix per session, one per run.

```
sessions/<sid>/session.json            spec, timings, deadline, state (JSON)
sessions/<sid>/control.json            what clients tell workers: heartbeat, stripes, runs (JSON)
sessions/<sid>/runs/<rid>.json         a run's manifest (JSON)
sessions/<sid>/workers/<wid>.json      a worker's heartbeat and counters (JSON)
sessions/<sid>/logs/<wid>.log          a local worker's output
data/<sid>/shared/<sha256>             a large argument of submitted calls, stored once
data/<sid>/<rid>/fn.bin                the function, uploaded once
data/<sid>/<rid>/in/<chunk>            a chunk's items
data/<sid>/<rid>/claim/<chunk>         who holds the chunk, attempt, lease expiry (JSON)
data/<sid>/<rid>/out/<chunk>           the chunk's last results and per-item errors (its end)
data/<sid>/<rid>/out/<chunk>.<lo>-<hi> a part: the results of the chunk's items lo..hi-1
data/<sid>/<rid>/failed/<chunk>[...]   which items of an output failed (JSON), for status
data/<sid>/<rid>/chunks.json           a detached run's chunk starts (JSON), for status
sessions/<sid>/supervisor.json         who supervises a detached session (a lease, JSON)
sessions/<sid>/procs/<wid>.json        a local worker's process id
sessions/<sid>/.news, .work            a local store's bells (named pipes): outputs, new work
```
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

CHUNK_DIGITS = 8


def chunk_name(chunk: int) -> str:
    """The zero-padded name of a chunk, so that keys sort in chunk order."""
    return f"{chunk:0{CHUNK_DIGITS}d}"


@dataclass(frozen=True)
class SessionKeys:
    """Keys of one session."""

    session_id: str

    @property
    def prefix(self) -> str:
        return f"sessions/{self.session_id}/"

    @property
    def session(self) -> str:
        return f"{self.prefix}session.json"

    @property
    def control(self) -> str:
        return f"{self.prefix}control.json"

    @property
    def instances(self) -> str:
        """The instances the session's workers ran on (``engine/instance_record.py``)."""
        return f"{self.prefix}instances.json"

    @property
    def news_bell(self) -> str:
        """Rung by a worker when an output lands; the client waits on it (``Store.ring``)."""
        return f"{self.prefix}.news"

    @property
    def work_bell(self) -> str:
        """Rung by a client when it tells the workers of new work; idle workers wait on it."""
        return f"{self.prefix}.work"

    @property
    def runs_prefix(self) -> str:
        return f"{self.prefix}runs/"

    @property
    def workers_prefix(self) -> str:
        return f"{self.prefix}workers/"

    def manifest(self, run_id: str) -> str:
        return f"{self.runs_prefix}{run_id}.json"

    def worker(self, worker_id: str) -> str:
        return f"{self.workers_prefix}{worker_id}.json"

    def log(self, worker_id: str) -> str:
        return f"{self.prefix}logs/{worker_id}.log"

    @property
    def data_prefix(self) -> str:
        """Run data lives apart from session records, so that a lifecycle rule can expire it."""
        return f"data/{self.session_id}/"

    @property
    def shared_prefix(self) -> str:
        """Where the large arguments of submitted calls are stored, once each (not a run)."""
        return f"{self.data_prefix}shared/"

    def shared(self, digest: str) -> str:
        return f"{self.shared_prefix}{digest}"

    def run(self, run_id: str) -> RunKeys:
        return RunKeys(f"{self.data_prefix}{run_id}/")

    def run_id_of(self, manifest_key: str) -> str:
        """The run id a manifest key names."""
        return manifest_key[len(self.runs_prefix) : -len(".json")]


@dataclass(frozen=True)
class RunKeys:
    """Keys of one run's data."""

    prefix: str

    @property
    def function(self) -> str:
        return f"{self.prefix}fn.bin"

    @property
    def starts(self) -> str:
        """A sealed detached run's first item index of each chunk (JSON), for its status."""
        return f"{self.prefix}chunks.json"

    @property
    def failed(self) -> str:
        """Markers of the chunks that have failed items: ``failed/<chunk>`` (JSON)."""
        return f"{self.prefix}failed/"

    def failure_marker(self, output_key: str) -> str:
        """The marker of the output at ``output_key`` (a chunk's end or one of its parts)."""
        return self.failed + output_key.rsplit("/", 1)[1]

    @property
    def inputs(self) -> str:
        return f"{self.prefix}in/"

    @property
    def claims(self) -> str:
        return f"{self.prefix}claim/"

    @property
    def outputs(self) -> str:
        return f"{self.prefix}out/"

    def input(self, chunk: int) -> str:
        return self.inputs + chunk_name(chunk)

    def claim(self, chunk: int) -> str:
        return self.claims + chunk_name(chunk)

    def output(self, chunk: int) -> str:
        """The output that ends a chunk: its results from where its last writer began."""
        return self.outputs + chunk_name(chunk)

    def part(self, chunk: int, lo: int, hi: int) -> str:
        """A part of a chunk's output: the results of its items ``lo`` to ``hi - 1`` (offsets
        in the chunk), written while the chunk runs on."""
        return f"{self.output(chunk)}.{lo:0{CHUNK_DIGITS}d}-{hi:0{CHUNK_DIGITS}d}"

    def outputs_after(self, chunk: int) -> str:
        """A listing's ``start_after`` that skips the outputs (ends and parts) of every chunk
        up to ``chunk``."""
        return f"{self.output(chunk)}~"  # "~" sorts after the "." of a part

    @staticmethod
    def chunk_of(key: str) -> int:
        """The chunk number at the end of an ``in/``, ``claim/``, ``out/`` or ``failed/`` key."""
        return int(key.rsplit("/", 1)[1].split(".", 1)[0])

    @staticmethod
    def part_span(key: str) -> tuple[int, int] | None:
        """The items ``(lo, hi)`` of a part's key; ``None`` for a chunk's end."""
        _, dot, span = key.rsplit("/", 1)[1].partition(".")
        if not dot:
            return None
        lo, _, hi = span.partition("-")
        return int(lo), int(hi)


def chain_end(spans: Iterable[tuple[int, int]]) -> int:
    """How many of a chunk's items, from its first, the parts ``spans`` cover without a gap."""
    end = 0
    for lo, hi in sorted(spans):
        if lo > end:
            break
        end = max(end, hi)
    return end
