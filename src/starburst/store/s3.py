"""The store on S3: the same contract as the local store, over the network.

Conditional writes use S3's own: ``If-None-Match: *`` creates only if absent and
``If-Match: <etag>`` swaps only the version that was read; a lost race answers 412 (and a
concurrent conditional write may answer 409, which is retried). Large payloads go up as
parallel multipart uploads. Throttling and 503 Slow Down are retried with backoff by the
client (``aws.connection``).

A store that knows its bucket's ``owner`` (the account ``starburst setup`` ran in) names it
in every request (``ExpectedBucketOwner``): S3 then refuses a bucket of the same name that
another account created, say after a teardown, rather than hand it our work or our results.
"""

from __future__ import annotations

import contextlib
import io
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

import botocore.exceptions

from ..errors import StoreError
from .base import NotFound, PreconditionFailed, Store

_MULTIPART_BYTES = 32 * 1024 * 1024
_PART_BYTES = 16 * 1024 * 1024
_PARTS_AT_ONCE = 8
_CONFLICT_RETRIES = 5


class S3Store(Store):
    """A store whose keys live under ``prefix`` in an S3 bucket (owned by the account
    ``owner``, when given: requests to a bucket of that name in another account fail)."""

    poll_interval = 0.5
    max_poll_interval = 0.5  # a listing costs $0.000005: never keep results waiting
    compress = True
    parallelism = 16

    def __init__(
        self, bucket: str, prefix: str = "", client: Any = None, owner: str | None = None
    ) -> None:
        super().__init__()
        if client is None:
            from ..aws.connection import connect

            client = connect().client("s3")
        self.bucket = bucket
        self.prefix = prefix.strip("/") + "/" if prefix.strip("/") else ""
        self.client = client
        self.owner = owner
        self._owned: dict[str, str] = {"ExpectedBucketOwner": owner} if owner else {}

    @property
    def url(self) -> str:
        owner = f"?owner={quote(self.owner)}" if self.owner else ""
        return f"s3://{self.bucket}/{self.prefix}{owner}"

    def _key(self, key: str) -> str:
        return self.prefix + key

    def _call(self, operation: str, **params: Any) -> Any:
        with self._translated(operation, params.get("Key", "")):
            return getattr(self.client, operation)(Bucket=self.bucket, **self._owned, **params)

    @contextlib.contextmanager
    def _translated(self, operation: str, key: str) -> Iterator[None]:
        """S3's errors as the store's: ``NotFound``, ``PreconditionFailed``, a conflict to
        retry, or a ``StoreError`` that says what happened."""
        try:
            yield
        except botocore.exceptions.ClientError as exc:
            code = exc.response.get("Error", {}).get("Code", "")
            status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
            message = exc.response.get("Error", {}).get("Message", exc)
            if self.owner and (code == "AccessDenied" or status == 403):
                raise StoreError(
                    f"S3 refused {operation} on s3://{self.bucket}: either the bucket is not "
                    f"account {self.owner}'s (it was removed, and another account created one "
                    "of the same name; starburst will not use it: run `starburst teardown` "
                    f"and `starburst setup` again), or these credentials may not use it "
                    f"({code}: {message})"
                ) from exc
            if code in ("NoSuchKey", "404", "NotFound"):
                raise NotFound(key) from None
            if code == "PreconditionFailed" or status == 412:
                raise PreconditionFailed(key) from None
            if code == "ConditionalRequestConflict" or status == 409:
                raise _Conflict from None
            raise StoreError(
                f"S3 {operation} on s3://{self.bucket}/{key} failed: {code}: {message}"
            ) from exc

    def _put(self, key: str, data: bytes) -> None:
        if len(data) < _MULTIPART_BYTES:
            self._call("put_object", Key=self._key(key), Body=data)
            return
        from s3transfer.manager import TransferConfig, TransferManager  # (boto3's own)

        config = TransferConfig(
            multipart_threshold=_MULTIPART_BYTES, multipart_chunksize=_PART_BYTES,
            max_request_concurrency=_PARTS_AT_ONCE,
        )  # fmt: skip
        with (
            self._translated("a multipart upload", self._key(key)),
            TransferManager(self.client, config) as transfers,
        ):
            transfers.upload(
                io.BytesIO(data), self.bucket, self._key(key), extra_args=self._owned
            ).result()

    def _get(self, key: str) -> bytes:
        return self._get_versioned(key)[0]

    def _get_versioned(self, key: str) -> tuple[bytes, str]:
        response = self._call("get_object", Key=self._key(key))
        return response["Body"].read(), response["ETag"]

    def _conditional_put(self, key: str, data: bytes, **condition: str) -> str:
        for _ in range(_CONFLICT_RETRIES):
            try:
                return self._call("put_object", Key=self._key(key), Body=data, **condition)["ETag"]
            except _Conflict:
                continue
        raise StoreError(f"S3 kept answering 409 Conflict for {key}; try again later")

    def _put_if_absent(self, key: str, data: bytes) -> str:
        return self._conditional_put(key, data, IfNoneMatch="*")

    def _put_if_match(self, key: str, data: bytes, etag: str) -> str:
        try:
            return self._conditional_put(key, data, IfMatch=etag)
        except NotFound:
            raise PreconditionFailed(f"{key} does not exist") from None

    def _delete(self, key: str) -> None:
        self._call("delete_object", Key=self._key(key))

    def delete_prefix(self, prefix: str) -> int:
        """Remove every key under ``prefix``, a thousand per request."""
        removed = 0
        while True:
            keys, _ = self.list_page(prefix)
            if not keys:
                return removed
            self._request("delete_batch")
            self._call(
                "delete_objects",
                Delete={"Objects": [{"Key": self._key(k)} for k in keys], "Quiet": True},
            )
            removed += len(keys)

    def _list_page(
        self, prefix: str, start_after: str | None, limit: int
    ) -> tuple[list[str], bool]:
        params: dict[str, Any] = {"Prefix": self._key(prefix), "MaxKeys": limit}
        if start_after is not None:
            params["StartAfter"] = self._key(start_after)
        response = self._call("list_objects_v2", **params)
        keys = [item["Key"][len(self.prefix) :] for item in response.get("Contents", [])]
        return keys, bool(response.get("IsTruncated"))

    def _list_folders(self, prefix: str) -> list[str]:
        folders: list[str] = []
        params: dict[str, Any] = {"Prefix": self._key(prefix), "Delimiter": "/"}
        while True:
            response = self._call("list_objects_v2", **params)
            start = len(self._key(prefix))
            folders += [p["Prefix"][start:-1] for p in response.get("CommonPrefixes", [])]
            if not response.get("IsTruncated"):
                return sorted(folders)
            params["ContinuationToken"] = response["NextContinuationToken"]


def account_bucket(aws: Any, resources: dict[str, Any]) -> S3Store:
    """The bucket ``starburst setup`` made (``resources`` is the config's ``[aws]`` table),
    as a store that only that account's bucket of the name satisfies."""
    return S3Store(
        resources["bucket"], "", client=aws.client("s3"), owner=resources.get("account_id")
    )


class _Conflict(Exception):
    """A concurrent conditional write answered 409: try again."""
