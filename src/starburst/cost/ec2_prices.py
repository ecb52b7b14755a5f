"""EC2 prices: each instance type's hourly price (on-demand from the AWS Pricing API, cached
for a day; Spot from EC2's Spot price history), plus what every instance adds (its gp3 root
volume and its public IPv4 address), and a worker's price as its share of the cheapest
instance type that carries it. Every ``PriceBook`` says where its prices came from.

A worker's share is the instance's price over the workers of its size the instance carries,
so it counts the room a worker leaves unused; instances that run idle (booting, or emptier
than packed) are not in it. It prices the estimate before launch; a session's cost is then
its instances' hours (``cost/instance_bill.py``), each at its own price (``InstancePrices``).
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from botocore.config import Config as BotoConfig

from ..aws.ec2_resources import ROOT_VOLUME_GIB
from ..backends.ec2.instances import ARCHES, CATALOGUE, InstanceType
from .billing import Rate
from .model import cache_dir, read_json, write_json
from .prices import CACHE_SECONDS, PRICING_REGION, PriceBook, _on_demand_usd, _stamp

if TYPE_CHECKING:
    from ..aws.connection import Aws

log = logging.getLogger("starburst")

#: gp3 storage, USD per GB-month in us-east-1 (aws.amazon.com/ebs/pricing), over 730 hours.
GP3_GB_MONTH = 0.08
HOURS_PER_MONTH = 730.0
#: A public IPv4 address, USD per hour (aws.amazon.com/vpc/pricing, since February 2024).
PUBLIC_IPV4_HOUR = 0.005
#: On-demand Linux prices in us-east-1, USD per vCPU-hour, by family: the list prices of
#: c7i/m7i/r7i.large, g4dn/g5/g6.xlarge over their vCPUs (aws.amazon.com/ec2/pricing),
#: applied to every generation of the letter (an approximation: older ones cost about as much,
#: Graviton about 15 % less).
FALLBACK_PER_VCPU = {"c": 0.0446, "m": 0.0504, "r": 0.0662, "g4dn": 0.1315, "g5": 0.2515,
                     "g6": 0.2012}  # fmt: skip


def extras_hour(kind: InstanceType) -> float:
    """What an instance adds to its type's price per hour: its root volume and IPv4 address."""
    volume = ROOT_VOLUME_GIB["gpu" if kind.gpus else kind.arch]
    return volume * GP3_GB_MONTH / HOURS_PER_MONTH + PUBLIC_IPV4_HOUR


@dataclass(frozen=True)
class InstanceShare(Rate):
    """A worker's price as its share of the cheapest instance type (of one arch) carrying it.

    ``vcpu_hour`` is the cheapest price per vCPU of those types (for display); ``gb_hour`` 0.
    """

    hourly: tuple[tuple[str, float], ...] = ()  # (type, USD per hour with its extras)

    def per_worker_hour(self, vcpu: float, memory_gb: float) -> float:
        """The cheapest instance's price over the workers of this size it carries."""
        shares = [
            price / fits
            for name, price in self.hourly
            if (fits := CATALOGUE[name].workers_that_fit(vcpu, round(memory_gb * 1024))) > 0
        ]
        return min(shares) if shares else 0.0

    def instance_hour(self, name: str) -> float:
        """What an instance of type ``name`` costs per hour, with its extras (the built-in
        table's price when the book has none for it)."""
        found = dict(self.hourly).get(name)
        if found is None:
            return fallback_on_demand()[name] + extras_hour(CATALOGUE[name])
        return found


def _book(
    region: str, on_demand: dict[str, float], spot: dict[str, float], source: str
) -> PriceBook:
    rates: dict[str, Rate] = {}
    for arch in ARCHES:
        for is_spot, table in (
            (False, on_demand),
            (True, {n: spot.get(n, p) for n, p in on_demand.items()}),
        ):
            mine = [n for n in table if CATALOGUE[n].arch == arch] or list(table)
            hourly = tuple((n, table[n] + extras_hour(CATALOGUE[n])) for n in sorted(mine))
            per_vcpu = min((p / CATALOGUE[n].vcpus for n, p in hourly), default=0.0)
            rates[f"{arch}/{'spot' if is_spot else 'on-demand'}"] = InstanceShare(
                per_vcpu, 0.0, hourly
            )
    return PriceBook(region, rates, source)


def fallback_on_demand() -> dict[str, float]:
    """The built-in on-demand table for every catalogue type."""
    return {
        t.name: t.vcpus * FALLBACK_PER_VCPU[t.family if t.gpus else t.family[0]]
        for t in CATALOGUE.values()
    }


def fallback_book(region: str, why: str) -> PriceBook:
    """The built-in table (Spot counted at the on-demand price: an upper bound)."""
    source = f"built-in table of us-east-1 on-demand prices, Spot at most that ({why})"
    return _book(region, fallback_on_demand(), {}, source)


def ec2_prices(
    aws: Aws,
    *,
    only: list[str] | None = None,
    arch: str | None = None,
    now: float | None = None,
) -> PriceBook:
    """EC2 prices in ``aws.region`` for every catalogue type: on-demand cached if fetched
    within a day, else live, else the built-in table; Spot from the Spot price history (the
    highest zone's), else at most on-demand. ``only``, ``arch``: the types or families and the
    architecture a worker may run on (None: any). Never raises for a failing API."""
    on_demand, source = on_demand_prices(aws, now)
    try:
        spot = _fetch_spot(aws)
        spot_source = "Spot: EC2 Spot price history, highest zone"
    except Exception as exc:  # Spot then counts at the on-demand price: an upper bound
        spot, spot_source = {}, f"Spot at most on-demand (the Spot price history failed: {exc})"
    extras = (
        f"+ ${extras_hour(CATALOGUE['c7i.large']):.4f}/h per instance (${GP3_GB_MONTH}/GB-month "
        f"gp3 root volume, ${PUBLIC_IPV4_HOUR}/h public IPv4)"
    )
    full = f"on-demand: {source}; {spot_source}; {extras}"
    on_demand = {
        n: p
        for n, p in on_demand.items()
        if n in CATALOGUE
        and (not only or n in only or CATALOGUE[n].family in only)
        and arch in (None, CATALOGUE[n].arch)
    }
    return _book(aws.region, on_demand, spot, full)


def on_demand_prices(aws: Aws, now: float | None = None) -> tuple[dict[str, float], str]:
    """Each catalogue type's on-demand price in ``aws.region`` (USD per hour) and where it
    came from: cached if fetched within a day, else live, else the built-in table."""
    now = time.time() if now is None else now
    path = cache_dir() / f"ec2-prices-{aws.region}.json"
    cached = _read_cache(path)
    if cached is not None and now - cached[0] < CACHE_SECONDS:
        return cached[1], f"AWS Pricing API, cached {_stamp(cached[0])}"
    try:
        on_demand = _fetch_on_demand(aws)
    except Exception as exc:  # any failure of the API or its answer: fall back, and say so
        why = f"the Pricing API failed: {type(exc).__name__}: {exc}"
        return fallback_on_demand(), f"built-in table of us-east-1 on-demand prices ({why})"
    write_json(path, {"fetched": now, "prices": on_demand})
    return on_demand, "AWS Pricing API"


class InstancePrices:
    """Each instance's own price per hour, with its root volume and IPv4 address: its type's
    on-demand price, or for Spot the newest price of its type in its zone in the Spot price
    history (the type's highest zone's when its zone has none; at most on-demand, which also
    stands when the history fails). Read once per type."""

    def __init__(self, aws: Aws) -> None:
        self.aws = aws
        self._on_demand: dict[str, float] | None = None
        self._spot: dict[tuple[str, str], float] = {}  # (type, zone) -> USD per hour
        self._spot_read: set[str] = set()

    def hourly(self, name: str, spot: bool, zone: str) -> float:
        """What an instance of type ``name`` in ``zone`` costs per hour."""
        if self._on_demand is None:
            self._on_demand = on_demand_prices(self.aws)[0]
        on_demand = self._on_demand.get(name) or fallback_on_demand().get(name, 0.0)
        price = on_demand
        if spot:
            if name not in self._spot_read:
                self._spot_read.add(name)
                try:
                    self._spot.update(_spot_by_zone(self.aws, [name]))
                except Exception as exc:  # counted at on-demand: an upper bound
                    log.warning("could not read the Spot price of %s: %s", name, exc)
            zones = [p for (n, _), p in self._spot.items() if n == name]
            price = min(self._spot.get((name, zone), max(zones, default=on_demand)), on_demand)
        kind = CATALOGUE.get(name)
        return price + (extras_hour(kind) if kind is not None else PUBLIC_IPV4_HOUR)


def _fetch_on_demand(aws: Aws) -> dict[str, float]:
    client = aws.session.create_client(
        "pricing",
        region_name=PRICING_REGION,
        config=BotoConfig(
            retries={"mode": "standard", "total_max_attempts": 2}, connect_timeout=5,
            read_timeout=15,
        ),
    )  # fmt: skip
    match = {"regionCode": aws.region, "operatingSystem": "Linux", "tenancy": "Shared",
             "preInstalledSw": "NA", "capacitystatus": "Used"}  # fmt: skip
    pages = client.get_paginator("get_products").paginate(
        ServiceCode="AmazonEC2",
        Filters=[{"Type": "TERM_MATCH", "Field": k, "Value": v} for k, v in match.items()],
    )
    found: dict[str, float] = {}
    for page in pages:
        for text in page.get("PriceList", []):
            product = json.loads(text) if isinstance(text, str) else text
            name = product.get("product", {}).get("attributes", {}).get("instanceType")
            if name in CATALOGUE:
                found[name] = _on_demand_usd(product)
    if not found:
        raise LookupError(f"no EC2 instance price for {aws.region}")
    return found


def _fetch_spot(aws: Aws) -> dict[str, float]:
    highest: dict[str, float] = {}
    for (name, _), price in _spot_by_zone(aws, sorted(CATALOGUE)).items():
        highest[name] = max(price, highest.get(name, 0.0))
    return highest


def _spot_by_zone(aws: Aws, types: list[str]) -> dict[tuple[str, str], float]:
    """The current Spot price of each of ``types`` in each zone (the newest in the history)."""
    pages = (
        aws.client("ec2")
        .get_paginator("describe_spot_price_history")
        .paginate(InstanceTypes=types, ProductDescriptions=["Linux/UNIX"], StartTime=time.time())
    )
    newest: dict[tuple[str, str], tuple[Any, float]] = {}
    for page in pages:
        for row in page.get("SpotPriceHistory", []):
            key = (row["InstanceType"], row["AvailabilityZone"])
            stamp = row.get("Timestamp")
            if key not in newest or (stamp is not None and stamp > newest[key][0]):
                newest[key] = (stamp, float(row["SpotPrice"]))
    return {key: price for key, (_, price) in newest.items()}


def _read_cache(path: Path) -> tuple[float, dict[str, float]] | None:
    try:
        raw = read_json(path)
        return float(raw["fetched"]), {k: float(v) for k, v in raw["prices"].items()}
    except (ValueError, KeyError, TypeError, AttributeError):
        return None
