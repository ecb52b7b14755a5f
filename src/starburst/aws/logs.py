"""Worker logs in CloudWatch: find a session's workers and read (or follow) their output."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

from ..config import Config
from ..errors import SetupRequiredError
from .connection import Aws, connect, translate_errors


def _group_and_client() -> tuple[str, Any]:
    resources = Config.load().aws
    if not resources.get("log_group"):
        raise SetupRequiredError("no log group is configured: run `starburst setup` first")
    aws: Aws = connect(resources.get("region"))
    return resources["log_group"], aws.client("logs")


def session_streams(session_id: str) -> list[str]:
    """The log streams of a session's workers (each worker names its session when it starts)."""
    group, logs = _group_and_client()
    streams: set[str] = set()
    with translate_errors(f"find the workers of {session_id}"):
        paginator = logs.get_paginator("filter_log_events")
        for page in paginator.paginate(logGroupName=group, filterPattern=f'"{session_id}"'):
            streams.update(event["logStreamName"] for event in page.get("events", []))
    return sorted(streams)


def logs(session_id: str, worker: str | int | None = None, tail: int = 50) -> dict[str, list[str]]:
    """The last ``tail`` lines of each worker of a session (or of one worker: id or number)."""
    group, client = _group_and_client()
    result = {}
    for stream in _chosen(session_streams(session_id), worker, session_id):
        with translate_errors("read a worker's log"):
            events = client.get_log_events(
                logGroupName=group, logStreamName=stream, limit=tail, startFromHead=False
            )["events"]
        result[_worker_name(stream)] = [event["message"] for event in events]
    return result


def follow(session_id: str, worker: str | int | None = None, poll: float = 2.0) -> Iterator[str]:
    """Lines from a session's workers as they arrive (``worker: line``), until interrupted."""
    group, client = _group_and_client()
    seen: dict[str, str | None] = {}
    while True:
        for stream in _chosen(session_streams(session_id), worker, session_id):
            params: dict[str, Any] = {"logGroupName": group, "logStreamName": stream}
            if seen.get(stream):
                params["nextToken"] = seen[stream]
            else:
                params["startFromHead"] = True
            with translate_errors("follow a worker's log"):
                answer = client.get_log_events(**params)
            seen[stream] = answer.get("nextForwardToken")
            for event in answer["events"]:
                yield f"{_worker_name(stream)}: {event['message']}"
        time.sleep(poll)


def _chosen(streams: list[str], worker: str | int | None, session_id: str) -> list[str]:
    if worker is None:
        return streams
    if isinstance(worker, int) or str(worker).isdigit():
        number = int(worker)
        if number >= len(streams):
            raise SetupRequiredError(
                f"session {session_id} has {len(streams)} workers with logs (0 to "
                f"{len(streams) - 1}); there is no worker {number}"
            )
        return [streams[number]]
    return [s for s in streams if _worker_name(s) == worker]


def _worker_name(stream: str) -> str:
    return stream.rsplit("/", 1)[-1]
