"""`streams.app.Pipeline.run`, the agents' loop: batches are handled one at a time and in order;
what is taken while one is handled is prepared piece by piece and handled as one batch when the
router is free; a batch's input is acknowledged only after its outbox was acknowledged by the
broker and after the batch before it."""

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
        self.handled_sizes: list[int] = []
        self.hold: asyncio.Event | None = None  # when set up, handling waits for it

    async def prepare(self, events: Sequence[Event]) -> None:
        self.log.append(f"prepare {events[0].n}")
        for e in events:
            self.prepared[id(e)] = e

    def forget(self, events: Sequence[Event]) -> None:
        self.forgotten.append(events[0].n)
        for e in events:
            self.prepared.pop(id(e), None)

    async def __call__(self, events: Sequence[Event]) -> list[OutMessage]:
        first = events[0].n
        self.handled_sizes.append(len(events))
        self.handled_with_prepared.append(all(self.prepared.get(id(e)) is e for e in events))
        self.log.append(f"handle {first}")
        if self.hold is not None:
            await self.hold.wait()
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


def test_what_is_taken_while_a_batch_is_handled_is_prepared_and_handled_as_one_batch() -> None:
    log: list[str] = []
    pipeline, producer = _pipeline(log)
    stream = FakeStream(BATCHES, log)
    handler = Handler(log)
    asyncio.run(_run_releasing_acks(pipeline, producer, stream, handler, ["B1", "B3"]))

    handles = [e for e in log if e.startswith("handle ")]
    assert handles == ["handle 1", "handle 3"]
    assert handler.handled_sizes == [2, 3]  # pieces [3] and [4, 5] merged
    assert log.index("handle 3") > log.index("handled 1")
    # both pieces were taken and prepared while batch 1 was still being handled
    assert log.index("prepare 3") < log.index("handled 1")
    assert log.index("prepare 4") < log.index("handled 1")
    assert handler.handled_with_prepared == [True, True]
    assert handler.forgotten == [1, 3]  # nothing kept after a batch is handled
    assert not handler.prepared
    assert stream.acked == [1, 2, 3, 4, 5]


def test_input_is_acknowledged_after_its_outbox_and_after_the_batch_before() -> None:
    log: list[str] = []
    pipeline, producer = _pipeline(log)
    stream = FakeStream(BATCHES, log)
    # the broker acknowledges batch 3's outbox first, then 1's
    asyncio.run(_run_releasing_acks(pipeline, producer, stream, Handler(log), ["B3", "B1"]))
    assert stream.acked == [1, 2, 3, 4, 5]  # still in order
    assert log.index("ack 1") > log.index("send B3")  # 1 waited for its own ack (released last)


class GatedStream(FakeStream):
    """Hands out a batch only when the test opens the gate; then waits for more, for ever,
    like a topic with nothing new on it."""

    def __init__(self, batches: Sequence[Sequence[Event]], log: list[str]) -> None:
        super().__init__(batches, log)
        self.gate: asyncio.Queue[None] = asyncio.Queue()

    async def noack_take(self, n: int, within: float) -> AsyncIterator[list[Event]]:
        for batch in self._batches:
            await self.gate.get()
            self.log.append(f"take {batch[0].n}")
            yield batch
        await asyncio.Event().wait()
        yield []  # never reached


def test_a_batch_starts_when_the_router_is_free_without_waiting_for_more_input() -> None:
    """Light load: a piece taken while the router is idle is handled at once, and pieces held
    while it was busy are handled as soon as it is free, though the stream gives nothing
    more."""
    log: list[str] = []
    pipeline, producer = _pipeline(log)
    handler = Handler(log)

    async def scenario() -> None:
        stream = GatedStream(BATCHES, log)
        task = asyncio.ensure_future(pipeline.run(stream, "test", handler))  # type: ignore
        stream.gate.put_nowait(None)  # batch 1 only
        while "B1" not in producer.pending:
            await asyncio.sleep(0.001)
        assert handler.handled_sizes == [2]
        stream.gate.put_nowait(None)  # [3] arrives while B1's acks are still pending
        while "B3" not in producer.pending:
            await asyncio.sleep(0.001)
        assert handler.handled_sizes == [2, 1]
        # [4, 5] is taken while the router is free and handled at once, slowly; [6] is taken
        # meanwhile and held; then the stream has nothing more
        handler.hold = asyncio.Event()
        stream._batches.append([Event(6)])
        stream.gate.put_nowait(None)  # [4, 5]
        while "handle 4" not in log:
            await asyncio.sleep(0.001)
        stream.gate.put_nowait(None)  # [6]
        while "prepare 6" not in log:
            await asyncio.sleep(0.001)
        await asyncio.sleep(0.01)
        assert "handle 6" not in log  # held while the router is busy
        handler.hold.set()
        while "B6" not in producer.pending:  # handled once the router is free
            await asyncio.sleep(0.001)
        assert handler.handled_sizes == [2, 1, 2, 1]
        assert handler.handled_with_prepared == [True] * 4
        for name in ("B1", "B3", "B4", "B6"):
            producer.pending[name].set_result(None)
        while stream.acked != [1, 2, 3, 4, 5, 6]:
            await asyncio.sleep(0.001)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(asyncio.wait_for(scenario(), 5))


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


def test_a_failed_batch_stops_the_loop_even_when_the_stream_gives_nothing_more() -> None:
    log: list[str] = []
    pipeline, _ = _pipeline(log)
    handler = Handler(log, fail_on=1)  # and its dead letter fails too: no router

    async def scenario() -> None:
        stream = GatedStream(BATCHES, log)
        stream.gate.put_nowait(None)  # [1, 2], then nothing
        await pipeline.run(stream, "test", handler)  # type: ignore[arg-type]

    with pytest.raises(Exception) as raised:  # noqa: B017 - whatever the dead-letter path raised
        asyncio.run(asyncio.wait_for(scenario(), 5))
    assert not isinstance(raised.value, asyncio.TimeoutError)


def test_a_handler_without_prepare_is_handled_as_before() -> None:
    log: list[str] = []
    pipeline, producer = _pipeline(log)
    stream = FakeStream(BATCHES, log)
    handler = Handler(log)

    async def plain(events: Sequence[Event]) -> list[OutMessage]:
        return await handler(events)

    asyncio.run(_run_releasing_acks(pipeline, producer, stream, plain,  # type: ignore[arg-type]
                                    ["B1", "B3"]))
    assert not any(e.startswith("prepare") for e in log)
    assert stream.acked == [1, 2, 3, 4, 5]


class FakeAhead:
    """Predictions of some orders (a `streams.classify_ahead.Ahead` stand-in): the order id
    as the unit, or None when asked to fail."""

    def __init__(self, orders: Sequence[Any], *, fail: bool = False) -> None:
        self.ids = {id(o) for o in orders}
        self.fail = fail
        self.asked: list[list[str]] = []

    def get(self, orders: Sequence[Any]) -> tuple[list[Any], float] | None:
        assert all(id(o) in self.ids for o in orders)
        self.asked.append([o.order_id for o in orders])
        return None if self.fail else ([f"P-{o.order_id}" for o in orders], 0.5)


class O:
    def __init__(self, order_id: str) -> None:
        self.order_id = order_id


def test_a_merged_batch_gets_each_orders_predictions_from_the_piece_it_came_in() -> None:
    from streams.classify_ahead import MergedAhead

    a, b, c, d = O("a"), O("b"), O("c"), O("d")
    first, second = FakeAhead([a, b]), FakeAhead([c, d])
    assert MergedAhead.of([(a, None), (b, None)]) is None
    assert MergedAhead.of([(a, first), (b, first)]) is first  # one piece: as it is
    merged = MergedAhead.of([(a, first), (b, first), (c, second), (d, second)])
    # any subset, in any order (the router asks only for the orders it routes)
    assert merged.get([d, a, c]) == (["P-d", "P-a", "P-c"], 1.0)
    assert first.asked == [["a"]] and second.asked == [["d", "c"]]
    # an order with nothing on its way, or a piece whose helper failed: the caller classifies
    partial = MergedAhead.of([(a, first), (c, None)])
    assert partial is not None and partial.get([a, c]) is None
    failing = MergedAhead.of([(a, first), (c, FakeAhead([c], fail=True))])
    assert failing.get([a, c]) is None
