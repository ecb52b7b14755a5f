"""The sandbox as a new user meets it: a script with ``starburst.sandbox()``, and the
command line's ``starburst sandbox start`` / ``setup`` / ``demo`` / ``fault`` / ``stop``.
Each runs in fresh processes, with no AWS configuration of any kind in their environment."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from starburst.emulator.active import BANNER, ambient_aws_variables

STARBURST = [sys.executable, "-m", "starburst"]


@pytest.fixture
def clean_env(tmp_path: Path) -> dict[str, str]:
    """A user's environment: no AWS variables, starburst's folders of its own."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "STARBURST_"))}
    for name in ambient_aws_variables(os.environ):
        env.pop(name, None)
    env["XDG_CACHE_HOME"] = str(tmp_path / "cache")  # (where the background sandbox lives)
    env["XDG_CONFIG_HOME"] = str(tmp_path / "config")
    env["AWS_CONFIG_FILE"] = str(tmp_path / "no-aws-config")
    env["AWS_SHARED_CREDENTIALS_FILE"] = str(tmp_path / "no-aws-credentials")
    return env


def _run(
    args: list[str], env: dict[str, str], timeout: float = 240
) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(args, env=env, capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, f"{args}:\n{done.stdout}\n{done.stderr}"
    return done


def test_a_script_bursts_to_fargate_in_the_sandbox_and_leaves_the_environment_as_it_was(
    tmp_path: Path, clean_env: dict[str, str]
) -> None:
    script = tmp_path / "burst.py"
    script.write_text(
        textwrap.dedent("""
        import os
        import starburst

        def square(x):
            return x * x

        with starburst.sandbox() as aws:
            starburst.setup(say=lambda *a, **k: None)
            results = starburst.map(square, range(30), workers=2, backend="fargate", progress=True)
            print("results ok:", results == [x * x for x in range(30)])
            print("RunTask calls:", aws.calls["RunTask"])
        print("endpoint after:", os.environ.get("AWS_ENDPOINT_URL"))
    """)
    )
    done = _run([sys.executable, str(script)], clean_env)
    assert "results ok: True" in done.stdout
    assert "RunTask calls: 1" in done.stdout
    assert "endpoint after: None" in done.stdout
    assert f"starburst: {BANNER}" in done.stderr  # on start...
    assert done.stderr.count("sandbox: an emulated AWS account") >= 2  # ...and in the header


def test_the_command_line_sandbox_runs_setup_demo_and_a_spot_interruption(
    tmp_path: Path, clean_env: dict[str, str]
) -> None:
    started = _run([*STARBURST, "sandbox", "start"], clean_env)
    try:
        assert "Running at http://127.0.0.1:" in started.stdout
        assert "running at http://" in _run([*STARBURST, "sandbox", "status"], clean_env).stdout
        setup = _run([*STARBURST, "setup"], clean_env)
        assert BANNER in setup.stderr
        demo = _run([*STARBURST, "demo", "--backend", "fargate", "--paths", "2000"], clean_env)
        assert "fargate" in demo.stdout + demo.stderr

        # A user's script uses the running sandbox too; Spot takes one of its workers away.
        script = tmp_path / "slow.py"
        script.write_text(
            textwrap.dedent("""
            import sys, time
            import starburst

            def slow(x):
                time.sleep(0.2)
                return x + 1

            with starburst.Cluster(workers=2, backend="fargate", spot=True, progress=False) as c:
                c.start()
                print("started", flush=True)
                results = c.map(slow, range(60), chunk_size=5, retries=0)
                workers = len(c.driver.workers)
            print("results ok:", results == [x + 1 for x in range(60)])
            print("workers:", workers)
        """)
        )
        user = subprocess.Popen(
            [sys.executable, str(script)], env=clean_env, stdout=subprocess.PIPE, text=True
        )
        assert user.stdout is not None
        assert user.stdout.readline().strip() == "started"
        _run([*STARBURST, "sandbox", "fault", "spot-interrupt", "--workers", "1"], clean_env)
        out, _ = user.communicate(timeout=180)
        assert user.returncode == 0
        assert "results ok: True" in out
        workers = int(out.split("workers:")[1].split()[0])
        assert workers >= 3  # the interrupted worker was replaced
    finally:
        _run([*STARBURST, "sandbox", "stop"], clean_env)
    assert "not running" in _run([*STARBURST, "sandbox", "status"], clean_env).stdout


def test_the_sandbox_tour_example_runs_fargate_spot_and_warm_ec2(clean_env: dict[str, str]) -> None:
    example = Path(__file__).parents[1] / "examples" / "sandbox_tour.py"
    lines = _run([sys.executable, str(example)], clean_env).stdout.splitlines()
    assert len(lines) == 4, lines
    average = float(lines[0].split("average ")[1].split()[0])
    assert abs(average - 0.5) < 0.01
    assert lines[1].endswith("all 100 results right: True")
    assert lines[2].startswith("ec2: 2 instances kept warm")  # 4 workers, 2 per c7i.large
    assert lines[3].endswith("ran on the same instances: True")


def test_a_process_pointed_at_another_endpoint_keeps_it_while_a_sandbox_runs(
    tmp_path: Path, clean_env: dict[str, str]
) -> None:
    """A running sandbox moves every starburst process to itself, except one whose
    environment names another AWS endpoint (a test suite's emulator and its workers)."""
    state = tmp_path / "cache" / "starburst" / "sandbox" / "state.json"
    state.parent.mkdir(parents=True)
    sandbox_url = "http://127.0.0.1:1"
    holder = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:  # (a live process stands for the sandbox's)
        state.write_text(json.dumps({
            "url": sandbox_url, "pid": holder.pid,
            "environment": {"AWS_ENDPOINT_URL": sandbox_url, "STARBURST_SANDBOX": BANNER},
        }))  # fmt: skip
        show = "import os, starburst; print(os.environ.get('AWS_ENDPOINT_URL'))"
        user = _run([sys.executable, "-c", show], clean_env)
        assert user.stdout.strip() == sandbox_url
        elsewhere = {**clean_env, "AWS_ENDPOINT_URL": "http://127.0.0.1:2"}
        pointed = _run([sys.executable, "-c", show], elsewhere)
        assert pointed.stdout.strip() == "http://127.0.0.1:2"
    finally:
        holder.kill()
        holder.wait()
