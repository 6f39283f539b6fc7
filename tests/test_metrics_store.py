"""`/metrics`' job families come from aggregate SQL over the store: the same numbers as counting
every row in Python, for a store of mixed kinds, engines, statuses and timings (with a malformed
row among them), in a few hundred kB however many jobs the store keeps."""

from __future__ import annotations

import json
import random
import tracemalloc

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from studio.jobs.metrics import DURATION_BUCKETS, STAGE_BUCKETS, WAIT_BUCKETS, StoreCollector
from studio.jobs.store import JobStore

KINDS = ("generate", "post", "rerun", "sequence")
ENGINES = ("camera", "motion", "wan-i2v", None, "")
STATUSES = ("queued", "running", "done", "failed", "cancelled")


def _fill(store: JobStore, n: int, seed: int = 0) -> list[dict]:
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        kind, status = rng.choice(KINDS), rng.choice(STATUSES)
        eng = rng.choice(ENGINES)
        payload = json.dumps({"request": {"engine": eng}} if eng is not None else {"request": {}})
        created = 1000.0 + i
        started = None if status == "queued" else created + rng.choice([0.05, 0.7, 3.0, 40.0, 900.0])
        finished = created + 5000 if status in ("done", "failed", "cancelled") and started else None
        if finished and started:
            finished = started + rng.choice([0.3, 1.0, 7.5, 100.0, 4000.0])
        timings = {"base": rng.choice([0.01, 0.2, 3.3]), "encode": rng.choice([0.04, 1.5]), "total": 9.0,
                   "odd": "not a number"}
        result = json.dumps({"timings": timings}) if status == "done" else None
        rows.append(dict(id=f"j{i}", kind=kind, payload=payload, status=status, result=result,
                         created=created, started=started, finished=finished))
    rows.append(dict(id="bad", kind="generate", payload="{not json", status="done", result="{oops",
                     created=1.0, started=2.0, finished=3.0))
    with store.conn() as c:
        c.executemany("INSERT INTO jobs (id, kind, payload, status, result, created, started, finished) "
                      "VALUES (:id, :kind, :payload, :status, :result, :created, :started, :finished)", rows)
    return rows


def _scrape(store: JobStore) -> dict:
    reg = CollectorRegistry()
    reg.register(StoreCollector(store))
    out = {}
    for fam in text_string_to_metric_families(generate_latest(reg).decode()):
        for s in fam.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def _engine(r: dict) -> str:
    if r["kind"] != "generate":
        return ""
    try:
        return str(json.loads(r["payload"])["request"].get("engine") or "camera")
    except ValueError:
        return "?"


def test_sql_aggregates_equal_a_count_of_every_row(tmp_path):
    store = JobStore(tmp_path / "jobs.sqlite")
    rows = _fill(store, 3000)
    m = _scrape(store)
    for kind in KINDS:
        mine = [r for r in rows if r["kind"] == kind]
        assert m[("studio_jobs_submitted_total", (("kind", kind),))] == len(mine)
        statuses = [r["status"] for r in mine]
        assert m[("studio_jobs_failed_total", (("kind", kind),))] == statuses.count("failed")
        for st in STATUSES:
            assert m[("studio_jobs", (("kind", kind), ("status", st)))] == statuses.count(st)
        waits = [r["started"] - r["created"] for r in mine if r["started"] is not None]
        for b in WAIT_BUCKETS:
            assert m[("studio_queue_wait_seconds_bucket", (("kind", kind), ("le", str(float(b)))))] == \
                sum(w <= b for w in waits)
        total = m[("studio_queue_wait_seconds_sum", (("kind", kind),))]
        assert abs(total - sum(waits)) < 1e-3
    done = [r for r in rows if r["status"] == "done" and r["started"] and r["finished"]]
    for key in {(r["kind"], _engine(r)) for r in done}:
        ds = [r["finished"] - r["started"] for r in done if (r["kind"], _engine(r)) == key]
        labels = (("engine", key[1]), ("kind", key[0]))
        assert m[("studio_job_duration_seconds_count", labels)] == len(ds)
        for b in DURATION_BUCKETS:
            key_b = (labels[0], labels[1], ("le", str(float(b))))
            assert m[("studio_job_duration_seconds_bucket", key_b)] == sum(d <= b for d in ds)
    bad = (("engine", "?"), ("kind", "generate"))        # the row with a malformed payload
    assert m[("studio_job_duration_seconds_count", bad)] == 1
    timings = [json.loads(r["result"])["timings"] for r in done if r["id"] != "bad"]
    for stage in ("base", "encode"):
        vals = [t[stage] for t in timings]
        assert m[("studio_stage_duration_seconds_count", (("stage", stage),))] == len(vals)
        for b in STAGE_BUCKETS:
            assert m[("studio_stage_duration_seconds_bucket", (("le", str(float(b))), ("stage", stage)))] == \
                sum(v <= b for v in vals)
    assert not any(k[0].startswith("studio_stage") and ("stage", "total") in k[1] for k in m)
    assert not any(k[0].startswith("studio_stage") and ("stage", "odd") in k[1] for k in m)


def test_a_scrape_holds_little_memory_however_many_jobs(tmp_path):
    small, big = JobStore(tmp_path / "s.sqlite"), JobStore(tmp_path / "b.sqlite")
    _fill(small, 200, seed=1)
    _fill(big, 40_000, seed=1)
    peaks = []
    for store in (small, big):
        _scrape(store)                         # warm (imports, statement cache)
        tracemalloc.start()
        _scrape(store)
        peaks.append(tracemalloc.get_traced_memory()[1])
        tracemalloc.stop()
    print(f"scrape peak Python memory: 200 jobs {peaks[0] / 1024:.0f} kB, "
          f"40000 jobs {peaks[1] / 1024:.0f} kB")
    assert peaks[1] < 2 * peaks[0] + 256 * 1024, peaks
