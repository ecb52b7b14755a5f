"""In-process fixes to moto 5.2.5, installed while the emulator runs.

* ECS ``run_task`` / ``stop_task`` report to a listener (the task runner), so tasks start as
  PROVISIONING and StopTask signals the task's process instead of jumping to STOPPED.
* EC2 capacity (``capacity.py``) takes over where moto stops: RunTask on EC2 capacity
  providers, an Auto Scaling group's launches (moto's own would give every instance the
  launch template's type, at once), DescribeScalingActivities (always empty in moto) and
  DescribeSpotPriceHistory (a constant 0.00001 in moto).
* IAM's AWS managed policies (``MOTO_IAM_LOAD_MANAGED_POLICIES``) are parsed once, not on
  every reset and for every partition (that cost about 1.5 s per test).
* S3 object writes (PutObject, CopyObject, DeleteObject, multipart completion) run one at a
  time: moto checks ``If-None-Match``/``If-Match`` and then writes, without a lock, so two
  racing conditional writes could both win. S3 makes them atomic.
* S3 bucket policies see ``aws:SecureTransport`` as a real HTTPS client would (true): moto
  ignores ``Bool`` conditions, which made every TLS-only bucket deny everything.
* The list of moto's service modules is read once: moto's dispatcher lists its package
  folder on disk for every request, holding the one lock every request needs (under 100
  workers' requests, a 2 ms request waited hundreds of milliseconds for it).
"""

from __future__ import annotations

import functools
import json
import threading
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, Protocol

from moto import backends, settings
from moto.autoscaling.models import FakeAutoScalingGroup
from moto.autoscaling.responses import AutoScalingResponse
from moto.core.responses import ActionResult
from moto.ec2.responses.spot_instances import SpotInstances
from moto.ecs.exceptions import EcsClientException, InvalidParameterException
from moto.ecs.models import EC2ContainerServiceBackend, Task
from moto.iam.access_control import IAMPolicy, PermissionResult
from moto.iam.aws_managed_policies import aws_managed_policies_data
from moto.iam.models import AWSManagedPolicy, IAMBackend, ManagedPolicy
from moto.s3.models import FakeBucket
from moto.s3.responses import S3Response


class EcsListener(Protocol):
    """What the task runner implements to hear about ECS tasks."""

    def tasks_created(self, backend: EC2ContainerServiceBackend, tasks: list[Task]) -> None:
        """Called with the tasks RunTask just made, before the response is written."""

    def stop_requested(self, task: Task, reason: str | None) -> bool:
        """StopTask on ``task``; True if the listener handles it (moto must not)."""


class Capacity(Protocol):
    """What EC2 capacity (``capacity.py``) implements to take over from moto."""

    def run_task(self, backend: EC2ContainerServiceBackend, kwargs: dict[str, Any]) -> Any:
        """RunTask on EC2 capacity: its tasks (None: not on EC2; moto handles it)."""

    def scaling_activities(self, group: str | None) -> list[dict[str, Any]]:
        """A group's scaling activities, newest first."""


_listener: EcsListener | None = None
_capacity: Capacity | None = None
_spot_price: Callable[[str, str], float] | None = None  # (instance type, zone) -> USD/h
_originals: dict[str, Any] = {}


def set_ecs_listener(listener: EcsListener | None) -> None:
    """Route new tasks and StopTask calls to ``listener`` (None: moto's own behaviour)."""
    global _listener
    _listener = listener


def set_capacity(capacity: Capacity | None) -> None:
    """Let ``capacity`` launch groups' instances and run tasks on them (None: moto's)."""
    global _capacity
    _capacity = capacity


def set_spot_prices(price: Callable[[str, str], float] | None) -> None:
    """Answer DescribeSpotPriceHistory with ``price(instance_type, zone)``."""
    global _spot_price
    _spot_price = price


_RUN_TASK_ARGUMENTS = ("cluster_str", "task_definition_str", "count", "overrides", "started_by",
                       "tags", "launch_type", "networking_configuration", "group",
                       "platform_version", "capacity_provider_strategy")  # fmt: skip


def _run_task(self: EC2ContainerServiceBackend, *args: Any, **kwargs: Any) -> list[Task]:
    capacity = _capacity
    if capacity is not None:
        named = {**dict(zip(_RUN_TASK_ARGUMENTS, args, strict=False)), **kwargs}
        tasks = capacity.run_task(self, named)
        if tasks is not None:
            return tasks
    tasks = _originals["run_task"](self, *args, **kwargs)
    listener = _listener
    if listener is not None and tasks:
        listener.tasks_created(self, tasks)
    return tasks


def _stop_task(
    self: EC2ContainerServiceBackend, cluster_str: str, task_str: str, reason: str | None
) -> Task:
    cluster = self._get_cluster(cluster_str)
    task_id = task_str.split("/")[-1]
    task = next(
        (t for arn, t in self.tasks.get(cluster.name, {}).items() if arn.endswith("/" + task_id)),
        None,
    )
    if task is None:
        # moto raises a bare Exception (HTTP 500); AWS answers this.
        raise InvalidParameterException("The referenced task was not found.")
    listener = _listener
    if listener is not None and listener.stop_requested(task, reason):
        return task
    return _originals["stop_task"](self, cluster_str, task_str, reason)


def _replace_instances(self: FakeAutoScalingGroup, *args: Any, **kwargs: Any) -> None:
    """moto launches a group's missing instances here; EC2 capacity does it instead."""
    if _capacity is None:
        _originals["replace_autoscaling_group_instances"](self, *args, **kwargs)


def _describe_scaling_activities(self: AutoScalingResponse) -> ActionResult:
    if _capacity is None:
        return _originals["describe_scaling_activities"](self)
    activities = _capacity.scaling_activities(self._get_param("AutoScalingGroupName"))
    wanted = self._get_param("ActivityIds", [])
    if wanted:
        activities = [a for a in activities if a["ActivityId"] in wanted]
    limit = int(self._get_param("MaxRecords") or 100)
    start = int(self._get_param("NextToken") or 0)
    page = activities[start : start + limit]
    result: dict[str, Any] = {"Activities": page}
    if start + limit < len(activities):
        result["NextToken"] = str(start + limit)
    return ActionResult(result)


def _describe_spot_price_history(self: SpotInstances) -> ActionResult:
    answer = _originals["describe_spot_price_history"](self)
    if _spot_price is None:
        return answer
    zone = self._get_param("AvailabilityZone")
    now = datetime.now(UTC)
    history = []
    for entry in answer.result["SpotPriceHistory"]:
        if zone in (None, entry["AvailabilityZone"]):
            price = _spot_price(entry["InstanceType"], entry["AvailabilityZone"])
            history.append(
                {**entry, "SpotPrice": f"{price:.6f}", "Timestamp": now,
                 "ProductDescription": "Linux/UNIX"}
            )  # fmt: skip
    return ActionResult({"SpotPriceHistory": history})


def _secure_transport_resolved(policy: dict[str, Any]) -> dict[str, Any]:
    """The policy with ``aws:SecureTransport`` conditions decided for an HTTPS request.

    A statement whose ``Bool``/``BoolIfExists`` condition on the key does not match ``true``
    does not apply and is dropped; a matching condition is removed from its statement.
    """
    statements = policy.get("Statement", [])
    single = isinstance(statements, dict)
    kept = []
    for statement in [statements] if single else statements:
        conditions = statement.get("Condition")
        applies = True
        if isinstance(conditions, dict):
            conditions = {op: dict(block) for op, block in conditions.items()}
            for op in ("Bool", "BoolIfExists"):
                block = conditions.get(op, {})
                for key in [k for k in block if k.lower() == "aws:securetransport"]:
                    values = block.pop(key)
                    values = values if isinstance(values, list) else [values]
                    if "true" not in [str(v).lower() for v in values]:
                        applies = False
                if op in conditions and not conditions[op]:
                    del conditions[op]
            statement = {k: v for k, v in statement.items() if k != "Condition"}
            if conditions:
                statement["Condition"] = conditions
        if applies:
            kept.append(statement)
    if single and kept:
        return {**policy, "Statement": kept[0]}
    return {**policy, "Statement": kept}


def _get_permission(self: FakeBucket, action: str, resource: str) -> Any:
    if self.policy is None:
        return PermissionResult.NEUTRAL
    policy = _secure_transport_resolved(json.loads(self.policy.decode()))
    return IAMPolicy(json.dumps(policy)).is_action_permitted(action, resource)


_managed_policies: list[tuple[str, dict[str, Any]]] = []


def _init_aws_policies(self: IAMBackend) -> list[ManagedPolicy]:
    """moto's own, with the policy data parsed and serialised once per process."""
    if not settings.load_iam_aws_managed_policies():
        return []
    if not _managed_policies:
        for name, data in json.loads(aws_managed_policies_data).items():
            fields = {
                "default_version_id": data.get("DefaultVersionId"),
                "path": data.get("Path"),
                "document": json.dumps(data.get("Document")),
                "create_date": datetime.fromisoformat(data["CreateDate"]),
                "update_date": datetime.fromisoformat(data["UpdateDate"]),
            }
            _managed_policies.append((name, fields))
    return [
        AWSManagedPolicy(name, account_id=self.account_id, region=self.region_name, **fields)
        for name, fields in _managed_policies
    ]


def _deregister_container_instance(
    self: EC2ContainerServiceBackend, cluster_str: str, container_instance_str: str, force: bool
) -> Any:
    """moto's, but a container instance that is gone is ECS's ClientException (400), not a
    bare exception (500, which clients retry ten times): the emulated capacity deregisters
    a terminated instance's itself, so a teardown may find one gone between list and call."""
    cluster = self._get_cluster(cluster_str)
    if container_instance_str.split("/")[-1] not in self.container_instances.get(cluster.name, {}):
        raise EcsClientException(f"Container instance {container_instance_str} not found.")
    return _originals["deregister_container_instance"](
        self, cluster_str, container_instance_str, force
    )


_CAPACITY_PATCHES: tuple[tuple[type, str, Callable[..., Any]], ...] = (
    (EC2ContainerServiceBackend, "deregister_container_instance", _deregister_container_instance),
    (FakeAutoScalingGroup, "replace_autoscaling_group_instances", _replace_instances),
    (AutoScalingResponse, "describe_scaling_activities", _describe_scaling_activities),
    (SpotInstances, "describe_spot_price_history", _describe_spot_price_history),
)
_s3_write_lock = threading.RLock()
_S3_WRITES = ("put_object", "copy_object", "delete_object", "_key_response_post")


def _atomic(method: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(method)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        with _s3_write_lock:
            return method(*args, **kwargs)

    return wrapper


def install() -> None:
    """Apply the patches (idempotent)."""
    if _originals:
        return
    _originals["run_task"] = EC2ContainerServiceBackend.run_task
    _originals["stop_task"] = EC2ContainerServiceBackend.stop_task
    _originals["get_permission"] = FakeBucket.get_permission
    _originals["init_aws_policies"] = IAMBackend._init_aws_policies
    EC2ContainerServiceBackend.run_task = _run_task  # type: ignore[method-assign]
    EC2ContainerServiceBackend.stop_task = _stop_task  # type: ignore[method-assign]
    for owner, name, replacement in _CAPACITY_PATCHES:
        _originals[name] = getattr(owner, name)
        setattr(owner, name, replacement)
    FakeBucket.get_permission = _get_permission  # type: ignore[method-assign]
    IAMBackend._init_aws_policies = _init_aws_policies  # type: ignore[method-assign]
    _originals["list_of_moto_modules"] = backends.list_of_moto_modules
    modules = tuple(backends.list_of_moto_modules())
    backends.list_of_moto_modules = lambda: modules  # type: ignore[assignment]
    for name in _S3_WRITES:
        _originals[f"s3.{name}"] = getattr(S3Response, name)
        setattr(S3Response, name, _atomic(getattr(S3Response, name)))


def uninstall() -> None:
    """Restore moto's own methods."""
    if not _originals:
        return
    EC2ContainerServiceBackend.run_task = _originals.pop("run_task")  # type: ignore[method-assign]
    EC2ContainerServiceBackend.stop_task = _originals.pop("stop_task")  # type: ignore[method-assign]
    FakeBucket.get_permission = _originals.pop("get_permission")  # type: ignore[method-assign]
    IAMBackend._init_aws_policies = _originals.pop("init_aws_policies")  # type: ignore[method-assign]
    backends.list_of_moto_modules = _originals.pop("list_of_moto_modules")
    for name in _S3_WRITES:
        setattr(S3Response, name, _originals.pop(f"s3.{name}"))
    for owner, name, _ in _CAPACITY_PATCHES:
        setattr(owner, name, _originals.pop(name))
    set_ecs_listener(None)
    set_capacity(None)
    set_spot_prices(None)
