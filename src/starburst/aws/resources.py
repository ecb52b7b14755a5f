"""What ``starburst setup`` creates: names, tags and the exact settings of each resource."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

#: Every resource starburst creates carries this tag; teardown removes only what carries it.
TAG_KEY = "starburst"
TAG_VALUE = "managed"

FARGATE_ON_DEMAND_QUOTA = "L-3032A538"
FARGATE_SPOT_QUOTA = "L-36FBB829"
EXECUTION_POLICY_NAME = "starburst-image-and-logs"
#: What setup attached to the execution role before it scoped its own policy: detached now.
FORMER_EXECUTION_POLICY_ARN = (
    "arn:aws:iam::aws:policy/service-role/AmazonECSTaskExecutionRolePolicy"
)
TASK_POLICY_NAME = "starburst-bucket-access"
#: ECR tags never move: an image's tag is its environment's fingerprint.
IMAGE_TAG_MUTABILITY = "IMMUTABLE"
RUN_DATA_EXPIRY_DAYS = 7
DEFAULT_LOG_RETENTION_DAYS = 14


@dataclass(frozen=True)
class Names:
    """The names of starburst's resources in one account and region."""

    account_id: str
    region: str

    @property
    def bucket(self) -> str:
        return f"starburst-{self.account_id}-{self.region}"

    @property
    def repository(self) -> str:
        return "starburst-workers"

    @property
    def cluster(self) -> str:
        return "starburst"

    @property
    def execution_role(self) -> str:
        return f"starburst-execution-{self.region}"

    @property
    def task_role(self) -> str:
        return f"starburst-task-{self.region}"

    @property
    def log_group(self) -> str:
        return "/starburst/workers"

    @property
    def security_group(self) -> str:
        return "starburst-workers"

    @property
    def bucket_arn(self) -> str:
        return f"arn:aws:s3:::{self.bucket}"

    @property
    def repository_arn(self) -> str:
        return f"arn:aws:ecr:{self.region}:{self.account_id}:repository/{self.repository}"

    @property
    def log_group_arn(self) -> str:
        return f"arn:aws:logs:{self.region}:{self.account_id}:log-group:{self.log_group}"


def bucket_policy(names: Names) -> dict[str, Any]:
    """Deny every request that does not use TLS."""
    return {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Sid": "DenyInsecureTransport",
                "Effect": "Deny",
                "Principal": "*",
                "Action": "s3:*",
                "Resource": [names.bucket_arn, f"{names.bucket_arn}/*"],
                "Condition": {"Bool": {"aws:SecureTransport": "false"}},
            }
        ],
    }


def bucket_lifecycle() -> dict[str, Any]:
    """Expire run data after a week; session records are removed by cleanup, never by age."""
    return {
        "Rules": [
            {
                "ID": "starburst-expire-run-data",
                "Filter": {"Prefix": "data/"},
                "Status": "Enabled",
                "Expiration": {"Days": RUN_DATA_EXPIRY_DAYS},
            },
            {
                "ID": "starburst-abort-incomplete-uploads",
                "Filter": {"Prefix": ""},
                "Status": "Enabled",
                "AbortIncompleteMultipartUpload": {"DaysAfterInitiation": 1},
            },
        ]
    }


BUCKET_ENCRYPTION = {"Rules": [{"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "AES256"}}]}
PUBLIC_ACCESS_BLOCK = {
    "BlockPublicAcls": True,
    "IgnorePublicAcls": True,
    "BlockPublicPolicy": True,
    "RestrictPublicBuckets": True,
}

REPOSITORY_LIFECYCLE = {
    "rules": [
        {
            "rulePriority": 1,
            "description": "Remove untagged worker images after a day",
            "selection": {
                "tagStatus": "untagged",
                "countType": "sinceImagePushed",
                "countUnit": "days",
                "countNumber": 1,
            },
            "action": {"type": "expire"},
        }
    ]
}


def ecs_tasks_trust(names: Names) -> dict[str, Any]:
    """Who may take starburst's roles: ECS tasks, on behalf of this account only (so that
    ECS acting for another account cannot be made to use them)."""
    return {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Principal": {"Service": "ecs-tasks.amazonaws.com"},
                "Action": "sts:AssumeRole",
                "Condition": {
                    "StringEquals": {"aws:SourceAccount": names.account_id},
                    "ArnLike": {
                        "aws:SourceArn": f"arn:aws:ecs:{names.region}:{names.account_id}:*"
                    },
                },
            }
        ],
    }


def execution_role_policy(names: Names) -> dict[str, Any]:
    """What ECS may do to start a worker: pull from starburst's repository only, and write
    to starburst's log group only (rather than the managed policy's every repository and
    every log group)."""
    return {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Sid": "SignInToTheRegistry",
                "Effect": "Allow",
                "Action": ["ecr:GetAuthorizationToken"],
                "Resource": ["*"],  # (it names no repository)
            },
            {
                "Sid": "PullWorkerImages",
                "Effect": "Allow",
                "Action": [
                    "ecr:BatchCheckLayerAvailability",
                    "ecr:BatchGetImage",
                    "ecr:GetDownloadUrlForLayer",
                ],
                "Resource": [names.repository_arn],
            },
            {
                "Sid": "WriteWorkerLogs",
                "Effect": "Allow",
                "Action": ["logs:CreateLogStream", "logs:PutLogEvents"],
                "Resource": [names.log_group_arn, f"{names.log_group_arn}:*"],
            },
        ],
    }


def task_role_policy(names: Names) -> dict[str, Any]:
    """What a worker may do: read, write and list its own bucket; and, to supervise a
    detached session, start (tagged as starburst's), watch and stop starburst-tagged tasks
    of starburst's task definitions in starburst's cluster, passing only starburst's two
    roles. Nothing else."""
    ecs = f"arn:aws:ecs:{names.region}:{names.account_id}"
    roles = [
        f"arn:aws:iam::{names.account_id}:role/{role}"
        for role in (names.execution_role, names.task_role)
    ]
    in_cluster = {"ArnEquals": {"ecs:cluster": f"{ecs}:cluster/{names.cluster}"}}

    def tagged(kind: str) -> dict[str, str]:
        return {f"aws:{kind}/{TAG_KEY}": TAG_VALUE}

    return {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Sid": "ListTheBucket",
                "Effect": "Allow",
                "Action": ["s3:ListBucket"],
                "Resource": [names.bucket_arn],
            },
            {
                "Sid": "ReadAndWriteObjects",
                "Effect": "Allow",
                "Action": ["s3:GetObject", "s3:PutObject", "s3:DeleteObject"],
                "Resource": [f"{names.bucket_arn}/*"],
            },
            {
                "Sid": "SuperviseStartWorkers",
                "Effect": "Allow",
                "Action": ["ecs:RunTask"],
                "Resource": [f"{ecs}:task-definition/starburst-worker-*"],
                "Condition": {
                    **in_cluster,
                    "StringEquals": {f"aws:RequestTag/{TAG_KEY}": TAG_VALUE},
                },
            },
            {
                "Sid": "SuperviseTagNewWorkers",
                "Effect": "Allow",
                "Action": ["ecs:TagResource"],
                "Resource": [f"{ecs}:task/{names.cluster}/*"],
                "Condition": {"StringEquals": {"ecs:CreateAction": "RunTask"}},
            },
            {
                "Sid": "SuperviseWatchAndStopWorkers",
                "Effect": "Allow",
                "Action": ["ecs:DescribeTasks", "ecs:StopTask"],
                "Resource": [f"{ecs}:task/{names.cluster}/*"],
                "Condition": {"StringEquals": tagged("ResourceTag")},
            },
            {
                "Sid": "SuperviseListWorkers",
                "Effect": "Allow",
                "Action": ["ecs:ListTasks"],
                "Resource": ["*"],
                "Condition": in_cluster,
            },
            {
                "Sid": "PassOnlyStarburstRoles",
                "Effect": "Allow",
                "Action": ["iam:PassRole"],
                "Resource": roles,
                "Condition": {"StringEquals": {"iam:PassedToService": "ecs-tasks.amazonaws.com"}},
            },
        ],
    }


def same_document(a: Any, b: Any) -> bool:
    """Whether two policy documents (dicts or JSON text) say the same thing."""
    as_dict = [json.loads(x) if isinstance(x, str) else x for x in (a, b)]
    return _normalise(as_dict[0]) == _normalise(as_dict[1])


def _normalise(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _normalise(v) for k, v in value.items()}
    if isinstance(value, list):
        items = [_normalise(v) for v in value]
        return items[0] if len(items) == 1 else items
    return value
