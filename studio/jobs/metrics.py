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
from collections import defaultdict
from collections.abc import Iterator
from typing import Any

from prometheus_client import CollectorRegistry, Counter, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily

from .store import STATUSES, JobStore

DURATION_BUCKETS = (0.5, 1, 2, 5, 10, 30, 60, 120, 300, 600, 1800, 3600, 7200)
STAGE_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 300, 1800)
WAIT_BUCKETS = (0.1, 0.5, 1, 2, 5, 10, 30, 60, 300, 1800)


def _histogram(name: str, doc: str, labels: list[str], samples: dict[tuple[str, ...], list[float]],
               buckets: tuple[float, ...]) -> HistogramMetricFamily:
    h = HistogramMetricFamily(name, doc, labels=labels)
    for key, values in sorted(samples.items()):
        counts = [(str(float(b)), sum(1 for v in values if v <= b)) for b in buckets]
        counts.append(("+Inf", len(values)))
        h.add_metric(list(key), counts, sum_value=float(sum(values)))
    return h


class StoreCollector:
    """Collects job metrics from a `JobStore` at scrape time."""

    def __init__(self, store: JobStore) -> None:
        self.store = store

    def describe(self) -> list[Any]:
        """Nothing up front (the families are built when scraped)."""
        return []

    def collect(self) -> Iterator[Any]:
        """The job families, from one read of the store."""
        with self.store.conn() as c:
            rows = c.execute("SELECT kind, status, payload, result, created, started, finished "
                             "FROM jobs").fetchall()
        by_status = GaugeMetricFamily("studio_jobs", "Jobs in the store by status and kind",
                                      labels=["status", "kind"])
        submitted = CounterMetricFamily("studio_jobs_submitted", "Jobs submitted, by kind", labels=["kind"])
        failed = CounterMetricFamily("studio_jobs_failed", "Jobs that failed, by kind", labels=["kind"])
        counts: dict[tuple[str, str], int] = defaultdict(int)
        subs: dict[str, int] = defaultdict(int)
        fails: dict[str, int] = defaultdict(int)
        durations: dict[tuple[str, ...], list[float]] = defaultdict(list)
        stages: dict[tuple[str, ...], list[float]] = defaultdict(list)
        waits: dict[tuple[str, ...], list[float]] = defaultdict(list)
        for r in rows:
            kind = r["kind"]
            counts[(r["status"], kind)] += 1
            subs[kind] += 1
            if r["status"] == "failed":
                fails[kind] += 1
            if r["started"] is not None:
                waits[(kind,)].append(max(0.0, r["started"] - r["created"]))
            if r["status"] == "done" and r["started"] is not None and r["finished"] is not None:
                engine = ""
                if kind == "generate":
                    try:
                        engine = str(json.loads(r["payload"]).get("request", {}).get("engine") or "camera")
                    except (ValueError, AttributeError):
                        engine = "?"
                durations[(kind, engine)].append(max(0.0, r["finished"] - r["started"]))
                try:
                    timings = (json.loads(r["result"]) if r["result"] else {}).get("timings") or {}
                except (ValueError, AttributeError):
                    timings = {}
                for stage, secs in timings.items():
                    if stage != "total" and isinstance(secs, int | float):
                        stages[(stage,)].append(float(secs))
        for status in STATUSES:
            for kind in sorted({k for _, k in counts}):
                by_status.add_metric([status, kind], counts.get((status, kind), 0))
        for kind in sorted(subs):
            submitted.add_metric([kind], subs[kind])
            failed.add_metric([kind], fails.get(kind, 0))
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
