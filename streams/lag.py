"""Consumer lag (消费积压) for the Prometheus gauge ``hotline_consumer_lag{topic,partition}``.

Lag of a partition = its end offset (highwater, from the broker) minus the offset this worker
has committed (Kafka's convention: the next offset to process). A timer on the faust app
refreshes the gauge for the partitions assigned to this worker (table changelogs excluded);
revoked partitions disappear. Offsets are committed every second or so, so an idle worker
shows a small lag for up to a couple of refreshes.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import faust
from aiokafka.errors import KafkaError
from faust.exceptions import ConsumerNotStarted
from prometheus_client import Gauge

log = logging.getLogger(__name__)

LAG_INTERVAL_S = 10.0  # a refresh takes ~2 s of broker round trips on a busy machine


def compute_lags(
    end_offsets: Mapping[Any, int | None],
    committed: Mapping[Any, int | None],
    earliest: Mapping[Any, int | None],
) -> dict[tuple[str, int], int]:
    """Lag per (topic, partition): end offset minus committed offset; a partition with no
    committed offset yet counts from its earliest offset. Never negative."""
    lags: dict[tuple[str, int], int] = {}
    for tp, end in end_offsets.items():
        if end is None:
            continue
        done = committed.get(tp)
        if done is None:
            done = earliest.get(tp) or 0
        lags[(str(tp.topic), int(tp.partition))] = max(int(end) - int(done), 0)
    return lags


async def consumer_lags(consumer: Any) -> dict[tuple[str, int], int]:
    """Lags of the partitions assigned to a faust consumer."""
    # a table's changelog is written, not consumed, by its active worker: no lag to speak of
    tps = sorted(tp for tp in consumer.assignment() if not tp.topic.endswith("-changelog"))
    if not tps:
        return {}
    end_offsets = await consumer.highwaters(*tps)
    # faust keeps the offsets it committed (and those it found committed at assignment) here;
    # there is no public accessor in faust-streaming 0.15
    committed: Mapping[Any, int | None] = getattr(consumer, "_committed_offset", {})
    missing = [tp for tp in tps if committed.get(tp) is None]
    earliest = await consumer.earliest_offsets(*missing) if missing else {}
    return compute_lags(end_offsets, {tp: committed.get(tp) for tp in tps}, earliest)


def publish_lags(gauge: Gauge, lags: Mapping[tuple[str, int], int]) -> None:
    """Replace the gauge's series with ``lags`` (revoked partitions are dropped)."""
    gauge.clear()
    for (topic, partition), lag in lags.items():
        gauge.labels(topic, str(partition)).set(lag)


def install_lag_gauge(app: faust.App, gauge: Gauge, *, interval: float = LAG_INTERVAL_S) -> None:
    """Refresh ``gauge`` from the app's consumer every ``interval`` seconds."""

    @app.timer(interval=interval)
    async def consumer_lag() -> None:
        try:
            lags = await consumer_lags(app.consumer)
        except (ConsumerNotStarted, KafkaError) as exc:  # not started yet, or rebalancing
            log.info("consumer lag unavailable this round: %r", exc)
            return
        publish_lags(gauge, lags)
