"""/metrics in the Prometheus text format (prometheus-client).

Counters and histograms are kept per process; with `serve --workers N` they live in
PROMETHEUS_MULTIPROC_DIR (set by `serve` before the workers start) and every scrape adds up all
workers. Queue, index and webhook figures are read at scrape time from what every worker shares
(the SQLite database, the index), so they need no aggregation and are right whichever worker answers.
"""

from __future__ import annotations

import os
import time
from typing import TYPE_CHECKING

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

if TYPE_CHECKING:
    from ..engine import Engine
    from ..verdict import Verdict

_OWN = CollectorRegistry()  # this process's counters; not the global registry (several apps per test process)
CHECKS = Counter("moderate_checks", "Inputs checked, by verdict", ["verdict"], registry=_OWN)
EVIDENCE = Counter("moderate_check_evidence", "Checks with evidence from a signal, by verdict and signal",
                   ["verdict", "signal"], registry=_OWN)
LATENCY = Histogram("moderate_check_seconds", "Time to check one input (decode, match, judge, record)",
                    ["route"], registry=_OWN,
                    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60))


def observe(verdict: Verdict, seconds: float, route: str) -> None:
    CHECKS.labels(verdict.verdict).inc()
    for signal in {r.signal or ("error" if r.rule == "on_error" else "other") for r in verdict.reasons}:
        EVIDENCE.labels(verdict.verdict, signal).inc()
    LATENCY.labels(route).observe(seconds)


class Shared:
    """Figures read at scrape time from the data folder and the index."""

    def __init__(self, engine: Engine, index_seen: dict):
        self.engine, self.index_seen = engine, index_seen

    def collect(self):
        from ..sinks.webhooks import Outbox

        stats = self.engine.queue.stats()
        depth = GaugeMetricFamily("moderate_queue_items", "Review items waiting, by state", labels=["state"])
        for state in ("open", "claimed"):
            depth.add_metric([state], stats[state])
        yield depth
        yield GaugeMetricFamily("moderate_queue_oldest_item_age_seconds", "Age of the oldest undecided item",
                                value=stats["oldest_waiting_seconds"] or 0)
        snapshot = self.engine.catalog.current()
        yield GaugeMetricFamily("moderate_index_hashes", "PDQ hashes in the index", value=len(snapshot.pdq))
        yield GaugeMetricFamily("moderate_index_keypoint_images", "Reference images with local features in the index",
                                value=len(snapshot.keypoints.images))
        seen = self.index_seen.get(snapshot.generation)
        yield GaugeMetricFamily("moderate_index_age_seconds", "Seconds since this server loaded the current index",
                                value=time.monotonic() - seen if seen else 0)
        outbox = Outbox(self.engine.data_dir).stats()
        deliveries = GaugeMetricFamily("moderate_webhook_deliveries", "Webhook deliveries in the outbox, by status",
                                       labels=["status"])
        for status in ("pending", "delivered", "failed"):
            deliveries.add_metric([status], outbox[status])
        yield deliveries
        yield CounterMetricFamily("moderate_webhook_failed_attempts", "Webhook delivery attempts that failed",
                                  value=outbox["failed_attempts"])


def exposition(shared: Shared) -> tuple[bytes, str]:
    registry = CollectorRegistry()
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client.multiprocess import MultiProcessCollector

        MultiProcessCollector(registry)
    else:
        for collector in (CHECKS, EVIDENCE, LATENCY):
            registry.register(collector)
    registry.register(shared)
    return generate_latest(registry), CONTENT_TYPE_LATEST
