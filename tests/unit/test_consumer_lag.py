"""The consumer-lag gauge: highwater minus committed offset per partition."""

from __future__ import annotations

from typing import NamedTuple

from prometheus_client import CollectorRegistry

from hotline.metrics import Metrics
from streams.lag import compute_lags, publish_lags


class TP(NamedTuple):
    topic: str
    partition: int


def test_lag_is_highwater_minus_committed() -> None:
    a, b, c = TP("workorders.received", 0), TP("workorders.received", 1), TP("x", 0)
    lags = compute_lags({a: 120, b: 40, c: None}, {a: 100, b: None}, {b: 10})
    assert lags == {("workorders.received", 0): 20, ("workorders.received", 1): 30}


def test_lag_never_negative() -> None:
    tp = TP("t", 0)
    assert compute_lags({tp: 5}, {tp: 9}, {}) == {("t", 0): 0}


def test_publish_replaces_revoked_partitions() -> None:
    registry = CollectorRegistry()
    gauge = Metrics(registry).consumer_lag
    publish_lags(gauge, {("t", 0): 7, ("t", 1): 3})
    publish_lags(gauge, {("t", 1): 2})
    labels = {"topic": "t", "partition": "1"}
    assert registry.get_sample_value("hotline_consumer_lag", labels) == 2
    assert registry.get_sample_value("hotline_consumer_lag", {"topic": "t", "partition": "0"}) is None
