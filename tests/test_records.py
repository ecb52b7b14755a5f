"""Stored records are read forward-compatibly, and a bad one damages only its own session.

Sessions are real detached local sessions; their records are then edited on disk as a newer
starburst, a crash or a stray tool would leave them.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

import starburst
from starburst.cli import main
from starburst.detached import remove_session
from starburst.engine.claims import Claim, claim_fresh, take_over
from starburst.engine.keys import SessionKeys
from starburst.store import LocalStore


@pytest.fixture
def store_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("STARBURST_DATA_DIR", str(tmp_path / "data"))
    return tmp_path / "data" / "store"


def _open_session() -> str:
    session = starburst.session(workers=1, ttl="1h")
    return session.id


def _edit(path: Path, change) -> None:
    record = json.loads(path.read_text())
    change(record)
    path.write_text(json.dumps(record))


def test_records_carry_their_format(store_root: Path) -> None:
    session_id = _open_session()
    folder = store_root / "sessions" / session_id
    assert json.loads((folder / "session.json").read_text())["format"] == 1
    assert json.loads((folder / "control.json").read_text())["format"] == 1
    remove_session(session_id)


def test_a_record_with_keys_from_a_newer_starburst_is_read(store_root: Path) -> None:
    session_id = _open_session()
    folder = store_root / "sessions" / session_id
    _edit(folder / "session.json", lambda r: r.update(added_later={"x": 1}))
    _edit(folder / "control.json", lambda r: r.update(added_later=[1, 2]))
    status = starburst.attach(session_id).status()
    assert status.state == "idle" and status.workers_requested == 1
    remove_session(session_id)


def test_a_damaged_or_newer_session_shows_alone_and_can_be_cleaned_up(store_root: Path) -> None:
    good, garbage, newer, missing = (_open_session() for _ in range(4))
    sessions = store_root / "sessions"
    (sessions / garbage / "session.json").write_text("{not json")
    _edit(sessions / newer / "session.json", lambda r: r.update(format=99))
    _edit(sessions / missing / "session.json", lambda r: r.pop("timings"))

    found = {status.session_id: status for status in starburst.list_sessions()}
    assert found[good].state == "idle"
    assert found[garbage].state == "damaged" and "not JSON" in found[garbage].problem
    assert found[newer].state == "damaged" and "newer starburst" in found[newer].problem
    assert found[missing].state == "damaged" and "timings" in found[missing].problem

    listing = CliRunner().invoke(main, ["sessions", "ls"])
    assert listing.exit_code == 0, listing.output
    assert good in listing.output and "damaged" in listing.output

    with pytest.raises(starburst.UnreadableSessionError, match="upgrade"):
        starburst.attach(newer)
    for session_id in (garbage, newer, missing):
        cleanup = CliRunner().invoke(main, ["sessions", "cleanup", session_id])
        assert cleanup.exit_code == 0, cleanup.output
        assert not (sessions / session_id).exists()
    assert [status.session_id for status in starburst.list_sessions()] == [good]
    remove_session(good)


def test_a_claim_that_cannot_be_read_counts_as_expired(tmp_path: Path, caplog) -> None:
    store = LocalStore(tmp_path)
    keys = SessionKeys("sb-20260101-000000-abcdef").run("r00000")
    assert claim_fresh(store, keys, 0, "w1.0", lease=60.0) is not None
    assert take_over(store, keys, 0, "w2.0", lease=60.0, max_attempts=3) is None  # held
    store.put(keys.claim(0), b"\x00garbage")
    lease = take_over(store, keys, 0, "w2.0", lease=60.0, max_attempts=3)
    assert lease is not None and lease.worker == "w2.0"
    assert "taking it as expired" in caplog.text
    assert Claim.decode(store.get(keys.claim(0))).worker == "w2.0"
