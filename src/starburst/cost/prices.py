"""Fargate prices: live from the AWS Pricing API, cached on disk for a day, with a built-in
table when the API cannot be reached. Every ``PriceBook`` says where its prices came from.

A backend that bills offers its prices through ``Fleet.price_book``; the EC2 backend builds
its own in ``ec2_prices.py``.
"""

from __future__ import annotations

import json
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from botocore.config import Config as BotoConfig

from .billing import Rate
from .model import cache_dir, read_json, write_json

if TYPE_CHECKING:
    from ..aws.connection import Aws

#: How long fetched prices are trusted before they are fetched again.
CACHE_SECONDS = 24 * 3600
#: The Pricing API answers in us-east-1 (and ap-south-1), whatever region the work runs in.
PRICING_REGION = "us-east-1"
ARCHES = ("x86_64", "arm64")
#: Fargate's on-demand Linux list prices in us-east-1 (USD per vCPU-hour, per GB-hour).
FALLBACK = {"x86_64": Rate(0.04048, 0.004445), "arm64": Rate(0.03238, 0.00356)}

# Price List usage types, without their region prefix ("USE1-", "EUC1-"...).
_USAGE = {
    "Fargate-vCPU-Hours:perCPU": ("x86_64", False, "vcpu"),
    "Fargate-GB-Hours": ("x86_64", False, "gb"),
    "Fargate-ARM-vCPU-Hours:perCPU": ("arm64", False, "vcpu"),
    "Fargate-ARM-GB-Hours": ("arm64", False, "gb"),
    "SpotUsage-Fargate-vCPU-Hours:perCPU": ("x86_64", True, "vcpu"),
    "SpotUsage-Fargate-GB-Hours": ("x86_64", True, "gb"),
    "SpotUsage-Fargate-ARM-vCPU-Hours:perCPU": ("arm64", True, "vcpu"),
    "SpotUsage-Fargate-ARM-GB-Hours": ("arm64", True, "gb"),
}
_REGION_PREFIX = re.compile(r"^[A-Z0-9]+-(?=(?:SpotUsage-)?Fargate-)")


def _key(arch: str, spot: bool) -> str:
    return f"{arch}/{'spot' if spot else 'on-demand'}"


@dataclass(frozen=True)
class PriceBook:
    """Hourly rates for each kind of capacity in one region, and where they came from."""

    region: str
    rates: dict[str, Rate]
    source: str  # e.g. "AWS Pricing API", "built-in table (the Pricing API failed: ...)"

    def rate(self, arch: str = "x86_64", spot: bool = False) -> Rate:
        """The rate for ``arch`` on spot or on-demand capacity."""
        return self.rates[_key(arch, spot)]

    @classmethod
    def fallback(cls, region: str, why: str) -> PriceBook:
        """The built-in table (spot counted at the on-demand price: an upper bound)."""
        rates = {_key(a, s): FALLBACK[a] for a in ARCHES for s in (False, True)}
        return cls(
            region,
            rates,
            f"built-in table of us-east-1 on-demand prices, spot at most that ({why})",
        )


def fargate_prices(aws: Aws, *, now: float | None = None) -> PriceBook:
    """Fargate's prices in ``aws.region``: cached if fetched within a day, else live, else
    the built-in table. Never raises for an unreachable or failing Pricing API."""
    now = time.time() if now is None else now
    path = cache_dir() / f"fargate-prices-{aws.region}.json"
    cached = _read_cache(path)
    if cached is not None and now - cached[0] < CACHE_SECONDS:
        return PriceBook(aws.region, cached[1], f"AWS Pricing API, cached {_stamp(cached[0])}")
    try:
        rates = _fetch(aws)
    except Exception as exc:  # any failure of the API or its answer: fall back, and say so
        why = f"the Pricing API failed: {type(exc).__name__}: {exc}"
        if cached is not None:
            stale = f"AWS Pricing API, cached {_stamp(cached[0])} (stale: {why})"
            return PriceBook(aws.region, cached[1], stale)
        return PriceBook.fallback(aws.region, why)
    _write_cache(path, now, rates)
    return PriceBook(aws.region, rates, "AWS Pricing API")


def _fetch(aws: Aws) -> dict[str, Rate]:
    client = aws.session.create_client(
        "pricing",
        region_name=PRICING_REGION,
        config=BotoConfig(
            retries={"mode": "standard", "total_max_attempts": 2},
            connect_timeout=5,
            read_timeout=15,
        ),
    )
    found: dict[tuple[str, bool, str], float] = {}
    pages = client.get_paginator("get_products").paginate(
        ServiceCode="AmazonECS",
        Filters=[{"Type": "TERM_MATCH", "Field": "regionCode", "Value": aws.region}],
    )
    for page in pages:
        for text in page.get("PriceList", []):
            product = json.loads(text) if isinstance(text, str) else text
            usage = product.get("product", {}).get("attributes", {}).get("usagetype", "")
            which = _USAGE.get(_REGION_PREFIX.sub("", usage))
            if which is not None:
                found[which] = _on_demand_usd(product)
    rates = {}
    for arch in ARCHES:
        for spot in (False, True):
            vcpu, gb = found.get((arch, spot, "vcpu")), found.get((arch, spot, "gb"))
            if vcpu is None or gb is None:
                raise LookupError(f"no {_key(arch, spot)} Fargate price for {aws.region}")
            rates[_key(arch, spot)] = Rate(vcpu, gb)
    return rates


def _on_demand_usd(product: dict[str, Any]) -> float:
    for term in product["terms"]["OnDemand"].values():
        for dimension in term["priceDimensions"].values():
            return float(dimension["pricePerUnit"]["USD"])
    raise LookupError(f"no price in product {product.get('product', {}).get('sku')}")


def _read_cache(path: Path) -> tuple[float, dict[str, Rate]] | None:
    try:
        raw = read_json(path)
        return float(raw["fetched"]), {k: Rate(*v) for k, v in raw["rates"].items()}
    except (ValueError, KeyError, TypeError):
        return None


def _write_cache(path: Path, fetched: float, rates: dict[str, Rate]) -> None:
    rows = {k: [r.vcpu_hour, r.gb_hour] for k, r in rates.items()}
    write_json(path, {"fetched": fetched, "rates": rows})


def _stamp(epoch: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(epoch))
