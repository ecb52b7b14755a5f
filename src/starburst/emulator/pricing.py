"""The AWS Price List API (``GetProducts``) for Fargate and EC2, which moto lacks; and the
Spot prices EC2's DescribeSpotPriceHistory answers (moto's are a constant 0.00001)."""

from __future__ import annotations

import hashlib
import json
import threading
from collections.abc import Callable
from typing import Any

from starburst.emulator.instance_types import ON_DEMAND_PRICES, SPOT_SHARE, instance_type
from starburst.emulator.wire import ApiError, Call, page

SERVICE_CODE = "AmazonECS"
EC2_SERVICE_CODE = "AmazonEC2"
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
    """Prices served by GetProducts: Fargate (USD per vCPU-hour and per GB-hour) and EC2
    on-demand Linux instances (USD per hour); and EC2 Spot prices per type and zone."""

    def __init__(self, fail: Callable[..., None], restore: Callable[[], None]) -> None:
        self._lock = threading.Lock()
        self._fail = fail
        self._restore = restore
        self.reset()

    def reset(self) -> None:
        """Default prices back."""
        with self._lock:
            self._instances: dict[tuple[str, str], float] = {}  # (region, type) -> USD/h
            self._spot: dict[tuple[str, str | None], float] = {}  # (type, zone) -> USD/h
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

    def set_instance(self, instance_type: str, price: float, region: str = "us-east-1") -> None:
        """Set the on-demand hourly price of an EC2 instance type in ``region``."""
        _key(region, "x86_64", False, "vcpu")  # checks the region
        with self._lock:
            self._instances[(region, instance_type)] = float(price)

    def instance(self, name: str, region: str = "us-east-1") -> float:
        """The on-demand hourly price of EC2 type ``name`` (default: the catalogue's)."""
        with self._lock:
            if (region, name) in self._instances:
                return self._instances[(region, name)]
        return instance_type(name).on_demand_price()

    def set_spot(self, instance_type: str, price: float, zone: str | None = None) -> None:
        """Set the Spot price of a type in availability zone ``zone`` (None: every zone)."""
        with self._lock:
            self._spot[(instance_type, zone)] = float(price)

    def spot(self, name: str, zone: str) -> float:
        """The Spot price of ``name`` in ``zone`` (default: a share of on-demand)."""
        with self._lock:
            for key in ((name, zone), (name, None)):
                if key in self._spot:
                    return self._spot[key]
        region = zone.rstrip("abcdefghijklmnopqrstuvwxyz")
        on_demand = self.instance(name, region if region in REGIONS else "us-east-1")
        return round(on_demand * SPOT_SHARE, 4)

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

    def products(self, service: str = SERVICE_CODE) -> list[dict[str, Any]]:
        """Every product of ``service`` (AmazonECS: Fargate; AmazonEC2: instances) in the
        Price List shape (as dicts)."""
        if service == EC2_SERVICE_CODE:
            return self._ec2_products()
        if service != SERVICE_CODE:
            return []
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

    def _ec2_products(self) -> list[dict[str, Any]]:
        with self._lock:
            names = sorted(set(ON_DEMAND_PRICES) | {name for _, name in self._instances})
        return [
            _instance_product(region, prefix, location, name, self.instance(name, region))
            for region, (prefix, location) in REGIONS.items()
            for name in names
        ]

    def answer(self, call: Call) -> dict[str, Any]:
        """The response body for a Pricing ``call``; raises :class:`ApiError`."""
        p = call.params
        if call.operation == "DescribeServices":
            services = []
            for code in (SERVICE_CODE, EC2_SERVICE_CODE):
                if p.get("ServiceCode") in (None, code):
                    names = sorted(
                        {k for item in self.products(code) for k in item["product"]["attributes"]}
                    )
                    services.append({"ServiceCode": code, "AttributeNames": names})
            items, token = page(services, p)
            return {"Services": items, "FormatVersion": "aws_v1", **_token(token)}
        if call.operation == "GetAttributeValues":
            name = p.get("AttributeName", "")
            values = sorted(
                {
                    item["product"]["attributes"][name]
                    for item in self.products(p.get("ServiceCode", ""))
                    if name in item["product"]["attributes"]
                }
            )
            items, token = page([{"Value": v} for v in values], p)
            return {"AttributeValues": items, **_token(token)}
        if call.operation != "GetProducts":
            raise ApiError("InvalidParameterException", f"{call.operation} is not emulated.")
        if not p.get("ServiceCode"):
            raise ApiError("InvalidParameterException", "ServiceCode is required.")
        items = self.products(p["ServiceCode"])
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
        "serviceCode": attributes["servicecode"],
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


def _instance_product(
    region: str, prefix: str, location: str, name: str, price: float
) -> dict[str, Any]:
    """An EC2 on-demand Linux instance, with the attributes a TERM_MATCH query uses."""
    kind = instance_type(name)
    usagetype = f"{prefix}-BoxUsage:{name}"
    attributes = {
        "servicename": "Amazon Elastic Compute Cloud",
        "servicecode": EC2_SERVICE_CODE,
        "location": location,
        "locationType": "AWS Region",
        "regionCode": region,
        "usagetype": usagetype,
        "operation": "RunInstances",
        "instanceType": name,
        "instanceFamily": "GPU instance" if kind.gpus else "General purpose",
        "vcpu": str(kind.vcpus),
        "memory": f"{kind.memory_mib / 1024:g} GiB",
        "gpu": str(kind.gpus),
        "processorArchitecture": "64-bit",
        "operatingSystem": "Linux",
        "tenancy": "Shared",
        "preInstalledSw": "NA",
        "licenseModel": "No License required",
        "capacitystatus": "Used",
        "marketoption": "OnDemand",
    }
    description = f"${price} per On Demand Linux {name} Instance Hour"
    return _item(_sku(usagetype), "Compute Instance", attributes, "Hrs", price, description)
