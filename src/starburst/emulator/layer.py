"""The WSGI layer in front of moto: answers what moto lacks and injects faults.

Every request passes through :class:`EmulatorLayer`. It works out the service (SigV4 signing
name), region and operation, answers injected errors, Service Quotas for Fargate and EC2 and
the Price List API itself, checks and shapes ECS RunTask, serves the ECS task metadata and
EC2 instance metadata (IMDSv2) endpoints, and hands everything else to moto unchanged.
"""

from __future__ import annotations

import io
import json
import math
import re
import threading
import traceback
from collections import Counter
from collections.abc import Callable, Iterable
from typing import Any, Protocol
from urllib.parse import parse_qs, unquote

from moto.ecs.models import ecs_backends
from moto.s3.models import s3_backends

from starburst.emulator.faults import CAPACITY_REASON, QUOTA_REASON, Faults
from starburst.emulator.pricing import Prices
from starburst.emulator.quotas import ON_DEMAND, SPOT, Quotas
from starburst.emulator.wire import ApiError, Call, decode_token, encode_token, request_id

WsgiApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]
Metadata = Callable[[str, str], dict[str, Any] | None]


class Capacity(Protocol):
    """What the layer asks of EC2 capacity (``capacity.py``)."""

    def take_runtask_failures(self) -> list[dict[str, str]]: ...

    def imds(
        self, instance_id: str, method: str, path: str, headers: dict[str, str]
    ) -> tuple[int, str]: ...


ECS_PREFIX = "AmazonEC2ContainerServiceV20141113"
QUOTAS_PREFIX = "ServiceQuotasV20190624"
PRICING_PREFIX = "AWSPriceListService"
METADATA_PATH = "/_emulator/ecs-metadata/"
IMDS_PATH = "/_emulator/imds/"  # + instance id: its instance metadata endpoint

_CREDENTIAL = re.compile(r"Credential=[^/,\s]+/\d{8}/([^/]+)/([^/]+)/aws4_request")
_STATUS_TEXT = {
    200: "OK",
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    500: "Internal Server Error",
    503: "Service Unavailable",
}
_S3_BUCKET_SUBRESOURCES = {
    "policy": "BucketPolicy",
    "versioning": "BucketVersioning",
    "lifecycle": "BucketLifecycleConfiguration",
    "tagging": "BucketTagging",
    "cors": "BucketCors",
    "encryption": "BucketEncryption",
    "acl": "BucketAcl",
    "publicAccessBlock": "PublicAccessBlock",
    "ownershipControls": "BucketOwnershipControls",
    "notification": "BucketNotificationConfiguration",
}
# Valid Fargate (cpu units -> memory MiB) pairs.
_FARGATE_MEMORY = {
    256: [512, 1024, 2048],
    512: list(range(1024, 4097, 1024)),
    1024: list(range(2048, 8193, 1024)),
    2048: list(range(4096, 16385, 1024)),
    4096: list(range(8192, 30721, 1024)),
    8192: list(range(16384, 61441, 4096)),
    16384: list(range(32768, 122881, 8192)),
}


class EmulatorLayer:
    """WSGI middleware wrapping moto's ``DomainDispatcherApplication``."""

    def __init__(
        self,
        app: WsgiApp,
        *,
        quotas: Quotas,
        prices: Prices,
        faults: Faults,
        account_id: str,
    ) -> None:
        self.app = app
        self.quotas = quotas
        self.prices = prices
        self.faults = faults
        self.account_id = account_id
        self.metadata: Metadata | None = None  # set by the task runner
        self.capacity: Capacity | None = None  # the active test's EC2 capacity
        self.calls: Counter[str] = Counter()  # operation name -> calls seen
        self.internal_errors: list[str] = []  # emulator bugs, reported at teardown
        self._runtask_lock = threading.Lock()
        self._count_lock = threading.Lock()

    # ---- WSGI entry ---------------------------------------------------------------------

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        try:
            return self._dispatch_read_again(environ, start_response)
        except Exception:
            text = traceback.format_exc()
            self.internal_errors.append(text)
            body = json.dumps({"__type": "InternalFailure", "message": text}).encode()
            return _reply(start_response, 500, body, "application/x-amz-json-1.1")

    def _dispatch_read_again(
        self, environ: dict[str, Any], start_response: Callable[..., Any]
    ) -> Any:
        """``_dispatch``, reading again where moto's read raced an overwrite of the same
        object (it closes the old version's buffer while a GET still reads it; S3 serves
        either version). A read has no body to replay, so reading again is safe."""
        attempts = 3 if environ.get("REQUEST_METHOD") in ("GET", "HEAD") else 1
        for attempt in range(1, attempts + 1):
            try:
                return self._dispatch(environ, start_response)
            except ValueError as exc:
                if "closed file" not in str(exc) or attempt == attempts:
                    raise
        raise AssertionError("unreachable")

    def _dispatch(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        path = environ.get("PATH_INFO", "")
        if path.startswith(METADATA_PATH):
            return self._metadata(path[len(METADATA_PATH) :], start_response)
        if path.startswith(IMDS_PATH):
            return self._imds(path[len(IMDS_PATH) :], environ, start_response)
        if path.startswith("/moto-api"):
            return self.app(environ, start_response)
        call = self._identify(environ)
        if call.operation:
            with self._count_lock:
                self.calls[call.operation] += 1
        if call.protocol != "other" and call.operation:
            answer = self.faults.take_error(call.service, call.operation)
            if answer is not None:
                return _error(
                    start_response,
                    call,
                    environ,
                    answer.code,
                    answer.message,
                    answer.status,
                    throttle=answer.is_throttle,
                )
        if call.protocol == "rest-xml" and not _bucket_owner_matches(environ):
            return _error(start_response, call, environ, "AccessDenied", "Access Denied", 403)
        target = environ.get("HTTP_X_AMZ_TARGET", "")
        try:
            if target.startswith(QUOTAS_PREFIX + ".") and self.quotas.handles(call):
                return _json(start_response, 200, self.quotas.answer(call))
            if target.startswith(PRICING_PREFIX + "."):
                return _json(start_response, 200, self.prices.answer(call))
            if target.startswith(ECS_PREFIX + "."):
                return self._ecs(call, environ, start_response)
        except ApiError as err:
            return _error(start_response, call, environ, err.code, err.message, err.status)
        return self.app(environ, start_response)

    # ---- request identification ---------------------------------------------------------

    def _identify(self, environ: dict[str, Any]) -> Call:
        service, region = _signing(environ)
        target = environ.get("HTTP_X_AMZ_TARGET", "")
        method = environ.get("REQUEST_METHOD", "GET")
        call = Call(service, "", "other", region or "us-east-1", self.account_id)
        if target:
            call.protocol = "json"
            call.operation = target.rsplit(".", 1)[-1]
            body = _read_body(environ)
            try:
                call.params = json.loads(body or b"{}")
            except ValueError:
                call.params = {}
        elif service == "s3":
            call.protocol = "rest-xml"
            call.operation = _s3_operation(method, environ)
        elif environ.get("CONTENT_TYPE", "").startswith("application/x-www-form-urlencoded"):
            form = parse_qs(_read_body(environ).decode(errors="replace"))
            call.operation = form.get("Action", [""])[0]
            call.protocol = "ec2" if service == "ec2" else "query"
        return call

    # ---- ECS ----------------------------------------------------------------------------

    def _ecs(self, call: Call, environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        p = call.params
        if call.operation == "RegisterTaskDefinition":
            _check_fargate_sizes(p)
        if call.operation == "DescribeTasks":
            if len(p.get("tasks") or []) > 100:
                raise ApiError("InvalidParameterException", "Tasks can have at most 100 items.")
            return self._describe_tasks(call, environ, start_response)
        if call.operation == "ListTasks":
            return self._list_tasks(call, environ, start_response)
        if call.operation == "RunTask":
            count = int(p.get("count") or 1)
            if not 1 <= count <= 10:
                raise ApiError("InvalidParameterException", "count must be between 1 and 10.")
            reason = self.faults.take_runtask_failure()
            if reason is not None:
                failures = [{"reason": reason} for _ in range(count)]
                return _json(start_response, 200, {"tasks": [], "failures": failures})
            if self.faults.vcpu_quota_enforced or self.faults.task_capacity is not None:
                return self._run_task_within_limits(call, environ, start_response)
            if self.capacity is not None:
                return self._run_task_on_capacity(environ, start_response, self.capacity)
        return self.app(environ, start_response)

    def _run_task_on_capacity(
        self, environ: dict[str, Any], start_response: Callable[..., Any], capacity: Capacity
    ) -> Any:
        """RunTask, with the failures EC2 placement listed (moto's are always empty)."""
        status, headers, body = _call(self.app, environ)
        body = _with_failures(status, body, capacity.take_runtask_failures())
        return _relay(start_response, status, headers, body)

    def _describe_tasks(
        self, call: Call, environ: dict[str, Any], start_response: Callable[..., Any]
    ) -> Any:
        """moto leaves ``failures`` empty; ECS lists each unknown task as MISSING."""
        status, headers, body = _call(self.app, environ)
        if status.startswith("200"):
            found = [t["taskArn"] for t in json.loads(body).get("tasks") or []]
            missing = [
                {"arn": wanted, "reason": "MISSING"}
                for wanted in call.params.get("tasks") or []
                if not any(arn == wanted or arn.endswith("/" + wanted) for arn in found)
            ]
            body = _with_failures(status, body, missing)
        return _relay(start_response, status, headers, body)

    def _list_tasks(
        self, call: Call, environ: dict[str, Any], start_response: Callable[..., Any]
    ) -> Any:
        """ECS lists only tasks desired RUNNING unless told otherwise, 100 per page
        (``maxResults``, ``nextToken``); moto lists every task on one page."""
        params = dict(call.params)
        size = int(params.pop("maxResults", None) or 100)
        if not 1 <= size <= 100:
            raise ApiError("InvalidParameterException", "maxResults must be between 1 and 100.")
        start = decode_token(params.pop("nextToken", None), "InvalidParameterException")
        params.setdefault("desiredStatus", "RUNNING")
        _set_body(environ, json.dumps(params).encode())
        status, headers, body = _call(self.app, environ)
        if status.startswith("200"):
            arns = json.loads(body).get("taskArns") or []
            answer: dict[str, Any] = {"taskArns": arns[start : start + size]}
            if start + size < len(arns):
                answer["nextToken"] = encode_token(start + size)
            body = json.dumps(answer).encode()
        return _relay(start_response, status, headers, body)

    def _run_task_within_limits(
        self, call: Call, environ: dict[str, Any], start_response: Callable[..., Any]
    ) -> Any:
        """RunTask that starts only what fits under the vCPU quota (when enforced) and the
        injected capacity (``Faults.limit_capacity``); the rest are listed as failures."""
        backend = ecs_backends[call.account_id][call.region]
        p = dict(call.params)
        count = int(p.get("count") or 1)
        try:
            task_def = backend.describe_task_definition(p.get("taskDefinition", ""))
            cluster = backend._get_cluster(p.get("cluster") or "default")
        except Exception:  # let moto answer the bad request its own way
            return self.app(environ, start_response)
        strategy = p.get("capacityProviderStrategy")
        if not p.get("launchType") and not strategy:
            strategy = cluster.default_capacity_provider_strategy
        spot = bool(strategy) and (strategy or [{}])[0].get("capacityProvider") == "FARGATE_SPOT"
        vcpus = _vcpus(task_def, p.get("overrides"))
        with self._runtask_lock:
            quota = self.quotas.get(SPOT if spot else ON_DEMAND)
            used = sum(
                _vcpus(_task_definition(backend, t), t.overrides)
                for tasks in backend.tasks.values()
                for t in tasks.values()
                if t.last_status != "STOPPED"
                and (t.capacity_provider_name == "FARGATE_SPOT") == spot
            )
            fits = max(0, math.floor((quota - used) / vcpus + 1e-9)) if vcpus > 0 else count
            if not self.faults.vcpu_quota_enforced:
                fits = count
            launch = min(count, fits)
            failures = [{"reason": QUOTA_REASON} for _ in range(count - launch)]
            if self.faults.task_capacity is not None:
                running = sum(
                    t.last_status != "STOPPED" for ts in backend.tasks.values() for t in ts.values()
                )
                room = max(0, min(launch, self.faults.task_capacity - running))
                failures += [{"reason": CAPACITY_REASON} for _ in range(launch - room)]
                launch = room
            if launch == 0:
                return _json(start_response, 200, {"tasks": [], "failures": failures})
            p["count"] = launch
            _set_body(environ, json.dumps(p).encode())
            status, headers, body = _call(self.app, environ)
        if failures and status.startswith("200"):
            answer = json.loads(body)
            answer["failures"] = list(answer.get("failures") or []) + failures
            body = json.dumps(answer).encode()
        return _relay(start_response, status, headers, body)

    # ---- ECS task metadata endpoint (ECS_CONTAINER_METADATA_URI_V4) ---------------------

    def _metadata(self, rest: str, start_response: Callable[..., Any]) -> Any:
        task_id, _, what = rest.partition("/")
        found = self.metadata(task_id, what) if self.metadata else None
        if found is None:
            return _reply(start_response, 404, b"{}", "application/json")
        return _reply(start_response, 200, json.dumps(found).encode(), "application/json")

    # ---- EC2 instance metadata endpoint (STARBURST_IMDS_ENDPOINT) -----------------------

    def _imds(self, rest: str, environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        instance_id, _, path = rest.partition("/")
        headers = {
            key[5:].replace("_", "-").lower(): value
            for key, value in environ.items()
            if key.startswith("HTTP_")
        }
        method = environ.get("REQUEST_METHOD", "GET")
        status, text = (
            self.capacity.imds(instance_id, method, path, headers)
            if self.capacity is not None
            else (404, "Not Found")
        )
        return _reply(start_response, status, text.encode(), "text/plain")


# ---- helpers ------------------------------------------------------------------------------


def _signing(environ: dict[str, Any]) -> tuple[str | None, str | None]:
    """(service, region) from the SigV4 Authorization header or a presigned URL."""
    match = _CREDENTIAL.search(environ.get("HTTP_AUTHORIZATION", ""))
    if match:
        return match.group(2), match.group(1)
    query = parse_qs(environ.get("QUERY_STRING", ""))
    credential = unquote(query.get("X-Amz-Credential", [""])[0]).split("/")
    if len(credential) >= 5:
        return credential[3], credential[2]
    return None, None


def _bucket_owner_matches(environ: dict[str, Any]) -> bool:
    """Whether an S3 request's ``ExpectedBucketOwner`` (if any) owns its bucket, which S3
    checks and moto 5.2.5 ignores: a mismatch answers 403 AccessDenied."""
    expected = environ.get("HTTP_X_AMZ_EXPECTED_BUCKET_OWNER")
    if not expected:
        return True
    bucket = environ.get("PATH_INFO", "").lstrip("/").partition("/")[0]
    owner = s3_backends.bucket_accounts.get(bucket)  # (partition, account) of its creator
    return owner is None or owner[1] == expected


def _s3_operation(method: str, environ: dict[str, Any]) -> str:
    path = environ.get("PATH_INFO", "").lstrip("/")
    bucket, _, key = path.partition("/")
    query = parse_qs(environ.get("QUERY_STRING", ""), keep_blank_values=True)
    if not bucket:
        return "ListBuckets"
    if key:
        if "uploadId" in query:
            return {
                "PUT": "UploadPart",
                "POST": "CompleteMultipartUpload",
                "DELETE": "AbortMultipartUpload",
                "GET": "ListParts",
            }.get(method, "")
        if "uploads" in query:
            return "CreateMultipartUpload"
        if "tagging" in query:
            return {"GET": "GetObjectTagging", "PUT": "PutObjectTagging"}.get(
                method, "DeleteObjectTagging"
            )
        if method == "PUT":
            return "CopyObject" if "HTTP_X_AMZ_COPY_SOURCE" in environ else "PutObject"
        return {"GET": "GetObject", "HEAD": "HeadObject", "DELETE": "DeleteObject"}.get(method, "")
    for name, suffix in _S3_BUCKET_SUBRESOURCES.items():
        if name in query:
            return {"GET": "Get", "PUT": "Put", "DELETE": "Delete"}.get(method, "") + suffix
    if method == "POST" and "delete" in query:
        return "DeleteObjects"
    if method == "GET":
        if query.get("list-type") == ["2"]:
            return "ListObjectsV2"
        if "versions" in query:
            return "ListObjectVersions"
        if "uploads" in query:
            return "ListMultipartUploads"
        if "location" in query:
            return "GetBucketLocation"
        return "ListObjects"
    return {"PUT": "CreateBucket", "HEAD": "HeadBucket", "DELETE": "DeleteBucket"}.get(method, "")


def _read_body(environ: dict[str, Any]) -> bytes:
    """The request body; the stream is replaced so moto can read it again."""
    stream = environ["wsgi.input"]
    length = environ.get("CONTENT_LENGTH")
    if length:
        body = stream.read(int(length))
    elif environ.get("wsgi.input_terminated"):
        body = stream.read()
    else:
        body = b""
    _set_body(environ, body)
    return body


def _set_body(environ: dict[str, Any], body: bytes) -> None:
    environ["wsgi.input"] = io.BytesIO(body)
    environ["CONTENT_LENGTH"] = str(len(body))


def _call(app: WsgiApp, environ: dict[str, Any]) -> tuple[str, list[tuple[str, str]], bytes]:
    """Run a WSGI app to completion: (status line, headers, body)."""
    captured: dict[str, Any] = {}
    chunks: list[bytes] = []

    def start_response(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
        captured["status"], captured["headers"] = status, headers
        return chunks.append

    result = app(environ, start_response)
    try:
        chunks.extend(result)
    finally:
        close = getattr(result, "close", None)
        if close:
            close()
    return captured["status"], list(captured["headers"]), b"".join(chunks)


def _with_failures(status: str, body: bytes, failures: list[dict[str, Any]]) -> bytes:
    """An ECS answer's ``body`` with ``failures`` added to its own (when it succeeded)."""
    if not failures or not status.startswith("200"):
        return body
    answer = json.loads(body)
    answer["failures"] = list(answer.get("failures") or []) + failures
    return json.dumps(answer).encode()


def _relay(
    start_response: Callable[..., Any], status: str, headers: list[tuple[str, str]], body: bytes
) -> list[bytes]:
    """Send a (possibly rewritten) inner answer on, with a correct Content-Length."""
    headers = [(k, v) for k, v in headers if k.lower() != "content-length"]
    headers.append(("Content-Length", str(len(body))))
    start_response(status, headers)
    return [body]


def _reply(
    start_response: Callable[..., Any],
    status: int,
    body: bytes,
    content_type: str,
    extra: list[tuple[str, str]] | None = None,
) -> list[bytes]:
    headers = [
        ("Content-Type", content_type),
        ("Content-Length", str(len(body))),
        ("x-amzn-RequestId", request_id()),
        *(extra or []),
    ]
    start_response(f"{status} {_STATUS_TEXT.get(status, 'Error')}", headers)
    return [body]


def _json(start_response: Callable[..., Any], status: int, body: dict[str, Any]) -> list[bytes]:
    return _reply(start_response, status, json.dumps(body).encode(), "application/x-amz-json-1.1")


def _error(
    start_response: Callable[..., Any],
    call: Call,
    environ: dict[str, Any],
    code: str,
    message: str,
    status: int,
    *,
    throttle: bool = False,
) -> list[bytes]:
    """An error answer in the shape of the call's protocol."""
    rid = request_id()
    if call.protocol == "json":
        if throttle:
            code, message, status = "ThrottlingException", "Rate exceeded", 400
        body = json.dumps({"__type": code, "message": message}).encode()
        return _reply(
            start_response, status, body, "application/x-amz-json-1.1", [("x-amzn-ErrorType", code)]
        )
    if call.protocol == "rest-xml":
        if throttle:
            code, message, status = "SlowDown", "Please reduce your request rate.", 503
        xml = (
            '<?xml version="1.0" encoding="UTF-8"?>\n'
            f"<Error><Code>{code}</Code><Message>{message}</Message>"
            f"<RequestId>{rid}</RequestId><HostId>{rid}</HostId></Error>"
        )
        body = b"" if environ.get("REQUEST_METHOD") == "HEAD" else xml.encode()
        return _reply(start_response, status, body, "application/xml")
    if call.protocol == "ec2":
        if throttle:
            code, message, status = "RequestLimitExceeded", "Request limit exceeded.", 503
        xml = (
            '<?xml version="1.0" encoding="UTF-8"?>\n'
            f"<Response><Errors><Error><Code>{code}</Code><Message>{message}</Message>"
            f"</Error></Errors><RequestID>{rid}</RequestID></Response>"
        )
        return _reply(start_response, status, xml.encode(), "text/xml")
    if throttle:
        code, message, status = "Throttling", "Rate exceeded", 400
    xml = (
        f"<ErrorResponse><Error><Type>{'Receiver' if status >= 500 else 'Sender'}</Type>"
        f"<Code>{code}</Code><Message>{message}</Message></Error>"
        f"<RequestId>{rid}</RequestId></ErrorResponse>"
    )
    return _reply(start_response, status, xml.encode(), "text/xml")


def _units(value: Any, unit_words: tuple[str, ...]) -> int | None:
    """ECS cpu/memory strings ("1024", "1 vCPU", "2 GB") as units / MiB."""
    if value is None:
        return None
    text = str(value).strip()
    for word in unit_words:
        if text.lower().endswith(word.lower()):
            return int(float(text[: -len(word)].strip()) * 1024)
    return int(float(text))


def _check_fargate_sizes(params: dict[str, Any]) -> None:
    """ECS refuses Fargate task definitions with no or an invalid task-level cpu/memory."""
    if "FARGATE" not in (params.get("requiresCompatibilities") or []):
        return
    cpu = _units(params.get("cpu"), ("vCPU", "vcpu"))
    memory = _units(params.get("memory"), ("GB", "GiB"))
    if cpu is None:
        raise ApiError(
            "ClientException", "Fargate requires that 'cpu' be defined at the task level."
        )
    if memory is None:
        raise ApiError(
            "ClientException", "Fargate requires that 'memory' be defined at the task level."
        )
    if memory not in _FARGATE_MEMORY.get(cpu, []):
        raise ApiError(
            "ClientException",
            f"No Fargate configuration exists for given values: {cpu} CPU, {memory} memory. "
            "See the Amazon ECS documentation for the valid values.",
        )


def _task_definition(backend: Any, task: Any) -> Any:
    try:
        return backend.describe_task_definition(task.task_definition_arn)
    except Exception:
        return None


def _vcpus(task_def: Any, overrides: dict[str, Any] | None) -> float:
    """vCPUs a task takes: the task-level cpu (or its override) in units / 1024."""
    cpu = (overrides or {}).get("cpu") or getattr(task_def, "cpu", None)
    if cpu is None and task_def is not None:
        cpu = sum(int(c.get("cpu") or 0) for c in task_def.container_definitions)
    return (_units(cpu, ("vCPU", "vcpu")) or 0) / 1024
