"""What one `/metrics` scrape of the job store costs: the SQL-aggregating collector the API uses
against a per-row peer (every job row read into Python, its JSON decoded and counted there, as
the collector did before), in the same run, on stores of growing size.

    python bench/bench_metrics.py --out bench/results/metrics_cpu.json

Stores are filled with the mixed jobs of tests/test_metrics_store.py (kinds, engines, statuses,
timings).  Peak Python memory (tracemalloc) and median wall time of 5 scrapes each.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
import tracemalloc
from collections import defaultdict
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from prometheus_client import CollectorRegistry, generate_latest  # noqa: E402

from studio.jobs.metrics import DURATION_BUCKETS, STAGE_BUCKETS, WAIT_BUCKETS, StoreCollector  # noqa: E402
from studio.jobs.store import JobStore  # noqa: E402


def per_row(store: JobStore) -> dict[str, Any]:
    """The peer: every row into Python, JSON decoded, counted and bucketed there."""
    with store.conn() as c:
        rows = c.execute("SELECT kind, status, payload, result, created, started, finished "
                         "FROM jobs").fetchall()
    counts: dict[tuple[str, str], int] = defaultdict(int)
    durations: dict[tuple[str, str], list[float]] = defaultdict(list)
    stages: dict[str, list[float]] = defaultdict(list)
    waits: dict[str, list[float]] = defaultdict(list)
    for r in rows:
        counts[(r["status"], r["kind"])] += 1
        if r["started"] is not None:
            waits[r["kind"]].append(max(0.0, r["started"] - r["created"]))
        if r["status"] == "done" and r["started"] is not None and r["finished"] is not None:
            try:
                engine = str(json.loads(r["payload"]).get("request", {}).get("engine") or "camera") \
                    if r["kind"] == "generate" else ""
            except (ValueError, AttributeError):
                engine = "?"
            durations[(r["kind"], engine)].append(max(0.0, r["finished"] - r["started"]))
            try:
                timings = (json.loads(r["result"]) if r["result"] else {}).get("timings") or {}
            except (ValueError, AttributeError):
                timings = {}
            for stage, secs in timings.items():
                if stage != "total" and isinstance(secs, int | float):
                    stages[stage].append(float(secs))

    def hist(samples: dict, buckets: tuple) -> dict:
        return {str(k): [sum(1 for v in vs if v <= b) for b in buckets] for k, vs in samples.items()}
    return {"counts": dict(counts), "durations": hist(durations, DURATION_BUCKETS),
            "stages": hist(stages, STAGE_BUCKETS), "waits": hist(waits, WAIT_BUCKETS)}


def sql(store: JobStore) -> bytes:
    reg = CollectorRegistry()
    reg.register(StoreCollector(store))
    return generate_latest(reg)


def measure(fn: Any, store: JobStore, repeats: int = 5) -> dict[str, float]:
    fn(store)                                  # warm: imports, the statement cache, the page cache
    tracemalloc.start()
    fn(store)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn(store)
        times.append(time.perf_counter() - t0)
    return {"peak_python_kb": round(peak / 1024, 1), "median_s": round(statistics.median(times), 4)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default=str(ROOT / "bench/results/metrics_cpu.json"))
    ap.add_argument("--sizes", default="200,5000,40000")
    args = ap.parse_args()
    from test_metrics_store import _fill
    rows = []
    load0 = os.getloadavg()
    with tempfile.TemporaryDirectory() as d:
        for n in (int(x) for x in args.sizes.split(",")):
            store = JobStore(Path(d) / f"jobs-{n}.sqlite")
            _fill(store, n, seed=1)
            ours, peer = measure(sql, store), measure(per_row, store)
            rows.append({"jobs": n + 1, "ours_sql": ours, "peer_per_row": peer})
            print(rows[-1], flush=True)
    out = {"device": f"CPU: {platform.processor() or platform.machine()}, {os.cpu_count()} cores",
           "python": platform.python_version(), "loadavg_before": load0, "loadavg_after": os.getloadavg(),
           "what": "one /metrics job-store scrape: peak Python memory (tracemalloc) and median of 5; "
                   "ours is the whole exposition (worker gauges and text included), the peer only counts",
           "rows": rows}
    Path(args.out).write_text(json.dumps(out, indent=2))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
