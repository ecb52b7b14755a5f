"""Faults a test asks for: API errors, RunTask failures, vCPU quotas, task-level faults, and
EC2 faults (failed Auto Scaling launches, Spot interruption notices, instances terminated)."""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from starburst.emulator.capacity import Ec2Capacity
    from starburst.emulator.runner import TaskRunner

CAPACITY_REASON = (
    "Capacity is unavailable at this time. Please try again later or in a different "
    "availability zone"
)
QUOTA_REASON = "You've reached the limit on the number of vCPUs you can run concurrently"
CANNOT_PULL_REASON = (
    "CannotPullContainerError: pull image manifest has been retried 1 time(s): failed to "
    "resolve ref docker.io/library/missing:latest: not found"
)
RUNTASK_REASONS = {"capacity": CAPACITY_REASON, "quota": QUOTA_REASON}

THROTTLE = "__throttle__"  # code of a rule answered as each protocol throttles


@dataclass
class ErrorRule:
    """Answer ``operation`` with an error ``remaining`` more times (None: until cleared)."""

    operation: str
    service: str | None
    code: str
    status: int
    message: str
    remaining: int | None

    def matches(self, service: str | None, operation: str) -> bool:
        return (self.operation in (operation, "*")) and self.service in (None, service)


@dataclass(frozen=True)
class ErrorAnswer:
    """An error the layer must answer instead of passing the request on."""

    code: str
    status: int
    message: str

    @property
    def is_throttle(self) -> bool:
        return self.code == THROTTLE


class Faults:
    """Fault injection. API faults are answered by the layer, task faults by the runner."""

    def __init__(
        self,
        runner: Callable[[], TaskRunner | None],
        capacity: Callable[[], Ec2Capacity | None],
    ) -> None:
        self._lock = threading.Lock()
        self._runner = runner
        self._capacity = capacity
        self._errors: list[ErrorRule] = []
        self._runtask_failures: list[list[Any]] = []  # [reason, remaining]
        self.vcpu_quota_enforced = False
        self.task_capacity: int | None = None

    # ---- API faults (answered by the layer) --------------------------------------------

    def throttle(self, operation: str, times: int | None = 1, service: str | None = None) -> None:
        """The next ``times`` calls of ``operation`` are throttled as AWS does.

        JSON services answer 400 ``ThrottlingException`` "Rate exceeded"; S3 answers 503
        ``SlowDown``; query services 400 ``Throttling``; EC2 503 ``RequestLimitExceeded``.
        ``operation`` is the API name (``RunTask``, ``PutObject``) or ``*``; ``service`` (the
        signing name: ``ecs``, ``s3``, ``logs``...) narrows it. ``times=None``: until cleared.
        """
        self.error(operation, THROTTLE, status=0, times=times, service=service)

    def error(
        self,
        operation: str,
        code: str,
        *,
        status: int = 400,
        message: str = "",
        times: int | None = 1,
        service: str | None = None,
    ) -> None:
        """The next ``times`` calls of ``operation`` answer error ``code`` with ``status``."""
        with self._lock:
            self._errors.append(ErrorRule(operation, service, code, status, message, times))

    def clear_errors(self, operation: str | None = None) -> None:
        """Drop every error rule (or those for ``operation``)."""
        with self._lock:
            self._errors = [r for r in self._errors if operation not in (None, r.operation)]

    def take_error(self, service: str | None, operation: str) -> ErrorAnswer | None:
        """Consume and return the error for this call, if a rule wants one (layer side)."""
        with self._lock:
            for rule in self._errors:
                if rule.matches(service, operation):
                    if rule.remaining is not None:
                        rule.remaining -= 1
                        if rule.remaining <= 0:
                            self._errors.remove(rule)
                    return ErrorAnswer(rule.code, rule.status, rule.message)
        return None

    def runtask_failures(
        self, kind: str = "capacity", times: int = 1, reason: str | None = None
    ) -> None:
        """The next ``times`` RunTask calls launch nothing and list one failure per task.

        ``kind`` is ``capacity`` or ``quota`` (AWS's reasons), or give ``reason`` yourself.
        """
        text = reason or RUNTASK_REASONS[kind]
        with self._lock:
            self._runtask_failures.append([text, times])

    def take_runtask_failure(self) -> str | None:
        """Consume one injected RunTask failure, returning its reason (layer side)."""
        with self._lock:
            if not self._runtask_failures:
                return None
            entry = self._runtask_failures[0]
            entry[1] -= 1
            if entry[1] <= 0:
                self._runtask_failures.pop(0)
            return entry[0]

    def limit_capacity(self, tasks: int | None) -> None:
        """RunTask starts tasks only while fewer than ``tasks`` run (of any session); each
        task beyond is a failure for capacity, as Fargate lists it (None: no limit)."""
        self.task_capacity = tasks

    def enforce_vcpu_quota(self, on: bool = True) -> None:
        """RunTask launches only what fits under the Fargate vCPU quotas (``aws.quotas``)."""
        self.vcpu_quota_enforced = on

    # ---- task faults (carried out by the task runner) ----------------------------------

    def _need_runner(self) -> TaskRunner:
        runner = self._runner()
        if runner is None:
            raise RuntimeError("no task runner is active")
        return runner

    def spot_interruption(
        self,
        task_arn: str | None = None,
        after: float = 0.5,
        count: int = 1,
        grace: float = 1.0,
    ) -> None:
        """Interrupt a Spot task: SIGTERM (stopCode ``TerminationNotice``), then after
        ``grace`` seconds SIGKILL if still alive; it ends with stopCode ``SpotInterruption``.

        With ``task_arn``, that task, ``after`` seconds from once it runs; without, the next
        ``count`` tasks to reach RUNNING, each ``after`` seconds after it started.
        """
        self._need_runner().schedule("spot", task_arn, after=after, count=count, grace=grace)

    def oom_kill(self, task_arn: str | None = None, after: float = 0.0, count: int = 1) -> None:
        """Kill a task's container as the OOM killer does: SIGKILL, exit 137, reason
        ``OutOfMemoryError: Container killed due to memory usage``. Targets as for
        :meth:`spot_interruption`."""
        self._need_runner().schedule("oom", task_arn, after=after, count=count, grace=0.0)

    def failed_start(self, count: int = 1, reason: str = CANNOT_PULL_REASON) -> None:
        """The next ``count`` tasks never run their container: they stop with stopCode
        ``TaskFailedToStart`` and ``reason`` (by default, an image that cannot be pulled)."""
        self._need_runner().fail_starts(reason, count)

    def slow_start(self, seconds: float, count: int | None = None) -> None:
        """Tasks launched from now on (the next ``count``, or all) stay PENDING ``seconds``."""
        self._need_runner().slow_start(seconds, count)

    # ---- EC2 faults (carried out by EC2 capacity) ---------------------------------------

    def _need_capacity(self) -> Ec2Capacity:
        capacity = self._capacity()
        if capacity is None:
            raise RuntimeError("no EC2 capacity is active")
        return capacity

    def fail_launches(self, group: str, reason: str = "spot", times: int | None = None) -> None:
        """The Auto Scaling group's next ``times`` launch attempts (None: until
        :meth:`clear_launch_failures`) fail, each a failed scaling activity whose
        StatusMessage carries ``reason``: ``spot`` ("There is no Spot capacity available
        that matches your request."), ``quota`` (the vCPU-limit text), or your own text."""
        self._need_capacity().fail_launches(group, reason, times)

    def clear_launch_failures(self, group: str | None = None) -> None:
        """The group (or every group) launches again."""
        self._need_capacity().clear_launch_failures(group)

    def spot_notice(self, instance_id: str, seconds: float = 120.0) -> None:
        """Give an instance the two-minute Spot interruption notice: its metadata's
        ``spot/instance-action`` answers ``{"action": "terminate", "time": ...}``."""
        self._need_capacity().spot_notice(instance_id, seconds)

    def terminate_instance(self, instance_id: str) -> None:
        """Terminate an instance as a Spot reclaim does: its tasks stop with stopCode
        ``TerminationNotice`` ("Host EC2 (instance i-...) terminated."), its container
        instance leaves the cluster, and its group launches a replacement."""
        self._need_capacity().terminate(instance_id)

    def reset(self) -> None:
        """Forget every API fault."""
        with self._lock:
            self._errors.clear()
            self._runtask_failures.clear()
            self.vcpu_quota_enforced = False
            self.task_capacity = None
