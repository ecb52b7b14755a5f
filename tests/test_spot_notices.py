"""A worker on EC2 reads Spot interruption notices from the instance metadata (IMDSv2): a
real HTTP server plays the metadata service, as EC2 answers it."""

from __future__ import annotations

import http.server
import json
import threading
from collections.abc import Iterator
from typing import Any

import pytest

from starburst.worker.spot_notices import InstanceMetadata, watch


class _Metadata(http.server.BaseHTTPRequestHandler):
    """IMDSv2: a token from a PUT, then GETs that must carry a valid one."""

    tokens: list[str]
    notice: dict[str, Any] | None = None
    gets = 0

    def do_PUT(self) -> None:
        if self.path != "/latest/api/token" or not self.headers.get(
            "X-aws-ec2-metadata-token-ttl-seconds"
        ):
            self.send_error(400)
            return
        token = f"token-{len(self.tokens)}"
        self.tokens.append(token)
        self._answer(200, token)

    def do_GET(self) -> None:
        type(self).gets += 1
        valid = self.tokens[-1] if self.tokens else None
        if valid is None or self.headers.get("X-aws-ec2-metadata-token") != valid:
            self.send_error(401)
            return
        if self.path == "/latest/meta-data/spot/instance-action" and self.notice is not None:
            self._answer(200, json.dumps(self.notice))
            return
        self.send_error(404)

    def _answer(self, code: int, body: str) -> None:
        self.send_response(code)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body.encode())

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def metadata() -> Iterator[type[_Metadata]]:
    handler = type("Handler", (_Metadata,), {"tokens": [], "notice": None, "gets": 0})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    handler.base = f"http://127.0.0.1:{server.server_address[1]}"  # type: ignore[attr-defined]
    yield handler
    server.shutdown()


def test_no_notice_until_ec2_gives_one(metadata: Any) -> None:
    client = InstanceMetadata(metadata.base)
    assert client.spot_notice() is None
    metadata.notice = {"action": "terminate", "time": "2026-12-06T08:00:00Z"}
    assert client.spot_notice() == metadata.notice
    assert metadata.tokens == ["token-0"]  # one token, reused


def test_an_expired_token_is_replaced(metadata: Any) -> None:
    client = InstanceMetadata(metadata.base)
    assert client.spot_notice() is None
    metadata.tokens.append("a-token-the-client-does-not-have")  # the old one expired
    metadata.notice = {"action": "stop"}
    assert client.spot_notice() == {"action": "stop"}
    assert len(metadata.tokens) == 3


def test_the_watcher_calls_back_once_on_the_first_notice(metadata: Any) -> None:
    seen: list[dict[str, Any]] = []
    called = threading.Event()

    def on_notice(notice: dict[str, Any]) -> None:
        seen.append(notice)
        called.set()

    stop = threading.Event()
    thread = watch(InstanceMetadata(metadata.base), on_notice, stop, interval=0.01)
    while metadata.gets < 3:
        stop.wait(0.01)
    assert not seen
    metadata.notice = {"action": "terminate"}
    assert called.wait(10)
    thread.join(10)
    assert seen == [{"action": "terminate"}] and not thread.is_alive()


def test_the_watcher_survives_a_failing_metadata_service_and_stops_when_told() -> None:
    stop = threading.Event()
    thread = watch(InstanceMetadata("http://127.0.0.1:9"), lambda notice: None, stop, 0.01)
    stop.wait(0.1)
    assert thread.is_alive()  # refused connections are logged, then asked again
    stop.set()
    thread.join(10)
    assert not thread.is_alive()
