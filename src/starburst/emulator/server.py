"""moto's application with the emulator layer in front, served on a free loopback port.

The server is cheroot's (CherryPy's WSGI server), not the werkzeug development server that
moto's ``ThreadedMotoServer`` runs: werkzeug closes the connection after every response, so
each request paid a new TCP connection (and a new server thread) that AWS, which keeps
connections alive, never charges. cheroot keeps them alive, as AWS does, and serves from a
pool of threads: about a fifth less CPU a request for the emulator and a tenth less for the
client (docs/architecture.md has the figures).
"""

from __future__ import annotations

import json
import threading
import urllib.request
from collections.abc import Callable
from typing import Any, TypeVar

from cheroot import wsgi
from moto.core import DEFAULT_ACCOUNT_ID
from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app

from starburst.emulator import patches
from starburst.emulator.capacity import Ec2Capacity
from starburst.emulator.faults import Faults
from starburst.emulator.layer import EmulatorLayer
from starburst.emulator.pricing import Prices
from starburst.emulator.quotas import Quotas
from starburst.emulator.runner import TaskRunner

FREEZE_ECS_TASKS = {
    "model_name": "ecs::task",
    "transition": {"progression": "manual", "times": 1_000_000},
}


T = TypeVar("T")

#: Requests served at once (moto's work holds the GIL: more threads would only queue there).
SERVER_THREADS = 16
#: Seconds a kept-alive connection may sit idle before the server closes it (S3 closes
#: idle connections after about 20 s; botocore retries a request that meets a closed one).
IDLE_CONNECTION_SECONDS = 20


class EmulatorServer:
    """One moto server for the test session, fronted by :class:`EmulatorLayer`.

    Set ``MOTO_IAM_LOAD_MANAGED_POLICIES=true`` in the environment before :meth:`start`.
    """

    def __init__(self, account_id: str = DEFAULT_ACCOUNT_ID) -> None:
        self.account_id = account_id
        self.runner: TaskRunner | None = None  # the active test's runner
        self.capacity: Ec2Capacity | None = None  # the active test's EC2 capacity
        self.quotas = Quotas()
        self.faults = Faults(lambda: self.runner, lambda: self.capacity)
        self.prices = Prices(fail=self._fail_pricing, restore=self._restore_pricing)
        self.url = ""
        self._server: wsgi.Server | None = None
        self._serving: threading.Thread | None = None
        self.layer: EmulatorLayer | None = None

    def start(self) -> EmulatorServer:
        """Serve moto on 127.0.0.1 (free port) behind the layer, freeze ECS task progression."""
        patches.install()
        patches.set_spot_prices(self.prices.spot)
        self.layer = EmulatorLayer(
            DomainDispatcherApplication(create_backend_app),
            quotas=self.quotas,
            prices=self.prices,
            faults=self.faults,
            account_id=self.account_id,
        )
        server = wsgi.Server(
            ("127.0.0.1", 0), self.layer, numthreads=SERVER_THREADS,
            timeout=IDLE_CONNECTION_SECONDS, shutdown_timeout=1,
        )  # fmt: skip
        server.keep_alive_conn_limit = 100_000  # every worker keeps its connections
        server.prepare()
        self._server = server
        self._serving = threading.Thread(target=server.serve, name="emulator-http", daemon=True)
        self._serving.start()
        host, port = server.bind_addr[:2]
        self.url = f"http://{host}:{port}"
        self.reset()
        return self

    def wrap(self, outer: Callable[[Any], T]) -> T:
        """Serve ``outer(app)``, a WSGI layer in front of the one served (a benchmark's
        tap), and return it."""
        assert self._server is not None, "start the server first"
        wrapped = outer(self._server.wsgi_app)
        self._server.wsgi_app = wrapped
        return wrapped

    def stop(self) -> None:
        """Stop the server and take the in-process patches out."""
        if self._server is not None:
            self._server.stop()
            self._server = None
        if self._serving is not None:
            self._serving.join(timeout=10)
            self._serving = None
        patches.uninstall()

    def reset(self) -> None:
        """Empty every moto backend and forget quotas, prices and faults set by a test."""
        self._post("/moto-api/reset")
        # The transition survives a reset in moto 5.2.5; set it again all the same.
        self._post("/moto-api/state-manager/set-transition", FREEZE_ECS_TASKS)
        self.quotas.reset()
        self.prices.reset()
        self.faults.reset()
        if self.layer is not None:
            self.layer.calls.clear()

    def attach(self, runner: TaskRunner | None, capacity: Ec2Capacity | None = None) -> None:
        """Make ``runner`` and ``capacity`` the ones that faults, moto's EC2 side and the
        metadata endpoints use (None: the test is over)."""
        self.runner = runner
        self.capacity = capacity
        patches.set_capacity(capacity)
        if self.layer is not None:
            self.layer.metadata = runner.metadata if runner is not None else None
            self.layer.capacity = capacity

    def take_internal_errors(self) -> list[str]:
        """Tracebacks of emulator bugs seen since the last call."""
        if self.layer is None:
            return []
        errors = list(self.layer.internal_errors)
        self.layer.internal_errors.clear()
        return errors

    def _post(self, path: str, body: dict[str, Any] | None = None) -> None:
        data = json.dumps(body).encode() if body is not None else b""
        request = urllib.request.Request(self.url + path, data=data, method="POST")
        with urllib.request.urlopen(request, timeout=30) as response:
            response.read()

    def _fail_pricing(self, **kwargs: Any) -> None:
        self.faults.error("GetProducts", service="pricing", **kwargs)

    def _restore_pricing(self) -> None:
        self.faults.clear_errors("GetProducts")


#: Ambient AWS settings that would lead a client away from the emulator's fake credentials.
