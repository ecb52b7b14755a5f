"""The local side of starburst's security model (``docs/security.md``): a detached session's
folders are the user's own whatever the umask, a session id that comes from outside (a
record in the store, the command line) never becomes a path outside its session's folder,
and registry credentials go to the registry's own host only (loopback HTTP servers).

Real sessions, real worker processes, the real local store; nothing is mocked.
"""

from __future__ import annotations

import base64
import http.server
import io
import json
import os
import stat
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

import starburst
from starburst.cli import main
from starburst.detached import remove_session
from starburst.env.registry import Registry
from starburst.errors import SessionNotFoundError


@pytest.fixture(autouse=True)
def data_dir(detached_data_dir: Path) -> Path:
    return detached_data_dir


@pytest.fixture
def open_umask() -> Iterator[None]:
    """The loosest umask: every file and folder is world-writable unless made otherwise."""
    old = os.umask(0)
    try:
        yield
    finally:
        os.umask(old)


def _shared_with_others(folder: Path) -> list[str]:
    """Everything below ``folder`` (and itself) that a group or other user can access."""
    found = []
    for path in [folder, *folder.rglob("*")]:
        mode = path.lstat().st_mode
        if stat.S_IMODE(mode) & 0o077:
            found.append(f"{path.relative_to(folder.parent)} {stat.filemode(mode)}")
    return found


def test_a_detached_session_is_private_to_its_user_whatever_the_umask(
    data_dir: Path, open_umask: None
) -> None:
    session = starburst.session(workers=1, ttl="1h")
    session.map(lambda x: x * x, range(30), chunk_size=5)
    assert session.collect(timeout=60) == [[x * x for x in range(30)]]
    session_folder = data_dir / "store" / "sessions" / session.id
    assert (session_folder / "procs").is_dir() and (session_folder / "logs").is_dir()
    assert _shared_with_others(data_dir) == []


def test_a_store_an_earlier_version_left_open_is_closed_to_others(
    data_dir: Path, open_umask: None
) -> None:
    store = data_dir / "store"
    (store / "sessions").mkdir(parents=True)  # as the old code left it under umask 0
    assert stat.S_IMODE(store.stat().st_mode) == 0o777
    assert starburst.list_sessions() == []
    assert stat.S_IMODE(store.stat().st_mode) == 0o700
    store.chmod(0o755)
    starburst.session(workers=1, ttl="1h").detach()
    assert stat.S_IMODE(store.stat().st_mode) == 0o700


def _forge(data_dir: Path, claimed_id: str) -> str:
    """A real detached session whose record (``session.json``) names another session."""
    session = starburst.session(workers=1, ttl="1h")
    record_path = data_dir / "store" / "sessions" / session.id / "session.json"
    record = json.loads(record_path.read_text())
    record["session_id"] = claimed_id
    record_path.write_text(json.dumps(record))
    session.detach()
    return session.id


@pytest.mark.parametrize("claimed_id", ["../../escaped", "/tmp/escaped", "sb-x/../../escaped"])
def test_a_record_whose_session_id_is_a_path_is_refused(
    data_dir: Path, tmp_path: Path, claimed_id: str
) -> None:
    session_id = _forge(data_dir, claimed_id)
    before = sorted(p for p in tmp_path.rglob("*") if "escaped" in p.name)
    with pytest.raises(SessionNotFoundError, match="names the session"):
        starburst.attach(session_id)
    with pytest.raises(SessionNotFoundError, match="names the session"):
        remove_session(session_id)
    cleanup = CliRunner().invoke(main, ["sessions", "cleanup", session_id])
    assert cleanup.exit_code != 0 and "names the session" in cleanup.output
    after = sorted(p for p in tmp_path.rglob("*") if "escaped" in p.name)
    assert after == before == []
    assert not Path("/tmp/escaped").exists()


def test_a_session_id_from_the_command_line_never_becomes_a_path(data_dir: Path) -> None:
    secret = data_dir / "elsewhere" / "logs"  # = store/sessions/../../elsewhere/logs
    secret.mkdir(parents=True)
    (secret / "private.log").write_text("not a worker log")
    (data_dir / "store" / "sessions").mkdir(parents=True)
    shown = CliRunner().invoke(main, ["logs", "../../elsewhere"])
    assert "not a worker log" not in shown.output
    assert shown.exit_code != 0 and "is not a session id" in shown.output


class _Recorder(http.server.BaseHTTPRequestHandler):
    """A loopback HTTP server's handler: records each request's Authorization header and
    answers with what the test set for the path (status, headers)."""

    seen: list[tuple[str, str | None]]
    answers: dict[str, tuple[int, dict[str, str], bytes]]

    def _answer(self) -> None:
        path = self.path.split("?", 1)[0]
        type(self).seen.append((path, self.headers.get("Authorization")))
        status, headers, body = type(self).answers.get(path, (404, {}, b""))
        if callable(status):
            status, headers, body = status(self.headers.get("Authorization"))
        self.send_response(status)
        for name, value in {**headers, "Content-Length": str(len(body))}.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_HEAD = do_POST = do_PUT = do_PATCH = _answer

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def servers() -> Iterator[Callable[[], tuple[str, type[_Recorder]]]]:
    """Start loopback HTTP servers: each call gives one's URL and its handler class."""
    started: list[http.server.ThreadingHTTPServer] = []

    def start() -> tuple[str, type[_Recorder]]:
        handler = type("Handler", (_Recorder,), {"seen": [], "answers": {}})
        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        started.append(server)
        return f"http://127.0.0.1:{server.server_port}", handler

    yield start
    for server in started:
        server.shutdown()
        server.server_close()


_DIGEST = {"Docker-Content-Digest": "sha256:" + "0" * 64}
_BASIC = "Basic " + base64.b64encode(b"AWS:the-ecr-password").decode()


def _registry(url: str, realm: str) -> dict[str, Any]:
    """A registry's answers: a manifest behind a bearer challenge whose realm is ``realm``."""

    def manifest(authorization: str | None) -> tuple[int, dict[str, str], bytes]:
        if authorization == "Bearer granted":
            return 200, _DIGEST, b""
        challenge = f'Bearer realm="{realm}",service="registry"'
        return 401, {"WWW-Authenticate": challenge}, b""

    return {"/v2/team/app/manifests/v1": (manifest, {}, b"")}


_TOKEN = (200, {"Content-Type": "application/json"}, b'{"token": "granted"}')


def test_registry_credentials_go_to_the_registrys_own_token_service_only(servers) -> None:
    registry_url, registry = servers()
    elsewhere_url, elsewhere = servers()
    registry.answers = _registry(registry_url, f"{elsewhere_url}/token")
    elsewhere.answers = {"/token": _TOKEN}
    client = Registry(registry_url, username="AWS", password="the-ecr-password")
    assert client.manifest_digest("team/app", "v1") == _DIGEST["Docker-Content-Digest"]
    assert elsewhere.seen == [("/token", None)]  # asked, anonymously
    # A registry whose token service is its own host gets the password, as before.
    registry.answers = {**_registry(registry_url, f"{registry_url}/token"), "/token": _TOKEN}
    client = Registry(registry_url, username="AWS", password="the-ecr-password")
    assert client.manifest_digest("team/app", "v1") == _DIGEST["Docker-Content-Digest"]
    assert ("/token", _BASIC) in registry.seen


def test_an_upload_sent_to_another_host_carries_no_credentials(servers) -> None:
    registry_url, registry = servers()
    elsewhere_url, elsewhere = servers()

    def start_upload(authorization: str | None) -> tuple[int, dict[str, str], bytes]:
        if authorization != _BASIC:
            return 401, {"WWW-Authenticate": 'Basic realm="registry"'}, b""
        return 202, {"Location": f"{elsewhere_url}/upload/1"}, b""

    registry.answers = {"/v2/team/app/blobs/uploads/": (start_upload, {}, b"")}
    elsewhere.answers = {"/upload/1": (201, {}, b"")}
    client = Registry(registry_url, username="AWS", password="the-ecr-password")
    client.push_blob("team/app", "sha256:" + "0" * 64, io.BytesIO(b""))
    assert ("/v2/team/app/blobs/uploads/", _BASIC) in registry.seen
    assert elsewhere.seen == [("/upload/1", None)]
