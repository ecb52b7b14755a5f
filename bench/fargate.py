#!/usr/bin/env python
"""Measure one ``backend="fargate"`` map on the AWS emulator against the issue's targets.

    .venv/bin/python bench/fargate.py                          # 10,000 items on 100 workers
    .venv/bin/python bench/fargate.py --items 1000 --workers 10  # ~10 s
    .venv/bin/python bench/fargate.py --nice 0                 # workers at normal priority

On a 2-core machine the default run takes about a minute.

The emulator of the test suite (``tests/emulator``: moto server, WSGI layer, task runner)
runs in a child process, built as ``tests/emulator/fixtures.py`` builds it. It lives in its
own process so that the client's CPU time is the client's alone (moto answering the
workers would otherwise count as client CPU, and would compete with the client for the
GIL). The benchmark then runs ``starburst.setup`` and one map of ``x * x`` through
``starburst.Cluster(workers=N, backend="fargate", cpu=1, progress=False)`` started as a
one-off ``starburst.map`` starts it (``lazy=True``: workers launch with the run), and prints:

- RunTask calls, from the emulator's count of API calls;
- S3 requests of the client (its store's counter) and of the workers (the emulator's S3
  counts over the map minus the client's), also split by key (inputs, claims, outputs,
  heartbeats...) by a counting layer in front of the emulator, which tells the client's
  requests from the workers' by a user-agent tag only the client carries
  (``AWS_SDK_UA_APP_ID``; the task runner gives tasks no ``AWS_*`` settings of their own);
- the client's CPU seconds (``getrusage(RUSAGE_SELF)``, start + map);
- the time from the last result landing in S3 to ``map`` returning: the newest ``out/``
  object's modification time as moto recorded it (microseconds, read in the emulator
  process; S3's LastModified on the wire has whole seconds only) against the client's clock
  when ``map`` returned (one machine, one clock), split at the client poll that saw it;
- wall time, and each worker's start-up: RunTask -> process -> "starting" log line -> first
  claim (the claim objects name their worker and carry their write time);
- the emulator's CPU time per kind of request, and a progress line every 15 s on stderr.

Two departures from the test fixture stand in for Fargate better on a small machine (both
can be turned off): worker processes run under SCHED_IDLE (``chrt --idle``; ``--nice N``
for a niceness instead), since on Fargate each worker has its own vCPU while here 100 of
them share two cores with the emulator and the client (100 processes at ``nice 10`` still
outweigh one client at ``nice 0`` ten to one); and each task's metadata endpoint
(``ECS_CONTAINER_METADATA_URI_V4``, local to the task on Fargate) is answered by a small
separate server from what the emulator's runner reports for the task
(``--shared-metadata``: by moto, as in the tests). Without them (and with the worker of
commit 253dff7, which asks the metadata endpoint once with a 5 s timeout), at 100 workers
the emulator answers some workers' first request too late, those workers exit, and after
three of them the driver abandons the map.
"""

from __future__ import annotations

import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TESTS = os.path.join(ROOT, "tests")
if TESTS not in sys.path:
    sys.path.insert(0, TESTS)  # the emulator package: tests/emulator

import argparse  # noqa: E402
import contextlib  # noqa: E402
import math  # noqa: E402
import multiprocessing  # noqa: E402
import resource  # noqa: E402
import signal  # noqa: E402
import statistics  # noqa: E402
import tempfile  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402
import traceback  # noqa: E402
from collections import Counter  # noqa: E402
from collections.abc import Callable  # noqa: E402
from dataclasses import dataclass  # noqa: E402
from datetime import UTC, datetime  # noqa: E402
from itertools import pairwise  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

#: The client's requests carry this in their User-Agent (``app/...``); the workers' do not.
CLIENT_APP_ID = "starburst-bench-client"
REGION = "us-east-1"
#: Wire operations the client store's request kinds become (multipart is not used here).
STORE_KIND_OPS = {
    "put": "PutObject",
    "put_if_absent": "PutObject",
    "put_if_match": "PutObject",
    "get": "GetObject",
    "list": "ListObjectsV2",
    "delete": "DeleteObject",
    "delete_batch": "DeleteObjects",
}
CLIENT_CPU_TARGET_S = 2.0
RETURN_TARGET_S = 1.0
WORKER_REQUESTS_PER_CHUNK = 5


def square(x: int) -> int:
    return x * x


def say(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# The emulator process ---------------------------------------------------------------------------


def key_kind(key: str) -> str:
    """What a starburst store key (or list prefix) is, from its layout (engine/keys.py)."""
    if key.endswith("/session.json"):
        return "session"
    if key.endswith("/control.json"):
        return "control"
    if "/workers/" in key or key.endswith("/workers"):
        return "worker heartbeat"
    if "/runs/" in key or key.endswith("/runs"):
        return "manifest"
    if key.endswith("/fn.bin"):
        return "function"
    for part, kind in (("/in/", "input"), ("/claim/", "claim"), ("/out/", "output")):
        if part in key or key.endswith(part.rstrip("/")):
            return kind
    return "other"


class Tap:
    """WSGI layer in front of the emulator's: counts S3 requests by origin, operation, key
    kind and status, with the emulator's CPU time answering them (the handling thread's CPU
    time across the call). The emulator's own ``calls`` counter is left as it is."""

    def __init__(self, app: Any) -> None:
        from urllib.parse import parse_qs

        from starburst.emulator.layer import _s3_operation, _signing

        self.app = app
        self.counts: Counter[tuple[str, str, str, str]] = Counter()
        self.cpu: Counter[tuple[str, str, str, str]] = Counter()
        self._lock = threading.Lock()
        self._operation = _s3_operation
        self._signing = _signing
        self._parse_qs = parse_qs

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        service, _ = self._signing(environ)
        if service != "s3":
            return self.app(environ, start_response)
        origin = "client" if CLIENT_APP_ID in environ.get("HTTP_USER_AGENT", "") else "workers"
        operation = self._operation(environ.get("REQUEST_METHOD", "GET"), environ) or "?"
        _, _, key = environ.get("PATH_INFO", "").lstrip("/").partition("/")
        if not key:
            query = self._parse_qs(environ.get("QUERY_STRING", ""))
            key = query.get("prefix", [""])[0]
        statuses: list[str] = []

        def capture(status: str, headers: Any, exc_info: Any = None) -> Any:
            statuses.append(status.split(" ", 1)[0])
            if exc_info is not None:
                return start_response(status, headers, exc_info)
            return start_response(status, headers)

        began = time.thread_time()
        answer = self.app(environ, capture)
        spent = time.thread_time() - began
        what = (origin, operation, key_kind(key), statuses[0] if statuses else "?")
        with self._lock:
            self.counts[what] += 1
            self.cpu[what] += spent
        return answer


def _utc_stamp(moment: datetime) -> float:
    """Epoch seconds of a moto datetime (naive ones are UTC)."""
    return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).timestamp()


def _log_stamp(line: str) -> float | None:
    """Epoch seconds of a worker log line's asctime (``%Y-%m-%d %H:%M:%S,mmm``, local)."""
    try:
        return datetime.strptime(line[:23], "%Y-%m-%d %H:%M:%S,%f").timestamp()
    except ValueError:
        return None


def _inspect(server: Any, runner: Any, bucket_name: str, run_prefix: str) -> dict[str, Any]:
    """The run's output and claim objects as moto holds them, and each task's times."""
    import json

    from moto.s3.models import s3_backends

    bucket = s3_backends[server.account_id]["aws"].get_bucket(bucket_name)
    for _ in range(10):
        try:
            names = list(bucket.keys.keys())
            break
        except RuntimeError:  # changed during iteration: try again
            continue
    outputs: list[float] = []
    claims: list[tuple[str, float]] = []
    for name in names:
        if not name.startswith(run_prefix):
            continue
        found = bucket.keys.get(name)
        if found is None:
            continue
        if name.startswith(run_prefix + "out/"):
            outputs.append(_utc_stamp(found.last_modified))
        elif name.startswith(run_prefix + "claim/"):
            with contextlib.suppress(ValueError, KeyError):
                claims.append((json.loads(found.value)["worker"], _utc_stamp(found.last_modified)))
    tasks = []
    for arn in runner.task_arns:
        task = runner._run(arn).task
        proc = runner.process(arn)
        exit_code = proc.poll() if proc is not None else None
        starting = next(
            (
                _log_stamp(line)
                for line in runner.output(arn)
                if "starting" in line and "processes" in line
            ),
            None,
        )
        tasks.append(
            {
                "id": task.id,
                "created": _utc_stamp(task.created_at),
                "started": _utc_stamp(task.started_at) if task.started_at else None,
                "log_starting": starting,
                "exit_code": exit_code,
                "tail": runner.output(arn)[-6:] if exit_code is not None else [],
            }
        )
    return {"outputs": outputs, "claims": claims, "tasks": tasks}


def _cpu_seconds(who: int) -> float:
    usage = resource.getrusage(who)
    return usage.ru_utime + usage.ru_stime


@dataclass(frozen=True)
class Harness:
    """How the benchmark departs from the ``aws`` fixture, to stand in for Fargate better."""

    niceness: int  # worker processes run under ``nice -n``; 0: not; -1: SCHED_IDLE
    metadata_url: str | None  # the task metadata endpoint's own server; None: the emulator's
    metadata_dir: str | None
    ec2: bool = False  # also emulate EC2 capacity (Auto Scaling launches, task placement)


def bench_runner_class() -> type:
    """The emulator's TaskRunner, with the tasks' commands under ``nice`` and their task
    metadata endpoint served by a separate process (``metadata_process``)."""
    import json

    from starburst.emulator.runner import TaskRunner

    class BenchRunner(TaskRunner):
        harness = Harness(0, None, None)

        def _command(self, run: Any) -> tuple[list[str], dict[str, str]]:
            argv, env = super()._command(run)
            harness = self.harness
            if harness.metadata_url and harness.metadata_dir:
                task_id = run.task.id
                folder = Path(harness.metadata_dir) / task_id
                folder.mkdir(exist_ok=True)
                for name, what in (("container.json", ""), ("task.json", "task")):
                    answer = self.metadata(task_id, what)  # as the emulator would answer now
                    (folder / name).write_text(json.dumps(answer, default=str))
                uri = f"{harness.metadata_url}/{task_id}"
                env["ECS_CONTAINER_METADATA_URI_V4"] = env["ECS_CONTAINER_METADATA_URI"] = uri
            if harness.niceness < 0 and argv:  # chrt execs the command
                argv = ["chrt", "--idle", "0", *argv]
            elif harness.niceness and argv:
                argv = ["nice", "-n", str(harness.niceness), *argv]  # nice execs the command
            return argv, env

    return BenchRunner


def metadata_process(conn: Any, folder: str) -> None:
    """Serve ``GET /<task id>`` and ``GET /<task id>/task`` from the files the runner wrote.

    On Fargate the task metadata endpoint is local to each task; here it would otherwise be
    answered by the same moto process as every S3 request of every worker, slowly under load.
    """
    import re
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    signal.signal(signal.SIGTERM, signal.SIG_DFL)  # the parent's handler came with the fork
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent stops us

    task_id = re.compile(r"^[A-Za-z0-9-]+$")

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            parts = self.path.split("?", 1)[0].strip("/").split("/")
            name = {1: "container.json"}.get(len(parts))
            if len(parts) == 2 and parts[1] == "task":
                name = "task.json"
            path = Path(folder) / parts[0] / name if name and task_id.match(parts[0]) else None
            if path is None or not path.is_file():
                self.send_error(404)
                return
            body = path.read_bytes()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    conn.send(f"http://127.0.0.1:{server.server_address[1]}")
    conn.close()
    server.serve_forever()


def emulator_process(conn: Any, parent_end: Any, harness: Harness) -> None:
    """Run the emulator (server + task runner, as the ``aws`` fixture does) until told to stop
    or the parent is gone."""
    parent_end.close()  # forked copy: without closing it, the parent's death is no EOF here
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent handles Ctrl-C and stops us

    def on_term(signum: int, frame: Any) -> None:
        raise SystemExit(1)

    signal.signal(signal.SIGTERM, on_term)
    # One process stands in for all of AWS, with a thread per connection (100+ here): with
    # the default 5 ms GIL switch interval, each request's many GIL hand-offs queue behind
    # busy threads (the convoy effect) and a 2 ms request takes hundreds of milliseconds.
    sys.setswitchinterval(0.0002)
    os.environ["MOTO_IAM_LOAD_MANAGED_POLICIES"] = "true"  # read when IAM backends are made
    from starburst.emulator.server import EmulatorServer

    server = EmulatorServer().start()
    errors: list[str] = []
    runner: Any = None
    capacity: Any = None
    try:
        tap = server.wrap(Tap)
        runner = bench_runner_class()(
            server.url, account_id=server.account_id, on_error=errors.append
        )
        runner.harness = harness
        capacity = None
        if harness.ec2:
            from starburst.emulator.capacity import Ec2Capacity

            capacity = Ec2Capacity.for_server(server, runner, errors.append).start()
        server.attach(runner.start(), capacity)
        conn.send({"url": server.url, "account_id": server.account_id})
        while True:
            try:
                command, argument = conn.recv()
            except (EOFError, OSError):
                break  # the parent is gone
            if command == "stop":
                break
            try:
                if command == "counts":
                    assert server.layer is not None
                    answer = {
                        "calls": dict(server.layer.calls),
                        "tap": list(tap.counts.items()),
                        "tap_cpu": list(tap.cpu.items()),
                        "cpu": _cpu_seconds(resource.RUSAGE_SELF),
                    }
                elif command == "inspect":
                    answer = _inspect(server, runner, *argument)
                elif command == "quota":  # (quota code, value), e.g. a vCPU quota for EC2
                    server.quotas.set(*argument)
                    answer = {}
                else:
                    answer = {"error": f"unknown command {command!r}"}
            except Exception:
                answer = {"error": traceback.format_exc()}
            conn.send(answer)
    finally:
        if capacity is not None:
            capacity.shutdown()
        if runner is not None:
            runner.shutdown()  # kills every task process and its process group
        server.attach(None)
        errors += server.take_internal_errors()
        server.stop()
        with contextlib.suppress(Exception):
            conn.send(
                {
                    "errors": errors,
                    "cpu": _cpu_seconds(resource.RUSAGE_SELF),
                    "task_cpu": _cpu_seconds(resource.RUSAGE_CHILDREN),
                }
            )


class EmulatorHandle:
    """The parent's end of the emulator process."""

    def __init__(self, harness: Harness) -> None:
        context = multiprocessing.get_context("fork")  # forked before the client has threads
        self.conn, child_end = context.Pipe()
        self.process = context.Process(
            target=emulator_process,
            args=(child_end, self.conn, harness),
            name="emulator",
            daemon=False,
        )
        self.process.start()
        child_end.close()
        if not self.conn.poll(120):
            self.process.terminate()
            raise RuntimeError("the emulator did not start within 120 s")
        ready = self.conn.recv()
        self.url: str = ready["url"]
        self.account_id: str = ready["account_id"]
        self.final: dict[str, Any] = {}
        self._lock = threading.Lock()

    def ask(self, command: str, argument: Any = None) -> Any:
        with self._lock:  # the progress thread asks too
            self.conn.send((command, argument))
            answer = self.conn.recv()
        if "error" in answer:
            raise RuntimeError(f"the emulator process could not answer {command!r}: {answer}")
        return answer

    def stop(self) -> None:
        """Stop the runner (killing every task) and the server; wait for the process."""
        if not self.process.is_alive():
            return
        with contextlib.suppress(OSError):
            self.conn.send(("stop", None))
        with contextlib.suppress(EOFError, OSError):
            if self.conn.poll(60):
                self.final = self.conn.recv()
        self.process.join(30)
        if self.process.is_alive():
            self.process.terminate()  # SIGTERM: its finally block still shuts the runner down
            self.process.join(30)


# The client side --------------------------------------------------------------------------------


def set_environment(url: str, scratch: Path) -> None:
    """The environment the ``aws`` fixture gives a test, plus the client's user-agent tag."""
    from starburst.emulator.active import ambient_aws_variables

    for name in ambient_aws_variables(os.environ):
        del os.environ[name]
    config_dir = scratch / "starburst-config"
    config_dir.mkdir()
    os.environ.update(
        {
            "AWS_ENDPOINT_URL": url,
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_DEFAULT_REGION": REGION,
            "AWS_REGION": REGION,
            "AWS_CONFIG_FILE": str(scratch / "aws-config-absent"),
            "AWS_SHARED_CREDENTIALS_FILE": str(scratch / "aws-credentials-absent"),
            "AWS_EC2_METADATA_DISABLED": "true",
            "STARBURST_CONFIG_DIR": str(config_dir),
            "STARBURST_IMAGE": "public.ecr.aws/docker/library/python:3.11-slim",  # no build
            "MOTO_IAM_LOAD_MANAGED_POLICIES": "true",
            "AWS_SDK_UA_APP_ID": CLIENT_APP_ID,
        }
    )


class PollLog:
    """Wraps a Run's ``poll`` (on the instance) to time each poll and what it delivered."""

    def __init__(self, run: Any) -> None:
        self.run = run
        self.polls: list[tuple[float, float, int]] = []  # (began, returned, chunks landed)
        self._poll = run.poll
        run.poll = self

    def __call__(self) -> Any:
        began = time.time()
        landed = self._poll()
        self.polls.append((began, time.time(), len(landed)))
        return landed

    @property
    def delivering(self) -> list[tuple[float, float, int]]:
        return [p for p in self.polls if p[2]]


def leftover_processes(session_id: str) -> list[int]:
    """Live processes whose command line names the session (its workers)."""
    found = []
    needle = session_id.encode()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        if state != "Z" and needle in cmdline:
            found.append(int(entry.name))
    return found


def diff(after: dict[str, int], before: dict[str, int]) -> Counter[str]:
    return Counter({k: v - before.get(k, 0) for k, v in after.items() if v - before.get(k, 0)})


def tap_window(after: list[Any], before: list[Any]) -> Counter[Any]:
    start = Counter({tuple(k): v for k, v in before})
    return Counter({tuple(k): v - start[tuple(k)] for k, v in after if v - start[tuple(k)] > 0})


def run_benchmark(
    items: int,
    workers: int,
    niceness: int,
    shared_metadata: bool,
    measuring: Callable[..., int] | None = None,
    ec2: bool = False,
) -> int:
    """Start the emulator (with EC2 capacity if ``ec2``), run ``measuring`` (default: the
    Fargate map, ``measure``) against it, stop everything and check nothing is left."""
    measuring = measuring or measure
    scratch = Path(tempfile.mkdtemp(prefix="starburst-bench-"))
    context = multiprocessing.get_context("fork")  # forked before the client has threads
    metadata: Any = None
    harness = Harness(niceness, None, None, ec2)
    if not shared_metadata:
        folder = scratch / "task-metadata"
        folder.mkdir()
        receive, send = context.Pipe(duplex=False)
        metadata = context.Process(
            target=metadata_process, args=(send, str(folder)), name="metadata", daemon=True
        )
        metadata.start()
        send.close()
        if not receive.poll(30):
            metadata.terminate()
            raise RuntimeError("the task metadata server did not start within 30 s")
        harness = Harness(niceness, receive.recv(), str(folder), ec2)
    say("starting the emulator (moto server + task runner) in a child process")
    try:
        emulator = EmulatorHandle(harness)
    except BaseException:
        if metadata is not None:
            metadata.terminate()
        raise
    session: dict[str, str] = {}  # filled in as soon as the session exists
    return_code = 1
    try:
        set_environment(emulator.url, scratch)
        import starburst

        if ec2:  # the account's vCPU quotas (On-Demand, Spot): room for every instance
            for code in ("L-1216C47A", "L-34B43A08"):
                emulator.ask("quota", (code, 100_000))
        say("starburst.setup()")
        starburst.setup(say=lambda _: None, ec2=ec2)
        return_code = measuring(starburst, emulator, items, workers, session)
    finally:
        say("stopping the emulator (its task runner kills every task process)")
        emulator.stop()
        if metadata is not None:
            metadata.terminate()
            metadata.join(10)
        import shutil

        shutil.rmtree(scratch, ignore_errors=True)
    left = leftover_processes(session["id"]) if session else []
    if emulator.final.get("errors"):
        print("\nemulator internal errors:\n" + "\n".join(emulator.final["errors"]))
        return_code = 1
    final_cpu = emulator.final.get("task_cpu")
    if final_cpu is not None:
        print(
            f"worker processes used {final_cpu:.1f} CPU s in all "
            f"({final_cpu / max(1, workers):.2f} s each); the emulator process "
            f"{emulator.final.get('cpu', 0):.1f} s"
        )
    alive = [p.pid for p in (emulator.process, metadata) if p is not None and p.is_alive()]
    print(
        f"processes left after the benchmark: {len(left) + len(alive)}"
        + (f" (pids {left + alive})" if left or alive else "")
    )
    return return_code if not (left or alive) else 1


def measure(
    starburst: Any, emulator: EmulatorHandle, items: int, workers: int, session: dict[str, str]
) -> int:
    inputs = list(range(items))
    cluster = starburst.Cluster(workers=workers, backend="fargate", cpu=1, progress=False)
    captured: list[PollLog] = []
    monitor: list[tuple[float, float]] = []  # the monitor's passes (began, ended)
    sealed: list[float] = []  # when the upload finished
    before = emulator.ask("counts")
    say(f"map of {items} items on {workers} workers (backend='fargate', cpu=1)")
    cpu0, t0 = _cpu_seconds(resource.RUSAGE_SELF), time.time()
    error: BaseException | None = None
    results: list[int] | None = None
    done = threading.Event()
    try:
        # As starburst.map does: the session now, the workers with the run (RunTask, then the
        # upload while they boot), all inside the measure.
        cluster.start(lazy=True)
        t_started, cpu_started = time.time(), _cpu_seconds(resource.RUSAGE_SELF)
        driver = cluster.driver
        session["id"] = driver.session.session_id
        submit = driver.submit

        def submit_and_watch(*args: Any, **kwargs: Any) -> Any:
            run = submit(*args, **kwargs)
            captured.append(PollLog(run))

            def note_sealed() -> None:  # when every input is up and the manifest sealed
                run._uploaded.wait()
                sealed.append(time.time())

            threading.Thread(target=note_sealed, daemon=True).start()
            return run

        driver.submit = submit_and_watch
        check_workers = driver._check_workers

        def timed_check() -> None:  # the monitor's look at the workers, timed
            began = time.time()
            try:
                check_workers()
            finally:
                monitor.append((began, time.time()))

        driver._check_workers = timed_check
        watcher = threading.Thread(
            target=show_progress,
            args=(emulator, driver, captured, items, t0, done),
            name="bench-progress",
            daemon=True,
        )
        watcher.start()
        try:
            results = cluster.map(square, inputs)
        except Exception as exc:  # report what was measured up to the failure
            error = exc
        t_returned, cpu1 = time.time(), _cpu_seconds(resource.RUSAGE_SELF)
        client = Counter(driver.store.requests)
        done.set()
        watcher.join()
        after = emulator.ask("counts")
        polls = captured[0]
        run = polls.run
        seen = emulator.ask("inspect", (driver.store.bucket, run.keys.prefix))
        say("map " + ("returned" if error is None else "failed") + "; closing the cluster")
        t_close = time.time()
    finally:
        done.set()
        cluster.close()
    t_closed = time.time()
    closing = Counter(driver.store.requests) - client
    ok = error is None and results == [x * x for x in inputs]

    report(
        items=items,
        workers=workers,
        n_chunks=run.n_chunks if run.n_chunks is not None else len(run.spans),
        complete=run.complete,
        items_delivered=run.items_delivered,
        ok=ok,
        error=error,
        client=client,
        calls=diff(after["calls"], before["calls"]),
        tap=tap_window(after["tap"], before["tap"]),
        tap_cpu=tap_window(after["tap_cpu"], before["tap_cpu"]),
        sealed=sealed[0] if sealed else None,
        emulator_cpu=after["cpu"] - before["cpu"],
        cpu_start=cpu_started - cpu0,
        cpu_map=cpu1 - cpu_started,
        t0=t0,
        t_started=t_started,
        t_returned=t_returned,
        polls=polls,
        seen=seen,
        close_seconds=t_closed - t_close,
        closing=closing,
        monitor=monitor,
    )
    return 0 if ok else 1


def show_progress(
    emulator: EmulatorHandle,
    driver: Any,
    captured: list[PollLog],
    items: int,
    t0: float,
    done: threading.Event,
) -> None:
    """Every 15 s on stderr: results in, workers by phase, emulator load."""
    last = emulator.ask("counts")
    last_time = time.time()
    while not done.wait(15.0):
        now_counts, now = emulator.ask("counts"), time.time()
        requests = sum(n for _, n in now_counts["tap"]) - sum(n for _, n in last["tap"])
        busy = (now_counts["cpu"] - last["cpu"]) / (now - last_time)
        delivered = captured[0].run.items_delivered if captured else 0
        say(
            f"  {now - t0:5.0f} s: {delivered}/{items} results; workers "
            f"{driver.worker_summary()}; emulator {requests / (now - last_time):.0f} S3 req/s, "
            f"{busy:.0%} of a core"
        )
        last, last_time = now_counts, now


# The report -------------------------------------------------------------------------------------


def mark(good: bool) -> str:
    return "ok" if good else "MISS"


def report(**m: Any) -> None:
    items, workers, n_chunks = m["items"], m["workers"], m["n_chunks"]
    client: Counter[str] = m["client"]
    calls: Counter[str] = m["calls"]
    tap: Counter[tuple[str, str, str, str]] = m["tap"]
    polls: PollLog = m["polls"]
    seen = m["seen"]
    t0, t_returned = m["t0"], m["t_returned"]

    s3_ops = {op for (_, op, _, _) in tap}
    emulator_s3 = Counter({op: n for op, n in calls.items() if op in s3_ops})
    client_ops: Counter[str] = Counter()
    for kind, n in client.items():
        client_ops[STORE_KIND_OPS.get(kind, kind)] += n
    worker_ops = Counter({op: emulator_s3[op] - client_ops.get(op, 0) for op in emulator_s3})

    def tapped(origin: str, op: str | None = None, kind: str | None = None) -> int:
        return sum(
            n
            for (o, p, k, _), n in tap.items()
            if o == origin and (op is None or p == op) and (kind is None or k == kind)
        )

    # Time-driven, not chunk-driven: heartbeats, and reads of the control record at each
    # heartbeat and at each idle poll of a worker that has run out of work.
    heartbeat_kinds = ("worker heartbeat", "control")
    worker_heartbeats = sum(tapped("workers", kind=k) for k in heartbeat_kinds)
    worker_total = sum(worker_ops.values())
    worker_work = worker_total - worker_heartbeats

    uploads = tapped("client", "PutObject", "input") + tapped("client", "PutObject", "function")
    writes = client["put"] + client["put_if_absent"] + client["put_if_match"]
    downloads = tapped("client", "GetObject", "output")
    n_polls = len(polls.polls)
    poll_lists = tapped("client", "ListObjectsV2", "output")
    pages = math.ceil(n_chunks / 1000)

    last_landed = max(seen["outputs"]) if seen["outputs"] else float("nan")
    delivering = polls.delivering
    last_delivered = delivering[-1][1] if delivering else float("nan")
    first_delivered = delivering[0][1] if delivering else float("nan")
    return_latency = t_returned - last_landed if m["complete"] else float("nan")
    cpu_total = m["cpu_start"] + m["cpu_map"]
    runtask_target = math.ceil(workers / 10)

    print()
    print(
        f"starburst Fargate map on the emulator: {items} items x*x, {workers} workers x 1 vCPU, "
        f"{n_chunks} chunks; results {'correct' if m['ok'] else 'WRONG'}"
    )
    if m["error"] is not None:
        lines = str(m["error"]).splitlines() or [""]
        print(
            f"MAP FAILED after {t_returned - t0:.1f} s with {m['items_delivered']} of {items} "
            f"results in: {type(m['error']).__name__}: {lines[0]}"
        )
        for line in lines[1:][-8:]:
            print(f"    | {line}")
    rows: list[tuple[str, str, str, str]] = [
        (
            "RunTask calls",
            f"{calls['RunTask']}",
            f"<= {runtask_target} ({workers} workers, 10 per call)",
            mark(calls["RunTask"] <= runtask_target),
        ),
        (
            "client uploads (PutObject in/ + fn.bin)",
            f"{uploads}",
            f"<= {n_chunks + 1} (1 per chunk + 1)",
            mark(uploads <= n_chunks + 1),
        ),
        (
            "client writes, all (store put+put_if_*)",
            f"{writes}",
            f"{n_chunks + 1} + session bookkeeping",
            "info",
        ),
        (
            "client downloads (GetObject out/)",
            f"{downloads}",
            f"<= {n_chunks} (1 per chunk)",
            mark(downloads <= n_chunks),
        ),
        (
            "client gets, all (store get)",
            f"{client['get']}",
            f"{n_chunks} + manifest reads",
            "info",
        ),
        (
            "client list requests of out/ (progress polls)",
            f"{poll_lists} in {n_polls} polls",
            f"<= {pages * n_polls} ({pages} per poll)",
            mark(poll_lists <= pages * n_polls),
        ),
        (
            "client list requests, all (store list)",
            f"{client['list']}",
            "",
            "info" if client["list"] == poll_lists else "MISS",
        ),
        (
            "worker S3 requests per chunk (no heartbeats)",
            f"{worker_work / n_chunks:.2f} ({worker_work})",
            f"<= {WORKER_REQUESTS_PER_CHUNK}",
            mark(worker_work <= WORKER_REQUESTS_PER_CHUNK * n_chunks),
        ),
        (
            "worker heartbeat + idle requests (put, control.json get)",
            f"{worker_heartbeats}",
            "allowed",
            "info",
        ),
        (
            "client CPU, start + map",
            f"{cpu_total:.2f} s (start {m['cpu_start']:.2f} + map {m['cpu_map']:.2f})",
            f"<= {CLIENT_CPU_TARGET_S:g} s",
            mark(cpu_total <= CLIENT_CPU_TARGET_S),
        ),
        (
            "last result in S3 -> map returned",
            f"{return_latency:.2f} s" if m["complete"] else "n/a (the map failed)",
            f"<= {RETURN_TARGET_S:g} s",
            mark(return_latency <= RETURN_TARGET_S),
        ),
        (
            "wall, start + map",
            f"{t_returned - t0:.1f} s (start {m['t_started'] - t0:.1f} s)",
            "",
            "info",
        ),
    ]
    widths = [max(len(r[i]) for r in rows) for i in range(3)]
    header = ("metric", "measured", "target", "")
    print("  ".join(h.ljust(w) for h, w in zip(header, [*widths, 4], strict=True)).rstrip())
    print("  ".join("-" * w for w in [*widths, 4]))
    for row in rows:
        print("  ".join(c.ljust(w) for c, w in zip(row, [*widths, 4], strict=True)).rstrip())

    print("\nlatency")
    print(f"  first result delivered       {first_delivered - t0:7.2f} s after start")
    if m["complete"]:
        print(f"  last result landed in S3     {last_landed - t0:7.2f} s")
        print(
            f"  client poll that saw it      {last_delivered - t0:7.2f} s  "
            f"(+{last_delivered - last_landed:.2f} s: poll pause + listing + download)"
        )
        print(
            f"  map returned                 {t_returned - t0:7.2f} s  "
            f"(+{t_returned - last_delivered:.2f} s: assembling the list)"
        )
    if m["sealed"] is not None:
        print(f"  inputs all uploaded (sealed) {m['sealed'] - t0:7.2f} s")
    if polls.polls:
        longest = max(polls.polls, key=lambda p: p[1] - p[0])
        span = longest[1] - longest[0]
        busy = sum(p[1] - p[0] for p in polls.polls)
        print(
            f"  client polls: {n_polls}, {busy:.1f} s inside them; longest {span:.1f} s for "
            f"{longest[2]} chunks ({1000 * span / max(1, longest[2]):.0f} ms per chunk, "
            "downloaded in parallel)"
        )
    gaps = [b[0] - a[1] for a, b in pairwise(polls.polls)]
    if gaps:
        print(
            f"  pause between polls {min(gaps):.2f}-{max(gaps):.2f} s "
            f"(median {statistics.median(gaps):.2f} s)"
        )

    passes = m["monitor"]
    if passes:
        longest = max(end - began for began, end in passes)
        print(
            f"  driver monitor: {len(passes)} passes (DescribeTasks + stopped-worker handling), "
            f"longest {longest:.1f} s"
        )

    print("\nS3 requests over the map (start -> return), by operation")
    ops = sorted(set(emulator_s3) | set(client_ops))
    print(f"  {'operation':16} {'emulator':>9} {'client':>9} {'workers':>9} {'per chunk':>10}")
    for op in ops:
        print(
            f"  {op:16} {emulator_s3.get(op, 0):9d} {client_ops.get(op, 0):9d} "
            f"{worker_ops.get(op, 0):9d} {worker_ops.get(op, 0) / n_chunks:10.2f}"
        )
    print(
        f"  {'total':16} {sum(emulator_s3.values()):9d} {sum(client_ops.values()):9d} "
        f"{worker_total:9d} {worker_total / n_chunks:10.2f}"
    )
    print("  client store counter: " + ", ".join(f"{k} {v}" for k, v in sorted(client.items())))
    tapped_client = tapped("client")
    if tapped_client != sum(client_ops.values()):
        print(
            f"  note: the counting layer saw {tapped_client} client requests, the client's "
            f"store counted {sum(client_ops.values())}"
        )

    print(
        "\nS3 requests by key (counting layer; 412 = lost conditional write; emulator CPU = "
        "moto's time answering them)"
    )
    tap_cpu: Counter[tuple[str, str, str, str]] = m["tap_cpu"]
    print(
        f"  {'origin':8} {'key':17} {'operation':14} {'status':6} {'count':>7} "
        f"{'per chunk':>10} {'emulator CPU':>13} {'per request':>12}"
    )
    for (origin, op, kind, status), n in sorted(tap.items(), key=lambda e: (e[0][0], e[0][2])):
        spent = tap_cpu.get((origin, op, kind, status), 0.0)
        print(
            f"  {origin:8} {kind:17} {op:14} {status:6} {n:7d} {n / n_chunks:10.3f} "
            f"{spent:11.1f} s {1000 * spent / n:9.1f} ms"
        )

    others = {op: n for op, n in calls.items() if op not in s3_ops}
    print(
        "\nother API calls over the map: "
        + ", ".join(f"{k} {v}" for k, v in sorted(others.items()))
    )
    print(f"emulator process CPU over the map: {m['emulator_cpu']:.1f} s")

    print("\nworker start-up (from RunTask)")
    first_claim: dict[str, float] = {}
    for worker, stamp in seen["claims"]:
        task_id = worker.split(".", 1)[0]
        first_claim[task_id] = min(stamp, first_claim.get(task_id, stamp))
    stages: dict[str, list[float]] = {
        "process started": [],
        "'starting' logged": [],
        "first claim": [],
    }
    for task in seen["tasks"]:
        if task["started"] is not None:
            stages["process started"].append(task["started"] - task["created"])
        if task["log_starting"] is not None:
            stages["'starting' logged"].append(task["log_starting"] - task["created"])
        if task["id"] in first_claim:
            stages["first claim"].append(first_claim[task["id"]] - task["created"])
    for name, values in stages.items():
        if values:
            print(
                f"  {name:18} {len(values):4d} of {len(seen['tasks'])} tasks by the return; "
                f"min {min(values):6.2f} s, median {statistics.median(values):6.2f} s, "
                f"max {max(values):6.2f} s"
            )
        else:
            print(f"  {name:18}    0 of {len(seen['tasks'])} tasks by the return")
    stopped = [task for task in seen["tasks"] if task["exit_code"] is not None]
    if stopped:
        codes = Counter(task["exit_code"] for task in stopped)
        print(
            f"  tasks that exited before the return: {len(stopped)} (exit codes "
            + ", ".join(f"{code}: {n}" for code, n in sorted(codes.items()))
            + "); last lines of the first:"
        )
        for line in stopped[0]["tail"]:
            print(f"    | {line}")
    print(
        f"\nclose(): {m['close_seconds']:.1f} s, client S3 requests "
        + ", ".join(f"{k} {v}" for k, v in sorted(m["closing"].items()))
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--items", type=int, default=10_000, help="items to map (default 10000)")
    parser.add_argument("--workers", type=int, default=100, help="Fargate workers (default 100)")
    parser.add_argument(
        "--nice",
        type=int,
        default=-1,
        help="niceness of the worker processes (default -1: SCHED_IDLE, they run only when "
        "the client and the emulator leave a core idle; 0: normal priority). On Fargate each "
        "worker has its own vCPU; here 100 of them share two cores with the emulator "
        "(standing in for AWS) and the client, which they would otherwise starve",
    )
    parser.add_argument(
        "--shared-metadata",
        action="store_true",
        help="let the emulator's moto process answer the task metadata endpoint, as in the "
        "tests (default: a separate small server, as each Fargate task has its own)",
    )
    args = parser.parse_args(argv)
    if args.items < 1 or args.workers < 1:
        parser.error("--items and --workers must be at least 1")

    def interrupted(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt  # unwind: close the cluster, stop the emulator

    signal.signal(signal.SIGTERM, interrupted)
    return run_benchmark(args.items, args.workers, args.nice, args.shared_metadata)


if __name__ == "__main__":
    sys.exit(main())
