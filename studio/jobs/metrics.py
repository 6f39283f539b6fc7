"""Prometheus metrics for `GET /metrics`: the job store's numbers, read at scrape time, plus HTTP counts.

Job metrics are computed from the SQLite store when scraped, so they count every job whichever
process ran it and survive restarts: jobs by status and kind, submissions and failures by kind, job
duration by kind and engine, stage durations (from each job's recorded timings) and queue wait.
HTTP requests are counted in this process by route and status code.  GPU memory is reported when this
process already uses CUDA (the API never initialises a GPU just to report on it).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from typing import Any

from prometheus_client import CollectorRegistry, Counter, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily

from .store import STATUSES, JobStore

DURATION_BUCKETS = (0.5, 1, 2, 5, 10, 30, 60, 120, 300, 600, 1800, 3600, 7200)
STAGE_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 300, 1800)
WAIT_BUCKETS = (0.1, 0.5, 1, 2, 5, 10, 30, 60, 300, 1800)


def _bucket_sql(expr: str, buckets: tuple[float, ...]) -> str:
    """COUNT, SUM and one cumulative count per bucket of `expr`, as SQL select terms."""
    terms = [f"SUM(CASE WHEN {expr} <= {float(b)!r} THEN 1 ELSE 0 END)" for b in buckets]
    return f"COUNT(*), SUM({expr}), " + ", ".join(terms)


def _histogram(name: str, doc: str, labels: list[str], rows: list[Any], buckets: tuple[float, ...]
               ) -> HistogramMetricFamily:
    """A histogram family from rows of (*labels, count, sum, cumulative count per bucket)."""
    h = HistogramMetricFamily(name, doc, labels=labels)
    n = len(labels)
    for r in sorted(rows, key=lambda r: tuple(str(x) for x in r[:n])):
        cum = [(str(float(b)), int(r[n + 2 + i] or 0)) for i, b in enumerate(buckets)]
        cum.append(("+Inf", int(r[n])))
        h.add_metric([str(x) for x in r[:n]], cum, sum_value=float(r[n + 1] or 0.0))
    return h


# a generate job's engine (camera when its request names none); '' for the other kinds
_ENGINE = ("CASE WHEN kind = 'generate' THEN COALESCE(NULLIF(CAST(CASE WHEN json_valid(payload) THEN "
           "json_extract(payload, '$.request.engine') END AS TEXT), ''), CASE WHEN json_valid(payload) "
           "THEN 'camera' ELSE '?' END) ELSE '' END")


class StoreCollector:
    """Collects job metrics from a `JobStore` at scrape time.

    Everything is aggregated inside SQLite (GROUP BY, bucket sums, `json_each` over the recorded
    timings), so a scrape holds a few rows per kind, engine and stage in memory however many jobs
    the store keeps.
    """

    def __init__(self, store: JobStore) -> None:
        self.store = store

    def describe(self) -> list[Any]:
        """Nothing up front (the families are built when scraped)."""
        return []

    def collect(self) -> Iterator[Any]:
        """The job families, from aggregate queries of the store."""
        done = "status = 'done' AND started IS NOT NULL AND finished IS NOT NULL"
        dur = "MAX(0.0, finished - started)"
        wait = "MAX(0.0, started - created)"
        with self.store.conn() as c:
            counts = c.execute("SELECT status, kind, COUNT(*) FROM jobs GROUP BY status, kind").fetchall()
            durations = c.execute(f"SELECT kind, engine, {_bucket_sql('d', DURATION_BUCKETS)} FROM "
                                  f"(SELECT kind, {_ENGINE} AS engine, {dur} AS d FROM jobs WHERE {done}) "
                                  f"GROUP BY kind, engine").fetchall()
            waits = c.execute(f"SELECT kind, {_bucket_sql('w', WAIT_BUCKETS)} FROM (SELECT kind, {wait} "
                              f"AS w FROM jobs WHERE started IS NOT NULL) GROUP BY kind").fetchall()
            stages = c.execute(
                f"SELECT stage, {_bucket_sql('secs', STAGE_BUCKETS)} FROM (SELECT t.key AS stage, "
                f"CAST(t.value AS REAL) AS secs FROM jobs, json_each(CASE WHEN json_valid(jobs.result) "
                f"THEN jobs.result ELSE '{{}}' END, '$.timings') AS t WHERE {done} "
                f"AND t.key != 'total' AND t.type IN ('integer', 'real')) GROUP BY stage").fetchall()
        by_status = GaugeMetricFamily("studio_jobs", "Jobs in the store by status and kind",
                                      labels=["status", "kind"])
        submitted = CounterMetricFamily("studio_jobs_submitted", "Jobs submitted, by kind", labels=["kind"])
        failed = CounterMetricFamily("studio_jobs_failed", "Jobs that failed, by kind", labels=["kind"])
        per = {(r[0], r[1]): int(r[2]) for r in counts}
        kinds = sorted({k for _, k in per})
        for status in STATUSES:
            for kind in kinds:
                by_status.add_metric([status, kind], per.get((status, kind), 0))
        for kind in kinds:
            submitted.add_metric([kind], sum(v for (_, k), v in per.items() if k == kind))
            failed.add_metric([kind], per.get(("failed", kind), 0))
        yield by_status
        yield submitted
        yield failed
        yield _histogram("studio_job_duration_seconds", "Run time of finished jobs, by kind and engine",
                         ["kind", "engine"], durations, DURATION_BUCKETS)
        yield _histogram("studio_stage_duration_seconds", "Time per stage of finished jobs", ["stage"],
                         stages, STAGE_BUCKETS)
        yield _histogram("studio_queue_wait_seconds", "Time from submission to start", ["kind"], waits,
                         WAIT_BUCKETS)
        yield from self._workers()
        gpu = GaugeMetricFamily("studio_gpu_memory_allocated_bytes", "GPU memory held by this process",
                                labels=["device"])
        torch = sys.modules.get("torch")
        if torch is not None and torch.cuda.is_available() and torch.cuda.is_initialized():
            for i in range(torch.cuda.device_count()):
                gpu.add_metric([f"cuda:{i}"], float(torch.cuda.memory_allocated(i)))
        yield gpu

    def _workers(self) -> Iterator[Any]:
        """Per-worker gauges from the workers table (rows refreshed by each dispatcher's heartbeat)."""
        import time

        from .dispatch import WORKER_STALE_S, WORKERS_SCHEMA
        with self.store.conn() as c:
            c.executescript(WORKERS_SCHEMA)
            rows = c.execute("SELECT * FROM workers WHERE heartbeat >= ?",
                             (time.time() - WORKER_STALE_S,)).fetchall()
        labels = ["worker", "executor", "device"]
        busy = GaugeMetricFamily("studio_worker_busy", "1 while the worker runs a job, else 0", labels=labels)
        runs = CounterMetricFamily("studio_worker_jobs", "Jobs a worker has run", labels=labels)
        loaded = GaugeMetricFamily("studio_worker_model_loaded", "Models resident in a worker (1 each)",
                                   labels=[*labels, "model"])
        for r in rows:
            key = [r["id"], r["executor"], r["device"]]
            busy.add_metric(key, 1.0 if r["busy"] else 0.0)
            runs.add_metric(key, r["jobs_run"])
            for m in json.loads(r["loaded"] or "[]"):
                loaded.add_metric([*key, m], 1.0)
        yield busy
        yield runs
        yield loaded


class Metrics:
    """One registry per API app: the store's job families and an HTTP request counter."""

    def __init__(self, store: JobStore) -> None:
        self.registry = CollectorRegistry()
        self.registry.register(StoreCollector(store))
        self.http = Counter("studio_http_requests", "HTTP requests by method, route and status code",
                            ["method", "route", "code"], registry=self.registry)

    def count_http(self, method: str, route: str, code: int) -> None:
        """Count one answered request."""
        self.http.labels(method, route, str(code)).inc()

    def text(self) -> bytes:
        """The Prometheus text exposition of everything."""
        return generate_latest(self.registry)
