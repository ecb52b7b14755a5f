"""The fleet policy: the decisions that keep a session's workers alive, as a user relies on
them, over real worker infos, claims in a real local store, ledgers and times."""

from __future__ import annotations

from pathlib import Path

import pytest

from starburst.backends.base import LaunchShortfall, WorkerInfo
from starburst.engine import claims, fleet_policy
from starburst.engine.claims import OUT_OF_MEMORY, Claim
from starburst.engine.fleet_policy import (
    MAX_LAUNCHES_PER_WORKER,
    Judgement,
    LaunchBudget,
    ShowUp,
    attempt_cause,
    cap_reached,
    chunks_back,
    hung_workers,
    judge_shortfall,
    judge_stop,
    launch_count,
    stall_reason,
    stop_times,
    stopped_workers,
    workers_within_cap,
)
from starburst.engine.keys import RunKeys
from starburst.store import LocalStore

KEYS = RunKeys("sessions/s/data/r00000/")
NO_CAP = workers_within_cap(None, None, 0.0)


@pytest.fixture
def local(tmp_path: Path) -> LocalStore:
    return LocalStore(tmp_path / "store")


def _stop(store: LocalStore, info: WorkerInfo, cause: str | None) -> dict[str, Claim]:
    """End the stopped worker's lease on chunk 0 as a monitor or supervisor does."""
    ended = claims.end_lease(store, KEYS, 0, {info.worker_id: cause})
    return {"0": ended} if ended else {}


def test_a_spot_interrupted_worker_is_replaced_without_using_an_attempt(local) -> None:
    claims.claim_fresh(local, KEYS, 0, "w1.0", lease=30)
    info = WorkerInfo("w1", "stopped", reason="spot capacity reclaimed", fault="interrupted")
    assert stopped_workers(["w1", "w2"], {"w1": info}) == [info]
    cause = attempt_cause(info, 2048, lambda worker: "its log")
    assert cause is None
    back = chunks_back({"r00000": _stop(local, info, cause)})
    assert back.requeued == {"r00000": {"0": "w1"}} and back.pinned == set()
    assert judge_stop(info, cause, hung=False, blamed=False) is Judgement.EXCUSED
    taken = claims.take_over(local, KEYS, 0, "w2.0", lease=30, max_attempts=1)
    assert taken is not None and taken.attempt == 0 and taken.lost is None
    budget = LaunchBudget.from_ledger(1, {"w1": {"launched": 0.0, "stopped": 5.0}})
    assert launch_count(missing=1, affordable=NO_CAP, room=budget.room) == 1  # replaced


def test_a_crashed_workers_chunk_goes_back_and_the_launch_budget_limits_replacements(
    local,
) -> None:
    claims.claim_fresh(local, KEYS, 0, "w1.0", lease=30)
    info = WorkerInfo("w1", "stopped", exit_code=-9, reason="killed")
    cause = attempt_cause(info, None, lambda worker: "line 1\nSegmentation fault\n")
    assert cause == "worker w1: killed by SIGKILL, its log ending 'line 1 | Segmentation fault'"
    back = chunks_back({"r00000": _stop(local, info, cause)})
    assert back.any and back.requeued == {"r00000": {"0": "w1"}}
    assert Claim.decode(local.get(KEYS.claim(0))).cause == cause  # the next taker reads why
    assert judge_stop(info, cause, hung=False, blamed=False) is Judgement.FRUITLESS
    # Two workers asked for: each launch that did not die of an item uses the budget up.
    ledger = {f"w{n}": {"launched": 0.0} for n in range(2 * MAX_LAUNCHES_PER_WORKER - 1)}
    budget = LaunchBudget.from_ledger(2, ledger)
    assert budget.room == 1 and launch_count(2, NO_CAP, budget.room) == 1
    assert not budget.spent(live=1)
    ledger["w99"] = {"launched": 0.0}
    spent = LaunchBudget.from_ledger(2, ledger)
    assert launch_count(2, NO_CAP, spent.room) <= 0 and spent.spent(live=1)
    assert stall_reason([info], 1, spent, "s1") == (
        f"{2 * MAX_LAUNCHES_PER_WORKER} workers were launched and they keep stopping; "
        "see `starburst logs s1`"
    )
    ledger["w99"]["item_death"] = True  # an item's death: its attempts bound those
    assert LaunchBudget.from_ledger(2, ledger).room == 1


def test_out_of_memory_is_classified_and_blamed_on_the_item(local) -> None:
    claims.claim_fresh(local, KEYS, 0, "w1.0", lease=30)
    isolated = Claim("w1.0", attempt=0, expires=1e12, at=3, isolate=True)
    local.put(KEYS.claim(0), isolated.encode())  # w1 ran the chunk from item 3 in isolation
    info = WorkerInfo("w1", "stopped", exit_code=137, fault="out_of_memory")
    cause = attempt_cause(info, 4096)
    assert cause is not None and OUT_OF_MEMORY in cause
    assert "memory=4 GB" in cause and "memory='8GB'" in cause
    back = chunks_back({"r00000": _stop(local, info, cause)})
    assert back.pinned == {"w1"}
    assert judge_stop(info, cause, hung=False, blamed="w1" in back.pinned) is Judgement.BLAMED
    taken = claims.take_over(local, KEYS, 0, "w2.0", lease=30, max_attempts=1)
    assert taken is not None and taken.out_of_memory and OUT_OF_MEMORY in (taken.lost or "")


def test_a_worker_that_never_shows_up_within_the_show_up_time_counts_as_lost() -> None:
    show_up = ShowUp(seconds=180.0, launched={"w1": 1000.0, "w2": 1100.0}, now=1200.0)
    running = WorkerInfo("w3", "running")
    lost = stopped_workers(["w1", "w2", "w3"], {"w3": running}, show_up)
    assert [info.worker_id for info in lost] == ["w1"]  # w2 may still be on its way
    assert attempt_cause(lost[0], None) == "worker w1: vanished"
    assert stopped_workers(["w1"], {}) == []  # a backend that describes by id: no show-up


def test_a_worker_silent_for_over_a_lease_is_hung_but_one_not_yet_beating_is_starting() -> None:
    beats = {"w1": (100.0, False), "w2": (190.0, False), "w3": (100.0, True)}
    hung = hung_workers(["w1", "w2", "w3", "w4"], beats, now=200.0, lease=30.0)
    assert list(hung) == ["w1"] and "no heartbeat for 100 s" in hung["w1"]
    info = WorkerInfo("w1", "stopped", reason=hung["w1"])
    cause = attempt_cause(info, None, hung=hung["w1"])
    assert cause == hung["w1"] and judge_stop(info, cause, hung=True, blamed=False) is (
        Judgement.EXCUSED  # a hang is not the start's fault
    )


def test_the_session_stalls_when_no_worker_can_be_started() -> None:
    info = WorkerInfo("w1", "stopped", reason="CannotPullContainerError", fault="failed_to_start")
    cause = attempt_cause(info, None)
    assert judge_stop(info, cause, hung=False, blamed=True) is Judgement.COULD_NOT_START
    budget = LaunchBudget(workers=2, launches=1)
    assert stall_reason([info], 0, budget, "s1") == (
        "worker w1 could not start: CannotPullContainerError"
    )
    assert stall_reason([WorkerInfo("w2", "stopped", exit_code=1)], 1, budget, "s1") is None


def test_launches_without_capacity_back_off_then_give_up_and_a_quota_works_with_fewer(
    monkeypatch,
) -> None:
    monkeypatch.setattr(fleet_policy, "LAUNCH_GIVE_UP_SECONDS", 10.0)
    capacity = LaunchShortfall("Capacity is unavailable", "capacity")
    first = judge_shortfall(capacity, live=0, trouble=None, now=0.0)
    assert not first.give_up and first.trouble is not None and first.trouble.next_try == 1.0
    again = judge_shortfall(capacity, live=0, trouble=first.trouble, now=1.0)
    assert not again.give_up and again.trouble is first.trouble and first.trouble.next_try == 3.0
    assert judge_shortfall(capacity, live=0, trouble=first.trouble, now=11.0).give_up
    assert not judge_shortfall(capacity, live=1, trouble=first.trouble, now=11.0).give_up
    refused = LaunchShortfall("no such image", "refused")
    assert judge_shortfall(refused, live=0, trouble=None, now=0.0).give_up  # at once
    quota = LaunchShortfall("vCPU limit", "quota")
    assert judge_shortfall(quota, live=2, trouble=None, now=0.0) == fleet_policy.ShortfallVerdict(
        quota=True, give_up=False
    )
    assert judge_shortfall(quota, live=0, trouble=None, now=0.0).give_up


def test_the_cost_cap_stops_the_fleet() -> None:
    hourly = {"on-demand": 0.6, "spot": 0.2}  # a worker's first minute: $0.01 on demand
    assert workers_within_cap(1.0, hourly, spent=0.955) == 4
    assert launch_count(missing=10, affordable=workers_within_cap(1.0, hourly, 0.955)) == 4
    assert launch_count(missing=10, affordable=workers_within_cap(1.0, hourly, 0.995)) == 0
    assert not cap_reached(0.99, 1.0) and cap_reached(1.0, 1.0) and not cap_reached(9.0, None)


def test_a_worker_stopped_when_it_said_it_exited_not_when_the_backend_noticed() -> None:
    """The status view counts a session's cost to a worker's exit heartbeat: the ledger
    records the same time, so the cost does not move once the workers have stopped."""
    infos = {
        "w1": WorkerInfo("w1", "stopped", stopped_at=1005.0),  # noticed 5 s after its exit
        "w2": WorkerInfo("w2", "stopped", stopped_at=1003.0),  # killed: no exit written
        "w3": WorkerInfo("w3", "stopped"),  # the backend does not say
    }
    beats = {"w1": (1000.0, True), "w2": (990.0, False), "w3": (995.0, False)}
    times = stop_times(["w1", "w2", "w3", "w4"], infos, beats, now=1010.0)
    assert times == {"w1": 1000.0, "w2": 1003.0, "w3": 995.0, "w4": 1010.0}
