"""Report generation: one Markdown report per store, written into a folder you choose.

Each item is a store: the worker generates (in practice, queries) its year of daily sales and
renders a report, a monthly table and the year's total, as text. The worker returns the text
and the client writes the files, so the reports land on this machine whichever backend ran
them (a cloud worker's disk goes away with it). ``errors="return"`` keeps one bad store from
losing the others' reports.

Run: .venv/bin/python examples/reports.py [--out reports] [--backend fargate] [--size 500]
"""

from pathlib import Path

import numpy as np
from _common import cluster_options, make_parser, print_summary, run

import starburst

MONTHS = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"]
DAYS_IN_MONTH = [31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31]


def render_report(store: int) -> tuple[str, str]:
    """A store's report: its file name and Markdown text."""
    rng = np.random.default_rng(store)
    daily = rng.gamma(4.0, 250.0 + store % 40 * 10, sum(DAYS_IN_MONTH))
    monthly = np.add.reduceat(daily, np.cumsum([0, *DAYS_IN_MONTH[:-1]]))
    lines = [f"# Store {store:04d}: sales report", "", "| month | sales |", "|---|---:|"]
    lines += [f"| {m} | {v:,.2f} |" for m, v in zip(MONTHS, monthly, strict=True)]
    lines += ["", f"Total: {daily.sum():,.2f}", f"Best month: {MONTHS[int(monthly.argmax())]}"]
    return f"store-{store:04d}.md", "\n".join(lines) + "\n"


def main() -> None:
    parser = make_parser(__doc__, size=60, size_help="stores (one report each)")
    parser.add_argument("--out", type=Path, default=Path("reports"), help="folder (./reports)")
    args = parser.parse_args()
    reports = starburst.map(
        render_report, range(args.size), errors="return", **cluster_options(args)
    )
    args.out.mkdir(parents=True, exist_ok=True)
    failed = [(store, r) for store, r in enumerate(reports) if isinstance(r, Exception)]
    for report in reports:
        if not isinstance(report, Exception):
            name, text = report
            (args.out / name).write_text(text)
    for store, error in failed:
        print(f"store {store}: no report ({error})")
    print(f"wrote {len(reports) - len(failed)} reports to {args.out.resolve()}")
    print_summary(stores=args.size, written=len(reports) - len(failed), out=args.out.resolve())


if __name__ == "__main__":
    run(main)
