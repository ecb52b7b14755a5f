"""What ``starburst setup`` creates: names, tags and the exact settings of each resource."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, ClassVar

#: Every resource starburst creates carries this tag; teardown removes only what carries it.
TAG_KEY = "starburst"
TAG_VALUE = "managed"

FARGATE_ON_DEMAND_QUOTA = "L-3032A538"
FARGATE_SPOT_QUOTA = "L-36FBB829"
#: EC2 vCPU quotas (service code ``ec2``): (label, code, spot?, GPU families?).
EC2_QUOTAS = (
    ("ec2 standard on-demand", "L-1216C47A", False, False),
    ("ec2 standard spot", "L-34B43A08", True, False),
    ("ec2 G and VT on-demand", "L-DB2E81BA", False, True),
    ("ec2 G and VT spot", "L-3819A6DF", True, True),
)
#: The capacities of the ec2 backend: an Auto Scaling group and a capacity provider each.
EC2_CAPACITIES = ("spot", "on-demand")
#: Launch templates of the ec2 backend, one per kind of instance.
EC2_TEMPLATE_KINDS = ("x86_64", "arm64", "gpu")
INSTANCE_ROLE_POLICY_ARN = (
    "arn:aws:iam::aws:policy/service-role/AmazonEC2ContainerServiceforEC2Role"
)
EXECUTION_POLICY_NAME = "starburst-image-and-logs"
#: What setup attached to the execution role before it scoped its own policy: detached now.
FORMER_EXECUTION_POLICY_ARN = (
    "arn:aws:iam::aws:policy/service-role/AmazonECSTaskExecutionRolePolicy"
)
SESSION_POLICY_NAME = "starburst-session-access"
#: Each session's workers run as a role of their own, tagged with the session's id, under
#: this IAM path (teardown finds any a killed client left).
SESSION_ROLE_PATH = "/starburst/"
SESSION_TAG_KEY = "starburst-session"
#: ECR tags never move: an image's tag is its environment's fingerprint.
IMAGE_TAG_MUTABILITY = "IMMUTABLE"
RUN_DATA_EXPIRY_DAYS = 7
#: Session records outlive their run data, so that `sessions ls` still shows a finished
#: session, but not for ever: one that nobody cleaned up (its client was killed) goes after
#: this long, a week after its data. No session lives past 6 days (engine/session_record.py).
SESSION_RECORD_EXPIRY_DAYS = 14
DEFAULT_LOG_RETENTION_DAYS = 14


@dataclass(frozen=True)
class Names:
    """The names of starburst's resources in one account and region."""

    account_id: str
    region: str
    #: The ECS cluster of the ec2 backend (its own: capacity providers replace a cluster's
    #: whole list, and the PROVISIONING quota is per cluster).
    ec2_cluster: ClassVar[str] = "starburst-ec2"

    @property
    def instance_role(self) -> str:
        """The role of the ec2 backend's instances (the ECS agent's), and its profile."""
        return f"starburst-instance-{self.region}"

    @staticmethod
    def launch_template(kind: str) -> str:
        """The launch template of one kind of instance (``EC2_TEMPLATE_KINDS``)."""
        return "starburst-" + kind.replace("_", "-")

    @staticmethod
    def capacity(capacity: str) -> str:
        """The Auto Scaling group, and its capacity provider, of ``spot`` or ``on-demand``."""
        return "starburst-" + capacity

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
    def former_task_role(self) -> str:
        """The one task role of every session that earlier setups made (teardown removes it)."""
        return f"starburst-task-{self.region}"

    def session_role(self, session_id: str) -> str:
        """The role a session's workers run as (at most 64 characters)."""
        return f"starburst-{self.region}-{session_id}"

    def session_role_arn(self, session_id: str) -> str:
        path = SESSION_ROLE_PATH.strip("/")
        return f"arn:aws:iam::{self.account_id}:role/{path}/{self.session_role(session_id)}"

    def session_task_family(self, session_id: str) -> str:
        """The prefix of a session's task definitions: its workers may start only these."""
        return f"starburst-{session_id}"

    @property
    def execution_role_arn(self) -> str:
        return f"arn:aws:iam::{self.account_id}:role/{self.execution_role}"

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
    """Expire run data after a week, and session records a week later: cleanup removes
    them sooner; these rules are for sessions nobody cleaned up."""
    return {
        "Rules": [
            {
                "ID": "starburst-expire-run-data",
                "Filter": {"Prefix": "data/"},
                "Status": "Enabled",
                "Expiration": {"Days": RUN_DATA_EXPIRY_DAYS},
            },
            {
                "ID": "starburst-expire-session-records",
                "Filter": {"Prefix": "sessions/"},
                "Status": "Enabled",
                "Expiration": {"Days": SESSION_RECORD_EXPIRY_DAYS},
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
                # (an aws:SourceArn condition would add nothing: any ECS resource of this
                # same account would match it)
                "Condition": {"StringEquals": {"aws:SourceAccount": names.account_id}},
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


def session_role_policy(
    names: Names, session_id: str, cluster: str | None = None, reads_instances: bool = False
) -> dict[str, Any]:
    """What the workers of one session may do: read and write that session's keys only
    (``sessions/<sid>/``, ``data/<sid>/``; listing the bucket shows key names, no more); and,
    to supervise a detached session, start workers of that session's task definitions only
    (tagged as its own), watch and stop that session's tasks in the session's ``cluster``
    (a name or ARN; Fargate's by default), passing only the execution role and this role.
    With ``reads_instances`` (the ec2 backend), also read the instances and their prices, so
    that the session's cost is its instances' hours: describing, never changing (a worker
    never scales, drains or terminates an instance; managed scaling does, for the tasks it
    starts). Nothing else: another session's data, tasks and role are out of reach."""
    ecs = f"arn:aws:ecs:{names.region}:{names.account_id}"
    cluster_name = (cluster or names.cluster).rsplit("/", 1)[-1]
    in_cluster = {"ArnEquals": {"ecs:cluster": f"{ecs}:cluster/{cluster_name}"}}
    own_tasks = {f"aws:ResourceTag/{SESSION_TAG_KEY}": session_id}
    policy: dict[str, Any] = {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Sid": "ListTheBucket",
                "Effect": "Allow",
                "Action": ["s3:ListBucket"],
                "Resource": [names.bucket_arn],
            },
            {
                "Sid": "ReadAndWriteThisSession",
                "Effect": "Allow",
                "Action": ["s3:GetObject", "s3:PutObject", "s3:DeleteObject"],
                "Resource": [
                    f"{names.bucket_arn}/sessions/{session_id}/*",
                    f"{names.bucket_arn}/data/{session_id}/*",
                ],
            },
            {
                "Sid": "SuperviseStartWorkers",
                "Effect": "Allow",
                "Action": ["ecs:RunTask"],
                "Resource": [f"{ecs}:task-definition/{names.session_task_family(session_id)}-*"],
                "Condition": {
                    **in_cluster,
                    "StringEquals": {
                        f"aws:RequestTag/{TAG_KEY}": TAG_VALUE,
                        f"aws:RequestTag/{SESSION_TAG_KEY}": session_id,
                    },
                },
            },
            {
                "Sid": "SuperviseTagNewWorkers",
                "Effect": "Allow",
                "Action": ["ecs:TagResource"],
                "Resource": [f"{ecs}:task/{cluster_name}/*"],
                "Condition": {"StringEquals": {"ecs:CreateAction": "RunTask"}},
            },
            {
                "Sid": "SuperviseWatchAndStopWorkers",
                "Effect": "Allow",
                "Action": ["ecs:DescribeTasks", "ecs:StopTask"],
                "Resource": [f"{ecs}:task/{cluster_name}/*"],
                "Condition": {"StringEquals": own_tasks},
            },
            {
                "Sid": "SuperviseListWorkers",
                "Effect": "Allow",
                "Action": ["ecs:ListTasks"],
                "Resource": ["*"],
                "Condition": in_cluster,
            },
            {
                "Sid": "PassOnlyThisSessionsRoles",
                "Effect": "Allow",
                "Action": ["iam:PassRole"],
                "Resource": [names.execution_role_arn, names.session_role_arn(session_id)],
                "Condition": {"StringEquals": {"iam:PassedToService": "ecs-tasks.amazonaws.com"}},
            },
        ],
    }
    if reads_instances:
        policy["Statement"] += [
            {
                "Sid": "SuperviseReadInstancesAndPrices",
                "Effect": "Allow",
                "Action": [  # (describe calls that take no resource-level permission)
                    "ec2:DescribeInstances",
                    "ec2:DescribeSpotPriceHistory",
                    "pricing:GetProducts",
                    "autoscaling:DescribeAutoScalingGroups",
                    "autoscaling:DescribeScalingActivities",
                ],
                "Resource": ["*"],
            },
            {
                "Sid": "SuperviseReadContainerInstances",
                "Effect": "Allow",
                "Action": ["ecs:ListContainerInstances", "ecs:DescribeContainerInstances"],
                "Resource": [
                    f"{ecs}:cluster/{cluster_name}",
                    f"{ecs}:container-instance/{cluster_name}/*",
                ],
            },
        ]
    return policy


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
