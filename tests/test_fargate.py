"""backend="fargate" end to end on the emulator: real boto3 calls, workers as ECS tasks."""

from __future__ import annotations

import re
import time

import boto3
import pytest

import starburst
from starburst.errors import ConfigurationError

pytestmark = pytest.mark.usefixtures("aws")


def _quiet(_: str) -> None:
    pass


def square(x: int) -> int:
    return x * x


def slow_square(x: int) -> int:
    import time

    time.sleep(0.05)
    return x * x


def _running_tasks() -> list[str]:
    return boto3.client("ecs").list_tasks(cluster="starburst", desiredStatus="RUNNING")["taskArns"]


def test_an_invalid_cpu_memory_pair_fails_before_any_aws_call(aws) -> None:
    with pytest.raises(
        ConfigurationError, match=r"memory=1 GB is not valid with cpu=1.*2 GB, 3 GB"
    ):
        starburst.map(square, range(3), backend="fargate", cpu=1, memory="1GB")
    assert sum(aws.calls.values()) == 0


def test_a_map_runs_on_fargate_tasks_and_leaves_none_running(aws) -> None:
    starburst.setup(say=_quiet)
    results = starburst.map(square, range(1_000), workers=10, backend="fargate", cpu=1)
    assert results == [x * x for x in range(1_000)]
    assert aws.calls["RunTask"] == 1  # ten workers, one call
    assert _running_tasks() == []


def test_spot_interruptions_lose_nothing(aws) -> None:
    starburst.setup(say=_quiet)
    aws.faults.spot_interruption(count=2, after=1.5, grace=0.5)
    results = starburst.map(slow_square, range(300), workers=3, backend="fargate", spot=True)
    assert results == [x * x for x in range(300)]  # every result, once, no error
    stopped = boto3.client("ecs").describe_tasks(cluster="starburst", tasks=aws.runner.task_arns)[
        "tasks"
    ]
    assert sum(task.get("stopCode") == "SpotInterruption" for task in stopped) == 2
    assert _running_tasks() == []


def test_a_small_vcpu_quota_runs_with_the_workers_that_fit(aws, capsys) -> None:
    starburst.setup(say=_quiet)
    aws.quotas.set("L-3032A538", 3)
    aws.faults.enforce_vcpu_quota()
    results = starburst.map(square, range(100), workers=20, backend="fargate", cpu=1)
    assert results == [x * x for x in range(100)]
    assert "but the Fargate vCPU quota allows 3 workers (3 vCPUs): using 3" in (
        capsys.readouterr().err
    )
    assert len(aws.runner.task_arns) == 3


def hungry(x: int) -> int:
    import time

    if x == 0:
        time.sleep(30)  # killed here by the injected out-of-memory fault
    return x


def test_an_item_that_runs_out_of_memory_fails_alone_naming_the_memory_limit(aws) -> None:
    starburst.setup(say=_quiet)
    aws.faults.oom_kill(after=5.0, count=2)  # item 0 is killed twice: retries=0 is spent
    results = starburst.map(
        hungry, [0, 1], workers=1, backend="fargate", cpu=1, memory="2GB", retries=0,
        errors="return",
    )  # fmt: skip
    assert isinstance(results[0], starburst.OutOfMemoryError)
    assert isinstance(results[0], starburst.WorkerLostError)
    message = str(results[0])
    assert re.search(r"item 0 \(input: 0\).*memory=2 GB.*memory='4GB'", message), message
    assert results[1] == 1
    assert _running_tasks() == []


def test_throttling_and_capacity_failures_are_ridden_out(aws) -> None:
    starburst.setup(say=_quiet)
    aws.faults.throttle("RunTask", times=2)
    aws.faults.runtask_failures("capacity", times=2)
    assert starburst.map(square, range(50), workers=2, backend="fargate") == [
        x * x for x in range(50)
    ]
    assert aws.calls["RunTask"] >= 5  # 2 throttled, 2 without capacity, then success


def fail_on_three(x: int) -> int:
    if x == 3:
        raise ValueError("three is bad")
    return x


def test_a_user_exception_carries_the_remote_traceback_and_index(aws) -> None:
    starburst.setup(say=_quiet)
    with pytest.raises(ValueError, match="three is bad") as caught:
        starburst.map(fail_on_three, range(10), workers=2, backend="fargate")
    assert isinstance(caught.value.__cause__, starburst.RemoteTraceback)
    assert "fail_on_three" in str(caught.value.__cause__)
    assert any("item 3 (input: 3)" in note for note in caught.value.__notes__)
    assert _running_tasks() == []


def test_an_exception_in_the_caller_leaves_no_task_running(aws) -> None:
    starburst.setup(say=_quiet)
    with pytest.raises(RuntimeError), starburst.Cluster(workers=2, backend="fargate") as cluster:
        first = cluster.map(square, range(10))
        assert first == [x * x for x in range(10)]
        assert len(_running_tasks()) == 2
        again = cluster.map(square, range(10, 20))  # the same warm tasks
        assert again == [x * x for x in range(10, 20)] and aws.calls["RunTask"] == 1
        raise RuntimeError("the caller gave up")
    assert _running_tasks() == []


def chatty(x: int) -> int:
    print(f"working on item {x}", flush=True)
    return x


def test_a_sessions_worker_logs_can_be_read(aws) -> None:
    from click.testing import CliRunner

    from starburst.cli import main

    starburst.setup(say=_quiet)
    with starburst.Cluster(workers=1, backend="fargate") as cluster:
        assert cluster.map(chatty, range(3)) == [0, 1, 2]
        session_id = cluster.driver.session.session_id
    found = starburst.logs(session_id)
    assert len(found) == 1
    (lines,) = found.values()
    assert any("working on item 2" in line for line in lines)
    shown = CliRunner().invoke(main, ["logs", session_id, "--worker", "0", "--tail", "100"])
    assert shown.exit_code == 0 and "working on item 1" in shown.output
    assert starburst.logs("sb-no-such-session") == {}


def test_a_hundred_workers_take_at_most_ten_run_task_calls(aws) -> None:
    starburst.setup(say=_quiet)
    aws.faults.slow_start(120)  # stay PENDING: nothing needs to run for this count
    cluster = starburst.Cluster(workers=100, backend="fargate", cpu=0.25, progress=False)
    try:
        cluster.start()
        assert len(cluster.driver.workers) == 100
        assert aws.calls["RunTask"] == 10
        deadline = time.monotonic() + 30
        waiting = "100 requested: 100 pulling image"  # what the progress bar shows
        while cluster.driver.worker_summary() != waiting and time.monotonic() < deadline:
            time.sleep(0.1)  # the monitor's next look at the tasks
        assert cluster.driver.worker_summary() == waiting
    finally:
        cluster.close()
    assert _running_tasks() == []


def test_spot_without_capacity_falls_back_to_on_demand_and_says_so(aws, capsys) -> None:
    starburst.setup(say=_quiet)
    aws.faults.runtask_failures("capacity", times=3)
    assert starburst.map(square, range(20), workers=1, backend="fargate", spot=True) == [
        x * x for x in range(20)
    ]
    assert "Fargate Spot has no capacity right now" in capsys.readouterr().err
    (task,) = boto3.client("ecs").describe_tasks(cluster="starburst", tasks=aws.runner.task_arns)[
        "tasks"
    ]
    assert task.get("capacityProviderName") != "FARGATE_SPOT"


def test_the_executor_runs_on_fargate(aws) -> None:
    from concurrent.futures import as_completed

    starburst.setup(say=_quiet)
    with starburst.Executor(workers=2, backend="fargate") as executor:
        futures = {executor.submit(pow, 2, n): n for n in range(8)}
        assert {futures[f]: f.result(timeout=120) for f in as_completed(futures)} == {
            n: 2**n for n in range(8)
        }
        assert list(executor.map(square, range(5))) == [0, 1, 4, 9, 16]
    assert _running_tasks() == []


def test_a_launch_that_never_finds_capacity_fails_within_its_timeout_naming_the_cause(
    aws, monkeypatch
) -> None:
    from starburst.engine import fleet_policy

    monkeypatch.setattr(fleet_policy, "LAUNCH_GIVE_UP_SECONDS", 2.0)
    starburst.setup(say=_quiet)
    aws.faults.limit_capacity(0)
    began = time.monotonic()
    with pytest.raises(starburst.LaunchError) as caught:
        starburst.map(square, range(10), workers=2, backend="fargate", timeout=60)
    assert time.monotonic() - began < 60
    message = str(caught.value)
    assert "no worker could start" in message and "Capacity is unavailable" in message
    assert "fewer or smaller workers" in message and "another region" in message
    assert 2 <= aws.calls["RunTask"] < 10  # asked again, with pauses between
    assert _running_tasks() == []


def test_a_run_task_quota_failure_with_no_worker_is_a_quota_error(aws) -> None:
    starburst.setup(say=_quiet)
    aws.faults.runtask_failures("quota", times=1_000)
    with pytest.raises(starburst.QuotaError, match=r"limit on the number of vCPUs.*fewer"):
        starburst.map(square, range(10), workers=2, backend="fargate", timeout=30)
    assert aws.calls["RunTask"] == 1


def test_results_arrive_while_the_workers_without_capacity_are_still_being_launched(
    aws, monkeypatch, capsys
) -> None:
    from starburst.engine import fleet_policy

    monkeypatch.setattr(fleet_policy, "LAUNCH_NOTICE_SECONDS", 0.5)
    starburst.setup(say=_quiet)
    aws.faults.limit_capacity(2)  # 2 of the 3 workers start; the third never finds room
    results = starburst.map(slow_square, range(100), workers=3, backend="fargate", timeout=90)
    assert results == [x * x for x in range(100)]
    err = capsys.readouterr().err
    assert err.count("could not start") == 1, err  # said once, on one line
    assert "1 of 3 workers could not start" in err and "2 running" in err
    assert "keeps trying" in err
    assert aws.calls["RunTask"] >= 2  # launching went on while the two worked
    assert _running_tasks() == []
