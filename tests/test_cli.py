"""The command line: help, version, and the demo (a real map on the local backend)."""

from __future__ import annotations

import subprocess
import sys

import starburst


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return _run_with({}, *args)


def test_help_lists_the_commands() -> None:
    result = _run("--help")
    assert result.returncode == 0
    assert "demo" in result.stdout and "starburst.map" in result.stdout


def test_version_is_the_package_version() -> None:
    result = _run("--version")
    assert result.returncode == 0
    assert starburst.__version__ in result.stdout


def test_demo_runs_a_monte_carlo_map_and_summarises_it() -> None:
    result = _run("demo", "--paths", "2000", "--workers", "2")
    assert result.returncode == 0, result.stderr
    assert "Simulated 2,000 portfolio paths" in result.stdout
    assert "mean Sharpe ratio" in result.stdout


def _run_with(env: dict[str, str | None], *args: str) -> subprocess.CompletedProcess[str]:
    """The command with ``env`` set in the environment (``None``: removed); the config folder
    is the test's."""
    import os

    changed = {**os.environ, **env}
    return subprocess.run(
        [sys.executable, "-m", "starburst", *args],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        env={name: value for name, value in changed.items() if value is not None},
    )


def _no_traceback(result: subprocess.CompletedProcess[str]) -> str:
    """The command's error, after checking that it failed with a sentence, not a traceback."""
    assert result.returncode != 0
    assert "Traceback" not in result.stderr, result.stderr
    assert result.stderr.startswith("Error: "), result.stderr
    return result.stderr


def test_the_demo_needs_nothing_beyond_a_plain_install(tmp_path) -> None:
    # A plain `pip install starburst` has no NumPy: hide it from the client and the workers.
    hidden = tmp_path / "hidden" / "numpy"
    hidden.mkdir(parents=True)
    (hidden / "__init__.py").write_text("raise ModuleNotFoundError(\"No module named 'numpy'\")\n")
    result = _run_with(
        {"PYTHONPATH": str(hidden.parent)}, "demo", "--paths", "500", "--workers", "2"
    )
    assert result.returncode == 0, result.stderr
    assert "Simulated 500 portfolio paths" in result.stdout
    assert "on the local backend" in result.stdout


def test_the_demo_runs_on_the_configured_backend_and_says_so(private_config) -> None:
    set_it = _run("config", "set", "backend", "fargate")
    assert set_it.returncode == 0, set_it.stderr
    aws = {
        "AWS_REGION": "us-east-1",
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_ENDPOINT_URL": "http://127.0.0.1:9",
    }
    error = _no_traceback(_run_with(aws, "demo", "--paths", "10"))
    assert "`starburst setup`" in error
    local = _run_with(aws, "demo", "--paths", "200", "--workers", "1", "--backend", "local")
    assert local.returncode == 0, local.stderr
    assert "on the local backend" in local.stdout


def test_an_unknown_backend_is_refused_naming_where_it_came_from(private_config) -> None:
    error = _no_traceback(_run_with({"STARBURST_BACKEND": "fargte"}, "demo", "--paths", "10"))
    assert "STARBURST_BACKEND='fargte'" in error and "fargate" in error
    (private_config / "config.toml").write_text('backend = "fargte"\n')
    error = _no_traceback(_run("demo", "--paths", "10"))
    assert "'fargte'" in error and str(private_config / "config.toml") in error
    error = _no_traceback(_run("config", "set", "backend", "fargte"))
    assert "'fargte'" in error and "fargate" in error
    error = _no_traceback(_run("config", "set", "max_cost", "nan"))
    assert "max_cost" in error and "'nan'" in error


def test_aws_commands_end_in_a_sentence_without_credentials_or_network(tmp_path) -> None:
    nowhere = str(tmp_path / "none")
    no_credentials: dict[str, str | None] = {
        "AWS_REGION": "us-east-1",
        "AWS_SHARED_CREDENTIALS_FILE": nowhere,
        "AWS_CONFIG_FILE": nowhere,
        "AWS_ACCESS_KEY_ID": None,
        "AWS_SECRET_ACCESS_KEY": None,
        "AWS_SESSION_TOKEN": None,
        "AWS_PROFILE": None,
        "AWS_EC2_METADATA_DISABLED": "true",
        "AWS_CONTAINER_CREDENTIALS_FULL_URI": None,
        "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI": None,
    }
    for command in (["quota"], ["status"]):
        error = _no_traceback(_run_with(no_credentials, *command))
        assert "no AWS credentials were found" in error
    unreachable: dict[str, str | None] = {
        "AWS_REGION": "us-east-1",
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_ENDPOINT_URL": "http://127.0.0.1:9",  # nothing listens on the discard port
        "AWS_MAX_ATTEMPTS": "1",
    }
    for command in (["quota"], ["status"]):
        error = _no_traceback(_run_with(unreachable, *command))
        assert "could not reach AWS" in error and "Check your network" in error
    error = _no_traceback(_run_with(unreachable, "sessions", "status", "sb-20260101-000000-abcdef"))
    assert "no session sb-20260101-000000-abcdef in this machine's sessions" in error


def test_cleaning_up_expired_sessions_when_none_are_is_not_an_error() -> None:
    result = _run("sessions", "cleanup", "--expired")
    assert result.returncode == 0, result.stderr
    assert "nothing to clean up" in result.stdout
    assert _run("sessions", "cleanup").returncode == 2  # neither an id nor --expired


def test_the_command_lists_show_whole_sentences() -> None:
    listing = _run("config", "--help").stdout
    assert "Set KEY to VALUE (e.g. `starburst config set max_cost 10`)." in listing
    top = " ".join(_run("--help").stdout.split())
    assert "Show the vCPU quotas (Fargate's, and EC2's after setup --ec2), what is in use." in top
    assert "AWS next" not in top
