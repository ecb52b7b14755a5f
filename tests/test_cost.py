"""Cost without AWS: billing rules with fixed times, the meter, limits, prices' cache and
fallback, ``return_run`` and ``estimate`` on the local backend."""

from __future__ import annotations

import json
import re

import pytest

import starburst
from starburst.backends.base import InstanceUse, WorkerInfo
from starburst.cost.billing import Rate, billed_seconds, task_cost
from starburst.cost.guard import CostLimits
from starburst.cost.instance_bill import instance_bill
from starburst.cost.meter import CostMeter
from starburst.cost.model import cache_dir
from starburst.cost.prices import FALLBACK, PriceBook
from starburst.engine.item_times import ItemTimes, function_key
from starburst.errors import ConfigurationError

T0 = 1_700_000_000.0  # a fixed epoch second


def test_billing_is_per_second_with_a_one_minute_minimum() -> None:
    assert billed_seconds(T0, T0 + 10) == 60  # the minimum
    assert billed_seconds(T0, T0 + 60) == 60
    assert billed_seconds(T0, T0 + 61.2) == 62  # whole seconds, rounded up
    assert billed_seconds(T0, T0 + 3600) == 3600
    hourly = Rate(0.04048, 0.004445).per_worker_hour(1, 2)  # 1 vCPU, 2 GB
    assert hourly == pytest.approx(0.04937)
    assert task_cost(T0, T0 + 5, hourly) == pytest.approx(0.04937 / 60)
    assert task_cost(T0, T0 + 1800.5, hourly) == pytest.approx(0.04937 * 1801 / 3600)


def _info(worker_id: str, state: str, spot: int = 0, **times: float) -> WorkerInfo:
    return WorkerInfo(worker_id, state, spot=bool(spot), **times)  # type: ignore[arg-type]


def test_the_meter_bills_from_image_pull_to_stop_for_known_task_times() -> None:
    meter = CostMeter({False: 3.6, True: 1.8})  # dollars per worker-hour: 0.001 $/s on-demand
    meter.launched(["a", "b", "c", "d"], spot=False, at=T0)
    meter.observe(
        [
            # pulled at +2, ran until +302: 300 s billed
            _info("a", "stopped", billed_from=T0 + 2, started_at=T0 + 20, stopped_at=T0 + 302),
            # a spot task that ran 30 s: the minute, at the spot rate
            _info(
                "b", "stopped", billed_from=T0 + 1, started_at=T0 + 9, stopped_at=T0 + 31, spot=1
            ),
            # stopped before its image pull began: nothing billed
            _info("c", "stopped", stopped_at=T0 + 5),
            # still running, pulled at +3
            _info("d", "running", billed_from=T0 + 3, started_at=T0 + 15),
        ]
    )
    now = T0 + 603
    assert meter.billed_seconds(now) == 300 + 60 + 0 + 600
    assert meter.cost(now) == pytest.approx(300 * 0.001 + 60 * 0.0005 + 600 * 0.001)
    assert sorted(meter.startup_seconds()) == [9, 15, 20]


def test_a_worker_not_yet_seen_counts_from_its_launch() -> None:
    meter = CostMeter({False: 3.6, True: 1.8})
    meter.launched(["a"], spot=False, at=T0)
    assert meter.cost(T0 + 1) == pytest.approx(0.06)  # its first minute is owed at once
    assert meter.cost(T0 + 90) == pytest.approx(0.09)


def _instance(name: str, vcpus: float, launched: float, terminated: float | None, **kw: float):
    return InstanceUse(name, "c7i.xlarge", vcpus, 3.6, launched, terminated, **kw)  # 0.001 $/s


def test_instances_are_billed_from_launch_to_termination_or_now_at_their_part() -> None:
    bill = instance_bill(
        [
            # launched for the session, ran 300 s, half used: 4 vCPUs x 300 s, 600 used
            _instance("a", 4, T0 + 5, T0 + 305, task_vcpu_seconds=600),
            # launched, never used, gone after 20 s: the minute
            _instance("b", 4, T0 + 10, T0 + 30),
            # warm before the session: billed from its start, no new minute; still up
            _instance("c", 4, T0 - 500, None, task_vcpu_seconds=40),
            # shared with another session, a quarter of its task time ours
            _instance("d", 4, T0 + 1, T0 + 401, share=0.25, task_vcpu_seconds=100),
        ],
        since=T0,
        now=T0 + 500.5,
    )
    assert bill.billed_seconds == 300 + 60 + 501 + 400 * 0.25
    assert bill.cost == pytest.approx(bill.billed_seconds * 0.001)
    assert bill.instance_vcpu_seconds == pytest.approx(4 * (300 + 20 + 500.5 + 400 * 0.25))
    assert bill.utilisation == pytest.approx(740 / bill.instance_vcpu_seconds)
    assert bill.types == (("c7i.xlarge", 4),)
    assert bill.up_hourly == 3.6  # only "c" is still up
    # EC2's launch times are whole seconds: one "before" the session by a fraction of a
    # second was launched for it, and owes its minute
    fresh = _instance("e", 4, T0 - 0.5, T0 + 10)
    assert instance_bill([fresh], since=T0, now=T0 + 20).billed_seconds == 60
    assert instance_bill([], since=T0, now=T0 + 1).utilisation is None


def test_limits_come_from_arguments_or_settings_and_are_checked() -> None:
    assert CostLimits.build() == CostLimits(None, None)
    assert CostLimits.build(10, 2.5) == CostLimits(10.0, 2.5)
    with pytest.raises(ConfigurationError, match=r"max_cost=-1 must be a positive number"):
        CostLimits.build(max_cost=-1)
    with pytest.raises(ConfigurationError, match=r"cost_alert='5' must be a positive number"):
        starburst.map(abs, [1], cost_alert="5")
    from starburst.config import Config

    config = Config.load()
    config.set("max_cost", "10")
    config.set("cost_alert", "4")
    config.save()
    assert CostLimits.build() == CostLimits(10.0, 4.0)
    assert CostLimits.build(max_cost=20) == CostLimits(20.0, 4.0)  # the argument wins


def test_the_fallback_table_says_it_is_one() -> None:
    book = PriceBook.fallback("eu-west-1", "the Pricing API failed: boom")
    assert book.rate() == FALLBACK["x86_64"]
    assert book.rate("arm64", spot=True) == FALLBACK["arm64"]  # spot: at most on-demand
    assert "built-in table" in book.source and "boom" in book.source


def test_the_cache_lives_in_the_configured_folder(private_config, monkeypatch) -> None:
    assert cache_dir() == private_config / "cache"
    monkeypatch.setenv("STARBURST_CACHE_DIR", str(private_config / "elsewhere"))
    assert cache_dir() == private_config / "elsewhere"


def test_a_local_map_returns_its_run_report() -> None:
    results, run = starburst.map(abs, [-1, -2, 3], workers=2, return_run=True)
    assert results == [1, 2, 3]
    assert isinstance(run, starburst.RunReport)
    assert run.backend == "local" and run.cost is None and run.workers == 2
    assert run.wall_seconds > 0
    assert "no cost" in str(run)
    assert starburst.map(abs, [], return_run=True) == ([], None)
    with pytest.raises(ConfigurationError, match="return_run"):
        starburst.imap(abs, [1], return_run=True)


def slow_identity(x: int) -> int:
    import time

    time.sleep(0.002)
    return x


def test_estimate_times_a_sample_and_says_what_it_assumed(aws, capsys) -> None:
    calls: list[int] = []

    def counted(x: int) -> int:
        calls.append(x)
        return slow_identity(x)

    found = starburst.estimate(counted, range(1_000), workers=4, sample=5, max_cost=0.0001)
    assert calls == [0, 1, 2, 3, 4]  # only the sample ran
    assert found.n_items == 1_000 and found.sampled == 5 and found.workers == 4
    assert found.seconds_per_item >= 0.002
    assert found.startup_seconds == 45 and "default" in found.startup_source
    assert found.cost > 0.0001  # one billed minute of four workers at least
    # 1,000 items of ~2 ms: start-up dominates, local wins
    assert found.local_is_better and found.verdict.startswith("Stay local")
    assert "Over max_cost" in found.verdict
    shown = capsys.readouterr().out
    assert "assumptions" in shown and "one-minute minimum" in shown
    assert "prices: AWS Pricing API" in shown


def test_estimate_learns_start_up_from_past_workers(aws) -> None:
    from starburst.cost.model import record_startups

    record_startups("fargate", [30.0, 40.0, 50.0])
    found = starburst.estimate(slow_identity, range(100_000), workers=50, sample=3, show=False)
    assert found.startup_seconds == 40 and "median of 3" in found.startup_source
    assert not found.local_is_better and found.verdict.startswith("Burst")
    assert json.loads((cache_dir() / "startup-fargate.json").read_text()) == [30, 40, 50]


def test_estimate_keeps_its_time_per_item_for_later_processes() -> None:
    found = starburst.estimate(slow_identity, range(10), backend="local", sample=2, show=False)
    kept = json.loads((cache_dir() / "item-seconds.json").read_text())
    assert kept == {f"{slow_identity.__module__}.slow_identity": found.seconds_per_item}
    assert ItemTimes().measured(slow_identity) == found.seconds_per_item  # a new process's view
    assert ItemTimes().seen(function_key(slow_identity)) is None  # what it saw is its own
    starburst.estimate(lambda x: x, [1], backend="local", show=False)
    assert json.loads((cache_dir() / "item-seconds.json").read_text()) == kept  # no stable name


def test_estimate_rejects_bad_input() -> None:
    with pytest.raises(ConfigurationError, match="sample=0"):
        starburst.estimate(abs, [1], sample=0, show=False)
    with pytest.raises(ConfigurationError, match="items is empty"):
        starburst.estimate(abs, [], show=False)


def test_the_guard_stops_at_the_cap_and_alerts_once(tmp_path) -> None:
    import time

    from starburst.backends.local.fleet import LocalFleet
    from starburst.cost.guard import CostGuard
    from starburst.options import WorkerSpec

    said: list[str] = []
    spec = WorkerSpec.build(backend="local", workers=2, cpu=1, memory=None)
    guard = CostGuard("sb-test", spec, LocalFleet(tmp_path), CostLimits(2.5, 1.0), said.append)
    guard.meter = CostMeter({False: 60.0, True: 30.0})  # $1 a minute per worker
    started = time.time() - 30
    guard.meter.launched(["a", "b"], spot=False, at=started)
    assert guard.observe([]) is None  # $2 so far: past the alert, under the cap
    assert guard.affordable(3) == 0  # a third worker's minute would pass $2.50
    assert said == ["cost alert: this session has cost ~$2.00, past cost_alert=$1.00."]
    guard.meter.observe([_info("a", "running", billed_from=started - 60)])  # ran 90 s
    capped = guard.observe([])
    assert isinstance(capped, starburst.CostCapError)
    assert re.search(r"have cost ~\$2\.5\d of max_cost=\$2\.50", str(capped))
    assert len(said) == 1  # the alert is said once


def test_a_run_too_short_for_any_look_still_says_its_cost_alert(tmp_path) -> None:
    from starburst.backends.local.fleet import LocalFleet
    from starburst.cost.guard import CostGuard
    from starburst.options import WorkerSpec

    said: list[str] = []
    spec = WorkerSpec.build(backend="local", workers=1, cpu=1, memory=None)
    guard = CostGuard("sb-test", spec, LocalFleet(tmp_path), CostLimits(None, 0.5), said.append)
    guard.meter = CostMeter({False: 60.0, True: 30.0})  # $1 a minute per worker
    guard.meter.launched(["a"], spot=False)
    guard.finish(list)  # ended before any look at the workers: its first minute is billed
    assert said[0] == "cost alert: this session has cost ~$1.00, past cost_alert=$0.5000."
    assert said[1].startswith("session sb-test: ")
