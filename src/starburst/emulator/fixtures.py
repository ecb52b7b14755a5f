"""pytest fixtures: ``aws`` (an :class:`Emulator` per test) on one server per session.

Load with ``pytest_plugins = ["starburst.emulator.fixtures"]`` in ``tests/conftest.py``.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from starburst.emulator.active import sandbox_environment
from starburst.emulator.emulator import Emulator
from starburst.emulator.sandbox import tasks_running
from starburst.emulator.server import EmulatorServer


@pytest.fixture(scope="session")
def aws_server() -> Iterator[EmulatorServer]:
    """The moto server and its layer, started once for the test session."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MOTO_IAM_LOAD_MANAGED_POLICIES", "true")  # read when IAM backends are made
        server = EmulatorServer().start()
        try:
            yield server
        finally:
            server.stop()


@pytest.fixture
def aws(
    aws_server: EmulatorServer,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Emulator]:
    """A fresh AWS for this test: moto reset, environment pointed at it, tasks running.

    ``STARBURST_CONFIG_DIR`` keeps a per-test folder the suite already set (one under
    pytest's temporary base), else points at a new one. Every task process is killed when
    the test ends.
    """
    existing = os.environ.get("STARBURST_CONFIG_DIR")
    base = tmp_path_factory.getbasetemp().resolve()
    if existing and Path(existing).resolve().is_relative_to(base):
        config_dir = Path(existing)
    else:
        config_dir = tmp_path / "starburst-config"
        config_dir.mkdir()
    yield from _emulated(aws_server, monkeypatch, config_dir, tmp_path)


@pytest.fixture(scope="module")
def module_aws(
    aws_server: EmulatorServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Emulator]:
    """One fresh AWS shared by every test of a module (``starburst.setup`` once, not per
    test), set up as ``aws`` sets it up, with its own config folder. A test that uses it must
    point ``STARBURST_CONFIG_DIR`` at ``module_aws.config_dir`` again (``private_config``
    gives each test a fresh one)."""
    folder = tmp_path_factory.mktemp("module-aws")
    config_dir = folder / "starburst-config"
    config_dir.mkdir()
    with pytest.MonkeyPatch.context() as mp:
        yield from _emulated(aws_server, mp, config_dir, folder)


def _emulated(
    aws_server: EmulatorServer, monkeypatch: pytest.MonkeyPatch, config_dir: Path, tmp_path: Path
) -> Iterator[Emulator]:
    """Reset the server, point the environment at it, run its tasks until the caller is done;
    fail on any internal error of the emulator."""
    aws_server.reset()
    for name, value in sandbox_environment(aws_server.url, config_dir, tmp_path).items():
        if value is None:
            monkeypatch.delenv(name)
        else:
            monkeypatch.setenv(name, value)
    monkeypatch.delenv("STARBURST_SANDBOX")  # (a test's run headers stay as a user sees them)
    with tasks_running(aws_server, config_dir) as (emulator, errors):
        yield emulator
    if errors:
        pytest.fail("emulator internal error(s):\n" + "\n".join(errors), pytrace=False)
