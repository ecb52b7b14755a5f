"""The one place that makes AWS clients: its clients and how it reads AWS timestamps."""

from __future__ import annotations

import threading

import botocore.utils
import pytest

from starburst.aws.connection import _parse_timestamp, connect


@pytest.mark.parametrize(
    "value",
    [
        "Sun, 06 Dec 2026 23:40:00 GMT",  # an HTTP header (S3's Last-Modified)
        "Tue, 01 Dec 2026 01:02:03 +0100",
        "2026-12-06T23:40:00.000Z",  # an XML body (EC2, S3 listings)
        "2026-12-06T23:40:00.123456+00:00",
        1765063200.25,  # a JSON body (ECS, Auto Scaling's JSON services)
        1765063200,
        "1765063200",
    ],
)
def test_every_aws_timestamp_form_reads_as_the_instant_botocore_reads(value) -> None:
    ours, botocores = _parse_timestamp(value), botocore.utils.parse_timestamp(value)
    assert ours == botocores
    assert ours.utcoffset() == botocores.utcoffset()


def test_a_timestamp_that_is_none_of_them_is_refused_as_botocore_refuses_it() -> None:
    with pytest.raises(ValueError):
        _parse_timestamp("not a time")


def test_one_account_makes_each_client_once_even_when_threads_ask_together(
    monkeypatch,
) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    aws = connect("us-east-1")
    made: list[object] = []
    threads = [threading.Thread(target=lambda: made.append(aws.client("ec2"))) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len({id(client) for client in made}) == 1
    assert aws.client("s3") is not made[0]
    assert aws.client("s3").meta.region_name == "us-east-1"
