"""`streams.app.Pipeline.send`: outputs go straight to the app's producer, in order, and the
producer's futures (resolved on the broker's ack) come back for `Pipeline.settle` to await."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from hotline.settings import Settings
from streams.app import Pipeline
from streams.handlers import OutMessage


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
        ("t1.workorders.dispatched", b"GD1", json.dumps(
            {"unit": "区交通委", "n": 1}, ensure_ascii=False).encode()),
        ("t1.dispatch.jt", b"GD1", '{"role": "主办"}'.encode()),
        ("t1.workorders.dlq", None, b'{"code": "BAD_JSON"}'),
    ]
    assert {s[3] for s in app.producer.sent} == {None}  # the key's partition, as before
    assert [d[1] for d in app.declared] == [3, 3, 3]  # each topic declared with its partitions
