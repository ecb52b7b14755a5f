"""Bulk API calls: fetch many records from a rate-limited, flaky HTTP API, I/O-bound.

The API is a local stand-in that this script serves on 127.0.0.1 (nothing leaves the
machine): it answers slowly, allows so many requests a second across all workers (429 with
Retry-After beyond that), fails every seventh record's first request with a 503, and has no
record for ids that are multiples of 50 (404). A worker waits out a 429 itself; a 503 raises
``ConnectionError``, which ``retry_exceptions`` re-runs; a 404 raises ``LookupError``, which
``errors="return"`` hands back in the record's place instead of failing the call.

Run: .venv/bin/python examples/bulk_api.py [--size 2000] [--workers 16]
(The stand-in runs in this process, so the workers must reach this machine's 127.0.0.1: the
local backend, or the sandbox's. On AWS, point --api at a service your workers can reach.)
"""

import json
import threading
import time
import urllib.error
import urllib.request
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from _common import cluster_options, make_parser, print_summary, run

import starburst

RATE_PER_SECOND, LATENCY, FLAKY_EVERY, MISSING_EVERY = 400, 0.01, 7, 50


def record_value(record_id: int) -> int:
    """What the API returns for a record: a client can check every answer against it."""
    return record_id * record_id % 9973


class StandInApi(BaseHTTPRequestHandler):
    """``GET /records/<id>``: slow, rate-limited, transiently failing, some ids missing."""

    lock = threading.Lock()
    window_start, window_count = 0.0, 0
    counts: Counter[str] = Counter()  # answers given, by status
    tried: set[int] = set()  # ids whose first request came

    def do_GET(self) -> None:
        record_id = int(self.path.rsplit("/", 1)[-1])
        with self.lock:
            now = time.monotonic()
            if now - StandInApi.window_start >= 1 / 20:  # twenty windows a second
                StandInApi.window_start, StandInApi.window_count = now, 0
            StandInApi.window_count += 1
            limited = StandInApi.window_count > RATE_PER_SECOND / 20
            first = record_id not in self.tried and not limited
            if first:
                self.tried.add(record_id)
        time.sleep(LATENCY)
        if limited:
            self.answer(429, {"error": "rate limited"}, retry_after="0.05")
        elif record_id % MISSING_EVERY == 0:
            self.answer(404, {"error": f"no record {record_id}"})
        elif first and record_id % FLAKY_EVERY == 0:
            self.answer(503, {"error": "try again"})
        else:
            self.answer(200, {"id": record_id, "value": record_value(record_id)})

    def answer(self, status: int, body: dict[str, object], retry_after: str = "") -> None:
        with self.lock:
            self.counts[str(status)] += 1
        payload = json.dumps(body).encode()
        self.send_response(status)
        if retry_after:
            self.send_header("Retry-After", retry_after)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, format: str, *args: object) -> None:  # quiet
        pass


def fetch(record_id: int, api: str) -> int:
    """One record's value: wait out rate limits; raise ``ConnectionError`` on a 503 (worth a
    retry) and ``LookupError`` on a 404 (not)."""
    while True:
        try:
            with urllib.request.urlopen(f"{api}/records/{record_id}", timeout=30) as response:
                return json.load(response)["value"]
        except urllib.error.HTTPError as exc:
            if exc.code == 429:
                time.sleep(float(exc.headers.get("Retry-After", "0.1")))
            elif exc.code == 404:
                raise LookupError(f"the API has no record {record_id}") from None
            else:
                raise ConnectionError(f"record {record_id}: HTTP {exc.code}") from None


def main() -> None:
    parser = make_parser(__doc__, size=300, size_help="records to fetch", workers=8)
    parser.add_argument("--api", help="the API's base URL (default: a stand-in served here)")
    args = parser.parse_args()
    server = None
    if args.api is None:
        server = ThreadingHTTPServer(("127.0.0.1", 0), StandInApi)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        args.api = f"http://127.0.0.1:{server.server_port}"

    ids = range(1, args.size + 1)
    started = time.monotonic()
    values = starburst.map(
        fetch,
        ids,
        [args.api] * len(ids),
        retries=3,
        retry_exceptions=(ConnectionError,),  # transient: run the record again
        errors="return",  # a missing record comes back as its LookupError
        **cluster_options(args),
    )
    seconds = time.monotonic() - started
    if server is not None:
        server.shutdown()

    fetched = [(i, v) for i, v in zip(ids, values, strict=True) if not isinstance(v, Exception)]
    missing = [i for i, v in zip(ids, values, strict=True) if isinstance(v, LookupError)]
    wrong = [i for i, v in fetched if v != record_value(i)]
    print(f"{len(fetched)} of {len(ids)} records fetched in {seconds:.1f} s from {args.api}")
    print(f"missing (404, returned in place): {missing[:5]}{' ...' if len(missing) > 5 else ''}")
    print(f"stand-in answers by status: {dict(sorted(StandInApi.counts.items()))}")
    print_summary(
        records=len(ids),
        fetched=len(fetched),
        missing=len(missing),
        wrong=len(wrong),
        retried_503=StandInApi.counts["503"],
        rate_limited_429=StandInApi.counts["429"],
    )


if __name__ == "__main__":
    run(main)
