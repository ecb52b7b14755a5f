"""A run's report (``starburst.report``, ``starburst report``) made from real runs: the page
holds a lane for each worker process and a bar for each chunk, and marks a Spot
interruption and a failed item where they happened."""

from __future__ import annotations

import html
import itertools
import json
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from browser import load, needs_chromium
from click.testing import CliRunner

import starburst
from starburst.cli import main


def _quiet(_: str) -> None:
    pass


def fails_on_seven(x: int) -> int:
    if x == 7:
        raise ValueError(f"no sevens here: {x}")
    time.sleep(0.1 if x == 40 else 0.001)
    return x


def _sources(page: str, *names: str) -> list[dict[str, Any]]:
    """The rows of the page's Bokeh data sources that have the columns ``names``."""
    docs = re.search(r"const docs_json = '(.*?)';\n", page, re.S)
    assert docs is not None, "the page has no embedded plots"
    found = []

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            data = node.get("attributes", {}).get("data")
            entries = data.get("entries") if isinstance(data, dict) else None
            if node.get("name") == "ColumnDataSource" and isinstance(entries, list):
                columns = dict(entries)
                if all(name in columns for name in names):
                    found.extend(
                        dict(zip(names, row, strict=True))
                        for row in zip(*(columns[name] for name in names), strict=True)
                    )
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(json.loads(docs.group(1)))
    return found


def _chunk_bars(page: str) -> list[dict[str, Any]]:
    """The chunk bars the page's timeline draws."""
    return _sources(page, "lane", "chunk", "items")


def test_a_local_sessions_report_draws_every_worker_and_chunk(
    detached_data_dir: Path, tmp_path: Path
) -> None:
    session = starburst.session(workers=2, backend="local", ttl="10m")
    session.map(fails_on_seven, range(200))
    results = session.collect(errors="return", timeout=60)[0]
    assert isinstance(results[7], ValueError)
    page_path = tmp_path / "run.html"
    shown = CliRunner().invoke(main, ["report", session.id, "-o", str(page_path)])
    assert shown.exit_code == 0, shown.output
    assert f"session {session.id} on local: 200/200 items, 1 failed" in shown.output
    page = page_path.read_text()
    record = starburst.report(session.id).record
    assert "<script" in page and "cdn.bokeh.org" not in page  # scripts inside: opens offline

    lanes = {p["id"] for w in record["workers"] for p in w["processes"]}
    assert len(record["workers"]) == 2 and len(lanes) == 2
    assert [w["steps"] for w in record["workers"]] == [None, None]  # no platform: no steps
    bars = _chunk_bars(page)
    assert {bar["lane"] for bar in bars} == lanes  # a lane per worker process, each worked
    drawn = sorted(bar["chunk"] for bar in bars)
    assert drawn == sorted(bar["chunk"] for bar in record["chunks"])
    assert set(drawn) == set(range(record["runs"][0]["chunks"]))  # every chunk has a bar
    assert sum(bar["items"] for bar in bars) == 200  # each item once
    for bar in record["chunks"]:
        worker = next(w for w in record["workers"] if bar["worker"].startswith(w["id"]))
        assert worker["launched"] <= bar["start"] <= bar["end"] <= record["generated"]
    assert [e["index"] for e in record["errors"]] == [7]
    assert "no sevens here: 7" in page and "Traceback" in page
    slowest = record["slowest"][0]  # the slow item (timed with a few neighbours at most)
    assert slowest["index"] <= 40 < slowest["index"] + slowest["items"] <= 40 + 8
    assert slowest["seconds"] >= 0.1
    session.cleanup()


def test_map_with_return_run_gives_a_run_that_saves_its_report(tmp_path: Path) -> None:
    results, run = starburst.map(fails_on_seven, range(50), workers=2, errors="return",
                                 return_run=True)  # fmt: skip
    assert isinstance(results[7], ValueError)
    assert run.timeline is not None
    record = run.timeline.record
    assert record["session_id"] == run.session_id
    assert sum(bar["items"] for bar in record["chunks"]) == 50
    assert [e["index"] for e in record["errors"]] == [7]
    page = run.save_html(tmp_path / "run.html").read_text()
    assert "no sevens here: 7" in page
    png = run.save_png(tmp_path / "run.png").read_bytes()
    assert png.startswith(b"\x89PNG")
    # The map's session is gone once it returned: the report command says how to keep one.
    shown = CliRunner().invoke(main, ["report", run.session_id])
    assert shown.exit_code != 0 and "return_run=True" in shown.output


def sleepy(x: int) -> int:
    time.sleep(0.01)
    return x


@needs_chromium
def test_a_report_opens_in_a_headless_browser_and_draws_the_timeline(tmp_path: Path) -> None:
    from PIL import Image

    from starburst.reporting.html import CHUNK_COLOURS, UP_COLOUR

    _, run = starburst.map(sleepy, range(200), workers=2, return_run=True)
    page = run.save_html(tmp_path / "run.html")
    shot = tmp_path / "shot.png"
    browser = load(page.resolve().as_uri(), screenshot=shot)
    assert any("document idle" in line for line in browser.console), browser.stderr[-2000:]
    assert not browser.problems, browser.console
    image = Image.open(shot).convert("RGB")
    counts = {colour: n for n, colour in image.getcolors(image.width * image.height)}
    chunk, up = (counts.get(_rgb(colour), 0) for colour in (CHUNK_COLOURS[0], UP_COLOUR))
    # Two workers busy from start to end: chunk bars fill most of their lanes.
    assert chunk > 5_000, (chunk, up)
    assert chunk > up, (chunk, up)


def _rgb(colour: str) -> tuple[int, int, int]:
    return int(colour[1:3], 16), int(colour[3:5], 16), int(colour[5:7], 16)


def slow_or_failing(x: int) -> int:
    time.sleep(0.05)
    if x == 3:
        raise RuntimeError("item three fails")
    return x * x


def test_a_fargate_runs_report_marks_the_spot_interruption_and_the_failed_item(
    aws: Any, tmp_path: Path
) -> None:
    starburst.setup(say=_quiet)
    aws.faults.spot_interruption(count=1, after=1.5, grace=0.5)
    with starburst.Cluster(workers=2, cpu=1, backend="fargate", spot=True) as cluster:
        results = cluster.map(slow_or_failing, range(120), chunk_size=5, errors="return")
        assert isinstance(results[3], RuntimeError)
        session_id = cluster.driver.session.session_id
        # While the session is open, from its id alone, as another process would.
        timeline = starburst.report(session_id, tmp_path / "run.html")
        stored = starburst.Timeline.read(cluster.driver.store, session_id).record
    # The store alone knows of the interruption (the ledger), not only the platform.
    assert "interrupted" in [w["stop"] for w in stored["workers"]]
    record = timeline.record
    stops = [w["stop"] for w in record["workers"]]
    assert "interrupted" in stops, json.dumps(record["workers"], indent=1)
    interrupted = next(w for w in record["workers"] if w["stop"] == "interrupted")
    assert interrupted["stopped"] is not None and interrupted["spot"]
    assert len(record["workers"]) >= 3  # its replacement too
    assert [(e["index"], e["message"]) for e in record["errors"]] == [(3, "item three fails")]
    assert record["cost"]["total"] > 0 and record["cost"]["series"]
    page = (tmp_path / "run.html").read_text()
    assert "interrupted" in page and "item three fails" in page
    failed_bars = [bar for bar in record["chunks"] if bar["failed"]]
    assert [bar["failed"] for bar in failed_bars] == [[3]]
    assert sum(bar["items"] for bar in record["chunks"]) >= 120  # every item, some twice


_WITHOUT_BOKEH = """
import sys
sys.modules["bokeh"] = None  # as if not installed: importing it raises ImportError
import starburst
empty = {"session_id": "sb-x", "backend": "local", "runs": [], "chunks": [], "errors": [],
         "workers": [], "cost": {"total": None}}
try:
    starburst.Timeline(empty).save_html(sys.argv[1])
except starburst.ConfigurationError as exc:
    print(exc)
"""


def test_a_report_without_bokeh_says_which_extra_to_install(tmp_path: Path) -> None:
    shown = subprocess.run(
        [sys.executable, "-c", _WITHOUT_BOKEH, str(tmp_path / "run.html")],
        capture_output=True, text=True, timeout=60, check=True,
    )  # fmt: skip
    assert 'needs bokeh, which is not installed: pip install "starburst[report]"' in shown.stdout
    assert not (tmp_path / "run.html").exists()


_CARD_WITHOUT_BOKEH = """
import json, sys, time
sys.modules["bokeh"] = sys.modules["matplotlib"] = None  # as if the extra were not installed
import starburst

def shout(x):
    if x == 7:
        raise ValueError("<script>alert('x')</script> & more")
    time.sleep(0.2 if x == 30 else 0.001)
    return x

results, run = starburst.map(shout, range(60), workers=2, errors="return", return_run=True)
print(json.dumps({"card": run._repr_html_(), "timeline_card": run.timeline._repr_html_(),
                  "wall": run.wall_seconds, "workers": run.workers,
                  "slowest": run.timeline.record["slowest"][0]}))
"""


def test_a_runs_notebook_card_shows_its_numbers_escaped_without_the_report_extra() -> None:
    shown = subprocess.run(
        [sys.executable, "-c", _CARD_WITHOUT_BOKEH],
        capture_output=True, text=True, timeout=120, check=True,
    )  # fmt: skip
    run = json.loads(shown.stdout.splitlines()[-1])
    card = run["card"]
    assert "<script" not in card
    assert "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt; &amp; more" in card
    assert "60 of 60 computed, 1 failed" in card
    assert f"{run['wall']:.1f} s" in card and f"{run['workers']} launched" in card
    assert "none (these workers cost nothing)" in card  # local: no price
    slow = run["slowest"]
    assert slow["index"] <= 30 < slow["index"] + slow["items"] and slow["seconds"] >= 0.2
    assert f"{slow['seconds']:.3f} s" in card
    assert re.search(r"\d+% of the workers&#x27; up time busy", card)
    assert "run.save_html(&quot;run.html&quot;)" in card
    timeline_card = run["timeline_card"]
    assert "<script" not in timeline_card and "60 of 60 computed, 1 failed" in timeline_card


def test_an_ec2_runs_report_shows_its_instances_and_where_the_prices_came_from(
    aws: Any, tmp_path: Path
) -> None:
    from collections import Counter

    from test_ec2 import _launched, slow_square

    starburst.setup(say=_quiet, ec2=True)
    aws.faults.error("GetAWSDefaultServiceQuota", "NoSuchResourceException", times=None)
    with starburst.Cluster(workers=6, cpu=1, backend="ec2", spot=True, progress=False,
                           instance_types=["c7i.large", "c7i.xlarge"]) as cluster:  # fmt: skip
        assert cluster.map(slow_square, range(60)) == [x * x for x in range(60)]
        session_id = cluster.driver.session.session_id
        live = starburst.report(session_id, tmp_path / "run.html").record
        store = cluster.driver.store
        # From the store alone, as another machine without the platform's view reads it.
        stored = starburst.Timeline.read(store, session_id).record
    launched = _launched()
    assert len(launched) >= 2
    for record in (live, stored):
        instances = record["instances"]
        assert {i["id"]: i["type"] for i in instances["list"]} == launched
        assert dict(instances["types"]) == dict(Counter(launched.values()))
        assert {i["lifecycle"] for i in instances["list"]} == {"spot"}
        assert all(i["zone"].startswith("us-east-1") for i in instances["list"])
        carried = [w for i in instances["list"] for w in i["workers"]]
        assert sorted(carried) == sorted(w["id"] for w in record["workers"])  # each on one
        assert record["cost"]["total"] == pytest.approx(sum(i["cost"] for i in instances["list"]))
        assert record["cost"]["source"].startswith("on-demand: ")
    page = (tmp_path / "run.html").read_text()
    assert "<h3>Instances</h3>" in page
    for instance_id, kind in launched.items():
        assert re.search(rf"<td>{instance_id}</td><td>{re.escape(kind)}</td><td>spot</td>", page)
    assert f"Prices: {html.escape(live['cost']['source'])}." in page
    assert cluster.report is not None and cluster.report.price_source == live["cost"]["source"]


def test_map_with_return_run_on_ec2_gives_the_instances_its_cost_is_for(aws: Any) -> None:
    from test_ec2 import square

    starburst.setup(say=_quiet, ec2=True)
    aws.faults.error("GetAWSDefaultServiceQuota", "NoSuchResourceException", times=None)
    _, run = starburst.map(square, range(40), workers=3, cpu=1, backend="ec2",
                           instance_types=["c7i.large"], return_run=True)  # fmt: skip
    assert run.timeline is not None
    record = run.timeline.record
    instances = record["instances"]
    assert [tuple(kind) for kind in instances["types"]] == list(run.instances)
    assert {i["lifecycle"] for i in instances["list"]} == {"on-demand"}
    assert record["cost"]["total"] == pytest.approx(run.cost)
    assert 0 < instances["utilisation"] <= 1
    card = run._repr_html_()
    assert f"on {sum(n for _, n in run.instances)} instance" in card and "c7i.large" in card
    assert html.escape(f"prices: {run.price_source}") in card


def test_a_fargate_workers_lane_shows_provisioning_image_pull_and_start_apart(
    aws: Any, tmp_path: Path
) -> None:
    """ECS's times of each task's steps are kept in the ledger when the worker stops, and
    each lane draws them as phases of their own colours (here the image pull takes 1.5 s)."""
    from PIL import Image

    from starburst.reporting.html import PHASE_COLOURS, PULLING_COLOUR
    from starburst.reporting.series import lane_phases, lanes

    starburst.setup(say=_quiet)
    aws.faults.slow_start(1.5)
    aws.faults.spot_interruption(count=1, after=3.0, grace=0.5)  # once its process is up
    with starburst.Cluster(workers=2, cpu=1, backend="fargate", spot=True,
                           progress=False) as cluster:  # fmt: skip
        assert cluster.map(sleepy, range(1000), chunk_size=5) == list(range(1000))
        session_id = cluster.driver.session.session_id
        stored = starburst.Timeline.read(cluster.driver.store, session_id)
        live = starburst.report(session_id, tmp_path / "run.html")
    stopped = next(w for w in stored.record["workers"] if w["stop"] == "interrupted")
    steps = stopped["steps"]  # from the store alone: the ledger
    assert list(steps) == ["created", "pull_started", "pull_stopped", "started"], steps
    assert steps["created"] <= steps["pull_started"] <= steps["pull_stopped"] <= steps["started"]
    assert steps["pull_stopped"] - steps["pull_started"] >= 1.5  # the slow pull
    lane = next(row for row in lanes(stored.record) if row.worker == stopped["id"])
    phases = lane_phases(lane, stored.record["generated"])
    assert [phase for phase, _, _ in phases] == ["provisioning", "pulling image", "starting", "up"]
    assert all(a[2] == b[1] for a, b in itertools.pairwise(phases))  # end to end
    for worker in live.record["workers"]:  # the platform tells the running ones' steps
        assert worker["steps"] and "pull_stopped" in worker["steps"], worker

    page = (tmp_path / "run.html").read_text()
    drawn = _sources(page, "lane", "what", "left", "right")
    pulls = [span for span in drawn if span["what"] == "pulling image"]
    assert len(pulls) == len(live.record["workers"]) >= 3  # each worker, its replacement too
    assert all(span["right"] - span["left"] >= 1.5 for span in pulls)
    for phase, colour in PHASE_COLOURS.items():
        assert f"worker {phase}" in page and colour in page  # its legend entry and colour
    image_path = live.save_png(tmp_path / "run.png")
    image = Image.open(image_path).convert("RGB")
    counts = {colour: n for n, colour in image.getcolors(image.width * image.height)}
    assert counts.get(_rgb(PULLING_COLOUR), 0) > 200  # the pulls are drawn


def test_starburst_report_of_a_detached_ec2_session_keeps_its_instances_in_the_store(
    aws: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A detached session's supervisor keeps its instances as it reads them (in the control
    record, for its bill), so a report from the store alone shows them; ``starburst report``
    reads them from the platform too and keeps them in the session's store, where a report
    made later (the platform forgets them within the hour) or from a machine without AWS
    access finds them."""
    from collections import Counter

    from test_ec2 import _launched, square

    from starburst.detached import session_store

    monkeypatch.setenv("STARBURST_LEASE", "3")  # a supervision step every second
    starburst.setup(say=_quiet, ec2=True)
    aws.faults.error("GetAWSDefaultServiceQuota", "NoSuchResourceException", times=None)
    session = starburst.session(workers=2, cpu=1, backend="ec2", ttl=300)
    try:
        session.map(square, range(50))
        assert session.collect(timeout=60) == [[x * x for x in range(50)]]
        supervised = starburst.Timeline.read(session_store(session.id), session.id).record
        shown = CliRunner().invoke(main, ["report", session.id, "-o", str(tmp_path / "run.html")])
        assert shown.exit_code == 0, shown.output
        stored = starburst.Timeline.read(session_store(session.id), session.id).record
    finally:
        session.cleanup()
    launched = _launched()
    seen = {i["id"]: i["type"] for i in supervised["instances"]["list"]}
    assert seen and seen.items() <= launched.items()  # as the supervisor read them
    assert {i["id"]: i["type"] for i in stored["instances"]["list"]} == launched
    assert dict(stored["instances"]["types"]) == dict(Counter(launched.values()))
    assert stored["cost"]["total"] > 0 and stored["cost"]["source"]
    page = (tmp_path / "run.html").read_text()
    assert all(f"<td>{instance_id}</td>" in page for instance_id in launched)


def test_an_instance_the_platform_forgot_is_kept_and_billed_up_to_when_it_was_seen() -> None:
    from starburst.backends.base import InstanceUse
    from starburst.cost.instance_bill import InstanceReading

    def use(instance_id: str, terminated: float | None) -> InstanceUse:
        return InstanceUse(instance_id, "c7i.large", 2, 0.1, launched=1000.0,
                           terminated=terminated, spot=True, workers=("task-a",))  # fmt: skip

    kept = InstanceReading(990.0, 2000.0, (use("i-gone", None), use("i-both", None)))
    updated = kept.updated([use("i-both", 8000.0), use("i-new", None)], 9000.0)
    merged = {u.instance_id: u for u in updated.uses}
    assert merged["i-gone"].terminated == 2000.0  # last seen up then: billed to there only
    assert merged["i-both"].terminated == 8000.0 and merged["i-new"].terminated is None
    assert (updated.since, updated.read) == (990.0, 9000.0)
    assert InstanceReading.from_record(updated.to_record()) == updated  # as kept in the store
