"""The AWS Price List API (``GetProducts``) for Fargate, which moto lacks."""

from __future__ import annotations

import hashlib
import json
import threading
from collections.abc import Callable
from typing import Any

from emulator.wire import ApiError, Call, page

SERVICE_CODE = "AmazonECS"
SERVICE_NAME = "Amazon Elastic Container Service"
ON_DEMAND_TERM = "JRTCKXETXF"
RATE_CODE = "6YS6EN2CT7"
SPOT_DISCOUNT = 0.7  # Fargate Spot: "up to 70% off"

# region -> (usagetype prefix, Price List location name)
REGIONS = {
    "us-east-1": ("USE1", "US East (N. Virginia)"),
    "us-east-2": ("USE2", "US East (Ohio)"),
    "us-west-1": ("USW1", "US West (N. California)"),
    "us-west-2": ("USW2", "US West (Oregon)"),
    "ca-central-1": ("CAN1", "Canada (Central)"),
    "eu-west-1": ("EU", "EU (Ireland)"),
    "eu-west-2": ("EUW2", "EU (London)"),
    "eu-west-3": ("EUW3", "EU (Paris)"),
    "eu-central-1": ("EUC1", "EU (Frankfurt)"),
    "eu-north-1": ("EUN1", "EU (Stockholm)"),
    "ap-northeast-1": ("APN1", "Asia Pacific (Tokyo)"),
    "ap-southeast-1": ("APS1", "Asia Pacific (Singapore)"),
    "ap-southeast-2": ("APS2", "Asia Pacific (Sydney)"),
    "ap-south-1": ("APS3", "Asia Pacific (Mumbai)"),
    "sa-east-1": ("SAE1", "South America (Sao Paulo)"),
}
# On-demand Linux prices per (vCPU-hour, GB-hour): us-east-1 from AWS_FACTS.md; the other
# regions reuse it except where a regional price was known. Tests set what they rely on.
X86 = (0.04048, 0.004445)
ARM = (0.03238, 0.00356)
_REGIONAL = {
    "sa-east-1": {"x86_64": (0.0696, 0.0076), "arm64": (0.0557, 0.00612)},
}
STORAGE_GB_HOUR = 0.000111

ARCHES = ("x86_64", "arm64")
KINDS = ("vcpu", "gb")


def _key(region: str, arch: str, spot: bool, kind: str) -> tuple[str, str, bool, str]:
    if region not in REGIONS:
        raise KeyError(f"unknown region {region!r}; known: {sorted(REGIONS)}")
    if arch not in ARCHES or kind not in KINDS:
        raise KeyError(f"arch must be one of {ARCHES}, kind one of {KINDS}")
    return (region, arch, spot, kind)


class Prices:
    """Fargate prices served by GetProducts (USD per vCPU-hour and per GB-hour)."""

    def __init__(self, fail: Callable[..., None], restore: Callable[[], None]) -> None:
        self._lock = threading.Lock()
        self._fail = fail
        self._restore = restore
        self.reset()

    def reset(self) -> None:
        """Default prices back."""
        with self._lock:
            self._table: dict[tuple[str, str, bool, str], float] = {}
            for region in REGIONS:
                for arch in ARCHES:
                    base = _REGIONAL.get(region, {}).get(arch) or (X86 if arch == "x86_64" else ARM)
                    for spot in (False, True):
                        factor = 1 - SPOT_DISCOUNT if spot else 1.0
                        for kind, value in zip(KINDS, base, strict=True):
                            self._table[(region, arch, spot, kind)] = round(value * factor, 8)

    def set(
        self,
        region: str = "us-east-1",
        *,
        vcpu: float | None = None,
        gb: float | None = None,
        arch: str = "x86_64",
        spot: bool = False,
    ) -> None:
        """Set the hourly price per vCPU and/or per GB for one region/arch/spot class."""
        with self._lock:
            if vcpu is not None:
                self._table[_key(region, arch, spot, "vcpu")] = float(vcpu)
            if gb is not None:
                self._table[_key(region, arch, spot, "gb")] = float(gb)

    def get(
        self,
        region: str = "us-east-1",
        *,
        kind: str = "vcpu",
        arch: str = "x86_64",
        spot: bool = False,
    ) -> float:
        """The hourly price GetProducts reports for this class (``kind``: vcpu or gb)."""
        with self._lock:
            return self._table[_key(region, arch, spot, kind)]

    def fail(
        self,
        times: int | None = None,
        *,
        code: str = "InternalErrorException",
        status: int = 500,
        message: str = "Service is unavailable.",
    ) -> None:
        """GetProducts answers this error (``times`` calls, or until :meth:`restore`)."""
        self._fail(code=code, status=status, message=message, times=times)

    def restore(self) -> None:
        """GetProducts works again."""
        self._restore()

    # ---- the API ------------------------------------------------------------------------

    def products(self) -> list[dict[str, Any]]:
        """Every Fargate product in the Price List shape (as dicts)."""
        with self._lock:
            table = dict(self._table)
        items = []
        for region, (prefix, location) in REGIONS.items():
            for arch in ARCHES:
                for spot in (False, True):
                    for kind in KINDS:
                        price = table[(region, arch, spot, kind)]
                        items.append(_product(region, prefix, location, arch, spot, kind, price))
            items.append(_storage(region, prefix, location))
        return items

    def answer(self, call: Call) -> dict[str, Any]:
        """The response body for a Pricing ``call``; raises :class:`ApiError`."""
        p = call.params
        if call.operation == "DescribeServices":
            services = []
            if p.get("ServiceCode") in (None, SERVICE_CODE):
                names = sorted(
                    {k for item in self.products() for k in item["product"]["attributes"]}
                )
                services = [{"ServiceCode": SERVICE_CODE, "AttributeNames": names}]
            items, token = page(services, p)
            return {"Services": items, "FormatVersion": "aws_v1", **_token(token)}
        if call.operation == "GetAttributeValues":
            values = []
            if p.get("ServiceCode") == SERVICE_CODE:
                name = p.get("AttributeName", "")
                values = sorted(
                    {
                        item["product"]["attributes"][name]
                        for item in self.products()
                        if name in item["product"]["attributes"]
                    }
                )
            items, token = page([{"Value": v} for v in values], p)
            return {"AttributeValues": items, **_token(token)}
        if call.operation != "GetProducts":
            raise ApiError("InvalidParameterException", f"{call.operation} is not emulated.")
        if not p.get("ServiceCode"):
            raise ApiError("InvalidParameterException", "ServiceCode is required.")
        items = self.products() if p["ServiceCode"] == SERVICE_CODE else []
        for flt in p.get("Filters") or []:
            items = [item for item in items if _matches(item, flt)]
        chosen, token = page(items, p)
        return {
            "FormatVersion": p.get("FormatVersion") or "aws_v1",
            "PriceList": [json.dumps(item) for item in chosen],
            **_token(token),
        }


def _token(token: str | None) -> dict[str, str]:
    return {"NextToken": token} if token else {}


def _matches(item: dict[str, Any], flt: dict[str, Any]) -> bool:
    kind = flt.get("Type", "TERM_MATCH")
    field = str(flt.get("Field", ""))
    wanted = str(flt.get("Value", ""))
    product = item["product"]
    fields = {k.lower(): v for k, v in product["attributes"].items()}
    fields["servicecode"] = item["serviceCode"]
    fields["productfamily"] = product["productFamily"]
    fields["sku"] = product["sku"]
    actual = fields.get(field.lower())
    if kind in ("TERM_MATCH", "EQUALS"):
        return actual == wanted
    if kind == "CONTAINS":
        return actual is not None and wanted in actual
    if kind == "ANY_OF":
        return actual in [v.strip() for v in wanted.split(",")]
    if kind == "NONE_OF":
        return actual not in [v.strip() for v in wanted.split(",")]
    raise ApiError("InvalidParameterException", f"Unknown filter type {kind}.")


def _sku(usagetype: str) -> str:
    digest = hashlib.sha256(usagetype.encode()).hexdigest().upper()
    return "".join(c for c in digest if c.isalnum())[:16]


def _item(
    sku: str, family: str, attributes: dict[str, str], unit: str, price: float, description: str
) -> dict[str, Any]:
    rate = f"{sku}.{ON_DEMAND_TERM}.{RATE_CODE}"
    return {
        "product": {"productFamily": family, "attributes": attributes, "sku": sku},
        "serviceCode": SERVICE_CODE,
        "terms": {
            "OnDemand": {
                f"{sku}.{ON_DEMAND_TERM}": {
                    "priceDimensions": {
                        rate: {
                            "unit": unit,
                            "endRange": "Inf",
                            "description": description,
                            "appliesTo": [],
                            "rateCode": rate,
                            "beginRange": "0",
                            "pricePerUnit": {"USD": f"{price:.10f}"},
                        }
                    },
                    "sku": sku,
                    "effectiveDate": "2025-01-01T00:00:00Z",
                    "offerTermCode": ON_DEMAND_TERM,
                    "termAttributes": {},
                }
            }
        },
        "version": "20250101000000",
        "publicationDate": "2025-01-01T00:00:00Z",
    }


def _base_attributes(region: str, location: str, usagetype: str) -> dict[str, str]:
    return {
        "servicename": SERVICE_NAME,
        "servicecode": SERVICE_CODE,
        "location": location,
        "locationType": "AWS Region",
        "regionCode": region,
        "usagetype": usagetype,
        "operation": "",
        "tenancy": "Shared",
    }


def _product(
    region: str, prefix: str, location: str, arch: str, spot: bool, kind: str, price: float
) -> dict[str, Any]:
    usage = ("SpotUsage-" if spot else "") + "Fargate-" + ("ARM-" if arch == "arm64" else "")
    usage += "vCPU-Hours:perCPU" if kind == "vcpu" else "GB-Hours"
    usagetype = f"{prefix}-{usage}"
    attributes = _base_attributes(region, location, usagetype)
    if kind == "vcpu":
        attributes["cputype"] = "perCPU"
    else:
        attributes["memorytype"] = "perGB"
    what = ("vCPU" if kind == "vcpu" else "GB") + (" ARM" if arch == "arm64" else "")
    description = f"AWS Fargate{' Spot' if spot else ''} - {what} - {location}"
    unit = "hours" if kind == "vcpu" else "GB-Hours"
    return _item(_sku(usagetype), "Compute", attributes, unit, price, description)


def _storage(region: str, prefix: str, location: str) -> dict[str, Any]:
    usagetype = f"{prefix}-Fargate-EphemeralStorage-GB-Hours"
    attributes = _base_attributes(region, location, usagetype)
    attributes["storagetype"] = "default"
    description = f"AWS Fargate - Ephemeral Storage - {location}"
    return _item(_sku(usagetype), "Compute", attributes, "GB-Hours", STORAGE_GB_HOUR, description)
