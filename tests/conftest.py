"""Shared fixtures: stores to run the contract against, and a guard against stray workers."""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

# Before starburst is imported: a background sandbox the user started (`starburst sandbox
# start`, its state in the user's cache folder) is looked for in a cache folder of the
# suite's own, so that it never reaches the tests or their workers.
os.environ["XDG_CACHE_HOME"] = tempfile.mkdtemp(prefix="starburst-tests-")
atexit.register(shutil.rmtree, os.environ["XDG_CACHE_HOME"], ignore_errors=True)

import pytest  # noqa: E402
from proc import worker_children  # noqa: E402

from starburst.store import LocalStore, Store  # noqa: E402

pytest_plugins = ["starburst.emulator.fixtures"]


@pytest.fixture(autouse=True)
def private_config(
    tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> Path:
    """Each test reads and writes its own starburst config and detached sessions, never the
    user's."""
    folder = tmp_path_factory.mktemp("config")
    monkeypatch.setenv("STARBURST_CONFIG_DIR", str(folder))
    monkeypatch.setenv("STARBURST_DATA_DIR", str(tmp_path_factory.mktemp("data")))
    return folder


@pytest.fixture
def detached_data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """This test's detached local sessions live in a folder of their own (not made yet);
    whatever the test leaves there is removed."""
    folder = tmp_path / "data"
    monkeypatch.setenv("STARBURST_DATA_DIR", str(folder))
    yield folder
    import starburst
    from starburst.detached import remove_session

    for status in starburst.list_sessions():
        remove_session(status.session_id)


@pytest.fixture
def no_stray_workers() -> Iterator[None]:
    """Fail the test if any worker process it started is still alive when it ends (a call
    kills its idle workers as it returns; the kernel may take a moment to end them)."""
    yield
    deadline = time.monotonic() + 2.0
    while worker_children() and time.monotonic() < deadline:
        time.sleep(0.02)
    assert worker_children() == [], "worker processes outlived the call"


@pytest.fixture(params=["local", "s3"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    """Every store implementation, fresh for each test: a local folder, and S3 on the emulator."""
    if request.param == "local":
        yield LocalStore(tmp_path / "store")
        return
    aws = request.getfixturevalue("aws")
    import boto3

    from starburst.store.s3 import S3Store

    boto3.client("s3").create_bucket(Bucket="contract-tests")
    yield S3Store("contract-tests", "some/prefix", owner=aws.account_id)  # as setup's is
