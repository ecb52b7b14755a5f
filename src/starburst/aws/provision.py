"""``starburst setup``, ``status`` and ``teardown``: the AWS resources starburst runs on.

Setup is idempotent: every step reads what is there, creates what is missing, corrects what
drifted, and leaves alone what is right, so a second run changes nothing and a run after a
half-finished one completes it. Teardown removes only resources that carry starburst's tag.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import botocore.exceptions

from ..config import Config
from ..errors import SetupRequiredError
from ..settings import resolve
from . import resources as r
from .connection import Aws, connect, translate_errors
from .session_roles import delete_role, leftover_session_roles

Say = Callable[[str], None]


@dataclass
class Step:
    """What setup did about one resource."""

    resource: str
    name: str
    outcome: str  # "exists", "created" or "updated"
    detail: str = ""


@dataclass
class SetupReport:
    """Everything setup did, and the quotas it read."""

    steps: list[Step] = field(default_factory=list)
    quotas: dict[str, float | None] = field(default_factory=dict)

    @property
    def changed(self) -> bool:
        return any(step.outcome != "exists" for step in self.steps)


def _error_code(exc: botocore.exceptions.ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


class _Provisioner:
    """Runs the setup steps against one account and region."""

    def __init__(self, aws: Aws, say: Say) -> None:
        self.aws = aws
        self.say = say
        self.names = r.Names(aws.account_id, aws.region)
        self.report = SetupReport()
        self.config = Config.load()
        self.s3 = aws.client("s3")
        self.iam = aws.client("iam")
        #: Every request about the bucket names its owner: S3 refuses one of another account.
        self.owned = {"ExpectedBucketOwner": aws.account_id}

    def record(self, resource: str, name: str, outcome: str, detail: str = "") -> None:
        self.report.steps.append(Step(resource, name, outcome, detail))
        mark = {"exists": "ok", "created": "created", "updated": "updated"}[outcome]
        self.say(f"  {mark:>8}  {resource:<16} {name}{f'  ({detail})' if detail else ''}")

    # Bucket --------------------------------------------------------------------------------

    def bucket(self) -> None:
        name = self.names.bucket
        with translate_errors(f"create the bucket {name}"):
            created = self._ensure_bucket(name)
            fixed = [
                label
                for label, ensure in (
                    ("encryption", self._ensure_encryption),
                    ("public access block", self._ensure_public_access_block),
                    ("TLS-only policy", self._ensure_bucket_policy),
                    ("lifecycle", self._ensure_lifecycle),
                )
                if ensure(name)
            ]
        outcome = "created" if created else ("updated" if fixed else "exists")
        self.record("bucket", name, outcome, ", ".join(fixed) if not created and fixed else "")

    def _ensure_bucket(self, name: str) -> bool:
        try:
            self.s3.head_bucket(Bucket=name, **self.owned)
            return False
        except botocore.exceptions.ClientError as exc:
            if _error_code(exc) in ("403", "AccessDenied"):
                raise SetupRequiredError(_not_our_bucket(name, self.aws.account_id)) from exc
            if _error_code(exc) not in ("404", "NoSuchBucket", "NotFound"):
                raise
        params: dict[str, Any] = {"Bucket": name}
        if self.aws.region != "us-east-1":
            params["CreateBucketConfiguration"] = {"LocationConstraint": self.aws.region}
        self.s3.create_bucket(**params)
        self.s3.put_bucket_tagging(
            Bucket=name,
            Tagging={"TagSet": [{"Key": r.TAG_KEY, "Value": r.TAG_VALUE}]},
            **self.owned,
        )
        return True

    def _ensure_encryption(self, name: str) -> bool:
        try:
            current = self.s3.get_bucket_encryption(Bucket=name, **self.owned)
            rules = current["ServerSideEncryptionConfiguration"]["Rules"]
            if any(
                rule.get("ApplyServerSideEncryptionByDefault", {}).get("SSEAlgorithm")
                in ("AES256", "aws:kms")
                for rule in rules
            ):
                return False
        except botocore.exceptions.ClientError as exc:
            if "ServerSideEncryptionConfigurationNotFound" not in _error_code(exc):
                raise
        self.s3.put_bucket_encryption(
            Bucket=name, ServerSideEncryptionConfiguration=r.BUCKET_ENCRYPTION, **self.owned
        )
        return True

    def _ensure_public_access_block(self, name: str) -> bool:
        try:
            current = self.s3.get_public_access_block(Bucket=name, **self.owned)
            if current["PublicAccessBlockConfiguration"] == r.PUBLIC_ACCESS_BLOCK:
                return False
        except botocore.exceptions.ClientError as exc:
            if _error_code(exc) != "NoSuchPublicAccessBlockConfiguration":
                raise
        self.s3.put_public_access_block(
            Bucket=name, PublicAccessBlockConfiguration=r.PUBLIC_ACCESS_BLOCK, **self.owned
        )
        return True

    def _ensure_bucket_policy(self, name: str) -> bool:
        wanted = r.bucket_policy(self.names)
        try:
            if r.same_document(
                self.s3.get_bucket_policy(Bucket=name, **self.owned)["Policy"], wanted
            ):
                return False
        except botocore.exceptions.ClientError as exc:
            if _error_code(exc) != "NoSuchBucketPolicy":
                raise
        self.s3.put_bucket_policy(Bucket=name, Policy=json.dumps(wanted), **self.owned)
        return True

    def _ensure_lifecycle(self, name: str) -> bool:
        wanted = r.bucket_lifecycle()
        try:
            current = self.s3.get_bucket_lifecycle_configuration(Bucket=name, **self.owned)
            if r.same_document({"Rules": current["Rules"]}, wanted):
                return False
        except botocore.exceptions.ClientError as exc:
            if _error_code(exc) != "NoSuchLifecycleConfiguration":
                raise
        self.s3.put_bucket_lifecycle_configuration(
            Bucket=name, LifecycleConfiguration=wanted, **self.owned
        )
        return True

    # Image repository ------------------------------------------------------------------------

    def repository(self) -> str:
        ecr = self.aws.client("ecr")
        name = self.names.repository
        fixed = []
        with translate_errors(f"create the image repository {name}"):
            try:
                repository = ecr.describe_repositories(repositoryNames=[name])["repositories"][0]
                created = False
            except ecr.exceptions.RepositoryNotFoundException:
                repository = ecr.create_repository(
                    repositoryName=name,
                    tags=[{"Key": r.TAG_KEY, "Value": r.TAG_VALUE}],
                    imageScanningConfiguration={"scanOnPush": False},
                    imageTagMutability=r.IMAGE_TAG_MUTABILITY,
                )["repository"]
                created = True
            if repository.get("imageTagMutability") != r.IMAGE_TAG_MUTABILITY:
                ecr.put_image_tag_mutability(
                    repositoryName=name, imageTagMutability=r.IMAGE_TAG_MUTABILITY
                )
                fixed.append("immutable tags")
            wanted = r.REPOSITORY_LIFECYCLE
            try:
                current = ecr.get_lifecycle_policy(repositoryName=name)["lifecyclePolicyText"]
                if not r.same_document(current, wanted):
                    fixed.append("lifecycle")
            except ecr.exceptions.LifecyclePolicyNotFoundException:
                fixed.append("lifecycle")
            if "lifecycle" in fixed:
                ecr.put_lifecycle_policy(
                    repositoryName=name, lifecyclePolicyText=json.dumps(wanted)
                )
        detail = ", ".join(fixed) if fixed and not created else ""
        self.record("repository", name, _outcome(created, bool(fixed)), detail)
        return str(repository["repositoryUri"])

    # Roles -----------------------------------------------------------------------------------

    def roles(self) -> str:
        """The execution role (ECS pulls the image and writes logs), brought to exactly what
        setup makes. Workers run as a role of their session's own (``session_roles``): the
        one task role of every session that earlier setups made is removed."""
        execution = self._role(
            self.names.execution_role, "image pulls and logs",
            r.EXECUTION_POLICY_NAME, r.execution_role_policy(self.names),
        )  # fmt: skip
        former = self.names.former_task_role
        with translate_errors(f"remove the role {former}"):
            if delete_role(self.iam, former):
                self.record("role", former, "updated", "removed: each session has its own")
        return execution

    def _role(self, name: str, purpose: str, policy_name: str, policy: dict[str, Any]) -> str:
        """Create the role ``name``, or repair it: its trust policy, and its inline policy
        ``policy_name``. The broad managed policy earlier setups attached is detached;
        policies someone else added (say, to give workers a data bucket) stay, and are named."""
        trust = r.ecs_tasks_trust(self.names)
        fixed, others = [], []
        with translate_errors(f"set up the role {name}"):
            try:
                role = self.iam.get_role(RoleName=name)["Role"]
                created = False
            except self.iam.exceptions.NoSuchEntityException:
                role = self.iam.create_role(
                    RoleName=name,
                    AssumeRolePolicyDocument=json.dumps(trust),
                    Description=f"starburst workers: {purpose}",
                    Tags=[{"Key": r.TAG_KEY, "Value": r.TAG_VALUE}],
                )["Role"]
                created = True
            if not r.same_document(role["AssumeRolePolicyDocument"], trust):
                self.iam.update_assume_role_policy(RoleName=name, PolicyDocument=json.dumps(trust))
                fixed.append("trust policy")
            for attached in self.iam.list_attached_role_policies(RoleName=name)["AttachedPolicies"]:
                if attached["PolicyArn"] == r.FORMER_EXECUTION_POLICY_ARN:
                    self.iam.detach_role_policy(RoleName=name, PolicyArn=attached["PolicyArn"])
                    fixed.append(f"{attached['PolicyName']} detached")
                else:
                    others.append(attached["PolicyName"])
            others += [p for p in self.iam.list_role_policies(RoleName=name)["PolicyNames"]
                       if p != policy_name]  # fmt: skip
            try:
                current = self.iam.get_role_policy(RoleName=name, PolicyName=policy_name)
                wrong = not r.same_document(current["PolicyDocument"], policy)
            except self.iam.exceptions.NoSuchEntityException:
                wrong = True
            if wrong:
                self.iam.put_role_policy(
                    RoleName=name, PolicyName=policy_name, PolicyDocument=json.dumps(policy)
                )
                fixed.append(f"{policy_name} policy")
        detail = ", ".join(fixed) if fixed and not created else ""
        if others:
            detail += (
                f"{'; ' if detail else ''}also has policies not starburst's: {', '.join(others)}"
            )
        self.record("role", name, _outcome(created, bool(fixed)), detail)
        return str(role["Arn"])

    # Cluster, logs, network ------------------------------------------------------------------

    def cluster(self) -> str:
        ecs = self.aws.client("ecs")
        name = self.names.cluster
        providers = ["FARGATE", "FARGATE_SPOT"]
        with translate_errors(f"create the ECS cluster {name}"):
            found = [
                c
                for c in ecs.describe_clusters(clusters=[name])["clusters"]
                if c.get("status") == "ACTIVE"
            ]
            if not found:
                arn = ecs.create_cluster(
                    clusterName=name,
                    capacityProviders=providers,
                    defaultCapacityProviderStrategy=[{"capacityProvider": "FARGATE", "weight": 1}],
                    tags=[{"key": r.TAG_KEY, "value": r.TAG_VALUE}],
                )["cluster"]["clusterArn"]
                self.record("cluster", name, "created")
                return arn
            cluster = found[0]
            if sorted(cluster.get("capacityProviders", [])) != providers:
                ecs.put_cluster_capacity_providers(
                    cluster=name,
                    capacityProviders=providers,
                    defaultCapacityProviderStrategy=[{"capacityProvider": "FARGATE", "weight": 1}],
                )
                self.record("cluster", name, "updated", "capacity providers")
            else:
                self.record("cluster", name, "exists")
            return cluster["clusterArn"]

    def log_group(self) -> str:
        logs = self.aws.client("logs")
        name = self.names.log_group
        retention = resolve("log_retention_days", default=r.DEFAULT_LOG_RETENTION_DAYS)
        with translate_errors(f"create the log group {name}"):
            groups = logs.describe_log_groups(logGroupNamePrefix=name)["logGroups"]
            group = next((g for g in groups if g["logGroupName"] == name), None)
            created = group is None
            if created:
                logs.create_log_group(logGroupName=name, tags={r.TAG_KEY: r.TAG_VALUE})
            fix = group is None or group.get("retentionInDays") != retention
            if fix:
                logs.put_retention_policy(logGroupName=name, retentionInDays=retention)
        self.record("log group", name, _outcome(created, fix), f"{retention} days retention")
        return name

    def network(self) -> tuple[list[str], str]:
        ec2 = self.aws.client("ec2")
        with translate_errors("find the default VPC"):
            vpcs = ec2.describe_vpcs(Filters=[{"Name": "isDefault", "Values": ["true"]}])["Vpcs"]
            if not vpcs:
                raise SetupRequiredError(
                    f"there is no default VPC in {self.aws.region}, and starburst runs its "
                    "workers there. Create one with `aws ec2 create-default-vpc --region "
                    f"{self.aws.region}` and run `starburst setup` again."
                )
            vpc_id = vpcs[0]["VpcId"]
            subnets = sorted(
                s["SubnetId"]
                for s in ec2.describe_subnets(Filters=[{"Name": "vpc-id", "Values": [vpc_id]}])[
                    "Subnets"
                ]
                if s.get("DefaultForAz", True)
            )
            if not subnets:
                raise SetupRequiredError(
                    f"the default VPC {vpc_id} has no subnets; create a default subnet with "
                    "`aws ec2 create-default-subnet --availability-zone ZONE`"
                )
            group_id = self._security_group(ec2, vpc_id)
        self.record("network", vpc_id, "exists", f"{len(subnets)} subnets")
        return subnets, group_id

    def _security_group(self, ec2: Any, vpc_id: str) -> str:
        name = self.names.security_group
        found = ec2.describe_security_groups(
            Filters=[
                {"Name": "group-name", "Values": [name]},
                {"Name": "vpc-id", "Values": [vpc_id]},
            ]
        )["SecurityGroups"]
        if found:
            group = found[0]
            if group.get("IpPermissions"):  # egress only: remove any inbound rule
                ec2.revoke_security_group_ingress(
                    GroupId=group["GroupId"], IpPermissions=group["IpPermissions"]
                )
                self.record("security group", name, "updated", "inbound rules removed")
            else:
                self.record("security group", name, "exists")
            return group["GroupId"]
        group_id = ec2.create_security_group(
            GroupName=name,
            Description="starburst workers: outbound only",
            VpcId=vpc_id,
            TagSpecifications=[
                {
                    "ResourceType": "security-group",
                    "Tags": [{"Key": r.TAG_KEY, "Value": r.TAG_VALUE}],
                }
            ],
        )["GroupId"]
        self.record("security group", name, "created", "outbound only")
        return group_id

    def quotas(self) -> None:
        self.report.quotas = read_quotas(self.aws)
        for label, value in self.report.quotas.items():
            shown = "unknown" if value is None else f"{value:g} vCPUs"
            self.say(f"  {'quota':>8}  {label:<16} {shown}")


def _not_our_bucket(name: str, account_id: str) -> str:
    return (
        f"S3 refuses the bucket {name} to requests that expect account {account_id} to own "
        "it: another account holds that name (or these credentials may not read it). "
        "starburst never uses a bucket another account owns; check with "
        f"`aws s3api head-bucket --bucket {name} --expected-bucket-owner {account_id}`"
    )


def _outcome(created: bool, fixed: bool) -> str:
    return "created" if created else ("updated" if fixed else "exists")


def read_quotas(aws: Aws) -> dict[str, float | None]:
    """The Fargate vCPU quotas (on-demand and spot) that apply to this account and region."""
    quotas = aws.client("service-quotas")
    return {
        label: read_quota(quotas, "fargate", code)
        for label, code in (
            ("fargate on-demand", r.FARGATE_ON_DEMAND_QUOTA),
            ("fargate spot", r.FARGATE_SPOT_QUOTA),
        )
    }


def read_quota(quotas: Any, service: str, code: str) -> float | None:
    """The value of quota ``code`` of ``service`` in this account (else its AWS default);
    ``None`` when neither answers."""
    for read in (quotas.get_service_quota, quotas.get_aws_default_service_quota):
        try:
            return float(read(ServiceCode=service, QuotaCode=code)["Quota"]["Value"])
        except botocore.exceptions.ClientError:
            continue
    return None


def setup(
    region: str | None = None,
    profile: str | None = None,
    say: Say = print,
    ec2: bool = False,
    clock: Any = None,
) -> SetupReport:
    """Create (or complete, or check) everything starburst needs in this account and region;
    with ``ec2``, also what the ec2 backend's instances run on (``ec2_setup``; ``clock``
    times its waits)."""
    aws = connect(region, profile)
    say(f"starburst setup: account {aws.account_id}, region {aws.region}")
    work = _Provisioner(aws, say)
    work.bucket()
    repository_uri = work.repository()
    execution_role = work.roles()
    cluster = work.cluster()
    log_group = work.log_group()
    subnets, security_group = work.network()
    work.quotas()
    config = work.config
    ec2_part = config.aws.get("ec2")
    if ec2:
        from .ec2_setup import SYSTEM_CLOCK, Ec2Provisioner

        ec2_part = Ec2Provisioner(work, clock or SYSTEM_CLOCK).run(subnets, security_group)
    wanted = {
        "account_id": aws.account_id,
        "region": aws.region,
        "bucket": work.names.bucket,
        "repository_uri": repository_uri,
        "cluster": cluster,
        "execution_role_arn": execution_role,
        "log_group": log_group,
        "subnets": subnets,
        "security_group": security_group,
        "assign_public_ip": True,
        **({"ec2": ec2_part} if ec2_part else {}),
    }
    if config.aws != wanted:
        config.aws = wanted
        path = config.save()
        work.record("config", str(path), "updated")
    backends = "backend='fargate' or backend='ec2'" if ec2_part else "backend='fargate'"
    say(f"Done: run work on AWS with {backends}." if work.report.changed else "Nothing to do.")
    return work.report


def teardown(
    region: str | None = None, profile: str | None = None, say: Say = print, clock: Any = None
) -> list[str]:
    """Remove every resource setup created (tagged as starburst's), and nothing else: the
    ec2 backend's first (its instances use the security group)."""
    from .ec2_setup import SYSTEM_CLOCK, teardown_ec2

    aws = connect(region, profile)
    names = r.Names(aws.account_id, aws.region)
    config = Config.load()
    set_up = bool(config.aws.get("ec2"))
    removed: list[str] = teardown_ec2(aws, names, say, set_up, clock or SYSTEM_CLOCK)
    for remove in (_remove_cluster, _remove_bucket, _remove_repository, _remove_log_group):
        removed += remove(aws, names, say)
    for role in (names.execution_role, names.former_task_role, *leftover_session_roles(aws)):
        removed += _remove_role(aws, role, say)
    removed += _remove_security_group(aws, names, say)
    if config.aws:
        config.aws = {}
        config.save()
    say(f"Removed {len(removed)} resources." if removed else "Nothing to remove.")
    return removed


def _tagged(tags: dict[str, str]) -> bool:
    return tags.get(r.TAG_KEY) == r.TAG_VALUE


def _skip(say: Say, what: str) -> list[str]:
    say(f"  kept      {what} (not tagged {r.TAG_KEY}={r.TAG_VALUE}: starburst did not create it)")
    return []


def _remove_cluster(aws: Aws, names: r.Names, say: Say) -> list[str]:
    ecs = aws.client("ecs")
    with translate_errors("remove the ECS cluster"):
        clusters = [
            c
            for c in ecs.describe_clusters(clusters=[names.cluster], include=["TAGS"])["clusters"]
            if c.get("status") == "ACTIVE"
        ]
        if not clusters:
            return []
        cluster = clusters[0]
        if not _tagged({t["key"]: t["value"] for t in cluster.get("tags", [])}):
            return _skip(say, f"cluster {names.cluster}")
        for arn in _all_tasks(ecs, names.cluster):
            ecs.stop_task(cluster=names.cluster, task=arn, reason="starburst teardown")
        ecs.delete_cluster(cluster=names.cluster)
    say(f"  removed   cluster {names.cluster}")
    return [cluster["clusterArn"]]


def _all_tasks(ecs: Any, cluster: str) -> list[str]:
    arns: list[str] = []
    for page in ecs.get_paginator("list_tasks").paginate(cluster=cluster):
        arns += page["taskArns"]
    return arns


def _remove_bucket(aws: Aws, names: r.Names, say: Say) -> list[str]:
    s3 = aws.client("s3")
    owned = {"Bucket": names.bucket, "ExpectedBucketOwner": aws.account_id}
    with translate_errors(f"remove the bucket {names.bucket}"):
        try:
            tags = s3.get_bucket_tagging(**owned)["TagSet"]
        except botocore.exceptions.ClientError as exc:
            if _error_code(exc) == "NoSuchBucket":
                return []
            if _error_code(exc) == "AccessDenied":
                say(f"  kept      bucket: {_not_our_bucket(names.bucket, aws.account_id)}")
                return []
            if _error_code(exc) != "NoSuchTagSet":
                raise
            tags = []
        if not _tagged({t["Key"]: t["Value"] for t in tags}):
            return _skip(say, f"bucket {names.bucket}")
        for page in s3.get_paginator("list_object_versions").paginate(**owned):
            doomed = [
                {"Key": v["Key"], "VersionId": v["VersionId"]}
                for v in page.get("Versions", []) + page.get("DeleteMarkers", [])
            ]
            if doomed:
                s3.delete_objects(**owned, Delete={"Objects": doomed, "Quiet": True})
        s3.delete_bucket(**owned)
    say(f"  removed   bucket {names.bucket}")
    return [names.bucket_arn]


def _remove_repository(aws: Aws, names: r.Names, say: Say) -> list[str]:
    ecr = aws.client("ecr")
    with translate_errors(f"remove the repository {names.repository}"):
        try:
            repo = ecr.describe_repositories(repositoryNames=[names.repository])["repositories"][0]
        except ecr.exceptions.RepositoryNotFoundException:
            return []
        tags = ecr.list_tags_for_resource(resourceArn=repo["repositoryArn"])["tags"]
        if not _tagged({t["Key"]: t["Value"] for t in tags}):
            return _skip(say, f"repository {names.repository}")
        ecr.delete_repository(repositoryName=names.repository, force=True)
    say(f"  removed   repository {names.repository}")
    return [repo["repositoryArn"]]


def _remove_log_group(aws: Aws, names: r.Names, say: Say) -> list[str]:
    logs = aws.client("logs")
    with translate_errors(f"remove the log group {names.log_group}"):
        groups = logs.describe_log_groups(logGroupNamePrefix=names.log_group)["logGroups"]
        group = next((g for g in groups if g["logGroupName"] == names.log_group), None)
        if group is None:
            return []
        tags = logs.list_tags_log_group(logGroupName=names.log_group).get("tags", {})
        if not _tagged(tags):
            return _skip(say, f"log group {names.log_group}")
        logs.delete_log_group(logGroupName=names.log_group)
    say(f"  removed   log group {names.log_group}")
    return [group["arn"]]


def _remove_role(aws: Aws, name: str, say: Say) -> list[str]:
    iam = aws.client("iam")
    with translate_errors(f"remove the role {name}"):
        try:
            role = iam.get_role(RoleName=name)["Role"]
        except iam.exceptions.NoSuchEntityException:
            return []
        tags = iam.list_role_tags(RoleName=name)["Tags"]
        if not _tagged({t["Key"]: t["Value"] for t in tags}):
            return _skip(say, f"role {name}")
        delete_role(iam, name)
    say(f"  removed   role {name}")
    return [role["Arn"]]


def _remove_security_group(aws: Aws, names: r.Names, say: Say) -> list[str]:
    ec2 = aws.client("ec2")
    with translate_errors(f"remove the security group {names.security_group}"):
        groups = ec2.describe_security_groups(
            Filters=[{"Name": "group-name", "Values": [names.security_group]}]
        )["SecurityGroups"]
        removed = []
        for group in groups:
            if not _tagged({t["Key"]: t["Value"] for t in group.get("Tags", [])}):
                _skip(say, f"security group {group['GroupId']}")
                continue
            ec2.delete_security_group(GroupId=group["GroupId"])
            say(f"  removed   security group {group['GroupId']}")
            removed.append(group["GroupId"])
    return removed


def setup_status(region: str | None = None, profile: str | None = None) -> dict[str, Any]:
    """Configuration, whether each resource exists and is healthy, quotas, running workers."""
    aws = connect(region, profile)
    config = Config.load()
    names = r.Names(aws.account_id, aws.region)
    checks: dict[str, str] = {}
    s3, ecs, iam = aws.client("s3"), aws.client("ecs"), aws.client("iam")
    with translate_errors("check starburst's resources"):
        checks["bucket"] = _check_bucket(s3, names)
        checks["cluster"] = _check(
            lambda: any(
                c.get("status") == "ACTIVE"
                for c in ecs.describe_clusters(clusters=[names.cluster])["clusters"]
            )
        )
        checks[names.execution_role] = _check(
            lambda: bool(iam.get_role(RoleName=names.execution_role))
        )
        running = len(_all_tasks(ecs, names.cluster)) if checks["cluster"] == "ok" else 0
    if config.aws.get("ec2"):
        from .ec2_setup import ec2_status

        checks.update(ec2_status(aws, names))
    return {
        "account_id": aws.account_id,
        "region": aws.region,
        "configured": bool(config.aws),
        "settings": config.settings,
        "resources": checks,
        "quotas": read_quotas(aws),
        "running_workers": running,
    }


def _check(probe: Callable[[], bool]) -> str:
    try:
        return "ok" if probe() else "missing"
    except botocore.exceptions.ClientError as exc:
        code = _error_code(exc)
        if code in ("NoSuchEntity", "ClusterNotFoundException", "404", "NoSuchBucket"):
            return "missing"
        raise


def _check_bucket(s3: Any, names: r.Names) -> str:
    owned = {"Bucket": names.bucket, "ExpectedBucketOwner": names.account_id}
    try:
        s3.head_bucket(**owned)
    except botocore.exceptions.ClientError as exc:
        if _error_code(exc) in ("403", "AccessDenied"):
            return "unusable: " + _not_our_bucket(names.bucket, names.account_id)
        return "missing"
    problems = []
    try:
        s3.get_bucket_encryption(**owned)
    except botocore.exceptions.ClientError:
        problems.append("not encrypted")
    try:
        block = s3.get_public_access_block(**owned)["PublicAccessBlockConfiguration"]
        if block != r.PUBLIC_ACCESS_BLOCK:
            problems.append("public access not fully blocked")
    except botocore.exceptions.ClientError:
        problems.append("public access not blocked")
    return "ok" if not problems else "unhealthy: " + ", ".join(problems) + " (run starburst setup)"
