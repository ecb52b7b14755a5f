"""The AWS emulator itself: moto behind the layer, and ECS tasks made real by the runner."""

from __future__ import annotations

import http.client
import json
import os
import signal
import threading
import time
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError
from proc import alive

from starburst.emulator.emulator import Emulator
from starburst.emulator.emulator import wait_until as _wait
from starburst.emulator.faults import CAPACITY_REASON, QUOTA_REASON

NO_RETRIES = Config(retries={"total_max_attempts": 1, "mode": "standard"})  # one attempt
LOG_GROUP = "/emulator/tasks"

SLEEPER = ["python", "-c", "import time; time.sleep(60)"]
IGNORES_SIGTERM = [
    "python",
    "-c",
    "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
    "print('ready', flush=True); time.sleep(60)",
]


def _group_members(pgid: int) -> list[int]:
    members = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[2]) == pgid and fields[0] != "Z":
                members.append(int(entry.name))
    return members


def _run(aws: Emulator, task_def: str, count: int = 1, **kwargs: Any) -> dict[str, Any]:
    if "capacityProviderStrategy" not in kwargs:
        kwargs.setdefault("launchType", "FARGATE")
    return aws.client("ecs").run_task(
        cluster="work",
        taskDefinition=task_def,
        count=count,
        networkConfiguration=aws.network_configuration(),
        **kwargs,
    )


def _one(aws: Emulator, task_def: str, **kwargs: Any) -> str:
    answer = _run(aws, task_def, **kwargs)
    assert answer["failures"] == []
    return answer["tasks"][0]["taskArn"]


def _describe(aws: Emulator, arn: str) -> dict[str, Any]:
    return aws.client("ecs").describe_tasks(cluster="work", tasks=[arn])["tasks"][0]


@pytest.fixture
def ecs(aws: Emulator) -> Any:
    client = aws.client("ecs")
    client.create_cluster(clusterName="work")
    return client


# ---- the fixture and the environment ----------------------------------------------------


def test_boto3_reaches_the_emulator_through_the_environment(aws: Emulator) -> None:
    assert os.environ["AWS_ENDPOINT_URL"] == aws.endpoint_url
    assert aws.endpoint_url.startswith("http://127.0.0.1:")
    assert os.environ["AWS_REGION"] == os.environ["AWS_DEFAULT_REGION"] == "us-east-1"
    assert "AWS_SESSION_TOKEN" not in os.environ
    assert Path(os.environ["STARBURST_CONFIG_DIR"]) == aws.config_dir
    assert aws.config_dir.is_dir()
    assert boto3.client("sts").get_caller_identity()["Account"] == "123456789012"
    s3 = boto3.client("s3")
    s3.create_bucket(Bucket="plain")
    s3.put_object(Bucket="plain", Key="k", Body=b"payload")
    assert s3.get_object(Bucket="plain", Key="k")["Body"].read() == b"payload"
    # AWS managed policies are loaded (MOTO_IAM_LOAD_MANAGED_POLICIES).
    iam = boto3.client("iam")
    iam.create_role(RoleName="exec", AssumeRolePolicyDocument=json.dumps({"Statement": []}))
    iam.attach_role_policy(
        RoleName="exec",
        PolicyArn="arn:aws:iam::aws:policy/service-role/AmazonECSTaskExecutionRolePolicy",
    )


def test_the_emulator_keeps_a_connection_alive_as_aws_does(aws: Emulator) -> None:
    """Clients reuse their connections with AWS; a server that closed each one would charge
    every request a new TCP connection that AWS does not (and time the wrong thing)."""
    aws.client("s3").create_bucket(Bucket="kept-alive")
    host, port = aws.endpoint_url.removeprefix("http://").split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=10)
    for _ in range(3):  # one connection, three requests
        connection.request("GET", "/kept-alive")
        response = connection.getresponse()
        response.read()
        assert response.status == 200 and not response.will_close


@pytest.mark.parametrize("turn", ["first", "second"])
def test_each_test_starts_with_an_empty_aws(aws: Emulator, turn: str) -> None:
    s3 = aws.client("s3")
    assert s3.list_buckets()["Buckets"] == [], f"a bucket survived into the {turn} test"
    s3.create_bucket(Bucket="left-behind")
    assert aws.quotas.get("L-3032A538") == 4000
    aws.quotas.set("L-3032A538", 1)


# ---- tasks run for real -----------------------------------------------------------------


def test_a_task_runs_its_command_and_reports_like_ecs(aws: Emulator, ecs: Any) -> None:
    script = (
        "import json, os, urllib.request\n"
        "print('hello from task')\n"
        "print('X=' + os.environ['X'])\n"
        "print('FROM_DEF=' + os.environ['FROM_DEF'])\n"
        "print('KEY=' + os.environ['AWS_ACCESS_KEY_ID'])\n"
        "meta = urllib.request.urlopen(os.environ['ECS_CONTAINER_METADATA_URI_V4'] + '/task')\n"
        "print('ARN=' + json.load(meta)['TaskARN'])\n"
    )
    task_def = aws.register_task_definition(
        "hello",
        ["python", "-c", script],
        environment={"FROM_DEF": "yes", "AWS_ACCESS_KEY_ID": "from-task-definition"},
    )
    answer = _run(
        aws,
        task_def,
        overrides={
            "containerOverrides": [{"name": "main", "environment": [{"name": "X", "value": "42"}]}]
        },
    )
    assert answer["failures"] == []
    launched = answer["tasks"][0]
    arn = launched["taskArn"]
    assert launched["lastStatus"] == "PROVISIONING"
    assert launched["desiredStatus"] == "RUNNING"
    assert "exitCode" not in launched["containers"][0]

    aws.runner.wait_for_tasks([arn])
    task = _describe(aws, arn)
    container = task["containers"][0]
    assert task["lastStatus"] == task["desiredStatus"] == "STOPPED"
    assert task["stopCode"] == "EssentialContainerExited"
    assert task["stoppedReason"] == "Essential container in task exited"
    assert container["exitCode"] == 0, aws.runner.output(arn)
    assert container["taskArn"] == arn
    assert task["launchType"] == "FARGATE" and task["cpu"] == "256" and task["memory"] == "512"
    assert task["createdAt"] <= task["startedAt"] <= task["stoppingAt"] <= task["stoppedAt"]
    assert aws.runner.history(arn) == ["PROVISIONING", "PENDING", "RUNNING", "STOPPED"]

    task_id = arn.rsplit("/", 1)[-1]
    streams = aws.client("logs").describe_log_streams(logGroupName=LOG_GROUP)["logStreams"]
    assert [s["logStreamName"] for s in streams] == [f"task/main/{task_id}"]
    assert aws.log_messages(LOG_GROUP, f"task/main/{task_id}") == [
        "hello from task",
        "X=42",
        "FROM_DEF=yes",
        "KEY=testing",  # the runner's credentials, never the task definition's
        f"ARN={arn}",
    ]


def test_a_failing_command_and_an_overridden_command_show_their_exit_codes(
    aws: Emulator, ecs: Any
) -> None:
    task_def = aws.register_task_definition(
        "fails", ["python", "-c", "import sys; print('bad', file=sys.stderr); sys.exit(3)"]
    )
    failing = _one(aws, task_def)
    overridden = _one(
        aws,
        task_def,
        overrides={"containerOverrides": [{"name": "main", "command": ["sh", "-c", "exit 7"]}]},
    )
    aws.runner.wait_for_tasks([failing, overridden])
    assert _describe(aws, failing)["containers"][0]["exitCode"] == 3
    assert _describe(aws, overridden)["containers"][0]["exitCode"] == 7
    assert _describe(aws, failing)["stopCode"] == "EssentialContainerExited"
    stream = f"task/main/{failing.rsplit('/', 1)[-1]}"
    assert aws.log_messages(LOG_GROUP, stream) == ["bad"]


def test_stop_task_terminates_the_process(aws: Emulator, ecs: Any) -> None:
    arn = _one(aws, aws.register_task_definition("sleeper", SLEEPER))
    aws.runner.wait_for_tasks([arn], "RUNNING")
    assert _describe(aws, arn)["lastStatus"] == "RUNNING"
    pid = aws.runner.process(arn).pid
    assert alive(pid)

    stopped = ecs.stop_task(cluster="work", task=arn, reason="enough")["task"]
    assert stopped["desiredStatus"] == "STOPPED"
    aws.runner.wait_for_tasks([arn])
    task = _describe(aws, arn)
    assert not alive(pid)
    assert task["containers"][0]["exitCode"] == 143
    assert task["stopCode"] == "UserInitiated"
    assert task["stoppedReason"] == "enough"
    with pytest.raises(ClientError, match="InvalidParameterException"):
        ecs.stop_task(cluster="work", task="no-such-task")


def test_stop_task_kills_a_task_that_ignores_sigterm(aws: Emulator, ecs: Any) -> None:
    aws.runner.max_stop_timeout = 0.3
    arn = _one(aws, aws.register_task_definition("stubborn", IGNORES_SIGTERM))
    _wait(lambda: "ready" in aws.runner.output(arn), "the task to be ready")
    ecs.stop_task(cluster="work", task=arn)
    aws.runner.wait_for_tasks([arn])
    task = _describe(aws, arn)
    assert task["containers"][0]["exitCode"] == 137
    assert task["stopCode"] == "UserInitiated"


def test_spot_interruption_warns_with_sigterm_then_stops_the_task(
    aws: Emulator, ecs: Any, tmp_path: Path
) -> None:
    release = tmp_path / "release"
    script = (
        "import os, signal, sys, time\n"
        "def on_term(*_):\n"
        "    print('got SIGTERM', flush=True)\n"
        f"    while not os.path.exists({str(release)!r}):\n"
        "        time.sleep(0.01)\n"
        "    sys.exit(143)\n"
        "signal.signal(signal.SIGTERM, on_term)\n"
        "print('ready', flush=True)\n"
        "time.sleep(60)\n"
    )
    arn = _one_spot(aws, aws.register_task_definition("spot", ["python", "-c", script]))
    _wait(lambda: "ready" in aws.runner.output(arn), "the task to be ready")
    aws.faults.spot_interruption(arn, after=0.0, grace=60.0)
    _wait(lambda: "got SIGTERM" in aws.runner.output(arn), "the task to get SIGTERM")
    warned = _describe(aws, arn)
    assert warned["stopCode"] == "TerminationNotice"
    assert warned["desiredStatus"] == "STOPPED" and warned["lastStatus"] == "RUNNING"
    assert warned["capacityProviderName"] == "FARGATE_SPOT"

    release.touch()
    aws.runner.wait_for_tasks([arn])
    task = _describe(aws, arn)
    assert task["stopCode"] == "SpotInterruption"
    assert task["stoppedReason"] == "Your Spot Task was interrupted."
    assert task["containers"][0]["exitCode"] == 143
    stream = f"task/main/{arn.rsplit('/', 1)[-1]}"
    assert aws.log_messages(LOG_GROUP, stream) == ["ready", "got SIGTERM"]


def _one_spot(aws: Emulator, task_def: str) -> str:
    answer = aws.client("ecs").run_task(
        cluster="work",
        taskDefinition=task_def,
        capacityProviderStrategy=[{"capacityProvider": "FARGATE_SPOT", "weight": 1}],
        networkConfiguration=aws.network_configuration(),
    )
    assert answer["failures"] == []
    return answer["tasks"][0]["taskArn"]


def test_spot_interruption_of_the_next_task_kills_it_after_the_grace(
    aws: Emulator, ecs: Any
) -> None:
    aws.faults.spot_interruption(after=0.2, count=1, grace=0.3)
    task_def = aws.register_task_definition("stubborn", IGNORES_SIGTERM)
    victim = _one_spot(aws, task_def)
    spared = _one_spot(aws, task_def)
    aws.runner.wait_for_tasks([victim])
    task = _describe(aws, victim)
    assert task["stopCode"] == "SpotInterruption"
    assert task["stoppedReason"] == "Your Spot Task was interrupted."
    assert task["containers"][0]["exitCode"] == 137
    assert _describe(aws, spared)["lastStatus"] == "RUNNING"


def test_out_of_memory_kill(aws: Emulator, ecs: Any) -> None:
    arn = _one(aws, aws.register_task_definition("hungry", SLEEPER))
    aws.runner.wait_for_tasks([arn], "RUNNING")
    aws.faults.oom_kill(arn)
    aws.runner.wait_for_tasks([arn])
    task = _describe(aws, arn)
    container = task["containers"][0]
    assert container["exitCode"] == 137
    assert container["reason"] == "OutOfMemoryError: Container killed due to memory usage"
    assert task["stopCode"] == "EssentialContainerExited"


def test_slow_start_keeps_tasks_pending(aws: Emulator, ecs: Any) -> None:
    aws.faults.slow_start(0.5)
    arn = _one(aws, aws.register_task_definition("slow", ["python", "-c", "pass"]))
    aws.runner.wait_for_tasks([arn], "PENDING")
    aws.runner.wait_for_tasks([arn])
    task = _describe(aws, arn)
    assert aws.runner.history(arn) == ["PROVISIONING", "PENDING", "RUNNING", "STOPPED"]
    assert (task["startedAt"] - task["pullStartedAt"]).total_seconds() >= 0.5
    assert task["containers"][0]["exitCode"] == 0


def test_stopping_a_pending_task_never_starts_it(aws: Emulator, ecs: Any) -> None:
    aws.faults.slow_start(60)
    arn = _one(aws, aws.register_task_definition("never", SLEEPER))
    aws.runner.wait_for_tasks([arn], "PENDING")
    ecs.stop_task(cluster="work", task=arn, reason="changed my mind")
    aws.runner.wait_for_tasks([arn])
    task = _describe(aws, arn)
    assert aws.runner.process(arn) is None
    assert task["stopCode"] == "UserInitiated" and "exitCode" not in task["containers"][0]


def test_shutdown_kills_every_task_process_and_its_children(aws: Emulator, ecs: Any) -> None:
    task_def = aws.register_task_definition("family", ["sh", "-c", "sleep 60 & sleep 60"])
    arns = [t["taskArn"] for t in _run(aws, task_def, count=2)["tasks"]]
    aws.runner.wait_for_tasks(arns, "RUNNING")
    pids = [aws.runner.process(arn).pid for arn in arns]
    _wait(lambda: all(len(_group_members(pid)) >= 2 for pid in pids), "the children")
    aws.runner.shutdown()  # what the fixture does when the test ends
    assert [p for pid in pids for p in _group_members(pid)] == []


def test_list_and_describe_tasks_answer_as_ecs_does(aws: Emulator, ecs: Any) -> None:
    sleepers = aws.register_task_definition("sleepers", SLEEPER)
    running = [t["taskArn"] for t in _run(aws, sleepers, count=3)["tasks"]]
    done = _one(aws, aws.register_task_definition("quick", ["python", "-c", "pass"]))
    aws.runner.wait_for_tasks([done])
    # ListTasks: desiredStatus RUNNING unless asked, in pages of maxResults.
    pages = ecs.get_paginator("list_tasks").paginate(cluster="work", maxResults=2)
    assert sorted(a for page in pages for a in page["taskArns"]) == sorted(running)
    first = ecs.list_tasks(cluster="work", maxResults=2)
    assert len(first["taskArns"]) == 2 and first["nextToken"]
    assert ecs.list_tasks(cluster="work", desiredStatus="STOPPED")["taskArns"] == [done]
    # A task that aged out of ECS is MISSING.
    aws.runner.forget(done)
    answer = ecs.describe_tasks(cluster="work", tasks=[done, running[0]])
    assert [t["taskArn"] for t in answer["tasks"]] == [running[0]]
    assert answer["failures"] == [{"arn": done, "reason": "MISSING"}]


# ---- injected API faults ----------------------------------------------------------------


def test_runtask_failures_are_reported_in_failures(aws: Emulator, ecs: Any) -> None:
    task_def = aws.register_task_definition("sleeper", SLEEPER)
    aws.faults.runtask_failures("capacity", times=2)
    for _ in range(2):
        answer = _run(aws, task_def, count=3)
        assert answer["tasks"] == []
        assert answer["failures"] == [{"reason": CAPACITY_REASON}] * 3
    aws.faults.runtask_failures("quota")
    assert _run(aws, task_def)["failures"] == [{"reason": QUOTA_REASON}]
    assert len(_run(aws, task_def)["tasks"]) == 1
    assert aws.runner.task_arns == [ecs.list_tasks(cluster="work")["taskArns"][0]]


def test_throttling(aws: Emulator, ecs: Any) -> None:
    task_def = aws.register_task_definition("quick", ["python", "-c", "pass"])
    impatient = aws.client("ecs", config=NO_RETRIES)
    network = aws.network_configuration()
    aws.faults.throttle("RunTask", times=3)
    for _ in range(3):
        with pytest.raises(ClientError) as caught:
            impatient.run_task(
                cluster="work",
                taskDefinition=task_def,
                launchType="FARGATE",
                networkConfiguration=network,
            )
        assert caught.value.response["Error"]["Code"] == "ThrottlingException"
        assert caught.value.response["Error"]["Message"] == "Rate exceeded"
        assert caught.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400
    arn = impatient.run_task(
        cluster="work", taskDefinition=task_def, launchType="FARGATE", networkConfiguration=network
    )["tasks"][0]["taskArn"]
    assert aws.calls["RunTask"] == 4

    aws.faults.throttle("DescribeTasks", times=2)
    patient = aws.client("ecs")  # default retries ride it out
    assert patient.describe_tasks(cluster="work", tasks=[arn])["tasks"][0]["taskArn"] == arn
    assert aws.calls["DescribeTasks"] == 3

    s3 = aws.client("s3", config=NO_RETRIES)
    s3.create_bucket(Bucket="hot")
    aws.faults.throttle("PutObject")
    with pytest.raises(ClientError) as caught:
        s3.put_object(Bucket="hot", Key="k", Body=b"1")
    assert caught.value.response["Error"]["Code"] == "SlowDown"
    assert caught.value.response["ResponseMetadata"]["HTTPStatusCode"] == 503
    s3.put_object(Bucket="hot", Key="k", Body=b"1")


def test_vcpu_quota_enforcement(aws: Emulator, ecs: Any) -> None:
    aws.quotas.set("L-3032A538", 2)
    aws.faults.enforce_vcpu_quota()
    task_def = aws.register_task_definition("one-vcpu", SLEEPER, cpu="1024", memory="2048")
    answer = _run(aws, task_def, count=5)
    assert len(answer["tasks"]) == 2
    assert answer["failures"] == [{"reason": QUOTA_REASON}] * 3
    assert _run(aws, task_def)["failures"] == [{"reason": QUOTA_REASON}]
    # Spot has its own quota.
    spot = [{"capacityProvider": "FARGATE_SPOT", "weight": 1}]
    assert len(_run(aws, task_def, count=2, capacityProviderStrategy=spot)["tasks"]) == 2
    first = answer["tasks"][0]["taskArn"]
    ecs.stop_task(cluster="work", task=first)
    aws.runner.wait_for_tasks([first])
    assert len(_run(aws, task_def)["tasks"]) == 1


def test_fargate_sizes_and_runtask_count_are_validated(aws: Emulator, ecs: Any) -> None:
    with pytest.raises(ClientError, match="No Fargate configuration exists"):
        aws.register_task_definition("odd", SLEEPER, cpu="256", memory="4096")
    task_def = aws.register_task_definition("ok", SLEEPER)
    with pytest.raises(ClientError, match="InvalidParameterException"):
        _run(aws, task_def, count=11)


# ---- Service Quotas and Pricing ---------------------------------------------------------


def test_service_quotas_for_fargate(aws: Emulator) -> None:
    sq = aws.client("service-quotas")
    quota = sq.get_service_quota(ServiceCode="fargate", QuotaCode="L-3032A538")["Quota"]
    assert quota["Value"] == 4000.0
    assert quota["QuotaName"] == "Fargate On-Demand vCPU resource count"
    assert quota["QuotaArn"] == "arn:aws:servicequotas:us-east-1:123456789012:fargate/L-3032A538"
    assert quota["UsageMetric"]["MetricDimensions"]["Class"] == "Standard/OnDemand"
    aws.quotas.set("L-3032A538", 12)
    assert aws.quotas.get("L-3032A538") == 12
    assert (
        sq.get_service_quota(ServiceCode="fargate", QuotaCode="L-3032A538")["Quota"]["Value"] == 12
    )
    default = sq.get_aws_default_service_quota(ServiceCode="fargate", QuotaCode="L-3032A538")
    assert default["Quota"]["Value"] == 4000.0
    spot = sq.get_service_quota(ServiceCode="fargate", QuotaCode="L-36FBB829")["Quota"]
    assert spot["QuotaName"] == "Fargate Spot vCPU resource count"
    with pytest.raises(ClientError, match="NoSuchResourceException"):
        sq.get_service_quota(ServiceCode="fargate", QuotaCode="L-00000000")

    asked = sq.request_service_quota_increase(
        ServiceCode="fargate", QuotaCode="L-3032A538", DesiredValue=64
    )["RequestedQuota"]
    assert asked["Status"] == "PENDING" and asked["DesiredValue"] == 64.0
    with pytest.raises(ClientError, match="ResourceAlreadyExistsException"):
        sq.request_service_quota_increase(
            ServiceCode="fargate", QuotaCode="L-3032A538", DesiredValue=80
        )
    followed = sq.get_requested_service_quota_change(RequestId=asked["Id"])["RequestedQuota"]
    assert followed["Id"] == asked["Id"] and followed["Status"] == "PENDING"
    history = sq.list_requested_service_quota_change_history(ServiceCode="fargate")
    assert [r["Id"] for r in history["RequestedQuotas"]] == [asked["Id"]]
    by_quota = sq.list_requested_service_quota_change_history_by_quota(
        ServiceCode="fargate", QuotaCode="L-36FBB829"
    )
    assert by_quota["RequestedQuotas"] == []

    aws.quotas.resolve(asked["Id"], "APPROVED")
    assert (
        sq.get_requested_service_quota_change(RequestId=asked["Id"])["RequestedQuota"]["Status"]
        == "APPROVED"
    )
    quota = sq.get_service_quota(ServiceCode="fargate", QuotaCode="L-3032A538")["Quota"]
    assert quota["Value"] == 64
    with pytest.raises(ClientError, match="NoSuchResourceException"):
        sq.get_requested_service_quota_change(RequestId="nope")
    # Other services still go to moto.
    assert sq.list_aws_default_service_quotas(ServiceCode="vpc")["Quotas"]


def _products(aws: Emulator, **kwargs: Any) -> list[dict[str, Any]]:
    pages = (
        aws.client("pricing")
        .get_paginator("get_products")
        .paginate(ServiceCode="AmazonECS", **kwargs)
    )
    return [json.loads(item) for page in pages for item in page["PriceList"]]


def _price(product: dict[str, Any]) -> float:
    (term,) = product["terms"]["OnDemand"].values()
    (dimension,) = term["priceDimensions"].values()
    return float(dimension["pricePerUnit"]["USD"])


def _match(field: str, value: str) -> dict[str, str]:
    return {"Type": "TERM_MATCH", "Field": field, "Value": value}


def test_pricing_get_products(aws: Emulator) -> None:
    pricing = aws.client("pricing")
    answer = pricing.get_products(
        ServiceCode="AmazonECS",
        Filters=[
            _match("regionCode", "us-east-1"),
            _match("usagetype", "USE1-Fargate-vCPU-Hours:perCPU"),
        ],
    )
    assert answer["FormatVersion"] == "aws_v1"
    (item,) = answer["PriceList"]
    assert isinstance(item, str)  # JSON strings, as AWS sends them
    product = json.loads(item)
    assert product["product"]["attributes"]["location"] == "US East (N. Virginia)"
    assert product["product"]["attributes"]["cputype"] == "perCPU"
    assert _price(product) == 0.04048

    prices = {
        p["product"]["attributes"]["usagetype"]: _price(p)
        for p in _products(aws, Filters=[_match("location", "US East (N. Virginia)")])
    }
    assert prices["USE1-Fargate-GB-Hours"] == 0.004445
    assert prices["USE1-Fargate-ARM-vCPU-Hours:perCPU"] == 0.03238
    assert prices["USE1-Fargate-ARM-GB-Hours"] == 0.00356
    assert prices["USE1-SpotUsage-Fargate-vCPU-Hours:perCPU"] < 0.04048 * 0.5
    assert "USE1-SpotUsage-Fargate-GB-Hours" in prices

    paged = _products(aws, Filters=[_match("regionCode", "us-east-1")], MaxResults=2)
    assert len(paged) == len(prices) and len(paged) > 2
    first = pricing.get_products(ServiceCode="AmazonECS", MaxResults=2)
    assert len(first["PriceList"]) == 2 and first["NextToken"]
    nowhere = [_match("productFamily", "Compute"), _match("regionCode", "mars-1")]
    assert _products(aws, Filters=nowhere) == []

    aws.prices.set("us-east-1", vcpu=0.05, gb=0.005)
    prices = {
        p["product"]["attributes"]["usagetype"]: _price(p)
        for p in _products(aws, Filters=[_match("regionCode", "us-east-1")])
    }
    assert prices["USE1-Fargate-vCPU-Hours:perCPU"] == 0.05
    assert prices["USE1-Fargate-GB-Hours"] == 0.005


def test_pricing_can_fail(aws: Emulator) -> None:
    pricing = aws.client("pricing", config=NO_RETRIES)
    aws.prices.fail()
    for _ in range(2):
        with pytest.raises(ClientError) as caught:
            pricing.get_products(ServiceCode="AmazonECS")
        assert caught.value.response["ResponseMetadata"]["HTTPStatusCode"] == 500
    aws.prices.restore()
    assert pricing.get_products(ServiceCode="AmazonECS")["PriceList"]


# ---- S3 bucket policies -----------------------------------------------------------------


def test_tls_only_bucket_policy_is_evaluated_as_over_https(aws: Emulator) -> None:
    s3 = aws.client("s3")
    s3.create_bucket(Bucket="guarded")
    tls_only = {
        "Sid": "TlsOnly",
        "Effect": "Deny",
        "Principal": "*",
        "Action": "s3:*",
        "Resource": ["arn:aws:s3:::guarded", "arn:aws:s3:::guarded/*"],
        "Condition": {"Bool": {"aws:SecureTransport": "false"}},
    }
    policy = {"Version": "2012-10-17", "Statement": [tls_only]}
    s3.put_bucket_policy(Bucket="guarded", Policy=json.dumps(policy))
    s3.put_object(Bucket="guarded", Key="k", Body=b"safe")
    assert s3.get_object(Bucket="guarded", Key="k")["Body"].read() == b"safe"

    no_reads = {
        "Sid": "NoReads",
        "Effect": "Deny",
        "Principal": "*",
        "Action": "s3:GetObject",
        "Resource": "arn:aws:s3:::guarded/*",
    }
    policy["Statement"].append(no_reads)
    s3.put_bucket_policy(Bucket="guarded", Policy=json.dumps(policy))
    s3.put_object(Bucket="guarded", Key="k2", Body=b"still writable")
    with pytest.raises(ClientError) as caught:
        s3.get_object(Bucket="guarded", Key="k")
    assert caught.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403


def test_racing_conditional_writes_have_one_winner(
    aws: Emulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    """moto checks If-None-Match, then writes; the emulator makes that atomic, as S3 does.

    A slow existence check (injected here) widens the window a race needs.
    """
    from moto.s3.models import S3Backend

    real_get_object = S3Backend.get_object

    def slow_get_object(self: Any, bucket_name: str, key_name: str, *args: Any, **kw: Any) -> Any:
        found = real_get_object(self, bucket_name, key_name, *args, **kw)
        if key_name == "contested":
            time.sleep(0.05)
        return found

    monkeypatch.setattr(S3Backend, "get_object", slow_get_object)
    aws.client("s3").create_bucket(Bucket="race")
    clients = [aws.client("s3") for _ in range(6)]
    start = threading.Barrier(len(clients))
    outcomes: list[str] = []

    def create(client: Any, me: int) -> None:
        start.wait()
        try:
            client.put_object(Bucket="race", Key="contested", Body=b"%d" % me, IfNoneMatch="*")
            outcomes.append("won")
        except ClientError as err:
            outcomes.append(err.response["Error"]["Code"])

    threads = [threading.Thread(target=create, args=(c, i)) for i, c in enumerate(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert sorted(outcomes) == ["PreconditionFailed"] * 5 + ["won"]


def test_signals_are_sent_to_the_task_process_group(aws: Emulator, ecs: Any) -> None:
    """A shell entry point's children get the SIGTERM too (a container stops as a whole)."""
    aws.runner.max_stop_timeout = 5.0
    arn = _one(aws, aws.register_task_definition("shell", ["sh", "-c", "sleep 60; exit 0"]))
    aws.runner.wait_for_tasks([arn], "RUNNING")
    pid = aws.runner.process(arn).pid
    _wait(lambda: len(_group_members(pid)) == 2, "the shell's child")
    ecs.stop_task(cluster="work", task=arn)
    aws.runner.wait_for_tasks([arn])
    assert _group_members(pid) == []
    assert _describe(aws, arn)["containers"][0]["exitCode"] == 128 + signal.SIGTERM


def test_deregistering_a_container_instance_that_is_gone_is_a_client_error(
    aws: Emulator, ecs: Any
) -> None:
    """As ECS answers (400, not retried), not moto's bare exception (500, retried ten
    times): a teardown may find an instance deregistered between its list and its call."""
    ecs.create_cluster(clusterName="gone")
    with pytest.raises(ClientError) as caught:
        ecs.deregister_container_instance(cluster="gone", containerInstance="0123abcd", force=True)
    assert caught.value.response["Error"]["Code"] == "ClientException"
    assert caught.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400
