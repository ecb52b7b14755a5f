"""Service Quotas for AWS Fargate and EC2 vCPUs, which moto does not know (it only has ``vpc``)."""

from __future__ import annotations

import json
import threading
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from starburst.emulator.wire import ApiError, Call, epoch, page

ON_DEMAND = "L-3032A538"
SPOT = "L-36FBB829"
EC2_ON_DEMAND = "L-1216C47A"
EC2_SPOT = "L-34B43A08"
EC2_G_ON_DEMAND = "L-DB2E81BA"
EC2_G_SPOT = "L-3819A6DF"
DEFAULT_VALUE = 4000.0


@dataclass(frozen=True)
class _Quota:
    service: str  # the Service Quotas service code
    name: str
    metric_class: str  # the usage metric's Class dimension
    description: str
    applied: float  # the emulator's applied value
    default: float  # AWS's default value


_SERVICES = {  # service code -> (service name, the usage metric's Service dimension)
    "fargate": ("AWS Fargate", "Fargate"),
    "ec2": ("Amazon Elastic Compute Cloud (Amazon EC2)", "EC2"),
}
_STANDARD = "Standard (A, C, D, H, I, M, R, T, Z)"
_QUOTAS = {
    ON_DEMAND: _Quota(
        "fargate",
        "Fargate On-Demand vCPU resource count",
        "Standard/OnDemand",
        "The number of Fargate vCPUs running concurrently as Fargate On-Demand in this "
        "account in the current Region.",
        DEFAULT_VALUE,
        DEFAULT_VALUE,
    ),
    SPOT: _Quota(
        "fargate",
        "Fargate Spot vCPU resource count",
        "Standard/Spot",
        "The number of Fargate vCPUs running concurrently as Fargate Spot in this account "
        "in the current Region.",
        DEFAULT_VALUE,
        DEFAULT_VALUE,
    ),
    # EC2: applied values as a used account has them; AWS's defaults for a new one.
    EC2_ON_DEMAND: _Quota(
        "ec2",
        f"Running On-Demand {_STANDARD} instances",
        "Standard/OnDemand",
        f"Maximum number of vCPUs assigned to the Running On-Demand {_STANDARD} instances.",
        640.0,
        5.0,
    ),
    EC2_SPOT: _Quota(
        "ec2",
        f"All {_STANDARD} Spot Instance Requests",
        "Standard/Spot",
        f"The maximum number of vCPUs for all running or requested {_STANDARD} Spot "
        "Instances per Region",
        640.0,
        5.0,
    ),
    EC2_G_ON_DEMAND: _Quota(
        "ec2",
        "Running On-Demand G and VT instances",
        "G/OnDemand",
        "Maximum number of vCPUs assigned to the Running On-Demand G and VT instances.",
        64.0,
        0.0,
    ),
    EC2_G_SPOT: _Quota(
        "ec2",
        "All G and VT Spot Instance Requests",
        "G/Spot",
        "The maximum number of vCPUs for all running or requested G and VT Spot Instances "
        "per Region",
        64.0,
        0.0,
    ),
}
_OPEN = ("PENDING", "CASE_OPENED")
HANDLED = {
    "GetServiceQuota",
    "GetAWSDefaultServiceQuota",
    "ListServiceQuotas",
    "ListAWSDefaultServiceQuotas",
    "RequestServiceQuotaIncrease",
    "GetRequestedServiceQuotaChange",
    "ListRequestedServiceQuotaChangeHistory",
    "ListRequestedServiceQuotaChangeHistoryByQuota",
}


class Quotas:
    """The Fargate vCPU quotas (``L-3032A538`` on-demand, ``L-36FBB829`` spot; 4000 each),
    the EC2 vCPU quotas (standard ``L-1216C47A`` on-demand and ``L-34B43A08`` Spot: 640
    each; G and VT ``L-DB2E81BA`` on-demand and ``L-3819A6DF`` Spot: 64 each; AWS's
    defaults 5, 5, 0, 0) and the increase requests made against them, for every region."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.reset()

    def reset(self) -> None:
        """Defaults back, request history gone."""
        with self._lock:
            self._applied = {code: q.applied for code, q in _QUOTAS.items()}
            self._defaults = {code: q.default for code, q in _QUOTAS.items()}
            self._requests: list[dict[str, Any]] = []

    def set(self, code: str, value: float) -> None:
        """Set the applied value of quota ``code`` (what GetServiceQuota answers)."""
        self._check(code)
        with self._lock:
            self._applied[code] = float(value)

    def set_default(self, code: str, value: float) -> None:
        """Set the AWS default value of quota ``code`` (GetAWSDefaultServiceQuota)."""
        self._check(code)
        with self._lock:
            self._defaults[code] = float(value)

    def get(self, code: str) -> float:
        """The applied value of quota ``code``."""
        self._check(code)
        with self._lock:
            return self._applied[code]

    @property
    def requests(self) -> list[dict[str, Any]]:
        """Increase requests made so far (copies, oldest first)."""
        with self._lock:
            return [dict(r) for r in self._requests]

    def resolve(self, request_id: str | None = None, status: str = "APPROVED") -> None:
        """Move an increase request (default: the latest) to ``status``; APPROVED applies
        its desired value, CASE_OPENED gives it a support case id."""
        with self._lock:
            candidates = [r for r in self._requests if request_id in (None, r["Id"])]
            if not candidates:
                raise KeyError(f"no quota increase request {request_id!r}")
            request = candidates[-1]
            request["Status"] = status
            request["LastUpdated"] = datetime.now(UTC)
            if status == "CASE_OPENED":
                request["CaseId"] = f"{uuid.uuid4().int % 10**11:011d}"
            if status == "APPROVED":
                self._applied[request["QuotaCode"]] = request["DesiredValue"]

    @staticmethod
    def _check(code: str) -> None:
        if code not in _QUOTAS:
            raise KeyError(f"unknown quota code {code!r}; known: {sorted(_QUOTAS)}")

    # ---- the API ------------------------------------------------------------------------

    def handles(self, call: Call) -> bool:
        """Whether the layer should answer ``call`` here (else moto gets it)."""
        if call.operation not in HANDLED:
            return False
        if call.operation.startswith("ListRequestedServiceQuotaChangeHistory"):
            return True
        if call.operation == "GetRequestedServiceQuotaChange":
            return True
        return call.params.get("ServiceCode") in _SERVICES

    def answer(self, call: Call) -> dict[str, Any]:
        """The response body for ``call``; raises :class:`ApiError`."""
        p = call.params
        op = call.operation
        with self._lock:
            if op == "GetServiceQuota":
                code = self._known(p)
                return {"Quota": self._quota(call, code, self._applied[code])}
            if op == "GetAWSDefaultServiceQuota":
                code = self._known(p)
                return {"Quota": self._quota(call, code, self._defaults[code])}
            if op in ("ListServiceQuotas", "ListAWSDefaultServiceQuotas"):
                values = self._applied if op == "ListServiceQuotas" else self._defaults
                codes = [
                    c
                    for c in sorted(_QUOTAS)
                    if p.get("QuotaCode") in (None, c) and _QUOTAS[c].service == p["ServiceCode"]
                ]
                items, token = page([self._quota(call, c, values[c]) for c in codes], p)
                return {"Quotas": items, **({"NextToken": token} if token else {})}
            if op == "RequestServiceQuotaIncrease":
                return {"RequestedQuota": self._request(call)}
            if op == "GetRequestedServiceQuotaChange":
                for request in self._requests:
                    if request["Id"] == p.get("RequestId"):
                        return {"RequestedQuota": _wire(request)}
                raise ApiError("NoSuchResourceException", "The request ID could not be found.")
            # the two change-history listings
            wanted = [
                r
                for r in reversed(self._requests)
                if p.get("ServiceCode") in (None, r["ServiceCode"])
                and p.get("QuotaCode") in (None, r["QuotaCode"])
                and p.get("Status") in (None, r["Status"])
            ]
            if op.endswith("ByQuota"):
                self._known(p)
            items, token = page([_wire(r) for r in wanted], p)
            return {"RequestedQuotas": items, **({"NextToken": token} if token else {})}

    def _known(self, params: dict[str, Any]) -> str:
        code = params.get("QuotaCode")
        if code not in _QUOTAS or params.get("ServiceCode") != _QUOTAS[code].service:
            raise ApiError(
                "NoSuchResourceException",
                f"The quota {code} could not be found for service {params.get('ServiceCode')}.",
            )
        return code

    @staticmethod
    def _arn(call: Call, code: str) -> str:
        service = _QUOTAS[code].service
        return f"arn:aws:servicequotas:{call.region}:{call.account_id}:{service}/{code}"

    def _quota(self, call: Call, code: str, value: float) -> dict[str, Any]:
        quota = _QUOTAS[code]
        service_name, metric_service = _SERVICES[quota.service]
        return {
            "ServiceCode": quota.service,
            "ServiceName": service_name,
            "QuotaArn": self._arn(call, code),
            "QuotaCode": code,
            "QuotaName": quota.name,
            "Value": value,
            "Unit": "None",
            "Adjustable": True,
            "GlobalQuota": False,
            "UsageMetric": {
                "MetricNamespace": "AWS/Usage",
                "MetricName": "ResourceCount",
                "MetricDimensions": {
                    "Class": quota.metric_class,
                    "Resource": "vCPU",
                    "Service": metric_service,
                    "Type": "Resource",
                },
                "MetricStatisticRecommendation": "Maximum",
            },
            "QuotaAppliedAtLevel": "ACCOUNT",
            "Description": quota.description,
        }

    def _request(self, call: Call) -> dict[str, Any]:
        code = self._known(call.params)
        try:
            desired = float(call.params["DesiredValue"])
        except (KeyError, TypeError, ValueError) as exc:
            raise ApiError("IllegalArgumentException", "DesiredValue is required.") from exc
        if desired <= self._applied[code]:
            raise ApiError(
                "IllegalArgumentException",
                "The desired value must be greater than the current quota value.",
            )
        if any(r["QuotaCode"] == code and r["Status"] in _OPEN for r in self._requests):
            raise ApiError(
                "ResourceAlreadyExistsException",
                "Only one open service quota increase request is allowed per quota.",
            )
        now = datetime.now(UTC)
        request = {
            "Id": uuid.uuid4().hex + uuid.uuid4().hex[:8],
            "ServiceCode": _QUOTAS[code].service,
            "ServiceName": _SERVICES[_QUOTAS[code].service][0],
            "QuotaCode": code,
            "QuotaName": _QUOTAS[code].name,
            "DesiredValue": desired,
            "Status": "PENDING",
            "Created": now,
            "LastUpdated": now,
            "Requester": json.dumps(
                {"accountId": call.account_id, "callerArn": f"arn:aws:iam::{call.account_id}:root"}
            ),
            "QuotaArn": self._arn(call, code),
            "GlobalQuota": False,
            "Unit": "None",
            "QuotaRequestedAtLevel": "ACCOUNT",
        }
        self._requests.append(request)
        return _wire(request)


def _wire(request: dict[str, Any]) -> dict[str, Any]:
    return {k: epoch(v) if isinstance(v, datetime) else v for k, v in request.items()}
