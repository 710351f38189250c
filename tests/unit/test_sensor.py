"""The worker's Prometheus sensor keeps its labelled series, and records exactly what faust's
own sensor records: the same series with the same values, before and after a rebalance (which
removes the topic and partition series)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from faust.sensors.prometheus import FaustMetrics, PrometheusMonitor
from faust.types import TP
from prometheus_client import CollectorRegistry

from hotline.bootstrap import bootstrap
from hotline.settings import Settings
from streams.app import create_app
from streams.sensor import CachedPrometheusMonitor


class _Task:
    pass


class _Stream:
    shortlabel = "Stream: Topic: hotline-workorders.received"

    def __init__(self) -> None:
        self.task_owner = _Task()


class _Message:
    time_in: float | None = None


class _App:
    rebalancing_count = 1


def _traffic(monitor: PrometheusMonitor, stream: _Stream, tps: list[TP], start: int) -> None:
    """What the consumer and an agent's stream report for each message."""
    for i in range(6):
        tp = tps[i % len(tps)]
        offset = start + i
        monitor.track_tp_end_offset(tp, offset + 100)
        message = _Message()
        monitor.on_message_in(tp, offset, message)
        state = monitor.on_stream_event_in(tp, offset, stream, message)  # type: ignore[arg-type]
        monitor.on_stream_event_out(tp, offset, stream, message, state)  # type: ignore[arg-type]
        monitor.on_message_out(tp, offset, message)  # type: ignore[arg-type]


def _samples(registry: CollectorRegistry) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample except the timings (they differ between any two runs)."""
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for metric in registry.collect()
        for s in metric.samples
        if not s.name.endswith(("_created", "_sum")) and "latency" not in s.name
    }


def _run(cls: type[PrometheusMonitor]) -> dict[Any, float]:
    registry = CollectorRegistry()
    monitor = cls(metrics=FaustMetrics.create(registry, "faust"))
    stream = _Stream()
    _traffic(monitor, stream, [TP("t.received", 0), TP("t.received", 1)], 10)
    app = _App()
    state = monitor.on_rebalance_start(app)  # type: ignore[arg-type]
    monitor.on_rebalance_end(app, state)  # type: ignore[arg-type]
    _traffic(monitor, stream, [TP("t.received", 1), TP("t.events", 0)], 40)
    return _samples(registry)


def test_the_cached_sensor_records_what_fausts_records() -> None:
    theirs, ours = _run(PrometheusMonitor), _run(CachedPrometheusMonitor)
    assert ours == theirs
    # after the rebalance: partition 0 of the received topic is gone, the new series are there
    end = "faust_topic_partition_end_offset"
    assert ours[(end, (("partition", "1"), ("topic", "t.received")))] == 144
    assert ours[(end, (("partition", "0"), ("topic", "t.events")))] == 145
    assert (end, (("partition", "0"), ("topic", "t.received"))) not in ours
    assert ours[("faust_messages_received_total", ())] == 12
    assert ours[("faust_total_events_per_stream_total",
                 (("stream", "stream.topic_hotline-workorders.received.events"),))] == 12


def test_the_worker_app_uses_the_cached_sensor_and_serves_metrics(tmp_path: Path) -> None:
    settings = Settings(database_url=f"sqlite:///{tmp_path / 'w.db'}",
                        kafka_bootstrap="127.0.0.1:1")  # nothing connects until it starts
    core = bootstrap(settings, registry=CollectorRegistry())
    app = create_app(settings, hotline_app=core)
    monitor = app.monitor
    assert isinstance(monitor, CachedPrometheusMonitor)
    assert "/metrics" in app.web.views  # faust's page of the sensor's metrics
    registry = core.router.metrics.registry
    monitor.on_message_in(TP("t", 0), 3, _Message())
    assert registry.get_sample_value("faust_messages_received_total") == 1
    # the series are faust's own (registered once): registering them again clashes
    with pytest.raises(ValueError, match="Duplicated"):
        FaustMetrics.create(registry, "faust")
