"""The local side of starburst's security model (``docs/security.md``): a detached session's
folders are the user's own whatever the umask, and a session id that comes from outside (a
record in the store, the command line) never becomes a path outside its session's folder.

Real sessions, real worker processes, the real local store; nothing is mocked.
"""

from __future__ import annotations

import json
import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

import starburst
from starburst.cli import main
from starburst.errors import SessionNotFoundError
from starburst.sessions import remove_session


@pytest.fixture(autouse=True)
def data_dir(detached_data_dir: Path) -> Path:
    return detached_data_dir


@pytest.fixture
def open_umask() -> Iterator[None]:
    """The loosest umask: every file and folder is world-writable unless made otherwise."""
    old = os.umask(0)
    try:
        yield
    finally:
        os.umask(old)


def _shared_with_others(folder: Path) -> list[str]:
    """Everything below ``folder`` (and itself) that a group or other user can access."""
    found = []
    for path in [folder, *folder.rglob("*")]:
        mode = path.lstat().st_mode
        if stat.S_IMODE(mode) & 0o077:
            found.append(f"{path.relative_to(folder.parent)} {stat.filemode(mode)}")
    return found


def test_a_detached_session_is_private_to_its_user_whatever_the_umask(
    data_dir: Path, open_umask: None
) -> None:
    session = starburst.session(workers=1, ttl="1h")
    session.map(lambda x: x * x, range(30), chunk_size=5)
    assert session.collect(timeout=60) == [[x * x for x in range(30)]]
    session_folder = data_dir / "store" / "sessions" / session.id
    assert (session_folder / "procs").is_dir() and (session_folder / "logs").is_dir()
    assert _shared_with_others(data_dir) == []


def _forge(data_dir: Path, claimed_id: str) -> str:
    """A real detached session whose record (``session.json``) names another session."""
    session = starburst.session(workers=1, ttl="1h")
    record_path = data_dir / "store" / "sessions" / session.id / "session.json"
    record = json.loads(record_path.read_text())
    record["session_id"] = claimed_id
    record_path.write_text(json.dumps(record))
    session.detach()
    return session.id


@pytest.mark.parametrize("claimed_id", ["../../escaped", "/tmp/escaped", "sb-x/../../escaped"])
def test_a_record_whose_session_id_is_a_path_is_refused(
    data_dir: Path, tmp_path: Path, claimed_id: str
) -> None:
    session_id = _forge(data_dir, claimed_id)
    before = sorted(p for p in tmp_path.rglob("*") if "escaped" in p.name)
    with pytest.raises(SessionNotFoundError, match="names the session"):
        starburst.attach(session_id)
    with pytest.raises(SessionNotFoundError, match="names the session"):
        remove_session(session_id)
    cleanup = CliRunner().invoke(main, ["sessions", "cleanup", session_id])
    assert cleanup.exit_code != 0 and "names the session" in cleanup.output
    after = sorted(p for p in tmp_path.rglob("*") if "escaped" in p.name)
    assert after == before == []
    assert not Path("/tmp/escaped").exists()


def test_a_session_id_from_the_command_line_never_becomes_a_path(data_dir: Path) -> None:
    secret = data_dir / "elsewhere" / "logs"  # = store/sessions/../../elsewhere/logs
    secret.mkdir(parents=True)
    (secret / "private.log").write_text("not a worker log")
    (data_dir / "store" / "sessions").mkdir(parents=True)
    shown = CliRunner().invoke(main, ["logs", "../../elsewhere"])
    assert "not a worker log" not in shown.output
    assert shown.exit_code != 0 and "is not a session id" in shown.output
