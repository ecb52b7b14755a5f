"""The live dashboard (``starburst dashboard``), served on a free local port, watching real
local sessions: their progress as JSON and in a real headless browser, their reports, and
the buttons' actions, which only the dashboard's own page may trigger."""

from __future__ import annotations

import json
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from browser import load, needs_chromium
from click.testing import CliRunner

import starburst
from starburst.cli import main
from starburst.reporting.dashboard import Dashboard

#: Items from this one on wait for the gate file: a session stays running until it opens.
GATED_FROM = 20
ITEMS = 100


def gated(x: int, gate: str) -> int:
    time.sleep(0.005)
    while x >= GATED_FROM and not Path(gate).exists():
        time.sleep(0.02)
    return x


@pytest.fixture
def board(detached_data_dir: Path) -> Iterator[Dashboard]:
    with starburst.dashboard(open_browser=False) as running:
        yield running


@pytest.fixture
def gate(tmp_path: Path) -> Iterator[Path]:
    """The gate file of ``gated`` items: opened (made) when the test ends, if not before."""
    path = tmp_path / "gate"
    yield path
    path.touch()


def _gated_session(gate: Path) -> starburst.Session:
    """A running local session of ``ITEMS`` items, held at ``GATED_FROM`` until ``gate``."""
    session = starburst.session(workers=2, backend="local", ttl="10m")
    session.map(gated, range(ITEMS), [str(gate)] * ITEMS, chunk_size=5)
    return session


def _request(
    board: Dashboard, path: str, body: dict[str, Any] | None = None, **headers: str
) -> tuple[int, Any]:
    """GET ``path`` (or POST ``body``) on the dashboard: its status and its answer (JSON
    decoded when it is JSON)."""
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(board.url.rstrip("/") + path, data=data, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=60) as answer:
            status, kind, raw = answer.status, answer.headers["Content-Type"], answer.read()
    except urllib.error.HTTPError as refused:
        status, kind, raw = refused.code, refused.headers["Content-Type"], refused.read()
    text = raw.decode()
    return status, json.loads(text) if kind.startswith("application/json") else text


def _post(board: Dashboard, session_id: str, action: str, **headers: str) -> tuple[int, Any]:
    return _request(board, f"/api/sessions/{session_id}/{action}", {}, **headers)


def _rows(board: Dashboard) -> dict[str, dict[str, Any]]:
    status, answer = _request(board, "/api/sessions")
    assert status == 200, answer
    return {row["session_id"]: row for row in answer["sessions"]}


def _wait_for_row(
    board: Dashboard, session_id: str, wanted: Callable[[dict[str, Any]], bool]
) -> dict[str, Any]:
    """The session's row once ``wanted`` holds for it (polling, as the page does)."""
    deadline, row = time.monotonic() + 60, None
    while time.monotonic() < deadline:
        row = _rows(board).get(session_id)
        if row is not None and wanted(row):
            return row
        time.sleep(0.1)
    raise AssertionError(f"the dashboard never showed what was awaited: {row}")


def test_the_sessions_endpoint_shows_a_sessions_progress_rising(
    board: Dashboard, gate: Path
) -> None:
    session = _gated_session(gate)
    held = _wait_for_row(board, session.id, lambda row: row["finished"] >= GATED_FROM)
    assert held["state"] == "running" and held["items"] == ITEMS
    assert held["finished"] == GATED_FROM  # the gated items wait
    assert held["phases"]["running"] + held["phases"]["starting"] == 2
    assert held["backend"] == "local" and held["cost"] is None  # local workers cost nothing
    assert held["eta_seconds"] is not None and held["deadline"] > held["now"]
    gate.touch()
    seen = [held["finished"]]
    row = held
    while row["state"] == "running":
        row = _wait_for_row(board, session.id, lambda r: r["finished"] != seen[-1])
        seen.append(row["finished"])
    assert seen == sorted(seen) and seen[-1] == ITEMS and row["state"] == "done", seen
    assert row["phases"]["running"] + row["phases"]["stopped"] == 2


def _shown(board: Dashboard, session_id: str) -> tuple[str, int, int]:
    """The state and progress the page shows for the session in a real browser, after its
    script has run; the page logs no error."""
    page = load(board.url, dom=True, budget_ms=3000)
    assert not page.problems, page.console
    row = re.search(rf'<tr data-session="{session_id}">(.*?)</tr>', page.dom, re.S)
    assert row is not None, page.dom[-3000:]
    state = re.search(r'<td class="state[^"]*">(\w+)', row.group(1))
    progress = re.search(r'data-finished="(\d+)" data-items="(\d+)"', row.group(1))
    assert state is not None and progress is not None, row.group(1)
    assert f'href="/session/{session_id}/report"' in row.group(1)
    return state.group(1), int(progress.group(1)), int(progress.group(2))


@needs_chromium
def test_the_page_shows_a_sessions_progress_changing_while_it_runs(
    board: Dashboard, gate: Path
) -> None:
    session = _gated_session(gate)
    _wait_for_row(board, session.id, lambda row: row["finished"] > 0)
    state, first, items = _shown(board, session.id)
    assert state == "running" and 0 < first <= GATED_FROM and items == ITEMS
    status, report = _request(board, f"/session/{session.id}/report")
    assert status == 200 and f"starburst run {session.id}" in report
    assert 'http-equiv="refresh"' in report  # a running session's report reloads itself
    gate.touch()
    _wait_for_row(board, session.id, lambda row: row["finished"] > first)
    _, second, _ = _shown(board, session.id)
    assert second > first
    _wait_for_row(board, session.id, lambda row: row["state"] == "done")
    status, report = _request(board, f"/session/{session.id}/report")
    assert status == 200 and 'http-equiv="refresh"' not in report  # done: it stays still


def test_cancel_needs_the_pages_token_and_origin(board: Dashboard, gate: Path) -> None:
    session = _gated_session(gate)
    token = {"X-Starburst-Token": board.token}
    status, answer = _post(board, session.id, "cancel")
    assert status == 403 and "token" in answer["error"]
    status, answer = _post(board, session.id, "cancel", **token, Origin="http://example.com")
    assert status == 403 and "its own pages only" in answer["error"]
    status, answer = _request(board, "/api/sessions", Host="rebound.example.com")
    assert status == 403  # a page whose name was made to point here cannot read either
    assert [run.state for run in session.status().runs] == ["running"]

    status, answer = _post(board, session.id, "cancel", **token, Origin=board.url.rstrip("/"))
    assert status == 200, answer
    assert answer["message"] == f"{session.id}: 1 running run(s) cancelled; what is done stays"
    assert [run.state for run in session.status().runs] == ["cancelled"]


def test_extend_and_clean_up_say_what_they_did_or_why_not(board: Dashboard) -> None:
    session = starburst.session(workers=1, backend="local", ttl="10m")
    token = {"X-Starburst-Token": board.token}
    before = _rows(board)[session.id]["deadline"]
    status, answer = _request(board, f"/api/sessions/{session.id}/extend", {"by": "1h"}, **token)
    assert status == 200 and answer["message"].startswith(f"{session.id} now runs until ")
    assert _rows(board)[session.id]["deadline"] >= before + 3600
    status, answer = _request(board, f"/api/sessions/{session.id}/extend", {"by": "soon"}, **token)
    assert status == 400 and "soon" in answer["error"]

    status, answer = _post(board, session.id, "cleanup", **token)
    assert status == 200 and answer["message"] == f"{session.id}: workers stopped, data deleted"
    assert session.id not in _rows(board)
    status, answer = _post(board, session.id, "cancel", **token)
    assert status == 404 and f"no session {session.id}" in answer["error"]
    status, page = _request(board, f"/session/{session.id}/report")
    assert status == 404 and f"no session {session.id}" in page


def test_the_dashboard_refuses_to_serve_beyond_this_machine(detached_data_dir: Path) -> None:
    with pytest.raises(starburst.ConfigurationError, match=r"host='0\.0\.0\.0' is refused"):
        starburst.dashboard(host="0.0.0.0", open_browser=False)
    shown = CliRunner().invoke(main, ["dashboard", "--host", "192.168.1.5", "--no-browser"])
    assert shown.exit_code == 1
    assert "the dashboard serves this machine only, so host='192.168.1.5' is refused" in (
        shown.output
    )
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        shown = CliRunner().invoke(main, ["dashboard", "--port", str(port), "--no-browser"])
    assert shown.exit_code == 1 and f"port {port} on 127.0.0.1 is in use" in shown.output


def test_the_command_prints_its_address_and_serves_until_interrupted(
    detached_data_dir: Path,
) -> None:
    server = subprocess.Popen(
        [sys.executable, "-m", "starburst", "dashboard", "--no-browser"],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert server.stdout is not None
        line = server.stdout.readline()
        url = re.search(r"starburst dashboard at (http://127\.0\.0\.1:\d+/)", line)
        assert url is not None, line
        with urllib.request.urlopen(url.group(1) + "api/sessions", timeout=60) as answer:
            assert json.load(answer) == {"sessions": []}
    finally:
        server.send_signal(signal.SIGINT)
        assert server.wait(timeout=30) == 0
