"""ECS on EC2 capacity: what moto lacks between an Auto Scaling group and a placed task.

moto keeps Auto Scaling groups, launch templates, EC2 instances, capacity providers and
container instances as records, and nothing moves by itself: a group's instances all get
its launch template's type (none with a MixedInstancesPolicy), ``resolve:ssm:`` image ids
are kept as text, no instance ever registers with ECS, scaling activities are always empty,
and RunTask on a cluster without container instances answers 500. :class:`Ec2Capacity`
makes that side behave like AWS while a test runs:

* a group below its desired capacity launches instances (types from its overrides: Spot
  round-robin over them, on-demand in priority order or cheapest first; Spot or on-demand
  from its InstancesDistribution), within the EC2 vCPU quotas, or records a failed scaling
  activity with AWS's text (injected Spot shortages, quota), and tries again later;
* after ``boot_delay`` an instance registers as a container instance (registered CPU and
  memory as the ECS agent reports them) in the cluster its user data names;
* RunTask with a capacity provider strategy parks tasks that fit nowhere in PROVISIONING
  (at most ``provisioning_limit`` per cluster), places them by binpacking (memory first) as
  capacity registers, and hands them to the task runner to run as processes;
* managed scaling adds ``minimumScalingStepSize`` instances at a time while tasks wait;
* each instance has an IMDSv2 endpoint (``STARBURST_IMDS_ENDPOINT`` in its tasks'
  environment) with the Spot ``instance-action`` a test can set, and an instance that goes
  away (terminated by a test, by scale-in or by TerminateInstanceInAutoScalingGroup) stops
  its tasks with ``TerminationNotice`` and leaves its cluster.
"""

from __future__ import annotations

import base64
import collections
import json
import math
import re
import secrets
import threading
import time
import traceback
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from moto.autoscaling.models import FakeAutoScalingGroup, InstanceState, autoscaling_backends
from moto.ec2.models import ec2_backends
from moto.ecs.exceptions import EcsClientException
from moto.ecs.models import (
    ContainerInstance,
    EC2ContainerServiceBackend,
    Task,
    ecs_backends,
)
from moto.ssm.models import ssm_backends

from starburst.emulator.instance_types import InstanceType, instance_type
from starburst.emulator.layer import IMDS_PATH
from starburst.emulator.pricing import Prices
from starburst.emulator.quotas import EC2_G_ON_DEMAND, EC2_G_SPOT, EC2_ON_DEMAND, EC2_SPOT, Quotas
from starburst.emulator.runner import TaskRunner

SPOT_SHORTAGE = "There is no Spot capacity available that matches your request."
VCPU_LIMIT = (
    "You have requested more vCPU capacity than your current vCPU limit of {limit} allows "
    "for the instance bucket that the specified instance type belongs to. Please visit "
    "http://aws.amazon.com/contact-us/ec2-request to request an adjustment to this limit."
)
LAUNCH_REASONS = {"spot": SPOT_SHORTAGE, "quota": VCPU_LIMIT}
PROVISIONING_LIMIT_MESSAGE = "Tasks provisioning capacity limit exceeded."
NO_INSTANCES = "No Container Instances were found in your cluster."
HOST_TERMINATED = "Host EC2 (instance {instance}) terminated."
TICK = 0.05  # seconds between looks at every group, instance and waiting task
_FARGATE = ("FARGATE", "FARGATE_SPOT")
# ecs.config lines in user data: "ECS_CLUSTER=x" in a heredoc, or "echo ECS_CLUSTER=x >> ..."
_USER_DATA_SETTING = re.compile(r"(?:^|[\s'\"])(ECS_CLUSTER|ECS_RESERVED_MEMORY)=([^\s'\"]+)", re.M)


@dataclass
class _Needs:
    """What a task asks of an instance: CPU units, MiB, GPUs; and where it may go."""

    cpu: int
    memory: int
    gpus: int
    providers: list[str]

    def fits_type(self, kind: InstanceType) -> bool:
        """Whether one task fits an empty instance of ``kind``."""
        return (
            self.cpu <= kind.registered_cpu()
            and self.memory <= kind.registered_memory()
            and self.gpus <= kind.gpus
        )

    def shortfall(self, ci: ContainerInstance) -> str | None:
        """RunTask's reason the task does not fit on ``ci`` (None: it fits)."""
        for name, wanted in (("MEMORY", self.memory), ("CPU", self.cpu), ("GPU", self.gpus)):
            if wanted > _left(ci, name):
                return f"RESOURCE:{name}"
        return None


@dataclass
class _Host:
    """One instance an Auto Scaling group launched, and its life in ECS."""

    instance: Any  # moto's ec2 Instance
    group: FakeAutoScalingGroup
    kind: InstanceType
    market: str  # spot or on-demand
    region: str
    ready_at: float
    cluster: str | None = None
    container_instance: ContainerInstance | None = None
    tokens: set[str] = field(default_factory=set)
    notice: dict[str, str] | None = None
    gone: bool = False

    @property
    def id(self) -> str:
        return self.instance.id


@dataclass
class _GroupState:
    next_type: int = 0  # round-robin position in the overrides
    next_subnet: int = 0
    retry_at: float = 0.0  # no launch attempt before this (after a failure)
    last_step: float = 0.0  # the last emulated managed-scaling step


class Ec2Capacity:
    """Auto Scaling launches, container instances and task placement for one test."""

    def __init__(
        self,
        runner: TaskRunner,
        *,
        endpoint_url: str,
        account_id: str,
        quotas: Quotas,
        prices: Prices,
        on_error: Callable[[str], None] | None = None,
    ) -> None:
        #: Seconds from an instance's launch to its registration as a container instance.
        self.boot_delay = 0.3
        #: Seconds a group waits after a failed launch before it tries again.
        self.retry_interval = 0.5
        #: Seconds between two emulated managed-scaling steps of one group.
        self.scaling_interval = 0.5
        #: Tasks in PROVISIONING per cluster (ECS quota L-B7718569).
        self.provisioning_limit = 500
        self._runner = runner
        self._endpoint_url = endpoint_url
        self._account_id = account_id
        self._quotas = quotas
        self._prices = prices
        self._on_error = on_error or (lambda text: None)
        self._lock = threading.RLock()
        self._hosts: dict[str, _Host] = {}
        self._groups: dict[str, _GroupState] = {}
        self._activities: dict[str, list[dict[str, Any]]] = {}
        self._launch_faults: dict[str, list[Any]] = {}  # group -> [reason, remaining]
        self._waiting: list[Task] = []  # PROVISIONING, oldest first
        self._needs: dict[str, _Needs] = {}  # task ARN -> needs
        self._placed: dict[str, str] = {}  # task ARN -> instance id
        self._stopped: collections.deque[Task] = collections.deque()  # from the runner
        self._starting: list[Task] = []  # placed by RunTask, to start
        self._failures = threading.local()  # RunTask failures for the layer to add
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True, name="emulator-ec2")

    # ---- life ---------------------------------------------------------------------------

    @classmethod
    def for_server(
        cls, server: Any, runner: TaskRunner, on_error: Callable[[str], None]
    ) -> Ec2Capacity:
        """The capacity of an ``EmulatorServer``: its endpoint, account, quotas and prices."""
        return cls(
            runner,
            endpoint_url=server.url,
            account_id=server.account_id,
            quotas=server.quotas,
            prices=server.prices,
            on_error=on_error,
        )

    def start(self) -> Ec2Capacity:
        """Begin launching, registering and placing (hears from the runner of stops)."""
        self._runner.on_stopped = self._task_stopped
        self._thread.start()
        return self

    def shutdown(self) -> None:
        """Stop the loop (the runner kills the task processes)."""
        self._stop.set()
        self._thread.join(timeout=10)

    # ---- what tests use -----------------------------------------------------------------

    def instances(self, group: str | None = None, registered: bool = False) -> list[str]:
        """Ids of the live instances groups launched (of ``group``; only those registered
        with ECS if ``registered``), in launch order."""
        with self._lock:
            return [
                h.id
                for h in self._hosts.values()
                if not h.gone
                and group in (None, h.group.name)
                and (h.container_instance is not None or not registered)
            ]

    def wait_for_instances(
        self, count: int, group: str | None = None, timeout: float = 20.0
    ) -> list[str]:
        """Wait until ``count`` instances (of ``group``) are registered; returns their ids."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = self.instances(group, registered=True)
            if len(found) >= count:
                return found
            time.sleep(TICK)
        raise AssertionError(
            f"{count} instance(s) did not register within {timeout}s; "
            f"registered: {self.instances(group, registered=True)}"
        )

    def host_of(self, task_arn: str) -> str | None:
        """The instance id a task was placed on (None while PROVISIONING)."""
        with self._lock:
            return self._placed.get(task_arn)

    def imds_endpoint(self, instance_id: str) -> str:
        """The instance metadata endpoint of ``instance_id`` (http://169.254.169.254 on AWS)."""
        return f"{self._endpoint_url}{IMDS_PATH}{instance_id}"

    # ---- faults (through aws.faults) ----------------------------------------------------

    def fail_launches(self, group: str, reason: str, times: int | None) -> None:
        """See :meth:`Faults.fail_launches`."""
        with self._lock:
            self._launch_faults[group] = [LAUNCH_REASONS.get(reason, reason), times]

    def clear_launch_failures(self, group: str | None) -> None:
        """See :meth:`Faults.clear_launch_failures`."""
        with self._lock:
            if group is None:
                self._launch_faults.clear()
            else:
                self._launch_faults.pop(group, None)

    def spot_notice(self, instance_id: str, seconds: float = 120.0) -> None:
        """See :meth:`Faults.spot_notice`."""
        with self._lock:
            host = self._host(instance_id)
            when = (datetime.now(UTC) + timedelta(seconds=seconds)).strftime("%Y-%m-%dT%H:%M:%SZ")
            host.notice = {"action": "terminate", "time": when}

    def terminate(self, instance_id: str) -> None:
        """See :meth:`Faults.terminate_instance`."""
        with self._lock:
            host = self._host(instance_id)
            ec2_backends[self._account_id][host.region].terminate_instances([instance_id])
            asg = autoscaling_backends[self._account_id][host.region]
            asg.notify_terminate_instances([instance_id])  # as EC2 tells Auto Scaling
            self._lose(host, "Spot interruption")

    # ---- moto hooks (patches.py) ----------------------------------------------------------

    def run_task(self, backend: EC2ContainerServiceBackend, kwargs: dict[str, Any]) -> Any:
        """RunTask (moto's arguments by name) on EC2 capacity: the tasks made; None when
        not on EC2 (moto and the runner handle it)."""
        launch_type = kwargs.get("launch_type")
        count = int(kwargs["count"])
        cluster = backend._get_cluster(kwargs["cluster_str"])
        strategy = kwargs.get("capacity_provider_strategy")
        if not launch_type and not strategy:
            strategy = cluster.default_capacity_provider_strategy
        providers = [s["capacityProvider"] for s in strategy or []]
        if launch_type != "EC2" and (not providers or set(providers) & set(_FARGATE)):
            return None
        task_def = backend.describe_task_definition(kwargs["task_definition_str"])
        needs = _needs(task_def, kwargs.get("overrides"), providers)
        managed = any(self._managed(backend, name) for name in providers)
        with self._lock:
            self._give_back()
            waiting = sum(t.cluster_name == cluster.name for t in self._waiting)
            if managed and waiting + count > self.provisioning_limit:
                raise EcsClientException(PROVISIONING_LIMIT_MESSAGE)
            tasks: list[Task] = []
            failures: list[dict[str, str]] = []
            for _ in range(count):
                host, why = self._best_host(cluster.name, needs)
                if host is None and not managed:
                    failures.append(why)
                    continue
                task = Task(
                    cluster,
                    task_def,
                    None,
                    {"CPU": needs.cpu, "MEMORY": needs.memory, "PORTS": [], "PORTS_UDP": []},
                    backend=backend,
                    group=kwargs.get("group") or f"family:{task_def.family}",
                    overrides=kwargs.get("overrides") or {},
                    started_by=kwargs.get("started_by") or "",
                    tags=kwargs.get("tags") or [],
                    launch_type="EC2",
                    networking_configuration=kwargs.get("networking_configuration"),
                    capacity_provider_name=providers[0] if providers else None,
                )
                backend.tasks.setdefault(cluster.name, {})[task.task_arn] = task
                self._needs[task.task_arn] = needs
                tasks.append(task)
                if host is not None:
                    self._claim(host, task, needs)
            self._failures.items = failures
            self._runner.tasks_created(backend, tasks, held=True)
            for task in tasks:  # placed ones start on the next tick, after RunTask answers
                if task.container_instance_arn is None:
                    self._waiting.append(task)
                else:
                    self._starting.append(task)
        return tasks

    def take_runtask_failures(self) -> list[dict[str, str]]:
        """The failures of the RunTask this thread just served (for the layer)."""
        failures = getattr(self._failures, "items", [])
        self._failures.items = []
        return failures

    def scaling_activities(self, group: str | None) -> list[dict[str, Any]]:
        """DescribeScalingActivities: newest first."""
        with self._lock:
            if group is not None:
                return list(self._activities.get(group, []))
            every = [a for acts in self._activities.values() for a in acts]
            return sorted(every, key=lambda a: a["StartTime"], reverse=True)

    # ---- the instance metadata endpoint --------------------------------------------------

    def imds(
        self, instance_id: str, method: str, path: str, headers: dict[str, str]
    ) -> tuple[int, str]:
        """(status, body) of an IMDSv2 request to ``instance_id``'s endpoint."""
        with self._lock:
            host = self._hosts.get(instance_id)
            if host is None or host.gone:
                return 404, "Not Found"
            if path == "latest/api/token":
                if method != "PUT":
                    return 405, "Method Not Allowed"
                if not headers.get("x-aws-ec2-metadata-token-ttl-seconds"):
                    return 400, "Bad Request"
                token = secrets.token_urlsafe(24)
                host.tokens.add(token)
                return 200, token
            if headers.get("x-aws-ec2-metadata-token") not in host.tokens:
                return 401, "Unauthorized"
            instance = host.instance
            answers = {
                "latest/meta-data/instance-id": host.id,
                "latest/meta-data/instance-type": host.kind.name,
                "latest/meta-data/ami-id": instance.image_id,
                "latest/meta-data/placement/availability-zone": instance.placement.zone,
                "latest/meta-data/placement/region": host.region,
                "latest/meta-data/instance-life-cycle": host.market,
            }
            if host.notice is not None:
                answers["latest/meta-data/spot/instance-action"] = json.dumps(host.notice)
            if path in answers:
                return 200, answers[path]
            return 404, "Not Found"

    # ---- the loop -----------------------------------------------------------------------

    def _loop(self) -> None:
        while not self._stop.wait(TICK):
            try:
                with self._lock:
                    self._tick()
            except Exception:
                self._on_error(traceback.format_exc())

    def _tick(self) -> None:
        now = time.monotonic()
        self._give_back()
        for region, backend in list(autoscaling_backends[self._account_id].items()):
            for group in list(backend.autoscaling_groups.values()):
                self._launch_missing(region, group, now)
        for host in list(self._hosts.values()):
            if host.gone:
                continue
            if self._group_deleted(host):  # DeleteAutoScalingGroup(ForceDelete=True)
                ec2_backends[self._account_id][host.region].terminate_instances([host.id])
            if host.instance.state in ("terminated", "shutting-down", "stopped"):
                self._lose(host, "terminated")
            elif host.container_instance is None and now >= host.ready_at:
                self._register(host)
        for task in self._starting:
            self._release(task)
        self._starting.clear()
        self._place_waiting()
        self._managed_scaling(now)

    # ---- launching ----------------------------------------------------------------------

    def _launch_missing(self, region: str, group: FakeAutoScalingGroup, now: float) -> None:
        state = self._groups.setdefault(group.arn, _GroupState())
        missing = (group.desired_capacity or 0) - len(group.instance_states)
        if missing <= 0 or now < state.retry_at:
            return
        for _ in range(missing):
            if not self._launch_one(region, group, state):
                state.retry_at = now + self.retry_interval
                return

    def _launch_one(self, region: str, group: FakeAutoScalingGroup, state: _GroupState) -> bool:
        before = len(group.instance_states)
        cause = (
            f"At {datetime.now(UTC):%Y-%m-%dT%H:%M:%SZ} an instance was started in response to a "
            f"difference between desired and actual capacity, increasing the capacity from "
            f"{before} to {before + 1}."
        )
        market = self._market(group)
        try:
            kind, template = self._choose_type(group, state, market)
        except (KeyError, ValueError) as exc:
            self._activity(group, cause, failure=str(exc))
            return False
        code = _quota_code(kind, market)
        limit = int(self._quotas.get(code))
        fault = self._launch_faults.get(group.name)
        if fault is not None:
            if fault[1] is not None:
                fault[1] -= 1
                if fault[1] <= 0:
                    del self._launch_faults[group.name]
            self._activity(group, cause, failure=fault[0].format(limit=limit))
            return False
        if self._vcpus_in_use(region, code) + kind.vcpus > limit:
            self._activity(group, cause, failure=VCPU_LIMIT.format(limit=limit))
            return False
        version = template.get_version(self._template_version(group, template))
        subnets = [s for s in (group.vpc_zone_identifier or "").split(",") if s]
        subnet = subnets[state.next_subnet % len(subnets)] if subnets else None
        state.next_subnet += 1
        ec2 = ec2_backends[self._account_id][region]
        zone = ec2.get_subnet(subnet).availability_zone if subnet else group.availability_zones[0]
        tags = {**group.get_propagated_tags(), "aws:autoscaling:groupName": group.name}
        try:
            reservation = ec2.run_instances(
                self._image(region, version.image_id),
                1,
                version.user_data,
                version.security_groups,
                instance_type=kind.name,
                tags={"instance": {**tags, **version.instance_tags}},
                placement=zone,
                launch_template={"LaunchTemplateId": template.id},
                is_instance_type_default=False,
                subnet_id=subnet,
            )
        except Exception as exc:  # e.g. a type not offered in the region
            self._activity(group, cause, failure=str(exc))
            return False
        instance = reservation.instances[0]
        if market == "spot":
            instance.lifecycle = instance.instance_lifecycle = "spot"
        instance.autoscaling_group = group
        group.instance_states.append(
            InstanceState(
                instance,
                lifecycle_state="Pending",
                protected_from_scale_in=group.new_instances_protected_from_scale_in,
            )
        )
        self._hosts[instance.id] = _Host(
            instance, group, kind, market, region, time.monotonic() + self.boot_delay
        )
        self._activity(group, cause, instance=instance)
        return True

    @staticmethod
    def _template_version(group: FakeAutoScalingGroup, template: Any) -> str:
        if template is group.ec2_launch_template:
            return group.launch_template_version
        return "$Default"

    def _market(self, group: FakeAutoScalingGroup) -> str:
        """spot or on-demand for the group's next instance."""
        policy = group.mixed_instances_policy
        if not policy:
            template = group.ec2_launch_template
            data = template.get_version(group.launch_template_version).data if template else {}
            market = (data.get("InstanceMarketOptions") or {}).get("MarketType")
            return "spot" if market == "spot" else "on-demand"
        distribution = policy.get("InstancesDistribution") or {}
        base = int(distribution.get("OnDemandBaseCapacity") or 0)
        share = int(distribution.get("OnDemandPercentageAboveBaseCapacity", 100))
        desired = group.desired_capacity or 0
        wanted = desired if desired <= base else base + math.ceil((desired - base) * share / 100)
        on_demand = sum(
            self._hosts[s.instance.id].market == "on-demand"
            for s in group.instance_states
            if s.instance.id in self._hosts
        )
        return "on-demand" if on_demand < wanted else "spot"

    def _choose_type(
        self, group: FakeAutoScalingGroup, state: _GroupState, market: str
    ) -> tuple[InstanceType, Any]:
        """The next instance's type and launch template (an override may name its own)."""
        template = group.ec2_launch_template
        if template is None:
            raise ValueError(
                "The group has no launch template (not emulated: launch configurations)."
            )
        policy = group.mixed_instances_policy or {}
        overrides = _overrides(group)
        if not overrides:
            name = template.get_version(group.launch_template_version).instance_type
            if not name:
                raise ValueError("The launch template names no instance type.")
            return instance_type(name), template
        distribution = policy.get("InstancesDistribution") or {}
        if market == "spot":
            chosen = overrides[state.next_type % len(overrides)]
            state.next_type += 1
        elif distribution.get("OnDemandAllocationStrategy") == "lowest-price":
            chosen = min(overrides, key=lambda o: self._prices.instance(o["InstanceType"]))
        else:  # prioritized: the first override
            chosen = overrides[0]
        spec = chosen.get("LaunchTemplateSpecification")
        if spec:
            ec2 = group.ec2_backend
            template = (
                ec2.get_launch_template(spec["LaunchTemplateId"])
                if spec.get("LaunchTemplateId")
                else ec2.get_launch_template_by_name(spec["LaunchTemplateName"])
            )
        return instance_type(chosen["InstanceType"]), template

    def _image(self, region: str, image_id: str) -> str:
        """An AMI id, with ``resolve:ssm:<parameter>`` resolved as EC2 does at launch."""
        if not image_id.startswith("resolve:ssm:"):
            return image_id
        name = image_id.removeprefix("resolve:ssm:")
        parameter = ssm_backends[self._account_id][region].get_parameter(name)
        if parameter is None:
            raise ValueError(f"The SSM parameter {name} does not exist.")
        return parameter.value

    def _vcpus_in_use(self, region: str, code: str) -> float:
        return sum(
            h.kind.vcpus
            for h in self._hosts.values()
            if not h.gone and h.region == region and _quota_code(h.kind, h.market) == code
        )

    def _activity(
        self,
        group: FakeAutoScalingGroup,
        cause: str,
        *,
        instance: Any = None,
        failure: str | None = None,
        description: str | None = None,
    ) -> None:
        now = datetime.now(UTC)
        if description is None:
            description = (
                f"Launching a new EC2 instance: {instance.id}"
                if instance is not None
                else f"Launching a new EC2 instance.  Status Reason: {failure}"
            )
        activity = {
            "ActivityId": str(uuid.uuid4()),
            "AutoScalingGroupName": group.name,
            "AutoScalingGroupARN": group.arn,
            "Description": description,
            "Cause": cause,
            "StartTime": now,
            "EndTime": now,
            "StatusCode": "Failed" if failure else "Successful",
            "Progress": 100,
            "Details": json.dumps(
                {
                    "Subnet ID": getattr(instance, "subnet_id", None) or "",
                    "Availability Zone": instance.placement.zone if instance else "",
                }
            ),
        }
        if failure:
            activity["StatusMessage"] = f"{failure} Launching EC2 instance failed."
        self._activities.setdefault(group.name, []).insert(0, activity)

    # ---- container instances ------------------------------------------------------------

    def _register(self, host: _Host) -> None:
        """The ECS agent starts: register in the cluster its user data names."""
        settings = dict(_USER_DATA_SETTING.findall(_decode(host.instance.user_data)))
        ecs = ecs_backends[self._account_id][host.region]
        provider = self._provider_of(ecs, host.group)
        cluster = settings.get("ECS_CLUSTER") or self._cluster_of(ecs, provider) or "default"
        if cluster not in ecs.clusters:
            return  # the agent keeps trying until the cluster exists
        ci = ecs.register_container_instance(cluster, host.id)
        reserved = int(settings.get("ECS_RESERVED_MEMORY") or 0)
        resources = {
            "CPU": host.kind.registered_cpu(),
            "MEMORY": host.kind.registered_memory(reserved),
        }
        registered = [_resource(name, value) for name, value in resources.items()]
        if host.kind.gpus:
            gpu_ids = [f"GPU-{uuid.uuid4()}" for _ in range(host.kind.gpus)]
            registered.append(_resource("GPU", 0, gpu_ids))
        keep = [r for r in ci.registered_resources if r["name"] in ("PORTS", "PORTS_UDP")]
        ci.registered_resources = registered + keep
        ci.remaining_resources = [json.loads(json.dumps(r)) for r in ci.registered_resources]
        ci.capacity_provider_name = provider.name if provider else None
        ci.attributes["ecs.cpu-architecture"] = host.kind.arch
        ci.attributes["ecs.instance-type"] = host.kind.name
        host.cluster = cluster
        host.container_instance = ci
        for state in host.group.instance_states:
            if state.instance.id == host.id:
                state.lifecycle_state = "InService"

    def _lose(self, host: _Host, how: str) -> None:
        """The instance is gone: its tasks stop, its container instance leaves the cluster."""
        host.gone = True
        ci = host.container_instance
        if ci is not None:
            ecs = ecs_backends[self._account_id][host.region]
            for task in list(ecs.tasks.get(ci.cluster_name, {}).values()):
                if task.container_instance_arn == ci.container_instance_arn:
                    self._runner.host_lost(task.task_arn, HOST_TERMINATED.format(instance=host.id))
            cluster = ecs.clusters.get(ci.cluster_name)
            if ecs.container_instances.get(ci.cluster_name, {}).pop(ci.id, None) and cluster:
                cluster.registered_container_instances_count -= 1
            ci.status = "INACTIVE"
        self._activity(
            host.group,
            f"At {datetime.now(UTC):%Y-%m-%dT%H:%M:%SZ} instance {host.id} was {how}.",
            instance=host.instance,
            description=f"Terminating EC2 instance: {host.id}",
        )

    def _task_stopped(self, task: Task) -> None:
        """The runner's word that ``task`` stopped (under its lock: only noted here)."""
        self._stopped.append(task)

    def _give_back(self) -> None:
        """Stopped tasks leave the queue, and their instances get their resources back."""
        while self._stopped:
            task = self._stopped.popleft()
            needs = self._needs.pop(task.task_arn, None)
            if task in self._waiting:
                self._waiting.remove(task)
            host = self._hosts.get(self._placed.get(task.task_arn, ""))
            if needs is not None and host is not None and host.container_instance is not None:
                _deduct(host.container_instance, needs, -1)

    # ---- placement ----------------------------------------------------------------------

    def _best_host(self, cluster: str, needs: _Needs) -> tuple[_Host | None, dict[str, str]]:
        """Binpack: of the ACTIVE instances the task fits, the one with least memory left
        (then least CPU). Else None and the failure RunTask would list."""
        candidates = [
            h
            for h in self._hosts.values()
            if not h.gone
            and h.cluster == cluster
            and h.container_instance is not None
            and h.container_instance.status == "ACTIVE"
            and _serves(h.container_instance, needs)
        ]
        if not candidates:
            return None, {"reason": NO_INSTANCES}
        fitting = [h for h in candidates if needs.shortfall(h.container_instance) is None]
        if not fitting:
            ci = candidates[0].container_instance
            return None, {"arn": ci.container_instance_arn, "reason": needs.shortfall(ci)}
        best = min(
            fitting,
            key=lambda h: (
                _left(h.container_instance, "MEMORY"),
                _left(h.container_instance, "CPU"),
            ),
        )
        return best, {}

    def _claim(self, host: _Host, task: Task, needs: _Needs) -> None:
        ci = host.container_instance
        assert ci is not None
        _deduct(ci, needs, 1)
        task.container_instance_arn = ci.container_instance_arn
        task.capacity_provider_name = ci.capacity_provider_name or task.capacity_provider_name
        task.availability_zone = host.instance.placement.zone
        self._placed[task.task_arn] = host.id

    def _release(self, task: Task) -> None:
        """Start the placed task's process, with its instance's metadata endpoint."""
        host = self._hosts[self._placed[task.task_arn]]
        self._runner.release(
            task.task_arn,
            {"STARBURST_IMDS_ENDPOINT": self.imds_endpoint(host.id)},
        )

    def _place_waiting(self) -> None:
        for task in list(self._waiting):
            if task.desired_status == "STOPPED":
                self._waiting.remove(task)
                continue
            needs = self._needs[task.task_arn]
            host, _ = self._best_host(task.cluster_name, needs)
            if host is not None:
                self._waiting.remove(task)
                self._claim(host, task, needs)
                self._release(task)

    # ---- managed scaling ----------------------------------------------------------------

    def _managed(self, ecs: EC2ContainerServiceBackend, name: str) -> bool:
        provider = ecs.capacity_providers.get(name)
        scaling = (provider.auto_scaling_group_provider if provider else {}).get("managedScaling")
        return bool(scaling) and scaling.get("status") == "ENABLED"

    def _managed_scaling(self, now: float) -> None:
        """Cluster auto scaling, one step per ``scaling_interval`` while tasks wait: with
        several instance types or zones (always, here) ECS adds exactly
        ``minimumScalingStepSize`` instances and waits for them before the next step."""
        for region, ecs in list(ecs_backends[self._account_id].items()):
            for provider in list(ecs.capacity_providers.values()):
                asg_provider = provider.auto_scaling_group_provider or {}
                if not self._managed(ecs, provider.name):
                    continue
                group = self._group_by_arn(region, asg_provider.get("autoScalingGroupArn", ""))
                if group is None:
                    continue
                # Tasks bigger than the group's smallest type never make it scale.
                types = _group_types(group)
                if not types:
                    continue
                smallest = min(types, key=lambda t: (t.vcpus, t.memory_mib))
                waiting = [self._needs[t.task_arn] for t in self._waiting]
                if not any(
                    provider.name in needs.providers and needs.fits_type(smallest)
                    for needs in waiting
                ):
                    continue
                state = self._groups.setdefault(group.arn, _GroupState())
                booting = any(
                    h.group is group and not h.gone and h.container_instance is None
                    for h in self._hosts.values()
                )
                behind = len(group.instance_states) < (group.desired_capacity or 0)
                if booting or behind or now - state.last_step < self.scaling_interval:
                    continue
                step = int(asg_provider["managedScaling"].get("minimumScalingStepSize") or 1)
                desired = min(group.max_size, (group.desired_capacity or 0) + step)
                if desired > (group.desired_capacity or 0):
                    group.desired_capacity = desired
                    state.last_step = now

    # ---- lookups ------------------------------------------------------------------------

    def _group_deleted(self, host: _Host) -> bool:
        """Whether the host's group was deleted (moto keeps its protected instances)."""
        groups = autoscaling_backends[self._account_id][host.region].autoscaling_groups
        return groups.get(host.group.name) is not host.group

    def _host(self, instance_id: str) -> _Host:
        host = self._hosts.get(instance_id)
        if host is None or host.gone:
            raise KeyError(f"no live instance {instance_id!r} launched by an Auto Scaling group")
        return host

    def _group_by_arn(self, region: str, arn: str) -> FakeAutoScalingGroup | None:
        groups = autoscaling_backends[self._account_id][region].autoscaling_groups
        return next((g for g in groups.values() if _names_group(arn, g)), None)

    @staticmethod
    def _provider_of(ecs: EC2ContainerServiceBackend, group: FakeAutoScalingGroup) -> Any:
        for provider in ecs.capacity_providers.values():
            arn = (provider.auto_scaling_group_provider or {}).get("autoScalingGroupArn", "")
            if _names_group(arn, group):
                return provider
        return None

    @staticmethod
    def _cluster_of(ecs: EC2ContainerServiceBackend, provider: Any) -> str | None:
        if provider is None:
            return None
        for cluster in ecs.clusters.values():
            if provider.name in (cluster.capacity_providers or []):
                return cluster.name
        return None


# ---- helpers ------------------------------------------------------------------------------


def _quota_code(kind: InstanceType, market: str) -> str:
    """The EC2 vCPU quota an instance counts against."""
    if kind.gpu_family:
        return EC2_G_SPOT if market == "spot" else EC2_G_ON_DEMAND
    return EC2_SPOT if market == "spot" else EC2_ON_DEMAND


def _decode(user_data: Any) -> str:
    if not user_data:
        return ""
    try:
        return base64.b64decode(str(user_data)).decode(errors="replace")
    except ValueError:
        return str(user_data)


def _resource(name: str, value: int, ids: list[str] | None = None) -> dict[str, Any]:
    if ids is not None:
        return {"name": name, "type": "STRINGSET", "doubleValue": 0.0, "longValue": 0,
                "integerValue": 0, "stringSetValue": ids}  # fmt: skip
    return {"name": name, "type": "INTEGER", "doubleValue": 0.0, "longValue": 0,
            "integerValue": value}  # fmt: skip


def _needs(task_def: Any, overrides: dict[str, Any] | None, providers: list[str]) -> _Needs:
    """A task's CPU units, MiB and GPUs: task-level sizes (or overrides), else the sum of
    its containers'."""
    overrides = overrides or {}
    containers = task_def.container_definitions
    cpu = overrides.get("cpu") or task_def.cpu or sum(int(c.get("cpu") or 0) for c in containers)
    memory = (
        overrides.get("memory")
        or task_def.memory
        or sum(int(c.get("memory") or c.get("memoryReservation") or 0) for c in containers)
    )
    gpus = sum(
        int(r.get("value") or 0)
        for c in containers
        for r in c.get("resourceRequirements") or []
        if r.get("type") == "GPU"
    )
    return _Needs(int(cpu), int(memory), gpus, providers)


def _overrides(group: FakeAutoScalingGroup) -> list[dict[str, Any]]:
    """The instance-type overrides of a group's MixedInstancesPolicy."""
    policy = group.mixed_instances_policy or {}
    listed = (policy.get("LaunchTemplate") or {}).get("Overrides") or []
    return [o for o in listed if o.get("InstanceType")]


def _group_types(group: FakeAutoScalingGroup) -> list[InstanceType]:
    """The instance types a group launches (its overrides, else its template's type)."""
    names = [o["InstanceType"] for o in _overrides(group)]
    template = group.ec2_launch_template
    if not names and template is not None:
        names = [template.get_version(group.launch_template_version).instance_type]
    return [instance_type(name) for name in names if name]


def _names_group(arn: str, group: FakeAutoScalingGroup) -> bool:
    return arn == group.arn or arn.endswith("autoScalingGroupName/" + group.name)


def _serves(ci: ContainerInstance, needs: _Needs) -> bool:
    """Whether ``ci``'s capacity provider is one the task may use."""
    return not needs.providers or ci.capacity_provider_name in needs.providers


def _left(ci: ContainerInstance, name: str) -> int:
    for resource in ci.remaining_resources:
        if resource["name"] == name:
            if resource["type"] == "STRINGSET":
                return len(resource.get("stringSetValue") or [])
            return int(resource["integerValue"])
    return 0


def _deduct(ci: ContainerInstance, needs: _Needs, sign: int) -> None:
    """Take a task's resources from ``ci`` (sign 1) or give them back (sign -1)."""
    for resource in ci.remaining_resources:
        if resource["name"] == "CPU":
            resource["integerValue"] -= sign * needs.cpu
        elif resource["name"] == "MEMORY":
            resource["integerValue"] -= sign * needs.memory
    ci.running_tasks_count += sign
    if needs.gpus:
        _move_gpus(ci, needs.gpus, sign)


def _move_gpus(ci: ContainerInstance, count: int, sign: int) -> None:
    remaining = next(r for r in ci.remaining_resources if r["name"] == "GPU")
    registered = next(r for r in ci.registered_resources if r["name"] == "GPU")
    free = remaining["stringSetValue"]
    if sign > 0:
        del free[:count]
    else:
        taken = [g for g in registered["stringSetValue"] if g not in free]
        free.extend(taken[:count])
