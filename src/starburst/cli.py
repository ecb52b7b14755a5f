"""The ``starburst`` command."""

from __future__ import annotations

import click

from ._version import __version__


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="starburst")
def main() -> None:
    """Burst a slow Python loop onto many workers: local processes now, AWS next.

    In Python: results = starburst.map(fn, items, workers=8)
    """


@main.command()
@click.option("--paths", default=10_000, show_default=True, help="Monte Carlo paths to simulate.")
@click.option("--workers", type=int, default=None, help="Workers (default: one per CPU).")
def demo(paths: int, workers: int | None) -> None:
    """Simulate PATHS portfolio paths on the local backend and print a summary."""
    from .demo import run_demo

    summary = run_demo(paths, workers=workers)
    click.echo(
        f"Simulated {summary['paths']:,} portfolio paths in {summary['seconds']:.2f} s "
        "on the local backend.\n"
        f"  final value: mean {summary['mean_final_value']:.3f}, "
        f"5th-95th percentile {summary['p5_final_value']:.3f} - {summary['p95_final_value']:.3f}\n"
        f"  mean Sharpe ratio: {summary['mean_sharpe']:.3f}"
    )
