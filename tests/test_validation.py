"""Bad input: a clear StarburstError naming the value and the fix, before any worker starts."""

from __future__ import annotations

import threading

import pytest

import starburst
from starburst import ConfigurationError, SerializationError, StarburstError
from starburst.options import parse_memory


@pytest.fixture(autouse=True)
def nothing_starts(monkeypatch: pytest.MonkeyPatch):
    """Every call here must fail before a worker is launched."""
    from starburst.backends.local import LocalBackend

    def refuse(*args, **kwargs):
        raise AssertionError("a worker was launched for a bad call")

    monkeypatch.setattr(LocalBackend, "launch", refuse)


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


def test_timeout_must_not_be_negative() -> None:
    with pytest.raises(ConfigurationError, match=r"timeout=-1 must be a number of seconds"):
        starburst.map(square, range(3), timeout=-1)


def test_an_unknown_backend_lists_the_known_ones() -> None:
    with pytest.raises(ConfigurationError, match=r"backend='lambda' is not known.*'local'"):
        starburst.map(square, range(3), backend="lambda")


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
