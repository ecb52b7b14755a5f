"""The Fargate backend's fleet: each worker is an ECS task on Fargate (or Fargate Spot),
started with RunTask as ``ecs_tasks`` does for every ECS fleet.

What is Fargate's own: the task size is one of Fargate's pairs, tasks use awsvpc networking
with a public IP, and spot falls back to on-demand after repeated launches found no Fargate
Spot capacity.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ...aws.connection import Aws
from ...aws.quotas import fargate_quotas
from ...cost.prices import PriceBook, fargate_prices
from ...errors import StarburstError
from ...store import Store
from ..ecs_tasks import EcsTaskFleet, place_session
from .sizes import fargate_size

if TYPE_CHECKING:
    from ...options import WorkerSpec
    from ..base import LaunchRequest, Placement

#: Launches in a row that found no spot capacity before spot falls back to on-demand.
_CAPACITY_RETRIES = 3


class FargateFleet(EcsTaskFleet):
    """Workers as ECS tasks on Fargate (or Fargate Spot)."""

    name = "fargate"
    quota_name = "Fargate vCPU quota"

    def __init__(self, aws: Aws, resources: dict[str, Any], image: str) -> None:
        super().__init__(aws, resources, image)
        self._capacity_failures = 0  # launches in a row that found no capacity
        self.spot_fallback = False

    @staticmethod
    def cluster_in(resources: dict[str, Any]) -> str:
        return str(resources["cluster"])

    def size(self, spec: WorkerSpec) -> tuple[int, int]:
        return fargate_size(spec.cpu, spec.memory_mib)

    def task_definition_body(self, cpu_units: int, memory_mib: int) -> dict[str, Any]:
        return {
            "networkMode": "awsvpc",
            "requiresCompatibilities": ["FARGATE"],
            "cpu": str(cpu_units),
            "memory": str(memory_mib),
            "runtimePlatform": {"cpuArchitecture": "X86_64", "operatingSystemFamily": "LINUX"},
            "containerDefinitions": [
                self.container(memory_mib, ["python", "-m", "starburst.worker"])
            ],
            **self.roles(),
        }

    def placement(self, spot: bool) -> dict[str, Any]:
        params: dict[str, Any] = {
            "networkConfiguration": {
                "awsvpcConfiguration": {
                    "subnets": self.resources["subnets"],
                    "securityGroups": [self.resources["security_group"]],
                    "assignPublicIp": "ENABLED"
                    if self.resources.get("assign_public_ip", True)
                    else "DISABLED",
                }
            }
        }
        if spot and not self.spot_fallback:
            params["capacityProviderStrategy"] = [{"capacityProvider": "FARGATE_SPOT", "weight": 1}]
        else:
            params["launchType"] = "FARGATE"
        return params

    def on_spot(self, task: dict[str, Any]) -> bool:
        return task.get("capacityProviderName") == "FARGATE_SPOT"

    def launch(self, request: LaunchRequest, stripes: list[int]) -> list[str]:
        ids = super().launch(request, stripes)
        if self.shortfall is None:
            self._capacity_failures = 0
        return ids

    def no_capacity(self, spec: WorkerSpec) -> None:
        """Count launches without capacity; spot falls back to on-demand after a few."""
        self._capacity_failures += 1
        if self._capacity_failures >= _CAPACITY_RETRIES and spec.spot and not self.spot_fallback:
            self.spot_fallback = True
            self._notices.append("Fargate Spot has no capacity right now: using on-demand workers.")

    def price_book(self) -> PriceBook:
        return fargate_prices(self.aws)

    def quota_room(self, spec: WorkerSpec) -> tuple[int, str] | None:
        try:
            quota = fargate_quotas(self.aws)[1 if spec.spot else 0]
        except StarburstError as exc:  # e.g. no permission to read quotas: launch and see
            self._notices.append(f"could not read the Fargate vCPU quota ({exc}).")
            return None
        fits = quota.workers_that_fit(spec.cpu)
        if fits is None:
            return None
        about = (
            f"({quota.label} quota {quota.code}: {quota.limit:g} vCPUs, {quota.used:g} in use; "
            "`starburst quota request VCPUS` asks for more)"
        )
        return fits, about


def place_on_fargate(spec: WorkerSpec, session_id: str) -> Placement:
    """The S3 store and Fargate fleet of the configured account (spot runs on X86_64)."""
    return place_session(FargateFleet, spec, session_id)


def discard_unreadable(store: Store, session_id: str) -> None:
    """Remove a session whose record cannot be read: its Fargate tasks, definitions, role
    and data."""
    from ..ecs_tasks import discard_unreadable as discard

    discard(FargateFleet, store, session_id)
