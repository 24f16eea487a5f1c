"""``GET /metrics``: ferry's figures in Prometheus' text format.

Each app has its own :class:`prometheus_client.CollectorRegistry`, never the
process-wide one, so two apps in one process (tests, or a server rebuilt) do
not collide. Two sources feed it:

- :class:`RecordsCollector`: what the job records add up to, read from the
  database at each scrape (:meth:`ferry.service.FerryService.figures`). Every
  server sharing the database shows the same moves, and a restart loses none.
- ``ferry_preflight_refusals_total``: refusals are answers, not records, so
  this server counts the ones it gave since it started, in memory.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from fastapi import Depends, FastAPI, Request, Response
from prometheus_client import CollectorRegistry, Counter
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.exposition import choose_encoder

from ferry import figures
from ferry.auth.model import Principal
from ferry.checks.finding import Finding, errors
from ferry.figures import DOWNTIME_BOUNDS_S, DURATION_BOUNDS_S, Histogram
from ferry.service import FerryService

METRICS_PATH = "/metrics"


class RecordsCollector:
    """The figures of the job records and of this server's inventory, read at each scrape."""

    def __init__(self, service: FerryService) -> None:
        self._service = service

    def collect(self) -> Iterable[Metric]:
        now = self._service.figures()
        records = now.records
        moves = CounterMetricFamily(
            "ferry_migrations", "Moves that ended, by kind and result (from the job records)",
            labels=["kind", "result"])
        for (kind, result), count in figures.finished_moves(records.counts).items():
            moves.add_metric([kind, result], count)
        yield moves
        yield _histogram("ferry_migration_duration_seconds",
                         "A move's total time, from its start to its end, by kind and result",
                         ["kind", "result"],
                         figures.histograms(records.durations, DURATION_BOUNDS_S))
        yield _histogram("ferry_migration_downtime_seconds",
                         "A live move's downtime as libvirt measured it, by kind",
                         ["kind"], figures.histograms(records.downtimes, DOWNTIME_BOUNDS_S,
                                                      by_result=False))
        sent = CounterMetricFamily(
            "ferry_migration_sent_bytes", "Bytes live moves sent (memory, and disks copied "
            "with it), as their reports say", labels=["kind"])
        for kind, count in figures.sent_bytes(records.counts).items():
            sent.add_metric([kind], count)
        yield sent
        queued = GaugeMetricFamily("ferry_migrations_queued",
                                   "Moves waiting for a migration slot", labels=["kind"])
        for kind, count in figures.queued_moves(records.counts).items():
            queued.add_metric([kind], count)
        yield queued
        in_use = GaugeMetricFamily("ferry_migration_slots_in_use",
                                   "Moves holding a migration slot on the host", labels=["host"])
        limit = GaugeMetricFamily("ferry_migration_slots",
                                  "The host's migration slots (its max migrations)",
                                  labels=["host"])
        for host, (used, slots) in sorted(figures.slot_use(now.hosts, now.slots_in_use).items()):
            in_use.add_metric([host], used)
            limit.add_metric([host], slots)
        yield in_use
        yield limit
        hosts = GaugeMetricFamily("ferry_hosts", "Registered hosts by connection state, as "
                                  "this server sees them", labels=["state"])
        for state, count in figures.hosts_by_state(now.hosts).items():
            hosts.add_metric([state], count)
        yield hosts


def _histogram(name: str, documentation: str, labels: list[str],
               found: list[Histogram]) -> HistogramMetricFamily:
    family = HistogramMetricFamily(name, documentation, labels=labels)
    for h in found:
        family.add_metric(list(h.labels), [(_bound(b), float(n)) for b, n in h.buckets],
                          sum_value=h.total)
    return family


def _bound(bound: float) -> str:
    return "+Inf" if bound == float("inf") else repr(bound)


class Metrics:
    """An app's registry: the records' collector and this server's refusal counter."""

    def __init__(self, service: FerryService) -> None:
        self.registry = CollectorRegistry()
        self.registry.register(RecordsCollector(service))
        self._refusals = Counter(
            "ferry_preflight_refusals", "Pre-flight errors that refused a request, by check "
            "code and request (check, migration); counted by this server since it started",
            ["code", "request"], registry=self.registry)

    def refused(self, request: str, findings: Iterable[Finding]) -> None:
        """``request`` (check, migration) was refused for the error findings of ``findings``."""
        for finding in errors(list(findings)):
            self._refusals.labels(code=finding.code, request=request).inc()

    def exposition(self, accept: str | None) -> Response:
        encoder, content_type = choose_encoder(accept or "")
        return Response(encoder(self.registry), media_type=content_type)


def add_metrics_route(app: FastAPI, metrics: Metrics,
                      authorize: Callable[..., Principal]) -> None:
    """``GET /metrics``, outside the versioned API (where Prometheus looks by default) and
    guarded like it: its rule is in :data:`ferry.auth.roles.ROUTES`."""

    @app.get(METRICS_PATH, include_in_schema=False, dependencies=[Depends(authorize)])
    def scrape(request: Request) -> Response:
        return metrics.exposition(request.headers.get("accept"))
