"""Prometheus metrics of one central: what ops graph and alert on (served at /metrics by the API).

    cityedge_ingest_records_total{kind}             readings, events, results stored (duplicates not)
    cityedge_ingest_batches_{received,stored,duplicate}_total   stored: acked; duplicate: held already
    cityedge_ingest_quarantined_total{reason}       refused messages, by the fleet protocol's reasons
    cityedge_ingest_acks_total{outcome}             sent, failed
    cityedge_ingest_pending_batches                 waiting for the writer
    cityedge_ingest_ack_latency_seconds             histogram: a batch's receipt to its ack sent
    cityedge_mqtt_connected, cityedge_mqtt_connects_total
    cityedge_command_publishes_total{outcome}       sent, failed (the broker did not take it)
    cityedge_command_resends_total                  of those sent, the ones sent again
    cityedge_commands_expired_total                 marked expired by central (no answer in time)
    cityedge_cabinets, cityedge_cabinets_online     known cabinets, online ones (read at each scrape)
    cityedge_cabinet_backlog_records{cabinet}       records buffered at the edge: the top N cabinets
    cityedge_store_up                               0 when the store failed the scrape's read
    cityedge_store_operation_seconds{operation}     histogram: each store call (``write``: a group)
    cityedge_api_request_seconds{method,route,status}  histogram, by route template (central.api.metrics)
    process_*                                       CPU, memory, file descriptors of this process

Every label has a bounded set of values: reasons and operations are names in the code, routes are the
app's templates, cabinets only the top N. Each ``CentralMetrics`` has its own registry, so several
centrals in one process (tests, benchmarks) never share a series. Counters of ingest and dispatch are
read from their stats at scrape time: the hot path counts once, for /health and for this.
"""

from __future__ import annotations

import heapq
import inspect
import logging
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import Any, cast

from prometheus_client import CollectorRegistry, Gauge, Histogram, ProcessCollector, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from central.dispatch import DispatchStats
from central.errors import StoreError
from central.ingest_stats import IngestSnapshot
from central.store import FleetReads, Store

logger = logging.getLogger(__name__)

DEFAULT_TOP_BACKLOGS = 20
MAX_TOP_BACKLOGS = 1_000
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

_FAST = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
_ACK = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)


class CentralMetrics:
    """The instruments of one central, in a registry of its own."""

    def __init__(self, *, top_backlogs: int = DEFAULT_TOP_BACKLOGS) -> None:
        if not 0 <= top_backlogs <= MAX_TOP_BACKLOGS:
            raise ValueError(f"top_backlogs must be within 0..{MAX_TOP_BACKLOGS}, got {top_backlogs}")
        self._top_backlogs = top_backlogs
        self.registry = registry = CollectorRegistry()
        ProcessCollector(registry=registry)
        self.ack_latency = Histogram(
            "cityedge_ingest_ack_latency_seconds",
            "From a batch's receipt to its ack handed to the MQTT session (group commit included)",
            buckets=_ACK,
            registry=registry,
        )
        self.store_latency = Histogram(
            "cityedge_store_operation_seconds",
            "Duration of each store call, by operation (write: one group of batches)",
            ["operation"],
            buckets=_FAST,
            registry=registry,
        )
        self.api_latency = Histogram(
            "cityedge_api_request_seconds",
            "HTTP requests by method, route template and status class",
            ["method", "route", "status"],
            buckets=_FAST,
            registry=registry,
        )
        self._cabinets = Gauge("cityedge_cabinets", "Cabinets central knows", registry=registry)
        self._online = Gauge(
            "cityedge_cabinets_online", "Cabinets whose last status is online", registry=registry
        )
        self._backlog = Gauge(
            "cityedge_cabinet_backlog_records",
            f"Records buffered at the edge, as last reported; the {top_backlogs} largest only",
            ["cabinet"],
            registry=registry,
        )
        self._store_up = Gauge(
            "cityedge_store_up", "1 when the store answered the scrape's read", registry=registry
        )

    def watch_ingest(self, stats: Callable[[], IngestSnapshot]) -> None:
        """Expose the ingest counters, read from ``stats()`` at each scrape."""
        self.registry.register(_IngestCollector(stats))

    def watch_dispatch(self, stats: DispatchStats) -> None:
        """Expose the command dispatcher's counters."""
        self.registry.register(_DispatchCollector(stats))

    def timed(self, store: Store) -> Store:
        """``store``, with the duration of each of its calls observed in ``store_latency``."""
        # A proxy rather than a class spelling out each method: the Store interface grows, and a
        # method added to it is timed without a change here.
        return cast(Store, _TimedStore(store, self.store_latency))

    async def exposition(self, fleet: FleetReads) -> bytes:
        """The text format of every metric, the fleet's gauges read from ``fleet`` now."""
        try:
            cabinets = await fleet.cabinets()
        except StoreError as exc:
            # The metrics still answer, without the fleet's: a store down is when ops look.
            logger.warning("metrics: the store failed the cabinets read: %s", exc)
            self._store_up.set(0)  # the fleet's gauges keep their last values: stale, and said so
        else:
            self._store_up.set(1)
            self._cabinets.set(len(cabinets))
            self._online.set(sum(1 for c in cabinets if c.online))
            top = heapq.nlargest(
                self._top_backlogs, (c for c in cabinets if c.backlog > 0), key=lambda c: c.backlog
            )
            self._backlog.clear()  # a cabinet out of the top N leaves: the cardinality stays bounded
            for cabinet in top:
                self._backlog.labels(cabinet.id).set(cabinet.backlog)
        return generate_latest(self.registry)


class _IngestCollector(Collector):
    def __init__(self, stats: Callable[[], IngestSnapshot]) -> None:
        self._stats = stats

    def collect(self) -> Iterable[Metric]:
        s = self._stats()
        records = {"readings": s.readings_stored, "events": s.events_stored, "results": s.results_stored}
        yield _counter("cityedge_ingest_records", "Records stored (not duplicates)", "kind", records)
        yield _total("cityedge_ingest_batches_received", "Data batches received", s.batches_received)
        yield _total("cityedge_ingest_batches_stored", "Data batches stored, then acked", s.batches_stored)
        yield _total("cityedge_ingest_batches_duplicate", "Batches held already", s.duplicate_batches)
        yield _counter("cityedge_ingest_quarantined", "Messages quarantined", "reason", s.rejected)
        acks = {"sent": s.acks_sent, "failed": s.acks_failed}
        yield _counter("cityedge_ingest_acks", "Acks published, or not", "outcome", acks)
        yield _total("cityedge_ingest_commits", "Group commits of ingest", s.commits)
        yield _total("cityedge_ingest_store_errors", "Group writes that failed", s.store_errors)
        yield GaugeMetricFamily(
            "cityedge_ingest_pending_batches", "Batches to store", value=s.pending_batches
        )
        yield GaugeMetricFamily("cityedge_mqtt_connected", "1 while the link is up", value=s.mqtt_connected)
        yield _total("cityedge_mqtt_connects", "MQTT sessions opened", s.connects)


class _DispatchCollector(Collector):
    def __init__(self, stats: DispatchStats) -> None:
        self._stats = stats

    def collect(self) -> Iterable[Metric]:
        s = self._stats
        publishes = {"sent": s.published, "failed": s.publish_failed}
        yield _counter("cityedge_command_publishes", "Commands published, or not", "outcome", publishes)
        yield _total("cityedge_command_resends", "Commands sent again (of those sent)", s.republished)
        yield _total("cityedge_commands_expired", "Commands expired by central", s.expired)


def _total(name: str, documentation: str, value: int) -> CounterMetricFamily:
    return CounterMetricFamily(name, documentation, value=value)


def _counter(name: str, documentation: str, label: str, values: Mapping[str, int]) -> CounterMetricFamily:
    family = CounterMetricFamily(name, documentation, labels=[label])
    for key, value in sorted(values.items()):
        family.add_metric([key], value)
    return family


class _TimedStore:
    """Forwards every attribute to the store; its coroutine methods are timed, by name."""

    def __init__(self, store: Store, histogram: Histogram) -> None:
        self._store = store
        self._histogram = histogram

    def __getattr__(self, name: str) -> Any:
        attribute = getattr(self._store, name)
        if not inspect.iscoroutinefunction(attribute):
            return attribute
        timed = _timed(attribute, self._histogram.labels(name).observe)
        setattr(self, name, timed)  # wrapped once: later lookups do not come here
        return timed


def _timed(
    call: Callable[..., Awaitable[Any]], observe: Callable[[float], None]
) -> Callable[..., Awaitable[Any]]:
    async def timed(*args: Any, **kwargs: Any) -> Any:
        started = time.perf_counter()
        try:
            return await call(*args, **kwargs)
        finally:
            observe(time.perf_counter() - started)

    return timed
