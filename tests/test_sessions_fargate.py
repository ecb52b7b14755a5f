"""Detached sessions on Fargate (the emulator): workers are ECS tasks that outlive the client,
replace each other through the supervisor lease, and leave nothing behind at cleanup."""

from __future__ import annotations

import json
import time
from pathlib import Path

import boto3
import pytest
from click.testing import CliRunner
from scripts import run_client

import starburst
from starburst.cli import main
from starburst.config import Config

pytestmark = pytest.mark.usefixtures("aws")

_SUBMIT = """
    import sys, time
    import starburst

    def slow_square(x, seconds=float(sys.argv[1])):
        time.sleep(seconds)
        return x * x

    session = starburst.session(workers=2, cpu=1, backend="fargate", spot=True, ttl="1h")
    session.map(slow_square, range(int(sys.argv[2])), chunk_size=5)
    print(session.id)
"""


def _quiet(_: str) -> None:
    pass


def slow_square(x: int) -> int:
    time.sleep(0.05)
    return x * x


def _submit_and_exit(tmp_path: Path, seconds_per_item: float, items: int) -> str:
    """Submit from a separate Python process that then exits; return the session id."""
    return run_client(tmp_path, _SUBMIT, seconds_per_item, items)


def _session_tasks(session_id: str, status: str) -> list[str]:
    ecs = boto3.client("ecs")
    return ecs.list_tasks(cluster="starburst", startedBy=session_id, desiredStatus=status)[
        "taskArns"
    ]


def _object(key: str) -> bytes:
    bucket = Config.load().aws["bucket"]
    return bytes(boto3.client("s3").get_object(Bucket=bucket, Key=key)["Body"].read())


def _keys(prefix: str) -> list[str]:
    bucket = Config.load().aws["bucket"]
    answer = boto3.client("s3").list_objects_v2(Bucket=bucket, Prefix=prefix)
    return [item["Key"] for item in answer.get("Contents", [])]


def test_submit_exit_attach_collect_and_cleanup_leaves_no_task_and_no_data(
    aws, tmp_path: Path
) -> None:
    starburst.setup(say=_quiet)
    session_id = _submit_and_exit(tmp_path, 0.0, 100)
    session = starburst.attach(session_id)
    assert session.collect(timeout=120) == [[x * x for x in range(100)]]
    assert session.status().runs[0].done == 100
    assert session_id in {s.session_id for s in starburst.list_sessions()}
    session.cleanup()
    assert _session_tasks(session_id, "RUNNING") == []
    assert _keys(f"sessions/{session_id}/") == [] and _keys(f"data/{session_id}/") == []
    with pytest.raises(starburst.SessionNotFoundError):
        starburst.attach(session_id)


def test_a_spot_interruption_while_detached_is_replaced_by_a_worker(
    aws, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("STARBURST_LEASE", "9")  # a supervision step every 3 s, not 20 s
    starburst.setup(say=_quiet)
    aws.faults.spot_interruption(count=1, after=2.0, grace=0.5)
    session_id = _submit_and_exit(tmp_path, 0.05, 600)  # ~15 s of work for two workers
    launches_by_client = aws.calls["RunTask"]
    # Nobody is attached: a surviving worker holds the supervisor role and launches anew.
    deadline = time.monotonic() + 90
    while aws.calls["RunTask"] == launches_by_client and time.monotonic() < deadline:
        time.sleep(0.5)
    assert aws.calls["RunTask"] > launches_by_client, "no replacement was launched"
    holder = json.loads(_object(f"sessions/{session_id}/supervisor.json"))["worker"]
    assert not holder.startswith("client-")  # a worker (an ECS task id) launched it
    session = starburst.attach(session_id)
    assert session.collect(timeout=180) == [[x * x for x in range(600)]]
    stopped = _session_tasks(session_id, "STOPPED")
    tasks = boto3.client("ecs").describe_tasks(cluster="starburst", tasks=stopped)["tasks"]
    assert sum(task.get("stopCode") == "SpotInterruption" for task in tasks) == 1
    session.cleanup()
    assert _session_tasks(session_id, "RUNNING") == []


def test_ttl_expiry_stops_the_tasks_and_cleanup_removes_everything(aws) -> None:
    starburst.setup(say=_quiet)
    session = starburst.session(workers=1, cpu=1, backend="fargate", ttl=6)
    session.map(slow_square, range(400), chunk_size=5)  # ~20 s of work: more than the ttl
    session.detach()
    deadline = time.monotonic() + 60
    while _session_tasks(session.id, "RUNNING") and time.monotonic() < deadline:
        time.sleep(0.5)
    assert _session_tasks(session.id, "RUNNING") == []  # stopped at the deadline
    assert time.time() >= session.deadline
    with pytest.raises(starburst.SessionExpiredError, match="expired at"):
        starburst.attach(session.id)
    assert {s.session_id: s.state for s in starburst.list_sessions()} == {session.id: "expired"}
    late = starburst.attach(session.id, allow_expired=True)
    assert starburst.PENDING in late.collect(wait=False)[0]
    late.cleanup()
    assert _keys(f"sessions/{session.id}/") == [] and _keys(f"data/{session.id}/") == []


def test_cleanup_removes_a_fargate_session_whose_record_cannot_be_read(aws) -> None:
    starburst.setup(say=_quiet)
    session = starburst.session(workers=1, cpu=1, backend="fargate", ttl="1h")
    session.detach()
    bucket = Config.load().aws["bucket"]
    boto3.client("s3").put_object(
        Bucket=bucket, Key=f"sessions/{session.id}/session.json", Body=b"{not json"
    )
    with pytest.raises(starburst.UnreadableSessionError):
        starburst.attach(session.id)
    cleanup = CliRunner().invoke(main, ["sessions", "cleanup", session.id])
    assert cleanup.exit_code == 0, cleanup.output
    assert _keys(f"sessions/{session.id}/") == [] and _keys(f"data/{session.id}/") == []
