#!/usr/bin/env python
"""Benchmark starburst's local backend against the standard process pools.

    .venv/bin/python bench/run.py                 # full run (a few minutes on 2 cores)
    .venv/bin/python bench/run.py --quick         # smoke run: small inputs, 1 repeat
    .venv/bin/python bench/run.py --repeats 7 --json results.json
    .venv/bin/python bench/run.py --only W1,W4 --phases   # + starburst phase breakdown

Every tool runs the same function object on the same input list with 2 workers; each
measurement covers the whole call, pool start-up and shut-down included (as
``starburst.map`` starts and stops its workers). See bench/README.md for the details.
This is not a test: pytest does not collect it.
"""

from __future__ import annotations

import os
import sys

# Before numpy is imported anywhere (here, or in workers that inherit the environment).
for _var in (
    "OPENBLAS_NUM_THREADS",
    "OMP_NUM_THREADS",
    "MKL_NUM_THREADS",
    "NUMEXPR_NUM_THREADS",
    "VECLIB_MAXIMUM_THREADS",
):
    os.environ[_var] = "1"

BENCH_DIR = os.path.dirname(os.path.abspath(__file__))
if BENCH_DIR not in sys.path:
    sys.path.insert(0, BENCH_DIR)  # workers import ``workloads`` from here

import argparse  # noqa: E402
import cProfile  # noqa: E402
import gc  # noqa: E402
import hashlib  # noqa: E402
import io  # noqa: E402
import json  # noqa: E402
import math  # noqa: E402
import multiprocessing  # noqa: E402
import platform  # noqa: E402
import pstats  # noqa: E402
import random  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable, Sequence  # noqa: E402
from concurrent.futures import ProcessPoolExecutor  # noqa: E402
from dataclasses import dataclass, field  # noqa: E402
from typing import Any  # noqa: E402

import joblib  # noqa: E402
import numpy as np  # noqa: E402
import workloads as wl  # noqa: E402
from joblib.externals.loky import reusable_executor as _loky_reusable  # noqa: E402

import starburst  # noqa: E402
from starburst.backends.local.fleet import scratch_dir  # noqa: E402
from starburst.engine.item_times import ITEM_TIMES  # noqa: E402

WORKERS = 2
STARBURST = "starburst"
PEERS = ("ppe", "ppe_tuned", "mp_pool", "joblib")
TOOLS = (STARBURST, *PEERS)
LABELS = {
    STARBURST: "starburst",
    "ppe": "PPE",
    "ppe_tuned": "PPE tuned",
    "mp_pool": "mp.Pool",
    "joblib": "joblib loky",
}
LATENCY_TARGET_S = 0.5


# Tools ------------------------------------------------------------------------------------------
# Each takes (fn, items) and returns the list of results in input order. Pool creation and
# shut-down happen inside, so they are timed.


#: With ``--first-runs``: forget the item times starburst learnt in earlier calls (pacing).
FORGET_ITEM_TIMES = False


def run_starburst(fn: Callable[[Any], Any], items: Sequence[Any]) -> list[Any]:
    if FORGET_ITEM_TIMES:
        ITEM_TIMES.clear()
    return starburst.map(fn, items, workers=WORKERS, progress=False)


def run_ppe(fn: Callable[[Any], Any], items: Sequence[Any]) -> list[Any]:
    with ProcessPoolExecutor(max_workers=WORKERS) as pool:
        return list(pool.map(fn, items))  # chunksize=1, the default


def tuned_chunksize(n: int) -> int:
    return max(1, math.ceil(n / (4 * WORKERS)))


def run_ppe_tuned(fn: Callable[[Any], Any], items: Sequence[Any]) -> list[Any]:
    with ProcessPoolExecutor(max_workers=WORKERS) as pool:
        return list(pool.map(fn, items, chunksize=tuned_chunksize(len(items))))


def run_mp_pool(fn: Callable[[Any], Any], items: Sequence[Any]) -> list[Any]:
    with multiprocessing.Pool(processes=WORKERS) as pool:
        return pool.map(fn, items)  # default chunksize: ceil(n / (4 * processes))


def shutdown_loky() -> None:
    """Stop joblib's reusable loky executor, so that the next call starts its workers anew."""
    executor = _loky_reusable._executor
    if executor is not None:
        executor.shutdown(wait=True)


def run_joblib(fn: Callable[[Any], Any], items: Sequence[Any]) -> list[Any]:
    delayed_fn = joblib.delayed(fn)
    out = joblib.Parallel(n_jobs=WORKERS, backend="loky")(delayed_fn(x) for x in items)
    # loky keeps its workers for the next call; shut them down like the other pools do on
    # leaving their ``with`` block (and starburst.map on returning).
    shutdown_loky()
    return out


RUNNERS: dict[str, Callable[[Callable[[Any], Any], Sequence[Any]], list[Any]]] = {
    STARBURST: run_starburst,
    "ppe": run_ppe,
    "ppe_tuned": run_ppe_tuned,
    "mp_pool": run_mp_pool,
    "joblib": run_joblib,
}


# Workloads --------------------------------------------------------------------------------------


@dataclass
class Workload:
    key: str
    title: str
    items: Sequence[Any]
    fns: dict[str, Callable[[Any], Any]]  # tool -> function object
    expected: list[Any]
    repeats: int
    target: float  # starburst / best peer must be <= this
    latency: bool = False  # also measure starburst's first-result latency
    note: str = ""

    def fn_for(self, tool: str) -> Callable[[Any], Any]:
        return self.fns.get(tool, self.fns["default"])


def build_workloads(
    quick: bool, repeats: int | None, spin_iters: int, only: set[str] | None
) -> list[Callable[[], Workload]]:
    """Builders of each workload's inputs and reference, called outside the timed region,
    one workload at a time (so that W4's 200 MB is not held during the other workloads)."""
    default = repeats if repeats is not None else (1 if quick else 5)
    # W3's calls take ~35 ms and vary by 10% from call to call: more repeats, a steadier median.
    short_repeats = repeats if repeats is not None else (1 if quick else 30)
    rng = np.random.default_rng(12345)

    def w1() -> Workload:
        n = 20_000 if quick else 100_000
        items = list(range(n))
        return Workload(
            "W1", f"{n:,} x*x", items, {"default": wl.square},
            [x * x for x in items], default, 1.5,
        )  # fmt: skip

    def w2() -> Workload:
        n = 200 if quick else 2_000
        # Vary the count a little per item so that the outputs differ and order is checked.
        items = [spin_iters + (i % 16) for i in range(n)]
        return Workload(
            "W2", f"{n:,} x ~5 ms CPU", items, {"default": wl.spin},
            [wl.spin_expected(k) for k in items], default, 1.0, latency=True,
        )  # fmt: skip

    def w3() -> Workload:
        n = 200 if quick else 1_000
        items = list(range(n))
        return Workload(
            "W3", f"{n:,} Monte Carlo paths", items, {"default": wl.portfolio},
            [wl.portfolio(s) for s in items], short_repeats, 1.0, latency=True,
        )  # fmt: skip

    def w4() -> Workload:
        n = 40 if quick else 200
        items = [rng.random(125_000) for _ in range(n)]  # 125,000 float64 = 1 MB each
        return Workload(
            "W4", f"{n:,} x 1 MB array in", items, {"default": wl.array_sum},
            [float(a.sum()) for a in items], default, 1.0,
        )  # fmt: skip

    def w5() -> Workload:
        big = rng.random(1_250_000)  # 10 MB
        n = 20 if quick else wl.W5_PARTS
        items = list(range(n))
        closure = wl.make_closure(big)
        callable_object = wl.SliceSum(big)
        return Workload(
            "W5", f"{n:,} items, fn closes over 10 MB", items,
            {"default": closure, "ppe": callable_object, "ppe_tuned": callable_object,
             "mp_pool": callable_object},
            [closure(i) for i in items], default, 1.0,
            note="PPE and mp.Pool get a SliceSum instance (same array, same work)",
        )  # fmt: skip

    builders = [("W1", w1), ("W2", w2), ("W3", w3), ("W4", w4), ("W5", w5)]
    return [build for key, build in builders if only is None or key in only]


# Checking ---------------------------------------------------------------------------------------


def same(value: Any, expected: Any) -> bool:
    if isinstance(expected, dict):
        return (
            isinstance(value, dict)
            and value.keys() == expected.keys()
            and all(same(value[k], expected[k]) for k in expected)
        )
    if isinstance(expected, float | np.floating):
        return bool(value == expected or math.isclose(value, expected, rel_tol=1e-9))
    return bool(value == expected)


def check(result: Any, expected: list[Any]) -> str | None:
    """``None`` if ``result`` is the expected list, in order; otherwise what is wrong."""
    if not isinstance(result, list):
        return f"returned a {type(result).__name__}, not a list"
    if len(result) != len(expected):
        return f"{len(result)} results for {len(expected)} items"
    if result == expected:
        return None
    for i, (value, want) in enumerate(zip(result, expected, strict=True)):
        if not same(value, want):
            return f"item {i}: got {value!r}, expected {want!r}"
    return None


# Measuring --------------------------------------------------------------------------------------


@dataclass
class Cell:
    times: list[float] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    @property
    def median(self) -> float | None:
        return statistics.median(self.times) if self.times and not self.errors else None


def measure(tool: str, workload: Workload) -> tuple[float, str | None]:
    fn = workload.fn_for(tool)
    gc.collect()
    t0 = time.perf_counter()
    try:
        result = RUNNERS[tool](fn, workload.items)
    except Exception as exc:  # report it in the table rather than stop the benchmark
        return time.perf_counter() - t0, f"{type(exc).__name__}: {exc}"
    elapsed = time.perf_counter() - t0
    problem = check(result, workload.expected)
    del result
    return elapsed, problem


def first_result_latency(workload: Workload) -> tuple[float, str | None]:
    """Seconds from calling ``starburst.imap`` to holding its first (correct) result."""
    fn = workload.fn_for(STARBURST)
    gc.collect()
    t0 = time.perf_counter()
    iterator = starburst.imap(fn, workload.items, workers=WORKERS, progress=False)
    try:
        first = next(iterator)
        elapsed = time.perf_counter() - t0
    finally:
        iterator.close()
    problem = None if same(first, workload.expected[0]) else f"first result {first!r} is wrong"
    return elapsed, problem


#: Round trips timed per executor by ``round_trips``.
ROUND_TRIPS = 200  # about 5 s per executor


def round_trips() -> dict[str, float]:
    """Median seconds of ``submit(fn, x).result()`` on an executor whose 2 workers are up and
    idle (a pause before each call lets them settle): starburst's and ProcessPoolExecutor's."""
    executors: dict[str, Callable[[], Any]] = {
        "starburst Executor": lambda: starburst.Executor(workers=WORKERS),
        "ProcessPoolExecutor": lambda: ProcessPoolExecutor(max_workers=WORKERS),
    }
    medians = {}
    for name, make in executors.items():
        with make() as executor:
            executor.submit(wl.square, 0).result()  # the workers are up
            times = []
            for x in range(ROUND_TRIPS):
                time.sleep(0.02)
                started = time.perf_counter()
                if executor.submit(wl.square, x).result() != x * x:
                    raise SystemExit(f"{name} returned a wrong result")
                times.append(time.perf_counter() - started)
        medians[name] = statistics.median(times)
    return medians


def starburst_phases(workload: Workload) -> dict[str, float]:
    """Time the steps of one ``starburst.map`` call, re-assembled from its public pieces.

    Mirrors ``starburst.api._one_off``; uses ``Cluster`` internals, so it may need updating
    when those change.
    """
    from starburst.cluster import Cluster
    from starburst.engine.driver import workers_for

    fn = workload.fn_for(STARBURST)
    gc.collect()
    marks = {"start": time.perf_counter()}
    cluster = Cluster(WORKERS, progress=False)
    plan = cluster.plan(fn, (workload.items,), "single")
    marks["plan (pickle fn, size chunks)"] = time.perf_counter()
    assert plan is not None
    cluster.start(workers_for(cluster.spec, plan.n_items), lazy=True)
    marks["open session"] = time.perf_counter()
    collector = cluster.collector(plan, False, keep_results=True)
    marks["submit run, launch workers"] = time.perf_counter()
    iterator = collector.ordered()
    results = [next(iterator)]
    marks["wait for first result"] = time.perf_counter()
    results.extend(iterator)
    marks["collect the rest"] = time.perf_counter()
    cluster.close()
    marks["close (stop workers, rm store)"] = time.perf_counter()
    problem = check(results, workload.expected)
    if problem:
        raise AssertionError(problem)
    names = list(marks)
    phases = {names[i]: marks[names[i]] - marks[names[i - 1]] for i in range(1, len(names))}
    phases["total"] = marks[names[-1]] - marks["start"]
    return phases


def profile_starburst(workload: Workload, lines: int) -> str:
    """cProfile of the client side of one ``starburst.map`` call."""
    fn = workload.fn_for(STARBURST)
    gc.collect()
    profiler = cProfile.Profile()
    profiler.enable()
    run_starburst(fn, workload.items)
    profiler.disable()
    out = io.StringIO()
    stats = pstats.Stats(profiler, stream=out).strip_dirs()
    stats.sort_stats("tottime").print_stats(lines)
    return out.getvalue()


def warm_up(tools: Sequence[str]) -> None:
    """One tiny untimed call per tool: bytecode caches, imports and file caches get warm."""
    items = list(range(8))
    expected = [wl.touch_numpy(x) for x in items]
    for tool in tools:
        result = RUNNERS[tool](wl.touch_numpy, items)
        if result != expected:
            raise SystemExit(f"warm-up with {tool} returned a wrong result: {result!r}")


# Reporting --------------------------------------------------------------------------------------


def fmt_s(value: float | None) -> str:
    return "ERROR" if value is None else f"{value:.3f}"


def render_table(
    workloads: list[Workload],
    cells: dict[str, dict[str, Cell]],
    latencies: dict[str, Cell],
    tools: Sequence[str],
) -> tuple[str, dict[str, Any]]:
    header = ["workload", *(LABELS[t] for t in tools), "best peer", "ratio", "target", ""]
    rows = []
    summary: dict[str, Any] = {}
    for w in workloads:
        row_cells = cells[w.key]
        peer_medians = {
            t: row_cells[t].median for t in tools if t != STARBURST and row_cells[t].median
        }
        best_peer = min(peer_medians, key=peer_medians.__getitem__) if peer_medians else None
        sb = row_cells[STARBURST].median if STARBURST in tools else None
        ratio = sb / peer_medians[best_peer] if sb and best_peer else None
        verdict = "" if ratio is None else ("ok" if ratio <= w.target else "MISS")
        rows.append(
            [
                f"{w.key} {w.title}",
                *(fmt_s(row_cells[t].median) for t in tools),
                LABELS[best_peer] if best_peer else "-",
                f"{ratio:.2f}x" if ratio is not None else "-",
                f"<= {w.target:.1f}x",
                verdict,
            ]
        )
        interval = (
            ratio_interval(row_cells[STARBURST].times, row_cells[best_peer].times)
            if ratio is not None and best_peer is not None
            else None
        )
        summary[w.key] = {
            "best_peer": best_peer,
            "ratio": ratio,
            "ratio_95": interval,
            "target": w.target,
            "meets_target": None if ratio is None else ratio <= w.target,
            "vs_fastest_other": against_the_rest(row_cells, tools),
        }
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]

    def line(values: list[str]) -> str:
        parts = [
            str(v).ljust(widths[i]) if i == 0 else str(v).rjust(widths[i])
            for i, v in enumerate(values)
        ]
        return "| " + " | ".join(parts) + " |"

    sep = (
        "|"
        + "|".join(("-" * (w + 1) + ":") if i else ("-" * (w + 2)) for i, w in enumerate(widths))
        + "|"
    )
    text = [line(header), sep, *(line(r) for r in rows)]
    text.append("")
    text.append(f"Median wall time in seconds over the repeats ({WORKERS} workers each),")
    text.append("pool start-up and shut-down included. ratio = starburst / best peer.")
    spreads: dict[str, list[str]] = {}
    for w in workloads:
        best = summary[w.key]["best_peer"]
        shown = [t for t in (STARBURST, best) if t is not None and t in tools]
        parts = spreads[w.key] = []
        for t in shown:
            times = cells[w.key][t].times
            if times:
                parts.append(f"{LABELS[t]} {min(times):.3f}-{max(times):.3f}")
        interval = summary[w.key]["ratio_95"]
        if interval is not None:
            parts.append(f"ratio 95% interval {interval[0]:.2f}x-{interval[1]:.2f}x")
    text += per_workload(
        "Spread (min-max over the repeats) of starburst and the best peer, and where the ratio\n"
        "could have landed (bootstrap over the repeats, 5 or more):",
        spreads,
    )
    text += per_workload(
        "Every tool by starburst's yardstick, its median / the fastest other tool's (starburst's\n"
        "is its ratio above; a tool above 1.00x was beaten by another in this run):",
        {
            w.key: [f"{LABELS[t]} {r:.2f}x" for t, r in mine.items()]
            for w in workloads
            if (mine := summary[w.key]["vs_fastest_other"])
        },
    )
    if latencies:
        text.append("")
        text.append("starburst first-result latency (starburst.imap call -> first result):")
        for key, cell in latencies.items():
            med = cell.median
            verdict = "" if med is None else ("ok" if med <= LATENCY_TARGET_S else "MISS")
            detail = ", ".join(f"{t:.3f}" for t in cell.times)
            text.append(
                f"  {key}: median {fmt_s(med)} s  (target <= {LATENCY_TARGET_S} s) {verdict}"
                f"   [{detail}]"
            )
            summary.setdefault(key, {})["first_result_s"] = med
    return "\n".join(text), summary


def per_workload(heading: str, parts: dict[str, list[str]]) -> list[str]:
    """A report section: a blank line, ``heading``, then a line per workload with parts."""
    return ["", *heading.split("\n"), *(f"  {key}: " + ", ".join(p) for key, p in parts.items())]


def against_the_rest(row: dict[str, Cell], tools: Sequence[str]) -> dict[str, float]:
    """Each tool's median over the fastest median of the other tools: the yardstick of
    starburst's target applied to every tool, which shows how far from 1.0x a tool lands
    by the noise of the run alone when the tools are level."""
    medians = {t: row[t].median for t in tools if row[t].median}
    return {
        tool: own / min(other for name, other in medians.items() if name != tool)
        for tool, own in medians.items()
        if len(medians) > 1
    }


#: Resamples drawn by ``ratio_interval``.
BOOTSTRAP_DRAWS = 2000


def ratio_interval(ours: list[float], theirs: list[float]) -> tuple[float, float] | None:
    """A 95% bootstrap interval of ``median(ours) / median(theirs)``: where the ratio could
    have landed with other draws of the same call-to-call noise (each tool's repeats
    resampled with replacement; seeded, so that a run's report is reproducible). None with
    fewer than 5 repeats."""
    if min(len(ours), len(theirs)) < 5:
        return None
    rng = random.Random(0)
    ratios = sorted(
        statistics.median(rng.choices(ours, k=len(ours)))
        / statistics.median(rng.choices(theirs, k=len(theirs)))
        for _ in range(BOOTSTRAP_DRAWS)
    )
    return ratios[int(0.025 * BOOTSTRAP_DRAWS)], ratios[int(0.975 * BOOTSTRAP_DRAWS) - 1]


def source_state() -> dict[str, Any]:
    """Which starburst code was measured: git commit, dirty or not, and a hash of src/."""
    root = os.path.dirname(BENCH_DIR)
    src = os.path.join(root, "src", "starburst")
    digest = hashlib.sha256()
    for folder, dirs, files in sorted(os.walk(src)):
        dirs.sort()
        for name in sorted(files):
            if name.endswith(".py"):
                path = os.path.join(folder, name)
                digest.update(os.path.relpath(path, src).encode())
                with open(path, "rb") as handle:
                    digest.update(handle.read())
    state: dict[str, Any] = {"src_sha256": digest.hexdigest()[:12]}
    try:
        state["commit"] = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=root,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        state["src_dirty"] = bool(
            subprocess.run(
                ["git", "status", "--porcelain", "--", "src"],
                cwd=root,
                capture_output=True,
                text=True,
                check=True,
            ).stdout.strip()
        )
    except (OSError, subprocess.CalledProcessError):
        pass
    return state


def filesystem_of(path: str) -> str:
    """The file system type that ``path`` is on (Linux), for the record."""
    best, kind = "", "?"
    try:
        with open("/proc/mounts") as mounts:
            for line in mounts:
                parts = line.split()
                mount_point, fs_type = parts[1], parts[2]
                inside = path == mount_point or path.startswith(mount_point.rstrip("/") + "/")
                if inside and len(mount_point) > len(best):
                    best, kind = mount_point, fs_type
    except OSError:
        pass
    return kind


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# Main -------------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="small inputs, 1 repeat")
    parser.add_argument(
        "--repeats", type=int, default=None, help="repeats per tool (default 5; W3: 30)"
    )
    parser.add_argument("--json", metavar="FILE", help="also save the results as JSON")
    parser.add_argument("--only", help="comma-separated workloads, e.g. W1,W4")
    parser.add_argument("--tools", help=f"comma-separated subset of {','.join(TOOLS)}")
    parser.add_argument(
        "--phases", action="store_true", help="also time starburst's phases per workload"
    )
    parser.add_argument(
        "--first-runs",
        action="store_true",
        help="time every starburst call as a first run: forget the item times it learnt "
        "from earlier calls of the same function (engine/item_times.py)",
    )
    parser.add_argument(
        "--profile",
        action="store_true",
        help="also cProfile starburst's client on each workload (top functions by own time)",
    )
    args = parser.parse_args(argv)
    if args.repeats is not None and args.repeats < 1:
        parser.error("--repeats must be at least 1")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    global FORGET_ITEM_TIMES
    FORGET_ITEM_TIMES = args.first_runs
    only = {k.strip().upper() for k in args.only.split(",")} if args.only else None
    tools = [t.strip() for t in args.tools.split(",")] if args.tools else list(TOOLS)
    unknown = [t for t in tools if t not in RUNNERS]
    if unknown:
        raise SystemExit(f"unknown tools {unknown}; choose from {', '.join(TOOLS)}")
    started = time.perf_counter()

    spin_iters = wl.calibrate_spin(0.005)
    t0 = time.perf_counter()
    wl.spin(spin_iters)
    spin_ms = (time.perf_counter() - t0) * 1000
    env = {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "start_method": multiprocessing.get_start_method(),
        "starburst": starburst.__version__,
        "numpy": np.__version__,
        "joblib": joblib.__version__,
        "spin_iterations": spin_iters,
        "spin_ms_check": round(spin_ms, 2),
        "tempdir": scratch_dir() or tempfile.gettempdir(),
        "tempdir_fs": filesystem_of(os.path.realpath(scratch_dir() or tempfile.gettempdir())),
        **source_state(),
    }
    log(
        f"python {env['python']}, {env['cpus']} cpus, start method {env['start_method']}, "
        f"starburst {env['starburst']}, numpy {env['numpy']}, joblib {env['joblib']}"
    )
    log(
        f"starburst source: commit {env.get('commit', '?')}"
        f"{' + uncommitted changes' if env.get('src_dirty') else ''} (src sha256 "
        f"{env['src_sha256']}); its store goes under {env['tempdir']} ({env['tempdir_fs']})"
    )
    log(f"W2 calibration: {spin_iters:,} iterations per ~5 ms item (check: {spin_ms:.2f} ms)")

    log("warming up every tool once (untimed) ...")
    warm_up(tools)

    cells: dict[str, dict[str, Cell]] = {}
    latencies: dict[str, Cell] = {}
    phases: dict[str, dict[str, float]] = {}
    profiles: dict[str, str] = {}
    done: list[Workload] = []
    for build in build_workloads(args.quick, args.repeats, spin_iters, only):
        workload = build()
        log(f"\n{workload.key}: {workload.title} ({workload.repeats} repeats)")
        if workload.note:
            log(f"  note: {workload.note}")
        row = cells[workload.key] = {t: Cell() for t in tools}
        for rep in range(workload.repeats):
            order = tools[rep % len(tools) :] + tools[: rep % len(tools)]  # rotate the order
            for tool in order:
                elapsed, problem = measure(tool, workload)
                row[tool].times.append(elapsed)
                if problem:
                    row[tool].errors.append(problem)
                log(
                    f"  [{rep + 1}/{workload.repeats}] {LABELS[tool]:<11} {elapsed:8.3f} s"
                    + (f"  WRONG: {problem}" if problem else "")
                )
        if workload.latency and STARBURST in tools:
            cell = latencies[workload.key] = Cell()
            for _ in range(workload.repeats):
                elapsed, problem = first_result_latency(workload)
                cell.times.append(elapsed)
                if problem:
                    cell.errors.append(problem)
            log(f"  starburst first result: {', '.join(f'{t:.3f}' for t in cell.times)} s")
        if args.phases:
            try:
                phases[workload.key] = starburst_phases(workload)
            except Exception as exc:
                log(f"  phases unavailable: {type(exc).__name__}: {exc}")
            else:
                for name, seconds in phases[workload.key].items():
                    log(f"  phase {name:<32} {seconds:8.3f} s")
        if args.profile:
            profiles[workload.key] = profile_starburst(workload, 25)
            log(profiles[workload.key])
        workload.items = []  # free the inputs (W4: 200 MB) before the next workload
        workload.expected = []
        done.append(workload)
        gc.collect()

    trips = round_trips() if STARBURST in tools and "ppe" in tools else {}
    table, summary = render_table(done, cells, latencies, tools)
    wrong = [
        f"{key} {LABELS[tool]}: {cell.errors[0]}"
        for key, row in cells.items()
        for tool, cell in row.items()
        if cell.errors
    ]
    print()
    print(
        f"starburst {env['starburst']} (commit {env.get('commit', '?')}"
        f"{', src modified' if env.get('src_dirty') else ''}, src sha256 {env['src_sha256']}), "
        f"python {env['python']}, {env['cpus']} cpus, multiprocessing start method "
        f"{env['start_method']}, store under {env['tempdir']} ({env['tempdir_fs']})"
    )
    print()
    print(table)
    if trips:
        ours, theirs = trips["starburst Executor"], trips["ProcessPoolExecutor"]
        print(
            f"\nOne call on idle warm workers, submit -> result (median of {ROUND_TRIPS}): "
            f"starburst Executor {ours * 1000:.1f} ms, ProcessPoolExecutor "
            f"{theirs * 1000:.1f} ms ({ours / theirs:.1f}x)."
        )
    print(
        "\nstarburst calls were timed as first runs (item times forgotten before each)."
        if args.first_runs
        else "\nstarburst's calls after the first size their chunks by the item times the "
        "earlier calls of the same function showed (--first-runs: time them all as first runs)."
    )
    if wrong:
        print("\nWRONG RESULTS (excluded from the table):")
        for item in wrong:
            print(f"  {item}")
    else:
        print("\nEvery tool's results were checked against the reference: all correct.")
    total = time.perf_counter() - started
    print(
        f"\n(benchmark took {total:.0f} s; {env['spin_iterations']:,} spin iterations per W2 item)"
    )

    if args.json:
        payload = {
            "env": env,
            "args": {
                "quick": args.quick,
                "repeats": args.repeats,
                "tools": tools,
                "first_runs": args.first_runs,
            },
            "workloads": {
                w.key: {
                    "title": w.title,
                    "repeats": w.repeats,
                    "target": w.target,
                    "note": w.note,
                    "times": {t: cells[w.key][t].times for t in tools},
                    "median": {t: cells[w.key][t].median for t in tools},
                    "errors": {t: cells[w.key][t].errors for t in tools if cells[w.key][t].errors},
                    **summary.get(w.key, {}),
                    "first_result_times": latencies[w.key].times if w.key in latencies else None,
                    "phases": phases.get(w.key),
                }
                for w in done
            },
            "round_trip_seconds": trips,
            "total_seconds": total,
        }
        with open(args.json, "w") as handle:
            json.dump(payload, handle, indent=2)
        print(f"results saved to {args.json}")
    return 1 if wrong else 0


if __name__ == "__main__":
    sys.exit(main())
