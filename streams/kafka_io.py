"""kafka-python at the edges: the intake producer, the units' feed consumer, lifecycle events
from units / revisit staff / dispatchers, and topic administration."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterable
from typing import Any

from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer
from kafka.admin import NewTopic
from kafka.errors import TopicAlreadyExistsError

from hotline.settings import Settings
from models.lifecycle import LifecycleEvent
from streams.app import BY_ENTERPRISE, EVENTS, RECEIVED
from streams.handlers import DISPATCHED, DLQ, FEED_PREFIX
from streams.partitioning import intake_partition

log = logging.getLogger(__name__)


def producer(settings: Settings, **extra: Any) -> KafkaProducer:
    """An idempotent producer, acks from all in-sync replicas."""
    return KafkaProducer(
        bootstrap_servers=settings.kafka_bootstrap,
        acks="all",
        enable_idempotence=True,
        linger_ms=5,
        retries=10,
        **extra,
    )


def _key(message: Any) -> bytes | None:
    """The order id is the key, so one order's messages stay in one partition, in order."""
    value: Any = message
    if isinstance(message, bytes | str):
        try:
            value = json.loads(message)
        except (ValueError, UnicodeDecodeError):
            return None
    if isinstance(value, dict):
        oid = value.get("order_id", value.get("工单编号"))
        if isinstance(oid, str | int) and not isinstance(oid, bool):
            return str(oid).encode()
    return None


def _value(message: Any) -> bytes:
    if isinstance(message, bytes):
        return message
    if isinstance(message, str):
        return message.encode("utf-8")
    return json.dumps(message, ensure_ascii=False, default=str).encode("utf-8")


def received_partitions(prod: KafkaProducer, topic: str) -> int | None:
    """How many partitions `topic` has (from the producer's metadata), or None if unknown."""
    parts = prod.partitions_for(topic)
    return len(parts) if parts else None


def intake_partition_of(message: Any, partitions: int | None, settings: Settings) -> int | None:
    """The partition for a raw intake message: its enterprise's home partition
    (`streams.partitioning`), so the worker can route it without a repartition hop; None
    (the default partitioner, on the order id) when the topic's size is unknown or the message
    is one the worker will dead-letter."""
    if not partitions:
        return None
    return intake_partition(message, partitions, max_text_chars=settings.max_text_chars)


def ingest(settings: Settings, messages: Iterable[Any]) -> int:
    """Send raw intake messages to `workorders.received`; returns how many were acknowledged.
    Messages are sent as they are (bad ones too): validation is the pipeline's job, and a bad
    message must reach the dead-letter topic with its reason rather than vanish here. Each
    valid order goes to its enterprise's home partition, keyed by its order id."""
    prod = producer(settings)
    topic = settings.topic(RECEIVED)
    partitions = received_partitions(prod, topic)
    futures = [
        prod.send(topic, key=_key(m), value=_value(m),
                  partition=intake_partition_of(m, partitions, settings))
        for m in messages
    ]
    prod.flush()
    sent = sum(1 for f in futures if f.get(timeout=30) is not None)
    prod.close()
    return sent


def send_events(settings: Settings, events: Iterable[LifecycleEvent]) -> int:
    prod = producer(settings)
    topic = settings.topic(EVENTS)
    futures = [
        prod.send(topic, key=e.order_id.encode(), value=_value(e.to_json())) for e in events
    ]
    prod.flush()
    n = sum(1 for f in futures if f.get(timeout=30) is not None)
    prod.close()
    return n


def topic_names(settings: Settings, unit_codes: Iterable[str]) -> list[str]:
    base = [RECEIVED, BY_ENTERPRISE, DISPATCHED, EVENTS, DLQ]
    return [settings.topic(t) for t in base] + [settings.topic(FEED_PREFIX + c) for c in unit_codes]


def ensure_topics(settings: Settings, unit_codes: Iterable[str]) -> list[str]:
    """Create the product's topics (idempotent); returns the ones created now."""
    admin = KafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap, client_id="hotline-admin")
    try:
        existing = set(admin.list_topics())
        wanted = [t for t in topic_names(settings, unit_codes) if t not in existing]
        created: list[str] = []
        for name in wanted:
            try:
                admin.create_topics(
                    [NewTopic(name=name, num_partitions=settings.partitions, replication_factor=1)]
                )
                created.append(name)
            except TopicAlreadyExistsError:
                pass
        return created
    finally:
        admin.close()


def consume_feed(
    settings: Settings,
    unit_code: str,
    handle: Callable[[dict[str, Any]], None],
    *,
    group: str | None = None,
    max_messages: int | None = None,
    idle_timeout_ms: int = 0,
) -> int:
    """A unit's consumer of its own feed `dispatch.<code>`; commits only after `handle` returns.

    With `idle_timeout_ms` it stops after that long without a message (0 = run until stopped).
    """
    consumer = KafkaConsumer(
        settings.topic(FEED_PREFIX + unit_code),
        bootstrap_servers=settings.kafka_bootstrap,
        group_id=group or f"unit-{unit_code}",
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        consumer_timeout_ms=idle_timeout_ms or float("inf"),
    )
    n = 0
    try:
        for record in consumer:
            handle(json.loads(record.value))
            consumer.commit()
            n += 1
            if max_messages is not None and n >= max_messages:
                break
    finally:
        consumer.close()
    return n

