"""The public surface: every error a user can meet is importable from ``starburst`` and lives
in ``errors.py``; every public name resolves; renamed functions keep their old names, with a
warning, for one release."""

from __future__ import annotations

import importlib
import warnings
from pathlib import Path

import pytest

import starburst
import starburst.errors

#: Exceptions that never reach a user: each is raised and handled inside starburst.
INTERNAL_EXCEPTIONS = {
    # The emulated AWS's error answers: they reach a user as AWS's, through boto3.
    "starburst.emulator.wire.ApiError",
    # The store protocol's answers (a missing key, a lost conditional write): the engine acts
    # on them; a user who catches the store's failures catches them as ``StoreError``.
    "starburst.store.base.NotFound",
    "starburst.store.base.PreconditionFailed",
    # An S3 conflict (409) that the S3 store retries.
    "starburst.store.s3._Conflict",
    # The launcher could not fork a worker: the local fleet forks it from the client instead.
    "starburst.backends.local.launcher.LauncherFailed",
    # A setting's refusal, turned into a ConfigurationError naming where the value came from.
    "starburst.settings.BadValue",
    # Inside a worker process: its session was closed, it was told to stop, its run is over.
    "starburst.worker.loop.SessionClosed",
    "starburst.worker.loop.WorkerTerminated",
    "starburst.worker.loop._RunOver",
}

#: Old public names kept for one release: the name that replaced each, and arguments that
#: the new function refuses before any AWS call (so that the alias is seen to pass them on).
RENAMED = {
    "status": ("setup_status", (), {"region": "nowhere-1"}),
    "request_quota": ("request_quota_increase", (-1,), {}),
    "quota_request": ("quota_increase_status", ("request-1",), {"region": "nowhere-1"}),
}


def _exceptions_defined_in_the_package() -> dict[str, type[BaseException]]:
    """Every exception class defined by a module of starburst, by its qualified name."""
    found = {}
    root = Path(starburst.__file__).parent  # files, not pkgutil: engine/ has no __init__.py
    for path in sorted(root.rglob("*.py")):
        if path.stem == "__main__":
            continue  # running it is its job
        parts = path.relative_to(root.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if path.stem == "__init__" else parts)
        module = importlib.import_module(name)
        for value in vars(module).values():
            if (
                isinstance(value, type)
                and issubclass(value, BaseException)
                and value.__module__ == name
            ):
                found[f"{name}.{value.__qualname__}"] = value
    return found


def test_every_exception_a_user_can_meet_is_in_errors_and_exported() -> None:
    found = _exceptions_defined_in_the_package()
    assert found  # the walk saw the package
    gone = INTERNAL_EXCEPTIONS - set(found)
    assert not gone, f"allow-listed but no longer defined: {gone}"
    problems = []
    for qualified, exception in found.items():
        if qualified in INTERNAL_EXCEPTIONS:
            continue
        if exception.__module__ != "starburst.errors":
            problems.append(f"{qualified} can reach a user: define it in starburst/errors.py")
        elif getattr(starburst, exception.__name__, None) is not exception:
            problems.append(f"{exception.__name__} is not exported: add it to starburst.__all__")
    assert not problems, "\n".join(problems)


def test_every_public_name_resolves() -> None:
    for name in starburst.__all__:
        assert getattr(starburst, name) is not None, name
    assert sorted(starburst.__all__) == sorted(set(starburst.__all__))
    assert sorted(dir(starburst)) == sorted(starburst.__all__)


@pytest.mark.parametrize("old", sorted(RENAMED))
def test_old_names_warn_and_call_the_new_ones(old: str) -> None:
    new, args, kwargs = RENAMED[old]
    assert old not in starburst.__all__ and new in starburst.__all__
    alias = getattr(starburst, old)
    assert alias.__wrapped__ is getattr(starburst, new)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with pytest.raises(starburst.ConfigurationError):
            alias(*args, **kwargs)
    assert [w.category for w in caught] == [DeprecationWarning]
    message = str(caught[0].message)
    assert f"starburst.{old}" in message and f"starburst.{new}" in message
    assert caught[0].filename == __file__  # the warning points at the caller's line


def test_an_unknown_name_is_an_attribute_error() -> None:
    with pytest.raises(AttributeError, match="no attribute 'nothing_here'"):
        starburst.nothing_here  # noqa: B018
