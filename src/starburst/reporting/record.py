"""A run's record: what the store holds of a session, as plain data (JSON-able) for a report.

It reads only the session's store, as ``attach`` and ``status`` do, so a report can be made
of any session from any machine, finished or running:

- the session record (settings, image, prices) and the control record's ledger (each worker's
  launch, stop, spot, how it stopped and when the platform provisioned it, pulled its image
  and started it: ``engine/fleet_policy.ledger_stop``);
- each worker process's heartbeat record (its start, last beat, state, why it left);
- each run's manifest, and each chunk output (a part or an end): who wrote it, the attempt,
  when it was written and how long its items took (``ChunkOutput.ended``, ``seconds``,
  ``blocks``), and its failed items with their tracebacks;
- the claims of chunks without an end (in flight, or left by a stopped worker).

Reading a report reads every output once, as collecting the results does (in parallel on
S3); its results are dropped as soon as each is decoded.
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict
from typing import Any

from ..backends.base import WorkerInfo
from ..cost.billing import billed_seconds, task_cost
from ..cost.instance_bill import InstanceReading, instance_bill, instance_lines
from ..engine.claims import Claim
from ..engine.control import Control
from ..engine.fleet_policy import ledger_stop
from ..engine.instance_record import kept_instances
from ..engine.keys import RunKeys, SessionKeys
from ..engine.outcome import ChunkOutput, decode_output
from ..engine.session_record import SessionRecord
from ..engine.status import read_or_none, run_manifests
from ..store import NotFound, Store

#: The record's format, for a report that reads a saved record.
FORMAT = 1
#: Points of the cost-over-time series.
_COST_POINTS = 200
#: How many of the slowest items the record names, with their inputs where still stored.
SLOWEST = 10


def read_run(store: Store, session_id: str, now: float | None = None) -> dict[str, Any]:
    """The run record of session ``session_id`` in ``store`` (``NotFound`` without one)."""
    now = time.time() if now is None else now
    keys = SessionKeys(session_id)
    control = _control_or_none(store, keys)  # none once the session is closed
    session = SessionRecord.load(store, session_id)
    if control is not None and control.session is not None:
        session = control.session  # the newer copy: a later deadline, a stall's problem
    manifests = run_manifests(store, keys)
    outputs = _read_outputs(store, keys, [m.run_id for m in manifests])
    chunks = _chunks(outputs)
    workers = _workers(store, keys, control, chunks, session, now)
    in_flight = _in_flight(store, keys, manifests, outputs)
    record = {
        "format": FORMAT,
        "session_id": session_id,
        "backend": session.backend,
        "generated": now,
        "created": session.created,
        "deadline": session.deadline,
        "state": session.state,
        "problem": session.problem,
        "attached": session.attached,
        "image": session.launch.get("image"),
        "settings": _settings(session),
        "runs": [
            {
                "run_id": m.run_id,
                "call": m.call,
                "created": m.created,
                "items": m.n_items,
                "chunks": m.n_chunks,
                "state": m.state,
            }
            for m in manifests
        ],
        "workers": workers,
        "chunks": chunks,
        "in_flight": in_flight,
        "errors": _errors(outputs),
        "slowest": _slowest(store, keys, chunks),
        "cost": _cost(session, workers, now),
        "instances": None,
    }
    kept = kept_instances(store, keys)
    if kept is not None:
        add_instances(record, kept)
    return record


def _control_or_none(store: Store, keys: SessionKeys) -> Control | None:
    try:
        return Control.load(store, keys)
    except NotFound:
        return None


def _settings(session: SessionRecord) -> dict[str, Any]:
    """The session's settings as a person reads them (no launch internals)."""
    return {
        "backend": session.backend,
        "workers": session.workers,
        "cpu": session.cpu,
        "memory_mib": session.memory_mib,
        "spot": session.spot,
        "gpus": session.gpus,
        "instance_types": session.instance_types,
        "arch": session.arch,
        "keep_warm": session.keep_warm,
        "max_cost": session.max_cost,
        "cost_alert": session.cost_alert,
        "attached": session.attached,
        "hourly": session.hourly,
        "timings": asdict(session.timings),
        "versions": session.versions,
    }


# Outputs and chunks ------------------------------------------------------------------------


def _read_outputs(
    store: Store, keys: SessionKeys, run_ids: list[str]
) -> list[tuple[str, str, ChunkOutput]]:
    """Every output (parts and ends) of every run: (run, key, output), in key order."""
    listed = [(r, key) for r in run_ids for key in store.list(keys.run(r).outputs)]

    def read(entry: tuple[str, str]) -> tuple[str, str, ChunkOutput] | None:
        run_id, key = entry
        try:
            output = decode_output(store.get_view(key))
        except NotFound:  # removed meanwhile (a session being cleaned up)
            return None
        output.results = [None] * len(output.results)  # only their number is needed
        return run_id, key, output

    with ThreadPoolExecutor(max(1, min(16, store.parallelism))) as pool:
        return [found for found in pool.map(read, listed) if found is not None]


def _chunks(outputs: list[tuple[str, str, ChunkOutput]]) -> list[dict[str, Any]]:
    """One bar per chunk and writer: its outputs by one worker process and attempt, joined."""
    bars: dict[tuple[str, int, str, int], dict[str, Any]] = {}
    for run_id, key, output in outputs:
        chunk = RunKeys.chunk_of(key)
        ended: float | None = output.ended or None
        started = ended - output.seconds if ended is not None else None
        bar = bars.setdefault(
            (run_id, chunk, output.worker, output.attempt),
            {
                "run": run_id,
                "chunk": chunk,
                "worker": output.worker,
                "attempt": output.attempt,
                "start": started,
                "end": ended,
                "first": output.start,
                "items": 0,
                "seconds": 0.0,
                "failed": [],
                "done": False,
                "blocks": [],
            },
        )
        bar["first"] = min(bar["first"], output.start)
        bar["items"] += len(output.results)
        bar["seconds"] += output.seconds
        bar["failed"] += sorted(output.failures)
        bar["done"] = bar["done"] or RunKeys.part_span(key) is None
        bar["blocks"] += [[items, round(seconds, 6)] for items, seconds in output.blocks]
        if started is not None and ended is not None:
            bar["start"] = min(bar["start"] or started, started)
            bar["end"] = max(bar["end"] or ended, ended)
    return sorted(bars.values(), key=lambda b: (b["start"] or 0.0, b["run"], b["chunk"]))


def _in_flight(
    store: Store,
    keys: SessionKeys,
    manifests: list[Any],
    outputs: list[tuple[str, str, ChunkOutput]],
) -> list[dict[str, Any]]:
    """The claims of chunks with no end yet: who holds each (or held it, and how it
    stopped), and its attempt."""
    ended = {(r, RunKeys.chunk_of(k)) for r, k, _ in outputs if RunKeys.part_span(k) is None}
    found = []
    for manifest in manifests:
        run_keys = keys.run(manifest.run_id)
        for key in store.list(run_keys.claims):
            chunk = RunKeys.chunk_of(key)
            if (manifest.run_id, chunk) in ended:
                continue
            try:
                claim = Claim.decode(store.get(key))
            except NotFound:
                continue
            found.append(
                {
                    "run": manifest.run_id,
                    "chunk": chunk,
                    "worker": claim.worker,
                    "attempt": claim.attempt,
                    "expires": claim.expires,
                    "released": claim.released,
                    "cause": claim.cause or None,
                }
            )
    return found


def _errors(outputs: list[tuple[str, str, ChunkOutput]]) -> list[dict[str, Any]]:
    """Each failed item once (two workers may both have written it), by run and index."""
    errors: dict[tuple[str, int], dict[str, Any]] = {}
    for run_id, _, output in outputs:
        for index, failure in output.failures.items():
            errors.setdefault(
                (run_id, index),
                {
                    "run": run_id,
                    "index": index,
                    "type": failure.type_name,
                    "message": failure.message,
                    "traceback": failure.traceback,
                    "where": failure.where,
                    "worker": failure.worker or output.worker,
                    "lost": failure.lost,
                },
            )
    return [errors[key] for key in sorted(errors)]


def _slowest(store: Store, keys: SessionKeys, chunks: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The slowest items: the longest blocks of items (a slow item makes its block slow, and
    the worker then times the next items alone), each with its first item and size, and an
    item's input when it was timed alone and its chunk's input is still stored (a local
    store frees it once done)."""
    timed = []
    for bar in chunks:
        index = bar["first"]
        for items, seconds in bar["blocks"]:
            timed.append((seconds, bar["run"], index, items, bar["chunk"]))
            index += items
    timed.sort(reverse=True)
    return [
        {
            "run": run_id,
            "index": index,
            "items": items,
            "seconds": seconds,
            "input": _input_of(store, keys.run(run_id), chunk, index) if items == 1 else None,
        }
        for seconds, run_id, index, items, chunk in timed[:SLOWEST]
    ]


def _input_of(store: Store, keys: RunKeys, chunk: int, index: int) -> str | None:
    """A short repr of item ``index``'s input, from its chunk's stored input; None if gone."""
    from ..engine.outcome import _safe_repr
    from ..serialize import PICKLING_ERRORS, loads

    try:
        payload = loads(store.get_view(keys.input(chunk)))
        return _safe_repr(payload["items"][index - payload["start"]])
    except (NotFound, *PICKLING_ERRORS, LookupError, TypeError):
        return None


# Workers and cost --------------------------------------------------------------------------


def _heartbeats(store: Store, keys: SessionKeys) -> dict[str, dict[str, Any]]:
    """Each worker process's heartbeat record, by process id (``<worker>.<process>``)."""
    listed = list(store.list(keys.workers_prefix))
    with ThreadPoolExecutor(max(1, min(16, store.parallelism))) as pool:
        records = pool.map(read_or_none(store), listed)
        return {r["worker"]: r for r in records if r is not None and "worker" in r}


def _workers(
    store: Store,
    keys: SessionKeys,
    control: Control | None,
    chunks: list[dict[str, Any]],
    session: SessionRecord,
    now: float,
) -> list[dict[str, Any]]:
    """Every worker the ledger or the records know, with its processes (the report's lanes),
    when it was launched, started and stopped, and how it stopped."""
    ledger = control.ledger if control is not None else {}
    beats = _heartbeats(store, keys)
    processes: dict[str, set[str]] = {}
    for process in [*beats, *(bar["worker"] for bar in chunks)]:
        processes.setdefault(process.rsplit(".", 1)[0], set()).add(process)
    busy: dict[str, float] = {}
    for bar in chunks:
        busy[bar["worker"]] = busy.get(bar["worker"], 0.0) + bar["seconds"]
    workers = []
    for worker_id in sorted(set(ledger) | set(processes)):
        entry = ledger.get(worker_id, {})
        lanes = []
        for process in sorted(processes.get(worker_id, ())):
            beat = beats.get(process, {})
            lanes.append(
                {
                    "id": process,
                    "started": beat.get("started"),
                    "last_heartbeat": beat.get("heartbeat"),
                    "state": beat.get("state"),
                    "stop_reason": beat.get("stop_reason"),
                    "host": beat.get("host"),
                    "items_done": beat.get("items_done"),
                    "cpu_seconds": beat.get("cpu_seconds"),
                    "busy_seconds": busy.get(process, 0.0),
                }
            )
        starts = [lane["started"] for lane in lanes if lane["started"] is not None]
        last = [lane["last_heartbeat"] for lane in lanes if lane["last_heartbeat"] is not None]
        launched = entry.get("launched", min(starts, default=None))
        stopped = entry.get("stopped")
        if stopped is None and lanes and all(lane["state"] == "exited" for lane in lanes):
            stopped = max(last, default=None)
        worker = {
            "id": worker_id,
            "launched": launched,
            "started": min(starts, default=None),
            "stopped": stopped,
            "spot": bool(entry.get("spot", session.spot)),
            "fault": entry.get("fault"),
            "reason": entry.get("reason"),
            "exit_code": entry.get("exit_code"),
            "item_death": bool(entry.get("item_death")),
            "steps": entry.get("steps"),  # the platform's, where known (``platform_steps``)
            "processes": lanes,
        }
        worker["stop"] = stop_kind(worker)
        workers.append(worker)
    _price(workers, session.hourly, now)
    return workers


def add_platform_view(record: dict[str, Any], infos: list[WorkerInfo]) -> None:
    """Add what the backend still tells of the workers (``Fleet.describe``) where the store
    has nothing: how a worker stopped (a worker told to stop writes no fault: it cannot tell
    a Spot interruption from a recall), and its phase now."""
    by_id = {info.worker_id: info for info in infos}
    for worker in record["workers"]:
        info = by_id.get(worker["id"])
        if info is None:
            continue
        for key, value in ledger_stop(info).items():
            if worker[key] is None:
                worker[key] = value
        if worker["stopped"] is None and info.state == "stopped":
            worker["stopped"] = info.stopped_at
        worker["phase"] = info.phase or info.state
        worker["stop"] = stop_kind(worker)


def stop_kind(worker: dict[str, Any]) -> str | None:
    """How a worker stopped, as a report marks it: ``interrupted`` (spot), ``out_of_memory``,
    ``failed_to_start``, ``crashed`` (an exit the worker did not choose), ``stopped`` (it
    left: idle, done, told to), or None while it runs."""
    if worker["fault"] is not None:
        return str(worker["fault"])
    lanes = worker["processes"]
    if worker["stopped"] is None and not (lanes and all(p["state"] == "exited" for p in lanes)):
        return None
    if worker["exit_code"] not in (None, 0) or worker["item_death"]:
        return "crashed"
    if lanes and any(p["state"] != "exited" for p in lanes):
        return "crashed"  # stopped without writing its last heartbeat
    return "stopped"


def _price(workers: list[dict[str, Any]], hourly: dict[str, float] | None, now: float) -> None:
    """Each worker's billed seconds and cost (None where workers cost nothing)."""
    for worker in workers:
        start, stop = worker["launched"], worker["stopped"] or now
        if not hourly or start is None:
            worker["billed_seconds"] = worker["cost"] = None
            continue
        rate = hourly["spot" if worker["spot"] else "on-demand"]
        worker["billed_seconds"] = billed_seconds(start, stop)
        worker["cost"] = task_cost(start, stop, rate)


def _cost(session: SessionRecord, workers: list[dict[str, Any]], now: float) -> dict[str, Any]:
    """The session's cost in total and over time (each worker billed as it runs, its first
    minute at once); None where workers cost nothing."""
    hourly = session.hourly
    priced = [w for w in workers if w["cost"] is not None]
    if not hourly or not priced:
        return {"hourly": hourly, "source": session.prices, "total": None, "series": []}
    start = min(w["launched"] for w in priced)
    end = max(w["stopped"] or now for w in priced)
    series = []
    for step in range(_COST_POINTS + 1):
        at = start + (end - start) * step / _COST_POINTS
        spent = sum(
            task_cost(
                w["launched"],
                min(at, w["stopped"] or now),
                hourly["spot" if w["spot"] else "on-demand"],
            )
            for w in priced
            if w["launched"] <= at
        )
        series.append([at, spent])
    return {
        "hourly": hourly,
        "source": session.prices,
        "total": sum(w["cost"] for w in priced),
        "series": series,
    }


def add_instances(record: dict[str, Any], kept: InstanceReading) -> None:
    """Add the instances the workers ran on (where the backend reports them: EC2), each
    with its line of the bill up to their last read, and make the session's cost theirs, as
    the closing line's is (``cost/instance_bill.py``)."""
    lines = instance_lines(kept.uses, kept.since, kept.read)
    bill = kept.bill()
    record["instances"] = {
        "read": kept.read,
        "count": bill.instances,
        "types": [list(kind) for kind in bill.types],
        "billed_seconds": bill.billed_seconds,
        "utilisation": bill.utilisation,
        "list": [
            {
                "id": line.use.instance_id,
                "type": line.use.instance_type,
                "lifecycle": "spot" if line.use.spot else "on-demand",
                "zone": line.use.zone,
                "vcpus": line.use.vcpus,
                "hourly": line.use.hourly,
                "launched": line.use.launched,
                "terminated": line.use.terminated,
                "share": line.use.share,
                "billed_seconds": line.billed_seconds,
                "cost": line.cost,
                "workers": list(line.use.workers),
            }
            for line in sorted(lines, key=lambda line: line.use.launched)
        ],
    }
    cost = record["cost"]
    cost["total"] = bill.cost
    start = min((line.start for line in lines), default=kept.since)
    cost["series"] = [
        [at, instance_bill([u for u in kept.uses if u.launched <= at], kept.since, at).cost]
        for at in (start + (kept.read - start) * k / _COST_POINTS for k in range(_COST_POINTS + 1))
    ]
