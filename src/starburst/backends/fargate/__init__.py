"""The Fargate backend: each worker is an ECS task on AWS Fargate (or Fargate Spot), sharing
the account's S3 bucket as its store. ``starburst setup`` provisions what it needs.

This module is light (boto3 is imported only when a session is placed); the tasks are
``fleet.py``'s, the valid sizes ``sizes.py``'s.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..base import Backend

if TYPE_CHECKING:
    from ...cost.prices import PriceBook
    from ...options import WorkerSpec
    from ...store import Store
    from ..base import Placement


class FargateBackend(Backend):
    """Workers as ECS tasks on Fargate: up to 16 vCPU and 120 GB each, billed per second."""

    name = "fargate"
    remote = True
    show_up_seconds = 180.0
    offers_spot = True
    limits_memory = True

    def fit(
        self, workers: int, cpu: float | None, memory_mib: int | None
    ) -> tuple[int, float | None, int | None]:
        """One of Fargate's cpu/memory pairs (1 vCPU when ``cpu`` is not given; the smallest
        memory for the cpu when ``memory`` is not); an invalid pair lists the valid ones."""
        from .sizes import fargate_size

        cpu = 1 if cpu is None else cpu
        return workers, cpu, fargate_size(cpu, memory_mib)[1]

    def place(self, spec: WorkerSpec, session_id: str, detached: bool) -> Placement:
        from .fleet import place_on_fargate

        return place_on_fargate(spec, session_id)

    def reopen(self, session_id: str, store: Store, launch: dict[str, Any]) -> Placement:
        from ..ecs_tasks import reopen_session
        from .fleet import FargateFleet

        return reopen_session(FargateFleet, session_id, store, launch)

    def session_stores(self) -> list[Store]:
        from ..ecs_tasks import account_store

        store = account_store()
        return [] if store is None else [store]

    def remove_unreadable(self, store: Store, session_id: str) -> None:
        """Stop the session's tasks, remove its task definitions and role, delete its data."""
        from ...store.s3 import S3Store
        from .fleet import discard_unreadable

        if isinstance(store, S3Store):
            discard_unreadable(store, session_id)

    def price_book(self) -> PriceBook | None:
        """Fargate's prices in the configured region (the built-in table if AWS is not
        reachable)."""
        from ...aws.connection import connect
        from ...cost.prices import PriceBook, fargate_prices
        from ...errors import StarburstError

        try:
            aws = connect()
        except StarburstError as exc:
            return PriceBook.fallback("us-east-1", f"could not open AWS: {exc}")
        return fargate_prices(aws)
