"""Spot interruption notices, read from the instance metadata service (IMDSv2).

EC2 gives a Spot instance two minutes' notice at ``/latest/meta-data/spot/instance-action``
(404 until then), and ECS does not stop a standalone task when its instance is drained: the
worker itself must notice, give its chunks back and leave. AWS recommends a look every 5 s.
A worker on EC2 (``--spot-notices``) runs ``watch`` in a thread; on a notice it is stopped as
by ``SIGTERM`` (what it finished is written, the rest given back for another worker).
"""

from __future__ import annotations

import json
import logging
import os
import threading
import urllib.error
import urllib.request
from collections.abc import Callable
from typing import Any

log = logging.getLogger("starburst.worker")

#: Where the instance metadata service answers (``STARBURST_IMDS_ENDPOINT`` overrides it,
#: for an emulator).
DEFAULT_ENDPOINT = "http://169.254.169.254"
#: Seconds between looks, as AWS recommends.
POLL_SECONDS = 5.0
#: How long a metadata token lives (the most IMDSv2 allows: six hours).
_TOKEN_SECONDS = 21600
_REQUEST_SECONDS = 2.0


def endpoint() -> str:
    """The metadata service's address: ``STARBURST_IMDS_ENDPOINT``, else EC2's."""
    return os.environ.get("STARBURST_IMDS_ENDPOINT") or DEFAULT_ENDPOINT


class InstanceMetadata:
    """An IMDSv2 client: a session token first (a PUT), then GETs that carry it."""

    def __init__(self, base: str) -> None:
        self.base = base.rstrip("/")
        self._token: str | None = None

    def _get_token(self) -> str:
        request = urllib.request.Request(
            f"{self.base}/latest/api/token",
            method="PUT",
            headers={"X-aws-ec2-metadata-token-ttl-seconds": str(_TOKEN_SECONDS)},
        )
        with urllib.request.urlopen(request, timeout=_REQUEST_SECONDS) as answer:
            return str(answer.read().decode())

    def get(self, path: str) -> str | None:
        """The text at ``path``, or None when the service answers 404 (nothing there)."""
        for attempt in range(2):
            if self._token is None:
                self._token = self._get_token()
            request = urllib.request.Request(
                f"{self.base}/latest/meta-data/{path}",
                headers={"X-aws-ec2-metadata-token": self._token},
            )
            try:
                with urllib.request.urlopen(request, timeout=_REQUEST_SECONDS) as answer:
                    return str(answer.read().decode())
            except urllib.error.HTTPError as exc:
                if exc.code == 404:
                    return None
                if exc.code == 401 and attempt == 0:
                    self._token = None  # expired: a new token, once
                    continue
                raise
        return None

    def spot_notice(self) -> dict[str, Any] | None:
        """The pending Spot interruption (``{"action": "terminate", "time": ...}``), if any."""
        text = self.get("spot/instance-action")
        if text is None:
            return None
        try:
            notice = json.loads(text)
        except ValueError:
            return {"action": text.strip()}
        return notice if isinstance(notice, dict) else {"action": str(notice)}


def watch(
    metadata: InstanceMetadata,
    on_notice: Callable[[dict[str, Any]], None],
    stop: threading.Event,
    interval: float = POLL_SECONDS,
) -> threading.Thread:
    """Look for a Spot notice every ``interval`` seconds in a daemon thread until ``stop``
    is set; call ``on_notice`` once with the first one. A metadata service that fails is
    logged and asked again at the next look."""

    def run() -> None:
        while not stop.wait(interval):
            try:
                notice = metadata.spot_notice()
            except (OSError, urllib.error.URLError) as exc:
                log.warning("could not read the spot notice from %s: %s", metadata.base, exc)
                continue
            if notice is not None:
                log.warning("spot interruption notice: %s; giving the work back", notice)
                on_notice(notice)
                return

    thread = threading.Thread(target=run, name="starburst-spot-notices", daemon=True)
    thread.start()
    return thread
