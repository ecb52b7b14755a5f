"""EC2 instance types as ECS sees them: size, architecture, GPUs, registered resources, price.

Sizes come from moto's own catalogue (every type AWS lists); on-demand prices (us-east-1,
Linux, USD per hour) from a short table of common types, and a per-vCPU/GiB/GPU model for
the others. Tests set the prices they rely on (``aws.prices``).
"""

from __future__ import annotations

from dataclasses import dataclass

from moto.ec2.models.instance_types import INSTANCE_TYPES

#: The part of nominal memory an ECS-optimised instance registers: "m4.large ... 8 GiB ...
#: translates to 7985 MiB available for tasks" (ECS memory management guide).
REGISTERED_MEMORY_SHARE = 7985 / 8192

#: On-demand Linux prices in us-east-1 (USD per hour) for the types tests use most.
ON_DEMAND_PRICES = {
    "c6i.large": 0.085,
    "c6i.xlarge": 0.17,
    "c6i.2xlarge": 0.34,
    "c7i.large": 0.08925,
    "c7i.xlarge": 0.1785,
    "c7i.2xlarge": 0.357,
    "c7g.large": 0.0725,
    "c7g.xlarge": 0.145,
    "m6i.large": 0.096,
    "m6i.xlarge": 0.192,
    "m7i.large": 0.1008,
    "m7i.xlarge": 0.2016,
    "m7i.2xlarge": 0.4032,
    "m7g.large": 0.0816,
    "m7g.xlarge": 0.1632,
    "r7i.large": 0.1323,
    "r7i.xlarge": 0.2646,
    "t3.medium": 0.0416,
    "g5.xlarge": 1.006,
    "g5.2xlarge": 1.212,
    "g6.xlarge": 0.8048,
}
_PER_VCPU, _PER_GIB, _PER_GPU = 0.025, 0.0055, 0.75  # the model for unlisted types
SPOT_SHARE = 0.35  # default Spot price as a share of on-demand


@dataclass(frozen=True)
class InstanceType:
    """One EC2 instance type."""

    name: str
    vcpus: int
    memory_mib: int
    gpus: int
    arch: str  # x86_64 or arm64

    @property
    def family(self) -> str:
        return self.name.partition(".")[0]

    @property
    def gpu_family(self) -> bool:
        """G and VT families: their own vCPU quotas (L-DB2E81BA, L-3819A6DF)."""
        return self.family.startswith(("g", "vt"))

    def registered_cpu(self) -> int:
        """CPU units the ECS agent registers (1024 per vCPU)."""
        return self.vcpus * 1024

    def registered_memory(self, reserved_mib: int = 0) -> int:
        """MiB the agent registers: what the OS reports, less ``ECS_RESERVED_MEMORY``."""
        return int(self.memory_mib * REGISTERED_MEMORY_SHARE) - reserved_mib

    def on_demand_price(self) -> float:
        """The us-east-1 on-demand Linux price (USD per hour)."""
        if self.name in ON_DEMAND_PRICES:
            return ON_DEMAND_PRICES[self.name]
        gib = self.memory_mib / 1024
        return round(self.vcpus * _PER_VCPU + gib * _PER_GIB + self.gpus * _PER_GPU, 4)


def instance_type(name: str) -> InstanceType:
    """The type called ``name``; KeyError names the unknown type."""
    try:
        info = INSTANCE_TYPES[name]
    except KeyError:
        raise KeyError(f"unknown EC2 instance type {name!r}") from None
    gpus = sum(g.get("Count", 0) for g in (info.get("GpuInfo") or {}).get("Gpus", []))
    arches = info.get("ProcessorInfo", {}).get("SupportedArchitectures") or ["x86_64"]
    return InstanceType(
        name=name,
        vcpus=int(info["VCpuInfo"]["DefaultVCpus"]),
        memory_mib=int(info["MemoryInfo"]["SizeInMiB"]),
        gpus=gpus,
        arch="arm64" if "arm64" in arches else "x86_64",
    )
