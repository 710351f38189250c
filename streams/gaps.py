"""Offset discipline (偏移纪律): a worker commits only what it handled, in order, and heals a
partition that stopped short (缺口自愈).

faust's consumer, as shipped, can commit past messages nobody handled and can stop short:

* its commit rule takes the first run of acknowledged offsets and commits past it even when
  the run starts one offset above the committed position, and when the committed position is
  0 or unknown (a new group on a new topic) it does not look at the head at all;
* after a rebalance it seeks every partition back to its committed offset, except a partition
  whose committed offset is 0 or none (aiokafka's `seek_to_committed` skips those), which keeps
  its fetch position past the messages the rebalance discarded;
* its Cython stream iterator drops, without acknowledging or tracking them, the messages it
  pulls while the flow is held or from an older consumer generation. That is safe only if a
  seek brings them back, which the point above does not always do.

The fixes, installed on the consumer by `streams.app.HotlineApp`:

1. `strict_new_offset`: the commit moves only over a run of acknowledged offsets that starts
   exactly at the committed position. A missing message holds the commit; it never skips it.
2. `seek_to_committed_or_start`: after a rebalance every stream partition goes back to its
   committed offset, or to the start of the log when nothing was committed, and the consumer
   remembers that position as the committed one, so rule 1 always has a floor. While a table
   recovery runs, its changelog partitions go back to the next record it needs
   (`recovery_needs`).
3. `GapWatch` and `heal`: a partition is stuck when, for `GRACE_S` seconds with the flow
   running and no rebalance, either its lowest acknowledged offset stays above the committed
   one (a head gap), or it has fetched messages past the committed offset while the worker
   holds none in hand and has acknowledged none of them (they vanished inside the consumer), or
   the consumer no longer fetches from it (paused, or parked by faust's "buffer full" mark)
   while the worker holds nothing and the log goes on. "In hand" counts only messages an
   acknowledgement can still credit (`live_in_hand`); nothing is judged while an offset commit
   is in flight. The consumer is then sent back to the committed offset (and fetches the
   partition again); the messages come again and the idempotent handlers absorb the ones
   already handled.
4. `resume_flow_and_reread`: mode's flow control empties the streams' queues whenever the flow
   is resumed, and faust resumes it at the end of a rebalance *after* seeking the partitions
   and letting them flow (its recovery lets the flow run while it reads the changelogs, and
   resumes the stream partitions before it seeks them). Messages fetched after the seek and
   still queued are dropped there, unacknowledged, with no seek to bring them back: the head
   gaps seen after takeovers (committed N, lowest acknowledged N + 1 or more, the message at N
   delivered to the stream and never taken). Each assigned stream partition whose queued
   messages a resume drops is sent back to the lowest of them.
5. `DeliveryLedger` (a diagnostic, off by default): what faust's fetch loop did with the last
   few thousand offsets of each partition, delivered to the streams or given up on (the loop
   gives up on a message whose delivery is still waiting when the flow is suspended; the
   rebalance's seek brings it back). The gap watch's warning then says what became of the
   message at the committed offset.
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from typing import Any

from aiokafka.structs import TopicPartition
from faust.types import TP

log = logging.getLogger(__name__)

LEDGER_ENV = "HOTLINE_DELIVERY_LEDGER"
GRACE_S = 15.0  # a batch in flight acknowledges within seconds; a gap this old is a loss
CHECK_INTERVAL_S = 5.0


def strict_new_offset(
    consumer: Any, new_offset: Callable[[Any], int | None], tp: Any
) -> int | None:
    """The offset to commit for `tp`: faust's `_new_offset`, but only when the acknowledged
    run starts exactly at the committed position (offsets below it are old news and dropped)."""
    acked: list[int] = consumer._acked[tp]
    if not acked:
        return None
    committed = consumer._committed_offset.get(tp)
    if committed is not None:
        stale = [o for o in acked if o < committed]
        if stale:
            acked[:] = [o for o in acked if o >= committed]
            consumer._acked_index[tp].difference_update(stale)
            if not acked:
                return None
        if min(acked) != committed:
            return None  # a head gap: the commit waits; the gap watch heals it
    return new_offset(tp)


class DeliveryLedger:
    """Which fetched messages faust's fetch loop (`Consumer._drain_messages`) delivered to the
    streams and which it gave up on (投递记录).

    The loop calls the consumer's callback for each message inside
    ``wait_first(callback(message), suspend_flow.wait())``, then records the message's offset
    as read (`Consumer._read_offset`, here a `streams.app.NoReadOffsets` that reports to
    `note_read`). When the flow is suspended while the callback waits (for the flow control,
    the producer's buffer or the conductor's lock) the callback is cancelled and the message
    is gone from this consumer generation; the loop goes on with the next one. `wrap` marks
    the offset a callback was given (synchronously, before the loop can cancel it) and the one
    it delivered; a read with no delivery is a dropped message.

    The last `KEEP` offsets of each partition are remembered with what became of them and
    when, for the gap watch's warning (`describe`).

    A diagnostic, off unless the worker's environment has ``HOTLINE_DELIVERY_LEDGER=1`` (the
    bench runs with it had a slow half-rate latency, as some runs without it did, the code
    before it included: docs/guarantees.md §2)."""

    KEEP = 4096

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._given: dict[Any, int] = {}
        self._delivered: dict[Any, int] = {}
        self._recent: dict[Any, OrderedDict[int, tuple[bool, float]]] = {}

    def wrap(self, callback: Callable[[Any], Awaitable[Any]]) -> Callable[[Any], Any]:
        given, delivered = self._given, self._delivered

        async def deliver(message: Any) -> Any:
            result = await callback(message)
            delivered[message.tp] = message.offset
            return result

        def give(message: Any) -> Awaitable[Any]:
            given[message.tp] = message.offset
            return deliver(message)

        return give

    def note_read(self, tp: Any, offset: int | None) -> None:
        """The loop (or a seek) recorded `offset` as read for `tp`."""
        if offset is None or self._given.get(tp) != offset:
            return  # a seek, not a message the loop handled
        del self._given[tp]
        ok = self._delivered.get(tp) == offset
        recent = self._recent.get(tp)
        if recent is None:
            recent = self._recent[tp] = OrderedDict()
        recent[offset] = (ok, self._clock())
        recent.move_to_end(offset)
        if len(recent) > self.KEEP:
            recent.popitem(last=False)

    def describe(self, tp: Any, offset: int) -> str:
        """What the fetch loop last did with `offset` of `tp` (for a log line)."""
        seen = self._recent.get(tp, {}).get(offset)
        if seen is None:
            return "拉取循环未经手"
        ok, at = seen
        ago = self._clock() - at
        return f"{'已交给流' if ok else '拉取循环放弃（流暂停）'}，{ago:.1f} 秒前"


def delivery_ledger(consumer: Any) -> DeliveryLedger | None:
    """The consumer's delivery ledger (installed by `streams.app.HotlineApp`), if any."""
    return getattr(getattr(consumer, "_read_offset", None), "ledger", None)


def queued_offsets(flow_control: Any) -> dict[Any, int]:
    """The lowest offset of each partition among the events waiting in the queues that
    `flow_control` empties when it resumes (the streams' queues)."""
    lowest: dict[Any, int] = {}
    for queue in list(getattr(flow_control, "_queues", ())):
        for item in list(getattr(queue, "_queue", ())):
            message = getattr(item, "message", None)
            if message is None:
                continue
            tp, offset = message.tp, message.offset
            if tp not in lowest or offset < lowest[tp]:
                lowest[tp] = offset
    return lowest


def resume_flow_and_reread(app: Any, resume: Callable[[], None]) -> None:
    """`FlowControlEvent.resume` for `app.flow_control`, which also empties the streams'
    queues; then each assigned stream partition that had messages waiting there goes back to
    the lowest of them (never below its committed offset). The seek runs as a task; what is
    delivered meanwhile comes twice, which the handlers absorb."""
    queued = queued_offsets(app.flow_control)
    resume()
    if not queued:
        return
    consumer = app.consumer
    try:
        assigned = consumer.assignment()
    except Exception:  # the consumer has not started: nothing of it can be queued
        return
    targets: dict[Any, int] = {}
    for tp in stream_partitions(app, [tp for tp in queued if tp in assigned]):
        committed = consumer._committed_offset.get(tp)
        targets[tp] = queued[tp] if committed is None else max(queued[tp], committed)
    if not targets:
        return
    log.info("恢复流时清空了流队列中未处理的消息：从其中最早的偏移重读 %s",
             ", ".join(f"{tp.topic}[{tp.partition}]@{off}" for tp, off in sorted(targets.items())))
    app.add_future(rewind(consumer, targets))  # the app holds it until done or stopped


def stream_partitions(app: Any, tps: Iterable[Any]) -> list[Any]:
    """The partitions whose messages agents acknowledge (not the tables' changelogs)."""
    return [tp for tp in tps if app.topics.acks_enabled_for(tp.topic)]


async def seek_to_committed_or_start(app: Any, consumer: Any) -> None:
    """`Consumer.perform_seek`, with a floor: each stream partition goes back to its committed
    offset, or to the start of its log when none was committed (or 0), and that position is
    remembered as committed."""
    committed = await consumer.seek_to_committed()
    positions: dict[Any, int] = {
        TP(tp.topic, tp.partition): off for tp, off in committed.items() if off
    }
    unset = [TP(tp.topic, tp.partition) for tp, off in committed.items() if not off]
    unset = stream_partitions(app, unset)
    if unset:
        starts = await consumer.earliest_offsets(*unset)
        floors = {tp: int(starts.get(tp) or 0) for tp in unset}
        await consumer.seek_wait(floors)
        positions.update(floors)
    consumer._committed_offset.update(positions)
    needed = recovery_needs(app)
    if needed:
        await consumer.seek_wait(needed)


def running_recovery(app: Any) -> Any:
    """faust's table recovery service while it is recovering, else None."""
    recovery = getattr(getattr(app, "tables", None), "_recovery", None)
    return recovery if getattr(recovery, "in_recovery", False) else None


def recovery_needs(app: Any) -> dict[Any, int]:
    """While a table recovery runs: each changelog partition it still reads, with the offset of
    the next record it needs. faust seeks back after discarding fetched records (a fetch that
    returns while the flow is held) with `perform_seek`, which moves only partitions with a
    committed offset; a changelog partition has none, so its discarded records were gone for
    that recovery, which then waited for ever (the stuck-recovery mode of the takeover tests).
    `seek_to_committed_or_start` sends these partitions back too."""
    recovery = running_recovery(app)
    return still_needed(*recovery_progress(recovery)) if recovery is not None else {}


def recovery_progress(recovery: Any) -> tuple[dict[Any, int | None], dict[Any, int | None]]:
    """A running recovery's active changelog partitions: the last offset it applied (None or
    -1: none) and the last offset it needs, each."""
    tps = set(recovery.active_tps)
    return ({tp: recovery.active_offsets.get(tp) for tp in tps},
            {tp: recovery.active_highwaters.get(tp) for tp in tps})


def still_needed(
    seen: Mapping[Any, int | None], highwaters: Mapping[Any, int | None]
) -> dict[Any, int]:
    """The partitions whose last applied offset (`seen`, None or -1: none) is short of the last
    one needed (`highwaters`), each with the offset of the next record needed."""
    needed: dict[Any, int] = {}
    for tp, high in highwaters.items():
        last = seen.get(tp)
        last = -1 if last is None else last
        if high is not None and last < high:
            needed[tp] = last + 1
    return needed


class StuckClock:
    """Remembers since when each partition has waited at the same offset."""

    def __init__(self, grace_s: float) -> None:
        self.grace_s = grace_s
        self.since: dict[Any, tuple[int, float]] = {}

    def held(self, waiting: Mapping[Any, int], now: float) -> dict[Any, int]:
        """Record `waiting` (partition → the offset it waits at) as seen at `now`; the ones
        that have waited at that same offset for `grace_s` (a moved offset starts over, a
        partition no longer waiting is forgotten)."""
        self.since = {
            tp: self.since[tp] if tp in self.since and self.since[tp][0] == off else (off, now)
            for tp, off in waiting.items()
        }
        return {tp: off for tp, (off, t0) in self.since.items() if now - t0 >= self.grace_s}

    def reset(self) -> None:
        self.since.clear()


class GapWatch(StuckClock):
    """Partitions stuck at their committed offset (see `stuck`)."""

    def __init__(self, grace_s: float = GRACE_S) -> None:
        super().__init__(grace_s)

    def stuck(
        self,
        acked: Mapping[Any, Sequence[int]],
        committed: Mapping[Any, int | None],
        now: float,
        *,
        fetched: Mapping[Any, int] | None = None,
        in_hand: int = 0,
        parked: Mapping[Any, int] | None = None,
    ) -> dict[Any, int]:
        """Partitions stuck for `grace_s` at the same committed offset: the offset to go back
        to, each. Stuck means a head gap (committed < lowest acked), or, with nothing in hand
        (`in_hand` messages the worker holds, see `live_in_hand`), either messages fetched past
        the committed offset (`fetched`: partition → fetch position) and none of them
        acknowledged, or a partition the consumer does not fetch from (paused, or parked as
        "buffer full") while its log goes on past the committed offset (`parked`: partition →
        log end). Lag alone is not enough: while the broker is away nothing is fetched.

        "Nothing in hand" is over all partitions, not per partition: faust tracks a message
        only when a stream takes it from its queue, so messages of one partition wait untracked
        behind a batch of others (a database outage holds one batch for as long as it lasts),
        and are not lost."""
        gaps: dict[Any, int] = {}
        for tp, offsets in acked.items():
            done = committed.get(tp)
            if offsets and done is not None and min(offsets) > done:
                gaps[tp] = done
        if not in_hand:
            for tp, end in (fetched or {}).items():
                done = committed.get(tp)
                if done is not None and end > done and not acked.get(tp):
                    gaps[tp] = done
            for tp, end in (parked or {}).items():
                done = committed.get(tp)
                if done is not None and end > done:
                    gaps[tp] = done
        return self.held(gaps, now)


def consumer_started(consumer: Any) -> bool:
    thread = getattr(consumer, "_thread", None)
    return getattr(thread, "_consumer", None) is not None


def fetch_positions(consumer: Any, tps: Iterable[Any]) -> dict[Any, int]:
    """How far the consumer has fetched each partition (the next offset it will hand over),
    read from aiokafka's subscription state as faust's own slow-processing check does; a
    partition without a valid position (being reset, or just left) is skipped."""
    try:
        assignment = consumer._thread._ensure_consumer()._fetcher._subscriptions.subscription
        states = assignment.assignment
    except Exception as exc:  # not started yet, or an aiokafka whose layout differs
        if consumer_started(consumer):
            log.warning("读不到消费位置，缺口自愈只看已确认偏移：%r", exc)
        return {}
    positions: dict[Any, int] = {}
    for tp in tps:
        try:
            state = states.state_value(TopicPartition(tp.topic, tp.partition))
        except Exception:
            continue
        if state is not None and state.has_valid_position:
            positions[tp] = state.position
    return positions


async def heal(
    app: Any, watch: GapWatch, now: float, rewinds: Any = None
) -> dict[Any, int]:
    """Send the consumer back to the committed offset of every stuck partition it still holds
    (nothing while a rebalance or the flow is held: the rebalance seeks by itself); count each
    in `rewinds` (a prometheus Counter labelled by topic) when given.

    Nothing is judged while an offset commit is in flight: faust takes the acknowledged run out
    of `_acked` when the commit starts and moves the committed offset only when it returns, so
    in between a partition looks as if its handled messages had vanished (or, with newer
    acknowledgements, as a head gap). While the broker is away that commit waits as long as the
    broker does, and the watch used to rewind partitions whose messages were all handled: after
    the broker restart in the tests, with the commit 16 s in flight. The partitions' clocks are
    kept: after the commit they have either moved (and start over) or are still stuck."""
    consumer = app.consumer
    if app.rebalancing or not app.flow_control.is_active():
        watch.reset()
        return {}
    if getattr(consumer, "_commit_fut", None) is not None:
        return {}
    assigned = consumer.assignment()
    streams = stream_partitions(app, assigned)
    fetched = fetch_positions(consumer, streams)
    fetching = getattr(consumer, "_active_partitions", None) or set()
    parked = {tp: end for tp in streams
              if tp not in fetching and (end := log_end(consumer, tp)) is not None}
    found = watch.stuck(
        consumer._acked, consumer._committed_offset, now,
        fetched=fetched,
        in_hand=sum(live_in_hand(consumer, app.consumer_generation_id).values()),
        parked=parked,
    )
    stuck = {tp: off for tp, off in found.items() if tp in assigned}
    if stuck:
        acked = consumer._acked
        ledger = delivery_ledger(consumer)
        log.warning(
            "分区停在已提交偏移处（其后的消息未处理）：回到已提交偏移重新消费 %s",
            {f"{tp.topic}[{tp.partition}]": {
                "已提交": off,
                "最小已确认": min(acked[tp]) if acked.get(tp) else None,
                "已拉取至": fetched.get(tp),
                "暂停拉取": tp in parked,
                **({"已提交偏移处的消息": ledger.describe(tp, off)} if ledger else {}),
             } for tp, off in stuck.items()},
        )
        if not await rewind(consumer, stuck, rewinds):
            return {}
        resumed = [tp for tp in stuck if tp in parked]
        if resumed:  # fetch from it again; faust's "buffer full" mark goes with the pause
            consumer._buffered_partitions.difference_update(resumed)
            consumer.resume_partitions(resumed)
        watch.reset()
    return stuck


def live_in_hand(consumer: Any, generation: int | None) -> dict[Any, int]:
    """Partition → how many of its messages the worker still holds to handle: tracked, not yet
    acknowledged, of the current consumer generation and at or past the committed offset.

    faust's tracking set also keeps messages no acknowledgement can ever credit: one below the
    committed offset is marked acknowledged without leaving the set, and one of an older
    generation is read again from the committed offset anyway. Such leftovers, still referenced
    somewhere after a rebalance, once counted as work in hand for as long as they lived: after
    a kill -9 and a takeover, a partition whose fetched messages had vanished waited for ever
    (783 of 1,000 orders routed) while 116 tracked messages held the gap watch off; the 20 the
    dump listed were of another partition, an older generation and below their commit."""
    committed = consumer._committed_offset
    live: dict[Any, int] = {}
    for m in list(consumer._unacked_messages):
        if m.acked or (generation is not None and m.generation_id != generation):
            continue
        done = committed.get(m.tp)
        if done is not None and m.offset < done:
            continue
        live[m.tp] = live.get(m.tp, 0) + 1
    return live


def log_end(consumer: Any, tp: Any) -> int | None:
    """The partition's log end as of the consumer's last fetch (None before any fetch)."""
    try:
        return consumer.highwater(tp)
    except Exception:  # not fetched yet
        return None


async def rewind(consumer: Any, targets: Mapping[Any, int], rewinds: Any = None) -> bool:
    """Seek each partition to its target offset and count it in `rewinds` (a prometheus
    Counter labelled by topic) when given; False when the seek failed (the broker is away:
    the caller tries again at its next check)."""
    try:
        await consumer.seek_wait(targets)
    except Exception as exc:
        log.warning("回退偏移失败，稍后重试：%r", exc)
        return False
    for tp in targets if rewinds is not None else ():
        rewinds.labels(tp.topic).inc()
    return True


RECOVERY_GRACE_S = 30.0  # a healthy recovery reads a fetched record within a second


class RecoveryWatch(StuckClock):
    """A table recovery that waits on changelog records the consumer has already fetched past.

    Seen after takeovers: a changelog partition fetched to its end while faust's recovery,
    which started it from an earlier offset, never received one of its records (they were
    dropped between the fetch and the recovery's queue), so recovery waited for ever and the
    worker never routed again. After `grace_s` with the recovery's offset unchanged, the
    partition is sent back to the offset the recovery waits for; records it has already applied
    are skipped by the recovery itself (it keeps only offsets above the last one it saw)."""

    def __init__(self, grace_s: float = RECOVERY_GRACE_S) -> None:
        super().__init__(grace_s)

    def stuck(
        self,
        seen: Mapping[Any, int | None],
        highwaters: Mapping[Any, int | None],
        fetched: Mapping[Any, int],
        now: float,
    ) -> dict[Any, int]:
        """Changelog partitions to read again, each with the offset to seek to. `seen`: the last
        offset the recovery applied (None or -1: none); `highwaters`: the last offset it needs;
        `fetched`: the consumer's fetch position."""
        waiting = {tp: nxt for tp, nxt in still_needed(seen, highwaters).items()
                   if (position := fetched.get(tp)) is not None and position > nxt}
        return self.held(waiting, now)


async def heal_recovery(
    app: Any, watch: RecoveryWatch, now: float, rewinds: Any = None
) -> dict[Any, int]:
    """Send the consumer back to where a stuck table recovery waits (see `RecoveryWatch`)."""
    recovery = running_recovery(app)
    if recovery is None:
        watch.reset()
        return {}
    seen, highwaters = recovery_progress(recovery)
    stuck = watch.stuck(seen, highwaters, fetch_positions(app.consumer, highwaters), now)
    if not stuck:
        return {}
    log.warning("表恢复在等待已拉取过的变更日志消息：回到恢复所需偏移重新读取 %s",
                {f"{tp.topic}[{tp.partition}]": off for tp, off in stuck.items()})
    if not await rewind(app.consumer, stuck, rewinds):
        return {}
    watch.reset()
    return stuck
