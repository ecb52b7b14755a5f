"""The AWS side of starburst's security model (``docs/security.md``), on the emulator.

The emulator answers like S3 where moto does not: a request whose ``ExpectedBucketOwner``
is not the bucket's owner gets 403 AccessDenied (``emulator/layer.py``). Another account is
a real one in the emulator: credentials from ``AssumeRole`` into it.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import boto3
import moto.settings
import pytest

import starburst
from starburst.aws import provision
from starburst.aws import resources as r
from starburst.config import Config
from starburst.engine.session_record import SessionRecord, Timings
from starburst.errors import ConfigurationError, SetupRequiredError, StoreError
from starburst.store import Store, open_store
from starburst.store.s3 import _MULTIPART_BYTES, S3Store

pytestmark = pytest.mark.usefixtures("aws")

OURS = "123456789012"
THEIRS = "210987654321"
NAMES = r.Names(OURS, "us-east-1")


def _quiet(_: str) -> None:
    pass


def _other_account() -> boto3.Session:
    """A session in another account: what someone else's credentials would be."""
    answer = boto3.client("sts").assume_role(
        RoleArn=f"arn:aws:iam::{THEIRS}:role/someone-else", RoleSessionName="squatter"
    )["Credentials"]
    return boto3.Session(
        aws_access_key_id=answer["AccessKeyId"],
        aws_secret_access_key=answer["SecretAccessKey"],
        aws_session_token=answer["SessionToken"],
        region_name="us-east-1",
    )


def _squat(bucket: str) -> Any:
    """Create ``bucket`` in the other account, with a key in it; returns its S3 client."""
    s3 = _other_account().client("s3")
    s3.create_bucket(Bucket=bucket)
    s3.put_object(Bucket=bucket, Key="k", Body=b"theirs")
    return s3


_OPERATIONS: dict[str, Callable[[Store], object]] = {
    "put": lambda s: s.put("k", b"ours"),
    "put_multipart": lambda s: s.put("big", b"\0" * _MULTIPART_BYTES),
    "get": lambda s: s.get("k"),
    "get_versioned": lambda s: s.get_versioned("k"),
    "put_if_absent": lambda s: s.put_if_absent("new", b"ours"),
    "put_if_match": lambda s: s.put_if_match("k", b"ours", '"any"'),
    "delete": lambda s: s.delete("k"),
    "list": lambda s: list(s.list("")),
    "list_folders": lambda s: s.list_folders(""),
    "delete_prefix": lambda s: s.delete_prefix(""),
}


@pytest.mark.parametrize("operation", sorted(_OPERATIONS))
def test_the_store_refuses_a_bucket_of_its_name_that_another_account_owns(
    operation: str,
) -> None:
    squatter = _squat("predictable-name")
    store = S3Store("predictable-name", "", owner=OURS)
    for opened in (store, open_store(store.url)):  # a worker opens it from its URL
        with pytest.raises(StoreError, match=f"s3://predictable-name: .* not account {OURS}'s"):
            _OPERATIONS[operation](opened)
    assert squatter.get_object(Bucket="predictable-name", Key="k")["Body"].read() == b"theirs"


def test_a_bucket_recreated_by_another_account_after_teardown_is_never_used() -> None:
    provision.setup(say=_quiet)
    stale = Config.load()  # another machine's config, written before the teardown
    provision.teardown(say=_quiet)
    stale.save()
    squatter = _squat(NAMES.bucket)  # the name is predictable: the account id and region
    planted = SessionRecord(
        "sb-20260101-000000-abcdef", "fargate", 1, 1.0, None,
        Timings.for_store(S3Store(NAMES.bucket), attached=False), attached=False,
    )  # fmt: skip
    squatter.put_object(Bucket=NAMES.bucket, Key=planted.keys.session, Body=planted.encode())
    with pytest.raises(StoreError, match=f"s3://{NAMES.bucket}: .* not account {OURS}'s"):
        starburst.list_sessions()
    with pytest.raises(SetupRequiredError, match=f"{NAMES.bucket} .* another account"):
        provision.setup(say=_quiet)
    assert "unusable" in provision.setup_status()["resources"]["bucket"]
    assert squatter.list_objects_v2(Bucket=NAMES.bucket)["KeyCount"] == 2  # nothing written


def _role_state() -> dict[str, Any]:
    """What setup decides about the roles and the repository, read back from the emulator."""
    iam, ecr = boto3.client("iam"), boto3.client("ecr")
    state: dict[str, Any] = {
        "mutability": ecr.describe_repositories(repositoryNames=[NAMES.repository])["repositories"][
            0
        ]["imageTagMutability"]
    }
    for role in (NAMES.execution_role,):
        state[role] = {
            "trust": iam.get_role(RoleName=role)["Role"]["AssumeRolePolicyDocument"],
            "attached": iam.list_attached_role_policies(RoleName=role)["AttachedPolicies"],
            "inline": {
                name: iam.get_role_policy(RoleName=role, PolicyName=name)["PolicyDocument"]
                for name in iam.list_role_policies(RoleName=role)["PolicyNames"]
            },
        }
    return state


def test_setup_scopes_the_roles_to_this_account_its_repository_and_its_log_group() -> None:
    provision.setup(say=_quiet)
    session = starburst.session(backend="fargate", ttl="1h")
    state = _role_state()
    assert state["mutability"] == "IMMUTABLE"
    trusts = [
        state[NAMES.execution_role]["trust"],
        boto3.client("iam").get_role(RoleName=NAMES.session_role(session.id))["Role"][
            "AssumeRolePolicyDocument"
        ],
    ]
    for trust in trusts:
        (statement,) = trust["Statement"]
        assert statement["Principal"] == {"Service": "ecs-tasks.amazonaws.com"}
        assert statement["Condition"]["StringEquals"] == {"aws:SourceAccount": OURS}
    assert state[NAMES.execution_role]["attached"] == []
    assert list(state[NAMES.execution_role]["inline"]) == [r.EXECUTION_POLICY_NAME]
    execution = state[NAMES.execution_role]["inline"][r.EXECUTION_POLICY_NAME]
    for statement in execution["Statement"]:
        resources = statement["Resource"]
        for resource in resources if isinstance(resources, list) else [resources]:
            if resource == "*":
                assert statement["Action"] in (
                    ["ecr:GetAuthorizationToken"],
                    "ecr:GetAuthorizationToken",
                )
            else:
                assert resource.startswith((NAMES.repository_arn, NAMES.log_group_arn)), resource
    session.cleanup()


def test_setup_repairs_roles_policies_and_tags_changed_by_hand() -> None:
    provision.setup(say=_quiet)
    wanted = _role_state()
    iam, ecr = boto3.client("iam"), boto3.client("ecr")
    anyone = {
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Principal": {"AWS": "*"}, "Action": "sts:AssumeRole"}],
    }
    everything = {
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Action": "s3:*", "Resource": "*"}],
    }
    iam.update_assume_role_policy(RoleName=NAMES.execution_role, PolicyDocument=json.dumps(anyone))
    iam.put_role_policy(
        RoleName=NAMES.execution_role,
        PolicyName=r.EXECUTION_POLICY_NAME,
        PolicyDocument=json.dumps(everything),
    )
    iam.attach_role_policy(  # what setup attached before it scoped its own policy
        RoleName=NAMES.execution_role, PolicyArn=r.FORMER_EXECUTION_POLICY_ARN
    )
    ecr.put_image_tag_mutability(repositoryName=NAMES.repository, imageTagMutability="MUTABLE")
    assert _role_state() != wanted
    repaired = provision.setup(say=_quiet)
    assert _role_state() == wanted
    changed = {step.name: step.detail for step in repaired.steps if step.outcome != "exists"}
    assert changed[NAMES.execution_role] == (
        f"trust policy, AmazonECSTaskExecutionRolePolicy detached, {r.EXECUTION_POLICY_NAME} policy"
    )
    assert changed[NAMES.repository] == "immutable tags"
    assert not provision.setup(say=_quiet).changed  # and a setup after that changes nothing


def test_setup_keeps_and_names_a_policy_someone_added_to_a_role() -> None:
    provision.setup(say=_quiet)
    iam = boto3.client("iam")
    images = {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Action": "ecr:BatchGetImage",
                "Resource": f"arn:aws:ecr:us-east-1:{OURS}:repository/my-images",
            }
        ],
    }
    iam.put_role_policy(
        RoleName=NAMES.execution_role,
        PolicyName="pull-my-images",
        PolicyDocument=json.dumps(images),
    )
    said: list[str] = []
    report = provision.setup(say=said.append)
    assert not report.changed
    assert "pull-my-images" in iam.list_role_policies(RoleName=NAMES.execution_role)["PolicyNames"]
    assert any("not starburst's: pull-my-images" in line for line in said), said


def square(x: int) -> int:
    return x * x


@pytest.fixture
def iam_enforced(monkeypatch: pytest.MonkeyPatch) -> None:
    """IAM decides every request from here on (moto's enforcement): the test's client is an
    IAM user allowed everything, as an administrator is, and each task runs with its task
    role's own credentials (``emulator/runner.py``)."""
    iam = boto3.client("iam")
    iam.create_user(UserName="administrator")
    iam.put_user_policy(
        UserName="administrator",
        PolicyName="everything",
        PolicyDocument=json.dumps(
            {
                "Version": "2012-10-17",
                "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}],
            }
        ),
    )
    key = iam.create_access_key(UserName="administrator")["AccessKey"]
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", key["AccessKeyId"])
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", key["SecretAccessKey"])
    monkeypatch.setattr(moto.settings, "INITIAL_NO_AUTH_ACTION_COUNT", 0)


def test_workers_do_their_work_with_nothing_but_the_task_roles_own_permissions(
    iam_enforced: None,
) -> None:
    provision.setup(say=_quiet)
    assert starburst.map(square, range(40), workers=2, backend="fargate") == [
        x * x for x in range(40)
    ]


def try_as_this_worker(request: tuple[str, str, str]) -> str:
    """Run in a worker: read or write a key of the bucket with the worker's own credentials
    (as any code a session runs can); the error code, or what was read."""
    import boto3
    import botocore.exceptions

    action, bucket, key = request
    s3 = boto3.client("s3")
    try:
        if action == "get":
            return s3.get_object(Bucket=bucket, Key=key)["Body"].read().decode()[:20]
        s3.put_object(Bucket=bucket, Key=key, Body=b"forged")
        return "written"
    except botocore.exceptions.ClientError as exc:
        return str(exc.response["Error"]["Code"])


def test_a_worker_of_one_session_cannot_read_or_write_another_sessions_data(
    iam_enforced: None,
) -> None:
    provision.setup(say=_quiet)
    other = starburst.session(backend="fargate", ttl="1h")  # its records are in the bucket
    attempts = [
        ("get", NAMES.bucket, f"sessions/{other.id}/session.json"),
        ("get", NAMES.bucket, f"sessions/{other.id}/control.json"),
        ("put", NAMES.bucket, f"sessions/{other.id}/control.json"),
        ("put", NAMES.bucket, f"data/{other.id}/r/out/00000000"),
    ]
    answers = starburst.map(try_as_this_worker, attempts, workers=1, backend="fargate")
    assert answers == ["AccessDenied"] * len(attempts)
    other.cleanup()
    assert [role for role in _session_roles()] == []  # each session's role goes with it


def _session_roles() -> list[str]:
    iam = boto3.Session().client("iam")
    return [role["RoleName"] for role in iam.list_roles(PathPrefix=r.SESSION_ROLE_PATH)["Roles"]]


def test_the_worker_policy_setting_gives_every_sessions_workers_the_users_own_data(
    iam_enforced: None,
) -> None:
    provision.setup(say=_quiet)
    s3, iam = boto3.Session().client("s3"), boto3.Session().client("iam")
    s3.create_bucket(Bucket="my-data")
    s3.put_object(Bucket="my-data", Key="input.csv", Body=b"1,2,3")
    reading = [("get", "my-data", "input.csv")]
    assert starburst.map(try_as_this_worker, reading, backend="fargate") == ["AccessDenied"]
    policy = iam.create_policy(
        PolicyName="read-my-data",
        PolicyDocument=json.dumps(
            {
                "Version": "2012-10-17",
                "Statement": [
                    {
                        "Effect": "Allow",
                        "Action": "s3:GetObject",
                        "Resource": "arn:aws:s3:::my-data/*",
                    }
                ],
            }
        ),
    )["Policy"]["Arn"]
    config = Config.load()
    config.set("worker_policy", policy)
    config.save()
    assert starburst.map(try_as_this_worker, reading, backend="fargate") == ["1,2,3"]


def test_a_worker_policy_that_does_not_exist_is_named_with_the_fix() -> None:
    provision.setup(say=_quiet)
    config = Config.load()
    config.set("worker_policy", f"arn:aws:iam::{OURS}:policy/no-such-policy")
    config.save()
    with pytest.raises(ConfigurationError, match=r"worker_policy setting .*no-such-policy"):
        starburst.session(backend="fargate", ttl="1h")
    assert _session_roles() == []  # nothing left behind


def test_a_sessions_new_role_is_waited_for_until_ecs_sees_it(aws) -> None:
    provision.setup(say=_quiet)
    refusal = "ECS was unable to assume the role 'arn:aws:iam::x' that was provided for this task."
    aws.faults.error(
        "RegisterTaskDefinition", "ClientException", message="Role is not valid", times=2
    )
    aws.faults.error("RunTask", "InvalidParameterException", message=refusal, times=2)
    assert starburst.map(square, range(6), workers=2, backend="fargate") == [
        x * x for x in range(6)
    ]
    assert aws.calls["RegisterTaskDefinition"] == 3 and aws.calls["RunTask"] == 3


def _statements(session_id: str) -> dict[str, dict[str, Any]]:
    policy = boto3.client("iam").get_role_policy(
        RoleName=NAMES.session_role(session_id), PolicyName=r.SESSION_POLICY_NAME
    )["PolicyDocument"]
    return {statement["Sid"]: statement for statement in policy["Statement"]}


#: What a worker's role must never do to the account's instances (managed scaling does).
_CHANGES_INSTANCES = ("autoscaling:Update", "autoscaling:Terminate", "autoscaling:SetInstance",
                      "autoscaling:CreateOrUpdateTags", "autoscaling:DeleteTags",
                      "ecs:UpdateContainerInstancesState", "ec2:Terminate", "ec2:Run")  # fmt: skip


def test_a_sessions_role_supervises_in_its_own_cluster_and_reads_ec2_instances_only_on_ec2(
) -> None:  # fmt: skip
    """A detached session's workers supervise it with their role: it names the cluster the
    session's tasks run in (the ec2 backend's own, or Fargate's), and on EC2 lets them read
    the instances and prices for the bill, never change an instance."""
    provision.setup(say=_quiet, ec2=True)
    ecs = f"arn:aws:ecs:us-east-1:{OURS}"
    for backend, cluster in (("ec2", NAMES.ec2_cluster), ("fargate", NAMES.cluster)):
        session = starburst.session(workers=1, backend=backend, ttl="1h")
        try:
            statements = _statements(session.id)
        finally:
            session.cleanup()
        start = statements["SuperviseStartWorkers"]["Condition"]["ArnEquals"]
        assert start == {"ecs:cluster": f"{ecs}:cluster/{cluster}"}
        watched = statements["SuperviseWatchAndStopWorkers"]["Resource"]
        assert watched == [f"{ecs}:task/{cluster}/*"]
        granted = [a for st in statements.values() for a in st["Action"]]
        assert not [a for a in granted if a.startswith(_CHANGES_INSTANCES)], granted
        reads = "ec2:DescribeInstances" in granted and "ecs:ListContainerInstances" in granted
        assert reads == (backend == "ec2")
