#!/usr/bin/env python
"""Several saved runs of ``run.py`` side by side: how often each target was met, and how
every tool fares by the same yardstick.

    for i in 1 2 3; do .venv/bin/python bench/run.py --json /tmp/run$i.json; done
    .venv/bin/python bench/across_runs.py /tmp/run*.json

One run's ratio is one draw of the machine's noise. For each workload this prints
starburst's ratio to the best peer in every run (and their median), and, for every tool, its
median over the fastest other tool's, run by run: what starburst's target would say of that
tool. When the tools are level (W2: all of them bound by the same CPUs), every tool's
column straddles 1.0x, and the medians show which tools are level. Not a test: pytest does
not collect it.
"""

from __future__ import annotations

import argparse
import json
import statistics
from typing import Any

from run import LABELS, Cell, against_the_rest


def load(path: str) -> dict[str, Any]:
    with open(path) as handle:
        return dict(json.load(handle))


def yardstick(workload: dict[str, Any], tools: list[str]) -> dict[str, float]:
    """Each tool's median over the fastest other tool's, from a saved workload's times."""
    row = {tool: Cell(times=list(workload["times"].get(tool) or [])) for tool in tools}
    return against_the_rest(row, [t for t in tools if row[t].times])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("files", nargs="+", help="JSON files saved by run.py --json")
    args = parser.parse_args(argv)
    runs = [load(path) for path in args.files]
    keys = sorted({key for run in runs for key in run["workloads"]})
    for key in keys:
        present = [run["workloads"][key] for run in runs if key in run["workloads"]]
        first = present[0]
        print(f"{key} {first['title']}: {len(present)} runs, target <= {first['target']:.1f}x")
        ratios = [w["ratio"] for w in present if w.get("ratio") is not None]
        if ratios:
            met = sum(ratio <= first["target"] for ratio in ratios)
            print(
                f"  starburst / best peer: {', '.join(f'{r:.2f}' for r in ratios)}; "
                f"median {statistics.median(ratios):.2f}x, target met in {met} of {len(ratios)}"
            )
        tools = list(first["times"])
        columns: dict[str, list[float]] = {tool: [] for tool in tools}
        for workload in present:
            for tool, ratio in yardstick(workload, tools).items():
                columns[tool].append(ratio)
        print("  each tool / fastest other tool, run by run (median):")
        width = max(len(LABELS.get(tool, tool)) for tool in tools)
        for tool, values in columns.items():
            if values:
                print(
                    f"    {LABELS.get(tool, tool):<{width}}  "
                    f"{' '.join(f'{v:5.2f}' for v in values)}  ({statistics.median(values):.2f}x)"
                )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
