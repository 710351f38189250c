"""The real services work: Kafka keeps per-key order through an idempotent producer, and
PostgreSQL stores and returns SQLModel rows (including Chinese text) through psycopg 3."""

from __future__ import annotations

import asyncio
import time
from collections import defaultdict
from collections.abc import Iterator
from datetime import datetime
from zoneinfo import ZoneInfo

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.admin import NewTopic as AioNewTopic
from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer
from kafka.admin import NewTopic
from kafka.serializer import DefaultSerializer, JsonSerializer
from sqlalchemy import create_engine
from sqlalchemy.engine import Engine
from sqlalchemy.orm import registry
from sqlmodel import Field, Session, SQLModel, select

from tests.integration.conftest import make_topic_prefix

MESSAGES = 100
KEYS = [f"JS2024{n:06d}" for n in range(10)]  # work-order ids (工单编号) as message keys
PARTITIONS = 4
CONSUME_DEADLINE_S = 30.0


@pytest.fixture
def fresh_topic(kafka_bootstrap: str) -> Iterator[str]:
    """A new 4-partition topic, deleted after the test."""
    name = f"{make_topic_prefix('roundtrip')}orders"
    admin = KafkaAdminClient(bootstrap_servers=kafka_bootstrap, client_id="hotline-it-admin")
    admin.create_topics([NewTopic(name, num_partitions=PARTITIONS, replication_factor=1)])
    try:
        yield name
    finally:
        admin.delete_topics([name])
        admin.close()


def produce_keyed(bootstrap: str, topic: str) -> dict[str, list[int]]:
    """Send MESSAGES messages round-robin over KEYS; return the sequence numbers sent per key."""
    producer = KafkaProducer(
        bootstrap_servers=bootstrap,
        acks="all",
        enable_idempotence=True,
        linger_ms=5,
        key_serializer=DefaultSerializer(),
        value_serializer=JsonSerializer(),
    )
    sent: dict[str, list[int]] = defaultdict(list)
    futures = []
    try:
        for seq in range(MESSAGES):
            key = KEYS[seq % len(KEYS)]
            futures.append(producer.send(topic, key=key, value={"order_id": key, "seq": seq}))
            sent[key].append(seq)
        producer.flush(timeout=30)
        for future in futures:
            future.get(timeout=10)  # raises if any send failed
    finally:
        producer.close(timeout=10)
    return sent


def consume_all(bootstrap: str, topic: str, expected: int) -> list[tuple[int, str, int]]:
    """Read (partition, key, seq) from the start of `topic` until `expected` records arrive."""
    consumer = KafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        group_id=f"{topic}.reader",
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        key_deserializer=DefaultSerializer(),
        value_deserializer=JsonSerializer(),
    )
    records: list[tuple[int, str, int]] = []
    deadline = time.monotonic() + CONSUME_DEADLINE_S
    try:
        while len(records) < expected and time.monotonic() < deadline:
            for batch in consumer.poll(timeout_ms=500).values():
                records.extend((r.partition, r.key, r.value["seq"]) for r in batch)
    finally:
        consumer.close()
    return records


def test_idempotent_producer_round_trip_keeps_per_key_order(
    kafka_bootstrap: str, fresh_topic: str
) -> None:
    sent = produce_keyed(kafka_bootstrap, fresh_topic)
    records = consume_all(kafka_bootstrap, fresh_topic, MESSAGES)

    assert len(records) == MESSAGES
    received: dict[str, list[int]] = defaultdict(list)
    partitions_of_key: dict[str, set[int]] = defaultdict(set)
    for partition, key, seq in records:
        received[key].append(seq)
        partitions_of_key[key].add(partition)
    assert received == sent  # nothing lost, nothing duplicated, per-key order kept
    assert all(len(parts) == 1 for parts in partitions_of_key.values())
    assert len({p for parts in partitions_of_key.values() for p in parts}) > 1


async def aiokafka_round_trip(bootstrap: str, topic: str) -> list[tuple[str, str]]:
    """Create `topic` with aiokafka's admin client, send three records, read them back."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics(
            [AioNewTopic(topic, num_partitions=PARTITIONS, replication_factor=1)]
        )
    finally:
        await admin.close()
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", enable_idempotence=True)
    await producer.start()
    try:
        for seq in range(3):
            await producer.send_and_wait(topic, key=b"JS2024000001", value=f"签收-{seq}".encode())
    finally:
        await producer.stop()
    consumer = AIOKafkaConsumer(
        topic, bootstrap_servers=bootstrap, group_id=f"{topic}.reader",
        auto_offset_reset="earliest",
    )
    await consumer.start()
    try:
        batches = await consumer.getmany(timeout_ms=int(CONSUME_DEADLINE_S * 1000), max_records=3)
    finally:
        await consumer.stop()
    return [(r.key.decode(), r.value.decode()) for batch in batches.values() for r in batch]


def test_aiokafka_creates_topics_and_round_trips_on_this_broker(kafka_bootstrap: str) -> None:
    """faust talks to Kafka through aiokafka: topic creation must use a protocol version
    that Kafka 4.x still accepts (KIP-896 removed the old ones)."""
    topic = f"{make_topic_prefix('aiokafka')}events"
    try:
        received = asyncio.run(aiokafka_round_trip(kafka_bootstrap, topic))
    finally:
        admin = KafkaAdminClient(bootstrap_servers=kafka_bootstrap, client_id="hotline-it-admin")
        admin.delete_topics([topic])
        admin.close()
    assert received == [("JS2024000001", f"签收-{seq}") for seq in range(3)]


class _IsolatedModel(SQLModel, registry=registry()):
    """Own metadata, so this probe table never leaks into the app's `SQLModel.metadata`."""


class ServiceProbe(_IsolatedModel, table=True):
    __tablename__ = "it_service_probe"

    id: int | None = Field(default=None, primary_key=True)
    order_id: str = Field(index=True)
    content: str
    received_at: datetime


PROBE_ROWS = [
    ("JS2024000001", "金山区某企业反映道路施工影响出入"),
    ("JS2024000002", "企业咨询稳岗补贴申领流程"),
]


@pytest.fixture
def pg_engine(pg_url: str) -> Iterator[Engine]:
    engine = create_engine(pg_url)
    _IsolatedModel.metadata.drop_all(engine)
    _IsolatedModel.metadata.create_all(engine)
    try:
        yield engine
    finally:
        _IsolatedModel.metadata.drop_all(engine)
        engine.dispose()


def test_sqlmodel_create_insert_select_on_postgresql(pg_engine: Engine) -> None:
    assert pg_engine.dialect.name == "postgresql"
    received_at = datetime(2024, 5, 6, 9, 30, tzinfo=ZoneInfo("Asia/Shanghai"))
    with Session(pg_engine) as session:
        session.add_all(
            ServiceProbe(order_id=order_id, content=content, received_at=received_at)
            for order_id, content in PROBE_ROWS
        )
        session.commit()

    with Session(pg_engine) as session:
        found = session.exec(select(ServiceProbe).order_by(ServiceProbe.order_id)).all()

    assert [(r.order_id, r.content) for r in found] == PROBE_ROWS
    assert all(r.received_at == received_at for r in found)
    assert all(r.id is not None for r in found)
