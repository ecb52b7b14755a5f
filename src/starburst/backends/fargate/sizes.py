"""Fargate's valid cpu / memory pairs, checked before anything is launched."""

from __future__ import annotations

from ...errors import ConfigurationError

_GIB = 1024

#: vCPUs -> the memory sizes (MiB) Fargate accepts with them.
FARGATE_SIZES: dict[float, list[int]] = {
    0.25: [512, 1 * _GIB, 2 * _GIB],
    0.5: [g * _GIB for g in range(1, 5)],
    1: [g * _GIB for g in range(2, 9)],
    2: [g * _GIB for g in range(4, 17)],
    4: [g * _GIB for g in range(8, 31)],
    8: [g * _GIB for g in range(16, 61, 4)],
    16: [g * _GIB for g in range(32, 121, 8)],
}


def _shown(mib: int) -> str:
    return f"{mib} MiB" if mib < _GIB else f"{mib // _GIB} GB"


def fargate_size(cpu: float, memory_mib: int | None) -> tuple[int, int]:
    """Fargate's (cpu units, memory MiB) for a worker; no memory means the smallest allowed.

    An invalid pair raises a ``ConfigurationError`` that lists what is valid.
    """
    if cpu not in FARGATE_SIZES:
        choices = ", ".join(f"{c:g}" for c in FARGATE_SIZES)
        raise ConfigurationError(f"cpu={cpu:g} is not a Fargate size; choose one of: {choices}")
    valid = FARGATE_SIZES[cpu]
    if memory_mib is None:
        return int(cpu * 1024), valid[0]
    if memory_mib not in valid:
        raise ConfigurationError(
            f"memory={_shown(memory_mib)} is not valid with cpu={cpu:g} on Fargate; "
            f"valid: {', '.join(_shown(m) for m in valid)}"
        )
    return int(cpu * 1024), memory_mib
