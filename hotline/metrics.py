"""Domain metrics (Prometheus). One `Metrics` per process; tests pass their own registry."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge, Histogram


class Metrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        reg = registry if registry is not None else REGISTRY
        self.registry = reg
        self._children: dict[tuple[int, tuple[str, ...]], Any] = {}
        self.received = Counter(
            "hotline_orders_received", "Work orders received (工单受理)", ["channel"], registry=reg
        )
        self.dispatched = Counter(
            "hotline_orders_dispatched",
            "Work orders dispatched (派单), per lead unit and rule",
            ["unit", "rule"],
            registry=reg,
        )
        self.manual = Counter(
            "hotline_orders_manual", "Orders sent to the manual queue (人工派单)", registry=reg
        )
        self.manual_queue = Gauge(
            "hotline_manual_queue_size", "Orders waiting in the manual queue", registry=reg
        )
        self.overdue = Gauge("hotline_overdue_orders", "Open orders past a deadline", registry=reg)
        self.unit_open = Gauge(
            "hotline_unit_open_orders",
            "Open orders per lead unit and state (各单位在办工单)",
            ["unit", "state"],
            registry=reg,
        )
        self.reopens = Counter("hotline_reopens", "Orders reopened (重办)", ["unit"], registry=reg)
        self.supervised = Counter(
            "hotline_supervised", "Orders put under supervision (督办)", ["unit"], registry=reg
        )
        self.returns = Counter("hotline_returns", "Orders returned (退单)", ["unit"], registry=reg)
        self.dead_letters = Counter(
            "hotline_dead_letters", "Messages dead-lettered, by reason code", ["reason"], registry=reg
        )
        self.events = Counter(
            "hotline_lifecycle_events", "Lifecycle events by kind and outcome", ["kind", "outcome"],
            registry=reg,
        )
        self.classification = Histogram(
            "hotline_classification_seconds",
            "Classifier latency per batch",
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5),
            registry=reg,
        )
        self.dispatch_latency = Histogram(
            "hotline_dispatch_latency_seconds",
            "From receipt to dispatch decision persisted",
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
            registry=reg,
        )
        self.rewinds = Counter(
            "hotline_consumer_rewinds",
            "Partitions sent back to their committed offset after stopping short (缺口自愈)",
            ["topic"], registry=reg,
        )
        self.consumer_lag = Gauge(
            "hotline_consumer_lag", "Consumer lag per topic partition", ["topic", "partition"],
            registry=reg,
        )

    def set_unit_open(self, counts: Mapping[tuple[str, str], int]) -> None:
        """Replace the per-unit open-order gauge with ``{(unit, state): n}``."""
        self.unit_open.clear()
        for (unit, state), n in counts.items():
            self.unit_open.labels(unit, state).set(n)

    def child(self, metric: Any, *labels: str) -> Any:
        """`metric.labels(*labels)`, cached: labels() costs tens of µs per call on the hot path
        (label sets are few: units, rules, kinds, channels)."""
        key = (id(metric), labels)
        found = self._children.get(key)
        if found is None:
            found = self._children[key] = metric.labels(*labels)
        return found
