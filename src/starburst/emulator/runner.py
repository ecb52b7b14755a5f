"""The task runner: makes moto's ECS tasks real local processes, on Fargate and on EC2.

moto records RunTask and nothing more. The runner hears about each new task in-process (see
``patches.py``), runs its container command as a subprocess in its own process group, pumps
its output into the task's awslogs stream, and keeps the task's attributes as ECS reports
them: PROVISIONING -> PENDING -> RUNNING -> STOPPED with ``startedAt``, ``stoppedAt``,
``stopCode``, ``stoppedReason`` and the container's ``exitCode`` / ``reason``.

A Fargate task starts at once. A task on EC2 capacity is *held* in PROVISIONING until
``capacity.py`` places it on an instance and releases it (with that instance's environment);
when its instance goes away, ``host_lost`` stops it as ECS does.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

from moto.core import DEFAULT_ACCOUNT_ID
from moto.ec2.models import ec2_backends
from moto.ecs.models import EC2ContainerServiceBackend, Task, ecs_backends
from moto.logs.models import logs_backends
from moto.sts.models import sts_backends

from starburst.emulator import patches
from starburst.emulator.images import ImageReader, PulledImage

ESSENTIAL_EXITED = "Essential container in task exited"
SPOT_REASON = "Your Spot Task was interrupted."
OOM_REASON = "OutOfMemoryError: Container killed due to memory usage"
USER_REASON = "Task stopped by user"
DEFAULT_STOP_TIMEOUT = 30.0  # ECS's default container stopTimeout

_STATUS_RANK = {
    "PROVISIONING": 0,
    "PENDING": 1,
    "ACTIVATING": 2,
    "RUNNING": 3,
    "DEACTIVATING": 4,
    "STOPPING": 5,
    "DEPROVISIONING": 6,
    "STOPPED": 7,
}
_PYTHON = re.compile(r"^python(3(\.\d+)?)?$")
# What a task inherits from the test process: enough to run programs, no AWS settings.
_INHERITED = ("PATH", "HOME", "LANG", "LC_ALL", "LC_CTYPE", "TMPDIR", "TZ")


def _now() -> datetime:
    return datetime.now(UTC)


@dataclass
class _Run:
    """One task and the process standing in for its (first, essential) container."""

    task: Task
    account_id: str
    region: str
    container: dict[str, Any]
    delay: float = 0.0
    proc: subprocess.Popen[bytes] | None = None
    cwd: str | None = None  # the image's working directory, when it runs from an image
    cause: str | None = None  # why it is stopping: user, spot, oom
    reason: str | None = None
    output: list[str] = field(default_factory=list)
    abort: threading.Event = field(default_factory=threading.Event)  # stop before start
    running: threading.Event = field(default_factory=threading.Event)
    exited: threading.Event = field(default_factory=threading.Event)
    done: threading.Event = field(default_factory=threading.Event)
    last_log_ms: int = 0
    history: list[str] = field(default_factory=lambda: ["PROVISIONING"])
    held: bool = False  # waiting for an EC2 instance (see capacity.py)
    host_env: dict[str, str] = field(default_factory=dict)  # from its EC2 instance

    @property
    def arn(self) -> str:
        return self.task.task_arn


@dataclass
class _AutoFault:
    kind: str
    after: float
    grace: float
    remaining: int


class TaskRunner:
    """Runs every task RunTask starts while it is active (between start and shutdown)."""

    def __init__(
        self,
        endpoint_url: str,
        *,
        account_id: str = DEFAULT_ACCOUNT_ID,
        cwd: str | Path | None = None,
        max_stop_timeout: float = 2.0,
        on_error: Callable[[str], None] | None = None,
    ) -> None:
        self.endpoint_url = endpoint_url
        self.account_id = account_id
        #: Working directory of task processes (None: the test's cwd when the task starts).
        self.cwd = str(cwd) if cwd is not None else None
        #: StopTask waits min(container stopTimeout (default 30 s), this) before SIGKILL.
        self.max_stop_timeout = max_stop_timeout
        #: Extra environment for every task process (e.g. PYTHONPATH); the runner's AWS
        #: settings still win.
        self.extra_env: dict[str, str] = {}
        #: Registries whose images tasks really run from: image host -> registry reader. A
        #: task whose image lives there is unpacked and runs with only the image's import
        #: path (``python -S``: not the test's site-packages).
        self.registries: dict[str, ImageReader] = {}
        self._images: dict[str, PulledImage] = {}
        self._image_dir = Path(tempfile.mkdtemp(prefix="emulator-images-"))
        self._on_error = on_error or (lambda text: None)
        self._lock = threading.RLock()
        self._changed = threading.Condition(self._lock)
        self._log_lock = threading.Lock()
        self._runs: dict[str, _Run] = {}
        self._threads: list[threading.Thread] = []
        self._auto: list[_AutoFault] = []
        self._slow: list[list[Any]] = []  # [seconds, remaining or None]
        self._failing_starts: list[list[Any]] = []  # [reason, remaining]
        self._closed = False
        #: Called with each task that stops, under the runner's lock (must not block).
        self.on_stopped: Callable[[Task], None] = lambda task: None

    # ---- life of the runner --------------------------------------------------------------

    def start(self) -> TaskRunner:
        """Begin running new tasks."""
        patches.set_ecs_listener(self)
        return self

    def shutdown(self) -> None:
        """Kill every task process (and its process group) and wait for the threads."""
        with self._lock:
            self._closed = True
            runs = list(self._runs.values())
        patches.set_ecs_listener(None)
        for run in runs:
            run.abort.set()
            if run.proc is not None:
                _signal_group(run.proc, signal.SIGKILL)
        for run in runs:
            if run.proc is not None:
                try:
                    run.proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    self._on_error(f"task process {run.proc.pid} did not die")
                _signal_group(run.proc, signal.SIGKILL)  # leftovers in its group
        deadline = time.monotonic() + 10
        for thread in list(self._threads):
            thread.join(timeout=max(0.0, deadline - time.monotonic()))
        shutil.rmtree(self._image_dir, ignore_errors=True)

    # ---- what tests use ------------------------------------------------------------------

    @property
    def task_arns(self) -> list[str]:
        """Every task started while this runner was active, in launch order."""
        with self._lock:
            return list(self._runs)

    def process(self, task_arn: str) -> subprocess.Popen[bytes] | None:
        """The process running ``task_arn`` (None before it starts)."""
        return self._run(task_arn).proc

    def history(self, task_arn: str) -> list[str]:
        """Every ``lastStatus`` the task has had, in order."""
        with self._lock:
            return list(self._run(task_arn).history)

    def output(self, task_arn: str) -> list[str]:
        """The lines the task printed (stdout and stderr), as sent to its log stream."""
        with self._log_lock:
            return list(self._run(task_arn).output)

    def wait_for_tasks(
        self,
        task_arns: Iterable[str] | None = None,
        status: str = "STOPPED",
        *,
        count: int | None = None,
        timeout: float = 30.0,
    ) -> list[str]:
        """Wait until tasks have reached ``status`` (or a later one); returns their ARNs.

        With ``task_arns``, those tasks; without, ``count`` tasks (default: every task
        launched so far, at least one). Fails with a clear message after ``timeout`` s.
        """
        wanted = list(task_arns) if task_arns is not None else None
        rank = _STATUS_RANK[status]

        def reached() -> list[str] | None:
            arns = wanted if wanted is not None else list(self._runs)
            unknown = [a for a in arns if a not in self._runs]
            if unknown:
                return None
            done = [a for a in arns if _STATUS_RANK.get(self._runs[a].task.last_status, 0) >= rank]
            if wanted is not None:
                return done if len(done) == len(wanted) else None
            needed = count if count is not None else max(1, len(arns))
            return done[:needed] if len(done) >= needed else None

        with self._changed:
            result = self._changed.wait_for(reached, timeout=timeout)
            if result is None:
                states = {a: r.task.last_status for a, r in self._runs.items()}
                raise AssertionError(
                    f"tasks did not reach {status} within {timeout}s "
                    f"(wanted {wanted or count or 'all'}); states now: {states}"
                )
            return result

    def forget(self, task_arn: str) -> None:
        """Age a task out of ECS, as AWS does about an hour after it stops: DescribeTasks
        then reports it MISSING and ListTasks omits it. Its process is killed if alive."""
        run = self._run(task_arn)
        if run.proc is not None:
            _signal_group(run.proc, signal.SIGKILL)
        backend = ecs_backends[run.account_id][run.region]
        backend.tasks.get(run.task.cluster_name, {}).pop(run.arn, None)

    def slow_start(self, seconds: float, count: int | None = None) -> None:
        """Tasks launched from now on (the next ``count``, or all) stay PENDING ``seconds``."""
        with self._lock:
            self._slow.append([seconds, count])

    def fail_starts(self, reason: str, count: int) -> None:
        """The next ``count`` tasks to leave PENDING stop without running: stopCode
        ``TaskFailedToStart``, ``reason`` as the task's and the container's reason."""
        with self._lock:
            self._failing_starts.append([reason, count])

    def schedule(
        self, kind: str, task_arn: str | None, *, after: float, count: int, grace: float
    ) -> None:
        """Apply fault ``kind`` (spot, oom) to ``task_arn`` or to the next ``count`` tasks
        to reach RUNNING, ``after`` seconds once the task runs."""
        if kind not in ("spot", "oom"):
            raise ValueError(f"unknown task fault {kind!r}")
        if task_arn is None:
            with self._lock:
                self._auto.append(_AutoFault(kind, after, grace, count))
            return
        self._spawn(self._fault_later, self._run(task_arn), kind, after, grace)

    def metadata(self, task_id: str, what: str) -> dict[str, Any] | None:
        """Task metadata endpoint v4 answers (``what``: "" for the container, "task")."""
        with self._lock:
            run = next((r for r in self._runs.values() if r.task.id == task_id), None)
            if run is None:
                return None
            task = run.task
            family, _, revision = task.task_definition_arn.rsplit("/", 1)[-1].partition(":")
            container = task.containers[0]
            options = (run.container.get("logConfiguration") or {}).get("options") or {}
            cmeta = {
                "DockerId": task.id,
                "Name": container.name,
                "DockerName": f"ecs-{family}-{revision}-{container.name}",
                "Image": container.image,
                "Labels": {
                    "com.amazonaws.ecs.cluster": task.cluster_arn,
                    "com.amazonaws.ecs.container-name": container.name,
                    "com.amazonaws.ecs.task-arn": task.task_arn,
                    "com.amazonaws.ecs.task-definition-family": family,
                    "com.amazonaws.ecs.task-definition-version": revision,
                },
                "DesiredStatus": task.desired_status,
                "KnownStatus": container.last_status,
                "Type": "NORMAL",
                "LogDriver": "awslogs",
                "LogOptions": {**options, "awslogs-stream": self._stream(run) or ""},
                "ContainerARN": container.container_arn,
            }
            if what == "":
                return cmeta
            if what == "task":
                return {
                    "Cluster": task.cluster_arn,
                    "TaskARN": task.task_arn,
                    "Family": family,
                    "Revision": revision,
                    "DesiredStatus": task.desired_status,
                    "KnownStatus": task.last_status,
                    "Limits": {"CPU": _vcpu(task.cpu), "Memory": int(task.memory or 0)},
                    "AvailabilityZone": getattr(task, "availability_zone", None),
                    "LaunchType": task.launch_type or "FARGATE",
                    "Containers": [cmeta],
                }
            return None

    # ---- patches.EcsListener -------------------------------------------------------------

    def tasks_created(
        self, backend: EC2ContainerServiceBackend, tasks: list[Task], held: bool = False
    ) -> None:
        """Dress moto's new tasks as ECS does and start running them (``held``: not until
        :meth:`release`)."""
        with self._lock:
            if self._closed:
                return
            for task in tasks:
                run = self._adopt(backend, task)
                run.held = held
                self._runs[run.arn] = run
                if not held:
                    self._spawn(self._life, run)
            self._changed.notify_all()

    def release(self, task_arn: str, host_env: dict[str, str]) -> None:
        """Start a held task, with its instance's environment added to its own."""
        with self._lock:
            run = self._runs.get(task_arn)
            if run is None or not run.held or self._closed:
                return
            run.held = False
            run.host_env = dict(host_env)
            self._spawn(self._life, run)

    def host_lost(self, task_arn: str, reason: str) -> None:
        """The task's EC2 instance is gone: SIGTERM, SIGKILL after the stop timeout;
        stopCode ``TerminationNotice`` with ``reason``."""
        with self._lock:
            run = self._runs.get(task_arn)
        if run is not None:
            self._stop(run, "host", reason, self.max_stop_timeout, "TerminationNotice")

    def stop_requested(self, task: Task, reason: str | None) -> bool:
        """StopTask: SIGTERM, then SIGKILL after the stop timeout; stopCode UserInitiated."""
        with self._lock:
            run = self._runs.get(task.task_arn)
        if run is None:
            return False
        stop_timeout = float(run.container.get("stopTimeout") or DEFAULT_STOP_TIMEOUT)
        grace = min(stop_timeout, self.max_stop_timeout)
        self._stop(run, "user", reason or USER_REASON, grace, "UserInitiated")
        return True

    # ---- internals -----------------------------------------------------------------------

    def _run(self, task_arn: str) -> _Run:
        with self._lock:
            if task_arn in self._runs:
                return self._runs[task_arn]
            matches = [r for a, r in self._runs.items() if a.endswith("/" + task_arn)]
        if len(matches) == 1:
            return matches[0]
        raise KeyError(f"no task {task_arn!r} started under this runner")

    def _spawn(self, target: Callable[..., None], *args: Any) -> None:
        def guarded() -> None:
            try:
                target(*args)
            except Exception:
                self._on_error(traceback.format_exc())

        thread = threading.Thread(target=guarded, daemon=True, name=f"emulator-{target.__name__}")
        with self._lock:
            self._threads.append(thread)
        thread.start()

    def _adopt(self, backend: EC2ContainerServiceBackend, task: Task) -> _Run:
        """Set what moto leaves out or gets wrong on a fresh task; called before RunTask's
        response is written, so RunTask answers PROVISIONING like ECS."""
        task_def = backend.describe_task_definition(task.task_definition_arn)
        overrides = task.overrides or {}
        now = _now()
        task.created_at = now
        task.cpu = overrides.get("cpu") or task_def.cpu
        task.memory = overrides.get("memory") or task_def.memory
        task.version = 1
        task.health_status = "UNKNOWN"
        task.enable_execute_command = False
        if task.capacity_provider_name in ("FARGATE", "FARGATE_SPOT") and not task.launch_type:
            task.launch_type = "FARGATE"
        if task.launch_type == "FARGATE":
            task.platform_version = task.platform_version or "1.4.0"
            task.platform_family = "Linux"
            task.ephemeral_storage = {"sizeInGiB": 20}
        for attachment in task.attachments:
            details = {d["name"]: d["value"] for d in attachment.get("details", [])}
            try:
                subnet = ec2_backends[backend.account_id][backend.region_name].get_subnet(
                    details.get("subnetId")
                )
                task.availability_zone = subnet.availability_zone
            except Exception:
                pass
            task.containers[0].network_interfaces = [
                {
                    "attachmentId": attachment["id"],
                    "privateIpv4Address": details.get("privateIPv4Address"),
                }
            ]
        container = task.containers[0]
        # moto puts the task definition ARN in both; ECS uses the task's.
        container.task_arn = task.task_arn
        container.container_arn = (
            f"arn:aws:ecs:{backend.region_name}:{backend.account_id}:container/"
            f"{task.cluster_name}/{task.id}/{container.container_arn.rsplit('/', 1)[-1]}"
        )
        container.health_status = "UNKNOWN"
        container.exitCode = None  # no exit code until it exits
        container.last_status = "PENDING"
        container.runtime_id = f"{task.id}-{abs(hash(container.name)) % 10**10}"
        task.desired_status = "RUNNING"
        task.last_status = "PROVISIONING"
        delay = 0.0
        for entry in self._slow:
            if entry[1] is None or entry[1] > 0:
                delay = entry[0]
                if entry[1] is not None:
                    entry[1] -= 1
                break
        return _Run(
            task=task,
            account_id=backend.account_id,
            region=backend.region_name,
            container=task_def.container_definitions[0],
            delay=delay,
        )

    def _image(self, image: str) -> PulledImage | None:
        """The unpacked image, if it lives in a registry this runner pulls from."""
        host, _, rest = image.partition("/")
        if host not in self.registries:
            return None
        with self._lock:
            if image not in self._images:
                repository, _, tag = rest.rpartition(":")
                root = Path(tempfile.mkdtemp(dir=self._image_dir))
                self._images[image] = self.registries[host].pull(repository, tag, root)
            return self._images[image]

    def _command(self, run: _Run) -> tuple[list[str], dict[str, str]]:
        definition = run.container
        override = next(
            (
                o
                for o in (run.task.overrides or {}).get("containerOverrides") or []
                if o.get("name") in (None, definition.get("name"))
            ),
            {},
        )
        command = override["command"] if "command" in override else definition.get("command")
        argv = list(definition.get("entryPoint") or []) + list(command or [])
        image = self._image(definition.get("image") or "")
        if argv and _PYTHON.match(argv[0]):
            argv[0:1] = [sys.executable] if image is None else [sys.executable, "-S"]
        env = {k: os.environ[k] for k in _INHERITED if k in os.environ}
        if image is None:
            # The "image" is this interpreter: it sees the test process's import path.
            env["PYTHONPATH"] = os.pathsep.join(p for p in sys.path if p and os.path.isdir(p))
        else:
            # The image's own files, environment, import path and working directory.
            env.update(image.env())
            paths = env["PYTHONPATH"].split(":")
            env["PYTHONPATH"] = os.pathsep.join(str(image.root) + p for p in paths if p)
            run.cwd = str(image.root) + (image.config["config"].get("WorkingDir") or "/")
        env.update(self.extra_env)
        env.update(run.host_env)
        for source in (definition.get("environment"), override.get("environment")):
            env.update({e["name"]: e["value"] for e in source or []})
        metadata_uri = f"{self.endpoint_url}/_emulator/ecs-metadata/{run.task.id}"
        for key in list(env):
            if key.startswith("AWS_") and key not in ("AWS_EXECUTION_ENV",):
                del env[key]  # credentials come from the runner only (the task role)
        env.update(
            {
                **self._task_role_credentials(run),
                "AWS_ENDPOINT_URL": self.endpoint_url,
                "AWS_REGION": run.region,
                "AWS_DEFAULT_REGION": run.region,
                "AWS_EXECUTION_ENV": f"AWS_ECS_{run.task.launch_type or 'FARGATE'}",
                "ECS_CONTAINER_METADATA_URI_V4": metadata_uri,
                "ECS_CONTAINER_METADATA_URI": metadata_uri,
            }
        )
        return argv, env

    def _task_role_credentials(self, run: _Run) -> dict[str, str]:
        """The credentials of the task definition's task role, as ECS hands a task its
        role (a session named after the task); the fixed test keys when it has none."""
        backend = ecs_backends[run.account_id][run.region]
        role_arn = getattr(backend.describe_task_definition(run.task.task_definition_arn),
                           "task_role_arn", None)  # fmt: skip
        if not role_arn:
            return {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}
        role = sts_backends[run.account_id]["aws"].assume_role(
            region_name=run.region, role_session_name=run.task.id, role_arn=role_arn,
            policy=None, duration=3600, external_id=None,
        )  # fmt: skip
        return {
            "AWS_ACCESS_KEY_ID": role.access_key_id,
            "AWS_SECRET_ACCESS_KEY": role.secret_access_key,
            "AWS_SESSION_TOKEN": role.session_token,
        }

    def _life(self, run: _Run) -> None:
        task = run.task
        container = task.containers[0]
        with self._changed:
            task.pull_started_at = _now()
            _set_status(run, "PENDING")
            self._changed.notify_all()
        if run.abort.wait(run.delay):
            self._finish_unstarted(run)
            return
        argv, env = self._command(run)
        with self._changed:
            if run.cause is not None or self._closed:
                self._finish_unstarted(run)
                return
            if not argv:
                self._finish_unstarted(run, "CannotStartContainerError: no command to run")
                return
            if self._failing_starts:
                failing = self._failing_starts[0]
                failing[1] -= 1
                if failing[1] <= 0:
                    self._failing_starts.pop(0)
                self._finish_unstarted(run, failing[0])
                return
            try:
                run.proc = subprocess.Popen(
                    argv,
                    env=env,
                    cwd=run.cwd or self.cwd or os.getcwd(),
                    stdin=subprocess.DEVNULL,
                    stdout=subprocess.PIPE,
                    stderr=subprocess.PIPE,
                    start_new_session=True,
                )
            except OSError as exc:
                self._finish_unstarted(run, f"CannotStartContainerError: {exc}")
                return
            now = _now()
            task.pull_stopped_at = now
            task.connectivity = "CONNECTED"
            task.connectivity_at = now
            task.started_at = now
            container.last_status = "RUNNING"
            _set_status(run, "RUNNING")
            run.running.set()
            self._changed.notify_all()
            for fault in self._auto:
                if fault.remaining > 0:
                    fault.remaining -= 1
                    self._spawn(self._fault_later, run, fault.kind, fault.after, fault.grace)
                    break
        proc = run.proc
        assert proc.stdout is not None and proc.stderr is not None
        readers = [
            threading.Thread(target=self._pump, args=(run, pipe), daemon=True)
            for pipe in (proc.stdout, proc.stderr)
        ]
        for reader in readers:
            reader.start()
        returncode = proc.wait()
        run.exited.set()
        _signal_group(proc, signal.SIGKILL)  # the container's other processes go with it
        for reader in readers:
            reader.join(timeout=10)
        self._finish(run, returncode)

    def _finish(self, run: _Run, returncode: int) -> None:
        task = run.task
        container = task.containers[0]
        exit_code = returncode if returncode >= 0 else 128 - returncode
        with self._changed:
            now = _now()
            container.exitCode = exit_code
            if run.cause == "oom":
                container.reason = OOM_REASON
                task.stop_code, task.stopped_reason = "EssentialContainerExited", ESSENTIAL_EXITED
            elif run.cause == "spot":
                task.stop_code, task.stopped_reason = "SpotInterruption", SPOT_REASON
            elif run.cause == "user":
                task.stop_code, task.stopped_reason = "UserInitiated", run.reason
            elif run.cause == "host":
                task.stop_code, task.stopped_reason = "TerminationNotice", run.reason
            else:
                task.stop_code, task.stopped_reason = "EssentialContainerExited", ESSENTIAL_EXITED
            self._stopped(run, now)

    def _finish_unstarted(self, run: _Run, failure: str | None = None) -> None:
        """The task stops before its process ever ran (stopped while PENDING, or failed)."""
        task = run.task
        with self._changed:
            if failure is not None:
                task.containers[0].reason = failure
                task.stop_code, task.stopped_reason = "TaskFailedToStart", failure
            elif run.cause == "spot":
                task.stop_code, task.stopped_reason = "SpotInterruption", SPOT_REASON
            elif run.cause == "host":
                task.stop_code, task.stopped_reason = "TerminationNotice", run.reason
            else:
                task.stop_code = "UserInitiated"
                task.stopped_reason = run.reason or USER_REASON
            self._stopped(run, _now())

    def _stopped(self, run: _Run, now: datetime) -> None:
        task = run.task
        if getattr(task, "stopping_at", None) is None:
            task.stopping_at = now
        task.execution_stopped_at = now
        task.stopped_at = now
        task.desired_status = "STOPPED"
        task.containers[0].last_status = "STOPPED"
        _set_status(run, "STOPPED")
        run.done.set()
        self._changed.notify_all()
        self.on_stopped(task)

    def _stop(self, run: _Run, cause: str, reason: str, grace: float, code: str) -> None:
        """Begin stopping ``run``: SIGTERM now, SIGKILL after ``grace`` seconds."""
        with self._changed:
            if run.done.is_set() or run.cause is not None:
                return
            run.cause, run.reason = cause, reason
            task = run.task
            task.desired_status = "STOPPED"
            task.stopping_at = _now()
            task.stop_code = code
            task.stopped_reason = reason
            proc = run.proc
            if proc is None:
                run.abort.set()
            if run.held:  # never placed: nothing will start it
                run.held = False
                self._finish_unstarted(run)
            self._changed.notify_all()
        if proc is not None:
            _signal_group(proc, signal.SIGTERM)
            self._spawn(self._kill_after, run, grace)

    def _kill_after(self, run: _Run, grace: float) -> None:
        if not run.exited.wait(grace) and run.proc is not None:
            _signal_group(run.proc, signal.SIGKILL)

    def _fault_later(self, run: _Run, kind: str, after: float, grace: float) -> None:
        while not run.running.wait(0.05):
            if run.done.is_set() or self._closed:
                return
        if run.done.wait(after) or self._closed:
            return
        if kind == "spot":
            self._stop(run, "spot", SPOT_REASON, grace, "TerminationNotice")
        else:
            with self._changed:
                if run.done.is_set() or run.cause is not None:
                    return
                run.cause = "oom"
                proc = run.proc
            if proc is not None:
                _signal_group(proc, signal.SIGKILL)

    def _stream(self, run: _Run) -> str | None:
        config = run.container.get("logConfiguration") or {}
        if config.get("logDriver") != "awslogs":
            return None
        options = config.get("options") or {}
        prefix = options.get("awslogs-stream-prefix")
        name = run.container.get("name")
        return f"{prefix}/{name}/{run.task.id}" if prefix else run.task.id

    def _pump(self, run: _Run, pipe: IO[bytes]) -> None:
        """Copy a task's output, line by line, into its awslogs stream."""
        config = run.container.get("logConfiguration") or {}
        options = config.get("options") or {}
        group = options.get("awslogs-group")
        stream = self._stream(run)
        region = options.get("awslogs-region") or run.region
        logs = logs_backends[run.account_id][region] if group and stream else None
        ready = False
        for raw in iter(pipe.readline, b""):
            line = raw.decode("utf-8", errors="replace").rstrip("\r\n")
            with self._log_lock:
                run.output.append(line)
                if logs is None:
                    continue
                try:
                    if not ready:
                        if group not in logs.groups:
                            logs.create_log_group(group, {})
                        logs.ensure_log_stream(group, stream)
                        ready = True
                    stamp = max(int(time.time() * 1000), run.last_log_ms)
                    run.last_log_ms = stamp
                    logs.put_log_events(group, stream, [{"timestamp": stamp, "message": line}])
                except Exception:
                    self._on_error(traceback.format_exc())
        pipe.close()


def _set_status(run: _Run, status: str) -> None:
    run.task.last_status = status
    run.history.append(status)


def _signal_group(proc: subprocess.Popen[bytes], sig: int) -> None:
    """Signal the task's whole process group (it leads its own session)."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, sig)


def _vcpu(cpu: Any) -> float:
    try:
        return int(cpu) / 1024
    except (TypeError, ValueError):
        return 0.0
