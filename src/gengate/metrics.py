"""Prometheus metrics of one process, in a registry of its own (not the global one)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)
RUN_BUCKETS = (0.01, 0.05, 0.1, 0.5, 1, 2, 5, 10, 30, 60, 120, 300, 600, 1800)


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.http_latency = Histogram(
            "gengate_http_request_duration_seconds",
            "HTTP request latency by route template, method and status.",
            ["method", "route", "status"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.transitions = Counter(
            "gengate_job_transitions_total",
            "Job status changes made by this process, by model and new status.",
            ["model", "status"],
            registry=self.registry,
        )
        self.run_duration = Histogram(
            "gengate_job_run_duration_seconds",
            "Time from claim to outcome of each job run, by model and outcome.",
            ["model", "outcome"],
            buckets=RUN_BUCKETS,
            registry=self.registry,
        )
        self.jobs = Gauge(
            "gengate_jobs",
            "Active jobs in the database by model and status (queued is the queue depth).",
            ["model", "status"],
            registry=self.registry,
        )
        self.running_here = Gauge(
            "gengate_worker_running_jobs",
            "Jobs running in this process's workers, by model.",
            ["model"],
            registry=self.registry,
        )

    def render(self) -> bytes:
        return generate_latest(self.registry)
