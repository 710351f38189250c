"""`streams.app.Pipeline.send`: outputs go straight to the app's producer, in order, and the
producer's futures (resolved on the broker's ack) come back for `Pipeline.settle` to await."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from hotline.bootstrap import bootstrap
from hotline.settings import Settings
from models.jsoncodec import dumps
from streams.app import Pipeline
from streams.handlers import OutMessage, SharedBody


class FakeTopic:
    def __init__(self, name: str) -> None:
        self.name = name

    def get_topic_name(self) -> str:
        return self.name


class FakeProducer:
    def __init__(self) -> None:
        self.sent: list[tuple[Any, ...]] = []

    async def send(self, topic: str, key: bytes | None, value: bytes | None, *,
                   partition: int | None, timestamp: float | None, headers: Any) -> str:
        self.sent.append((topic, key, value, partition, timestamp, headers))
        return f"ack-{len(self.sent)}"


class FakeApp:
    def __init__(self) -> None:
        self.producer = FakeProducer()
        self.declared: list[tuple[str, int, bool]] = []

    def topic(self, name: str, *, partitions: int, internal: bool = False) -> FakeTopic:
        self.declared.append((name, partitions, internal))
        return FakeTopic(name)

    async def maybe_start_producer(self) -> FakeProducer:
        return self.producer


def test_send_hands_each_message_to_the_producer_in_order() -> None:
    app = FakeApp()
    settings = Settings(topic_prefix="t1.", partitions=3)
    pipeline = Pipeline(app, router=None, settings=settings)  # type: ignore[arg-type]
    messages = [
        OutMessage("workorders.dispatched", "GD1", {"unit": "区交通委", "n": 1}),
        OutMessage("dispatch.jt", "GD1", {"role": "主办"}),
        OutMessage("workorders.dlq", None, {"code": "BAD_JSON"}),
    ]
    futures = asyncio.run(pipeline.send(messages))
    assert futures == ["ack-1", "ack-2", "ack-3"]
    assert [s[:3] for s in app.producer.sent] == [
        ("t1.workorders.dispatched", b"GD1", '{"unit":"区交通委","n":1}'.encode()),
        ("t1.dispatch.jt", b"GD1", '{"role":"主办"}'.encode()),
        ("t1.workorders.dlq", None, b'{"code":"BAD_JSON"}'),
    ]
    assert {s[3] for s in app.producer.sent} == {None}  # the key's partition, as before
    assert [d[1] for d in app.declared] == [3, 3, 3]  # each topic declared with its partitions


@pytest.mark.parametrize("body", [
    {"order_id": "GD1", "text": "噪声扰民 \"引号\" \\ 反斜杠\n换行", "n": 1.5, "tags": ["甲", None]},
    {},
])
def test_a_shared_body_encodes_each_message_as_encoding_it_alone(body: dict[str, Any]) -> None:
    shared = SharedBody(body)
    plain = OutMessage("workorders.dispatched", "GD1", body, shared)
    for extra in ({"role": "主办"}, {"role": "协办", "n2": [1, "二"]}):
        feed = OutMessage("dispatch.jt", "GD1", {**body, **extra}, shared, extra)
        assert feed.encode() == dumps({**body, **extra})
        assert json.loads(feed.encode()) == {**body, **extra}
        assert feed == OutMessage("dispatch.jt", "GD1", {**body, **extra})  # same message
    assert plain.encode() == dumps(body) and json.loads(plain.encode()) == body


def test_a_dispatch_and_its_feeds_carry_one_encoding_of_the_order(tmp_path: Path) -> None:
    app = bootstrap(Settings(database_url=f"sqlite:///{tmp_path / 'h.db'}"),
                    registry=CollectorRegistry())
    order = {"order_id": "GD1", "channel": "12345热线", "received_at": "2026-11-24T09:00:00",
             "title": "噪声", "text": "某公司夜间施工噪声扰民，请相关部门处理"}
    [outcome] = app.router.receive_batch([order])
    sent = [m for m in outcome.outbox if m.topic != "workorders.events"]
    assert len(sent) >= 2 and len({id(m.shared) for m in sent}) == 1
    for m in sent:
        assert json.loads(m.encode()) == m.value
