"""Where the sandbox is, for every starburst process: the environment that points boto3
and starburst at an emulator, and the background sandbox's state (``starburst sandbox
start``). Light on purpose (the standard library only): the command line asks it on every
command, and a plain install has no moto.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

#: What the start, every command and every run header say while the sandbox is in use.
BANNER = (
    "sandbox: an emulated AWS account on this machine (nothing leaves it; start-up times, "
    "prices and IAM are not real)"
)
#: The image tasks "run": the sandbox's workers run this machine's Python instead.
STAND_IN_IMAGE = "public.ecr.aws/docker/library/python:3.11-slim"
#: How long ``start_sandbox`` waits for the background sandbox to answer.
START_SECONDS = 60.0

_AMBIENT = (
    "AWS_SESSION_TOKEN",
    "AWS_SECURITY_TOKEN",
    "AWS_PROFILE",
    "AWS_DEFAULT_PROFILE",
    "AWS_ROLE_ARN",
    "AWS_WEB_IDENTITY_TOKEN_FILE",
    "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
    "AWS_CONTAINER_CREDENTIALS_FULL_URI",
)


def ambient_aws_variables(environ: Mapping[str, str]) -> list[str]:
    """The names in ``environ`` to remove before pointing clients at the emulator."""
    return [n for n in environ if n.startswith("AWS_ENDPOINT_URL_") or n in _AMBIENT]


def sandbox_environment(url: str, config_dir: Path, workdir: Path) -> dict[str, str | None]:
    """The variables that point boto3 and starburst at the emulator at ``url`` (``None``:
    remove it): test credentials, no ambient AWS configuration, a config folder of its own."""
    environment: dict[str, str | None] = dict.fromkeys(ambient_aws_variables(os.environ))
    environment.update(
        AWS_ENDPOINT_URL=url,
        AWS_ACCESS_KEY_ID="testing",
        AWS_SECRET_ACCESS_KEY="testing",
        AWS_DEFAULT_REGION="us-east-1",
        AWS_REGION="us-east-1",
        AWS_CONFIG_FILE=str(workdir / "aws-config-absent"),
        AWS_SHARED_CREDENTIALS_FILE=str(workdir / "aws-credentials-absent"),
        AWS_EC2_METADATA_DISABLED="true",
        MOTO_IAM_LOAD_MANAGED_POLICIES="true",  # (read when moto makes its IAM backends)
        STARBURST_CONFIG_DIR=str(config_dir),
        STARBURST_IMAGE=STAND_IN_IMAGE,
        STARBURST_SANDBOX=BANNER,
    )
    return environment


def apply_environment(changes: Mapping[str, str | None]) -> None:
    """Set (or, for ``None``, remove) each variable of ``changes`` in ``os.environ``."""
    for name, value in changes.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value


# The background sandbox -----------------------------------------------------------------


def sandbox_folder() -> Path:
    """The background sandbox's folder (its state, config, log and fault requests):
    ``sandbox/`` in ``STARBURST_CACHE_DIR``, else in the user's cache folder. Never in the
    config folder, which the sandbox's own environment changes."""
    chosen = os.environ.get("STARBURST_CACHE_DIR")
    if chosen:
        return Path(chosen) / "sandbox"
    import platformdirs

    return Path(platformdirs.user_cache_dir("starburst", appauthor=False)) / "sandbox"


def state_file() -> Path:
    """Where the background sandbox says where it is (its URL and process)."""
    return sandbox_folder() / "state.json"


def running_sandbox() -> dict[str, Any] | None:
    """The background sandbox's state, or ``None`` when none is running."""
    try:
        state: dict[str, Any] = json.loads(state_file().read_text())
        os.kill(int(state["pid"]), 0)
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return state


def use_running_sandbox() -> str | None:
    """Point this process at the background sandbox, if one runs; return its banner.

    A process already pointed at another AWS endpoint (``AWS_ENDPOINT_URL``: a test's own
    emulator and the workers it runs, a LocalStack) keeps it: the sandbox stands in for AWS,
    never for an endpoint chosen on purpose.
    """
    state = running_sandbox()
    if state is None:
        return None
    if os.environ.get("AWS_ENDPOINT_URL", state["url"]) != state["url"]:
        return None
    apply_environment(state["environment"])
    return BANNER


def start_sandbox(images: bool = False) -> str:
    """Start the background sandbox (unless one runs) and wait until it answers; with
    ``images``, environment sync runs too (``sandbox.sandbox``)."""
    state = running_sandbox()
    if state is not None:
        return f"a sandbox is already running at {state['url']}"
    folder = sandbox_folder()
    folder.mkdir(parents=True, exist_ok=True)
    state_file().unlink(missing_ok=True)
    with open(folder / "sandbox.log", "ab") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "starburst.emulator.sandbox", str(folder)]
            + (["--images"] if images else []),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=log,
            start_new_session=True,  # (it outlives this command)
        )
    deadline = time.monotonic() + START_SECONDS
    while (state := running_sandbox()) is None:
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            raise RuntimeError(
                f"the sandbox did not start; its log is {folder / 'sandbox.log'} (it needs "
                'pip install "starburst[sandbox]")'
            )
        time.sleep(0.2)
    return (
        f"{BANNER}.\nRunning at {state['url']} until `starburst sandbox stop`; every starburst "
        "command uses it meanwhile: try `starburst setup` and `starburst demo --backend "
        "fargate`."
    )


def stop_sandbox() -> str:
    """Stop the background sandbox (and the workers it runs)."""
    state = running_sandbox()
    if state is None:
        return "no sandbox is running"
    os.kill(int(state["pid"]), signal.SIGTERM)
    deadline = time.monotonic() + START_SECONDS
    while running_sandbox() is not None and time.monotonic() < deadline:
        time.sleep(0.2)
    return "the sandbox stopped"


def request_fault(kind: str, workers: int) -> None:
    """Ask the background sandbox to inflict ``kind`` (``spot-interrupt``) on ``workers``
    running workers (and on the next ones to start, if fewer run)."""
    state = running_sandbox()
    if state is None:
        raise RuntimeError("no sandbox is running: start one with `starburst sandbox start`")
    requests = sandbox_folder() / "faults"
    requests.mkdir(parents=True, exist_ok=True)
    name = f"{time.time_ns()}.json"
    (requests / f".{name}").write_text(json.dumps({"kind": kind, "workers": workers}))
    (requests / f".{name}").rename(requests / name)  # (whole, or not there)
