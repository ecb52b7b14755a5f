"""``starburst setup`` / ``status`` / ``teardown`` on the emulator, and the AWS client factory."""

from __future__ import annotations

import json
from typing import Any

import boto3
import pytest
from click.testing import CliRunner

import starburst
from starburst.aws import provision
from starburst.aws import resources as r
from starburst.cli import main
from starburst.config import Config
from starburst.errors import ConfigurationError, CredentialsError, SetupRequiredError

pytestmark = pytest.mark.usefixtures("aws")

NAMES = r.Names("123456789012", "us-east-1")


def _quiet(_: str) -> None:
    pass


def _state() -> dict[str, Any]:
    """Everything setup decides, read back from the emulator."""
    s3, iam, logs = boto3.client("s3"), boto3.client("iam"), boto3.client("logs")
    ecs, ec2, ecr = boto3.client("ecs"), boto3.client("ec2"), boto3.client("ecr")
    bucket = NAMES.bucket
    group = ec2.describe_security_groups(
        Filters=[{"Name": "group-name", "Values": [NAMES.security_group]}]
    )["SecurityGroups"][0]
    return {
        "encryption": s3.get_bucket_encryption(Bucket=bucket)["ServerSideEncryptionConfiguration"],
        "public_access": s3.get_public_access_block(Bucket=bucket)[
            "PublicAccessBlockConfiguration"
        ],
        "policy": json.loads(s3.get_bucket_policy(Bucket=bucket)["Policy"]),
        "lifecycle": s3.get_bucket_lifecycle_configuration(Bucket=bucket)["Rules"],
        "bucket_tags": s3.get_bucket_tagging(Bucket=bucket)["TagSet"],
        "execution_policies": iam.list_attached_role_policies(RoleName=NAMES.execution_role)[
            "AttachedPolicies"
        ],
        "execution_policy": iam.get_role_policy(
            RoleName=NAMES.execution_role, PolicyName=r.EXECUTION_POLICY_NAME
        )["PolicyDocument"],
        "log_groups": logs.describe_log_groups(logGroupNamePrefix=NAMES.log_group)["logGroups"],
        "cluster": ecs.describe_clusters(clusters=[NAMES.cluster])["clusters"][0][
            "capacityProviders"
        ],
        "repository": ecr.get_lifecycle_policy(repositoryName=NAMES.repository)[
            "lifecyclePolicyText"
        ],
        "security_group": (group["GroupId"], group["IpPermissions"], group["IpPermissionsEgress"]),
        "config": Config.load().aws,
    }


def test_setup_from_nothing_creates_each_resource_with_its_settings() -> None:
    report = provision.setup(say=_quiet)
    assert {step.outcome for step in report.steps} >= {"created"}
    state = _state()
    rule = state["encryption"]["Rules"][0]["ApplyServerSideEncryptionByDefault"]
    assert rule["SSEAlgorithm"] == "AES256"
    assert state["public_access"] == {
        "BlockPublicAcls": True,
        "IgnorePublicAcls": True,
        "BlockPublicPolicy": True,
        "RestrictPublicBuckets": True,
    }
    statement = state["policy"]["Statement"][0]
    assert statement["Effect"] == "Deny"
    assert statement["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}
    expiry = {rule["Filter"]["Prefix"]: rule["Expiration"]["Days"] for rule in state["lifecycle"]
              if "Expiration" in rule}  # fmt: skip
    # Run data after a week; records of sessions nobody cleaned up (a killed client's), a week
    # later, never during a session's life (at most 6 days).
    assert expiry == {"data/": 7, "sessions/": 14}
    assert {"Key": "starburst", "Value": "managed"} in state["bucket_tags"]
    assert state["execution_policies"] == []  # no broad managed policy: its own, scoped
    assert r.same_document(state["execution_policy"], r.execution_role_policy(NAMES))
    assert state["log_groups"][0]["retentionInDays"] == r.DEFAULT_LOG_RETENTION_DAYS
    assert sorted(state["cluster"]) == ["FARGATE", "FARGATE_SPOT"]
    assert state["security_group"][1] == []  # no inbound rule
    assert state["config"]["bucket"] == NAMES.bucket
    assert state["config"]["subnets"]


def test_a_sessions_role_reaches_only_its_own_keys_tasks_and_roles() -> None:
    provision.setup(say=_quiet)
    session = starburst.session(backend="fargate", ttl="1h")
    sid = session.id
    policy = boto3.client("iam").get_role_policy(
        RoleName=NAMES.session_role(sid), PolicyName=r.SESSION_POLICY_NAME
    )["PolicyDocument"]
    ecs = f"arn:aws:ecs:{NAMES.region}:{NAMES.account_id}"
    cluster = {"ArnEquals": {"ecs:cluster": f"{ecs}:cluster/{NAMES.cluster}"}}
    for statement in policy["Statement"]:
        actions = (
            statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
        )
        resources = statement["Resource"]
        resources = resources if isinstance(resources, list) else [resources]
        assert statement["Effect"] == "Allow"
        assert all("*" not in a for a in actions)
        service = {a.split(":")[0] for a in actions}
        assert len(service) == 1, statement
        if service == {"s3"}:  # its own session's keys only (and the bucket's listing)
            assert all(
                res
                in (NAMES.bucket_arn, f"{NAMES.bucket_arn}/sessions/{sid}/*",
                    f"{NAMES.bucket_arn}/data/{sid}/*")
                for res in resources
            ), statement  # fmt: skip
            assert (resources == [NAMES.bucket_arn]) == (actions == ["s3:ListBucket"])
        elif service == {"iam"}:  # passes only its own roles, and only to ECS tasks
            assert actions == ["iam:PassRole"]
            assert sorted(r.rsplit("/", 1)[1] for r in resources) == sorted(
                [NAMES.execution_role, NAMES.session_role(sid)]
            )
            assert statement["Condition"]["StringEquals"]["iam:PassedToService"] == (
                "ecs-tasks.amazonaws.com"
            )
        else:  # ECS: its session's task definitions and tasks, in starburst's cluster
            assert service == {"ecs"}
            assert set(actions) <= {
                "ecs:RunTask", "ecs:TagResource", "ecs:DescribeTasks", "ecs:StopTask",
                "ecs:ListTasks",
            }  # fmt: skip
            for res in resources:
                assert res in (
                    f"{ecs}:task-definition/starburst-{sid}-*",
                    f"{ecs}:task/{NAMES.cluster}/*",
                ) or (res == "*" and statement.get("Condition") == cluster), statement
            if set(actions) & {"ecs:RunTask", "ecs:StopTask", "ecs:DescribeTasks"}:
                tags = statement["Condition"]["StringEquals"]  # only its session's own tasks
                assert tags in (
                    {
                        "aws:RequestTag/starburst": "managed",
                        "aws:RequestTag/starburst-session": sid,
                    },
                    {"aws:ResourceTag/starburst-session": sid},
                ), statement
    session.cleanup()


def test_a_second_setup_changes_nothing(aws) -> None:
    provision.setup(say=_quiet)
    before = _state()
    calls_before = dict(aws.calls)
    report = provision.setup(say=_quiet)
    second = {op: n - calls_before.get(op, 0) for op, n in aws.calls.items()}
    writes = [
        op
        for op, n in second.items()
        if n and op.startswith(("Create", "Put", "Attach", "Delete", "Revoke", "Tag"))
    ]
    assert writes == []  # not one create or change call
    assert [s.outcome for s in report.steps] == ["exists"] * len(report.steps)
    assert not report.changed
    assert _state() == before


def test_setup_after_a_half_finished_run_completes_it() -> None:
    s3, iam, logs = boto3.client("s3"), boto3.client("iam"), boto3.client("logs")
    # a first run that stopped early: only a bare bucket exists
    s3.create_bucket(Bucket=NAMES.bucket)
    s3.put_bucket_tagging(
        Bucket=NAMES.bucket, Tagging={"TagSet": [{"Key": "starburst", "Value": "managed"}]}
    )
    report = provision.setup(say=_quiet)
    bucket_step = next(step for step in report.steps if step.resource == "bucket")
    assert bucket_step.outcome == "updated"
    complete = _state()
    # later drift: pieces removed by hand are put back
    s3.delete_bucket_policy(Bucket=NAMES.bucket)
    iam.delete_role_policy(RoleName=NAMES.execution_role, PolicyName=r.EXECUTION_POLICY_NAME)
    logs.put_retention_policy(logGroupName=NAMES.log_group, retentionInDays=1)
    provision.setup(say=_quiet)
    assert _state() == complete


def test_teardown_leaves_nothing_tagged_behind_and_is_harmless_twice() -> None:
    provision.setup(say=_quiet)
    left = starburst.session(backend="fargate", ttl="1h")  # its client dies: its role stays
    left.detach()
    removed = provision.teardown(say=_quiet)
    assert len(removed) == 7  # cluster, bucket, repository, log group, 2 roles, group
    s3, iam, ecr = boto3.client("s3"), boto3.client("iam"), boto3.client("ecr")
    assert NAMES.bucket not in [b["Name"] for b in s3.list_buckets()["Buckets"]]
    assert not [x for x in iam.list_roles()["Roles"] if x["RoleName"].startswith("starburst")]
    assert ecr.describe_repositories()["repositories"] == []
    assert (
        boto3.client("logs").describe_log_groups(logGroupNamePrefix="/starburst")["logGroups"] == []
    )
    active = [
        c
        for c in boto3.client("ecs").describe_clusters(clusters=["starburst"])["clusters"]
        if c.get("status") == "ACTIVE"
    ]
    assert active == []
    assert Config.load().aws == {}
    assert provision.teardown(say=_quiet) == []


def test_teardown_keeps_what_starburst_did_not_create() -> None:
    s3 = boto3.client("s3")
    s3.create_bucket(Bucket=NAMES.bucket)  # same name, but not tagged as starburst's
    said: list[str] = []
    provision.teardown(say=said.append)
    assert NAMES.bucket in [b["Name"] for b in s3.list_buckets()["Buckets"]]
    assert any("kept" in line and NAMES.bucket in line for line in said)


def test_setup_status_reports_resources_quotas_and_workers(aws) -> None:
    aws.quotas.set("L-3032A538", 12)
    before = provision.setup_status()
    assert before["configured"] is False and before["resources"]["bucket"] == "missing"
    provision.setup(say=_quiet)
    after = provision.setup_status()
    assert after["configured"] is True
    assert set(after["resources"].values()) == {"ok"}
    assert after["quotas"]["fargate on-demand"] == 12
    assert after["running_workers"] == 0


def test_setup_shows_the_fargate_quotas(aws) -> None:
    aws.quotas.set("L-3032A538", 12)
    aws.quotas.set("L-36FBB829", 40)
    said: list[str] = []
    report = provision.setup(say=said.append)
    assert report.quotas == {"fargate on-demand": 12.0, "fargate spot": 40.0}
    assert any("12 vCPUs" in line for line in said)


def test_missing_credentials_give_one_clear_error(monkeypatch, tmp_path) -> None:
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    with pytest.raises(CredentialsError, match="aws configure"):
        provision.setup(say=_quiet)


def test_an_unknown_region_is_named() -> None:
    with pytest.raises(ConfigurationError, match="unknown AWS region 'mars-north-1'"):
        provision.setup(region="mars-north-1", say=_quiet)


def test_a_missing_default_vpc_names_the_fix() -> None:
    ec2 = boto3.client("ec2")
    vpc = ec2.describe_vpcs(Filters=[{"Name": "isDefault", "Values": ["true"]}])["Vpcs"][0]
    for subnet in ec2.describe_subnets(Filters=[{"Name": "vpc-id", "Values": [vpc["VpcId"]]}])[
        "Subnets"
    ]:
        ec2.delete_subnet(SubnetId=subnet["SubnetId"])
    ec2.delete_vpc(VpcId=vpc["VpcId"])
    with pytest.raises(SetupRequiredError, match="aws ec2 create-default-vpc"):
        provision.setup(say=_quiet)


def test_the_command_line_runs_setup_status_config_and_teardown() -> None:
    runner = CliRunner()
    result = runner.invoke(main, ["setup"])
    assert result.exit_code == 0, result.output
    assert "created" in result.output and NAMES.bucket in result.output
    result = runner.invoke(main, ["status", "--json"])
    assert result.exit_code == 0 and json.loads(result.output)["configured"] is True
    assert runner.invoke(main, ["config", "set", "max_cost", "10"]).exit_code == 0
    shown = runner.invoke(main, ["config", "show"]).output
    assert "max_cost = 10.0" in shown and NAMES.bucket in shown
    refused = runner.invoke(main, ["teardown"], input="n\n")
    assert refused.exit_code != 0 and NAMES.bucket in [
        b["Name"] for b in boto3.client("s3").list_buckets()["Buckets"]
    ]
    result = runner.invoke(main, ["teardown", "--yes"])
    assert result.exit_code == 0 and "removed" in result.output


def test_a_bad_setting_is_refused_with_the_fix() -> None:
    result = CliRunner().invoke(main, ["config", "set", "max_cost", "lots"])
    assert result.exit_code != 0
    assert "max_cost 'lots' must be a positive number of dollars" in result.output
    result = CliRunner().invoke(main, ["config", "set", "colour", "blue"])
    assert "unknown setting 'colour'" in result.output


def test_the_python_equivalents_exist() -> None:
    assert starburst.setup is provision.setup
    assert starburst.teardown is provision.teardown
    assert starburst.setup_status is provision.setup_status
