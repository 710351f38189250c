"""Home partitions (streams.partitioning) and the intake agent's choice between routing an order
where it arrived and forwarding it to `workorders.by-enterprise` (streams.app.intake_handler)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from aiokafka.partitioner import DefaultPartitioner as AioPartitioner
from prometheus_client import CollectorRegistry

from hotline.bootstrap import App, bootstrap
from hotline.settings import Settings
from streams.app import BY_ENTERPRISE, RECEIVED, intake_handler
from streams.handlers import DISPATCHED, DLQ
from streams.intake import normalize
from streams.partitioning import enterprise_key, home_partition, intake_partition

PARTITIONS = 4
LIMIT = Settings().max_text_chars


def order(oid: str, **kw: Any) -> dict[str, Any]:
    return {"order_id": oid, "channel": "12345热线", "received_at": "2026-11-24T09:00:00",
            "title": "噪声扰民", "text": "某公司夜间施工噪声扰民，请相关部门处理", **kw}


#: murmur2 of these keys, from Apache Kafka's own tests (clients UtilsTest.testMurmur2)
JAVA_MURMUR2 = {"21": -973932308, "foobar": -790332482, "a-little-bit-long-string": -985981536,
                "a-little-bit-longer-string": -1486304829,
                "lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8": -58897971, "abc": 479470107}


@pytest.mark.parametrize("partitions", [1, 3, 4, 12])
def test_home_partition_is_the_kafka_clients_default_partition(partitions: int) -> None:
    for key, murmur in JAVA_MURMUR2.items():  # the Java client's partition
        assert home_partition(key, partitions) == (murmur & 0x7FFFFFFF) % partitions
    parts = list(range(partitions))
    for key in ["code:91310116MA1J8X2A3B", "name:上海某某机械有限公司", "order:GD1", "键"]:
        assert home_partition(key, partitions) == AioPartitioner()(key.encode(), parts, parts)


def test_home_partition_refuses_no_partitions() -> None:
    with pytest.raises(ValueError):
        home_partition("code:x", 0)


def test_intake_partition_reads_the_message_as_the_worker_does() -> None:
    raw = order("GD1", credit_code="91310116MA1J8X2A3B", enterprise_name="上海某某机械有限公司")
    key = enterprise_key(normalize(raw, max_text_chars=LIMIT))
    assert key == "code:91310116MA1J8X2A3B"
    expected = home_partition(key, PARTITIONS)
    assert intake_partition(raw, PARTITIONS, max_text_chars=LIMIT) == expected
    as_bytes = json.dumps(raw, ensure_ascii=False).encode()
    assert intake_partition(as_bytes, PARTITIONS, max_text_chars=LIMIT) == expected
    by_name = order("GD2", enterprise_name="上海某某机械有限公司")
    assert intake_partition(by_name, PARTITIONS, max_text_chars=LIMIT) == home_partition(
        "name:上海某某机械有限公司", PARTITIONS)


@pytest.mark.parametrize("raw", [b"\xff\xfe not json", b"{}", json.dumps(order("GD3", text="")).encode()])
def test_a_message_the_worker_will_dead_letter_has_no_home(raw: bytes) -> None:
    assert intake_partition(raw, PARTITIONS, max_text_chars=LIMIT) is None


# ---- the intake agent's handler, without Kafka ---------------------------------------------------
class Event:
    """What the handler reads of a faust event: its value and its partition."""

    def __init__(self, value: dict[str, Any] | bytes, partition: int) -> None:
        self.value = value if isinstance(value, bytes) else json.dumps(value).encode()
        self.message = SimpleNamespace(partition=partition)


class FakePipeline:
    """`streams.app.Pipeline` as the handlers use it, with the calls made in place."""

    def __init__(self, app: App, received_partitions: int | None, *,
                 leader: bool = True) -> None:
        """``leader``: the consumer is its group's leader, the only member whose faust
        `topic_partitions` knows the counts (aiokafka's assignment snapshot); any member's
        aiokafka consumer knows them from its cluster metadata."""
        self.router = app.router
        self.settings = SimpleNamespace(partitions=PARTITIONS)

        def metadata(topic: str) -> set[int] | None:
            if topic != "t." + RECEIVED or received_partitions is None:
                return None
            return set(range(received_partitions))

        self.app = SimpleNamespace(consumer=SimpleNamespace(
            topic_partitions=lambda topic: len(metadata(topic) or ()) or None if leader
            else None,
            _thread=SimpleNamespace(_consumer=SimpleNamespace(partitions_for_topic=metadata))))

    def topic(self, name: str) -> Any:
        return SimpleNamespace(get_topic_name=lambda: "t." + name)

    async def call(self, fn: Callable[..., Any], *args: Any) -> Any:
        return fn(*args)

    call_intake = call


@pytest.fixture
def app(tmp_path: Path) -> App:
    return bootstrap(Settings(database_url=f"sqlite:///{tmp_path / 'h.db'}"),
                     registry=CollectorRegistry())


class Table(dict[str, Any]):
    """The repeat table as the handler uses it: a missing enterprise reads as no orders."""

    def __missing__(self, key: str) -> dict[str, str]:
        return {}


def handle(app: App, events: list[Event], *, received_partitions: int | None = PARTITIONS,
           table: Table | None = None, leader: bool = True) -> list[Any]:
    repeats = Table() if table is None else table
    pipeline = FakePipeline(app, received_partitions, leader=leader)
    return asyncio.run(intake_handler(pipeline, repeats)(events))  # type: ignore[arg-type]


def topics(out: list[Any]) -> dict[str, list[Any]]:
    by: dict[str, list[Any]] = {}
    for m in out:
        by.setdefault(m.topic, []).append(m)
    return by


CODE = "91310116MA1J8X2A3B"
KEY = f"code:{CODE}"
HOME = home_partition(KEY, PARTITIONS)
AWAY = (HOME + 1) % PARTITIONS


def test_an_order_on_its_home_partition_is_routed_where_it_arrived(app: App) -> None:
    table = Table()
    out = topics(handle(app, [Event(order("GD1", credit_code=CODE), HOME)], table=table))
    assert BY_ENTERPRISE not in out
    assert [m.key for m in out[DISPATCHED]] == ["GD1"]
    assert list(table[KEY]) == ["GD1"]  # counted in the repeat table
    assert app.store.lifecycle("GD1").state.value != "收集"


def test_an_order_elsewhere_is_forwarded_by_its_enterprise(app: App) -> None:
    table = Table()
    out = topics(handle(app, [Event(order("GD1", credit_code=CODE), AWAY)], table=table))
    assert DISPATCHED not in out and not table
    [fwd] = out[BY_ENTERPRISE]
    assert fwd.key == KEY and fwd.value["order_id"] == "GD1"


def test_a_worker_that_is_not_the_groups_leader_routes_home_orders_where_they_arrived(
    app: App,
) -> None:
    # faust's topic_partitions is None there; the consumer's cluster metadata is not
    table = Table()
    out = topics(handle(app, [Event(order("GD1", credit_code=CODE), HOME)], table=table,
                        leader=False))
    assert BY_ENTERPRISE not in out
    assert [m.key for m in out[DISPATCHED]] == ["GD1"] and list(table[KEY]) == ["GD1"]


def test_without_co_partitioned_topics_every_enterprise_order_is_forwarded(app: App) -> None:
    for partitions in (None, PARTITIONS * 2):
        for leader in (True, False):
            out = topics(handle(app, [Event(order("GD1", credit_code=CODE), HOME)],
                                received_partitions=partitions, leader=leader))
            assert DISPATCHED not in out and [m.key for m in out[BY_ENTERPRISE]] == [KEY]


def test_orders_of_no_enterprise_and_bad_messages_never_take_the_hop(app: App) -> None:
    events = [Event(order("GD1"), AWAY), Event(b"{not json", HOME)]
    out = topics(handle(app, events))
    assert BY_ENTERPRISE not in out
    assert [m.key for m in out[DISPATCHED]] == ["GD1"]
    assert len(out[DLQ]) == 1


def test_a_mixed_batch_routes_the_home_orders_and_forwards_the_rest(app: App) -> None:
    events = [Event(order("GD1", credit_code=CODE), HOME),
              Event(order("GD2", credit_code=CODE), AWAY),
              Event(order("GD3", credit_code=CODE), HOME)]
    table = Table()
    out = topics(handle(app, events, table=table))
    assert sorted(m.key for m in out[DISPATCHED]) == ["GD1", "GD3"]
    assert [m.value["order_id"] for m in out[BY_ENTERPRISE]] == ["GD2"]
    assert sorted(table[KEY]) == ["GD1", "GD3"]


class RecordingHelper:
    """A classifier process stand-in: predicts at submit with the real model and records
    which orders each submitted piece is asked for."""

    def __init__(self, app: App) -> None:
        self.classifier = app.router.classifier
        self.asked: list[list[str]] = []

    def submit(self, orders: list[Any], *, k: int = 3) -> Any:
        predictions = dict(zip(map(id, orders), self.classifier.predict(orders, k=k),
                               strict=True))
        helper = self

        class Ahead:
            def get(self, subset: list[Any]) -> Any:
                helper.asked.append([o.order_id for o in subset])
                return [predictions[id(o)] for o in subset], 0.01

        return Ahead()


def test_a_batch_merged_from_prepared_pieces_uses_each_pieces_predictions(
    app: App, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two pieces prepared as they were taken (validated, handed to the classifier process),
    then handled as one batch: each order's prediction comes from its own piece, the worker
    classifies nothing itself, and a bad message in a piece is still dead-lettered."""
    helper = RecordingHelper(app)
    app.router.classifier_process = helper  # type: ignore[assignment]
    handler = intake_handler(FakePipeline(app, PARTITIONS), Table())  # type: ignore[arg-type]
    first = [Event(order("GD1", credit_code=CODE), HOME), Event(b"not json", HOME)]
    second = [Event(order("GD2"), AWAY), Event(order("GD3", credit_code=CODE), HOME)]

    async def scenario() -> list[Any]:
        await handler.prepare(first)
        await handler.prepare(second)
        monkeypatch.setattr(app.router.classifier, "predict", lambda *a, **k: pytest.fail(
            "the worker classified in-process"))
        out = await handler(first + second)
        handler.forget(first + second)
        return out

    out = topics(asyncio.run(scenario()))
    assert sorted(m.key for m in out[DISPATCHED]) == ["GD1", "GD2", "GD3"]
    assert len(out[DLQ]) == 1
    assert sorted(sorted(a) for a in helper.asked) == [["GD1"], ["GD2", "GD3"]]
    assert not handler._prepared  # forgotten once handled
