"""vCPU quotas: the limits that apply, what is in use, what fits, and increases.

On-demand Fargate tasks count against ``L-3032A538``, Fargate Spot tasks against
``L-36FBB829``; usage is the vCPUs of the account's Fargate tasks that are running or about
to (every cluster in the region), counted from ECS itself. The ec2 backend's instances count
against the EC2 quotas (``resources.EC2_QUOTAS``, by family and Spot or not), their usage
counted from the running instances.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from ..backends.ec2.instances import CATALOGUE
from ..errors import ConfigurationError
from . import resources as r
from .connection import Aws, connect, translate_errors
from .provision import read_quota, read_quotas

SERVICE_CODE = "fargate"
#: Worker sizes (vCPUs) shown by ``starburst quota``.
SIZES = (0.25, 0.5, 1, 2, 4, 8, 16)


@dataclass(frozen=True)
class VcpuQuota:
    """One vCPU quota (Fargate's or EC2's): its limit and current usage."""

    code: str
    spot: bool
    limit: float | None  # None: Service Quotas did not answer
    used: float
    service: str = "Fargate"  # or the EC2 instances it counts: "EC2 standard", "EC2 G and VT"

    @property
    def label(self) -> str:
        return f"{self.service} {'Spot' if self.spot else 'On-Demand'}"

    @property
    def free(self) -> float | None:
        """vCPUs that can still start, or ``None`` when the limit is unknown."""
        return None if self.limit is None else max(0.0, self.limit - self.used)

    def workers_that_fit(self, cpu: float) -> int | None:
        """How many more workers of ``cpu`` vCPUs fit now (``None``: unknown)."""
        free = self.free
        return None if free is None else math.floor(free / cpu + 1e-9)


@dataclass(frozen=True)
class QuotaRequest:
    """An increase request, as Service Quotas reports it."""

    request_id: str
    code: str
    desired: float
    status: (
        str  # PENDING, CASE_OPENED, APPROVED, DENIED, CASE_CLOSED, NOT_APPROVED, INVALID_REQUEST
    )
    case_id: str | None = None

    def __str__(self) -> str:
        case = f", support case {self.case_id}" if self.case_id else ""
        return (
            f"request {self.request_id}: {self.code} to {self.desired:g} vCPUs, {self.status}{case}"
        )


def quota_code(spot: bool) -> str:
    """The quota that Fargate Spot (or on-demand) tasks count against."""
    return r.FARGATE_SPOT_QUOTA if spot else r.FARGATE_ON_DEMAND_QUOTA


def quota_notice(
    wanted: int, fits: int, cpu: float, detail: str = "", quota: str = "Fargate vCPU quota"
) -> str:
    """The one line that says the quota allows fewer workers than were asked for."""
    line = (
        f"Requested {wanted} workers ({wanted * cpu:g} vCPUs) but the {quota} allows "
        f"{fits} workers ({fits * cpu:g} vCPUs): using {fits}."
    )
    return f"{line} {detail}" if detail else line


def fargate_usage(aws: Aws) -> dict[bool, float]:
    """vCPUs of Fargate tasks desired RUNNING in every cluster: {spot?: vCPUs}."""
    ecs = aws.client("ecs")
    used = {False: 0.0, True: 0.0}
    with translate_errors("count the Fargate vCPUs in use"):
        clusters = [
            a for p in ecs.get_paginator("list_clusters").paginate() for a in p["clusterArns"]
        ]
        for cluster in clusters:
            arns = [
                arn
                for page in ecs.get_paginator("list_tasks").paginate(
                    cluster=cluster, desiredStatus="RUNNING"
                )
                for arn in page["taskArns"]
            ]
            for start in range(0, len(arns), 100):
                for task in ecs.describe_tasks(cluster=cluster, tasks=arns[start : start + 100])[
                    "tasks"
                ]:
                    if task.get("launchType") == "FARGATE":
                        used[task.get("capacityProviderName") == "FARGATE_SPOT"] += _vcpus(task)
    return used


def _vcpus(task: dict[str, Any]) -> float:
    try:
        return int(task.get("cpu") or 0) / 1024
    except ValueError:
        return 0.0


def fargate_quotas(aws: Aws) -> list[VcpuQuota]:
    """Both Fargate vCPU quotas (on-demand, then spot) with their usage."""
    limits = read_quotas(aws)
    used = fargate_usage(aws)
    return [
        VcpuQuota(r.FARGATE_ON_DEMAND_QUOTA, False, limits["fargate on-demand"], used[False]),
        VcpuQuota(r.FARGATE_SPOT_QUOTA, True, limits["fargate spot"], used[True]),
    ]


def ec2_quota_limits(aws: Aws) -> dict[str, float | None]:
    """The four EC2 vCPU quotas (``resources.EC2_QUOTAS``) by label; ``None``: unknown."""
    client = aws.client("service-quotas")
    return {label: read_quota(client, "ec2", code) for label, code, _, _ in r.EC2_QUOTAS}


def ec2_usage(aws: Aws) -> dict[tuple[bool, bool], float]:
    """vCPUs of the account's running and starting instances: {(spot?, G or VT?): vCPUs},
    counting the families each quota covers (standard: A, C, D, H, I, M, R, T, Z)."""
    ec2 = aws.client("ec2")
    used = {(spot, gpu): 0.0 for spot in (False, True) for gpu in (False, True)}
    states = {"Name": "instance-state-name", "Values": ["pending", "running"]}
    with translate_errors("count the EC2 vCPUs in use"):
        for page in ec2.get_paginator("describe_instances").paginate(Filters=[states]):
            for instance in (i for res in page["Reservations"] for i in res["Instances"]):
                family = instance["InstanceType"].split(".")[0]
                gpu = family.startswith(("g", "vt"))
                if not gpu and family[0] not in "acdhimrtz":
                    continue  # (P, F, X, Inf... count against quotas of their own)
                cpu = instance.get("CpuOptions")
                if cpu:
                    vcpus = cpu["CoreCount"] * cpu.get("ThreadsPerCore", 1)
                else:  # (an answer without it: what the catalogue says of the type)
                    known = CATALOGUE.get(instance["InstanceType"])
                    vcpus = known.vcpus if known else 0
                used[(instance.get("InstanceLifecycle") == "spot", gpu)] += vcpus
    return used


def ec2_quotas(aws: Aws) -> list[VcpuQuota]:
    """The EC2 vCPU quotas the ec2 backend's instances count against, with their usage."""
    limits, used = ec2_quota_limits(aws), ec2_usage(aws)
    return [
        VcpuQuota(code, spot, limits[label], used[(spot, gpu)],
                  "EC2 G and VT" if gpu else "EC2 standard")
        for label, code, spot, gpu in r.EC2_QUOTAS
    ]  # fmt: skip


def quota(region: str | None = None, profile: str | None = None) -> list[VcpuQuota]:
    """The Fargate vCPU quotas of this account and region, with what is in use now.

    ``q.workers_that_fit(cpu)`` says how many workers of a size can start.
    """
    return fargate_quotas(connect(region, profile))


def request_quota_increase(
    vcpus: float, spot: bool = False, region: str | None = None, profile: str | None = None
) -> QuotaRequest:
    """Ask AWS to raise the Fargate vCPU quota to ``vcpus``; returns the request to follow."""
    if isinstance(vcpus, bool) or not isinstance(vcpus, int | float) or not vcpus > 0:
        raise ConfigurationError(f"vcpus={vcpus!r} must be a positive number, e.g. 256")
    service_quotas = connect(region, profile).client("service-quotas")
    with translate_errors("request a Fargate vCPU quota increase"):
        answer = service_quotas.request_service_quota_increase(
            ServiceCode=SERVICE_CODE, QuotaCode=quota_code(spot), DesiredValue=float(vcpus)
        )["RequestedQuota"]
    return _request(answer)


def quota_increase_status(
    request_id: str, region: str | None = None, profile: str | None = None
) -> QuotaRequest:
    """The current state of an increase request made with ``request_quota_increase``."""
    service_quotas = connect(region, profile).client("service-quotas")
    with translate_errors(f"look up the quota increase request {request_id}"):
        answer = service_quotas.get_requested_service_quota_change(RequestId=request_id)[
            "RequestedQuota"
        ]
    return _request(answer)


def _request(answer: dict[str, Any]) -> QuotaRequest:
    return QuotaRequest(
        request_id=answer["Id"],
        code=answer["QuotaCode"],
        desired=float(answer["DesiredValue"]),
        status=answer["Status"],
        case_id=answer.get("CaseId"),
    )
