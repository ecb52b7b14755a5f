"""The instances a session's workers ran on, for the cost from instance-hours
(``Ec2Fleet.instance_usage``): every instance of starburst's groups, each with its own life
(DescribeInstances), its own price (``InstancePrices``), and the tasks that ran on it (every
task of the cluster, with its container instance).

An instance counts for a session when a task of the session ran on it since the session
began, or when it was launched since then and ran no task at all (it booted for the session,
or came too late). An instance that other sessions' tasks ran on too is split between them
by the vCPU-seconds their tasks held on it since the session began.

Stopped tasks and terminated instances are kept once read (their times are final): ECS and
EC2 show them for about an hour only.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from ...aws.connection import Aws, translate_errors
from ...cost.ec2_prices import InstancePrices
from ...cost.instance_bill import launched_since
from ..base import InstanceUse
from .instances import CATALOGUE

#: EC2 says when an instance went in its StateTransitionReason, e.g.
#: "User initiated (2026-12-06 17:40:11 GMT)".
_WHEN = re.compile(r"\((\d{4}-\d\d-\d\d \d\d:\d\d:\d\d) (?:GMT|UTC)\)")
_GONE = ("shutting-down", "terminated", "stopping", "stopped")
#: The tag Auto Scaling gives each instance it launches.
_GROUP_TAG = "aws:autoscaling:groupName"


@dataclass
class _Instance:
    instance_id: str
    instance_type: str
    vcpus: float
    spot: bool
    zone: str
    launched: float
    terminated: float | None


@dataclass
class _Task:
    worker: str  # its task id (a worker id)
    host: str  # container instance ARN
    session: str  # RunTask's startedBy
    vcpus: float
    start: float | None  # image pull (or start), epoch seconds
    stopped: float | None

    def vcpu_seconds(self, since: float, now: float) -> float:
        """The vCPU-seconds it held its instance from ``since`` to ``now``."""
        if self.start is None:
            return 0.0
        start, end = max(self.start, since), self.stopped if self.stopped is not None else now
        return max(0.0, end - start) * self.vcpus


class InstanceUsage:
    """Reads the instances of starburst's groups and the tasks of its cluster for one fleet."""

    def __init__(self, aws: Aws, cluster: str, groups: list[str]) -> None:
        self.ec2 = aws.client("ec2")
        self.ecs = aws.client("ecs")
        self.cluster = cluster
        self.groups = groups
        self.prices = InstancePrices(aws)
        self._hosts: dict[str, str | None] = {}  # container instance ARN -> instance id
        self._gone: dict[str, _Instance] = {}  # terminated instances, as last seen
        self._seen_up: dict[str, float] = {}  # instance id -> when last seen running
        self._stopped: dict[str, _Task] = {}  # task ARN -> a stopped task

    def read(self, session_id: str, since: float) -> list[InstanceUse]:
        """The session's instances since ``since`` (epoch seconds), each with its price and
        the session's part of it."""
        now = time.time()
        with translate_errors("read the instances the workers ran on"):
            instances = self._instances(since, now)
            tasks = self._tasks()
            self._learn_hosts({t.host for t in tasks if t.host not in self._hosts})
        mine: dict[str, float] = {}
        everyone: dict[str, float] = {}
        carried: dict[str, list[str]] = {}  # instance id -> the session's workers on it
        for task in tasks:
            instance_id = self._hosts.get(task.host)
            if instance_id is None or (task.stopped is not None and task.stopped < since):
                continue
            seconds = task.vcpu_seconds(since, now)
            everyone[instance_id] = everyone.get(instance_id, 0.0) + seconds
            if task.session == session_id:
                carried.setdefault(instance_id, []).append(task.worker)
                mine[instance_id] = mine.get(instance_id, 0.0) + seconds
        uses = []
        for instance in instances:
            key = instance.instance_id
            if key not in carried and (
                key in everyone or not launched_since(instance.launched, since)
            ):
                continue  # other sessions' instance, or a warm one this session did not use
            total = everyone.get(key, 0.0)
            uses.append(
                InstanceUse(
                    instance_id=key,
                    instance_type=instance.instance_type,
                    vcpus=instance.vcpus,
                    hourly=self.prices.hourly(instance.instance_type, instance.spot, instance.zone),
                    launched=instance.launched,
                    terminated=instance.terminated,
                    share=mine.get(key, 0.0) / total if total > 0 else 1.0,
                    task_vcpu_seconds=mine.get(key, 0.0),
                    spot=instance.spot,
                    zone=instance.zone,
                    workers=tuple(sorted(carried.get(key, ()))),
                )
            )
        return uses

    def _instances(self, since: float, now: float) -> list[_Instance]:
        """Every instance of the groups up at some time since ``since``."""
        pages = self.ec2.get_paginator("describe_instances").paginate(
            Filters=[{"Name": f"tag:{_GROUP_TAG}", "Values": self.groups}]
        )
        found = dict(self._gone)
        for page in pages:
            for reservation in page.get("Reservations", []):
                for described in reservation.get("Instances", []):
                    instance = self._instance(described, now)
                    found[instance.instance_id] = instance
                    if instance.terminated is not None:
                        self._gone[instance.instance_id] = instance
        return [i for i in found.values() if i.terminated is None or i.terminated >= since]

    def _instance(self, described: dict[str, Any], now: float) -> _Instance:
        instance_id, name = described["InstanceId"], described["InstanceType"]
        terminated = None
        if described.get("State", {}).get("Name") in _GONE:
            when = _WHEN.search(described.get("StateTransitionReason") or "")
            terminated = (
                datetime.strptime(when.group(1), "%Y-%m-%d %H:%M:%S")
                .replace(tzinfo=UTC)
                .timestamp()
                if when
                else self._seen_up.get(instance_id, described["LaunchTime"].timestamp())
            )
        else:
            self._seen_up[instance_id] = now
        kind, cores = CATALOGUE.get(name), described.get("CpuOptions", {})
        vcpus = kind.vcpus if kind else cores.get("CoreCount", 1) * cores.get("ThreadsPerCore", 1)
        return _Instance(
            instance_id=instance_id,
            instance_type=name,
            vcpus=vcpus,
            spot=described.get("InstanceLifecycle") == "spot",
            zone=described.get("Placement", {}).get("AvailabilityZone", ""),
            launched=described["LaunchTime"].timestamp(),
            terminated=terminated,
        )

    def _tasks(self) -> list[_Task]:
        """Every task of the cluster placed on an instance (running, or stopped within the
        hour ECS shows them, or kept from an earlier read)."""
        arns = []
        for status in ("RUNNING", "STOPPED"):
            pages = self.ecs.get_paginator("list_tasks").paginate(
                cluster=self.cluster, desiredStatus=status
            )
            arns += [arn for page in pages for arn in page.get("taskArns", [])]
        fresh = [arn for arn in dict.fromkeys(arns) if arn not in self._stopped]
        tasks = list(self._stopped.values())
        for start in range(0, len(fresh), 100):
            described = self.ecs.describe_tasks(
                cluster=self.cluster, tasks=fresh[start : start + 100]
            )
            for task in described.get("tasks", []):
                if not task.get("containerInstanceArn"):
                    continue  # not placed yet (PROVISIONING), or never
                kept = _Task(
                    worker=task["taskArn"].rsplit("/", 1)[-1],
                    host=task["containerInstanceArn"],
                    session=task.get("startedBy", ""),
                    vcpus=int(task.get("cpu") or 0) / 1024,
                    start=_epoch(task.get("pullStartedAt") or task.get("startedAt")),
                    stopped=_epoch(task.get("stoppedAt")),
                )
                if kept.stopped is not None:
                    self._stopped[task["taskArn"]] = kept
                tasks.append(kept)
        return tasks

    def _learn_hosts(self, arns: set[str]) -> None:
        """Which instance each of these container instances is (kept: once its instance is
        gone, ECS may no longer describe it)."""
        ordered = sorted(arns)
        for start in range(0, len(ordered), 100):
            described = self.ecs.describe_container_instances(
                cluster=self.cluster, containerInstances=ordered[start : start + 100]
            )
            for ci in described.get("containerInstances", []):
                self._hosts[ci["containerInstanceArn"]] = ci["ec2InstanceId"]
            for failure in described.get("failures", []):  # gone before it was seen
                self._hosts.setdefault(failure.get("arn", ""), None)


def _epoch(value: Any) -> float | None:
    return value.timestamp() if value is not None else None
