"""backend="ec2" cost on the emulator: instance prices as AWS serves them (Pricing API and
Spot price history), a worker priced as its share of the instance that carries it before
launch, and a session's cost from its instances' hours."""

from __future__ import annotations

import json
import math
import re
import time
from collections import Counter
from datetime import UTC, datetime
from typing import Any

import boto3
import pytest
from test_ec2 import ec2_quotas_unknown, slow_square  # noqa: F401 (a fixture)
from test_ec2_warm import no_reaper_outlives_the_test  # noqa: F401 (a fixture)
from test_fargate import _quiet, square

import starburst
from starburst.backends.ec2.instances import CATALOGUE
from starburst.config import Config
from starburst.cost.billing import billed_seconds
from starburst.cost.ec2_prices import extras_hour
from starburst.engine.status import read_status

pytestmark = pytest.mark.usefixtures("aws", "ec2_quotas_unknown")

#: c7i.large carries two workers of 1 vCPU and 1.75 GiB (ec2's default memory).
TYPES = ["c7i.large"]


def test_a_worker_costs_its_share_of_the_instance_at_the_spot_price(aws: Any) -> None:
    starburst.setup(say=_quiet, ec2=True)
    aws.prices.set_instance("c7i.large", 0.5)
    aws.prices.set_spot("c7i.large", 0.2)
    _, run = starburst.map(
        square, range(20), workers=2, cpu=1, backend="ec2", spot=True,
        instance_types=TYPES, return_run=True,
    )  # fmt: skip
    hourly = (0.2 + extras_hour(CATALOGUE["c7i.large"])) / 2  # half the instance each
    assert run.billed_seconds == 2 * 60  # short tasks: one billed minute each
    assert run.cost == pytest.approx(2 * hourly / 60)
    assert "Spot price history" in run.price_source and "public IPv4" in run.price_source


def test_the_estimate_prices_ec2_workers_from_the_pricing_api(aws: Any) -> None:
    starburst.setup(say=_quiet, ec2=True)
    aws.prices.set_instance("c7i.xlarge", 0.002)  # 4 vCPUs: carries the 4 workers
    guess = starburst.estimate(
        square, range(100), workers=4, cpu=1, backend="ec2", instance_types=["c7i"], show=False
    )
    assert guess.hourly == pytest.approx(0.002 + extras_hour(CATALOGUE["c7i.xlarge"]))
    assert guess.price_source.startswith("on-demand: AWS Pricing API")


@pytest.mark.parametrize("spot", [False, True], ids=["on-demand", "spot"])
def test_the_estimate_is_the_instances_hours_the_run_needs(aws: Any, spot: bool) -> None:
    """Five workers of 1 vCPU on c7i.large (2 vCPUs) and c7i.xlarge (4): four fill an
    xlarge, the fifth needs a large. The estimate is those two instances' prices (Spot: the
    history's highest zone's) for the run's time, at least a minute: not five workers'
    shares (which would leave out the large's empty vCPU)."""
    starburst.setup(say=_quiet, ec2=True)
    aws.prices.set_instance("c7i.large", 0.3)
    aws.prices.set_instance("c7i.xlarge", 0.5)
    aws.prices.set_spot("c7i.large", 0.1)
    aws.prices.set_spot("c7i.xlarge", 0.2)
    guess = starburst.estimate(
        slow_square, range(50), workers=5, cpu=1, backend="ec2", spot=spot,
        instance_types=["c7i.large", "c7i.xlarge"], sample=2, show=False,
    )  # fmt: skip
    needed = {"c7i.xlarge": 1, "c7i.large": 1}  # 4 + 1 workers
    price = _spot_history() if spot else {"c7i.large": {"": 0.3}, "c7i.xlarge": {"": 0.5}}
    hourly = sum(
        n * (max(price[name].values()) + extras_hour(CATALOGUE[name])) for name, n in needed.items()
    )
    assert guess.instances == (("c7i.large", 1), ("c7i.xlarge", 1))
    assert guess.hourly == pytest.approx(hourly)
    assert guess.cost == pytest.approx(hourly * max(60.0, guess.wall_seconds) / 3600)
    assert "2 instances (c7i.large, c7i.xlarge): an instance-hour estimate" in str(guess)


def test_max_cost_refuses_an_ec2_run_before_any_instance_starts(aws: Any) -> None:
    starburst.setup(say=_quiet, ec2=True)
    aws.prices.set_instance("c7i.large", 120.0)  # $1 a minute per worker of 1 vCPU
    with pytest.raises(starburst.CostCapError, match="refused before launch"):
        starburst.map(
            square, range(100), workers=4, cpu=1, backend="ec2", instance_types=TYPES,
            max_cost=2,
        )  # fmt: skip
    assert aws.ec2.instances() == []


def test_a_pricing_failure_prices_ec2_from_the_table_and_says_so(aws: Any) -> None:
    starburst.setup(say=_quiet, ec2=True)
    aws.prices.fail()
    guess = starburst.estimate(square, range(10), workers=1, cpu=1, backend="ec2", show=False)
    assert guess.price_source.startswith("on-demand: built-in table")
    assert "Pricing API failed" in guess.price_source
    assert guess.hourly > 0


def test_a_run_on_graviton_types_only_is_priced_at_them(aws: Any) -> None:
    starburst.setup(say=_quiet, ec2=True)
    aws.prices.set_instance("c7g.large", 0.3)
    _, run = starburst.map(
        square, range(20), workers=2, cpu=1, backend="ec2", instance_types=["c7g.large"],
        return_run=True,
    )  # fmt: skip
    hourly = (0.3 + extras_hour(CATALOGUE["c7g.large"])) / 2
    assert run.cost == pytest.approx(2 * hourly / 60)


def _instances() -> list[dict[str, Any]]:
    """Every instance starburst's groups launched (terminated ones too), as EC2 shows them."""
    found = boto3.client("ec2").describe_instances()["Reservations"]  # (only theirs here)
    return [i for reservation in found for i in reservation["Instances"]]


def _ended(instance: dict[str, Any]) -> float:
    """When EC2 says an instance was terminated ("User initiated (2026-... UTC)")."""
    when = re.search(r"\((\S+ \S+) (?:GMT|UTC)\)", instance["StateTransitionReason"])
    assert when, instance["StateTransitionReason"]
    return datetime.strptime(when.group(1), "%Y-%m-%d %H:%M:%S").replace(tzinfo=UTC).timestamp()


def _spot_history() -> dict[str, dict[str, float]]:
    """The Spot prices EC2 shows now: type -> zone -> USD per hour."""
    rows = boto3.client("ec2").describe_spot_price_history(
        InstanceTypes=["c7i.large", "c7i.xlarge"], ProductDescriptions=["Linux/UNIX"]
    )["SpotPriceHistory"]
    found: dict[str, dict[str, float]] = {}
    for row in rows:
        found.setdefault(row["InstanceType"], {})[row["AvailabilityZone"]] = float(row["SpotPrice"])
    return found


def test_partly_empty_instances_cost_their_hours_at_their_own_prices(aws: Any) -> None:
    """Five workers on instances with six places: the cost is the instances' time (launch to
    termination, the minute at least) at each one's type and zone's Spot price (the type's
    highest where the history has none for its zone), above the workers' shares, and the
    report says how full they were."""
    starburst.setup(say=_quiet, ec2=True)
    zones = [f"us-east-1{letter}" for letter in "abcdef"]
    aws.prices.set_instance("c7i.large", 0.5)
    aws.prices.set_instance("c7i.xlarge", 1.0)
    for n, zone in enumerate(zones):  # every zone its own price, within 5% of the highest
        aws.prices.set_spot("c7i.large", 0.2 * (1 - 0.01 * n), zone=zone)
        aws.prices.set_spot("c7i.xlarge", 0.36 * (1 - 0.01 * n), zone=zone)
    _, run = starburst.map(
        slow_square, range(40), workers=5, cpu=1, backend="ec2", spot=True,
        instance_types=["c7i.large", "c7i.xlarge"], return_run=True,
    )  # fmt: skip
    launched = _instances()
    assert sum(CATALOGUE[i["InstanceType"]].workers_that_fit(1, 1792) for i in launched) > 5
    spot = _spot_history()
    expected = sum(
        billed_seconds(i["LaunchTime"].timestamp(), _ended(i))
        * (spot[i["InstanceType"]].get(i["Placement"]["AvailabilityZone"],
                                       max(spot[i["InstanceType"]].values()))
           + extras_hour(CATALOGUE[i["InstanceType"]]))
        / 3600
        for i in launched
    )  # fmt: skip
    assert run.cost == pytest.approx(expected)
    share = min((0.36 + extras_hour(CATALOGUE["c7i.xlarge"])) / 4,
                (0.2 + extras_hour(CATALOGUE["c7i.large"])) / 2)  # fmt: skip
    assert run.cost > run.billed_seconds * share / 3600  # what the workers' shares came to
    assert run.utilisation is not None and 0 < run.utilisation < 1
    assert dict(run.instances) == dict(Counter(i["InstanceType"] for i in launched))
    assert f"{len(launched)} instances (" in str(run) and "% used" in str(run)


def test_max_cost_refuses_a_run_whose_instance_costs_more_than_its_worker(aws: Any) -> None:
    """One worker on a c7i.xlarge (room for four): its share of the first minute fits under
    the cap, the instance's first minute does not, and the instance is what AWS bills: the
    run is refused before any instance starts."""
    starburst.setup(say=_quiet, ec2=True)
    aws.prices.set_instance("c7i.xlarge", 60.0)  # $1 a minute, $0.25 a worker's share
    with pytest.raises(starburst.CostCapError, match=r"would cost ~\$1\.00 \(one billed minute"):
        starburst.map(
            slow_square, range(100), workers=1, cpu=1, backend="ec2",
            instance_types=["c7i.xlarge"], max_cost=0.5,
        )  # fmt: skip
    assert aws.ec2.instances() == []


@pytest.mark.usefixtures("no_reaper_outlives_the_test")
def test_warm_instances_are_priced_for_the_wait_and_billed_on_without_a_new_minute(
    aws: Any,
) -> None:
    """A call that keeps its instances warm says what the wait may cost; the next call on
    them pays their time from its start to its end, with no second first minute."""
    starburst.setup(say=_quiet, ec2=True)
    aws.prices.set_instance("c7i.large", 0.5)
    hourly = 0.5 + extras_hour(CATALOGUE["c7i.large"])
    _, first = starburst.map(
        square, range(20), workers=4, cpu=1, backend="ec2", instance_types=TYPES,
        keep_warm="10m", return_run=True,
    )  # fmt: skip
    warm = len(aws.ec2.instances())
    assert warm == 2 and first.warm_cost == pytest.approx(warm * hourly * 600 / 3600)
    assert "kept warm" in str(first)
    _, second = starburst.map(
        square, range(20), workers=4, cpu=1, backend="ec2", instance_types=TYPES,
        return_run=True,
    )  # fmt: skip
    assert len(_instances()) == warm  # none launched: the warm ones served
    each = math.ceil(second.wall_seconds - 1e-9)  # the session's start to its end
    assert second.instance_seconds == warm * each < warm * 60
    assert second.cost == pytest.approx(warm * each * hourly / 3600)


def test_an_instance_two_sessions_share_is_split_by_their_task_time(aws: Any) -> None:
    """A Cluster's worker holds one vCPU of a c7i.xlarge; a map started meanwhile runs on the
    same instance (none launched) and pays its part of the instance's time by vCPU-seconds:
    less than half, since the Cluster's worker held its vCPU all along."""
    starburst.setup(say=_quiet, ec2=True)
    aws.prices.set_instance("c7i.xlarge", 1.0)
    hourly = 1.0 + extras_hour(CATALOGUE["c7i.xlarge"])
    with starburst.Cluster(
        workers=1, cpu=1, backend="ec2", instance_types=["c7i.xlarge"], progress=False
    ) as cluster:
        assert cluster.map(square, range(4)) == [0, 1, 4, 9]
        _, run = starburst.map(
            slow_square, range(20), workers=1, cpu=1, backend="ec2",
            instance_types=["c7i.xlarge"], return_run=True,
        )  # fmt: skip
    assert len(_instances()) == 1 and run.instances == (("c7i.xlarge", 1),)
    whole = math.ceil(run.wall_seconds - 1e-9) * hourly / 3600  # the instance, all its own
    assert 0 < run.cost < whole / 2


def _control(session_id: str) -> dict[str, Any]:
    """The detached session's control record, as stored."""
    bucket = Config.load().aws["bucket"]
    body = boto3.client("s3").get_object(Bucket=bucket, Key=f"sessions/{session_id}/control.json")
    return dict(json.loads(body["Body"].read()))


def test_a_detached_sessions_cost_is_its_instances_hours(
    aws: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One worker on a c7i.xlarge (room for four): what `sessions status` shows is the
    instance's time at its price, from its launch to the supervisor's last read of it (at
    least a minute), not a quarter of it (the worker's share). The supervisor reads the
    instances once more as the run ends (its last read would otherwise be ~30 s old)."""
    monkeypatch.setenv("STARBURST_LEASE", "3")  # a supervision step every second
    starburst.setup(say=_quiet, ec2=True)
    aws.prices.set_instance("c7i.xlarge", 1.0)
    session = starburst.session(workers=1, backend="ec2", instance_types=["c7i.xlarge"], ttl=300)
    try:
        session.map(slow_square, range(60))  # 6 s of work after the instance is up
        assert session.collect(timeout=120) == [[x * x for x in range(60)]]
        ended, deadline = time.time(), time.monotonic() + 10
        while _control(session.id).get("instances", {}).get("read", 0.0) < ended - 1.5:
            assert time.monotonic() < deadline, "the instances were not read as the run ended"
            time.sleep(0.2)
        read = _control(session.id)["instances"]["read"]
        (instance,) = _instances()
        status = read_status(session._store, session.id, now=read)
    finally:
        session.cleanup()
    hourly = 1.0 + extras_hour(CATALOGUE["c7i.xlarge"])
    expected = billed_seconds(instance["LaunchTime"].timestamp(), read) * hourly / 3600
    assert status.cost == pytest.approx(expected)


def test_max_cost_stops_a_detached_session_whose_instances_cost_more_than_its_workers(
    aws: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The first minute of one instance fits under the cap. Its loss brings a replacement
    on a second instance, with a second first minute: what AWS bills passes the cap (the
    workers' shares, a quarter of that, do not), and the supervisor caps the session."""
    monkeypatch.setenv("STARBURST_LEASE", "3")  # a supervision step every second
    starburst.setup(say=_quiet, ec2=True)
    aws.prices.set_instance("c7i.xlarge", 60.0)  # $1 a minute, $0.25 a worker's share
    session = starburst.session(
        workers=1, backend="ec2", instance_types=["c7i.xlarge"], ttl=300, max_cost=1.5
    )
    try:
        session.map(slow_square, range(300))
        deadline = time.monotonic() + 60
        while not aws.ec2.instances(registered=True):
            assert time.monotonic() < deadline, "no instance came up"
            time.sleep(0.2)
        aws.faults.terminate_instance(aws.ec2.instances(registered=True)[0])
        with pytest.raises(starburst.SessionExpiredError, match="max_cost"):
            session.collect(timeout=120)
        assert session.status().state == "capped"
    finally:
        session.cleanup()
