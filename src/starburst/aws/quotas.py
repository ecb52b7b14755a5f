"""Fargate vCPU quotas: the limits that apply, what is in use, what fits, and increases.

On-demand tasks count against ``L-3032A538``, Fargate Spot tasks against ``L-36FBB829``.
Usage is the vCPUs of the account's Fargate tasks that are running or about to (every
cluster in the region), counted from ECS itself.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from ..errors import ConfigurationError
from . import resources as r
from .connection import Aws, connect, translate_errors
from .provision import read_quotas

SERVICE_CODE = "fargate"
#: Worker sizes (vCPUs) shown by ``starburst quota``.
SIZES = (0.25, 0.5, 1, 2, 4, 8, 16)


@dataclass(frozen=True)
class VcpuQuota:
    """One Fargate vCPU quota: its limit and current usage."""

    code: str
    spot: bool
    limit: float | None  # None: Service Quotas did not answer
    used: float

    @property
    def label(self) -> str:
        return "Fargate Spot" if self.spot else "Fargate On-Demand"

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


def quota_notice(wanted: int, fits: int, cpu: float, detail: str = "") -> str:
    """The one line that says the quota allows fewer workers than were asked for."""
    line = (
        f"Requested {wanted} workers ({wanted * cpu:g} vCPUs) but the Fargate vCPU quota allows "
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
