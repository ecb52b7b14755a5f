"""What only the S3 store has to do: ride out throttling, move big payloads in parts."""

from __future__ import annotations

import os

import boto3
import pytest

from starburst.errors import StoreError
from starburst.store import open_store
from starburst.store.s3 import S3Store


@pytest.fixture
def s3_store(aws) -> S3Store:
    boto3.client("s3").create_bucket(Bucket="throttled")
    return S3Store("throttled", "runs")


def test_slow_down_and_throttling_are_retried_with_backoff(aws, s3_store: S3Store) -> None:
    aws.faults.throttle("PutObject", times=3, service="s3")
    aws.faults.throttle("GetObject", times=2, service="s3")
    s3_store.put("k", b"survived")
    assert s3_store.get("k") == b"survived"
    assert aws.calls["PutObject"] == 4 and aws.calls["GetObject"] == 3  # 3 and 2 retried


def test_an_error_that_retries_do_not_fix_is_a_store_error(aws, monkeypatch) -> None:
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "2")  # the standard knob; the default is 10
    boto3.client("s3").create_bucket(Bucket="throttled")
    store = S3Store("throttled", "runs")
    aws.faults.throttle("PutObject", times=None, service="s3")
    with pytest.raises(StoreError, match="SlowDown"):
        store.put("k", b"never")
    assert aws.calls["PutObject"] == 2, aws.calls


def test_large_payloads_travel_in_parallel_parts(aws, s3_store: S3Store) -> None:
    payload = os.urandom(40 * 1024 * 1024)
    s3_store.put("big", payload)
    assert aws.calls["UploadPart"] >= 2
    assert s3_store.get("big") == payload


def test_an_s3_url_opens_the_same_store(s3_store: S3Store) -> None:
    s3_store.put("x/y", b"1")
    reopened = open_store(s3_store.url)
    assert reopened.url == "s3://throttled/runs/"
    assert reopened.get("x/y") == b"1"
