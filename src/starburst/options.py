"""Everything a user passes: the front ends' keyword options, typed once, and their
validation, before anything is launched.

The options are declared once, as typed dictionaries (``RunKeywords``, ``ClusterKeywords``
and their unions below) that the front ends take as ``**options: Unpack[...]``: a type
checker and an IDE see every option by name and type. ``@takes(...)`` writes the same options,
with their defaults (``DEFAULTS``), into the front end's signature for ``help()`` and
``inspect.signature``, and refuses a keyword it does not know, naming the ones it does. The
options then travel validated: ``RunOptions`` (per call, e.g. ``chunk_size`` to planning and
on to the chunks the workers claim) and ``WorkerSpec`` (per cluster).

Every check raises ``ConfigurationError`` naming the bad value and the fix.
"""

from __future__ import annotations

import difflib
import functools
import inspect
import math
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, fields
from typing import Any, Literal, TypedDict, TypeVar, get_type_hints

from .backends.base import Backend
from .errors import ConfigurationError
from .settings import resolve

ErrorMode = Literal["raise", "return"]
ERROR_MODES = ("raise", "return")

_MEMORY = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*$")
_UNITS_MIB = {
    "": 1024, "g": 1024, "gb": 1024, "gib": 1024,
    "m": 1, "mb": 1, "mib": 1,
    "t": 1024 * 1024, "tb": 1024 * 1024, "tib": 1024 * 1024,
}  # fmt: skip


def parse_memory(value: str | int | float | None) -> int | None:
    """Memory in MiB from ``"8GB"``, ``"512MiB"``, ``"8 GiB"`` or a number of GB."""
    if value is None:
        return None
    if isinstance(value, bool):
        raise ConfigurationError(f"memory={value!r} is not a size; use e.g. memory='8GB'")
    if isinstance(value, int | float):
        number, unit = float(value), ""
    elif isinstance(value, str) and (match := _MEMORY.match(value)):
        number, unit = float(match.group(1)), match.group(2).lower()
    else:
        raise ConfigurationError(
            f"memory={value!r} is not a size; use e.g. memory='8GB', '512MiB', '8 GiB' or 8"
        )
    if unit not in _UNITS_MIB:
        raise ConfigurationError(
            f"memory={value!r} has an unknown unit {unit!r}; use MB/MiB or GB/GiB, e.g. '8GB'"
        )
    mib = number * _UNITS_MIB[unit]
    if not math.isfinite(mib) or mib < 1:
        raise ConfigurationError(f"memory={value!r} must be at least 1 MiB, e.g. memory='2GB'")
    return round(mib)


_DURATION_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_duration(name: str, value: str | int | float) -> float:
    """Seconds from a number of seconds or a text like ``"90s"``, ``"30m"``, ``"24h"``, ``"2d"``."""
    seconds: float | None = None
    if isinstance(value, int | float) and not isinstance(value, bool):
        seconds = float(value)
    elif isinstance(value, str):
        text = value.strip().lower()
        unit = _DURATION_UNITS.get(text[-1:]) if text else None
        try:
            seconds = float(text[:-1]) * unit if unit else float(text)
        except ValueError:
            seconds = None
    if seconds is None or not seconds > 0:
        raise ConfigurationError(
            f"{name}={value!r} is not a duration: give seconds (e.g. 3600) or a text such as "
            "'90m', '24h' or '2d'"
        )
    return seconds


def positive_int(name: str, value: Any, *, allow_none: bool = True) -> int | None:
    """``value`` as a positive integer, or ``None`` when that is allowed."""
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigurationError(f"{name}={value!r} must be a positive integer, e.g. {name}=4")
    return value


def positive_seconds(name: str, value: Any) -> float | None:
    """``value`` as a finite number of seconds above zero, or ``None``."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value < math.inf:
        raise ConfigurationError(
            f"{name}={value!r} must be a number of seconds above 0, e.g. {name}=600 (or None "
            "for no limit)"
        )
    return float(value)


def show_progress(value: Any) -> bool | None:
    """``progress=``: True, False, or None (a bar when standard error is a terminal)."""
    if value is not None and not isinstance(value, bool):
        raise ConfigurationError(
            f"progress={value!r} must be True, False or None (a bar on a terminal only)"
        )
    return value


def choose_backend(value: str | Backend | None) -> Backend:
    """The backend: the argument (a name or a ``Backend``), else ``STARBURST_BACKEND``, else
    the config, else local; an unknown name is refused saying where it came from."""
    from .backends.registry import as_backend

    return as_backend(resolve("backend", value, default="local"))


@dataclass(frozen=True)
class WorkerSpec:
    """How many workers to run, and what each one gets."""

    backend: Backend
    workers: int
    cpu: float
    memory_mib: int | None
    spot: bool = False
    gpus: int = 0
    #: Families (``"c7i"``) or exact types (``"c7i.2xlarge"``); empty: the backend chooses.
    instance_types: tuple[str, ...] = ()
    arch: str | None = None  # "x86_64" or "arm64"; None: the backend chooses
    #: Seconds the instances stay up, empty, after the workers stop (for the next call).
    keep_warm: float = 0.0

    @property
    def processes(self) -> int:
        """Processes per worker: one per whole vCPU (Python runs one core per process)."""
        return max(1, math.floor(self.cpu))

    @property
    def slots(self) -> int:
        """How many items can run at once across all workers."""
        return self.workers * self.processes

    @classmethod
    def build(
        cls,
        *,
        backend: str | Backend | None,
        workers: int | None,
        cpu: int | float | None,
        memory: str | int | float | None,
        spot: bool = False,
        gpus: int = 0,
        instance_types: Sequence[str] | None = None,
        arch: str | None = None,
        keep_warm: str | float | None = None,
    ) -> WorkerSpec:
        """Validate the user's choices and fill in the backend's defaults."""
        chosen = choose_backend(backend)
        count = positive_int("workers", workers)
        if cpu is not None and (
            isinstance(cpu, bool) or not isinstance(cpu, int | float) or not 0 < cpu < math.inf
        ):
            raise ConfigurationError(f"cpu={cpu!r} must be a positive number of vCPUs, e.g. cpu=2")
        if not isinstance(spot, bool):
            raise ConfigurationError(f"spot={spot!r} must be True or False")
        if spot and not chosen.offers_spot:
            raise ConfigurationError(
                f"spot=True needs a backend with spot capacity, e.g. backend='fargate'; the "
                f"{chosen.name} backend has none"
            )
        count = chosen.default_workers() if count is None else count
        if isinstance(gpus, bool) or not isinstance(gpus, int) or gpus < 0:
            raise ConfigurationError(f"gpus={gpus!r} must be a whole number of GPUs, e.g. gpus=1")
        if isinstance(instance_types, str):
            instance_types = [instance_types]
        types = tuple(instance_types or ())
        if not all(isinstance(name, str) for name in types):
            raise ConfigurationError(
                f"instance_types={instance_types!r} must be names, e.g. ['c7i', 'm7i.2xlarge']"
            )
        count, cpu, memory_mib = chosen.fit(count, cpu, parse_memory(memory))
        warm = _keep_warm_seconds(keep_warm, chosen)
        spec = cls(
            backend=chosen,
            workers=count,
            cpu=float(cpu) if cpu is not None else 1.0,
            memory_mib=memory_mib,
            spot=spot,
            gpus=gpus,
            instance_types=types,
            arch=arch,
            keep_warm=warm,
        )
        chosen.fit_instances(spec)
        return spec


#: The longest ``keep_warm``: idle instances cost as much as busy ones.
MAX_KEEP_WARM_SECONDS = 86400.0


def _keep_warm_seconds(value: str | float | None, backend: Backend) -> float:
    """``keep_warm`` in seconds (0: give the instances back at once)."""
    if value is None or value == 0:
        return 0.0
    seconds = parse_duration("keep_warm", value)
    if not backend.keeps_warm:
        raise ConfigurationError(
            f"keep_warm={value!r} keeps instances up between calls, and the {backend.name} "
            "backend has none to keep: leave keep_warm out, or use backend='ec2'"
        )
    if seconds > MAX_KEEP_WARM_SECONDS:
        raise ConfigurationError(
            f"keep_warm={value!r} is longer than a day, and idle instances cost as much as "
            "busy ones: use at most keep_warm='24h' (e.g. keep_warm='15m')"
        )
    return seconds


@dataclass(frozen=True)
class RunOptions:
    """Per-call choices: chunking, error handling, retries, seeding, timeout, and whether
    zipped iterables must be of equal length."""

    chunk_size: int | None = None
    errors: ErrorMode = "raise"
    retries: int = 2
    retry_exceptions: bool | tuple[type[BaseException], ...] = False
    timeout: float | None = None
    seed: int | None = None
    strict: bool = True

    @classmethod
    def build(
        cls,
        *,
        chunk_size: Any = None,
        errors: Any = "raise",
        retries: Any = 2,
        retry_exceptions: Any = False,
        timeout: Any = None,
        seed: Any = None,
        strict: Any = True,
    ) -> RunOptions:
        """Validate the per-call options."""
        if errors not in ERROR_MODES:
            raise ConfigurationError(f"errors={errors!r} is not known; use 'raise' or 'return'")
        if isinstance(retries, bool) or not isinstance(retries, int) or retries < 0:
            raise ConfigurationError(f"retries={retries!r} must be an integer >= 0, e.g. 2")
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
            raise ConfigurationError(f"seed={seed!r} must be an integer, e.g. seed=42")
        return cls(
            chunk_size=positive_int("chunk_size", chunk_size),
            errors=errors,
            retries=retries,
            retry_exceptions=_exception_types(retry_exceptions),
            timeout=positive_seconds("timeout", timeout),
            seed=seed,
            strict=strict,
        )


def _exception_types(value: Any) -> bool | tuple[type[BaseException], ...]:
    if isinstance(value, bool):
        return value
    types = value if isinstance(value, tuple | list) else (value,)
    if not all(isinstance(t, type) and issubclass(t, BaseException) for t in types):
        raise ConfigurationError(
            f"retry_exceptions={value!r} must be True/False or exception types, "
            "e.g. retry_exceptions=(ConnectionError,)"
        )
    return tuple(types)


class RunKeywords(TypedDict, total=False):
    """A call's options, as every ``map`` takes them (validated into ``RunOptions``)."""

    chunk_size: int | None
    errors: ErrorMode
    retries: int
    retry_exceptions: bool | tuple[type[BaseException], ...]
    timeout: float | None
    seed: int | None
    strict: bool


class ClusterKeywords(TypedDict, total=False):
    """The keyword options of a ``Cluster``: its workers, progress display and cost limits."""

    workers: int | None
    cpu: int | float | None
    memory: str | int | float | None
    backend: str | Backend | None
    spot: bool
    gpus: int
    instance_types: Sequence[str] | None
    arch: str | None
    keep_warm: str | float | None
    progress: bool | None
    max_cost: float | None
    cost_alert: float | None


class CallKeywords(RunKeywords, total=False):
    """The options of ``Cluster.map`` and its kin: a call's, and its own progress display
    (``None``: the cluster's)."""

    progress: bool | None


class OneOffKeywords(RunKeywords, ClusterKeywords, total=False):
    """The options of a one-off ``starburst.map`` and its kin: a call's, the workers' opened
    for it, and ``return_run`` (``True``, with ``map`` or ``starmap`` only: also return the
    call's ``RunReport``, its wall time and cost)."""

    return_run: bool


#: What each option is when a call leaves it out, in the order signatures list them.
DEFAULTS: dict[str, Any] = {
    "workers": None,
    "cpu": None,
    "memory": None,
    "backend": None,
    "spot": False,
    "gpus": 0,
    "instance_types": None,
    "arch": None,
    "keep_warm": None,
    **{field.name: field.default for field in fields(RunOptions)},
    "progress": None,
    "max_cost": None,
    "cost_alert": None,
    "return_run": False,
}

_Function = TypeVar("_Function", bound=Callable[..., Any])
_Keywords = TypeVar("_Keywords")


def pick(keywords: type[_Keywords], options: Mapping[str, Any]) -> _Keywords:
    """The options among ``options`` that ``keywords`` (one of the typed dictionaries above)
    declares: a one-off call's ``Cluster`` options, say, or its call's."""
    names = keywords.__required_keys__ | keywords.__optional_keys__  # type: ignore[attr-defined]
    return {name: options[name] for name in names if name in options}  # type: ignore[return-value]


def takes(keywords: type) -> Callable[[_Function], _Function]:
    """Let a front end declared with ``**options: Unpack[keywords]`` show those options, with
    their types and defaults, in its signature (``help()``, ``inspect.signature``), and
    refuse any other keyword with a ``TypeError`` that lists the options it takes."""
    types = get_type_hints(keywords)
    names = [name for name in DEFAULTS if name in types]

    def declare(function: _Function) -> _Function:
        signature = inspect.signature(function)
        parameters = [p for p in signature.parameters.values() if p.kind != p.VAR_KEYWORD]
        parameters += [
            inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=DEFAULTS[name],
                              annotation=types[name])
            for name in names
        ]  # fmt: skip
        known = frozenset(names)

        @functools.wraps(function)
        def checked(*args: Any, **options: Any) -> Any:
            if not known.issuperset(options):
                raise unknown_keyword(function.__qualname__, options.keys() - known, names)
            return function(*args, **options)

        checked.__signature__ = signature.replace(parameters=parameters)  # type: ignore[attr-defined]
        return checked  # type: ignore[return-value]

    return declare


def unknown_keyword(function: str, unknown: set[str], names: list[str]) -> TypeError:
    """The error for a keyword ``function`` does not take: the closest option, and them all."""
    name = sorted(unknown)[0]
    close = difflib.get_close_matches(name, names, n=1)
    hint = f" (did you mean {close[0]}?)" if close else ""
    return TypeError(
        f"{function}() got an unexpected keyword argument {name!r}{hint}; its options are "
        f"{', '.join(names)}"
    )
