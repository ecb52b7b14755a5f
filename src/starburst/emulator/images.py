"""Read an image back from a registry and unpack it, independently of starburst's own client.

Used by tests to check what was pushed, and by the task runner to start a task "from its
image": the image's files land in a folder, and its config says how to run it.
"""

from __future__ import annotations

import base64
import io
import json
import ssl
import tarfile
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import zstandard

_ACCEPT = "application/vnd.oci.image.manifest.v1+json"


@dataclass
class PulledImage:
    """An unpacked image: its files under ``root``, its config, the names in each layer."""

    root: Path
    config: dict[str, Any]
    layer_names: list[list[str]]

    def env(self) -> dict[str, str]:
        return dict(e.split("=", 1) for e in self.config["config"].get("Env") or [])


class ImageReader:
    """Fetches manifests and blobs with urllib (Basic auth and a CA file when given)."""

    def __init__(
        self, url: str, *, ca_file: Path | None = None, auth: tuple[str, str] | None = None
    ):
        self.url = url.rstrip("/")
        self.context = ssl.create_default_context(cafile=str(ca_file)) if ca_file else None
        self.headers = {}
        if auth:
            token = base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode()
            self.headers["Authorization"] = f"Basic {token}"

    def _get(self, path: str, accept: str | None = None) -> bytes:
        headers = dict(self.headers, **({"Accept": accept} if accept else {}))
        request = urllib.request.Request(f"{self.url}/v2/{path}", headers=headers)
        with urllib.request.urlopen(request, context=self.context, timeout=60) as answer:
            return answer.read()

    def manifest(self, repository: str, reference: str) -> dict[str, Any]:
        return json.loads(self._get(f"{repository}/manifests/{reference}", _ACCEPT))

    def pull(self, repository: str, reference: str, root: Path) -> PulledImage:
        """Unpack every layer of ``repository:reference`` under ``root``, in order."""
        manifest = self.manifest(repository, reference)
        config = json.loads(self._get(f"{repository}/blobs/{manifest['config']['digest']}"))
        names = []
        for layer in manifest["layers"]:
            blob = self._get(f"{repository}/blobs/{layer['digest']}")
            if layer["mediaType"].endswith("zstd"):
                blob = zstandard.ZstdDecompressor().stream_reader(io.BytesIO(blob)).read()
            with tarfile.open(fileobj=io.BytesIO(blob), mode="r:*") as tar:
                names.append(tar.getnames())
                tar.extractall(root, filter="data")
        return PulledImage(root, config, names)
