"""The worker's faust consumer delivers every fetched message: its read-offset memory, which
dropped re-fetched messages and skipped "gaps" after a partition takeover, remembers nothing."""

from __future__ import annotations

import asyncio
from typing import Any

from faust.types import TP
from mode import Service

from streams.app import HotlineApp, NoReadOffsets, ack_current_generation
from streams.gaps import DeliveryLedger, resume_flow_and_reread


def test_the_app_s_flow_control_reads_again_what_a_resume_empties() -> None:
    app = HotlineApp("hotline-test-flow", broker="kafka://127.0.0.1:1", store="memory://")
    assert app.flow_control.resume.func is resume_flow_and_reread  # type: ignore[attr-defined]
    assert app.flow_control is app.flow_control  # one for the app, as faust's


def test_the_app_consumer_forgets_read_offsets() -> None:
    app = HotlineApp("hotline-test-consumer", broker="kafka://127.0.0.1:1", store="memory://")
    consumer = app.consumer
    tp = TP("workorders.by-enterprise", 0)
    assert isinstance(consumer._read_offset, NoReadOffsets)
    consumer._read_offset[tp] = 254  # what the drain loop records after each message
    consumer._read_offset.update({tp: 254})  # what a seek to the committed offset records
    # the drain loop delivers a message when the read offset is None, and counts a gap only
    # when there is one: a message at offset 68 after a seek is delivered, nothing is skipped
    assert consumer._read_offset[tp] is None
    assert tp not in consumer._read_offset.keys()
    assert consumer._read_offset.pop(tp, None) is None


class _Message:
    def __init__(self, generation_id: int | None) -> None:
        self.generation_id = generation_id
        self.acked = False
        self.tp = TP("workorders.by-enterprise", 0)
        self.offset = 190
        self.topic = self.tp.topic


def test_an_ack_from_an_older_generation_gives_the_commit_no_credit() -> None:
    app = HotlineApp("hotline-test-ack", broker="kafka://127.0.0.1:1", store="memory://")
    consumer = app.consumer
    assert consumer.ack.func is ack_current_generation  # wired into the app's consumer
    app.consumer_generation_id = 7
    app.flow_control.resume()  # a running worker's stream flows
    counted: list[_Message] = []

    def faust_ack(message: _Message) -> bool:
        counted.append(message)
        return True

    stale, current, untracked = _Message(6), _Message(7), _Message(None)
    consumer._unacked_messages.add(stale)
    assert ack_current_generation(app, faust_ack, consumer, stale) is False
    assert stale.acked and stale not in consumer._unacked_messages and counted == []
    assert ack_current_generation(app, faust_ack, consumer, current) is True
    assert ack_current_generation(app, faust_ack, consumer, untracked) is True
    assert counted == [current, untracked]  # the current generation goes to faust's own ack
    # a rebalance or a shutdown holds the flow: what faust acknowledges then (skipped, never
    # handed to an agent) must not be committed
    app.flow_control.suspend()
    held = _Message(7)
    assert ack_current_generation(app, faust_ack, consumer, held) is False
    assert held.acked and counted == [current, untracked]
    app.flow_control.resume()


def test_the_app_consumer_commits_only_a_run_that_starts_at_the_committed_offset() -> None:
    """Through faust's own commit filter: shipped faust would commit 54 here and lose 51."""
    app = HotlineApp("hotline-test-commit", broker="kafka://127.0.0.1:1", store="memory://")
    consumer = app.consumer
    tp = TP("workorders.received", 0)
    consumer._committed_offset[tp] = 51
    consumer._acked[tp] = [52, 53]
    consumer._acked_index[tp] = {52, 53}
    assert consumer._filter_committable_offsets({tp}) == {}
    consumer._acked[tp].insert(0, 51)
    consumer._acked_index[tp].add(51)
    assert consumer._filter_committable_offsets({tp}) == {tp: 54}


class _Fetched:
    def __init__(self, tp: TP, offset: int) -> None:
        self.tp, self.topic, self.partition, self.offset = tp, tp.topic, tp.partition, offset
        self.key = self.value = b""


def test_the_ledger_sees_what_faust_s_fetch_loop_delivers_and_what_it_gives_up_on() -> None:
    """faust's own fetch loop (`Consumer._drain_messages`) gives up on a message whose delivery
    still waits (here for the flow control, as the conductor's handler does) when the flow is
    suspended, and goes on with the next; the app's consumer notes both in its ledger, which
    the gap watch's warning quotes for the message at the committed offset."""
    tp = TP("workorders.received", 3)
    delivered: list[int] = []
    said: dict[int, str] = {}

    async def run() -> None:
        app = HotlineApp("hotline-test-drop", broker="kafka://127.0.0.1:1", store="memory://")
        consumer = app.consumer
        assert consumer._read_offset.ledger is None  # a diagnostic, off by default
        ledger = DeliveryLedger()
        consumer._read_offset = NoReadOffsets(ledger)
        flowing = asyncio.Event()

        async def conductor(message: _Fetched) -> None:  # the stream's handler
            await flowing.wait()  # `acquire_flow_control`: blocks while the flow is held
            delivered.append(message.offset)

        consumer.callback = ledger.wrap(conductor)
        fetcher = Service()
        consumer.stop_flow()  # a rebalance starts while 266 waits

        async def getmany(timeout: float) -> Any:
            yield tp, _Fetched(tp, 266)
            app.flow_control.resume()
            flowing.set()
            consumer.resume_flow()
            yield tp, _Fetched(tp, 267)
            fetcher._stopped.set()

        consumer.getmany = getmany  # type: ignore[method-assign]
        await asyncio.wait_for(consumer._drain_messages(fetcher), timeout=10)
        said.update({o: ledger.describe(tp, o) for o in (266, 267, 268)})

    asyncio.run(run())
    assert delivered == [267]  # faust's loop gave 266 up
    assert said[266].startswith("拉取循环放弃")
    assert said[267].startswith("已交给流")
    assert said[268] == "拉取循环未经手"
