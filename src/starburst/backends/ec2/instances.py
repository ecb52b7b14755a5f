"""Which EC2 instance types can carry a run's workers, and how many of them a run needs.

A built-in catalogue of the families a user is likely to name (c, m and r of generations 5
to 7, Intel, AMD and Graviton; the G families with NVIDIA GPUs), and the choice of a
diversified list of types for an Auto Scaling group: every type fits at least one worker in
the memory ECS *registers* (below the nominal size), and sizes that pack several workers are
preferred, because ECS places tasks on the instances an Auto Scaling group gives it and a
type too small for a task stalls the whole group (EC2_FACTS §1.1, §8.3). Nothing here calls
AWS: a request no type can carry is refused before anything is launched.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from ...errors import ConfigurationError

X86_64 = "x86_64"
ARM64 = "arm64"
ARCHES = (X86_64, ARM64)
#: What an Auto Scaling group takes in its mixed instances policy, at most.
MAX_TYPES_PER_GROUP = 40
#: Memory the ECS agent keeps for the instance's own processes (``ECS_RESERVED_MEMORY`` in
#: the user data setup writes).
ECS_RESERVED_MEMORY_MIB = 256
#: The share of nominal memory the kernel and firmware keep before the agent counts it: an
#: m4.large's 8 GiB registers 7,985 MiB (2.5 %); on AL2023 3 to 5 % is reported
#: (EC2_FACTS §4, §8.3). The upper end is used, so that a task never asks for memory an
#: instance does not register (ECS would never place it, and never scale for it).
OS_RESERVED_SHARE = 0.05

_GIB = 1024
#: Memory per vCPU (GiB) of each general-purpose letter.
_RATIOS = {"c": 2, "m": 4, "r": 8}
_SIZE_VCPUS = {
    "large": 2, "xlarge": 4, "2xlarge": 8, "4xlarge": 16, "8xlarge": 32,
    "9xlarge": 36, "12xlarge": 48, "16xlarge": 64, "18xlarge": 72, "24xlarge": 96,
}  # fmt: skip
_STANDARD_SIZES: tuple[str, ...] = (
    "large",
    "xlarge",
    "2xlarge",
    "4xlarge",
    "8xlarge",
    "12xlarge",
    "16xlarge",
)
_C5_SIZES = ("large", "xlarge", "2xlarge", "4xlarge", "9xlarge", "12xlarge", "18xlarge")
#: (generation and maker suffix, arch): c, m and r come in each.
_GENERAL = (
    ("7i", X86_64), ("6i", X86_64), ("7a", X86_64), ("6a", X86_64), ("5", X86_64),
    ("5a", X86_64), ("7g", ARM64), ("6g", ARM64),
)  # fmt: skip
#: GPU families: size -> (vCPUs, memory GiB, GPUs). All x86_64 with NVIDIA GPUs.
_GPU_SIZES = {
    "xlarge": (4, 16, 1), "2xlarge": (8, 32, 1), "4xlarge": (16, 64, 1),
    "8xlarge": (32, 128, 1), "12xlarge": (48, 192, 4), "16xlarge": (64, 256, 1),
    "24xlarge": (96, 384, 4), "48xlarge": (192, 768, 8),
}  # fmt: skip
_GPU_FAMILIES = {"g6": tuple(_GPU_SIZES), "g5": tuple(_GPU_SIZES), "g4dn": tuple(_GPU_SIZES)[:6]}


@dataclass(frozen=True)
class InstanceType:
    """One EC2 instance type: its nominal size and what ECS registers of it."""

    name: str
    vcpus: int
    memory_mib: int
    arch: str
    gpus: int = 0

    @property
    def family(self) -> str:
        return self.name.split(".")[0]

    @property
    def registered_memory_mib(self) -> int:
        """Memory ECS offers tasks on it (an estimate on the safe side)."""
        return math.floor(self.memory_mib * (1 - OS_RESERVED_SHARE)) - ECS_RESERVED_MEMORY_MIB

    def workers_that_fit(self, cpu: float, memory_mib: int, gpus: int = 0) -> int:
        """How many workers of this size one instance carries (0: not even one)."""
        fits = [
            math.floor(self.vcpus / cpu + 1e-9),
            self.registered_memory_mib // memory_mib,
        ]
        if gpus:
            fits.append(self.gpus // gpus)
        return max(0, min(fits))


def _build_catalogue() -> dict[str, InstanceType]:
    types: list[InstanceType] = []
    for letter, ratio in _RATIOS.items():
        for suffix, arch in _GENERAL:
            sizes = _C5_SIZES if letter == "c" and suffix == "5" else _STANDARD_SIZES
            for size in sizes:
                vcpus = _SIZE_VCPUS[size]
                name = f"{letter}{suffix}.{size}"
                types.append(InstanceType(name, vcpus, vcpus * ratio * _GIB, arch))
    for family, sizes in _GPU_FAMILIES.items():
        for size in sizes:
            vcpus, gib, gpus = _GPU_SIZES[size]
            types.append(InstanceType(f"{family}.{size}", vcpus, gib * _GIB, X86_64, gpus))
    return {t.name: t for t in types}


#: Every instance type starburst knows, by name.
CATALOGUE: dict[str, InstanceType] = _build_catalogue()
#: Families tried, in this order, when the user names none: newest first, then older and
#: other makers, for the diversity Spot needs (at least 10 types, EC2_FACTS §2.1).
DEFAULT_FAMILIES = {
    (letter, arch): [f"{letter}{suffix}" for suffix, a in _GENERAL if a == arch]
    for letter in _RATIOS
    for arch in ARCHES
}
GPU_FAMILIES = list(_GPU_FAMILIES)


def _families() -> dict[str, list[InstanceType]]:
    found: dict[str, list[InstanceType]] = {}
    for t in CATALOGUE.values():
        found.setdefault(t.family, []).append(t)
    return found


_BY_FAMILY = _families()


def choose_instance_types(
    cpu: float,
    memory_mib: int,
    gpus: int = 0,
    instance_types: Sequence[str] | None = None,
    arch: str | None = None,
    limit: int = MAX_TYPES_PER_GROUP,
) -> list[InstanceType]:
    """The instance types an Auto Scaling group may launch for workers of this size.

    ``instance_types`` names families (``"c7i"``) or exact types (``"c7i.2xlarge"``); when
    it is not given, the families of one memory-per-vCPU ratio (c: 2 GiB, m: 4, r: 8: the
    smallest that holds the worker's) on ``arch`` (x86_64 unless given), or the GPU families
    for ``gpus``. Every type returned fits at least one worker in registered memory, vCPUs
    and GPUs; the sizes of a family that carry only one worker are left out when others
    carry several (a worker has an instance to itself only when it needs one). Smallest
    first, families interleaved, at most ``limit``. Raises ``ConfigurationError`` naming
    the value no type can carry, and the fix.
    """
    arch = _check_arch(arch)
    named = list(instance_types or [])
    candidates, exact = _candidates(cpu, memory_mib, gpus, named, arch)
    fitting = [t for t in candidates if t.workers_that_fit(cpu, memory_mib, gpus) >= 1]
    if not fitting:
        raise ConfigurationError(_why_none_fits(cpu, memory_mib, gpus, candidates))
    if not gpus:  # a GPU worker takes its GPUs: one per instance is no waste then
        packing = [t for t in fitting if t.workers_that_fit(cpu, memory_mib) >= 2]
        if packing:
            fitting = [t for t in fitting if t in packing or t.name in exact]
    order = {family: i for i, family in enumerate(dict.fromkeys(t.family for t in candidates))}
    fitting.sort(key=lambda t: (t.vcpus, t.memory_mib, order[t.family]))
    return fitting[:limit]


def _check_arch(arch: str | None) -> str | None:
    if arch is None or arch in ARCHES:
        return arch
    raise ConfigurationError(f"arch={arch!r} is not an architecture; use 'x86_64' or 'arm64'")


def _candidates(
    cpu: float, memory_mib: int, gpus: int, named: list[str], arch: str | None
) -> tuple[list[InstanceType], set[str]]:
    """The types to choose from, and the names the user gave as exact types."""
    if not named:
        if gpus:
            families = GPU_FAMILIES
            if arch == ARM64:
                raise ConfigurationError(
                    f"gpus={gpus} with arch='arm64': starburst's GPU families "
                    f"({', '.join(families)}) are x86_64; leave arch unset or set arch='x86_64'"
                )
        else:
            families = DEFAULT_FAMILIES[(_ratio_letter(cpu, memory_mib), arch or X86_64)]
        return [t for f in families for t in _BY_FAMILY[f]], set()
    types, exact = [], set()
    for name in named:
        found = _lookup(name)
        types += found
        if "." in name:
            exact.add(found[0].name)
    arches = sorted({t.arch for t in types})
    if arch is None and len(arches) > 1:
        raise ConfigurationError(
            f"instance_types={named!r} mixes architectures ({' and '.join(arches)}), and a "
            "worker image runs on one: name families of one architecture, or set "
            "arch='x86_64' or arch='arm64' to use only those of it"
        )
    if arch is not None:
        types = [t for t in types if t.arch == arch]
        if not types:
            raise ConfigurationError(
                f"none of instance_types={named!r} is {arch}: name {arch} families "
                f"(e.g. {', '.join(DEFAULT_FAMILIES[('c', arch)][:2])}) or change arch"
            )
    return list(dict.fromkeys(types)), exact


def _ratio_letter(cpu: float, memory_mib: int) -> str:
    """The general-purpose letter whose memory per vCPU holds the worker's."""
    per_vcpu = memory_mib / cpu / _GIB
    return next((letter for letter, ratio in _RATIOS.items() if per_vcpu <= ratio), "r")


def _lookup(name: str) -> list[InstanceType]:
    key = name.strip().lower()
    if key in CATALOGUE:
        return [CATALOGUE[key]]
    if key in _BY_FAMILY:
        return _BY_FAMILY[key]
    family = key.split(".")[0]
    if family in _BY_FAMILY:
        sizes = ", ".join(t.name.split(".")[1] for t in _BY_FAMILY[family])
        raise ConfigurationError(
            f"instance_types has {name!r}, but {family} has no such size in starburst's "
            f"catalogue; its sizes: {sizes} (e.g. {family}.2xlarge), or name the family alone"
        )
    raise ConfigurationError(
        f"instance_types has {name!r}, which starburst does not know; name a family (one of "
        f"{', '.join(_BY_FAMILY)}) or an exact type such as 'c7i.2xlarge'"
    )


def _why_none_fits(cpu: float, memory_mib: int, gpus: int, candidates: list[InstanceType]) -> str:
    families = ", ".join(dict.fromkeys(t.family for t in candidates))
    most_gpus = max(candidates, key=lambda t: t.gpus)
    if gpus and most_gpus.gpus == 0:
        return (
            f"gpus={gpus} needs a GPU instance type, and none of {families} has a GPU; name one of "
            f"{', '.join(GPU_FAMILIES)} in instance_types (or leave instance_types unset)"
        )
    if gpus > most_gpus.gpus:
        return (
            f"gpus={gpus} is more than any size of {families} has (the most: "
            f"{most_gpus.name}, {most_gpus.gpus}); ask for at most {most_gpus.gpus} GPUs per worker"
        )
    usable = [t for t in candidates if t.gpus >= gpus]
    most_cpu = max(usable, key=lambda t: t.vcpus)
    if cpu > most_cpu.vcpus:
        return (
            f"cpu={cpu:g} is more than any size of {families} has (the largest, "
            f"{most_cpu.name}, has {most_cpu.vcpus} vCPUs); ask for at most "
            f"{most_cpu.vcpus} vCPUs per worker, or name larger types in instance_types"
        )
    roomiest = max((t for t in usable if t.vcpus >= cpu), key=lambda t: t.registered_memory_mib)
    larger = _roomier_families(cpu, memory_mib, gpus, candidates)
    choose = f"choose {' or '.join(larger)} or less memory" if larger else "ask for less memory"
    return (
        f"memory={_shown(memory_mib)} does not fit any size of {families} with cpu={cpu:g} "
        f"(the roomiest, {roomiest.name}, registers about {roomiest.registered_memory_mib:,} "
        f"MiB for tasks: its {roomiest.memory_mib:,} MiB less the system's share and "
        f"ECS_RESERVED_MEMORY); {choose}"
    )


def _roomier_families(
    cpu: float, memory_mib: int, gpus: int, candidates: list[InstanceType]
) -> list[str]:
    """Families of the same generation and maker, more memory per vCPU, that would fit."""
    found = []
    for family in dict.fromkeys(t.family for t in candidates):
        for letter in _RATIOS:
            other = letter + family[1:]
            if (
                other != family
                and other in _BY_FAMILY
                and other not in found
                and any(t.workers_that_fit(cpu, memory_mib, gpus) for t in _BY_FAMILY[other])
            ):
                found.append(other)
    return found[:3]


def _shown(mib: int) -> str:
    return f"{mib / _GIB:g}GB" if mib % (_GIB // 4) == 0 else f"{mib}MiB"


@dataclass(frozen=True)
class Kickstart:
    """The fewest instances that carry a run's workers: what to ask the groups for."""

    instances: list[tuple[InstanceType, int]]

    @property
    def count(self) -> int:
        return sum(n for _, n in self.instances)

    @property
    def vcpus(self) -> int:
        """vCPUs these instances count against the account's quota."""
        return sum(t.vcpus * n for t, n in self.instances)

    def first_in(self, types: list[InstanceType]) -> list[InstanceType]:
        """``types`` with this plan's first, the type carrying the most workers leading: an
        on-demand group launches its first type ("prioritized"), so the count asked for
        carries the workers (smallest first, it took four times the instances)."""
        planned = [t for t, _ in self.instances]
        return planned + [t for t in types if t not in planned]


def fewest_instances(
    workers: int, cpu: float, memory_mib: int, types: Iterable[InstanceType], gpus: int = 0
) -> Kickstart:
    """The fewest instances of ``types`` that carry ``workers`` workers, binpacked as ECS
    does: as many as needed of the type that carries the most, and for the rest the
    smallest type that carries them. An estimate: a mixed group launches the types it finds,
    so the fleet asks for this count and lets managed scaling top it up."""
    fits = [(t, t.workers_that_fit(cpu, memory_mib, gpus)) for t in types]
    fits = [(t, n) for t, n in fits if n > 0]
    if not fits or workers <= 0:
        return Kickstart([])
    largest, most = max(fits, key=lambda pair: (pair[1], -pair[0].vcpus))
    full, rest = divmod(workers, most)
    plan = [(largest, full)] if full else []
    if rest:
        last = min((t for t, n in fits if n >= rest), key=lambda t: (t.vcpus, t.memory_mib))
        if plan and last == largest:
            plan = [(largest, full + 1)]
        else:
            plan.append((last, 1))
    return Kickstart(plan)


def most_workers_within(
    vcpus: float, workers: int, cpu: float, memory_mib: int, types: list[InstanceType], gpus: int
) -> int:
    """The most of ``workers`` workers whose ``fewest_instances`` count no more than
    ``vcpus`` against a quota (0 when not one fits)."""
    low, high = 0, workers
    while low < high:  # (the instances' vCPUs grow with the workers: bisect)
        middle = (low + high + 1) // 2
        if fewest_instances(middle, cpu, memory_mib, types, gpus).vcpus <= vcpus:
            low = middle
        else:
            high = middle - 1
    return low
