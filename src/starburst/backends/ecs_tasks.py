"""Workers as ECS tasks started with RunTask: what the Fargate and EC2 fleets share.

Tasks get only pointers (store URL, session id, processes) in their command; credentials
come from the session's task role. Tasks are launched at most ten per call, paced under
ECS's launch rate, and RunTask's ``failures`` are handled: capacity is asked for again
later, a vCPU quota shortfall runs with the workers that fit. A launch is one pass: what
does not start is reported in ``shortfall``, and the driver asks again later (never a wait
here, which would hold up the call).

A subclass says what differs: the task definition's body, RunTask's placement arguments,
the cluster, and which tasks run on spot capacity.
"""

from __future__ import annotations

import functools
import hashlib
import json
import sys
import time
from abc import abstractmethod
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar

import botocore.exceptions

from ..aws import resources as r
from ..aws.connection import Aws, connect, translate_errors
from ..aws.quotas import quota_notice
from ..aws.session_roles import create_session_role, remove_session_role
from ..config import Config
from ..env.prune import record_session_image
from ..errors import SetupRequiredError, StarburstError
from ..settings import resolve
from ..store import Store
from ..store.s3 import S3Store, account_bucket
from .base import Fleet, LaunchRequest, LaunchShortfall, WorkerFault, WorkerInfo, WorkerState

if TYPE_CHECKING:
    from ..options import WorkerSpec
    from .base import Placement

#: RunTask starts at most this many tasks per call.
RUN_TASK_BATCH = 10
#: ECS's limits per account and region: RunTask calls per second, and the task-launch token
#: bucket (a burst of 100 tasks, refilled at 20 tasks per second).
_CALLS_PER_SECOND = 20.0
_LAUNCH_BURST = 100.0
_LAUNCHES_PER_SECOND = 20.0
_QUOTA_REASON = "vcpu"
#: RunTask raises (rather than lists in ``failures``) when a cluster has too many tasks
#: waiting for capacity (EC2_FACTS §1.4): back-pressure, asked again later.
_WAITING_LIMIT = "provisioning capacity limit"
CONTAINER = "worker"
STREAM_PREFIX = "worker"
#: A session's role is made as the session starts, and IAM takes a few seconds to show a
#: new role everywhere: until then ECS refuses it. Such refusals are retried this long.
_ROLE_PROPAGATION_SECONDS = 60.0
_NEW_ROLE_REFUSALS = ("Role is not valid", "unable to assume the role")

FleetT = TypeVar("FleetT", bound="EcsTaskFleet")


class EcsTaskFleet(Fleet):
    """A session's workers as ECS tasks of one cluster, one task per worker."""

    check_interval = 3.0  # DescribeTasks for up to 100 tasks a call
    #: What a user waits through before a task works, by the task's ``lastStatus``.
    phases: ClassVar[dict[str, str]] = {
        "PROVISIONING": "provisioning",
        "PENDING": "pulling image",
        "ACTIVATING": "starting",
    }

    def __init__(self, aws: Aws, resources: dict[str, Any], image: str) -> None:
        self.aws = aws
        self.resources = resources
        self.image = image
        self.ecs = aws.client("ecs")
        self.logs = aws.client("logs")
        self._arns: dict[str, str] = {}  # worker id (task id) -> task ARN
        self._task_definitions: dict[tuple[str, int, int], str] = {}
        self._last_call = 0.0
        self._launch_tokens = _LAUNCH_BURST
        self._refilled = time.monotonic()
        self._notices: list[str] = []

    #: Whether the session's cost is its instances' hours: its workers (supervising a
    #: detached session) may then read the instances and their prices.
    reads_instances: ClassVar[bool] = False

    @property
    def cluster(self) -> str:
        """The ECS cluster the tasks run in."""
        return self.cluster_in(self.resources)

    @staticmethod
    @abstractmethod
    def cluster_in(resources: dict[str, Any]) -> str:
        """The ECS cluster this kind of fleet runs its tasks in, from the account's set-up."""

    @abstractmethod
    def size(self, spec: WorkerSpec) -> tuple[int, int]:
        """A worker's task size: (CPU units, MiB)."""

    @abstractmethod
    def task_definition_body(self, cpu_units: int, memory_mib: int) -> dict[str, Any]:
        """RegisterTaskDefinition's arguments, less the family (``container`` makes the
        worker's container)."""

    @abstractmethod
    def placement(self, spot: bool) -> dict[str, Any]:
        """RunTask's arguments that say where tasks go (launch type or capacity providers,
        networking)."""

    @abstractmethod
    def on_spot(self, task: dict[str, Any]) -> bool:
        """Whether a described task runs (or ran) on spot capacity."""

    @classmethod
    def from_launch(cls: type[FleetT], launch: dict[str, Any]) -> FleetT:
        """The fleet a session's record describes (``place_session``'s ``launch``)."""
        resources = launch["resources"]
        fleet = cls(connect(resources.get("region")), resources, launch["image"])
        cpu_units, memory_mib = launch["size"]  # registered by the client: reuse it as is
        fleet._task_definitions[(launch["image"], cpu_units, memory_mib)] = launch[
            "task_definition"
        ]
        return fleet

    # Task definitions ------------------------------------------------------------------------

    def task_definition(self, cpu_units: int, memory_mib: int) -> str:
        """The task definition for this image and size, registered once and then reused."""
        key = (self.image, cpu_units, memory_mib)
        if key in self._task_definitions:
            return self._task_definitions[key]
        body = self.task_definition_body(cpu_units, memory_mib)
        digest = hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()[:12]
        family = f"{self.resources['task_family']}-{digest}"
        with translate_errors("find the worker task definition"):
            try:
                found = self.ecs.describe_task_definition(taskDefinition=family)["taskDefinition"]
                arn = found["taskDefinitionArn"] if found.get("status") == "ACTIVE" else ""
            except botocore.exceptions.ClientError:
                arn = ""
            if not arn:
                arn = _once_the_role_is_seen(
                    lambda: self.ecs.register_task_definition(family=family, **body)
                )["taskDefinition"]["taskDefinitionArn"]
        self._task_definitions[key] = arn
        return arn

    def container(self, memory_mib: int, command: list[str]) -> dict[str, Any]:
        """The worker's container: the image, its command, its logs in CloudWatch."""
        return {
            "name": CONTAINER,
            "image": self.image,
            "essential": True,
            "memory": memory_mib,
            "command": command,
            "stopTimeout": 120,
            "environment": [{"name": "PYTHONUNBUFFERED", "value": "1"}],
            "logConfiguration": {
                "logDriver": "awslogs",
                "options": {
                    "awslogs-group": self.resources["log_group"],
                    "awslogs-region": self.aws.region,
                    "awslogs-stream-prefix": STREAM_PREFIX,
                },
            },
        }

    def roles(self) -> dict[str, Any]:
        """The task definition's roles and tag: ECS's (pulling, logging) and the session's."""
        return {
            "executionRoleArn": self.resources["execution_role_arn"],
            "taskRoleArn": self.resources["task_role_arn"],
            "tags": [{"key": r.TAG_KEY, "value": r.TAG_VALUE}],
        }

    def task_definitions(self) -> list[str]:
        """The task definitions this fleet registered or was given."""
        return sorted(set(self._task_definitions.values()))

    def adopt_task_definitions(self, family: str) -> None:
        """Take in every task definition registered under ``family`` (a session's, found by
        its name when the session's record cannot say which)."""
        with translate_errors(f"list the task definitions of {family}"):
            pages = self.ecs.get_paginator("list_task_definitions").paginate(familyPrefix=family)
            for page in pages:
                for arn in page.get("taskDefinitionArns", []):
                    self._task_definitions[(arn, 0, 0)] = arn

    # Launching -------------------------------------------------------------------------------

    def worker_command(self, request: LaunchRequest) -> list[str]:
        """What each worker runs: pointers only."""
        return [
            "python", "-m", "starburst.worker", "--store", request.store_url,
            "--session", request.session_id, "--processes", str(request.spec.processes),
        ]  # fmt: skip

    def before_launch(self, request: LaunchRequest, count: int) -> None:
        """Called before ``count`` workers are launched (by default, nothing)."""

    def no_capacity(self, spec: WorkerSpec) -> None:
        """Called when a launch found no capacity (by default, nothing: asked again later)."""

    def launch(self, request: LaunchRequest, stripes: list[int]) -> list[str]:
        spec = request.spec
        definition = self.task_definition(*self.size(spec))
        command = self.worker_command(request)
        ids: list[str] = []
        wanted = len(stripes)
        self.shortfall = None
        self.before_launch(request, wanted)
        while len(ids) < wanted:
            batch = min(RUN_TASK_BATCH, wanted - len(ids))
            try:
                started, reasons = self._run_tasks(
                    definition, command, batch, spec.spot, request.session_id
                )
            except StarburstError as exc:
                if not ids:
                    raise
                # Tasks already started must still be watched (and billed): report them.
                self._notices.append(f"started {len(ids)} of {wanted} workers, then: {exc}")
                break
            ids += started
            if reasons:  # the next batches would fail alike: the driver asks again later
                self.shortfall = LaunchShortfall(reasons[0], _failure_kind(reasons))
                if self.shortfall.kind == "capacity":
                    self.no_capacity(spec)
                elif self.shortfall.kind == "quota" and self._arns:  # (none: QuotaError)
                    self._notices.append(
                        quota_notice(wanted, len(self._arns), spec.cpu, quota=self.quota_name)
                    )
                break
        return ids

    def take_notices(self) -> list[str]:
        notices, self._notices = self._notices, []
        return notices

    def _run_tasks(
        self, definition: str, command: list[str], count: int, spot: bool, session_id: str
    ) -> tuple[list[str], list[str]]:
        self._pace(count)
        params: dict[str, Any] = {
            "cluster": self.cluster,
            "taskDefinition": definition,
            "count": count,
            "startedBy": session_id,  # how `find` (in any process) lists the session's tasks
            "overrides": {"containerOverrides": [{"name": CONTAINER, "command": command}]},
            "tags": [
                {"key": r.TAG_KEY, "value": r.TAG_VALUE},
                {"key": r.SESSION_TAG_KEY, "value": session_id},  # its role's own tasks
            ],
            **self.placement(spot),
        }
        with translate_errors("start workers with RunTask"):
            try:
                answer = _once_the_role_is_seen(lambda: self.ecs.run_task(**params))
            except botocore.exceptions.ClientError as exc:
                message = str(exc.response.get("Error", {}).get("Message", ""))
                if _WAITING_LIMIT not in message.lower():
                    raise
                return [], [message]
        started = []
        for task in answer.get("tasks", []):
            worker_id = task["taskArn"].rsplit("/", 1)[1]
            self._arns[worker_id] = task["taskArn"]
            started.append(worker_id)
        return started, [f.get("reason", "") for f in answer.get("failures", [])]

    def _pace(self, tasks: int) -> None:
        """Wait until a RunTask call for ``tasks`` fits under ECS's rate limits."""
        now = time.monotonic()
        self._launch_tokens = min(
            _LAUNCH_BURST, self._launch_tokens + (now - self._refilled) * _LAUNCHES_PER_SECOND
        )
        self._refilled = now
        wait = max(
            self._last_call + 1.0 / _CALLS_PER_SECOND - now,
            (tasks - self._launch_tokens) / _LAUNCHES_PER_SECOND,
        )
        if wait > 0:
            time.sleep(wait)
        self._launch_tokens -= tasks
        self._last_call = time.monotonic()

    # Watching and stopping -------------------------------------------------------------------

    def describe(self, worker_ids: list[str]) -> list[WorkerInfo]:
        infos = []
        for start in range(0, len(worker_ids), 100):
            batch = worker_ids[start : start + 100]
            with translate_errors("check on the workers"):
                answer = self.ecs.describe_tasks(
                    cluster=self.cluster, tasks=[self._arns[w] for w in batch]
                )
            by_arn = {task["taskArn"]: task for task in answer.get("tasks", [])}
            for worker_id in batch:
                task = by_arn.get(self._arns[worker_id])
                infos.append(self._worker_info(worker_id, task))
        return infos

    def find(self, session_id: str) -> list[WorkerInfo]:
        """The session's tasks, running and recently stopped (ECS shows stopped tasks for
        about an hour), as ``RunTask`` tagged them with ``startedBy``."""
        for status in ("RUNNING", "STOPPED"):
            with translate_errors("list the session's workers"):
                pages = self.ecs.get_paginator("list_tasks").paginate(
                    cluster=self.cluster, startedBy=session_id, desiredStatus=status
                )
                for page in pages:
                    for arn in page.get("taskArns", []):
                        self._arns.setdefault(arn.rsplit("/", 1)[1], arn)
        return self.describe(sorted(self._arns))

    def stop(self, worker_ids: list[str], grace: bool = True) -> None:
        if not worker_ids:
            return
        with ThreadPoolExecutor(max_workers=min(16, len(worker_ids))) as pool:
            for done in [pool.submit(self._stop_one, worker_id) for worker_id in worker_ids]:
                done.result()

    def _stop_one(self, worker_id: str) -> None:
        with translate_errors("stop a worker"):
            try:
                self.ecs.stop_task(
                    cluster=self.cluster,
                    task=self._arns[worker_id],
                    reason="starburst: the work is over",
                )
            except botocore.exceptions.ClientError as exc:
                if "InvalidParameter" not in str(exc):
                    raise

    def log_tail(self, worker_id: str, lines: int = 20) -> str:
        stream = f"{STREAM_PREFIX}/{CONTAINER}/{worker_id}"
        try:
            events = self.logs.get_log_events(
                logGroupName=self.resources["log_group"],
                logStreamName=stream,
                limit=lines,
                startFromHead=False,
            )["events"]
        except botocore.exceptions.ClientError:
            return ""
        return "\n".join(event["message"] for event in events)

    def _worker_info(self, worker_id: str, task: dict[str, Any] | None) -> WorkerInfo:
        if task is None:
            return WorkerInfo(worker_id, "stopped", reason="the task is no longer known to ECS")
        status = task.get("lastStatus", "")
        state: WorkerState = "pending"
        if status in ("RUNNING", "DEACTIVATING", "STOPPING"):
            state = "running"
        elif status in ("DEPROVISIONING", "STOPPED"):
            state = "stopped"
        phase = self.phases.get(status, state)
        container = (task.get("containers") or [{}])[0]
        stop_code = task.get("stopCode", "")
        stopped_reason = task.get("stoppedReason") or ""
        reason = " ".join(
            part for part in (stop_code, stopped_reason, container.get("reason")) if part
        )
        return WorkerInfo(
            worker_id,
            state,
            phase=phase,
            exit_code=container.get("exitCode"),
            reason=reason or None,
            fault=_fault(stop_code, stopped_reason, container),
            started_at=_timestamp(task.get("startedAt")),
            stopped_at=_timestamp(task.get("stoppedAt")),
            billed_from=_timestamp(task.get("pullStartedAt") or task.get("startedAt")),
            spot=self.on_spot(task),
            created_at=_timestamp(task.get("createdAt")),
            pull_started_at=_timestamp(task.get("pullStartedAt")),
            pull_stopped_at=_timestamp(task.get("pullStoppedAt")),
        )

    # The end of a session --------------------------------------------------------------------

    def release_capacity(self, session_id: str) -> None:
        """Give back what the session's workers ran on, once they are done (by default,
        nothing: ECS owns it)."""


def _failure_kind(reasons: list[str]) -> str:
    """What RunTask's failure reasons say: ``quota`` (the vCPU limit), ``capacity`` (none to
    spare now: "Capacity is unavailable...", ``RESOURCE:...``, too many tasks waiting for
    instances), else ``refused``."""
    texts = [reason.lower() for reason in reasons]
    if any(_QUOTA_REASON in text for text in texts):
        return "quota"
    if any("capacity" in text or text.startswith("resource") for text in texts):
        return "capacity"
    return "refused"


def _once_the_role_is_seen(call: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """``call()``, retried with backoff while ECS refuses the session's new role as unknown
    (for up to ``_ROLE_PROPAGATION_SECONDS``)."""
    deadline = time.monotonic() + _ROLE_PROPAGATION_SECONDS
    pause = 0.5
    while True:
        try:
            return call()
        except botocore.exceptions.ClientError as exc:
            message = str(exc.response.get("Error", {}).get("Message", ""))
            if not any(refusal in message for refusal in _NEW_ROLE_REFUSALS):
                raise
            if time.monotonic() + pause > deadline:
                raise
        time.sleep(pause)
        pause = min(pause * 2, 8.0)


def _fault(stop_code: str, stopped_reason: str, container: dict[str, Any]) -> WorkerFault | None:
    """Why a task stopped, decided by its stop code first (spot exits look like OOM). A task
    whose EC2 instance went away says "Host EC2 (instance i-...) terminated." (EC2_FACTS §2.4)."""
    if stop_code in ("SpotInterruption", "TerminationNotice") or stopped_reason.startswith(
        "Host EC2"
    ):
        return "interrupted"
    if "OutOfMemoryError" in (container.get("reason") or ""):
        return "out_of_memory"
    if stop_code == "TaskFailedToStart":
        return "failed_to_start"
    return None


def _timestamp(value: Any) -> float | None:
    return value.timestamp() if hasattr(value, "timestamp") else None


def _environment_image(aws: Aws) -> str:
    """The worker image of the local environment, built and pushed the first time."""
    from ..env.build import ensure_image

    def say(line: str) -> None:
        print(line, file=sys.stderr, flush=True)

    return ensure_image(aws, Config.load().aws, progress=say).uri


def place_session(
    fleet_class: type[EcsTaskFleet],
    spec: WorkerSpec,
    session_id: str,
    check: Callable[[dict[str, Any]], None] = lambda resources: None,
    chosen: dict[str, Any] | None = None,
) -> Placement:
    """A new session on ECS tasks: the account's S3 store, a role for its workers, the
    environment's image and the task definition of its workers' size. ``check`` refuses,
    before anything is made, an account that is not set up for this fleet; ``chosen`` is
    what the fleet keeps of the user's choices in the session's record (JSON)."""
    from .base import Placement

    resources = Config.load().aws
    if not resources.get("bucket"):
        raise SetupRequiredError(
            "starburst is not set up in this AWS account yet: run `starburst setup` (about "
            "two minutes), then try again"
        )
    check(resources)
    aws = connect(resources.get("region"))
    image = resolve("image") or _environment_image(aws)
    store = account_bucket(aws, resources)
    record_session_image(store, session_id, image)  # `starburst env prune` keeps it
    names = r.Names(resources["account_id"], aws.region)
    session_resources = {
        **resources,
        "task_role_arn": create_session_role(
            aws,
            names,
            session_id,
            resolve("worker_policy"),
            cluster=fleet_class.cluster_in(resources),
            reads_instances=fleet_class.reads_instances,
        ),
        "task_family": names.session_task_family(session_id),
        **(chosen or {}),
    }
    fleet = fleet_class(aws, session_resources, image)
    discard = functools.partial(discard_session, store, fleet, session_id)
    size = fleet.size(spec)
    try:
        definition = fleet.task_definition(*size)
    except BaseException:
        discard()  # (the role made above)
        raise
    launch = {
        "resources": session_resources,
        "image": image,
        "size": list(size),
        "task_definition": definition,
    }
    return Placement(store, fleet, discard, launch)


def reopen_session(
    fleet_class: type[EcsTaskFleet], session_id: str, store: Store, launch: dict[str, Any]
) -> Placement:
    """An existing session's placement, from its record's ``launch``."""
    from .base import Placement

    fleet = fleet_class.from_launch(launch)
    discard = functools.partial(discard_session, store, fleet, session_id)
    return Placement(store, fleet, discard, launch)


def discard_session(store: Store, fleet: EcsTaskFleet, session_id: str) -> None:
    """Give back the session's capacity, delete its records and data from the bucket, its
    task definitions and its workers' role."""
    fleet.release_capacity(session_id)
    for prefix in (f"sessions/{session_id}/", f"data/{session_id}/"):
        store.delete_prefix(prefix)
    with translate_errors(f"remove the task definitions of session {session_id}"):
        for arn in fleet.task_definitions():
            fleet.ecs.deregister_task_definition(taskDefinition=arn)
    names = r.Names(fleet.resources["account_id"], fleet.aws.region)
    remove_session_role(fleet.aws, names, session_id)


def discard_unreadable(fleet_class: type[EcsTaskFleet], store: Store, session_id: str) -> None:
    """Remove a session whose record cannot be read (damaged, or from a newer starburst),
    finding what it made by name: stop its tasks, then ``discard_session``."""
    resources = Config.load().aws
    aws = connect(resources.get("region"))
    family = r.Names(resources["account_id"], aws.region).session_task_family(session_id)
    fleet = fleet_class(aws, {**resources, "task_family": family}, image="")
    fleet.stop([info.worker_id for info in fleet.find(session_id) if info.state != "stopped"])
    fleet.adopt_task_definitions(family)
    discard_session(store, fleet, session_id)


def account_store() -> S3Store | None:
    """The configured account's bucket, or None when starburst is not set up for AWS."""
    resources = Config.load().aws
    if not resources.get("bucket"):
        return None
    return account_bucket(connect(resources.get("region")), resources)
