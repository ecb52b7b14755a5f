"""Choosing EC2 instance types for a run's workers, and the fewest instances that carry them
(``backends/ec2/instances.py``: pure, no AWS)."""

from __future__ import annotations

import math

import pytest

from starburst.backends.ec2.instances import (
    CATALOGUE,
    ECS_RESERVED_MEMORY_MIB,
    MAX_TYPES_PER_GROUP,
    choose_instance_types,
    fewest_instances,
    most_workers_within,
)
from starburst.errors import ConfigurationError

GIB = 1024


def _names(**request: object) -> list[str]:
    return [t.name for t in choose_instance_types(**request)]  # type: ignore[arg-type]


def test_the_catalogue_knows_the_families_users_name() -> None:
    for name, vcpus, gib, arch, gpus in [
        ("c7i.2xlarge", 8, 16, "x86_64", 0),
        ("c6g.large", 2, 4, "arm64", 0),
        ("m7g.4xlarge", 16, 64, "arm64", 0),
        ("r6i.xlarge", 4, 32, "x86_64", 0),
        ("c5.9xlarge", 36, 72, "x86_64", 0),
        ("g5.12xlarge", 48, 192, "x86_64", 4),
        ("g4dn.xlarge", 4, 16, "x86_64", 1),
        ("g6.48xlarge", 192, 768, "x86_64", 8),
    ]:
        t = CATALOGUE[name]
        assert (t.vcpus, t.memory_mib, t.arch, t.gpus) == (vcpus, gib * GIB, arch, gpus)


def test_registered_memory_is_below_nominal_by_the_system_share_and_the_agent_reserve() -> None:
    t = CATALOGUE["m7i.xlarge"]
    assert t.registered_memory_mib == math.floor(16 * GIB * 0.95) - ECS_RESERVED_MEMORY_MIB
    # A worker asking for an instance's whole nominal memory never goes on it.
    assert _names(cpu=1, memory_mib=16 * GIB, instance_types=["m7i.xlarge", "m7i.2xlarge"]) == [
        "m7i.2xlarge"
    ]


def test_by_default_one_ratio_family_group_on_x86_diversified_smallest_first() -> None:
    small = choose_instance_types(cpu=1, memory_mib=2 * GIB)
    assert {t.family[0] for t in small} == {"c"}
    assert {t.arch for t in small} == {"x86_64"}
    assert 10 <= len(small) <= MAX_TYPES_PER_GROUP
    assert len({t.family for t in small}) >= 4
    assert [t.vcpus for t in small] == sorted(t.vcpus for t in small)
    assert {t.family[0] for t in choose_instance_types(cpu=2, memory_mib=8 * GIB)} == {"m"}
    assert {t.family[0] for t in choose_instance_types(cpu=1, memory_mib=6 * GIB)} == {"r"}


def test_every_type_fits_a_worker_and_packs_several_unless_it_needs_the_whole_instance() -> None:
    for cpu, memory in [(1, 2 * GIB), (2, 8 * GIB), (0.5, 1 * GIB), (4, 30 * GIB)]:
        for t in choose_instance_types(cpu=cpu, memory_mib=memory):
            assert t.vcpus >= cpu and t.registered_memory_mib >= memory and t.gpus == 0
            assert t.workers_that_fit(cpu, memory) >= 2, (t.name, cpu, memory)
    # c7i.large carries one worker of 1 vCPU and 2 GB (its registered memory is below 4 GB):
    # left out of the family, kept when the user names that very type.
    assert "c7i.large" not in _names(cpu=1, memory_mib=2 * GIB, instance_types=["c7i"])
    assert _names(cpu=1, memory_mib=2 * GIB, instance_types=["c7i.large"]) == ["c7i.large"]
    # A worker that needs the whole instance gets one instance each.
    assert _names(cpu=60, memory_mib=100 * GIB, instance_types=["c7i"]) == ["c7i.16xlarge"]


def test_families_and_exact_types_mix_and_the_asg_limit_holds() -> None:
    chosen = _names(cpu=2, memory_mib=4 * GIB, instance_types=["c7i", "m7i.4xlarge"])
    assert "m7i.4xlarge" in chosen and all(n.startswith("c7i") or n == "m7i.4xlarge"
                                           for n in chosen)  # fmt: skip
    many = choose_instance_types(
        cpu=1, memory_mib=2 * GIB,
        instance_types=["c7i", "c6i", "c7a", "c6a", "m7i", "m6i", "m7a", "m6a", "r7i"],
    )  # fmt: skip
    assert len(many) == MAX_TYPES_PER_GROUP
    assert len({t.family for t in many}) == 9  # the cut takes the largest sizes, not families


def test_arch_graviton_and_mixed_architectures() -> None:
    assert {t.arch for t in choose_instance_types(cpu=1, memory_mib=2 * GIB, arch="arm64")} == {
        "arm64"
    }
    with pytest.raises(ConfigurationError, match=r"mixes architectures.*arch='arm64'"):
        choose_instance_types(cpu=1, memory_mib=2 * GIB, instance_types=["c7i", "c7g"])
    mixed = _names(cpu=1, memory_mib=2 * GIB, instance_types=["c7i", "c7g"], arch="arm64")
    assert mixed and all(n.startswith("c7g.") for n in mixed)
    with pytest.raises(ConfigurationError, match=r"none of instance_types=\['c7i'\] is arm64"):
        choose_instance_types(cpu=1, memory_mib=2 * GIB, instance_types=["c7i"], arch="arm64")
    with pytest.raises(ConfigurationError, match=r"arch='amd' is not an architecture"):
        choose_instance_types(cpu=1, memory_mib=2 * GIB, arch="amd")


def test_gpu_workers_only_on_gpu_types() -> None:
    chosen = choose_instance_types(cpu=4, memory_mib=16 * GIB, gpus=1)
    assert chosen and all(t.gpus >= 1 for t in chosen)
    assert {t.family for t in chosen} == {"g6", "g5", "g4dn"}
    assert "g5.xlarge" not in {t.name for t in chosen}  # 16 GB nominal registers less
    assert all(t.gpus >= 4 for t in choose_instance_types(cpu=4, memory_mib=16 * GIB, gpus=4))
    with pytest.raises(ConfigurationError, match=r"gpus=1 needs a GPU instance type.*g6, g5"):
        choose_instance_types(cpu=1, memory_mib=2 * GIB, gpus=1, instance_types=["c7i"])
    with pytest.raises(ConfigurationError, match=r"gpus=16 is more than .* at most 8 GPUs"):
        choose_instance_types(cpu=1, memory_mib=2 * GIB, gpus=16)
    with pytest.raises(ConfigurationError, match=r"gpus=1 with arch='arm64'"):
        choose_instance_types(cpu=1, memory_mib=2 * GIB, gpus=1, arch="arm64")


def test_a_worker_no_type_can_carry_is_refused_naming_the_value_and_the_fix() -> None:
    with pytest.raises(ConfigurationError) as memory:
        choose_instance_types(cpu=2, memory_mib=126 * GIB, instance_types=["c7i"])
    assert "memory=126GB does not fit any size of c7i" in str(memory.value)
    assert "c7i.16xlarge, registers about 124,262 MiB" in str(memory.value)
    assert "choose m7i or r7i or less memory" in str(memory.value)
    with pytest.raises(ConfigurationError, match=r"cpu=96 is more .* c7i.16xlarge, has 64 vCPUs"):
        choose_instance_types(cpu=96, memory_mib=2 * GIB, instance_types=["c7i"])
    with pytest.raises(ConfigurationError, match=r"'c7i.3xlarge'.*its sizes: large, xlarge"):
        choose_instance_types(cpu=1, memory_mib=2 * GIB, instance_types=["c7i.3xlarge"])
    with pytest.raises(ConfigurationError, match=r"'z9z', which starburst does not know"):
        choose_instance_types(cpu=1, memory_mib=2 * GIB, instance_types=["z9z"])


def test_fewest_instances_binpacks_the_workers() -> None:
    types = choose_instance_types(1, 2 * GIB, instance_types=["c7i.xlarge", "c7i.2xlarge"])
    carries = {t.name: t.workers_that_fit(1, 2 * GIB) for t in types}
    assert carries == {"c7i.xlarge": 3, "c7i.2xlarge": 7}
    plan = fewest_instances(200, 1, 2 * GIB, types)
    assert plan.count == math.ceil(200 / 7)
    assert plan.vcpus == 8 * plan.count
    # The remainder goes on the smallest type that carries it.
    ten = fewest_instances(10, 1, 2 * GIB, types)
    assert [(t.name, n) for t, n in ten.instances] == [("c7i.2xlarge", 1), ("c7i.xlarge", 1)]
    assert fewest_instances(0, 1, 2 * GIB, types).count == 0
    gpu = choose_instance_types(4, 16 * GIB, gpus=1)
    assert fewest_instances(8, 4, 16 * GIB, gpu, gpus=1).count == 1  # one 8-GPU instance


def test_a_quota_holds_the_workers_whose_fewest_instances_fit_in_it() -> None:
    types = choose_instance_types(1, 2 * GIB, instance_types=["c7i.xlarge", "c7i.2xlarge"])
    # 12 vCPUs: one 2xlarge (7 workers) and one xlarge (3): 10 workers, not 12 / 8 * 7.
    assert most_workers_within(12, 50, 1, 2 * GIB, types, 0) == 10
    assert most_workers_within(12, 6, 1, 2 * GIB, types, 0) == 6  # (no more than asked)
    assert most_workers_within(3, 50, 1, 2 * GIB, types, 0) == 0  # not even an xlarge
    # GPU types are large: a small quota still holds the smallest one that carries a worker.
    gpu = choose_instance_types(1, 8 * GIB, gpus=1)
    smallest = min(t.vcpus for t in gpu)
    assert most_workers_within(smallest, 4, 1, 8 * GIB, gpu, 1) >= 1
