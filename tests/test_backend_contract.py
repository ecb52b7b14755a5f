"""The backend contract: every backend passes these cases unchanged (``local``, ``fargate``
and ``ec2`` on the emulator, and ``tiny``, a backend written for this test in
``tiny_backend.py``).

A backend that passes works with every front end. Where a case cannot apply to a backend,
the skip names the trait that excuses it (e.g. a backend without spot capacity is never
interrupted by its provider).
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, get_args

import pytest
import tiny_backend

import starburst
from starburst.backends import Backend, LaunchRequest, WorkerFault, WorkerInfo, WorkerState
from starburst.backends.registry import backend_named
from starburst.config import Config
from starburst.cost.billing import task_cost
from starburst.cost.meter import CostMeter
from starburst.engine.claims import Claim
from starburst.engine.driver import Driver
from starburst.options import WorkerSpec

BACKENDS = ["local", "fargate", "ec2", tiny_backend.TinyBackend.name]
#: The backends that run on the emulated AWS.
ON_AWS = ("fargate", "ec2")
#: How long a worker may take to reach a state (a Fargate task on the emulator: a few s).
WAIT_SECONDS = 30.0


@dataclass
class Subject:
    """The backend under test, and the emulated AWS it runs on (Fargate and EC2 only)."""

    backend: Backend
    aws: Any = None

    def spec(self, *, spot: bool = False, memory: str | None = None) -> WorkerSpec:
        return WorkerSpec.build(backend=self.backend, workers=1, cpu=1, memory=memory, spot=spot)

    def interrupt(self, driver: Driver, worker: str) -> None:
        """The provider takes a running spot worker away: Fargate Spot stops the task; on
        EC2, the instance under it is terminated."""
        if self.backend.name == "fargate":
            self.aws.faults.spot_interruption(task_arn=worker, after=0.0, grace=0.5)
            return
        cluster = Config.load().aws["ec2"]["cluster"]
        arns = self.aws.client("ecs").list_tasks(cluster=cluster)["taskArns"]
        (arn,) = [a for a in arns if a.endswith(worker)]
        self.aws.faults.terminate_instance(self.aws.ec2.host_of(arn))


@pytest.fixture(params=BACKENDS)
def subject(
    request: pytest.FixtureRequest, private_config: Any, monkeypatch: pytest.MonkeyPatch
) -> Subject:
    """Each backend in turn; Fargate and EC2 on one emulated AWS for the whole module, set
    up once."""
    if request.param not in ON_AWS:
        return Subject(backend_named(request.param))
    aws = request.getfixturevalue("module_aws")
    monkeypatch.setenv("STARBURST_CONFIG_DIR", str(aws.config_dir))
    if request.param == "ec2" and not Config.load().aws.get("ec2"):
        # (moto answers AWS's default quotas with a 500: "unknown", as AWS would say it)
        aws.faults.error("GetAWSDefaultServiceQuota", "NoSuchResourceException", times=None)
        starburst.setup(say=lambda line: None, ec2=True)
        aws.faults.clear_errors("GetAWSDefaultServiceQuota")
    elif not Config.load().aws.get("bucket"):
        starburst.setup(say=lambda line: None)
    return Subject(backend_named(request.param), aws)


@contextlib.contextmanager
def idle_session(subject: Subject, spec: WorkerSpec | None = None) -> Iterator[Driver]:
    """A real session with no run and no worker yet: the test launches workers itself.
    Every worker the backend finds is stopped at the end, then the session is removed."""
    driver = Driver.new(spec or subject.spec())
    driver.start(launch=False)
    try:
        yield driver
    finally:
        found = driver.fleet.find(driver.keys.session_id)
        driver.fleet.stop([info.worker_id for info in found if info.state != "stopped"], False)
        driver.close()


def launch(driver: Driver, stripes: list[int]) -> list[str]:
    request = LaunchRequest(driver.store.url, driver.keys.session_id, driver.spec)
    return driver.fleet.launch(request, stripes)


def wait_for(driver: Driver, worker_id: str, check: Callable[[WorkerInfo], bool]) -> WorkerInfo:
    """The worker's info once ``check`` holds for it (fails after ``WAIT_SECONDS``)."""
    deadline = time.monotonic() + WAIT_SECONDS
    while True:
        (info,) = driver.fleet.describe([worker_id])
        if check(info):
            return info
        assert time.monotonic() < deadline, f"worker {worker_id} never got there: {info}"
        time.sleep(0.1)


def running(info: WorkerInfo) -> bool:
    return info.state == "running"


def stopped(info: WorkerInfo) -> bool:
    return info.state == "stopped"


# Launching, describing, finding ------------------------------------------------------------


def test_launch_returns_one_new_id_per_stripe_in_order(subject: Subject) -> None:
    with idle_session(subject) as driver:
        first = launch(driver, [0, 1])
        second = launch(driver, [2])
        assert len(first) == 2 and len(second) == 1 and driver.fleet.shortfall is None
        assert len(set(first + second)) == 3, "worker ids must be unique in a session"
        infos = driver.fleet.describe(second + first)
        assert [info.worker_id for info in infos] == second + first


def test_states_phases_and_faults_are_the_typed_values(subject: Subject) -> None:
    with idle_session(subject) as driver:
        (worker,) = launch(driver, [0])
        (info,) = driver.fleet.describe([worker])
        assert info.state in get_args(WorkerState) and isinstance(info.phase, str)
        info = wait_for(driver, worker, running)
        assert info.fault is None and info.exit_code is None and info.started_at is not None
        driver.fleet.stop([worker], grace=False)
        info = wait_for(driver, worker, stopped)
        assert info.fault is None or info.fault in get_args(WorkerFault)
        assert info.stopped_at is not None and info.stopped_at >= info.started_at
        assert isinstance(info.reason, str) and info.reason


_FIND = """
import json, sys
import tiny_backend  # registers the tiny backend (an installed one: by its entry point)
from starburst.backends import backend_named
from starburst.store import open_store
name, session_id, url, launch = sys.argv[1:]
fleet = backend_named(name).reopen(session_id, open_store(url), json.loads(launch)).fleet
print(json.dumps({info.worker_id: info.state for info in fleet.find(session_id)}))
"""


def test_find_in_a_fresh_process_lists_the_sessions_workers(subject: Subject) -> None:
    with idle_session(subject) as driver:
        gone, live = launch(driver, [0, 1])
        wait_for(driver, live, running)
        driver.fleet.stop([gone], grace=False)
        wait_for(driver, gone, stopped)
        session_id = driver.keys.session_id
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
        found = subprocess.run(
            [sys.executable, "-c", _FIND, subject.backend.name, session_id, driver.store.url,
             json.dumps(driver.session.launch)],
            env=env, capture_output=True, text=True, timeout=60, check=True,
        )  # fmt: skip
        assert json.loads(found.stdout) == {gone: "stopped", live: "running"}


# Stopping ---------------------------------------------------------------------------------


def test_stopping_a_stopped_worker_is_harmless(subject: Subject) -> None:
    with idle_session(subject) as driver:
        (worker,) = launch(driver, [0])
        wait_for(driver, worker, running)
        driver.fleet.stop([worker])
        before = wait_for(driver, worker, stopped)
        driver.fleet.stop([worker])
        driver.fleet.stop([worker], grace=False)
        (after,) = driver.fleet.describe([worker])
        assert after.state == "stopped" and after.stopped_at == before.stopped_at


def slow_square(x: int) -> int:
    time.sleep(0.1)
    return x * x


def test_a_graceful_stop_gives_the_chunk_back(subject: Subject) -> None:
    """The worker finishes the item in hand, gives its chunk back (claimable at once), and
    the run still returns every result once."""
    with starburst.Cluster(workers=1, backend=subject.backend, progress=False) as cluster:
        results: list[list[int]] = []
        call = threading.Thread(
            target=lambda: results.append(cluster.map(slow_square, range(40), chunk_size=20))
        )
        call.start()
        driver = cluster.driver
        claim_key, claim = _first_claim(driver)
        driver.fleet.stop([claim.holder])
        wait_for(driver, claim.holder, stopped)
        given_back = Claim.decode(driver.store.get(claim_key))
        assert given_back.released and given_back.worker == claim.worker
        call.join(WAIT_SECONDS * 2)
        assert results == [[x * x for x in range(40)]]


def _first_claim(driver: Driver) -> tuple[str, Claim]:
    """The first chunk claim of the session's first run, once a worker holds it."""
    deadline = time.monotonic() + WAIT_SECONDS
    while time.monotonic() < deadline:
        keys = [k for k in driver.store.list(f"data/{driver.keys.session_id}/") if "/claim/" in k]
        if keys:
            return keys[0], Claim.decode(driver.store.get(keys[0]))
        time.sleep(0.05)
    raise AssertionError("no worker claimed a chunk")


def test_log_tail_returns_the_workers_last_lines(subject: Subject) -> None:
    with idle_session(subject) as driver:
        (worker,) = launch(driver, [0])
        deadline = time.monotonic() + WAIT_SECONDS
        while "starting 1 processes" not in driver.fleet.log_tail(worker):
            assert time.monotonic() < deadline, driver.fleet.log_tail(worker)
            time.sleep(0.1)
        assert len(driver.fleet.log_tail(worker, lines=1).splitlines()) == 1


# Faults -----------------------------------------------------------------------------------


def exit_three(x: int) -> int:
    os._exit(3)


def test_a_crash_is_an_exit_code_and_no_fault(subject: Subject) -> None:
    with starburst.Cluster(workers=1, backend=subject.backend, progress=False) as cluster:
        (lost,) = cluster.map(exit_three, [0], retries=0, errors="return")
        assert isinstance(lost, starburst.WorkerLostError)
        found = cluster.driver.fleet.find(cluster.driver.keys.session_id)
    crashed = [info for info in found if info.state == "stopped"]  # (a replacement may idle)
    assert crashed and all(i.exit_code == 3 and i.fault is None and i.reason for i in crashed)


def test_out_of_memory_is_classified(subject: Subject) -> None:
    if not subject.backend.limits_memory:
        pytest.skip(f"the {subject.backend} backend does not limit a worker's memory")
    with idle_session(subject, subject.spec(memory="2GB")) as driver:
        (worker,) = launch(driver, [0])
        wait_for(driver, worker, running)
        subject.aws.faults.oom_kill(task_arn=worker)
        info = wait_for(driver, worker, stopped)
        assert info.fault == "out_of_memory" and info.exit_code == 137


def test_a_worker_that_could_not_start_is_classified(subject: Subject) -> None:
    if not subject.backend.remote:
        pytest.skip(
            f"the {subject.backend} backend is not remote: its launch starts the process "
            "itself, so a worker that cannot start fails the launch, never later"
        )
    subject.aws.faults.failed_start()
    with idle_session(subject) as driver:
        (worker,) = launch(driver, [0])
        info = wait_for(driver, worker, stopped)
        assert info.fault == "failed_to_start" and "CannotPullContainerError" in str(info.reason)


def test_an_interruption_by_the_provider_is_classified(subject: Subject) -> None:
    if not subject.backend.offers_spot:
        pytest.skip(f"the {subject.backend} backend has no spot capacity to be interrupted")
    with idle_session(subject, subject.spec(spot=True)) as driver:
        (worker,) = launch(driver, [0])
        wait_for(driver, worker, running)
        subject.interrupt(driver, worker)
        info = wait_for(driver, worker, stopped)
        assert info.fault == "interrupted" and info.spot


# Cost -------------------------------------------------------------------------------------


def test_a_workers_cost_comes_from_its_start_and_stop_times(subject: Subject) -> None:
    with idle_session(subject) as driver:
        book = driver.fleet.price_book()
        assert (book is None) == (subject.backend.price_book() is None)
        if book is None:
            return  # a free backend: nothing to bill
        (worker,) = launch(driver, [0])
        wait_for(driver, worker, running)
        driver.fleet.stop([worker], grace=False)
        info = wait_for(driver, worker, stopped)
    assert info.billed_from is not None and info.started_at is not None
    assert info.stopped_at is not None
    assert info.billed_from <= info.started_at <= info.stopped_at
    spec = driver.spec
    hourly = book.rate(spot=False).per_worker_hour(spec.cpu, (spec.memory_mib or 0) / 1024)
    meter = CostMeter({False: hourly, True: hourly})
    meter.launched([worker], spot=False)
    meter.observe([info])
    assert meter.cost() == task_cost(info.billed_from, info.stopped_at, hourly) > 0


# Every front end --------------------------------------------------------------------------


def square(x: int) -> int:
    return x * x


def test_every_front_end_runs_on_the_backend(subject: Subject) -> None:
    backend = subject.backend
    assert starburst.map(square, range(30), workers=2, backend=backend) == [
        x * x for x in range(30)
    ]
    with starburst.Executor(workers=1, backend=backend) as executor:
        assert executor.submit(pow, 2, 5).result(timeout=WAIT_SECONDS) == 32
    session = starburst.session(workers=1, backend=backend, ttl=120)
    try:
        session.map(square, range(10))
        assert session.collect(timeout=WAIT_SECONDS) == [[x * x for x in range(10)]]
    finally:
        session.cleanup()
