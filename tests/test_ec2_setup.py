"""``starburst setup --ec2`` and its teardown on the emulator: each resource with its
settings, idempotence, the instance-profile propagation retry, a teardown that leaves
nothing of its own and keeps what is not."""

from __future__ import annotations

import base64
from typing import Any

import boto3
import pytest
from click.testing import CliRunner

from starburst.aws import ec2_resources, ec2_setup, provision
from starburst.aws import resources as r
from starburst.backends.ec2.instances import CATALOGUE
from starburst.cli import main
from starburst.config import Config
from starburst.errors import SetupRequiredError

pytestmark = pytest.mark.usefixtures("aws")
#: The vCPU quotas the tests give the emulated account (standard on-demand, standard Spot).
QUOTAS = {"on-demand": ("L-1216C47A", 160.0), "spot": ("L-34B43A08", 320.0)}

NAMES = r.Names("123456789012", "us-east-1")
TAG = {"Key": r.TAG_KEY, "Value": r.TAG_VALUE}


def _quiet(_: str) -> None:
    pass


@pytest.fixture(autouse=True)
def ec2_quotas(aws) -> None:
    for code, vcpus in QUOTAS.values():
        aws.quotas.set(code, vcpus)


class FakeClock:
    """Time that moves only when slept: the retries run without waiting."""

    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []

    def monotonic(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def _groups() -> dict[str, dict[str, Any]]:
    found = boto3.client("autoscaling").describe_auto_scaling_groups()["AutoScalingGroups"]
    return {g["AutoScalingGroupName"]: g for g in found}


def _tagged_everywhere() -> dict[str, list[str]]:
    """Every resource of the ec2 part that carries starburst's tag, or its name."""
    ec2, ecs, iam = boto3.client("ec2"), boto3.client("ecs"), boto3.client("iam")
    templates = ec2.describe_launch_templates(
        Filters=[{"Name": f"tag:{r.TAG_KEY}", "Values": [r.TAG_VALUE]}]
    )["LaunchTemplates"]
    endpoints = ec2.describe_vpc_endpoints(
        Filters=[{"Name": f"tag:{r.TAG_KEY}", "Values": [r.TAG_VALUE]}]
    )["VpcEndpoints"]
    providers = ecs.describe_capacity_providers(
        capacityProviders=[NAMES.capacity(c) for c in r.EC2_CAPACITIES]
    )["capacityProviders"]
    clusters = ecs.describe_clusters(clusters=[NAMES.ec2_cluster])["clusters"]
    profiles = iam.list_instance_profiles()["InstanceProfiles"]
    roles = [
        x["RoleName"] for x in iam.list_roles()["Roles"] if x["RoleName"] == NAMES.instance_role
    ]
    return {
        "launch templates": [t["LaunchTemplateName"] for t in templates],
        "endpoints": [e["VpcEndpointId"] for e in endpoints if e["State"].lower() != "deleted"],
        "groups": list(_groups()),
        "capacity providers": [p["name"] for p in providers if p.get("status") == "ACTIVE"],
        "clusters": [c["clusterName"] for c in clusters if c.get("status") == "ACTIVE"],
        "profiles": [p["InstanceProfileName"] for p in profiles],
        "roles": roles,
        "instances": [
            i["InstanceId"]
            for res in ec2.describe_instances()["Reservations"]
            for i in res["Instances"]
            if i["State"]["Name"] != "terminated"
        ],
    }


def test_setup_ec2_creates_each_resource_with_its_settings() -> None:
    report = provision.setup(say=_quiet, ec2=True)
    ec2, ecs, iam = boto3.client("ec2"), boto3.client("ecs"), boto3.client("iam")

    profile = iam.get_instance_profile(InstanceProfileName=NAMES.instance_role)["InstanceProfile"]
    assert [role["RoleName"] for role in profile["Roles"]] == [NAMES.instance_role]
    attached = iam.list_attached_role_policies(RoleName=NAMES.instance_role)["AttachedPolicies"]
    assert [p["PolicyArn"] for p in attached] == [r.INSTANCE_ROLE_POLICY_ARN]
    trust = iam.get_role(RoleName=NAMES.instance_role)["Role"]["AssumeRolePolicyDocument"]
    assert trust["Statement"][0]["Principal"] == {"Service": "ec2.amazonaws.com"}

    data = {}
    for kind in r.EC2_TEMPLATE_KINDS:
        name = NAMES.launch_template(kind)
        data[kind] = ec2.describe_launch_template_versions(LaunchTemplateName=name)[
            "LaunchTemplateVersions"
        ][0]["LaunchTemplateData"]
    assert data["x86_64"]["ImageId"] == (
        "resolve:ssm:/aws/service/ecs/optimized-ami/amazon-linux-2023/recommended/image_id"
    )
    assert "amazon-linux-2023/arm64/" in data["arm64"]["ImageId"]
    assert "amazon-linux-2023/gpu/" in data["gpu"]["ImageId"]
    for kind, template in data.items():
        assert template["MetadataOptions"]["HttpTokens"] == "required"
        assert template["MetadataOptions"]["HttpPutResponseHopLimit"] == 2
        assert template["BlockDeviceMappings"][0]["Ebs"]["VolumeType"] == "gp3"
        assert template["NetworkInterfaces"][0]["AssociatePublicIpAddress"] is True
        assert "InstanceMarketOptions" not in template
        assert template["IamInstanceProfile"] == {"Arn": profile["Arn"]}
        script = base64.b64decode(template["UserData"]).decode()
        for line in (
            "ECS_CLUSTER=starburst-ec2",
            "ECS_ENABLE_TASK_IAM_ROLE=true",
            "ECS_ENABLE_TASK_IAM_ROLE_NETWORK_HOST=true",
            "ECS_ENABLE_SPOT_INSTANCE_DRAINING=true",
            "ECS_RESERVED_MEMORY=256",
        ):
            assert line in script.splitlines()
        assert ("ECS_ENABLE_GPU_SUPPORT=true" in script) == (kind == "gpu")
    group_of_sg = data["x86_64"]["NetworkInterfaces"][0]["Groups"][0]
    sg = ec2.describe_security_groups(GroupIds=[group_of_sg])["SecurityGroups"][0]
    assert sg["GroupName"] == NAMES.security_group and sg["IpPermissions"] == []

    subnets = sorted(Config.load().aws["subnets"])
    groups = _groups()
    for capacity in r.EC2_CAPACITIES:
        group = groups[NAMES.capacity(capacity)]
        assert (group["MinSize"], group["DesiredCapacity"]) == (0, 0)
        types = ec2_setup.choose_instance_types(*ec2_setup.SETUP_WORKER)
        assert group["MaxSize"] == ec2_resources.max_instances(QUOTAS[capacity][1], types)
        assert group["NewInstancesProtectedFromScaleIn"] is True
        assert sorted(group["VPCZoneIdentifier"].split(",")) == subnets
        policy = group["MixedInstancesPolicy"]
        distribution = policy["InstancesDistribution"]
        assert distribution["OnDemandPercentageAboveBaseCapacity"] == (
            0 if capacity == "spot" else 100
        )
        assert distribution.get("SpotAllocationStrategy") == (
            "price-capacity-optimized" if capacity == "spot" else None
        )
        types = [o["InstanceType"] for o in policy["LaunchTemplate"]["Overrides"]]
        assert 10 <= len(types) <= 40
        assert not [o for o in policy["LaunchTemplate"]["Overrides"] if "WeightedCapacity" in o]
        assert {"Key": r.TAG_KEY, "Value": r.TAG_VALUE} in [
            {"Key": t["Key"], "Value": t["Value"]} for t in group["Tags"] if t["PropagateAtLaunch"]
        ]

    providers = ecs.describe_capacity_providers(
        capacityProviders=[NAMES.capacity(c) for c in r.EC2_CAPACITIES]
    )["capacityProviders"]
    for provider in providers:
        settings = provider["autoScalingGroupProvider"]
        assert settings["autoScalingGroupArn"] == groups[provider["name"]]["AutoScalingGroupARN"]
        assert settings["managedScaling"]["status"] == "ENABLED"
        assert settings["managedScaling"]["targetCapacity"] == 100
        assert settings["managedScaling"]["instanceWarmupPeriod"] == 90
        assert settings["managedTerminationProtection"] == "ENABLED"
        assert settings["managedDraining"] == "ENABLED"
    clusters = {c["clusterName"]: c for c in ecs.describe_clusters(
        clusters=[NAMES.ec2_cluster, NAMES.cluster])["clusters"]}  # fmt: skip
    assert sorted(clusters[NAMES.ec2_cluster]["capacityProviders"]) == sorted(
        NAMES.capacity(c) for c in r.EC2_CAPACITIES
    )
    assert sorted(clusters[NAMES.cluster]["capacityProviders"]) == ["FARGATE", "FARGATE_SPOT"]

    vpc = ec2.describe_vpcs(Filters=[{"Name": "isDefault", "Values": ["true"]}])["Vpcs"][0]
    tables = ec2.describe_route_tables(Filters=[{"Name": "vpc-id", "Values": [vpc["VpcId"]]}])
    (endpoint,) = ec2.describe_vpc_endpoints()["VpcEndpoints"]
    assert endpoint["VpcEndpointType"] == "Gateway"
    assert endpoint["ServiceName"] == "com.amazonaws.us-east-1.s3"
    assert sorted(endpoint["RouteTableIds"]) == sorted(
        t["RouteTableId"] for t in tables["RouteTables"]
    )
    assert Config.load().aws["ec2"]["capacity_providers"] == {
        c: NAMES.capacity(c) for c in r.EC2_CAPACITIES
    }
    assert set(report.quotas) >= {label for label, *_ in r.EC2_QUOTAS}


def test_setup_ec2_twice_changes_nothing_and_says_so() -> None:
    first: list[str] = []
    provision.setup(say=first.append, ec2=True)
    assert first[-1] == "Done: run work on AWS with backend='fargate' or backend='ec2'."
    said: list[str] = []
    again = provision.setup(say=said.append, ec2=True)
    assert not again.changed, [s for s in again.steps if s.outcome != "exists"]
    assert said[-1] == "Nothing to do."
    # A plain setup afterwards keeps the ec2 part in the config.
    provision.setup(say=_quiet)
    assert Config.load().aws["ec2"]["cluster"].endswith("/starburst-ec2")


def test_setup_ec2_repairs_what_drifted() -> None:
    provision.setup(say=_quiet, ec2=True)
    name = NAMES.capacity("spot")
    boto3.client("autoscaling").update_auto_scaling_group(
        AutoScalingGroupName=name, NewInstancesProtectedFromScaleIn=False, MinSize=0
    )
    boto3.client("iam").detach_role_policy(
        RoleName=NAMES.instance_role, PolicyArn=r.INSTANCE_ROLE_POLICY_ARN
    )
    ec2 = boto3.client("ec2")
    template = NAMES.launch_template("arm64")
    opened = ec2.create_launch_template_version(
        LaunchTemplateName=template,
        SourceVersion="1",
        LaunchTemplateData={"MetadataOptions": {"HttpTokens": "optional"}},
    )["LaunchTemplateVersion"]["VersionNumber"]
    ec2.modify_launch_template(LaunchTemplateName=template, DefaultVersion=str(opened))
    again = provision.setup(say=_quiet, ec2=True)
    fixed = {(s.resource, s.name) for s in again.steps if s.outcome == "updated"}
    assert fixed >= {
        ("scaling group", name),
        ("instance role", NAMES.instance_role),
        ("launch template", template),
    }
    assert _groups()[name]["NewInstancesProtectedFromScaleIn"] is True
    default = ec2.describe_launch_template_versions(
        LaunchTemplateName=template, Versions=["$Default"]
    )["LaunchTemplateVersions"][0]["LaunchTemplateData"]
    assert default["MetadataOptions"]["HttpTokens"] == "required"
    assert not provision.setup(say=_quiet, ec2=True).changed


def test_the_new_profile_is_retried_until_aws_knows_it(aws) -> None:
    refusal = (
        "Invalid IAM Instance Profile name: Value (starburst-instance-us-east-1) for "
        "parameter iamInstanceProfile.name is invalid."
    )
    aws.faults.error("CreateAutoScalingGroup", "ValidationError", message=refusal, times=3)
    clock = FakeClock()
    provision.setup(say=_quiet, ec2=True, clock=clock)
    assert set(_groups()) == {NAMES.capacity(c) for c in r.EC2_CAPACITIES}
    assert clock.sleeps == [2.0, 4.0, 8.0]  # backoff, and no real waiting


def test_a_profile_aws_never_accepts_fails_with_a_sentence_after_three_minutes(aws) -> None:
    aws.faults.error(
        "CreateAutoScalingGroup", "ValidationError", message="Invalid IAM Instance Profile name",
        times=None,
    )  # fmt: skip
    clock = FakeClock()
    with pytest.raises(SetupRequiredError, match=r"after 180 s .*run `starburst setup --ec2`"):
        provision.setup(say=_quiet, ec2=True, clock=clock)
    assert 150 <= clock.now <= ec2_setup.PROFILE_PROPAGATION_SECONDS
    aws.faults.clear_errors("CreateAutoScalingGroup")


def test_other_group_errors_are_not_retried(aws) -> None:
    aws.faults.error("CreateAutoScalingGroup", "ValidationError", message="bad subnet", times=1)
    clock = FakeClock()
    with pytest.raises(Exception, match="bad subnet"):
        provision.setup(say=_quiet, ec2=True, clock=clock)
    assert clock.sleeps == []


def test_teardown_removes_everything_setup_ec2_made(aws) -> None:
    provision.setup(say=_quiet, ec2=True)
    # Instances up (protected from scale-in, as ECS keeps busy ones): teardown empties
    # the groups before it deletes them.
    boto3.client("autoscaling").set_desired_capacity(
        AutoScalingGroupName=NAMES.capacity("spot"), DesiredCapacity=2
    )
    aws.ec2.wait_for_instances(2, NAMES.capacity("spot"))
    made = _tagged_everywhere()
    assert all(made.values()), made
    assert len(made["instances"]) == 2
    provision.teardown(say=_quiet, clock=FakeClock())
    assert {k: v for k, v in _tagged_everywhere().items() if v} == {}
    assert provision.teardown(say=_quiet, clock=FakeClock()) == []


def test_teardown_keeps_what_starburst_did_not_make() -> None:
    provision.setup(say=_quiet, ec2=True)
    ec2 = boto3.client("ec2")
    # Someone's own S3 endpoint on another VPC, and a launch template of starburst's name
    # that someone made by hand in place of starburst's: both stay.
    other_vpc = ec2.create_vpc(CidrBlock="10.9.0.0/16")["Vpc"]["VpcId"]
    theirs = ec2.create_vpc_endpoint(
        VpcId=other_vpc, ServiceName="com.amazonaws.us-east-1.s3", VpcEndpointType="Gateway"
    )["VpcEndpoint"]["VpcEndpointId"]
    name = NAMES.launch_template("x86_64")
    ec2.delete_launch_template(LaunchTemplateName=name)
    ec2.create_launch_template(LaunchTemplateName=name, LaunchTemplateData={"ImageId": "ami-1"})
    said: list[str] = []
    provision.teardown(say=said.append, clock=FakeClock())
    assert ec2.describe_launch_templates(LaunchTemplateNames=[name])["LaunchTemplates"]
    assert any(f"kept      launch template {name}" in line for line in said)
    left = ec2.describe_vpc_endpoints()["VpcEndpoints"]
    assert [e["VpcEndpointId"] for e in left if e["State"].lower() != "deleted"] == [theirs]


def test_a_fargate_teardown_asks_nothing_of_auto_scaling(aws) -> None:
    provision.setup(say=_quiet)
    aws.faults.error("DescribeAutoScalingGroups", "AccessDenied", times=None)
    provision.teardown(say=_quiet, clock=FakeClock())
    aws.faults.clear_errors("DescribeAutoScalingGroups")


def test_cli_setup_ec2_and_status_show_it() -> None:
    runner = CliRunner()
    done = runner.invoke(main, ["setup", "--ec2"])
    assert done.exit_code == 0, done.output
    assert "capacity provider" in done.output and "L-" not in done.output
    shown = runner.invoke(main, ["status"])
    assert shown.exit_code == 0, shown.output
    assert "starburst-ec2" in shown.output
    assert "starburst-spot" in shown.output and "ok: 0 instances" in shown.output
    boto3.client("ecs").put_cluster_capacity_providers(
        cluster=NAMES.ec2_cluster, capacityProviders=[], defaultCapacityProviderStrategy=[]
    )
    broken = provision.setup_status()["resources"]
    assert broken[NAMES.capacity("spot")].startswith("unhealthy: its capacity provider")
    assert broken[NAMES.capacity("spot")].endswith("(run starburst setup --ec2)")
    provision.setup(say=_quiet, ec2=True)
    assert provision.setup_status()["resources"][NAMES.capacity("spot")].startswith("ok")


def test_quota_shows_the_ec2_quotas_once_set_up(aws) -> None:
    runner = CliRunner()
    assert "EC2" not in runner.invoke(main, ["quota"]).output
    provision.setup(say=_quiet, ec2=True)
    boto3.client("ec2").run_instances(
        ImageId="ami-12c6146b", MinCount=2, MaxCount=2, InstanceType="c7i.xlarge"
    )
    shown = runner.invoke(main, ["quota"])
    assert shown.exit_code == 0, shown.output
    for label, code in [
        ("EC2 standard Spot", "L-34B43A08"),
        ("EC2 G and VT On-Demand", "L-DB2E81BA"),
        ("EC2 G and VT Spot", "L-3819A6DF"),
    ]:
        assert f"{label} ({code}): limit " in shown.output
    assert "EC2 standard On-Demand (L-1216C47A): limit 160 vCPUs, 8 vCPUs in use" in shown.output


def test_group_size_follows_the_vcpu_quota() -> None:
    types = [CATALOGUE["c7i.xlarge"], CATALOGUE["c7i.8xlarge"]]
    assert ec2_resources.max_instances(640, types) == 20  # 640 vCPUs of the largest (32)
    assert ec2_resources.max_instances(5, types) == 1  # a new account's 5 vCPUs: never 0
    assert ec2_resources.max_instances(None, types) == ec2_resources.DEFAULT_MAX_INSTANCES
