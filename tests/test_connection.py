"""The one place that makes AWS clients: its clients and how it reads AWS timestamps."""

from __future__ import annotations

import threading

import botocore.utils
import pytest

from starburst.aws.connection import _parse_timestamp, connect, known_regions
from starburst.errors import ConfigurationError, CredentialsError


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


@pytest.fixture
def aws_files(tmp_path, monkeypatch):
    """An AWS config and credentials file with one named profile, and no ambient settings."""
    for name in ("AWS_REGION", "AWS_DEFAULT_REGION", "AWS_PROFILE", "AWS_ACCESS_KEY_ID",
                 "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"):  # fmt: skip
        monkeypatch.delenv(name, raising=False)
    config, credentials = tmp_path / "config", tmp_path / "credentials"
    config.write_text("[profile research]\nregion = eu-west-2\n")
    credentials.write_text(
        "[research]\naws_access_key_id = AKIARESEARCH\naws_secret_access_key = secret\n"
    )
    monkeypatch.setenv("AWS_CONFIG_FILE", str(config))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(credentials))


def test_a_named_profile_gives_its_region_and_credentials(aws_files) -> None:
    aws = connect(profile="research")
    assert aws.region == "eu-west-2"
    assert aws.session.get_credentials().access_key == "AKIARESEARCH"


def test_a_profile_that_does_not_exist_is_named_with_the_fix(aws_files) -> None:
    with pytest.raises(CredentialsError, match=r"the AWS profile 'reserch' does not exist"):
        connect(profile="reserch")


def test_an_unknown_region_is_refused_with_the_known_ones(aws_files) -> None:
    with pytest.raises(ConfigurationError, match=r"unknown AWS region 'eu-wset-2'.*eu-west-2"):
        connect("eu-wset-2", profile="research")
    assert {"us-east-1", "eu-west-2", "us-gov-west-1"} <= set(known_regions())
    assert not any(region.startswith("fips-") for region in known_regions())
