"""The EC2 backend: each worker is an ECS task on an EC2 instance (Spot or on-demand) of the
Auto Scaling groups ``starburst setup --ec2`` makes, several workers packed on one instance;
the account's S3 bucket is the store.

This module is light (boto3 is imported only when a session is placed): the tasks and
instances are ``fleet.py``'s, the choice of instance types ``instances.py``'s.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..base import Backend

if TYPE_CHECKING:
    from ...cost.prices import PriceBook
    from ...options import WorkerSpec
    from ...store import Store
    from ..base import Placement


class Ec2Backend(Backend):
    """Workers as ECS tasks on EC2 instances: GPUs, any size an instance type carries, many
    workers per instance.

    ``spot`` is off by default, as on Fargate: ``spot=True`` means the same on every
    backend, and a user opts in to interruptions (and to the Spot vCPU quota) knowingly.
    """

    name = "ec2"
    remote = True
    #: An instance boots and registers with ECS in one to two minutes, then pulls the image.
    show_up_seconds = 600.0
    offers_spot = True
    limits_memory = True
    chooses_instances = True
    keeps_warm = True

    def fit(
        self, workers: int, cpu: float | None, memory_mib: int | None
    ) -> tuple[int, float | None, int | None]:
        """1 vCPU when ``cpu`` is not given, 1.75 GiB per vCPU when ``memory`` is not."""
        from .fleet import default_memory_mib

        cpu = 1 if cpu is None else cpu
        return workers, cpu, memory_mib or default_memory_mib(cpu)

    def fit_instances(self, spec: WorkerSpec) -> None:
        """Refuse, before any AWS call, a worker no instance type can carry (the error
        names the value and the fix)."""
        from .fleet import default_memory_mib
        from .instances import choose_instance_types

        memory = spec.memory_mib or default_memory_mib(spec.cpu)
        types = list(spec.instance_types) or None
        choose_instance_types(spec.cpu, memory, spec.gpus, types, spec.arch)

    def place(self, spec: WorkerSpec, session_id: str, detached: bool) -> Placement:
        from .fleet import place_on_ec2

        return place_on_ec2(spec, session_id)

    def reopen(self, session_id: str, store: Store, launch: dict[str, Any]) -> Placement:
        from ..ecs_tasks import reopen_session
        from .fleet import Ec2Fleet

        return reopen_session(Ec2Fleet, session_id, store, launch)

    def session_stores(self) -> list[Store]:
        from ..ecs_tasks import account_store

        store = account_store()
        return [] if store is None else [store]

    def remove_unreadable(self, store: Store, session_id: str) -> None:
        """Stop the session's EC2 tasks, remove its task definitions and role, delete its
        data, give back the instances it leaves empty."""
        from ...config import Config
        from ...store.s3 import S3Store
        from .fleet import discard_unreadable_on_ec2

        if isinstance(store, S3Store) and Config.load().aws.get("ec2"):
            discard_unreadable_on_ec2(store, session_id)

    def instances_hourly(
        self, spec: WorkerSpec, workers: int, book: PriceBook
    ) -> tuple[float, tuple[tuple[str, int], ...]] | None:
        """The instances the kick-start asks for (``fewest_instances`` of the session's
        types), each at its type's price with its root volume and IPv4 address."""
        from ...cost.ec2_prices import InstanceShare
        from .fleet import default_memory_mib
        from .instances import choose_instance_types, fewest_instances

        memory = spec.memory_mib or default_memory_mib(spec.cpu)
        named = list(spec.instance_types) or None
        types = choose_instance_types(spec.cpu, memory, spec.gpus, named, spec.arch)
        plan = fewest_instances(workers, spec.cpu, memory, types, spec.gpus)
        rate = book.rate(arch=types[0].arch, spot=spec.spot)
        assert isinstance(rate, InstanceShare), "an EC2 price book prices instances"
        hourly = sum(n * rate.instance_hour(kind.name) for kind, n in plan.instances)
        kinds = sorted(((k.name, n) for k, n in plan.instances), key=lambda p: (-p[1], p[0]))
        return hourly, tuple(kinds)

    def price_book(self) -> PriceBook | None:
        """EC2 prices in the configured region (the built-in table if AWS is not reachable)."""
        from ...aws.connection import connect
        from ...cost.ec2_prices import ec2_prices, fallback_book
        from ...errors import StarburstError

        try:
            aws = connect()
        except StarburstError as exc:
            return fallback_book("us-east-1", f"could not open AWS: {exc}")
        return ec2_prices(aws)
