"""Offset discipline (streams.gaps): commits move only over a run that starts at the committed
position; a rebalance goes back to the committed offset or the start of the log; a partition
that stopped short (a head gap, or messages past the commit that vanished inside the consumer)
is read again from the committed offset."""

from __future__ import annotations

import asyncio
from collections import defaultdict
from typing import Any

from faust.types import TP
from mode.utils.queues import FlowControlEvent, FlowControlQueue
from prometheus_client import CollectorRegistry

from hotline.metrics import Metrics
from streams.gaps import (
    DeliveryLedger,
    GapWatch,
    RecoveryWatch,
    heal,
    heal_recovery,
    resume_flow_and_reread,
    seek_to_committed_or_start,
    strict_new_offset,
)


def test_a_head_gap_is_stuck_only_after_the_grace_period() -> None:
    watch = GapWatch(grace_s=15)
    acked = {"p0": [60, 61, 62], "p1": [50, 51], "p2": []}
    committed: dict[str, int | None] = {"p0": 50, "p1": 50, "p2": 40}
    assert watch.stuck(acked, committed, now=100.0) == {}  # p1 in order, p2 idle: no gap
    assert watch.stuck(acked, committed, now=110.0) == {}
    assert watch.stuck(acked, committed, now=115.0) == {"p0": 50}


def test_a_gap_that_moves_or_closes_starts_over() -> None:
    watch = GapWatch(grace_s=15)
    assert watch.stuck({"p0": [60]}, {"p0": 50}, now=0.0) == {}
    assert watch.stuck({"p0": [70]}, {"p0": 65}, now=10.0) == {}  # the commit moved on
    assert watch.stuck({"p0": [70]}, {"p0": 65}, now=20.0) == {}
    assert watch.stuck({"p0": [66]}, {"p0": 66}, now=40.0) == {}  # closed
    assert watch.stuck({"p0": [80]}, {"p0": 66}, now=41.0) == {}  # a new gap, a new clock


P0 = TP("hotline.workorders.received", 0)


class _Flow:
    def __init__(self, active: bool) -> None:
        self.active = active

    def is_active(self) -> bool:
        return self.active


class _Consumer:
    def __init__(self) -> None:
        self._acked: dict[Any, list[int]] = {P0: [60, 61]}
        self._committed_offset: dict[Any, int | None] = {P0: 50}
        self._unacked_messages: set[Any] = set()
        self.ends: dict[Any, int] = {}
        self.sought: list[dict[str, int]] = []

    def assignment(self) -> set[Any]:
        return set(self._committed_offset)

    @property
    def _thread(self) -> Any:  # aiokafka's subscription state, as far as fetch_positions looks
        ends = self.ends

        class State:
            def __init__(self, position: int | None) -> None:
                self.has_valid_position = position is not None
                self.position = position

        class States:
            def state_value(self, tp: Any) -> Any:
                return State(ends.get(TP(tp.topic, tp.partition)))

        subscription = type("S", (), {"assignment": States()})()
        subscriptions = type("Subs", (), {"subscription": subscription})()
        fetcher = type("F", (), {"_subscriptions": subscriptions})()
        aiokafka = type("C", (), {"_fetcher": fetcher})()
        return type("T", (), {"_ensure_consumer": staticmethod(lambda: aiokafka)})()

    async def seek_wait(self, partitions: dict[str, int]) -> None:
        self.sought.append(dict(partitions))


class _Topics:
    def acks_enabled_for(self, topic: str) -> bool:
        return not topic.endswith("-changelog")


class _App:
    def __init__(self, *, rebalancing: bool = False, flowing: bool = True) -> None:
        self.consumer = _Consumer()
        self.topics = _Topics()
        self.rebalancing = rebalancing
        self.flow_control = _Flow(flowing)
        self.consumer_generation_id = 3

    def add_future(self, coro: Any) -> Any:  # mode's Service.add_future, as far as used here
        return asyncio.ensure_future(coro)


class _Message:
    def __init__(self, tp: Any, offset: int, generation_id: int, acked: bool = False) -> None:
        self.tp, self.offset, self.generation_id, self.acked = tp, offset, generation_id, acked


def test_heal_seeks_back_to_the_committed_offset_but_not_during_a_rebalance() -> None:
    watch = GapWatch(grace_s=15)
    app: Any = _App()
    asyncio.run(heal(app, watch, 0.0))
    assert asyncio.run(heal(app, watch, 16.0)) == {P0: 50}
    assert app.consumer.sought == [{P0: 50}]
    held: Any = _App(rebalancing=True)
    watch = GapWatch(grace_s=15)
    asyncio.run(heal(held, watch, 0.0))
    assert asyncio.run(heal(held, watch, 16.0)) == {} and held.consumer.sought == []


def test_nothing_is_judged_while_an_offset_commit_is_in_flight() -> None:
    """Seen at the broker restart: the commit took the acknowledged run 66-143 out of `_acked`
    and waited 16 s for the broker, the committed offset stayed at 66 and the fetch position was
    144, so the partition looked as if its messages had vanished, and was rewound."""
    tp = TP("hotline.workorders.received", 0)
    app: Any = _App()
    app.consumer._acked = {tp: []}
    app.consumer._committed_offset = {tp: 66}
    app.consumer.ends = {tp: 144}
    app.consumer._commit_fut = object()  # a commit is in flight
    watch = GapWatch(grace_s=15)
    for now in (0.0, 5.0, 10.0, 15.0, 20.0):
        assert asyncio.run(heal(app, watch, now)) == {}
    app.consumer._commit_fut = None  # the commit returned: 144 is committed
    app.consumer._committed_offset = {tp: 144}
    assert asyncio.run(heal(app, watch, 25.0)) == {}
    assert app.consumer.sought == []
    # a partition stuck before a commit started is still stuck after it: its clock is kept
    app.consumer.ends = {tp: 200}
    watch = GapWatch(grace_s=15)
    assert asyncio.run(heal(app, watch, 30.0)) == {}
    app.consumer._commit_fut = object()
    assert asyncio.run(heal(app, watch, 40.0)) == {}
    app.consumer._commit_fut = None
    assert asyncio.run(heal(app, watch, 45.0)) == {tp: 144}
    assert app.consumer.sought == [{tp: 144}]


def test_messages_past_the_commit_that_vanished_are_read_again_once_the_worker_is_idle() -> None:
    watch = GapWatch(grace_s=15)
    app: Any = _App()
    tp = TP("hotline.workorders.by-enterprise", 0)
    app.consumer._acked = {}
    app.consumer._committed_offset = {tp: 51}
    app.consumer.ends = {tp: 300}  # fetched 249 messages past the commit, none acknowledged
    app.consumer._unacked_messages = {_Message(tp, 51, generation_id=3)}
    asyncio.run(heal(app, watch, 0.0))
    assert asyncio.run(heal(app, watch, 20.0)) == {}  # busy: the batch in hand may be slow
    # a batch of another partition in hand: this one's messages may wait untracked behind it
    app.consumer._unacked_messages = {_Message(P0, 60, generation_id=3)}
    assert asyncio.run(heal(app, watch, 22.0)) == {}
    app.consumer._unacked_messages = set()
    rewinds = Metrics(CollectorRegistry()).rewinds
    asyncio.run(heal(app, watch, 25.0, rewinds))
    assert asyncio.run(heal(app, watch, 35.0, rewinds)) == {}  # idle for 10 s only
    assert asyncio.run(heal(app, watch, 40.0, rewinds)) == {tp: 51}
    assert app.consumer.sought == [{tp: 51}]
    assert rewinds.labels(tp.topic)._value.get() == 1


def test_leftover_messages_no_acknowledgement_can_credit_do_not_hold_off_the_heal() -> None:
    """Seen after a kill -9 and a takeover: the fetched messages of one partition vanished while
    the tracking set still held messages of an older generation and below the commit."""
    p0 = TP("hotline.workorders.received", 0)
    p2 = TP("hotline.workorders.by-enterprise", 2)
    app: Any = _App()
    app.consumer._acked = {}
    app.consumer._committed_offset = {p0: 45, p2: 270}
    app.consumer.ends = {p0: 246, p2: 270}
    leftovers = [_Message(p2, 154, generation_id=2),  # an older generation
                 _Message(p2, 200, generation_id=3),  # below the commit
                 _Message(p0, 44, generation_id=3, acked=True)]  # acknowledged
    app.consumer._unacked_messages = set(leftovers)
    watch = GapWatch(grace_s=15)
    asyncio.run(heal(app, watch, 0.0))
    assert asyncio.run(heal(app, watch, 16.0)) == {p0: 45}
    # one message of this generation at or past its commit is work in hand: the watch waits
    app.consumer._unacked_messages = set(leftovers) | {_Message(p2, 270, generation_id=3)}
    watch = GapWatch(grace_s=15)
    asyncio.run(heal(app, watch, 0.0))
    assert asyncio.run(heal(app, watch, 16.0)) == {}


class _Pausing(_Consumer):
    """A consumer that no longer fetches one partition (paused, or parked as "buffer full")."""

    def __init__(self, tp: Any, log_end: int) -> None:
        super().__init__()
        self._acked = {}
        self._committed_offset = {tp: 51, P0: 50}
        self._active_partitions = {P0}
        self._buffered_partitions = {tp}
        self.log_ends = {tp: log_end, P0: 50}
        self.resumed: list[Any] = []

    def highwater(self, tp: Any) -> int:
        return self.log_ends[tp]

    def resume_partitions(self, tps: Any) -> None:
        self.resumed.extend(tps)
        self._active_partitions.update(tps)


def test_a_partition_the_consumer_stopped_fetching_is_resumed_once_the_worker_is_idle() -> None:
    tp = TP("hotline.workorders.by-enterprise", 2)
    watch = GapWatch(grace_s=15)
    app: Any = _App()
    app.consumer = _Pausing(tp, log_end=110)  # 59 orders behind the commit, never fetched
    # busy with any partition: the pause may be backpressure
    app.consumer._unacked_messages = {_Message(P0, 50, generation_id=3)}
    asyncio.run(heal(app, watch, 0.0))
    assert asyncio.run(heal(app, watch, 20.0)) == {}
    app.consumer._unacked_messages = set()
    asyncio.run(heal(app, watch, 25.0))
    assert asyncio.run(heal(app, watch, 40.0)) == {tp: 51}
    assert app.consumer.sought == [{tp: 51}] and app.consumer.resumed == [tp]
    assert not app.consumer._buffered_partitions
    # caught up (log end at the commit): a paused partition with nothing to read is left alone
    app.consumer = _Pausing(tp, log_end=51)
    watch = GapWatch(grace_s=15)
    asyncio.run(heal(app, watch, 0.0))
    assert asyncio.run(heal(app, watch, 60.0)) == {} and app.consumer.resumed == []


def test_a_partition_that_is_caught_up_or_acknowledging_is_not_stuck() -> None:
    watch = GapWatch(grace_s=15)
    fetched = {"p0": 51, "p1": 90}  # p0 has fetched nothing past its commit (the broker is away)
    committed: dict[str, int | None] = {"p0": 51, "p1": 60}
    acked = {"p1": [60, 61]}  # p1 moves: its commit is only waiting for the committer
    for now in (0.0, 10.0, 20.0, 30.0):
        assert watch.stuck(acked, committed, now, fetched=fetched) == {}


class _Strict:
    def __init__(self, committed: int | None, acked: list[int]) -> None:
        self._committed_offset = defaultdict(lambda: None, {"p0": committed})
        self._acked = {"p0": list(acked)}
        self._acked_index = {"p0": set(acked)}

    def faust_new_offset(self, tp: Any) -> int | None:  # faust's rule: the first run, plus 1
        run = sorted(self._acked[tp])
        end = run[0]
        while end + 1 in run:
            end += 1
        return end + 1


def test_the_commit_never_skips_a_message_that_was_not_acknowledged() -> None:
    # faust, as shipped, commits 56 here: offset 51 was never handled
    c = _Strict(51, [52, 53, 54, 55])
    assert strict_new_offset(c, c.faust_new_offset, "p0") is None
    c = _Strict(51, [51, 52, 53, 55])
    assert strict_new_offset(c, c.faust_new_offset, "p0") == 54
    c = _Strict(0, [3, 4])  # committed 0 counts (faust reads 0 as "no check")
    assert strict_new_offset(c, c.faust_new_offset, "p0") is None
    c = _Strict(60, [55, 58, 60, 61])  # acknowledged before another worker committed past them
    assert strict_new_offset(c, c.faust_new_offset, "p0") == 62
    assert c._acked["p0"] == [60, 61] and c._acked_index["p0"] == {60, 61}


class _Seeking(_Consumer):
    def __init__(self) -> None:
        super().__init__()
        self._committed_offset = defaultdict(lambda: None)

    async def seek_to_committed(self) -> dict[Any, int | None]:
        # aiokafka seeks only the partitions with a committed offset above 0
        return {
            TP("t", 0): 40, TP("t", 1): None, TP("t", 2): 0, TP("t-changelog", 0): None,
        }

    async def earliest_offsets(self, *tps: Any) -> dict[Any, int]:
        return {tp: 7 if tp.partition == 1 else 0 for tp in tps}

    async def seek_wait(self, partitions: dict[Any, int]) -> None:
        self.sought.append(dict(partitions))


def test_a_rebalance_rewinds_partitions_with_nothing_committed_to_the_start_of_the_log() -> None:
    app: Any = _App()
    consumer = _Seeking()
    asyncio.run(seek_to_committed_or_start(app, consumer))
    assert consumer.sought == [{TP("t", 1): 7, TP("t", 2): 0}]  # not the table's changelog
    assert dict(consumer._committed_offset) == {TP("t", 0): 40, TP("t", 1): 7, TP("t", 2): 0}


def test_a_seek_that_fails_while_the_broker_is_away_is_tried_again_later() -> None:
    watch = GapWatch(grace_s=15)
    app: Any = _App()

    async def unreachable(partitions: dict[Any, int]) -> None:
        raise TimeoutError("broker away")

    app.consumer.seek_wait = unreachable
    asyncio.run(heal(app, watch, 0.0))
    assert asyncio.run(heal(app, watch, 16.0)) == {}  # no crash of the worker's timer
    assert watch.since  # still watched: the next check tries again
    del app.consumer.seek_wait
    assert asyncio.run(heal(app, watch, 21.0)) == {P0: 50}


CHANGELOG = TP("hotline-router-enterprise-repeats-changelog", 3)


def test_a_recovery_waiting_on_records_fetched_past_is_stuck_only_after_the_grace() -> None:
    watch = RecoveryWatch(grace_s=30)
    other = TP("hotline-router-enterprise-repeats-changelog", 2)
    seen: dict[Any, int | None] = {CHANGELOG: -1, other: 100}
    highwaters: dict[Any, int | None] = {CHANGELOG: 190, other: 255}
    fetched = {CHANGELOG: 191, other: 101}  # 3: fetched to the end, none seen; 2: keeping up
    assert watch.stuck(seen, highwaters, fetched, 0.0) == {}
    assert watch.stuck(seen, highwaters, fetched, 20.0) == {}
    assert watch.stuck(seen, highwaters, fetched, 30.0) == {CHANGELOG: 0}
    seen[CHANGELOG] = 40  # records arrive: a new clock
    assert watch.stuck(seen, highwaters, fetched, 35.0) == {}
    seen[CHANGELOG] = 190  # done
    assert watch.stuck(seen, highwaters, fetched, 90.0) == {}


class _Recovery:
    def __init__(self) -> None:
        self.in_recovery = True
        self.active_tps = {CHANGELOG}
        self.active_offsets = {CHANGELOG: 75}
        self.active_highwaters = {CHANGELOG: 190}


def test_heal_recovery_seeks_to_the_offset_the_recovery_waits_for() -> None:
    watch = RecoveryWatch(grace_s=30)
    app: Any = _App()
    app.tables = type("Tables", (), {"_recovery": _Recovery()})()
    app.consumer.ends = {CHANGELOG: 191}
    rewinds = Metrics(CollectorRegistry()).rewinds
    assert asyncio.run(heal_recovery(app, watch, 0.0, rewinds)) == {}
    assert asyncio.run(heal_recovery(app, watch, 31.0, rewinds)) == {CHANGELOG: 76}
    assert app.consumer.sought == [{CHANGELOG: 76}]
    assert rewinds.labels(CHANGELOG.topic)._value.get() == 1
    app.tables._recovery.in_recovery = False  # no recovery: nothing to watch
    assert asyncio.run(heal_recovery(app, watch, 100.0, rewinds)) == {} and not watch.since


def test_a_seek_back_during_a_table_recovery_also_rewinds_the_changelog_it_still_reads() -> None:
    # faust discards records fetched while the flow is held and seeks back with perform_seek;
    # the changelog has no committed offset, so without this its records were gone for good
    app: Any = _App()
    app.tables = type("Tables", (), {"_recovery": _Recovery()})()
    done = TP("hotline-router-enterprise-repeats-changelog", 1)
    app.tables._recovery.active_tps.add(done)
    app.tables._recovery.active_offsets[done] = 40
    app.tables._recovery.active_highwaters[done] = 40
    consumer = _Seeking()
    asyncio.run(seek_to_committed_or_start(app, consumer))
    assert consumer.sought[-1] == {CHANGELOG: 76}  # the next record needed; not the finished one
    app.tables._recovery.in_recovery = False
    consumer = _Seeking()
    asyncio.run(seek_to_committed_or_start(app, consumer))
    assert all(CHANGELOG not in sought for sought in consumer.sought)


class _Msg:
    def __init__(self, tp: Any, offset: int) -> None:
        self.tp, self.offset = tp, offset


def test_the_ledger_tells_a_dropped_message_from_a_delivered_one_and_from_a_seek() -> None:
    now = [100.0]
    ledger = DeliveryLedger(clock=lambda: now[0])
    blocked = asyncio.Event()

    async def conductor(message: _Msg) -> None:
        if message.offset == 41:
            await blocked.wait()  # waits for the flow; cancelled when a rebalance starts

    give = ledger.wrap(conductor)

    async def loop() -> None:
        await give(_Msg(P0, 40))  # delivered
        ledger.note_read(P0, 40)
        task = asyncio.ensure_future(give(_Msg(P0, 41)))  # as mode's wait_first does
        await asyncio.sleep(0)
        task.cancel()  # suspend_flow won the wait
        ledger.note_read(P0, 41)
        unstarted = asyncio.ensure_future(give(_Msg(P0, 42)))
        unstarted.cancel()  # cancelled before its first step: never ran
        ledger.note_read(P0, 42)
        ledger.note_read(P0, 40)  # a seek records its target: not a message

    asyncio.run(loop())
    now[0] = 103.0
    assert ledger.describe(P0, 40) == "已交给流，3.0 秒前"
    assert ledger.describe(P0, 41) == "拉取循环放弃（流暂停），3.0 秒前"
    assert ledger.describe(P0, 42) == "拉取循环放弃（流暂停），3.0 秒前"
    assert ledger.describe(P0, 43) == "拉取循环未经手"
    ledger.note_read(P0, 44)  # nothing given: ignored
    assert ledger.describe(P0, 44) == "拉取循环未经手"


class _Event:  # a faust Event, as far as the queues are concerned
    def __init__(self, tp: Any, offset: int) -> None:
        self.message = _Msg(tp, offset)


def test_messages_a_resume_of_the_flow_empties_from_the_stream_queues_are_read_again() -> None:
    """mode's flow control empties the streams' queues on every resume, and faust resumes it
    after the rebalance's seek, when the partitions have flowed for a while: what was queued
    then was never handled, acknowledged or fetched again (the head gaps after takeovers)."""
    changelog = TP("hotline-router-enterprise-repeats-changelog", 0)
    behind = TP("hotline.workorders.received", 2)
    away = TP("hotline.workorders.received", 1)
    app: Any = _App()
    consumer = app.consumer
    consumer._committed_offset.update({changelog: None, behind: 90})

    async def run() -> list[int]:
        flow = FlowControlEvent()
        queue: FlowControlQueue[Any] = FlowControlQueue(
            flow_control=flow, clear_on_resume=True)
        for tp, offset in ((P0, 71), (P0, 70), (behind, 80), (changelog, 9), (away, 3)):
            queue.put_nowait(_Event(tp, offset))
        queue.put_nowait("not an event")
        app.flow_control = flow
        resume_flow_and_reread(app, flow.resume)
        await asyncio.sleep(0.01)  # the seek runs as a task
        left = queue.qsize()
        resume_flow_and_reread(app, flow.resume)  # nothing queued: nothing to read again
        await asyncio.sleep(0.01)
        return [left, int(flow.is_active())]

    assert asyncio.run(run()) == [0, 1]  # the resume emptied the queue and let the flow run
    # P0 from its lowest queued offset (70, above its commit 50), `behind` from its commit (90:
    # what was queued below it is done); not the changelog, not a partition no longer held
    assert consumer.sought == [{P0: 70, behind: 90}]
