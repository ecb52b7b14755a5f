"""A small client of the OCI distribution API: blobs, manifests and tags over plain HTTP.

It speaks to ECR with the Basic credentials of ``ecr.get_authorization_token()`` and to public
registries with the anonymous bearer tokens they hand out, so that a worker image can be built
and pushed without a Docker engine.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import os
import re
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, BinaryIO

import urllib3

from ..errors import RegistryError

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
MANIFEST_TYPES = (OCI_MANIFEST, OCI_INDEX, DOCKER_MANIFEST, DOCKER_LIST)
#: Blobs go up in parts of this size (ECR's parts must be at least 5 MiB, but the last).
UPLOAD_PART = 16 * 1024 * 1024
_DOCKER_HUB = "registry-1.docker.io"
_CHALLENGE_FIELD = re.compile(r'(\w+)="([^"]*)"')


def _origin(url: str) -> tuple[str, str, int | None]:
    """Scheme, host and port of ``url`` (the port a scheme implies when none is written)."""
    parts = urllib.parse.urlsplit(url)
    default = {"https": 443, "http": 80}.get(parts.scheme.lower())
    return parts.scheme.lower(), (parts.hostname or "").lower(), parts.port or default


@dataclass(frozen=True)
class ImageReference:
    """``host/repository[:tag][@digest]``, split into its parts."""

    host: str
    repository: str
    tag: str | None = None
    digest: str | None = None

    @classmethod
    def parse(cls, text: str) -> ImageReference:
        """Parse an image reference as Docker does (a bare name lives on Docker Hub)."""
        rest, _, digest = text.partition("@")
        first, slash, remainder = rest.partition("/")
        if slash and ("." in first or ":" in first or first == "localhost"):
            host, path = first, remainder
        else:
            host, path = _DOCKER_HUB, rest if slash else f"library/{rest}"
        name, colon, tag = path.rpartition(":") if ":" in path else (path, "", "")
        if not name or (colon and not tag) or "/" in tag:
            raise RegistryError(
                f"{text!r} is not an image reference; write it like "
                "public.ecr.aws/docker/library/python:3.11-slim"
            )
        return cls(host, name, tag or None, digest or None)

    @property
    def reference(self) -> str:
        """What to ask the registry for: the digest if pinned, else the tag (or latest)."""
        return self.digest or self.tag or "latest"

    def __str__(self) -> str:
        text = f"{self.host}/{self.repository}"
        if self.tag:
            text += f":{self.tag}"
        return text + (f"@{self.digest}" if self.digest else "")


def sha256_digest(data: bytes) -> str:
    """The OCI digest of ``data``."""
    return "sha256:" + hashlib.sha256(data).hexdigest()


class Registry:
    """One registry at ``url`` (``https://host`` or, on loopback, ``http://host:port``).

    Credentials (``username``/``password``) are sent only when the registry asks for them, and
    only to the registry's own scheme, host and port: a token service elsewhere that its
    challenge names is asked anonymously, and an upload elsewhere gets no Authorization. TLS
    is checked against the system's certificates, or ``AWS_CA_BUNDLE`` when set.
    """

    def __init__(self, url: str, username: str | None = None, password: str | None = None):
        self.url = url.rstrip("/")
        self.host = urllib.parse.urlsplit(self.url).netloc
        self._origin = _origin(self.url)
        self._credentials = (username, password) if username is not None else None
        self._authorization: dict[str, str] = {}  # repository -> Authorization header
        ca_file = os.environ.get("AWS_CA_BUNDLE") or None
        self._http = urllib3.PoolManager(
            maxsize=8,
            ca_certs=ca_file,
            retries=urllib3.Retry(total=3, backoff_factor=0.5),  # idempotent methods only
            timeout=urllib3.Timeout(connect=10, read=120),
        )

    # Manifests --------------------------------------------------------------------------------

    def manifest_digest(self, repository: str, reference: str) -> str | None:
        """The digest of the manifest a tag names, or None when there is none (one HEAD)."""
        answer = self._request("HEAD", repository, f"manifests/{reference}", ok=(200, 404),
                               headers={"Accept": ", ".join(MANIFEST_TYPES)})  # fmt: skip
        if answer.status == 404:
            return None
        return answer.headers.get("Docker-Content-Digest")

    def get_manifest(self, repository: str, reference: str) -> tuple[dict[str, Any], str, str]:
        """The manifest (or index) ``reference`` names: its JSON, media type and digest."""
        answer = self._request("GET", repository, f"manifests/{reference}",
                               headers={"Accept": ", ".join(MANIFEST_TYPES)})  # fmt: skip
        body = answer.data
        document = json.loads(body)
        media_type = document.get("mediaType") or answer.headers.get("Content-Type", "")
        return document, media_type.split(";")[0], sha256_digest(body)

    def put_manifest(self, repository: str, tag: str, body: bytes, media_type: str) -> str:
        """Store a manifest under ``tag``; returns its digest."""
        self._request("PUT", repository, f"manifests/{tag}", body=body, ok=(201,),
                      headers={"Content-Type": media_type})  # fmt: skip
        return sha256_digest(body)

    def tags(self, repository: str) -> list[str]:
        """Every tag of ``repository`` (following the registry's pages)."""
        found: list[str] = []
        path = "tags/list?n=1000"
        while path:
            answer = self._request("GET", repository, path, ok=(200, 404))
            if answer.status == 404:
                return found
            found += json.loads(answer.data).get("tags") or []
            link = answer.headers.get("Link", "")
            path = link.split(";")[0].strip("<> ").split(f"/{repository}/", 1)[-1] if link else ""
        return found

    # Blobs ------------------------------------------------------------------------------------

    def has_blob(self, repository: str, digest: str) -> bool:
        """Whether ``repository`` holds the blob (one HEAD)."""
        answer = self._request("HEAD", repository, f"blobs/{digest}", ok=(200, 404))
        return answer.status == 200

    def get_blob(self, repository: str, digest: str) -> Iterator[bytes]:
        """The blob's bytes, streamed in pieces and checked against its digest."""
        answer = self._request("GET", repository, f"blobs/{digest}", preload=False)
        hasher = hashlib.sha256()
        try:
            for piece in answer.stream(1024 * 1024):
                hasher.update(piece)
                yield piece
        finally:
            answer.release_conn()
        if "sha256:" + hasher.hexdigest() != digest:
            raise RegistryError(f"blob {digest} of {self.host}/{repository} arrived damaged")

    def mount_blob(self, repository: str, digest: str, source: str) -> bool:
        """Link a blob of ``source`` (same registry) into ``repository``; False if refused."""
        query = urllib.parse.urlencode({"mount": digest, "from": source})
        answer = self._request("POST", repository, f"blobs/uploads/?{query}", ok=(201, 202))
        if answer.status == 202:  # the registry started an upload instead: cancel it
            self._request("DELETE", repository, self._location(answer), ok=(204, 404))
        return answer.status == 201

    def push_blob(self, repository: str, digest: str, stream: BinaryIO) -> None:
        """Upload a blob in parts (``PATCH``), then commit it under ``digest`` (``PUT``)."""
        answer = self._request("POST", repository, "blobs/uploads/", ok=(202,))
        location = self._location(answer)
        offset = 0
        while part := stream.read(UPLOAD_PART):
            answer = self._request(
                "PATCH", repository, location, body=part, ok=(202,),
                headers={"Content-Type": "application/octet-stream",
                         "Content-Range": f"{offset}-{offset + len(part) - 1}"},
            )  # fmt: skip
            location = self._location(answer)
            offset += len(part)
        separator = "&" if "?" in location else "?"
        self._request("PUT", repository, f"{location}{separator}digest={digest}", ok=(201,),
                      headers={"Content-Length": "0"})  # fmt: skip

    def push_bytes(self, repository: str, data: bytes) -> str:
        """Upload ``data`` unless the repository has it already; returns its digest."""
        digest = sha256_digest(data)
        if not self.has_blob(repository, digest):
            self.push_blob(repository, digest, io.BytesIO(data))
        return digest

    # HTTP -------------------------------------------------------------------------------------

    def _location(self, answer: urllib3.BaseHTTPResponse) -> str:
        location = answer.headers.get("Location")
        if not location:
            raise RegistryError(f"{self.host} started an upload without saying where to send it")
        return urllib.parse.urljoin(self.url + "/", location)

    def _request(
        self,
        method: str,
        repository: str,
        path: str,
        *,
        body: bytes | None = None,
        headers: dict[str, str] | None = None,
        ok: tuple[int, ...] = (200,),
        preload: bool = True,
    ) -> urllib3.BaseHTTPResponse:
        """Send a request about ``repository`` (``path`` below ``/v2/<repository>/``, or an
        absolute upload URL), authenticating when the registry asks; check its status."""
        url = path if "://" in path else f"{self.url}/v2/{repository}/{path}"
        for attempt in range(2):
            sent = dict(headers or {})
            if repository in self._authorization and _origin(url) == self._origin:
                sent["Authorization"] = self._authorization[repository]
            try:
                answer = self._http.request(
                    method, url, body=body, headers=sent, preload_content=preload,
                    redirect=method in ("GET", "HEAD"),
                )  # fmt: skip
            except urllib3.exceptions.HTTPError as exc:
                raise RegistryError(
                    f"cannot reach the image registry at {self.url} ({exc}); check the network"
                    " (and STARBURST_REGISTRY_URL or STARBURST_BASE_IMAGE if you set them)"
                ) from exc
            if answer.status == 401 and attempt == 0:
                answer.drain_conn()
                self._authorization[repository] = self._authenticate(
                    answer.headers.get("WWW-Authenticate", ""), repository
                )
                continue
            break
        if answer.status not in ok:
            text = answer.data[:500].decode(errors="replace") if preload else ""
            raise RegistryError(
                f"{method} {url} answered {answer.status}: {text.strip() or answer.reason}"
                + (
                    "; the credentials were refused (run `starburst setup` and check the AWS "
                    "account)"
                    if answer.status in (401, 403)
                    else ""
                )
            )
        return answer

    def _authenticate(self, challenge: str, repository: str) -> str:
        """The Authorization header that answers a ``WWW-Authenticate`` challenge."""
        scheme = challenge.split(" ", 1)[0].lower()
        basic = ""
        if self._credentials is not None:
            user, password = self._credentials
            basic = "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()
        if scheme == "basic":
            if not basic:
                raise RegistryError(f"{self.host} wants a password and none was given")
            return basic
        if scheme != "bearer":
            raise RegistryError(f"{self.host} asks for unknown authentication: {challenge!r}")
        fields = dict(_CHALLENGE_FIELD.findall(challenge))
        realm = fields.pop("realm", "")
        fields.setdefault("scope", f"repository:{repository}:pull,push")
        try:
            ours = bool(basic) and _origin(realm) == self._origin  # our password goes nowhere else
            answer = self._http.request(
                "GET", f"{realm}?{urllib.parse.urlencode(fields)}",
                headers={"Authorization": basic} if ours else None,
            )  # fmt: skip
        except (urllib3.exceptions.HTTPError, ValueError) as exc:
            raise RegistryError(
                f"{self.host} sent for a token to {realm!r}, which cannot be reached ({exc})"
            ) from exc
        if answer.status != 200:
            note = (
                "" if ours or not basic else " (asked anonymously: it is not the registry's host)"
            )
            raise RegistryError(f"{realm} refused a token for {repository}: {answer.status}{note}")
        token = json.loads(answer.data)
        return "Bearer " + (token.get("token") or token.get("access_token") or "")
