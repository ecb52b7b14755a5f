"""The object tests get from the ``aws`` fixture."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import boto3

from starburst.emulator.capacity import Ec2Capacity
from starburst.emulator.faults import Faults
from starburst.emulator.pricing import Prices
from starburst.emulator.quotas import Quotas
from starburst.emulator.runner import TaskRunner
from starburst.emulator.server import EmulatorServer

CREDENTIALS: dict[str, Any] = {"aws_access_key_id": "testing", "aws_secret_access_key": "testing"}


def wait_until(predicate: Callable[[], Any], what: str, timeout: float = 20.0) -> Any:
    """Poll until ``predicate`` is truthy and return it; fail naming ``what`` after
    ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.02)
    raise AssertionError(f"gave up after {timeout}s waiting for {what}")


class Emulator:
    """AWS as this test sees it: endpoint, identity, and the knobs moto does not have."""

    region = "us-east-1"

    def __init__(
        self,
        server: EmulatorServer,
        runner: TaskRunner,
        ec2: Ec2Capacity,
        config_dir: Path,
    ) -> None:
        self._server = server
        self.endpoint_url: str = server.url
        self.account_id: str = server.account_id
        self.config_dir: Path = config_dir  # STARBURST_CONFIG_DIR for this test
        self.runner: TaskRunner = runner
        self.ec2: Ec2Capacity = ec2  # Auto Scaling launches, container instances, placement
        self.quotas: Quotas = server.quotas
        self.prices: Prices = server.prices
        self.faults: Faults = server.faults

    @property
    def calls(self) -> Counter[str]:
        """How many times each API operation reached the emulator in this test."""
        assert self._server.layer is not None
        return self._server.layer.calls

    def session(self) -> boto3.Session:
        """A boto3 session with the emulator's credentials and region."""
        return boto3.Session(region_name=self.region, **CREDENTIALS)

    def client(self, service: str, **kwargs: Any) -> Any:
        """A boto3 client pointed at the emulator (``kwargs`` go to ``boto3.client``)."""
        kwargs.setdefault("region_name", self.region)
        client: Any = boto3.client  # (its overloads want a literal service name)
        return client(service, endpoint_url=self.endpoint_url, **CREDENTIALS, **kwargs)

    def reset(self) -> None:
        """Empty AWS and forget quotas, prices and faults (the fixture does this per test)."""
        self._server.reset()

    def network_configuration(self, public_ip: bool = True) -> dict[str, Any]:
        """An ``awsvpcConfiguration`` in the default VPC (moto needs subnet and group)."""
        ec2 = self.client("ec2")
        vpc = ec2.describe_vpcs(Filters=[{"Name": "is-default", "Values": ["true"]}])["Vpcs"][0]
        in_vpc = [{"Name": "vpc-id", "Values": [vpc["VpcId"]]}]
        subnets = [s["SubnetId"] for s in ec2.describe_subnets(Filters=in_vpc)["Subnets"]]
        groups = ec2.describe_security_groups(
            Filters=[*in_vpc, {"Name": "group-name", "Values": ["default"]}]
        )["SecurityGroups"]
        return {
            "awsvpcConfiguration": {
                "subnets": subnets[:2],
                "securityGroups": [groups[0]["GroupId"]],
                "assignPublicIp": "ENABLED" if public_ip else "DISABLED",
            }
        }

    def register_task_definition(
        self,
        family: str,
        command: list[str],
        *,
        cpu: str = "256",
        memory: str = "512",
        environment: dict[str, str] | None = None,
        log_group: str = "/emulator/tasks",
        stream_prefix: str = "task",
        container: str = "main",
        **container_extra: Any,
    ) -> str:
        """Register a Fargate task definition with one awslogs container; returns its ARN.

        Sets the container-level ``memory`` too (moto answers 500 without it).
        """
        definition = {
            "name": container,
            "image": "public.ecr.aws/docker/library/python:3.11-slim",
            "essential": True,
            "command": command,
            "memory": int(memory),
            "environment": [{"name": k, "value": v} for k, v in (environment or {}).items()],
            "logConfiguration": {
                "logDriver": "awslogs",
                "options": {
                    "awslogs-group": log_group,
                    "awslogs-region": self.region,
                    "awslogs-stream-prefix": stream_prefix,
                    "awslogs-create-group": "true",
                },
            },
            **container_extra,
        }
        answer = self.client("ecs").register_task_definition(
            family=family,
            requiresCompatibilities=["FARGATE"],
            networkMode="awsvpc",
            cpu=cpu,
            memory=memory,
            containerDefinitions=[definition],
        )
        return answer["taskDefinition"]["taskDefinitionArn"]

    def log_messages(self, group: str, stream: str) -> list[str]:
        """Every message in a CloudWatch Logs stream, oldest first."""
        logs = self.client("logs")
        messages: list[str] = []
        token = None
        while True:
            kwargs: dict[str, Any] = {"nextToken": token} if token else {}
            page = logs.get_log_events(
                logGroupName=group, logStreamName=stream, startFromHead=True, **kwargs
            )
            messages += [event["message"] for event in page["events"]]
            if not page["events"] or page.get("nextForwardToken") == token:
                return messages
            token = page.get("nextForwardToken")
