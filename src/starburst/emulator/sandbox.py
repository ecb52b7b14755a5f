"""The sandbox: an emulated AWS account on this machine, for trying the cloud path offline.

``starburst.sandbox()`` runs it in this process for a ``with`` block; ``starburst sandbox
start`` runs it in the background (``python -m starburst.emulator.sandbox``) until
``starburst sandbox stop``, and every ``starburst`` command run meanwhile uses it. The test
suite's ``aws`` fixture is built from the same parts (``fixtures.py``).

Its workers are processes on this machine running this Python, and nothing leaves it. What
it does not model: real start-up times (a worker starts in a second), real prices (the
built-in tables), IAM (not enforced), and image builds (workers run this environment
directly; ``STARBURST_IMAGE`` names a stand-in image).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sys
import tempfile
import threading
from collections.abc import Iterator, Mapping
from pathlib import Path

try:
    import moto  # noqa: F401
except ImportError:  # pragma: no cover - a plain install
    raise ImportError(
        'the sandbox needs moto\'s server: pip install "starburst[sandbox]"'
    ) from None

from starburst.backends.ec2.warmth import stop_left_behind
from starburst.emulator.active import BANNER, apply_environment, sandbox_environment, state_file
from starburst.emulator.capacity import Ec2Capacity
from starburst.emulator.emulator import Emulator
from starburst.emulator.runner import TaskRunner
from starburst.emulator.server import EmulatorServer


@contextlib.contextmanager
def tasks_running(server: EmulatorServer, config_dir: Path) -> Iterator[tuple[Emulator, list[str]]]:
    """Run ``server``'s ECS tasks and EC2 instances while the block lasts; yield the
    ``Emulator`` and the list its internal errors are added to (complete once it ends)."""
    errors: list[str] = []
    runner = TaskRunner(server.url, account_id=server.account_id, on_error=errors.append)
    capacity = Ec2Capacity.for_server(server, runner, errors.append)
    server.attach(runner.start(), capacity.start())
    try:
        yield Emulator(server, runner, capacity, config_dir), errors
    finally:
        capacity.shutdown()
        runner.shutdown()
        server.attach(None)
        errors += server.take_internal_errors()


@contextlib.contextmanager
def _environment(changes: Mapping[str, str | None]) -> Iterator[None]:
    """Apply ``changes`` to ``os.environ`` for the block, then put back what was there."""
    saved = {name: os.environ.get(name) for name in changes}
    apply_environment(changes)
    try:
        yield
    finally:
        apply_environment(saved)


@contextlib.contextmanager
def sandbox(folder: str | Path | None = None, *, images: bool = False) -> Iterator[Emulator]:
    """An emulated AWS account for the ``with`` block, in this process::

        with starburst.sandbox() as aws:
            starburst.setup()
            assert starburst.map(f, xs, backend="fargate") == [f(x) for x in xs]
            aws.faults.spot_interruption(count=2)   # what Spot does to a run

    Everything starburst and boto3 do in the block goes to the emulator; the environment
    is put back after it. ``folder`` keeps its config (a temporary folder by default).
    With ``images=True``, a local OCI registry (Debian's ``docker-registry``) stands in for
    ECR, so environment sync runs too: your environment is built into an image, pushed, and
    each worker runs from what it unpacks of it (without it, workers run this Python).
    """
    with contextlib.ExitStack() as stack:
        if folder is None:
            folder = stack.enter_context(tempfile.TemporaryDirectory(prefix="starburst-sandbox-"))
        workdir = Path(folder)
        config_dir = workdir / "config"
        config_dir.mkdir(parents=True, exist_ok=True)
        server = EmulatorServer()
        stack.enter_context(_environment({"MOTO_IAM_LOAD_MANAGED_POLICIES": "true"}))
        server.start()
        stack.callback(server.stop)
        stack.enter_context(_environment(sandbox_environment(server.url, config_dir, workdir)))
        emulator, errors = stack.enter_context(tasks_running(server, config_dir))
        stack.callback(stop_left_behind, config_dir)  # (keep_warm's: this account goes)
        if images:
            stack.enter_context(_environment(_image_registry(stack, workdir, emulator)))
        print(f"starburst: {BANNER}", file=sys.stderr)
        yield emulator
    if errors:
        raise RuntimeError("the sandbox's emulator failed:\n" + "\n".join(errors))


def _image_registry(
    stack: contextlib.ExitStack, workdir: Path, emulator: Emulator
) -> dict[str, str | None]:
    """Start a local registry for the sandbox's ECR (stopped with ``stack``), holding a
    tiny base image; return the variables that send environment sync to it."""
    from starburst.emulator.images import ImageReader
    from starburst.emulator.registry import (
        ECR_PASSWORD,
        ECR_USER,
        RegistryServer,
        registry_available,
    )

    if not registry_available():
        raise RuntimeError(
            "images=True needs an OCI registry server: install Debian's docker-registry "
            "(`apt install docker-registry`), or leave images out (workers then run this Python)"
        )
    registry = RegistryServer(workdir / "registry").start()
    stack.callback(registry.stop)
    registry.push_tiny_base("library/python", "3.11-slim")
    emulator.runner.registries[registry.host] = ImageReader(
        registry.url, auth=(ECR_USER, ECR_PASSWORD)
    )
    return {
        "STARBURST_REGISTRY_URL": registry.url,
        "STARBURST_BASE_IMAGE": f"{registry.host}/library/python:3.11-slim",
        "STARBURST_IMAGE": None,
    }


# The background sandbox (`starburst sandbox start`) -----------------------------------------


def serve(folder: Path, images: bool) -> None:
    """Run the sandbox until SIGTERM, saying in ``state_file()`` where it is and the
    environment that points a process at it; carry out the fault requests
    ``request_fault`` drops in ``folder / "faults"``."""
    before, path = dict(os.environ), state_file()
    with sandbox(folder, images=images) as aws:
        stop = threading.Event()
        signal.signal(signal.SIGTERM, lambda *_: stop.set())
        changed = {k: v for k, v in os.environ.items() if before.get(k) != v}
        environment = {**dict.fromkeys(set(before) - set(os.environ)), **changed}
        state = {"url": aws.endpoint_url, "pid": os.getpid(), "environment": environment}
        path.write_text(json.dumps(state))
        try:
            while not stop.wait(0.2):
                _take_fault_requests(aws, folder / "faults")
        finally:
            path.unlink(missing_ok=True)


def _take_fault_requests(aws: Emulator, requests: Path) -> None:
    if not requests.is_dir():
        return
    for path in sorted(requests.glob("[0-9]*.json")):
        request = json.loads(path.read_text())
        path.unlink()
        if request["kind"] == "spot-interrupt":
            running = [
                arn
                for arn in aws.runner.task_arns
                if (process := aws.runner.process(arn)) is not None and process.poll() is None
            ][: request["workers"]]
            for arn in running:
                aws.faults.spot_interruption(task_arn=arn, after=0.0)
            if len(running) < request["workers"]:
                aws.faults.spot_interruption(count=request["workers"] - len(running), after=1.0)


if __name__ == "__main__":
    serve(Path(sys.argv[1]), images="--images" in sys.argv[2:])
