"""backend="ec2" cost on the emulator: instance prices as AWS serves them (Pricing API and
Spot price history), a worker priced as its share of the instance that carries it."""

from __future__ import annotations

from typing import Any

import pytest
from test_ec2 import ec2_quotas_unknown  # noqa: F401 (a fixture)
from test_fargate import _quiet, square

import starburst
from starburst.backends.ec2.instances import CATALOGUE
from starburst.cost.ec2_prices import extras_hour

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
    assert "Spot price history" in run.price_source and "instance share" in run.price_source


def test_the_estimate_prices_ec2_workers_from_the_pricing_api(aws: Any) -> None:
    starburst.setup(say=_quiet, ec2=True)
    aws.prices.set_instance("c7i.large", 0.002)  # the cheapest type that carries the worker
    guess = starburst.estimate(square, range(100), workers=4, cpu=1, backend="ec2", show=False)
    assert guess.hourly == pytest.approx(4 * (0.002 + extras_hour(CATALOGUE["c7i.large"])) / 2)
    assert guess.price_source.startswith("on-demand: AWS Pricing API")


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
