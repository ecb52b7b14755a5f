"""The worked examples in examples/, each run as a user runs it (a Python process of its own,
on the local backend, at a small size), each summary checked against what it must show."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

import starburst
from starburst.emulator.emulator import Emulator

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def run_example(name: str, *args: object, cwd: Path) -> dict[str, str]:
    """Run ``examples/<name>.py`` with ``args`` (two workers); return its summary's values."""
    done = subprocess.run(
        [sys.executable, str(EXAMPLES / f"{name}.py"), "--workers", "2", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=cwd,
    )
    assert done.returncode == 0, done.stderr
    last = done.stdout.strip().splitlines()[-1]
    assert last.startswith("summary: "), done.stdout
    return dict(pair.split("=", 1) for pair in last.removeprefix("summary: ").split())


def number(summary: dict[str, str], key: str) -> float:
    return float(summary[key])


def test_monte_carlo_approaches_the_analytic_mean_and_loss_probability(tmp_path: Path) -> None:
    s = run_example("monte_carlo", "--size", 10, cwd=tmp_path)
    assert abs(number(s, "mean") - number(s, "analytic_mean")) < number(s, "tolerance") < 0.01
    loss_gap = abs(number(s, "loss_share") - number(s, "analytic_loss_share"))
    assert loss_gap < number(s, "loss_tolerance") < 0.02


def test_bulk_api_fetches_every_record_through_rate_limits_and_transient_failures(
    tmp_path: Path,
) -> None:
    s = run_example("bulk_api", "--size", 120, cwd=tmp_path)
    # Ids 50 and 100 do not exist (returned in place); 17 ids (multiples of 7) fail once.
    assert (s["records"], s["fetched"], s["missing"], s["wrong"]) == ("120", "118", "2", "0")
    assert s["retried_503"] == "17"


def test_an_example_runs_on_the_emulated_fargate_as_it_does_locally(
    aws: Emulator, tmp_path: Path
) -> None:
    starburst.setup(say=lambda _: None)
    s = run_example("bulk_api", "--size", 60, "--backend", "fargate", cwd=tmp_path)
    assert (s["records"], s["fetched"], s["missing"], s["wrong"]) == ("60", "59", "1", "0")
    assert s["retried_503"] == "8"


def test_geospatial_shares_approach_the_district_areas(tmp_path: Path) -> None:
    s = run_example("geospatial", "--size", 4, cwd=tmp_path)
    assert s["points"] == "200000"
    assert number(s, "worst_standard_errors") < 4


def test_grid_search_keeps_the_informative_features_and_nears_the_noise_floor(
    tmp_path: Path,
) -> None:
    s = run_example("grid_search", "--size", 800, cwd=tmp_path)
    assert number(s, "best_features") >= number(s, "informative_features")
    assert abs(number(s, "best_error") - number(s, "noise_variance")) < number(s, "tolerance")
    assert number(s, "error_missing_one") > number(s, "noise_variance") + 0.3


def test_portfolio_risk_approaches_the_exact_var_and_cvar(tmp_path: Path) -> None:
    s = run_example("portfolio_risk", "--size", 10, cwd=tmp_path)
    tolerance = number(s, "tolerance")
    assert tolerance < 0.02 * number(s, "exact_var")
    assert abs(number(s, "var") - number(s, "exact_var")) < tolerance
    assert abs(number(s, "cvar") - number(s, "exact_cvar")) < tolerance


def test_feature_engineering_recovers_the_generating_parameters(tmp_path: Path) -> None:
    s = run_example("feature_engineering", "--size", 600, cwd=tmp_path)
    assert (s["rows"], s["features"], s["in_order"]) == ("600", "5", "True")
    assert number(s, "mean_amount_correlation") > 0.9
    assert abs(number(s, "weekend_share") - 2 / 7) < 0.02


def test_ab_bootstrap_interval_agrees_with_the_wald_interval(tmp_path: Path) -> None:
    s = run_example("ab_bootstrap", "--size", 12, cwd=tmp_path)
    assert s["resamples"] == "3000"
    tolerance = 2 * number(s, "tolerance")  # fewer resamples than the default: wider
    assert abs(number(s, "low") - number(s, "wald_low")) < tolerance
    assert abs(number(s, "high") - number(s, "wald_high")) < tolerance
    assert number(s, "low") > 0  # the 2-point lift is detected


@pytest.mark.parametrize("out", [None, "nested/out"])
def test_reports_writes_one_file_per_store_where_it_says(tmp_path: Path, out: str | None) -> None:
    s = run_example("reports", "--size", 7, *(["--out", out] if out else []), cwd=tmp_path)
    folder = tmp_path / (out or "reports")
    assert (s["stores"], s["written"], s["out"]) == ("7", "7", str(folder.resolve()))
    files = sorted(folder.iterdir())
    assert [f.name for f in files] == [f"store-{i:04d}.md" for i in range(7)]
    assert all(f.read_text().startswith(f"# Store {i:04d}") for i, f in enumerate(files))
