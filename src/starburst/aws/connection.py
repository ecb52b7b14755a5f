"""The one place that makes AWS clients.

Clients honour the standard credential chain, ``AWS_PROFILE``, the configured region and
``AWS_ENDPOINT_URL`` (botocore reads it), and retry throttling with backoff. AWS failures are
turned into starburst errors that say what to do, never a bare botocore traceback.
"""

from __future__ import annotations

import contextlib
import datetime
import email.utils
import functools
import os
import re
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Literal

import botocore.exceptions
import botocore.loaders
import botocore.session
import botocore.utils
from botocore.config import Config as BotoConfig

from .._version import __version__
from ..config import Config
from ..errors import AwsError, AwsPermissionError, ConfigurationError, CredentialsError

#: Attempts per AWS call, retrying throttling and 5xx with backoff (``AWS_MAX_ATTEMPTS`` wins).
DEFAULT_MAX_ATTEMPTS = 10

_CREDENTIAL_CODES = {
    "ExpiredToken", "ExpiredTokenException", "InvalidClientTokenId", "UnrecognizedClientException",
    "InvalidAccessKeyId", "SignatureDoesNotMatch", "AuthFailure", "RequestExpired",
}  # fmt: skip
_PERMISSION_CODES = {"AccessDenied", "AccessDeniedException", "UnauthorizedOperation"}


#: The AWS services starburst calls through ``Aws.client`` (a misspelt name is a type error).
Service = Literal["autoscaling", "ec2", "ecr", "ecs", "iam", "logs", "s3", "service-quotas", "sts"]

#: Connections a client keeps open: enough for the store's parallel transfers.
MAX_POOL_CONNECTIONS = 32


@dataclass(frozen=True)
class Aws:
    """An AWS account and region to work in, and the session that reaches it."""

    session: botocore.session.Session
    region: str
    _clients: dict[str, Any] = field(default_factory=dict, init=False, repr=False, compare=False)
    _making: threading.Lock = field(
        default_factory=threading.Lock, init=False, repr=False, compare=False
    )

    def client(self, service: Service) -> Any:
        """The client for ``service`` in this region, retrying throttling with backoff.

        Made once per ``Aws`` and shared (botocore's clients are thread-safe): making one
        costs 5-100 ms of CPU (EC2's, with its 700 operations, the most).
        """
        with self._making:  # a botocore session is not thread-safe while it makes clients
            if service not in self._clients:
                attempts = int(os.environ.get("AWS_MAX_ATTEMPTS") or DEFAULT_MAX_ATTEMPTS)
                config = BotoConfig(
                    retries={"mode": "standard", "total_max_attempts": attempts},
                    user_agent_extra=f"starburst/{__version__}",
                    connect_timeout=10,
                    read_timeout=60,
                    max_pool_connections=MAX_POOL_CONNECTIONS,
                )
                self._clients[service] = self.session.create_client(
                    service, region_name=self.region, config=config
                )
            return self._clients[service]

    @functools.cached_property
    def account_id(self) -> str:
        """The account the credentials belong to (checks that they work)."""
        with translate_errors("check your AWS credentials"):
            return self.client("sts").get_caller_identity()["Account"]


def connect(region: str | None = None, profile: str | None = None) -> Aws:
    """Open the account: the region from the argument, the config, or the environment."""
    config = Config.load()
    profile = profile or config.get("profile") or None
    try:
        session = _botocore_session(profile)
        session.get_scoped_config()  # (a profile that does not exist fails here)
    except botocore.exceptions.ProfileNotFound as exc:
        raise CredentialsError(
            f"the AWS profile {profile!r} does not exist; list yours with `aws configure "
            "list-profiles`, or set another with `starburst config set profile NAME`"
        ) from exc
    chosen = (
        region
        or config.get("region")
        or config.aws.get("region")
        or os.environ.get("AWS_REGION")
        or session.get_config_variable("region")
    )
    if not chosen:
        raise ConfigurationError(
            "no AWS region is configured: run `starburst config set region us-east-1` "
            "(or set AWS_REGION or AWS_DEFAULT_REGION)"
        )
    known = known_regions(session)
    if known and chosen not in known:
        raise ConfigurationError(
            f"unknown AWS region {chosen!r}; use one of: {', '.join(sorted(known))}"
        )
    return Aws(session=session, region=chosen)


def known_regions(session: botocore.session.Session | None = None) -> list[str]:
    """The regions where ECS runs, as this botocore knows them (empty if it knows none).

    Read from botocore's endpoint data (which every client loads anyway), as its
    ``get_available_regions`` does, without loading ECS's service model and listing every
    service first: ~50 ms of each worker's start.
    """
    loader = (session or _botocore_session()).get_component("data_loader")
    regions = []
    for partition in loader.load_data("endpoints")["partitions"]:
        if partition["partition"] not in ("aws", "aws-us-gov"):
            continue
        pattern = re.compile(partition["regionRegex"])
        endpoints = partition["services"].get("ecs", {}).get("endpoints", {})
        regions += [
            name
            for name, endpoint in endpoints.items()
            if pattern.match(name) and not endpoint.get("deprecated")
        ]
    return regions


def _botocore_session(profile: str | None = None) -> botocore.session.Session:
    """A botocore session (of ``profile``, else the default chain's) that shares the
    process's model files and parses timestamps with ``_parse_timestamp``.

    botocore's, not boto3's: starburst uses clients only, and boto3 (with s3transfer, which
    the store loads for large uploads alone) adds ~70 ms to every worker's start. botocore's
    timestamp parser (dateutil) costs about 0.2 ms a timestamp: a listing of 1,000 keys spent
    0.2 s of the client's CPU on ``LastModified`` values starburst never reads.
    """
    session = botocore.session.get_session()
    if profile:
        session.set_config_variable("profile", profile)
    session.register_component("data_loader", _loader(session.get_config_variable("data_path")))
    parsers = session.get_component("response_parser_factory")
    parsers.set_parser_defaults(timestamp_parser=_parse_timestamp)
    return session


@functools.cache
def _loader(data_path: str | None) -> botocore.loaders.Loader:
    """botocore's model files, read once per process rather than once per session (each
    ``connect`` makes a session; reading the endpoint and EC2 models costs 50-100 ms)."""
    return botocore.loaders.create_loader(data_path)


def _parse_timestamp(value: str | float) -> datetime.datetime:
    """An AWS timestamp: ISO 8601 text (XML bodies), RFC 822 text (HTTP headers such as
    S3's ``Last-Modified``) or epoch seconds (JSON).

    Epoch seconds are read in UTC here: botocore's parser makes a new ``tzlocal`` for each
    (about 0.1 ms; an ECS listing of 100 tasks holds 500 of them), for the same instant; and
    it reads RFC 822 with dateutil (about 1 ms, on every S3 GetObject).
    """
    if isinstance(value, (int, float)):
        return datetime.datetime.fromtimestamp(value, datetime.UTC)
    if isinstance(value, str):
        try:
            return datetime.datetime.fromisoformat(value)
        except ValueError:
            pass
        with contextlib.suppress(TypeError, ValueError):
            return email.utils.parsedate_to_datetime(value)
    return botocore.utils.parse_timestamp(value)  # any other form botocore knows (or refuses)


@contextlib.contextmanager
def translate_errors(doing: str) -> Iterator[None]:
    """Turn botocore's exceptions raised while ``doing`` into starburst errors with a fix."""
    try:
        yield
    except botocore.exceptions.NoCredentialsError as exc:
        raise CredentialsError(_no_credentials()) from exc
    except (
        botocore.exceptions.TokenRetrievalError,
        botocore.exceptions.SSOTokenLoadError,
        botocore.exceptions.UnauthorizedSSOTokenError,
    ) as exc:
        raise CredentialsError(
            f"your AWS login has expired ({exc}); log in again with `aws sso login`"
            + (f" --profile {os.environ['AWS_PROFILE']}" if "AWS_PROFILE" in os.environ else "")
        ) from exc
    except botocore.exceptions.ClientError as exc:
        error = exc.response.get("Error", {})
        code, message = error.get("Code", ""), error.get("Message", str(exc))
        operation = exc.operation_name
        if code in _CREDENTIAL_CODES:
            raise CredentialsError(
                f"AWS rejected the credentials while trying to {doing} ({code}: {message}). "
                "Refresh them (`aws sso login`, or new keys with `aws configure`)."
            ) from exc
        if code in _PERMISSION_CODES:
            raise AwsPermissionError(
                f"AWS denied {operation} while trying to {doing}: {message}. Ask your "
                f"administrator for that permission."
            ) from exc
        raise AwsError(f"AWS {operation} failed while trying to {doing}: {code}: {message}") from (
            exc
        )
    except (botocore.exceptions.ConnectionError, botocore.exceptions.HTTPClientError) as exc:
        raise AwsError(
            f"could not reach AWS to {doing} ({exc}). Check your network connection (and "
            "proxy or VPN), then try again."
        ) from exc
    except botocore.exceptions.BotoCoreError as exc:
        raise AwsError(f"the AWS client failed while trying to {doing}: {exc}") from exc


def _no_credentials() -> str:
    return (
        "no AWS credentials were found. Configure them with `aws configure` (access keys) or "
        "`aws configure sso` then `aws sso login`, or set AWS_PROFILE to a configured profile."
    )
