"""Bad input: a clear StarburstError naming the value and the fix, before any worker starts."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

import starburst
from starburst import ConfigurationError, SerializationError, StarburstError
from starburst.options import parse_memory


@pytest.fixture(autouse=True)
def nothing_starts(monkeypatch: pytest.MonkeyPatch):
    """Every call here must fail before a worker is launched."""
    from starburst.backends.local.fleet import LocalFleet

    def refuse(*args, **kwargs):
        raise AssertionError("a worker was launched for a bad call")

    monkeypatch.setattr(LocalFleet, "launch", refuse)


def square(x: int) -> int:
    return x * x


def test_a_function_that_cannot_be_pickled_names_the_culprit() -> None:
    lock = threading.Lock()

    def uses_lock(x: int) -> int:
        with lock:
            return x

    with pytest.raises(SerializationError, match=r"captured variable 'lock'.*_thread\.lock"):
        starburst.map(uses_lock, range(3))


@pytest.mark.parametrize("workers", [0, -1, 2.5, "4", True])
def test_workers_must_be_a_positive_integer(workers: object) -> None:
    with pytest.raises(
        ConfigurationError, match=rf"workers={workers!r} must be a positive integer"
    ):
        starburst.map(square, range(3), workers=workers)


@pytest.mark.parametrize("memory", ["eight gigs", "8 parsecs", "-1GB", "", True, "0MB"])
def test_memory_must_parse(memory: object) -> None:
    with pytest.raises(ConfigurationError, match="memory="):
        starburst.map(square, range(3), memory=memory)


@pytest.mark.parametrize(
    ("text", "mib"),
    [("8GB", 8192), ("512MiB", 512), ("8 GiB", 8192), (8, 8192), (0.5, 512), ("2g", 2048)],
)
def test_memory_accepts_the_usual_spellings(text: object, mib: int) -> None:
    assert parse_memory(text) == mib


@pytest.mark.parametrize("chunk_size", [-1, 0, 1.5])
def test_chunk_size_must_be_positive(chunk_size: object) -> None:
    with pytest.raises(ConfigurationError, match="chunk_size"):
        starburst.map(square, range(3), chunk_size=chunk_size)


@pytest.mark.parametrize("timeout", [-1, 0, float("nan"), float("inf"), "60"])
def test_timeout_must_be_a_number_of_seconds_above_zero(timeout: object) -> None:
    with pytest.raises(ConfigurationError, match=r"timeout=.* must be a number of seconds above 0"):
        starburst.map(square, range(3), timeout=timeout)


@pytest.mark.parametrize("cpu", [float("nan"), float("inf"), 0, -1, "2"])
def test_cpu_must_be_a_finite_positive_number(cpu: object) -> None:
    with pytest.raises(ConfigurationError, match=r"cpu=.* must be a positive number of vCPUs"):
        starburst.map(square, range(3), cpu=cpu)


def test_progress_must_be_true_false_or_none() -> None:
    with pytest.raises(ConfigurationError, match=r"progress='yes' must be True, False or None"):
        starburst.map(square, range(3), progress="yes")
    cluster = starburst.Cluster(workers=1)  # a Cluster's own calls check it too
    with pytest.raises(ConfigurationError, match=r"progress=1"):
        cluster.map(square, range(3), progress=1)


async def fetch(x: int) -> int:
    return x


def count_up(x: int):
    yield x


def test_async_and_generator_functions_are_refused_with_the_wrapper_to_use() -> None:
    with pytest.raises(StarburstError, match=r"fetch is an async function.*asyncio\.run"):
        starburst.map(fetch, range(3))
    with pytest.raises(StarburstError, match=r"count_up is a generator function.*list\("):
        starburst.map(count_up, range(3))


def test_an_item_that_cannot_be_sent_is_named_before_any_worker_starts() -> None:
    # The first chunk of each worker is stored before workers start; later chunks stream (an
    # unsendable item there is named as it is reached: test_map.py).
    items = [threading.Lock(), 2, 3, 4]
    with pytest.raises(SerializationError, match=r"cannot send item 0 \(input: <unlocked"):
        starburst.map(str, items, workers=1)


def test_an_unknown_backend_lists_the_known_ones() -> None:
    with pytest.raises(ConfigurationError, match=r"backend='lambda' is not a .*local, fargate"):
        starburst.map(square, range(3), backend="lambda")


def test_environment_settings_are_checked_and_named(monkeypatch, tmp_path) -> None:
    monkeypatch.setenv("STARBURST_LOCAL_START", "forkserver")
    with pytest.raises(ConfigurationError, match=r"STARBURST_LOCAL_START='forkserver' is not"):
        starburst.map(square, range(3))
    monkeypatch.delenv("STARBURST_LOCAL_START")
    a_file = tmp_path / "a-file"
    a_file.write_text("")
    monkeypatch.setenv("STARBURST_SCRATCH_DIR", str(a_file))
    with pytest.raises(ConfigurationError, match=r"STARBURST_SCRATCH_DIR=.*is a file"):
        starburst.map(square, range(3))


def test_a_ttl_too_long_is_refused_before_the_session_exists(private_config) -> None:
    import os

    data = os.environ["STARBURST_DATA_DIR"]
    with pytest.raises(ConfigurationError, match=r"ttl='30d' is longer than a session may live"):
        starburst.session(workers=1, ttl="30d")
    assert not list(Path(data).rglob("session.json"))


def test_the_config_file_and_config_set_go_through_the_same_checks(private_config) -> None:
    from starburst.config import Config

    (private_config / "config.toml").write_text("max_cost = -3\n")
    with pytest.raises(ConfigurationError, match=r"max_cost .*= -3 must be a positive number"):
        starburst.map(square, range(3))
    (private_config / "config.toml").write_text("aws = 5\n")
    with pytest.raises(ConfigurationError, match=r"`aws` must be a table"):
        starburst.map(square, range(3))
    config = Config()
    with pytest.raises(ConfigurationError, match=r"log_retention_days '10' is not a retention"):
        config.set("log_retention_days", "10")
    assert config.set("log_retention_days", "14") == 14
    with pytest.raises(ConfigurationError, match=r"region 'mars-1' is not an AWS region"):
        config.set("region", "mars-1")
    with pytest.raises(ConfigurationError, match=r"cost_alert 'inf'"):
        config.set("cost_alert", "inf")


def test_an_unknown_errors_mode_is_refused() -> None:
    with pytest.raises(ConfigurationError, match=r"errors='ignore'.*'raise' or 'return'"):
        starburst.map(square, range(3), errors="ignore")


def test_iterables_of_different_lengths_are_refused() -> None:
    with pytest.raises(ConfigurationError, match=r"different lengths \(3, 2\)"):
        starburst.map(pow, [1, 2, 3], [1, 2])


def test_bad_options_fail_for_every_front_end() -> None:
    with pytest.raises(ConfigurationError):
        starburst.imap(square, range(3), retries=-1)
    with pytest.raises(ConfigurationError):
        starburst.starmap(pow, [(1, 2)], seed="abc")
    with pytest.raises(ConfigurationError):
        starburst.Cluster(workers=0)
    with pytest.raises(ConfigurationError):
        starburst.Executor(cpu=-2)


def test_not_callable_is_refused() -> None:
    with pytest.raises(StarburstError, match="is not callable"):
        starburst.map(42, range(3))


def test_every_error_is_a_starburst_error() -> None:
    assert issubclass(ConfigurationError, StarburstError)
    assert issubclass(SerializationError, StarburstError)
