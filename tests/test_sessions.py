"""Detached sessions on the local backend: submit, leave, attach from another process, collect.

Workers are real processes in their own process sessions; the client that submits is a real
process that exits. Nothing here is mocked.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from proc import alive
from scripts import run_client

import starburst
from starburst.cli import main
from starburst.errors import (
    ConfigurationError,
    RemoteTraceback,
    RunTimeoutError,
    SessionExpiredError,
    SessionNotFoundError,
)


@pytest.fixture(autouse=True)
def data_dir(detached_data_dir: Path) -> Path:
    """Each test's sessions live in its own folder; whatever a test leaves is removed."""
    return detached_data_dir


def _session_dir(data_dir: Path, session_id: str) -> Path:
    return data_dir / "store" / "sessions" / session_id


def _worker_pids(data_dir: Path, session_id: str) -> dict[str, int]:
    """Worker id -> pid, from the process records the local backend keeps."""
    pids = {}
    for record in (_session_dir(data_dir, session_id) / "procs").glob("w*.json"):
        text = record.read_text()
        if text:
            pids[record.stem] = json.loads(text)["pid"]
    return pids


def _control(data_dir: Path, session_id: str) -> dict[str, Any]:
    return dict(json.loads((_session_dir(data_dir, session_id) / "control.json").read_text()))


def _wait_for(condition: Callable[[], object], timeout: float = 30.0, what: str = "it") -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


_SUBMIT = """
    import sys, time
    import starburst

    def slow_square(x, seconds=float(sys.argv[1])):
        time.sleep(seconds)
        return x * x

    session = starburst.session(workers=2, ttl="1h")
    session.map(slow_square, range(int(sys.argv[2])), chunk_size=5)
    session.submit(sum, [1, 2, 3])
    print(session.id)
"""


def _submit_and_exit(tmp_path: Path, seconds_per_item: float, items: int) -> str:
    """Submit from a separate Python process that then exits; return the session id."""
    return run_client(tmp_path, _SUBMIT, seconds_per_item, items)


def slow_square(x: int) -> int:
    time.sleep(0.02)
    return x * x


def test_submit_exit_attach_from_a_new_process_and_collect_every_result_once(
    tmp_path: Path, data_dir: Path
) -> None:
    session_id = _submit_and_exit(tmp_path, 0.01, 300)
    session = starburst.attach(session_id)
    results = session.collect(wait=True, timeout=120)
    assert results == [[x * x for x in range(300)], 6]  # submission order, input order
    assert session.collect() == results  # the same again
    assert session.collect(wait=False) == results  # and without waiting, once done
    status = session.status()
    assert [(r.kind, r.done, r.failed, r.pending) for r in status.runs] == [
        ("map", 300, 0, 0),
        ("call", 1, 0, 0),
    ]
    assert status.state == "done"


def test_runs_finished_with_no_client_attached_leave_the_control_record(
    tmp_path: Path, data_dir: Path
) -> None:
    """The supervising worker drops finished runs from what workers read at every step."""
    session_id = _submit_and_exit(tmp_path, 0.01, 40)

    def finished() -> bool:
        control = _control(data_dir, session_id)
        return not control["runs"] and len(control["finished"]) == 2

    _wait_for(finished, what="both finished runs to leave the control record")
    results = starburst.attach(session_id).collect(wait=True, timeout=60)
    assert results == [[x * x for x in range(40)], 6]


@pytest.mark.parametrize("signum", [signal.SIGKILL, signal.SIGSTOP], ids=["killed", "hung"])
def test_a_worker_killed_or_hung_while_no_client_is_attached_is_replaced_and_the_work_completes(
    tmp_path: Path, data_dir: Path, signum: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("STARBURST_LEASE", "3")  # (the client's): silent for 3 s is hung
    session_id = _submit_and_exit(tmp_path, 0.05, 200)  # ~5 s of work for two workers
    workers = _session_dir(data_dir, session_id) / "workers"
    _wait_for(lambda: list(workers.glob("w0000.*")), what="the first worker's heartbeat")
    killed_at = time.time()
    victim = _worker_pids(data_dir, session_id)["w0000"]
    os.kill(victim, signum)
    # No client is attached: the surviving worker supervises, and launches a replacement.
    _wait_for(lambda: "w0002" in _worker_pids(data_dir, session_id), what="a replacement")
    ledger = _control(data_dir, session_id)["ledger"]
    assert sorted(ledger) == ["w0000", "w0001", "w0002"]  # one replacement, no more
    assert ledger["w0000"]["stopped"] is not None and ledger["w0001"]["stopped"] is None
    assert ledger["w0002"]["launched"] > killed_at
    holder = json.loads((_session_dir(data_dir, session_id) / "supervisor.json").read_text())
    assert holder["worker"] == "w0001"  # the survivor, not a client, launched it
    session = starburst.attach(session_id)
    results = session.collect(wait=True, timeout=120)
    assert results == [[x * x for x in range(200)], 6]
    log = (_session_dir(data_dir, session_id) / "logs" / "w0002.log").read_text()
    assert "starting 1 processes" in log  # the replacement really ran
    assert not alive(victim)  # (a hung worker is stopped, not only replaced)


def test_collect_without_waiting_mid_run_is_a_consistent_partial_result(data_dir: Path) -> None:
    session = starburst.session(workers=2, ttl="1h")
    session.map(slow_square, range(600), chunk_size=4)  # ~6 s of work
    _wait_for(lambda: session.status().runs[0].done >= 20, what="some results")
    first = session.collect(wait=False)[0]
    assert len(first) == 600
    done = {i for i, value in enumerate(first) if value is not starburst.PENDING}
    assert 20 <= len(done) < 600
    assert all(first[i] == i * i for i in done)  # never a wrong or half-written value
    assert all(i // 4 * 4 + k in done for i in done for k in range(4))  # whole chunks only
    later = session.collect(wait=False)[0]
    assert all(later[i] == first[i] for i in done)  # what was done stays done
    assert session.collect(wait=True, timeout=120) == [[x * x for x in range(600)]]


def test_a_timeout_raises_with_what_is_done(data_dir: Path) -> None:
    session = starburst.session(workers=1, ttl="1h")
    session.map(slow_square, range(400), chunk_size=5)
    with pytest.raises(
        RunTimeoutError, match=r"collect timed out after 0.5 s with \d+ of 400"
    ) as info:
        session.collect(timeout=0.5)
    (partial,) = info.value.starburst_results
    assert partial.n_items == 400
    assert all(value == index * index for index, value in partial.done.items())
    assert len(partial.done) + len(partial.pending) == 400


def flaky(x: int) -> int:
    if x % 7 == 3:
        raise ValueError(f"bad item {x}")
    return x


def test_failures_are_recorded_per_item_with_their_remote_traceback(data_dir: Path) -> None:
    session = starburst.session(workers=2, ttl="1h")
    session.map(flaky, range(50))
    failing = [x for x in range(50) if x % 7 == 3]
    results = session.collect(errors="return", timeout=120)[0]
    assert [i for i, r in enumerate(results) if isinstance(r, ValueError)] == failing
    assert isinstance(results[3].__cause__, RemoteTraceback)
    assert "bad item 3" in str(results[3].__cause__)
    run = session.status().runs[0]
    assert (run.done, run.failed, run.pending) == (50 - len(failing), len(failing), 0)
    with pytest.raises(ValueError, match="bad item 3") as info:
        session.collect()
    assert set(info.value.starburst_results[0].failed) == set(failing)


def slow_flaky(x: int) -> int:
    time.sleep(0.1)
    if x % 5 == 0:
        raise ValueError(f"bad item {x}")
    return x


def test_status_and_collect_count_the_parts_of_a_chunk_still_running(data_dir: Path) -> None:
    session = starburst.session(workers=1, ttl="1h")
    session.map(slow_flaky, range(60), chunk_size=60)  # one chunk of about 6 s

    def midway() -> bool:
        run = session.status().runs[0]
        return run.done + run.failed >= 10 and run.pending > 0

    _wait_for(midway, timeout=60, what="the finished items of a chunk still running")
    run = session.status().runs[0]  # items come in order: the parts hold 0 .. finished - 1
    finished = run.done + run.failed
    assert run.pending == 60 - finished and finished < 60
    assert run.failed == len([x for x in range(finished) if x % 5 == 0])
    results = session.collect(wait=False, errors="return")[0]
    landed = [i for i, value in enumerate(results) if value is not starburst.PENDING]
    assert landed[:finished] == list(range(finished))  # what status counts, collect has
    assert all(results[i] == i for i in landed if i % 5)


def square_but_13(x: int) -> int:
    if x == 13:
        os._exit(3)
    return x * x


def test_an_item_that_kills_its_worker_fails_alone_in_a_detached_session(data_dir: Path) -> None:
    """With one worker, the deaths the culprit causes (its attempts) do not stall the session."""
    session = starburst.session(workers=1, ttl="1h")
    session.map(square_but_13, range(20))
    results = session.collect(errors="return", timeout=120)[0]
    assert [i for i, r in enumerate(results) if isinstance(r, BaseException)] == [13]
    message = str(results[13])
    assert "item 13 (input: 13)" in message and "exit code 3" in message
    assert f"`starburst logs {session.id}`" in message  # its logs stay with the session
    assert session.status().state == "done"


def test_ttl_expiry_stops_the_workers_and_attach_says_so(data_dir: Path) -> None:
    session = starburst.session(workers=2, ttl=3)
    session.map(slow_square, range(2000), chunk_size=5)  # ~20 s of work: more than the ttl
    _wait_for(lambda: len(_worker_pids(data_dir, session.id)) == 2, what="the workers")
    pids = _worker_pids(data_dir, session.id).values()
    _wait_for(lambda: not any(alive(pid) for pid in pids), timeout=20, what="workers to stop")
    session.detach()
    assert time.time() >= session.deadline
    with pytest.raises(SessionExpiredError, match=r"expired at .*allow_expired=True"):
        starburst.attach(session.id)
    late = starburst.attach(session.id, allow_expired=True)
    assert late.status().state == "expired"
    partial = late.collect(wait=False, errors="return")[0]
    assert starburst.PENDING in partial  # the work did not finish in time
    with pytest.raises(SessionExpiredError, match="reached its deadline") as info:
        late.collect(wait=True)  # never hangs on a session that cannot finish
    assert info.value.starburst_results[0].n_items == 2000


def test_extend_moves_the_deadline_within_the_limit(data_dir: Path) -> None:
    session = starburst.session(workers=1, ttl="1h")
    before = session.deadline
    assert session.extend("2h") == pytest.approx(before + 7200)
    assert starburst.attach(session.id).deadline == pytest.approx(before + 7200)
    with pytest.raises(ConfigurationError, match="at most 6 days"):
        session.extend("7d")


def test_cleanup_leaves_no_worker_and_no_data(data_dir: Path) -> None:
    session = starburst.session(workers=2, ttl="1h")
    session.map(slow_square, range(1000), chunk_size=5)
    _wait_for(lambda: len(_worker_pids(data_dir, session.id)) == 2, what="the workers")
    pids = list(_worker_pids(data_dir, session.id).values())
    assert all(alive(pid) for pid in pids)
    starburst.attach(session.id).cleanup()
    _wait_for(lambda: not any(alive(pid) for pid in pids), timeout=10, what="workers to stop")
    store = data_dir / "store"
    assert not (store / "sessions" / session.id).exists()
    assert not (store / "data" / session.id).exists()
    with pytest.raises(SessionNotFoundError, match=f"no session {session.id}"):
        starburst.attach(session.id)


def test_unknown_and_malformed_session_ids_give_clear_errors(data_dir: Path) -> None:
    with pytest.raises(SessionNotFoundError, match="no session sb-20200101-000000-abcdef"):
        starburst.attach("sb-20200101-000000-abcdef")
    with pytest.raises(SessionNotFoundError, match="is not a session id"):
        starburst.attach("my-job")


def test_bad_ttl_is_refused_before_anything_starts(data_dir: Path) -> None:
    with pytest.raises(ConfigurationError, match="ttl='soon' is not a duration"):
        starburst.session(ttl="soon")
    with pytest.raises(ConfigurationError, match="longer than a session may live"):
        starburst.session(ttl="30d")
    assert starburst.list_sessions() == []


def test_list_sessions_shows_states_that_match_reality(data_dir: Path) -> None:
    idle = starburst.session(workers=1, ttl="1h")
    done = starburst.session(workers=1, ttl="1h")
    done.map(slow_square, range(10))
    done.collect(timeout=60)
    busy = starburst.session(workers=1, ttl="1h")
    busy.map(slow_square, range(5000), chunk_size=5)
    _wait_for(lambda: busy.status().workers == 1, what="the busy session's worker")
    states = {s.session_id: s.state for s in starburst.list_sessions()}
    assert states == {idle.id: "idle", done.id: "done", busy.id: "running"}
    listed = {s.session_id: s for s in starburst.list_sessions()}
    assert listed[done.id].finished == listed[done.id].items == 10
    busy.cleanup()
    assert busy.id not in {s.session_id for s in starburst.list_sessions()}


def test_the_cli_lists_shows_collects_and_cleans_up(tmp_path: Path, data_dir: Path) -> None:
    session_id = _submit_and_exit(tmp_path, 0.0, 20)
    starburst.attach(session_id).collect(timeout=60)
    runner = CliRunner()
    listing = runner.invoke(main, ["sessions", "ls"])
    assert listing.exit_code == 0 and session_id in listing.output and "done" in listing.output
    status = runner.invoke(main, ["sessions", "status", session_id, "--json"])
    assert json.loads(status.output)["runs"][0]["done"] == 20
    out = tmp_path / "results.json"
    collected = runner.invoke(main, ["sessions", "collect", session_id, "-o", str(out)])
    assert collected.exit_code == 0, collected.output
    assert json.loads(out.read_text()) == [[x * x for x in range(20)], 6]
    logs = runner.invoke(main, ["logs", session_id])
    assert "== worker w0000" in logs.output and session_id in logs.output
    cleaned = runner.invoke(main, ["sessions", "cleanup", session_id])
    assert cleaned.exit_code == 0 and "data deleted" in cleaned.output
    assert runner.invoke(main, ["sessions", "ls"]).output.strip() == "no sessions"
    missing = runner.invoke(main, ["sessions", "status", session_id])
    assert missing.exit_code != 0 and f"no session {session_id}" in missing.output


def test_the_supervisor_stops_a_detached_session_at_its_cost_cap(data_dir: Path) -> None:
    session = starburst.session(workers=1, ttl="1h")
    session.map(slow_square, range(5000), chunk_size=5)
    _wait_for(lambda: session.status().workers == 1, what="the worker")
    # Price the session at $1 a second with a $100 cap, and let its worker have run 200 s.
    from starburst.engine.control import ControlWriter
    from starburst.engine.keys import SessionKeys
    from starburst.store import LocalStore

    writer = ControlWriter(LocalStore(data_dir / "store"), SessionKeys(session.id))

    def price(control) -> None:  # type: ignore[no-untyped-def]
        control.session.hourly = {"on-demand": 3600.0, "spot": 3600.0}
        control.session.max_cost = 100.0
        for entry in control.ledger.values():
            entry["launched"] -= 200

    writer.change(price)
    pids = list(_worker_pids(data_dir, session.id).values())
    _wait_for(lambda: session.status().state == "capped", what="the cap")
    _wait_for(lambda: not any(alive(pid) for pid in pids), timeout=20, what="workers to stop")
    cost = session.status().cost
    assert cost == pytest.approx(200.0, abs=20.0)
    time.sleep(2)
    assert session.status().cost == cost  # the workers stopped: so did the cost
    with pytest.raises(SessionExpiredError, match="reached its max_cost") as info:
        session.collect(wait=True)
    assert len(info.value.starburst_results[0].pending) > 0


def test_old_local_sessions_are_swept_like_the_bucket_expires_them(data_dir: Path) -> None:
    old = starburst.session(workers=1, ttl="1h")
    record = data_dir / "store" / "sessions" / old.id / "session.json"
    aged = json.loads(record.read_text())
    aged["created"] -= 8 * 86400
    record.write_text(json.dumps(aged))
    new = starburst.session(workers=1, ttl="1h")  # a new session sweeps the old ones
    assert {s.session_id for s in starburst.list_sessions()} == {new.id}


def test_runs_submitted_after_attaching_get_their_own_ids(
    tmp_path: Path, data_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    session_id = _submit_and_exit(tmp_path, 0.0, 50)
    again = starburst.attach(session_id)
    run = again.map(slow_square, range(10, 20))
    assert run.id == "r00002"  # after the two runs the first client submitted
    results = again.collect(timeout=120, progress=True)
    assert f"collecting {session_id}" in capsys.readouterr().err  # the progress display
    assert results == [[x * x for x in range(50)], 6, [x * x for x in range(10, 20)]]
    assert run.result() == [x * x for x in range(10, 20)]


def test_an_empty_map_is_a_finished_run(data_dir: Path) -> None:
    session = starburst.session(workers=1, ttl="1h")
    empty = session.map(slow_square, [])
    assert empty.done() and empty.result() == []
    assert session.status().runs[0].items == 0
    assert session.collect(timeout=30) == [[]]
    assert {s.session_id: s.state for s in starburst.list_sessions()} == {session.id: "done"}


def test_a_run_stored_but_never_announced_is_picked_up(data_dir: Path) -> None:
    """A client killed between storing a sealed run and announcing it: the supervisor
    announces it, and the work completes."""
    session = starburst.session(workers=1, ttl="1h")
    session.map(slow_square, range(20))
    session.collect(timeout=60)
    from starburst.engine.control import ControlWriter
    from starburst.engine.keys import SessionKeys
    from starburst.store import LocalStore

    store = LocalStore(data_dir / "store")
    keys = SessionKeys(session.id)
    run = session.map(slow_square, range(20, 40))
    ControlWriter(store, keys).change(lambda control: control.runs.pop(run.id, None))
    assert run.result(timeout=60) == [x * x for x in range(20, 40)]


def test_a_finished_session_past_its_deadline_is_still_done(data_dir: Path) -> None:
    session = starburst.session(workers=1, ttl=2)
    session.map(slow_square, range(10))
    assert session.collect(timeout=30) == [[x * x for x in range(10)]]
    _wait_for(lambda: time.time() > session.deadline, what="the deadline")
    assert session.status().state == "done"  # `sessions cleanup --expired` leaves it


def test_a_cancelled_run_stops_and_collect_says_so(data_dir: Path) -> None:
    session = starburst.session(workers=1, ttl="1h")
    run = session.map(slow_square, range(3000), chunk_size=5)  # ~60 s of work
    _wait_for(lambda: run.status().done >= 10, what="some results")
    run.cancel()
    assert run.status().state == "cancelled"
    time.sleep(1.5)  # a chunk in hand may still land; then nothing more
    settled = run.status().done
    time.sleep(1.5)
    assert run.status().done == settled < 3000  # the worker takes no more of its chunks
    with pytest.raises(starburst.CancelledError, match=f"run {run.id} was cancelled") as info:
        run.result()
    assert len(info.value.starburst_results[0].done) >= 10
    after = session.map(slow_square, range(5))  # the session goes on
    assert after.result(timeout=60) == [x * x for x in range(5)]


_ATTACH_AND_SUBMIT = """
    import sys
    import starburst

    def cube(x):
        return x ** 3

    session = starburst.attach(sys.argv[1])
    print(session.map(cube, range(int(sys.argv[2]), int(sys.argv[2]) + 30)).id)
"""


def test_two_clients_submitting_at_once_get_separate_runs(tmp_path: Path, data_dir: Path) -> None:
    session = starburst.session(workers=2, ttl="1h")
    scripts = []
    for n, start in enumerate((0, 100)):
        script = tmp_path / f"client{n}.py"
        script.write_text(textwrap.dedent(_ATTACH_AND_SUBMIT))
        scripts.append([sys.executable, str(script), session.id, str(start)])
    clients = [subprocess.Popen(c, stdout=subprocess.PIPE, text=True) for c in scripts]
    ids = [client.communicate(timeout=120)[0].strip() for client in clients]
    assert all(client.returncode == 0 for client in clients)
    assert sorted(ids) == ["r00000", "r00001"]  # one id each, whoever came first
    by_start = {run[0]: run for run in session.collect(timeout=120)}
    assert by_start == {0: [x**3 for x in range(30)], 100**3: [x**3 for x in range(100, 130)]}
    first, second = starburst.attach(session.id), starburst.attach(session.id)
    one, two = first.map(slow_square, range(3)), second.map(slow_square, range(3, 6))
    assert (one.id, two.id) == ("r00002", "r00003")  # the second found r00002 taken
    assert two.result(timeout=60) == [9, 16, 25] and one.result(timeout=60) == [0, 1, 4]


def test_a_session_let_go_on_its_own_monitor_thread_detaches_cleanly(data_dir: Path) -> None:
    """The collector may finalize a forgotten Session on the driver's monitor thread."""
    import threading

    from starburst.threads import BareThread

    driver = starburst.session(workers=1, ttl="1h")._driver
    driver._closed.set()  # stop the real monitor, then close from a thread standing in for it
    driver._monitor.join()
    driver._closed.clear()
    failures: list[BaseException] = []
    standing_in = threading.Event()

    def close_as_the_monitor() -> None:
        standing_in.wait()
        try:
            driver.close()
        except BaseException as exc:
            failures.append(exc)

    driver._monitor = BareThread(close_as_the_monitor)
    standing_in.set()
    assert driver._monitor.join(timeout=30), "close() on the monitor thread never returned"
    assert failures == [] and driver.closed
