"""The control record: several writers never lose each other's changes; workers read it."""

from __future__ import annotations

import pytest

from starburst.engine.control import Control, ControlWriter
from starburst.engine.layout import SessionKeys
from starburst.engine.manifest import RunManifest
from starburst.store import NotFound, Store

KEYS = SessionKeys("sb-test")


def test_two_writers_keep_both_changes(store: Store) -> None:
    first, second = ControlWriter(store, KEYS), ControlWriter(store, KEYS)
    first.change(lambda control: control.roster.update({"task-a": 0}))
    second.change(lambda control: control.roster.update({"task-b": 1}))  # first's is newer
    first.change(lambda control: control.requeued.setdefault("r00000", {}).update({"3": "a"}))
    control = Control.load(store, KEYS)
    assert control.roster == {"task-a": 0, "task-b": 1}
    assert control.requeued_chunks("r00000") == {3: "a"}


def test_runs_travel_as_manifests_and_heartbeats_advance(store: Store) -> None:
    writer = ControlWriter(store, KEYS)
    manifest = RunManifest("r00000", "star", retries=2, seed=7, n_chunks=12)
    writer.change(lambda control: control.runs.__setitem__("r00000", manifest))
    before = Control.load(store, KEYS).heartbeat
    writer.beat()
    control = Control.load(store, KEYS)
    assert control.heartbeat >= before
    assert control.runs["r00000"] == manifest


def test_a_closed_session_has_no_control_record(store: Store) -> None:
    with pytest.raises(NotFound):
        Control.load(store, KEYS)
