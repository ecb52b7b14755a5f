"""Every setting a user chooses outside a call's arguments, in one table.

A setting can come from an argument, an environment variable or the config file (in that
order of precedence). Wherever it comes from, it goes through the same check, and a bad value
is refused with a sentence that names the value, where it came from, and what to use instead.
"""

from __future__ import annotations

import contextlib
import math
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import ConfigurationError

#: How local workers are started (``backends/local/fleet.py``).
LOCAL_STARTS = ("auto", "launcher", "fork", "spawn")
#: The retention periods CloudWatch Logs accepts, in days.
LOG_RETENTION_DAYS = (
    1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557,
    2922, 3288, 3653,
)  # fmt: skip


class BadValue(ValueError):
    """A value a setting refuses; the message says what it takes instead."""


def _text(value: Any, from_text: bool) -> str:
    if not isinstance(value, str) or not value.strip():
        raise BadValue("must be a non-empty string")
    return value.strip()


def _number(at_least: float, refusal: str) -> Callable[[Any, bool], float]:
    """A check of a number (text too, from the environment) of at least ``at_least``
    (above 0 when that is 0), which says ``refusal`` otherwise."""

    def check(value: Any, from_text: bool) -> float:
        if from_text and isinstance(value, str):
            try:
                value = float(value)
            except ValueError:
                raise BadValue(refusal) from None
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise BadValue(refusal)
        if not (at_least <= value < math.inf and value > 0):
            raise BadValue(refusal)
        return float(value)

    return check


_dollars = _number(0, "must be a positive number of dollars, e.g. 10")
_lease_seconds = _number(1, "must be a number of seconds of at least 1, e.g. 15")
_patience_seconds = _number(1, "must be a number of seconds of at least 1, e.g. 180")


def _choice(choices: Sequence[Any], what: str) -> Callable[[Any, bool], Any]:
    def check(value: Any, from_text: bool) -> Any:
        if from_text and isinstance(value, str) and isinstance(choices[0], int):
            with contextlib.suppress(ValueError):
                value = int(value)
        if isinstance(value, bool) or value not in choices:
            raise BadValue(f"is not {what}; choose one of {', '.join(map(str, choices))}")
        return value

    return check


def _backend(value: Any, from_text: bool) -> Any:
    """A backend's name that the registry knows, or a ``Backend`` instance as it is."""
    from .backends.registry import Backend, backend_names

    if isinstance(value, Backend):
        return value
    names = backend_names()
    if isinstance(value, str) and value.strip() in names:
        return value.strip()
    raise BadValue(f"is not a backend starburst knows; choose one of {', '.join(names)}")


def _region(value: Any, from_text: bool) -> str:
    name = _text(value, from_text)
    from .aws.connection import known_regions  # boto3, only when a region is chosen

    known = known_regions()
    if known and name not in known:
        raise BadValue(f"is not an AWS region; use one of: {', '.join(sorted(known))}")
    return name


def _folder(value: Any, from_text: bool) -> Path:
    path = Path(_text(value, from_text)).expanduser()
    if path.exists() and not path.is_dir():
        raise BadValue("is a file, not a folder; name a folder (it is created if missing)")
    try:
        path.mkdir(parents=True, exist_ok=True, mode=0o700)
    except OSError as exc:
        raise BadValue(f"cannot be created ({exc.strerror}); name a folder you can write") from None
    if not os.access(path, os.W_OK | os.X_OK):
        raise BadValue("is not writable by you; name a folder you can write")
    return path


@dataclass(frozen=True)
class Setting:
    """One setting: how its value is checked, and where it may come from."""

    name: str
    check: Callable[[Any, bool], Any]
    #: The environment variable that sets it, if any.
    env: str | None = None
    #: Whether ``starburst config set`` stores it in the config file.
    in_config_file: bool = True
    #: What ``starburst config`` says it is for.
    help: str = ""


SETTINGS: dict[str, Setting] = {
    setting.name: setting
    for setting in (
        Setting("backend", _backend, "STARBURST_BACKEND",
                help="where workers run"),
        Setting("region", _region, help="the AWS region"),
        Setting("profile", _text, help="the AWS profile"),
        Setting("image", _text, "STARBURST_IMAGE", help="a worker image to use as it is"),
        Setting("max_cost", _dollars, help="stop a session's workers at this many dollars"),
        Setting("cost_alert", _dollars, help="warn once a session has cost this much"),
        Setting("worker_policy", _text, help="a managed IAM policy (ARN) every session's "
                "workers get too, for access to your own data"),
        Setting("log_retention_days", _choice(LOG_RETENTION_DAYS, "a retention CloudWatch "
                "Logs accepts"), help="how long workers' logs are kept"),
        Setting("lease", _lease_seconds, "STARBURST_LEASE", in_config_file=False,
                help="seconds a claim lasts unrenewed; a worker silent this long is stopped "
                "and replaced (default: 15 locally, 90 on S3)"),
        Setting("spot_patience", _patience_seconds, "STARBURST_SPOT_PATIENCE",
                help="seconds EC2 Spot workers may wait for an instance before they move to "
                "on-demand ones (default: 180)"),
        Setting("local_start", _choice(LOCAL_STARTS, "a way to start local workers"),
                "STARBURST_LOCAL_START", in_config_file=False),
        Setting("data_dir", _folder, "STARBURST_DATA_DIR", in_config_file=False),
        Setting("scratch_dir", _folder, "STARBURST_SCRATCH_DIR", in_config_file=False),
        Setting("cache_dir", _folder, "STARBURST_CACHE_DIR", in_config_file=False),
    )
}  # fmt: skip


def checked(name: str, value: Any, source: str, from_text: bool = False) -> Any:
    """``value`` of setting ``name`` as its check makes it; ``source`` says where it came from
    (``"max_cost="`` for an argument, ``"STARBURST_BACKEND="``, ``"max_cost = ... in FILE"``)."""
    try:
        return SETTINGS[name].check(value, from_text)
    except BadValue as exc:
        raise ConfigurationError(f"{source}{value!r} {exc}") from None


def resolve(name: str, argument: Any = None, default: Any = None) -> Any:
    """Setting ``name``: the argument, else its environment variable, else the config file,
    else ``default``; checked, whatever its source."""
    if argument is not None:
        return checked(name, argument, f"{name}=")
    setting = SETTINGS[name]
    if setting.env and os.environ.get(setting.env):
        return checked(name, os.environ[setting.env], f"{setting.env}=", from_text=True)
    if setting.in_config_file:
        from .config import Config, config_path

        value = Config.load().get(name)
        if value is not None:
            return checked(name, value, f"the setting {name} (in {config_path()}) = ")
    return default
