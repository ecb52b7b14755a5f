"""moto's threaded server with the emulator layer in front, on a free loopback port."""

from __future__ import annotations

import json
import urllib.request
from typing import Any

from moto.core import DEFAULT_ACCOUNT_ID
from moto.moto_server.werkzeug_app import MotoRequestHandler
from moto.server import ThreadedMotoServer

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


class _QuietHandler(MotoRequestHandler):
    """moto's request handler without a log line per request."""

    def log_request(self, *args: Any, **kwargs: Any) -> None:
        pass


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
        self._moto: ThreadedMotoServer | None = None
        self.layer: EmulatorLayer | None = None

    def start(self) -> EmulatorServer:
        """Start moto on 127.0.0.1 (free port), wrap its app, freeze ECS task progression."""
        patches.install()
        patches.set_spot_prices(self.prices.spot)
        self._moto = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
        self._moto.start()
        wsgi = self._moto._server  # werkzeug's server: swap in our app before any request
        assert wsgi is not None
        self.layer = EmulatorLayer(
            wsgi.app,
            quotas=self.quotas,
            prices=self.prices,
            faults=self.faults,
            account_id=self.account_id,
        )
        wsgi.app = self.layer
        wsgi.RequestHandlerClass = _QuietHandler
        host, port = self._moto.get_host_and_port()
        self.url = f"http://{host}:{port}"
        self.reset()
        return self

    def stop(self) -> None:
        """Stop the server and take the in-process patches out."""
        if self._moto is not None:
            self._moto.stop()
            self._moto = None
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
