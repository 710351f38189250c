"""`streams.app.Pipeline.run`, the agents' loop: batches are handled one at a time and in order,
the next batch is prepared while one is handled, and a batch's input is acknowledged only after
its outbox was acknowledged by the broker and after the batch before it."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from typing import Any

import pytest

from hotline.settings import Settings
from streams.app import Pipeline
from streams.faults import Retrier
from streams.handlers import OutMessage
from tests.unit.test_pipeline_send import FakeTopic


class Event:
    def __init__(self, n: int) -> None:
        self.n = n
        self.value = f"v{n}".encode()

    def __repr__(self) -> str:
        return f"E{self.n}"


class FakeStream:
    """`noack_take` hands out the given batches (each after the loop asks for it); `ack`
    records the acknowledgements."""

    def __init__(self, batches: Sequence[Sequence[Event]], log: list[str]) -> None:
        self._batches = [list(b) for b in batches]
        self.log = log
        self.acked: list[int] = []

    async def noack_take(self, n: int, within: float) -> AsyncIterator[list[Event]]:
        for batch in self._batches:
            self.log.append(f"take {batch[0].n}")
            await asyncio.sleep(0)
            yield batch

    async def ack(self, event: Event) -> bool:
        self.acked.append(event.n)
        self.log.append(f"ack {event.n}")
        return True


class SlowAcks:
    """A producer whose acks for a batch's outbox resolve only when the test says so."""

    def __init__(self, log: list[str]) -> None:
        self.log = log
        self.pending: dict[str, asyncio.Future[None]] = {}

    async def send(self, topic: str, key: bytes | None, value: bytes | None, *,
                   partition: int | None, timestamp: float | None, headers: Any) -> Any:
        name = (key or b"").decode()
        self.log.append(f"send {name}")
        fut = self.pending[name] = asyncio.get_running_loop().create_future()
        return fut


class FakeApp:
    def __init__(self, producer: SlowAcks) -> None:
        self.producer = producer

    def topic(self, name: str, *, partitions: int, internal: bool = False) -> FakeTopic:
        return FakeTopic(name)

    async def maybe_start_producer(self) -> SlowAcks:
        return self.producer


class Handler:
    """Handles a batch slowly (yielding to the loop), prepares batches when asked to."""

    def __init__(self, log: list[str], *, fail_on: int | None = None) -> None:
        self.log = log
        self.fail_on = fail_on
        self.prepared: dict[int, Sequence[Event]] = {}
        self.forgotten: list[int] = []
        self.handled_with_prepared: list[bool] = []

    async def prepare(self, events: Sequence[Event]) -> None:
        self.log.append(f"prepare {events[0].n}")
        self.prepared[id(events)] = events

    def forget(self, events: Sequence[Event]) -> None:
        self.forgotten.append(events[0].n)
        self.prepared.pop(id(events), None)

    async def __call__(self, events: Sequence[Event]) -> list[OutMessage]:
        first = events[0].n
        self.handled_with_prepared.append(self.prepared.get(id(events)) is events)
        self.log.append(f"handle {first}")
        for _ in range(5):
            await asyncio.sleep(0)
        if first == self.fail_on:
            raise ValueError("boom")
        self.log.append(f"handled {first}")
        return [OutMessage("workorders.dispatched", f"B{first}", {"n": first})]


def _pipeline(log: list[str]) -> tuple[Pipeline, SlowAcks]:
    producer = SlowAcks(log)
    pipeline = Pipeline(
        FakeApp(producer), router=None, settings=Settings()  # type: ignore[arg-type]
    )
    pipeline.retrier = Retrier(attempts=1, start=0.0, cap=0.0)
    return pipeline, producer


BATCHES = [[Event(1), Event(2)], [Event(3)], [Event(4), Event(5)]]


async def _run_releasing_acks(pipeline: Pipeline, producer: SlowAcks, stream: FakeStream,
                              handler: Handler, release_order: Sequence[str]) -> None:
    task = asyncio.ensure_future(pipeline.run(stream, "test", handler))  # type: ignore[arg-type]
    for name in release_order:
        while name not in producer.pending:
            await asyncio.sleep(0.001)
        producer.pending[name].set_result(None)
    await asyncio.wait_for(task, 5)


def test_batches_are_handled_in_order_with_the_next_one_prepared_meanwhile() -> None:
    log: list[str] = []
    pipeline, producer = _pipeline(log)
    stream = FakeStream(BATCHES, log)
    handler = Handler(log)
    asyncio.run(_run_releasing_acks(pipeline, producer, stream, handler, ["B1", "B3", "B4"]))

    handles = [e for e in log if e.startswith("handle ")]
    assert handles == ["handle 1", "handle 3", "handle 4"]
    # each batch handled only after the one before was handled
    assert log.index("handle 3") > log.index("handled 1")
    assert log.index("handle 4") > log.index("handled 3")
    # batch 3 was taken and prepared while batch 1 was still being handled
    assert log.index("prepare 3") < log.index("handled 1")
    assert handler.handled_with_prepared == [True, True, True]
    assert handler.forgotten == [1, 3, 4]  # nothing kept after a batch is handled
    assert stream.acked == [1, 2, 3, 4, 5]


def test_input_is_acknowledged_after_its_outbox_and_after_the_batch_before() -> None:
    log: list[str] = []
    pipeline, producer = _pipeline(log)
    stream = FakeStream(BATCHES, log)
    # the broker acknowledges batch 3's outbox first, then 4's, then 1's
    asyncio.run(_run_releasing_acks(pipeline, producer, stream, Handler(log),
                                    ["B3", "B4", "B1"]))
    assert stream.acked == [1, 2, 3, 4, 5]  # still in order
    assert log.index("ack 1") > log.index("send B4")  # 1 waited for its own ack (released last)


def test_a_batch_that_cannot_be_handled_stops_the_loop_without_acknowledging_it() -> None:
    log: list[str] = []
    pipeline, producer = _pipeline(log)
    stream = FakeStream(BATCHES, log)
    # a failing batch of two is handled message by message; E3 alone fails again and must be
    # dead-lettered, which needs the router: that fails too, so the loop must stop
    handler = Handler(log, fail_on=3)

    async def run() -> None:
        run = pipeline.run(stream, "test", handler)  # type: ignore[arg-type]
        task = asyncio.ensure_future(run)
        while "B1" not in producer.pending:
            await asyncio.sleep(0.001)
        producer.pending["B1"].set_result(None)
        await asyncio.wait_for(task, 5)

    with pytest.raises(Exception):  # noqa: B017 - whatever the dead-letter path raised
        asyncio.run(run())
    assert 3 not in stream.acked and 4 not in stream.acked
    assert "handle 4" not in log  # nothing after the failed batch was handled


def test_a_handler_without_prepare_is_handled_as_before() -> None:
    log: list[str] = []
    pipeline, producer = _pipeline(log)
    stream = FakeStream(BATCHES, log)
    handler = Handler(log)

    async def plain(events: Sequence[Event]) -> list[OutMessage]:
        return await handler(events)

    asyncio.run(_run_releasing_acks(pipeline, producer, stream, plain,  # type: ignore[arg-type]
                                    ["B1", "B3", "B4"]))
    assert not any(e.startswith("prepare") for e in log)
    assert stream.acked == [1, 2, 3, 4, 5]
