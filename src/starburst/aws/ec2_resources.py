"""What ``setup --ec2`` creates, and what a run sets in it: the exact settings of the ec2
backend's launch templates and Auto Scaling groups (EC2_FACTS §4, §8.1). Pure: no AWS call.

The names of these resources are in ``resources.Names``; ``ec2_setup`` creates them.
"""

from __future__ import annotations

import base64
import math
from typing import Any

from ..backends.ec2.instances import ECS_RESERVED_MEMORY_MIB, InstanceType
from . import resources as r

#: The ECS-optimised AMIs, resolved by EC2 at each launch (always the recommended one).
AMI_PARAMETERS = {
    "x86_64": "/aws/service/ecs/optimized-ami/amazon-linux-2023/recommended/image_id",
    "arm64": "/aws/service/ecs/optimized-ami/amazon-linux-2023/arm64/recommended/image_id",
    # NVIDIA driver and container toolkit included. EC2_FACTS §4 names only AL2's GPU AMI;
    # AL2 reached its end of support in 2026, and public setups resolve this AL2023 one.
    "gpu": "/aws/service/ecs/optimized-ami/amazon-linux-2023/gpu/recommended/image_id",
}
#: Root volume sizes (gp3): images are cached there; CUDA images are larger.
ROOT_VOLUME_GIB = {"x86_64": 30, "arm64": 30, "gpu": 100}
#: Instances an Auto Scaling group may have when the vCPU quota cannot be read.
DEFAULT_MAX_INSTANCES = 20


def user_data(cluster: str, gpu: bool = False) -> str:
    """The instance's boot script (base64): the ECS agent's settings (EC2_FACTS §4)."""
    settings = [
        f"ECS_CLUSTER={cluster}",
        "ECS_ENABLE_TASK_IAM_ROLE=true",
        "ECS_ENABLE_TASK_IAM_ROLE_NETWORK_HOST=true",
        "ECS_ENABLE_SPOT_INSTANCE_DRAINING=true",
        f"ECS_RESERVED_MEMORY={ECS_RESERVED_MEMORY_MIB}",
        "ECS_ENGINE_TASK_CLEANUP_WAIT_DURATION=10m",
        "ECS_IMAGE_PULL_BEHAVIOR=prefer-cached",
        "ECS_CONTAINER_STOP_TIMEOUT=90s",
        *(["ECS_ENABLE_GPU_SUPPORT=true"] if gpu else []),
    ]
    script = "#!/bin/bash\ncat <<'EOF' >> /etc/ecs/ecs.config\n" + "\n".join(settings) + "\nEOF\n"
    return base64.b64encode(script.encode()).decode()


def tags() -> list[dict[str, str]]:
    """starburst's tag, as EC2, IAM and Auto Scaling take it."""
    return [{"Key": r.TAG_KEY, "Value": r.TAG_VALUE}]


def launch_template_data(
    names: r.Names, kind: str, profile_arn: str, security_group: str
) -> dict[str, Any]:
    """What an instance of ``kind`` starts with: IMDSv2 with hop limit 2 (containers reach
    the metadata, for Spot notices), a public IP (host networking reaches ECR and S3
    without NAT), an encrypted gp3 root volume; no market options (the group decides Spot)."""
    tagged = [{"ResourceType": what, "Tags": tags()} for what in ("instance", "volume")]
    return {
        "ImageId": f"resolve:ssm:{AMI_PARAMETERS[kind]}",
        "IamInstanceProfile": {"Arn": profile_arn},
        "UserData": user_data(names.ec2_cluster, gpu=kind == "gpu"),
        "MetadataOptions": {
            "HttpTokens": "required",
            "HttpPutResponseHopLimit": 2,
            "HttpEndpoint": "enabled",
        },
        "BlockDeviceMappings": [
            {
                "DeviceName": "/dev/xvda",
                "Ebs": {
                    "VolumeType": "gp3",
                    "VolumeSize": ROOT_VOLUME_GIB[kind],
                    "Encrypted": True,
                    "DeleteOnTermination": True,
                },
            }
        ],
        "NetworkInterfaces": [
            {
                "DeviceIndex": 0,
                "AssociatePublicIpAddress": True,
                "Groups": [security_group],
                "DeleteOnTermination": True,
            }
        ],
        "TagSpecifications": tagged,
    }


def template_kind(instance: InstanceType) -> str:
    """The launch template an instance type starts from."""
    return "gpu" if instance.gpus else instance.arch


def overrides(names: r.Names, types: list[InstanceType]) -> list[dict[str, Any]]:
    """A mixed instances policy's types, each with the launch template of its kind (one
    group can hold x86 and Graviton types this way; no weights: capacity providers refuse
    them)."""
    return [
        {
            "InstanceType": t.name,
            "LaunchTemplateSpecification": {
                "LaunchTemplateName": names.launch_template(template_kind(t)),
                "Version": "$Default",
            },
        }
        for t in types
    ]


def max_instances(quota: float | None, types: list[InstanceType]) -> int:
    """An Auto Scaling group's MaxSize: as many of its largest type as the vCPU quota
    holds (at least one; ``DEFAULT_MAX_INSTANCES`` when the quota is unknown)."""
    if quota is None:
        return DEFAULT_MAX_INSTANCES
    return max(1, math.floor(quota / max(t.vcpus for t in types)))
