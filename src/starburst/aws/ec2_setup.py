"""``starburst setup --ec2`` and its teardown: what the ec2 backend's instances run on.

Everything here is free while idle (EC2_FACTS §8.1): the instances' role and profile, an ECS
cluster of its own, a launch template per kind of instance (x86_64, arm64, GPU) on the
ECS-optimised AMI, a Spot and an on-demand Auto Scaling group (size 0 until a run asks) each
with a capacity provider, and an S3 gateway endpoint; the workers' security group (no
inbound rule) is the one setup makes for Fargate. Setup is idempotent like the rest of
``provision``; teardown removes, in the order AWS needs (§8.4), only what carries
starburst's tag.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Callable, Iterator
from typing import Any, Protocol, TypeVar

import botocore.exceptions

from ..backends.ec2.instances import choose_instance_types
from ..errors import SetupRequiredError
from . import resources as r
from .connection import Aws, translate_errors
from .ec2_resources import launch_template_data, max_instances, overrides, tags
from .provision import Say, _error_code, _outcome, _Provisioner, _skip, _tagged
from .quotas import ec2_quota_limits
from .session_roles import delete_role

T = TypeVar("T")

#: How long a new instance profile may stay unusable ("Invalid IAM Instance Profile"):
#: users report up to about 2 minutes (EC2_FACTS §4).
PROFILE_PROPAGATION_SECONDS = 180.0
#: How long teardown waits for the groups' instances to terminate.
TERMINATION_WAIT_SECONDS = 600.0
#: The worker size the groups' instance types are chosen for at setup; each run sets its own.
SETUP_WORKER = (1.0, 2048)


class Clock(Protocol):
    """What the waits here need of time (tests pass one that does not sleep)."""

    def monotonic(self) -> float: ...

    def sleep(self, seconds: float) -> None: ...


class _SystemClock:
    monotonic = staticmethod(time.monotonic)
    sleep = staticmethod(time.sleep)


SYSTEM_CLOCK: Clock = _SystemClock()


def until_profile_usable(attempt: Callable[[], T], clock: Clock = SYSTEM_CLOCK) -> T:
    """``attempt()``, retried with backoff while AWS does not yet know a new instance
    profile ("Invalid IAM Instance Profile", for up to ``PROFILE_PROPAGATION_SECONDS``)."""
    give_up = clock.monotonic() + PROFILE_PROPAGATION_SECONDS
    pauses = _doubling(first=2.0, most=30.0)
    while True:
        try:
            return attempt()
        except botocore.exceptions.ClientError as exc:
            message = str(exc.response.get("Error", {}).get("Message", ""))
            if "instance profile" not in message.lower():
                raise
            pause = next(pauses)
            if clock.monotonic() + pause > give_up:
                raise SetupRequiredError(
                    f"AWS still refuses the new instance profile after "
                    f"{PROFILE_PROPAGATION_SECONDS:g} s ({message}); IAM changes can take "
                    "longer to reach EC2 on rare days: run `starburst setup --ec2` again in "
                    "a few minutes (it picks up where it stopped)"
                ) from exc
            clock.sleep(pause)


def _doubling(first: float, most: float) -> Iterator[float]:
    pause = first
    while True:
        yield pause
        pause = min(pause * 2, most)


class Ec2Provisioner:
    """The setup steps of the ec2 backend, recorded in ``work``'s report."""

    def __init__(self, work: _Provisioner, clock: Clock = SYSTEM_CLOCK) -> None:
        self.work = work
        self.aws = work.aws
        self.names = work.names
        self.clock = clock
        self.iam = work.iam
        self.ec2 = work.aws.client("ec2")
        self.ecs = work.aws.client("ecs")
        self.autoscaling = work.aws.client("autoscaling")

    def run(self, subnets: list[str], security_group: str) -> dict[str, Any]:
        """Every step; returns what the ec2 backend needs to know (kept in the config)."""
        cluster = self.cluster()  # first: teardown looks for the rest when it is there
        profile_arn = self.instance_profile()
        templates = {
            kind: self.launch_template(kind, profile_arn, security_group)
            for kind in r.EC2_TEMPLATE_KINDS
        }
        self.s3_endpoint(subnets)
        limits = ec2_quota_limits(self.aws)
        capacity_providers = {}
        for capacity in r.EC2_CAPACITIES:
            quota = limits[f"ec2 standard {capacity}"]
            group_arn = self.group(capacity, subnets, quota)
            capacity_providers[capacity] = self.capacity_provider(capacity, group_arn)
        self.attach(list(capacity_providers.values()))
        self.work.report.quotas.update(limits)
        for label, value in limits.items():
            shown = "unknown" if value is None else f"{value:g} vCPUs"
            self.work.say(f"  {'quota':>8}  {label:<16} {shown}")
        return {
            "cluster": cluster,
            "instance_profile": profile_arn,
            "launch_templates": templates,
            "capacity_providers": capacity_providers,
            "groups": {c: self.names.capacity(c) for c in r.EC2_CAPACITIES},
        }

    # Role and profile -------------------------------------------------------------------

    def instance_profile(self) -> str:
        """The instances' role (the managed ECS agent policy, nothing else) in a profile."""
        name = self.names.instance_role
        trust = {
            "Version": "2012-10-17",
            "Statement": [
                {
                    "Effect": "Allow",
                    "Principal": {"Service": "ec2.amazonaws.com"},
                    "Action": "sts:AssumeRole",
                }
            ],
        }
        fixed = []
        with translate_errors(f"set up the instance role {name}"):
            try:
                role = self.iam.get_role(RoleName=name)["Role"]
                created = False
            except self.iam.exceptions.NoSuchEntityException:
                self.iam.create_role(
                    RoleName=name,
                    AssumeRolePolicyDocument=json.dumps(trust),
                    Description="starburst ec2 instances: the ECS agent",
                    Tags=tags(),
                )
                role, created = {"AssumeRolePolicyDocument": trust}, True
            if not r.same_document(role["AssumeRolePolicyDocument"], trust):
                self.iam.update_assume_role_policy(RoleName=name, PolicyDocument=json.dumps(trust))
                fixed.append("trust policy")
            attached = self.iam.list_attached_role_policies(RoleName=name)["AttachedPolicies"]
            if r.INSTANCE_ROLE_POLICY_ARN not in {p["PolicyArn"] for p in attached}:
                self.iam.attach_role_policy(RoleName=name, PolicyArn=r.INSTANCE_ROLE_POLICY_ARN)
                fixed.append("ECS agent policy")
            try:
                profile = self.iam.get_instance_profile(InstanceProfileName=name)
                profile = profile["InstanceProfile"]
                made_profile = False
            except self.iam.exceptions.NoSuchEntityException:
                profile = self.iam.create_instance_profile(InstanceProfileName=name, Tags=tags())
                profile, made_profile = profile["InstanceProfile"], True
            if name not in {member["RoleName"] for member in profile.get("Roles", [])}:
                self.iam.add_role_to_instance_profile(InstanceProfileName=name, RoleName=name)
                if not made_profile:
                    fixed.append("role added to the profile")
        detail = ", ".join(fixed) if fixed and not created else ""
        self.work.record("instance role", name, _outcome(created, bool(fixed)), detail)
        return str(profile["Arn"])

    # Cluster ----------------------------------------------------------------------------

    def cluster(self) -> str:
        name = self.names.ec2_cluster
        with translate_errors(f"create the ECS cluster {name}"):
            found = [
                c
                for c in self.ecs.describe_clusters(clusters=[name])["clusters"]
                if c.get("status") == "ACTIVE"
            ]
            if found:
                self.work.record("cluster", name, "exists")
                return str(found[0]["clusterArn"])
            arn = self.ecs.create_cluster(
                clusterName=name, tags=[{"key": r.TAG_KEY, "value": r.TAG_VALUE}]
            )["cluster"]["clusterArn"]
        self.work.record("cluster", name, "created", "ec2 instances")
        return str(arn)

    # Launch templates -------------------------------------------------------------------

    def launch_template(self, kind: str, profile_arn: str, security_group: str) -> str:
        name = self.names.launch_template(kind)
        wanted = launch_template_data(self.names, kind, profile_arn, security_group)
        with translate_errors(f"create the launch template {name}"):
            try:
                found = self.ec2.describe_launch_templates(LaunchTemplateNames=[name])
            except botocore.exceptions.ClientError as exc:
                if "NotFound" not in _error_code(exc):
                    raise
                created = self.ec2.create_launch_template(
                    LaunchTemplateName=name,
                    LaunchTemplateData=wanted,
                    TagSpecifications=[{"ResourceType": "launch-template", "Tags": tags()}],
                )["LaunchTemplate"]
                self.work.record("launch template", name, "created", kind)
                return str(created["LaunchTemplateId"])
            template_id = found["LaunchTemplates"][0]["LaunchTemplateId"]
            current = self.ec2.describe_launch_template_versions(
                LaunchTemplateId=template_id, Versions=["$Default"]
            )["LaunchTemplateVersions"][0]["LaunchTemplateData"]
            if all(current.get(k) == v for k, v in wanted.items() if k != "TagSpecifications"):
                self.work.record("launch template", name, "exists")
                return str(template_id)
            version = self.ec2.create_launch_template_version(
                LaunchTemplateId=template_id, LaunchTemplateData=wanted
            )["LaunchTemplateVersion"]["VersionNumber"]
            self.ec2.modify_launch_template(
                LaunchTemplateId=template_id, DefaultVersion=str(version)
            )
        self.work.record("launch template", name, "updated", f"version {version}")
        return str(template_id)

    # Network ----------------------------------------------------------------------------

    def s3_endpoint(self, subnets: list[str]) -> None:
        """A gateway endpoint (free) so that S3 traffic stays on AWS's network."""
        service = f"com.amazonaws.{self.aws.region}.s3"
        with translate_errors("create the S3 gateway endpoint"):
            vpc_id = self.ec2.describe_subnets(SubnetIds=subnets[:1])["Subnets"][0]["VpcId"]
            tables = sorted(
                t["RouteTableId"]
                for t in self.ec2.describe_route_tables(
                    Filters=[{"Name": "vpc-id", "Values": [vpc_id]}]
                )["RouteTables"]
            )
            found = [
                e
                for e in self.ec2.describe_vpc_endpoints(
                    Filters=[
                        {"Name": "vpc-id", "Values": [vpc_id]},
                        {"Name": "service-name", "Values": [service]},
                        {"Name": "vpc-endpoint-type", "Values": ["Gateway"]},
                    ]
                )["VpcEndpoints"]
                if e.get("State", "").lower() not in ("deleted", "deleting")
            ]
            if not found:
                endpoint = self.ec2.create_vpc_endpoint(
                    VpcId=vpc_id,
                    ServiceName=service,
                    VpcEndpointType="Gateway",
                    RouteTableIds=tables,
                    TagSpecifications=[{"ResourceType": "vpc-endpoint", "Tags": tags()}],
                )["VpcEndpoint"]
                self.work.record("s3 endpoint", endpoint["VpcEndpointId"], "created", vpc_id)
                return
            endpoint = found[0]
            missing = sorted(set(tables) - set(endpoint.get("RouteTableIds", [])))
            ours = _tagged({t["Key"]: t["Value"] for t in endpoint.get("Tags", [])})
            if missing and ours:
                self.ec2.modify_vpc_endpoint(
                    VpcEndpointId=endpoint["VpcEndpointId"], AddRouteTableIds=missing
                )
        detail = "" if ours else "not starburst's: kept as it is"
        outcome = "updated" if missing and ours else "exists"
        self.work.record("s3 endpoint", endpoint["VpcEndpointId"], outcome, detail)

    # Auto Scaling groups and capacity providers -----------------------------------------

    def group(self, capacity: str, subnets: list[str], quota: float | None) -> str:
        """The Auto Scaling group of ``capacity``: empty (min and desired 0), its instances
        protected from scale-in (ECS lifts it when they are empty), every subnet."""
        name = self.names.capacity(capacity)
        types = choose_instance_types(*SETUP_WORKER)
        spot = capacity == "spot"
        distribution: dict[str, Any] = {
            "OnDemandBaseCapacity": 0,
            "OnDemandPercentageAboveBaseCapacity": 0 if spot else 100,
            "OnDemandAllocationStrategy": "prioritized",
        }
        if spot:  # no SpotMaxPrice: a cap raises interruptions (EC2_FACTS §2.1)
            distribution["SpotAllocationStrategy"] = "price-capacity-optimized"
        settings: dict[str, Any] = {
            "MinSize": 0,
            "MaxSize": max_instances(quota, types),
            "VPCZoneIdentifier": ",".join(subnets),
            "NewInstancesProtectedFromScaleIn": True,
            "CapacityRebalance": False,
        }
        with translate_errors(f"create the Auto Scaling group {name}"):
            groups = self.autoscaling.describe_auto_scaling_groups(AutoScalingGroupNames=[name])
            policy = {
                "LaunchTemplate": {
                    "LaunchTemplateSpecification": {
                        "LaunchTemplateName": self.names.launch_template("x86_64"),
                        "Version": "$Default",
                    },
                    "Overrides": overrides(self.names, types),
                },
                "InstancesDistribution": distribution,
            }
            if not groups["AutoScalingGroups"]:
                until_profile_usable(
                    lambda: self.autoscaling.create_auto_scaling_group(
                        AutoScalingGroupName=name,
                        DesiredCapacity=0,
                        MixedInstancesPolicy=policy,
                        Tags=[{**tag, "PropagateAtLaunch": True} for tag in tags()],
                        **settings,
                    ),
                    self.clock,
                )
                self.work.record("scaling group", name, "created", f"max {settings['MaxSize']}")
                group = self.autoscaling.describe_auto_scaling_groups(AutoScalingGroupNames=[name])[
                    "AutoScalingGroups"
                ][0]
                return str(group["AutoScalingGroupARN"])
            group = groups["AutoScalingGroups"][0]
            drifted = {k: v for k, v in settings.items() if group.get(k) != v}
            if set(group["VPCZoneIdentifier"].split(",")) == set(subnets):
                drifted.pop("VPCZoneIdentifier", None)  # (AWS may list them in its order)
            current = group.get("MixedInstancesPolicy", {})
            if "LaunchTemplate" not in current or any(
                current["InstancesDistribution"].get(k) != v for k, v in distribution.items()
            ):
                drifted["MixedInstancesPolicy"] = True
            if drifted:
                # The whole policy goes with any change (moto drops it otherwise); the types
                # a run chose stay: only the distribution is setup's.
                policy["LaunchTemplate"] = current.get("LaunchTemplate", policy["LaunchTemplate"])
                self.autoscaling.update_auto_scaling_group(
                    AutoScalingGroupName=name, **settings, MixedInstancesPolicy=policy
                )
        outcome = "updated" if drifted else "exists"
        self.work.record("scaling group", name, outcome, ", ".join(drifted))
        return str(group["AutoScalingGroupARN"])

    def capacity_provider(self, capacity: str, group_arn: str) -> str:
        """ECS's handle on the group: managed scaling (the backstop that empties idle
        instances if the client dies), termination protection, draining."""
        name = self.names.capacity(capacity)
        wanted = {
            "managedScaling": {
                "status": "ENABLED",
                "targetCapacity": 100,
                "minimumScalingStepSize": 1,
                "maximumScalingStepSize": 10000,
                "instanceWarmupPeriod": 90,
            },
            "managedTerminationProtection": "ENABLED",
            "managedDraining": "ENABLED",
        }
        with translate_errors(f"create the capacity provider {name}"):
            found = [
                p
                for p in self.ecs.describe_capacity_providers(capacityProviders=[name])[
                    "capacityProviders"
                ]
                if p.get("status") == "ACTIVE"
            ]
            if not found:
                self.ecs.create_capacity_provider(
                    name=name,
                    autoScalingGroupProvider={"autoScalingGroupArn": group_arn, **wanted},
                    tags=[{"key": r.TAG_KEY, "value": r.TAG_VALUE}],
                )
                self.work.record("capacity provider", name, "created", capacity)
                return name
            current = found[0]["autoScalingGroupProvider"]
            if any(current.get(k) != v for k, v in wanted.items()):
                self.ecs.update_capacity_provider(name=name, autoScalingGroupProvider=wanted)
                self.work.record("capacity provider", name, "updated", "managed settings")
            else:
                self.work.record("capacity provider", name, "exists")
        return name

    def attach(self, providers: list[str]) -> None:
        """The providers on the ec2 cluster, and nothing else (the list is replaced whole:
        the Fargate cluster is never touched)."""
        name = self.names.ec2_cluster
        with translate_errors(f"attach the capacity providers to {name}"):
            cluster = self.ecs.describe_clusters(clusters=[name])["clusters"][0]
            if sorted(cluster.get("capacityProviders", [])) == sorted(providers):
                return
            self.ecs.put_cluster_capacity_providers(
                cluster=name,
                capacityProviders=providers,
                defaultCapacityProviderStrategy=[{"capacityProvider": providers[0], "weight": 1}],
            )
        self.work.record("cluster", name, "updated", "capacity providers " + ", ".join(providers))


def teardown_ec2(
    aws: Aws, names: r.Names, say: Say, set_up: bool, clock: Clock = SYSTEM_CLOCK
) -> list[str]:
    """Remove what ``setup --ec2`` made, in the order AWS needs (EC2_FACTS §8.4): stop the
    cluster's tasks, empty the groups, take the capacity providers off the cluster, delete
    them, the groups, the launch templates, the cluster (after its leftover container
    instances), the S3 endpoint, and last the instance role and profile. Whatever lacks
    starburst's tag stays. Nothing is asked of Auto Scaling or EC2 unless the config says
    the ec2 part was set up (``set_up``) or its cluster, which setup makes first, is there:
    a Fargate user's teardown needs no permission of theirs."""
    ecs, autoscaling = aws.client("ecs"), aws.client("autoscaling")
    removed: list[str] = []
    with translate_errors("remove the ec2 backend's resources"):
        cluster = _our_ec2_cluster(ecs, names, say)
        if not (cluster or set_up):
            return []
        if cluster:  # (ECS keeps instances with tasks protected from scale-in)
            for page in ecs.get_paginator("list_tasks").paginate(cluster=cluster):
                for arn in page["taskArns"]:
                    ecs.stop_task(cluster=cluster, task=arn, reason="starburst teardown")
        groups = _our_groups(autoscaling, names, say)
        _empty_groups(autoscaling, groups, clock)
        providers = _our_providers(ecs, names, say)
        _detach_providers(ecs, names, providers)
        for name, arn in providers.items():
            ecs.delete_capacity_provider(capacityProvider=name)
            removed.append(_said(say, "capacity provider", name, arn))
        for name, arn in groups.items():
            autoscaling.delete_auto_scaling_group(AutoScalingGroupName=name, ForceDelete=True)
            removed.append(_said(say, "scaling group", name, arn))
        removed += _remove_launch_templates(aws.client("ec2"), names, say)
        if cluster:
            for page in ecs.get_paginator("list_container_instances").paginate(cluster=cluster):
                for arn in page["containerInstanceArns"]:
                    with contextlib.suppress(ecs.exceptions.ClientException):  # gone already
                        ecs.deregister_container_instance(
                            cluster=cluster, containerInstance=arn, force=True
                        )
            ecs.delete_cluster(cluster=cluster)
            removed.append(_said(say, "cluster", names.ec2_cluster, cluster))
        removed += _remove_s3_endpoint(aws.client("ec2"), say)
        removed += _remove_instance_profile(aws.client("iam"), names, say)
    return removed


def _said(say: Say, what: str, name: str, arn: str) -> str:
    say(f"  removed   {what} {name}")
    return arn


def _our_groups(autoscaling: Any, names: r.Names, say: Say) -> dict[str, str]:
    found = {}
    wanted = [names.capacity(c) for c in r.EC2_CAPACITIES]
    for group in autoscaling.describe_auto_scaling_groups(AutoScalingGroupNames=wanted)[
        "AutoScalingGroups"
    ]:
        name = group["AutoScalingGroupName"]
        if _tagged({t["Key"]: t["Value"] for t in group.get("Tags", [])}):
            found[name] = group["AutoScalingGroupARN"]
        else:
            _skip(say, f"scaling group {name}")
    return found


def _empty_groups(autoscaling: Any, groups: dict[str, str], clock: Clock) -> None:
    """Size 0, scale-in protection lifted, then wait until their instances are gone."""
    for name in groups:
        autoscaling.update_auto_scaling_group(
            AutoScalingGroupName=name, MinSize=0, MaxSize=0, DesiredCapacity=0
        )
    deadline = clock.monotonic() + TERMINATION_WAIT_SECONDS
    while groups:
        described = autoscaling.describe_auto_scaling_groups(AutoScalingGroupNames=list(groups))
        left = {g["AutoScalingGroupName"]: g.get("Instances", []) for g in described[
            "AutoScalingGroups"]}  # fmt: skip
        if not any(left.values()) or clock.monotonic() > deadline:
            return  # (ForceDelete terminates any still there)
        for name, instances in left.items():
            protected = [i["InstanceId"] for i in instances if i.get("ProtectedFromScaleIn")]
            if protected:
                autoscaling.set_instance_protection(
                    AutoScalingGroupName=name, InstanceIds=protected, ProtectedFromScaleIn=False
                )
        clock.sleep(5)


def _our_providers(ecs: Any, names: r.Names, say: Say) -> dict[str, str]:
    found = {}
    wanted = [names.capacity(c) for c in r.EC2_CAPACITIES]
    for provider in ecs.describe_capacity_providers(capacityProviders=wanted, include=["TAGS"])[
        "capacityProviders"
    ]:
        if provider.get("status") != "ACTIVE":
            continue
        if _tagged({t["key"]: t["value"] for t in provider.get("tags", [])}):
            found[provider["name"]] = provider["capacityProviderArn"]
        else:
            _skip(say, f"capacity provider {provider['name']}")
    return found


def _detach_providers(ecs: Any, names: r.Names, providers: dict[str, str]) -> None:
    """Take ours off every cluster that has them (the list is replaced: the rest stay)."""
    clusters = [a for p in ecs.get_paginator("list_clusters").paginate() for a in p["clusterArns"]]
    for start in range(0, len(clusters), 100):
        for cluster in ecs.describe_clusters(clusters=clusters[start : start + 100])["clusters"]:
            attached = cluster.get("capacityProviders", [])
            if not set(attached) & set(providers):
                continue
            keep = [p for p in attached if p not in providers]
            strategy = [
                s for s in cluster.get("defaultCapacityProviderStrategy", [])
                if s["capacityProvider"] in keep
            ]  # fmt: skip
            ecs.put_cluster_capacity_providers(
                cluster=cluster["clusterArn"],
                capacityProviders=keep,
                defaultCapacityProviderStrategy=strategy,
            )


def _remove_launch_templates(ec2: Any, names: r.Names, say: Say) -> list[str]:
    removed = []
    for kind in r.EC2_TEMPLATE_KINDS:
        name = names.launch_template(kind)
        try:
            found = ec2.describe_launch_templates(LaunchTemplateNames=[name])["LaunchTemplates"]
        except botocore.exceptions.ClientError as exc:
            if "NotFound" not in _error_code(exc):
                raise
            continue
        template = found[0]
        if not _tagged({t["Key"]: t["Value"] for t in template.get("Tags", [])}):
            _skip(say, f"launch template {name}")
            continue
        ec2.delete_launch_template(LaunchTemplateId=template["LaunchTemplateId"])
        removed.append(_said(say, "launch template", name, template["LaunchTemplateId"]))
    return removed


def _our_ec2_cluster(ecs: Any, names: r.Names, say: Say) -> str | None:
    """The ec2 cluster's ARN when it is there and starburst's."""
    clusters = [
        c
        for c in ecs.describe_clusters(clusters=[names.ec2_cluster], include=["TAGS"])["clusters"]
        if c.get("status") == "ACTIVE"
    ]
    if not clusters:
        return None
    if not _tagged({t["key"]: t["value"] for t in clusters[0].get("tags", [])}):
        _skip(say, f"cluster {names.ec2_cluster}")
        return None
    return str(clusters[0]["clusterArn"])


def _remove_s3_endpoint(ec2: Any, say: Say) -> list[str]:
    endpoints = ec2.describe_vpc_endpoints(
        Filters=[{"Name": f"tag:{r.TAG_KEY}", "Values": [r.TAG_VALUE]}]
    )["VpcEndpoints"]
    gone = [e["VpcEndpointId"] for e in endpoints if e.get("State", "").lower() != "deleted"]
    if gone:
        ec2.delete_vpc_endpoints(VpcEndpointIds=gone)
    return [_said(say, "s3 endpoint", e, e) for e in gone]


def _remove_instance_profile(iam: Any, names: r.Names, say: Say) -> list[str]:
    name = names.instance_role
    removed = []
    try:
        profile = iam.get_instance_profile(InstanceProfileName=name)["InstanceProfile"]
    except iam.exceptions.NoSuchEntityException:
        profile = None
    if profile is not None:
        if not _tagged({t["Key"]: t["Value"] for t in profile.get("Tags", [])}):
            return _skip(say, f"instance profile {name}")
        for role in profile.get("Roles", []):
            iam.remove_role_from_instance_profile(
                InstanceProfileName=name, RoleName=role["RoleName"]
            )
        iam.delete_instance_profile(InstanceProfileName=name)
        removed.append(_said(say, "instance profile", name, profile["Arn"]))
    try:
        role = iam.get_role(RoleName=name)["Role"]
    except iam.exceptions.NoSuchEntityException:
        return removed
    if not _tagged({t["Key"]: t["Value"] for t in iam.list_role_tags(RoleName=name)["Tags"]}):
        return removed + _skip(say, f"role {name}")
    delete_role(iam, name)
    return [*removed, _said(say, "role", name, role["Arn"])]


def ec2_status(aws: Aws, names: r.Names) -> dict[str, str]:
    """Whether each resource of ``setup --ec2`` is there (``status``'s ec2 lines), and how
    many instances each group runs."""
    ecs, autoscaling, iam = aws.client("ecs"), aws.client("autoscaling"), aws.client("iam")
    fix = " (run starburst setup --ec2)"
    checks: dict[str, str] = {}
    with translate_errors("check the ec2 backend's resources"):
        active = [
            c for c in ecs.describe_clusters(clusters=[names.ec2_cluster])["clusters"]
            if c.get("status") == "ACTIVE"
        ]  # fmt: skip
        checks[names.ec2_cluster] = "ok" if active else "missing" + fix
        try:
            iam.get_instance_profile(InstanceProfileName=names.instance_role)
            checks[names.instance_role] = "ok"
        except iam.exceptions.NoSuchEntityException:
            checks[names.instance_role] = "missing" + fix
        attached = active[0].get("capacityProviders", []) if active else []
        wanted = [names.capacity(c) for c in r.EC2_CAPACITIES]
        found = autoscaling.describe_auto_scaling_groups(AutoScalingGroupNames=wanted)
        groups = {g["AutoScalingGroupName"]: g for g in found["AutoScalingGroups"]}
        for name in wanted:
            group = groups.get(name)
            if group is None:
                checks[name] = "missing" + fix
            elif name not in attached:
                checks[name] = "unhealthy: its capacity provider is not on the cluster" + fix
            else:
                checks[name] = (
                    f"ok: {len(group.get('Instances', []))} instances (max {group['MaxSize']})"
                    + _warm_note(group)
                )
    return checks


def _warm_note(group: dict[str, Any]) -> str:
    """ ", kept warm until 14:05 UTC" while a ``keep_warm`` holds the group's empty instances."""
    from ..backends.ec2.warmth import WARM_TAG

    until = max(
        (float(t["Value"]) for t in group.get("Tags", []) if t["Key"] == WARM_TAG), default=0.0
    )
    if until <= time.time():
        return ""
    return f", kept warm until {time.strftime('%H:%M:%S UTC', time.gmtime(until))}"
