"""Cost and quotas on the emulator: prices and quotas as AWS serves them, real task times."""

from __future__ import annotations

import boto3
import pytest
from click.testing import CliRunner
from test_fargate import _quiet, _running_tasks, square

import starburst
from starburst.cli import main
from starburst.config import Config

pytestmark = pytest.mark.usefixtures("aws")

ON_DEMAND, SPOT = "L-3032A538", "L-36FBB829"


def slow_square(x: int) -> int:
    import time

    time.sleep(0.2)
    return x * x


def _dollar_a_minute(aws, spot: bool = False) -> None:
    """Workers of 1 vCPU cost $1 a minute: caps of a few dollars are reached at once."""
    aws.prices.set("us-east-1", vcpu=60.0, gb=0.0, spot=spot)


def test_spot_workers_fit_the_spot_quota_and_say_so(aws, capsys) -> None:
    starburst.setup(say=_quiet)
    aws.quotas.set(SPOT, 2)
    aws.quotas.set(ON_DEMAND, 1)  # must not matter: spot has its own quota
    aws.faults.enforce_vcpu_quota()
    results = starburst.map(square, range(40), workers=5, cpu=1, backend="fargate", spot=True)
    assert results == [x * x for x in range(40)]
    err = capsys.readouterr().err
    assert "Requested 5 workers (5 vCPUs) but the Fargate vCPU quota allows 2 workers" in err
    assert f"Fargate Spot quota {SPOT}: 2 vCPUs, 0 in use" in err
    tasks = boto3.client("ecs").describe_tasks(cluster="starburst", tasks=aws.runner.task_arns)
    assert [t["capacityProviderName"] for t in tasks["tasks"]] == ["FARGATE_SPOT"] * 2


def test_a_quota_in_use_elsewhere_leaves_room_for_fewer(aws, capsys) -> None:
    starburst.setup(say=_quiet)
    aws.quotas.set(ON_DEMAND, 6)
    with starburst.Cluster(workers=2, cpu=2, backend="fargate", progress=False) as first:
        first.start()  # 4 vCPUs in use
        results = starburst.map(square, range(30), workers=4, cpu=1, backend="fargate")
    assert results == [x * x for x in range(30)]
    notice = "allows 2 workers (2 vCPUs): using 2. (Fargate On-Demand quota L-3032A538: 6 vCPUs"
    assert f"{notice}, 4 in use" in capsys.readouterr().err


def test_an_estimate_above_the_cap_is_refused_before_any_task_starts(aws) -> None:
    starburst.setup(say=_quiet)
    _dollar_a_minute(aws)
    with pytest.raises(
        starburst.CostCapError, match=r"refused before launch.*~\$5\.00 \(one billed minute"
    ):
        starburst.map(square, range(100), workers=5, backend="fargate", max_cost=4)
    assert aws.calls["RunTask"] == 0
    with pytest.raises(starburst.CostCapError, match=r"max_cost=\$2\.00"):
        starburst.Cluster(workers=3, backend="fargate", max_cost=2).start()
    assert aws.calls["RunTask"] == 0
    bucket = Config.load().aws["bucket"]
    left = boto3.client("s3").list_objects_v2(Bucket=bucket, Prefix="sessions/")
    assert left.get("KeyCount") == 0, "a refused call left records (its image.json) behind"


def test_a_run_estimated_from_measured_items_is_checked_before_launch(aws, capsys) -> None:
    starburst.setup(say=_quiet)
    _dollar_a_minute(aws)
    starburst.estimate(slow_square, range(1_000), workers=2, sample=2, show=False)
    # 1,000 items of ~0.2 s on 2 workers: ~100 s of work, ~150 s with start-up: ~$5
    with pytest.raises(starburst.CostCapError, match=r"would cost ~\$5\.\d\d \(~15\d s"):
        starburst.map(slow_square, range(1_000), workers=2, backend="fargate", max_cost=4)
    assert aws.calls["RunTask"] == 0
    assert "Estimated cost of this run: ~$5." in capsys.readouterr().err


def quick_then_slow(x: int) -> int:
    import time

    time.sleep(0 if x < 10 else 0.5)  # the first chunks land well before the interruption
    return x * x


def test_the_cost_cap_stops_a_long_run_and_keeps_what_finished(aws, capsys) -> None:
    starburst.setup(say=_quiet)
    _dollar_a_minute(aws, spot=True)
    # The only worker is interrupted: its replacement's first minute would pass the cap.
    aws.faults.spot_interruption(after=4.0, grace=0.5)
    capped = {"backend": "fargate", "workers": 1, "spot": True, "chunk_size": 2}
    with pytest.raises(starburst.CostCapError) as caught:
        starburst.map(quick_then_slow, range(200), max_cost=1.5, cost_alert=0.5, **capped)
    message = str(caught.value)
    assert "max_cost=$1.50" in message and "exc.starburst_results.pending" in message
    kept = caught.value.starburst_results
    assert kept.done and all(kept.done[i] == i * i for i in kept.done)
    assert kept.pending and len(kept.done) + len(kept.pending) == 200
    assert aws.calls["RunTask"] == 1  # no replacement was launched
    assert _running_tasks() == []
    err = capsys.readouterr().err
    assert err.count("cost alert") == 1
    assert "actual cost ~$1.00" in err


def test_the_cap_stops_workers_whose_real_price_passes_it(aws) -> None:
    starburst.setup(say=_quiet)
    aws.prices.set("us-east-1", vcpu=30.0, gb=0.0, spot=True)  # $0.50 a minute
    aws.prices.set("us-east-1", vcpu=120.0, gb=0.0)  # on-demand: $2 a minute
    aws.faults.runtask_failures("capacity", times=3)  # no spot: on-demand it is
    with pytest.raises(starburst.CostCapError, match=r"have cost ~\$2\.00 of max_cost=\$1\.00"):
        starburst.map(slow_square, range(500), workers=1, backend="fargate", spot=True, max_cost=1)
    assert _running_tasks() == []


def test_actual_cost_follows_the_billing_rules_for_the_real_task_times(aws, capsys) -> None:
    starburst.setup(say=_quiet)
    results, run = starburst.map(square, range(50), workers=3, backend="fargate", return_run=True)
    assert results == [x * x for x in range(50)]
    ecs = boto3.client("ecs")
    tasks = ecs.describe_tasks(cluster="starburst", tasks=aws.runner.task_arns)["tasks"]
    assert len(tasks) == 3 and all("pullStartedAt" in t for t in tasks)
    hourly = 0.04048 * 1 + 0.004445 * 2  # the emulator's us-east-1 prices, 1 vCPU, 2 GB
    assert run.billed_seconds == 3 * 60  # short tasks: one billed minute each
    assert run.cost == pytest.approx(3 * hourly / 60)
    assert run.workers == 3 and run.wall_seconds > 0
    assert run.price_source == "AWS Pricing API"
    err = capsys.readouterr().err
    assert "Estimated cost: ~$0.1481/hour for 3 workers (1 vCPU, 2 GB, on-demand)" in err
    assert f"actual cost ~${3 * hourly / 60:.4f}" in err


def test_a_pricing_failure_falls_back_to_the_table_and_says_so(aws, capsys) -> None:
    starburst.setup(say=_quiet)
    aws.prices.fail()
    _, run = starburst.map(square, range(5), workers=1, backend="fargate", return_run=True)
    assert run.price_source.startswith("built-in table")
    assert "Pricing API failed" in run.price_source
    assert "Prices: built-in table" in capsys.readouterr().err
    aws.prices.restore()
    _, run = starburst.map(square, range(5), workers=1, backend="fargate", return_run=True)
    assert run.price_source == "AWS Pricing API"
    fetched = aws.calls["GetProducts"]
    _, run = starburst.map(square, range(5), workers=1, backend="fargate", return_run=True)
    assert run.price_source.startswith("AWS Pricing API, cached")
    assert aws.calls["GetProducts"] == fetched  # a day's cache: not fetched again


def test_the_progress_display_shows_the_cost_so_far(aws) -> None:
    starburst.setup(say=_quiet)
    with starburst.Cluster(workers=1, backend="fargate", progress=False) as cluster:
        assert cluster.map(square, range(4)) == [0, 1, 4, 9]
        assert cluster._workers_and_cost().endswith(" so far")
        assert cluster.report.cost > 0
    assert cluster.report.cost == pytest.approx((0.04048 + 0.004445 * 2) / 60)


def test_quotas_can_be_read_requested_and_followed(aws) -> None:
    starburst.setup(say=_quiet)
    aws.quotas.set(ON_DEMAND, 12)
    with starburst.Cluster(workers=2, cpu=2, backend="fargate", progress=False) as cluster:
        cluster.start()
        on_demand, spot = starburst.quota()
        assert (on_demand.code, on_demand.limit, on_demand.used) == (ON_DEMAND, 12, 4)
        assert on_demand.workers_that_fit(4) == 2 and spot.code == SPOT and spot.used == 0
        shown = CliRunner().invoke(main, ["quota"])
    assert shown.exit_code == 0, shown.output
    assert "Fargate On-Demand (L-3032A538): limit 12 vCPUs, 4 vCPUs in use" in shown.output
    assert "2 x cpu=4" in shown.output

    asked = CliRunner().invoke(main, ["quota", "request", "64"])
    assert asked.exit_code == 0, asked.output
    (request,) = aws.quotas.requests
    assert request["QuotaCode"] == ON_DEMAND and request["DesiredValue"] == 64
    assert request["Id"] in asked.output and "PENDING" in asked.output
    aws.quotas.resolve(request["Id"], "APPROVED")
    assert starburst.quota_increase_status(request["Id"]).status == "APPROVED"
    checked = CliRunner().invoke(main, ["quota", "check", request["Id"]])
    assert checked.exit_code == 0 and "APPROVED" in checked.output
    assert starburst.request_quota_increase(5000, spot=True).code == SPOT
    refused = CliRunner().invoke(main, ["quota", "request", "10"])  # below the current 64
    assert refused.exit_code != 0 and "greater than the current quota" in refused.output
    with pytest.raises(starburst.ConfigurationError, match="vcpus=-3"):
        starburst.request_quota_increase(-3)
