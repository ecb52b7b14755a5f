"""The live dashboard: ``starburst dashboard`` or ``starburst.dashboard()``.

A web page of every session this machine can see (``list_sessions``: the local ones and,
when set up, the AWS account's), served by the standard library's HTTP server on this
machine only. The page (``dashboard.html``) polls ``/api/sessions`` every 2 s; a session's
link serves its report (``Timeline.to_html``), made afresh on each load; its buttons post
to ``/api/sessions/<id>/<action>`` the same calls ``starburst sessions extend`` and
``cleanup`` make, and a cancel of its running runs. Nothing is fetched from the network.

Only pages this server served can act: a POST must carry the server's random token (in the
page it served) and come from its own origin; every request must name this server as its
``Host`` (so a web page whose name resolves to 127.0.0.1 cannot read the sessions either).
"""

from __future__ import annotations

import errno
import hmac
import json
import secrets
import threading
import time
import webbrowser
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from typing import Any
from urllib.parse import unquote, urlsplit

from ..engine.status import SessionStatus
from ..errors import ConfigurationError, SessionNotFoundError, StarburstError

#: The names the dashboard may be served on: this machine only.
LOCAL_HOSTS = ("127.0.0.1", "localhost")

#: Session states in which a report page reloads itself (the session may still change).
LIVE_STATES = ("idle", "running", "waiting", "attached")

#: How often a live session's report reloads, in seconds.
REPORT_REFRESH_SECONDS = 10

_TOKEN_HEADER = "X-Starburst-Token"
_MAX_BODY = 10_000


class Dashboard:
    """A running dashboard: ``url`` to open, ``close()`` to stop it (also on leaving a
    ``with`` block); ``wait()`` serves until Ctrl-C."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        if host not in LOCAL_HOSTS:
            raise ConfigurationError(
                f"the dashboard serves this machine only, so host={host!r} is refused: use "
                "127.0.0.1 (the default) or localhost; to see it from another machine, "
                "forward the port over SSH (ssh -L PORT:127.0.0.1:PORT this-machine)"
            )
        if not 0 <= port <= 65535:
            raise ConfigurationError(f"port={port} is not a port: use 1-65535, or 0 for a free one")
        self.token = secrets.token_urlsafe(32)
        try:
            self._server = _Server((host, port), _Handler)
        except OSError as exc:
            if exc.errno != errno.EADDRINUSE:
                raise
            raise ConfigurationError(
                f"port {port} on {host} is in use: pass another port, or 0 for a free one"
            ) from None
        self._server.dashboard = self
        self.host = host
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="starburst-dashboard", daemon=True
        )
        self._thread.start()

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}/"

    def origins(self) -> set[str]:
        """The ``Host`` values that name this server."""
        return {f"{name}:{self.port}" for name in LOCAL_HOSTS}

    def wait(self) -> None:
        """Serve until Ctrl-C, then stop."""
        try:
            while self._thread.is_alive():
                self._thread.join(0.5)
        except KeyboardInterrupt:
            pass
        finally:
            self.close()

    def close(self) -> None:
        """Stop serving (sessions are not touched)."""
        if self._thread.is_alive():
            self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> Dashboard:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<starburst.Dashboard at {self.url}>"

    def _repr_html_(self) -> str:
        return f'<a href="{self.url}" target="_blank">starburst dashboard at {self.url}</a>'


def dashboard(port: int = 0, open_browser: bool = True, host: str = "127.0.0.1") -> Dashboard:
    """Serve the live dashboard of every session on ``host:port`` (this machine only; port
    0: a free one) in the background, and open it in the browser unless
    ``open_browser=False``. Returns the running ``Dashboard`` (``.url``, ``.close()``)."""
    board = Dashboard(host, port)
    if open_browser:
        webbrowser.open(board.url)
    return board


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    dashboard: Dashboard


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    server_version = "starburst-dashboard"

    def do_GET(self) -> None:
        if not self._from_this_server():
            return
        path = urlsplit(self.path).path
        parts = [unquote(part) for part in path.strip("/").split("/")]
        if path == "/":
            self._send(200, "text/html", _page(self.server.dashboard.token), _PAGE_HEADERS)
        elif path == "/api/sessions":
            self._answer(lambda: {"sessions": [session_row(s) for s in _list_sessions()]})
        elif len(parts) == 3 and parts[0] == "session" and parts[2] == "report":
            self._send_report(parts[1])
        else:
            self._send_json(404, {"error": f"no page {path} here: the dashboard is at /"})

    def do_POST(self) -> None:
        if not self._from_this_server():
            return
        given = self.headers.get(_TOKEN_HEADER, "")
        if not hmac.compare_digest(given.encode(), self.server.dashboard.token.encode()):
            refusal = "refused: no or a wrong token (reload the dashboard's page and retry)"
            self._send_json(403, {"error": refusal})
            return
        parts = [unquote(part) for part in urlsplit(self.path).path.strip("/").split("/")]
        if len(parts) != 4 or parts[:2] != ["api", "sessions"] or parts[3] not in ACTIONS:
            self._send_json(404, {"error": f"no action {self.path}: try one of {list(ACTIONS)}"})
            return
        session_id, action = parts[2], parts[3]
        try:
            options = self._body(action)
        except ValueError as exc:
            self._send_json(400, {"error": str(exc)})
            return
        self._answer(lambda: {"message": ACTIONS[action](session_id, **options)})

    def _from_this_server(self) -> bool:
        """Whether the request names this server as its host and, if it says, comes from a
        page of its own; refuses it (403) when not."""
        origins = self.server.dashboard.origins()
        origin = self.headers.get("Origin")
        if self.headers.get("Host") in origins and (
            origin is None or urlsplit(origin).netloc in origins
        ):
            return True
        host = self.headers.get("Host")
        refusal = (
            f"refused: the dashboard answers its own pages only (Host {host!r}, Origin {origin!r})"
        )
        self._send_json(403, {"error": refusal})
        return False

    def _body(self, action: str) -> dict[str, Any]:
        """The request's JSON object: the action's options (``by`` for extend), ``{}``
        when it has none."""
        length = int(self.headers.get("Content-Length") or 0)
        if length > _MAX_BODY:
            raise ValueError(f"the request's body is {length} bytes; at most {_MAX_BODY}")
        raw = self.rfile.read(length) if length else b"{}"
        try:
            body = json.loads(raw)
        except ValueError:
            raise ValueError("the request's body is not JSON") from None
        allowed = {"by"} if action == "extend" else set()
        if not isinstance(body, dict) or not set(body) <= allowed:
            raise ValueError(f"{action} takes the options {sorted(allowed)} only, as a JSON object")
        return body

    def _answer(self, make: Callable[[], dict[str, Any]]) -> None:
        """Send ``make()`` as JSON, or the error it raised as a sentence."""
        try:
            self._send_json(200, make())
        except SessionNotFoundError as exc:
            self._send_json(404, {"error": str(exc)})
        except StarburstError as exc:
            self._send_json(400, {"error": str(exc)})
        except Exception as exc:  # an AWS or network failure: say what, keep serving
            self._send_json(500, {"error": f"{type(exc).__name__}: {exc}"})

    def _send_report(self, session_id: str) -> None:
        try:
            page = live_report(session_id)
        except StarburstError as exc:
            status = 404 if isinstance(exc, SessionNotFoundError) else 400
            self._send(status, "text/plain", f"No report: {exc}", {})
            return
        self._send(200, "text/html", page, {})

    def _send_json(self, status: int, body: dict[str, Any]) -> None:
        self._send(status, "application/json", json.dumps(body), {})

    def _send(self, status: int, kind: str, text: str, headers: dict[str, str]) -> None:
        data = text.encode("utf-8")
        self.send_response(status)
        self.send_header("Content-Type", f"{kind}; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Cache-Control", "no-store")
        self.send_header("X-Content-Type-Options", "nosniff")
        self.send_header("X-Frame-Options", "DENY")
        for name, value in headers.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: the page polls every 2 s."""


#: The dashboard page may run its own inline script and talk to its server, nothing else.
_PAGE_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; script-src 'unsafe-inline'; "
    "style-src 'unsafe-inline'; connect-src 'self'; frame-ancestors 'none'"
}


def _page(token: str) -> str:
    template = resources.files(__package__).joinpath("dashboard.html").read_text("utf-8")
    return template.replace("__TOKEN__", token)


def _list_sessions() -> list[SessionStatus]:
    from ..detached import list_sessions

    return list_sessions()


def session_row(status: SessionStatus) -> dict[str, Any]:
    """A session as the page shows it: its status, with its totals and ETA."""
    etas = [run.eta_seconds for run in status.runs if run.eta_seconds is not None]
    return {
        **status.to_dict(),
        "items": status.items,
        "finished": status.finished,
        "failed": sum(run.failed for run in status.runs),
        "eta_seconds": max(etas, default=None),
        "now": time.time(),
    }


def live_report(session_id: str) -> str:
    """Session ``session_id``'s report page as it is now; while the session may still
    change, the page reloads itself every ``REPORT_REFRESH_SECONDS``."""
    from ..detached import session_status
    from .timeline import report

    live = session_status(session_id).state in LIVE_STATES
    page = report(session_id).to_html()
    if live:
        refresh = f'<meta http-equiv="refresh" content="{REPORT_REFRESH_SECONDS}">'
        page = page.replace("<head>", f"<head>{refresh}", 1)
    return page


def extend_session(session_id: str, by: str = "1h") -> str:
    """Move the session's deadline ``by`` later, as ``starburst sessions extend`` does."""
    from ..detached import attach

    with attach(session_id, allow_expired=True) as session:
        deadline = session.extend(by)
    until = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(deadline))
    return f"{session_id} now runs until {until}"


def cancel_session(session_id: str) -> str:
    """Cancel the session's running runs: workers take no more of their chunks (what is
    done stays collectable)."""
    from ..detached import attach

    with attach(session_id, allow_expired=True) as session:
        running = [run for run in session.runs if run.status().state == "running"]
        for run in running:
            run.cancel()
    return f"{session_id}: {len(running)} running run(s) cancelled; what is done stays"


def cleanup_session(session_id: str) -> str:
    """Stop the session's workers and delete its data, as ``starburst sessions cleanup``."""
    from ..detached import remove_session

    remove_session(session_id)
    return f"{session_id}: workers stopped, data deleted"


#: What the page's buttons do, by the last part of their address.
ACTIONS = {"extend": extend_session, "cancel": cancel_session, "cleanup": cleanup_session}
