"""The control record: several writers never lose each other's changes; workers read it."""

from __future__ import annotations

import pytest

from starburst.engine.control import Control, ControlWriter
from starburst.engine.keys import SessionKeys
from starburst.engine.manifest import RunManifest
from starburst.engine.session_record import SessionRecord, Timings
from starburst.store import NotFound, Store

KEYS = SessionKeys("sb-test")


def test_two_writers_keep_both_changes(store: Store) -> None:
    first, second = ControlWriter(store, KEYS), ControlWriter(store, KEYS)
    first.create(lambda control: control.roster.update({"task-a": 0}))
    second.change(lambda control: control.roster.update({"task-b": 1}))  # first's is newer
    first.change(lambda control: control.requeued.setdefault("r00000", {}).update({"3": "a"}))
    control = Control.load(store, KEYS)
    assert control.roster == {"task-a": 0, "task-b": 1}
    assert control.requeued_chunks("r00000") == {3: "a"}


def test_the_session_and_runs_travel_whole_and_heartbeats_advance(store: Store) -> None:
    writer = ControlWriter(store, KEYS)
    manifest = RunManifest("r00000", "star", retries=2, seed=7, n_chunks=12)
    session = SessionRecord(
        "sb-test", "local", 2, 1.0, None, Timings.for_store(store, attached=True)
    )

    def edit(control: Control) -> None:
        control.session, control.runs["r00000"] = session, manifest

    writer.create(edit)
    before = Control.load(store, KEYS).heartbeat
    writer.beat()
    control = Control.load(store, KEYS)
    assert control.heartbeat >= before
    assert control.runs["r00000"] == manifest
    assert control.session == session  # timings and deadline: all a worker needs to start


def test_a_change_never_brings_back_a_removed_record(store: Store) -> None:
    ControlWriter(store, KEYS).create(lambda control: control.roster.update({"a": 0}))
    late = ControlWriter(store, KEYS)
    late.change(lambda control: control.roster.update({"b": 1}))
    store.delete(KEYS.control)  # the session is removed
    with pytest.raises(NotFound):
        late.change(lambda control: control.roster.update({"c": 2}))
    with pytest.raises(NotFound):
        ControlWriter(store, KEYS).change(lambda control: None)
    assert not list(store.list(KEYS.control))


def test_a_closed_session_has_no_control_record(store: Store) -> None:
    with pytest.raises(NotFound):
        Control.load(store, KEYS)
