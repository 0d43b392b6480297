"""`GET /metrics` of the control plane (metrics token), in the Prometheus text format.

Requests are counted by route (the URL rule, so `/v1/packs/<name>` is one series whatever
the name) and status, and timed; telemetry ingest records by result from the ingest
answer; the recalibration schedule's runs by result. What is published is read from the edge store's manifest when scraped: its history
holds every publish, recalibration and rollback, whichever process (API, CLI, scheduler)
made it, so the counts survive restarts and agree with what the edges are served.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

from flask import Flask, Response, current_app, g, request
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import generate_latest
from prometheus_client.registry import Collector

from edge_module.distribution.edge_store import EdgeStore, StoreError

from .auth import require
from .distribution import publishing

DURATION_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
INGEST_ENDPOINT = "telemetry.ingest"
RECALIBRATION_RESULTS = ("published", "unchanged", "skipped", "failed")


# A method is a label only when it is one of these: a client inventing methods must not
# add a series (and memory) per request.
_METHODS = frozenset(("GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"))

class ControlMetrics:
    """One app's metrics: its own registry (several apps may live in one process)."""

    def __init__(self, store: EdgeStore) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter("control_requests", "Requests answered, by route (URL rule; "
                                "'unmatched' for none), method and status",
                                ["route", "method", "status"], registry=self.registry)
        self.duration = Histogram("control_request_duration_seconds", "Time to answer a "
                                  "request, by route", ["route"], registry=self.registry,
                                  buckets=DURATION_BUCKETS)
        self.ingested = Counter("control_telemetry_records", "Telemetry records ingested, by "
                                "result: accepted, duplicate (stored before), rejected",
                                ["result"], registry=self.registry)
        self.rejected = Counter("control_telemetry_rejected", "Telemetry records rejected, "
                                "by reason code", ["reason"], registry=self.registry)
        self.recalibrations = Counter("control_recalibration_runs", "Runs of this control "
                                      "plane's recalibration schedule, by result: published "
                                      "(a new revision), unchanged (nothing moved), skipped "
                                      "(nothing to re-tune, or a rollback is current), failed",
                                      ["result"], registry=self.registry)
        for result in RECALIBRATION_RESULTS:  # every series exists from the start
            self.recalibrations.labels(result)
        self.registry.register(PublishedCollector(store))

    def recalibrated(self, result: str) -> None:
        self.recalibrations.labels(result).inc()

    def answered(self, route: str, method: str, status: int, seconds: float) -> None:
        self.requests.labels(route, method, str(status)).inc()
        self.duration.labels(route).observe(seconds)

    def ingest_answer(self, doc: Any) -> None:
        """Count the records of one ingest answer (`accepted`, `duplicates`, by code)."""
        if not isinstance(doc, dict):
            return
        self.ingested.labels("accepted").inc(int(doc.get("accepted") or 0))
        self.ingested.labels("duplicate").inc(int(doc.get("duplicates") or 0))
        for code, n in (doc.get("rejected_by_code") or {}).items():
            self.ingested.labels("rejected").inc(int(n))
            self.rejected.labels(str(code)).inc(int(n))

    def render(self) -> bytes:
        return generate_latest(self.registry)


class PublishedCollector(Collector):
    """What the manifest says, read at each scrape: the current revision and how many
    publishes (by source) and rollbacks it records."""

    def __init__(self, store: EdgeStore) -> None:
        self.store = store

    def collect(self) -> Iterator[Metric]:
        reachable = GaugeMetricFamily("control_edge_store_up", "1 if the edge store's "
                                      "manifest could be read at this scrape")
        try:  # as the API reads it: only what this control plane signed (manifest_trust)
            doc, _, set_aside = publishing.manifest_view(self.store)
        except StoreError:  # away or unreadable: the series below are absent this time
            reachable.add_metric([], 0)
            yield reachable
            return
        reachable.add_metric([], 1)
        yield reachable
        untrusted = GaugeMetricFamily("control_manifest_untrusted", "Reasons entries of the "
                                      "store's manifest were set aside at this scrape (not "
                                      "signed by this control plane, or replayed); above 0: "
                                      "someone else writes to the store")
        untrusted.add_metric([], len(set_aside))
        yield untrusted
        if doc is None:  # nothing published yet
            return
        revision = GaugeMetricFamily("control_published_revision", "The revision the "
                                     "manifest makes current (what edges should serve)")
        revision.add_metric([], int(doc["revision"]))
        yield revision
        publishes = CounterMetricFamily("control_publishes", "Revisions published, by "
                                        "source: publish (API or CLI) or recalibration",
                                        labels=["source"])
        rollbacks = CounterMetricFamily("control_rollbacks", "Rollbacks to an earlier "
                                        "revision")
        counts = {"publish": 0, "recalibration": 0}
        rolled_back = 0
        for entry in doc.get("history") or ():
            if entry.get("rollback_from") is not None:
                rolled_back += 1
            elif entry.get("recalibrated_from") is not None:
                counts["recalibration"] += 1
            else:
                counts["publish"] += 1
        for source, n in counts.items():
            publishes.add_metric([source], n)
        rollbacks.add_metric([], rolled_back)
        yield publishes
        yield rollbacks


def install(app: Flask, store: EdgeStore) -> None:
    """Count and time every request of `app`, and serve `GET /metrics` (metrics token)."""
    metrics = ControlMetrics(store)
    app.extensions["metrics"] = metrics

    @app.before_request
    def start_clock() -> None:
        g.metrics_started = time.perf_counter()

    @app.after_request
    def count(response: Response) -> Response:
        started = g.pop("metrics_started", None)
        rule = request.url_rule
        route = rule.rule if rule is not None else "unmatched"
        elapsed = time.perf_counter() - started if started is not None else 0.0
        method = request.method if request.method in _METHODS else "other"
        metrics.answered(route, method, response.status_code, elapsed)
        if request.endpoint == INGEST_ENDPOINT and response.status_code == 200:
            metrics.ingest_answer(response.get_json(silent=True))
        return response

    @app.get("/metrics")
    @require("metrics")
    def scrape() -> Any:
        body = current_app.extensions["metrics"].render()
        return Response(body, content_type=CONTENT_TYPE_LATEST)
