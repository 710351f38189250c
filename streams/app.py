"""The faust app (流处理): topics, agents and the repeat-complaint table on Kafka.

Agents are thin adapters over `streams.handlers.Router`, the same handlers the embedded runner
uses. Offsets are acknowledged only after the database write and after the outgoing messages
are delivered (at-least-once); the handlers are idempotent by order id and event id, so a
redelivered message changes nothing.

    workorders.received  (key = order id; `hotline ingest` puts it on its enterprise's home
                          partition, streams.partitioning)
      -> intake agent: validate; bad input -> workorders.dlq with the reason
         - an order on its enterprise's home partition (or of no enterprise) is routed here:
           repeat counts in the `enterprise-repeats` table (changelog-backed), classify,
           route, persist -> workorders.dispatched + dispatch.<unit code>
         - any other order (from a producer that partitions by order id) is forwarded to
           workorders.by-enterprise (key = enterprise key: credit code, else name)
      -> route agent: the same routing for the forwarded orders
    workorders.events (key = order id)
      -> events agent: lifecycle; 退单 -> 改派 -> dispatch.<unit code>
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import os
import sys
import tempfile
import time
import weakref
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar, cast

import faust
import faust.streams as faust_streams
from faust.types import EventT, StreamT, TableT, TopicT
from mode import Service
from mode.services import WaitResults
from mode.utils.objects import cached_property
from mode.utils.queues import FlowControlEvent
from sqlalchemy.exc import IntegrityError, OperationalError

from hotline.bootstrap import App, bootstrap, settle_heap
from hotline.settings import EVENT_LOOPS, Settings
from models.lifecycle import InvalidEventData, LifecycleEvent
from models.records import OrderIn
from models.tables import now_local
from streams.classify_ahead import MergedAhead
from streams.faults import (
    BACKOFF_MAX_S,
    BACKOFF_START_S,
    Retrier,
    handler_failed,
    is_transient,
)
from streams.diagnostics import install_stack_dump
from streams.gaps import CHECK_INTERVAL_S as GAP_CHECK_INTERVAL_S
from streams.gaps import (
    LEDGER_ENV,
    DeliveryLedger,
    GapWatch,
    RecoveryWatch,
    fetch_positions,
    heal,
    heal_recovery,
    live_in_hand,
    log_end,
    resume_flow_and_reread,
    seek_to_committed_or_start,
    strict_new_offset,
)
from streams.handlers import Ahead, Outcome, OutMessage, Router, order_to_json
from streams.lag import install_lag_gauge
from streams.partitioning import enterprise_key, has_enterprise, home_partition
from streams.sensor import setup_sensors
from streams.stage_timing import TIMES, watch_loop_lag

log = logging.getLogger(__name__)

RECEIVED = "workorders.received"
BY_ENTERPRISE = "workorders.by-enterprise"
EVENTS = "workorders.events"
#: events a routing batch holds at most (admitted, classified, decided and written together):
#: each batch pays a few database round trips, three COPYs, a commit and the executor hops,
#: so under a backlog larger batches route more. Interleaved runs of the bench's Kafka phases
#: (40,000 orders): 400 routed 2,288-2,319 orders/s (4 runs) against 2,209-2,215 with 200
#: (2 runs) and 2,323-2,477 with 800 (2 runs, half-rate p99 124-211 ms against 97-142 ms);
#: under light load a batch is whatever arrived within BATCH_WITHIN, so this changes nothing
BATCH = 400
#: how long a batch waits to fill up: every hop (intake, route) adds up to this much latency
#: under light load; under heavy load batches fill up long before. faust's `noack_take` does not
#: buffer while the agent handles a batch, so at moderate load every batch waits this long.
#: Back to back at 360 orders/s (three pairs): 50 ms gave p50 218-300 / p99 421-612 ms, 20 ms
#: 180-247 / 364-415 ms, with the full-speed rate unchanged (770 and 675/s against 786 and 733/s)
BATCH_WITHIN = 0.02
SWITCH_INTERVAL_S = 0.003
#: offsets are committed every COMMIT_INTERVAL_S by faust's background committer. A commit
#: after every COMMIT_EVERY acks is made inline by the fetch loop (which stops feeding the
#: streams meanwhile: a producer flush and a broker round trip), so keep that one rare
COMMIT_INTERVAL_S = 1.0
COMMIT_EVERY = 10_000
#: a worker that dies (kill -9) loses its partitions to the others after this long
SESSION_TIMEOUT_S = 10.0
HEARTBEAT_S = 1.0
TICK_INTERVAL_S = 30.0
#: orders whose deadlines a tick handles at most (the earliest due first; the rest next time):
#: after an outage or a replay of old orders a tick must not run for minutes
TICK_LIMIT = 100
#: aiokafka sends at most one batch per partition per request and one request per broker at a
#: time, so a send to a partition whose batch is full waits a whole round trip: a batch must
#: hold a whole outbox's share of a partition (400 orders of ~3 KB spread over 4 partitions)
PRODUCER_BATCH_BYTES = 512 * 1024
#: memory bounds under a backlog: events an agent's stream buffers ahead of its batch (faust's
#: default is 4,096), records one fetch hands over. faust stops fetching a partition once the
#: buffer is nearly full and starts again only when it has drained to half: with 1,000 the
#: worker idled on those restarts (its event loop in select half the time at full speed, py-spy)
#: and routed 1,520 orders/s; with 4,000, 1,770/s (back to back, two runs each of 20,000
#: orders, BATCH 200 then). 8,000 buffered orders of ~3 KB are about 24 MB
STREAM_BUFFER = 20 * BATCH
#: faust's table writes go to the changelog through the producer's buffer; above
#: `max_messages` pending (faust's default is 100) the conductor stops handing fetched messages
#: to every stream until about that many are sent, one event-loop turn each. A batch that
#: meets many enterprises writes more than 100 entries at once, so under the default one
#: large batch (after any pause: a GC, a busy neighbour) stalled the fetch, the stall made the
#: next batches large again, and the worker stayed in that state: at half rate, pausing the
#: worker for 1.5 s three times put the p50 latency at 1.2-1.5 s for 12-16 s after each
#: pause (54 "producer buffer full" warnings) instead of recovering within a couple of
#: seconds. The limit is above what the two routing agents' batches (each `BATCH` plus one
#: take) can write at once; a producer that cannot keep up still stops the streams. Each
#: pending entry is one enterprise's recent orders (under a few KB)
PRODUCER_BUFFER_MESSAGES = 8 * BATCH
MAX_POLL_RECORDS = 2 * BATCH
#: what the broker gathers for a worker's fetch before it answers, unless
#: `Settings.fetch_wait_ms` passes first (about 20 orders). faust asks for one byte: under
#: moderate load every fetch then brought a handful of orders (5-6 at 700 orders/s a worker),
#: and each fetch is a hand-off between the consumer's thread and the event loop, with more,
#: smaller route batches. One worker on PostgreSQL, CPU per thread from /proc (2026-12-05,
#: back to back): gathering 64 KB for up to 25 ms, a worker used 1.05-1.06 ms of CPU per order
#: at 700 orders/s and 1.56-1.63 ms at 350/s, against 1.23 and 1.90-1.98 ms at one byte; full
#: speed unchanged (0.55-0.60 ms). The default wait, 100 ms, cost the bench's two workers less
#: at full speed than 25 ms did (README, Fetch gathering)
FETCH_MIN_BYTES = 64 * 1024
#: a fetch of this many records or more means a backlog: the next fetches are answered at the
#: first byte again (`gather_below_backlog`), until a fetch brings fewer
BACKLOG_RECORDS = 64
#: events that can put an order on a unit's feed (改派, 人工派单, 重办): a redelivered one sends
#: the order's current dispatch again, since the first delivery may have been lost
REDISPATCHING_EVENTS = frozenset({"OrderReturned", "OrderDispatched", "RevisitRecorded"})

T = TypeVar("T")
Handle = Callable[[Sequence[EventT]], Awaitable[list[OutMessage]]]


#: the order back from the repartition topic
order_from_json = OrderIn.from_json


#: an enterprise's table entry keeps at most this many recent orders: the rule only asks
#: whether there are N (a handful) within the window, and every table write sends the whole
#: entry to the changelog, so an unbounded entry makes a busy enterprise cost O(n²)
MAX_SEEN_PER_ENTERPRISE = 32


def count_repeats(
    seen: dict[str, str], order: OrderIn, window_days: int
) -> tuple[dict[str, str], int]:
    """Add the order to an enterprise's seen orders (order id → received time), drop those
    outside the window, and count the ones within the window up to this order. Idempotent."""
    seen = dict(seen)
    seen[order.order_id] = order.received_at.isoformat()
    since = order.received_at - timedelta(days=window_days)
    # keep two windows of history so an order arriving late still finds its predecessors
    horizon = since - timedelta(days=window_days)
    times = {k: datetime.fromisoformat(v) for k, v in seen.items()}  # each parsed once
    kept = {k: v for k, v in seen.items() if times[k] >= horizon}
    if len(kept) > MAX_SEEN_PER_ENTERPRISE:  # keep the newest
        newest = sorted(kept, key=times.__getitem__)[-MAX_SEEN_PER_ENTERPRISE:]
        kept = {k: kept[k] for k in newest}
        kept[order.order_id] = seen[order.order_id]
    count = sum(1 for k in kept if since <= times[k] <= order.received_at)
    return kept, count


class NoReadOffsets(dict[Any, int | None]):
    """A consumer's read-offset memory that remembers nothing.

    faust drops every fetched message whose offset is below the last one it read from that
    partition ("DROPPED MESSAGE ROFF") and counts a jump ahead as a gap of messages that need no
    ack ("_add_gap"). Across a rebalance that memory goes stale: a worker that takes partitions
    back seeks to the committed offset, then drops the re-fetched messages it never finished,
    and a gap lets a later commit pass over messages nobody handled (seen here as orders stuck
    in `workorders.received` or `workorders.by-enterprise` after a takeover; faust issues
    robinhood/faust#115, faust-streaming/faust#216). With this mapping every fetched message is
    delivered and nothing counts as a gap: after a seek, messages already handled come again,
    which the idempotent handlers absorb (a unit may see the same dispatch twice, see
    docs/guarantees.md). Every read answers None; writes only go to `ledger`, which tells a
    message the fetch loop delivered from one it gave up on (streams.gaps.DeliveryLedger)."""

    def __init__(self, ledger: DeliveryLedger | None = None) -> None:
        super().__init__()
        self.ledger = ledger

    def __getitem__(self, tp: Any) -> None:
        return None

    def __setitem__(self, tp: Any, offset: int | None) -> None:
        if self.ledger is not None:
            self.ledger.note_read(tp, offset)

    def update(self, *args: Any, **kwargs: Any) -> None:
        pass


class HotlineApp(faust.App):
    """The faust app, with a consumer that never drops a fetched message, that lets only the
    acknowledgements of handled messages move the committed offset, and only over a run that
    starts at the committed position (streams.gaps)."""

    #: checks run every `GAP_CHECK_INTERVAL_S` from the moment the app starts. faust starts
    #: `app.timer`s and `app.task`s only once the first table recovery is complete, so a watch
    #: over that recovery must not be one of them
    watches: list[Callable[[], Awaitable[Any]]]
    #: `Settings.fetch_wait_ms` (create_app sets it); 0 leaves faust's fetches as they are
    fetch_wait_ms: int = 0

    @Service.task
    async def _run_watches(self) -> None:
        # kill -USR1 <pid>: every task's and thread's stack, and the consumer's state, to the log
        install_stack_dump(functools.partial(consumer_state, self))
        core = getattr(self, "hotline", None)  # set by create_app
        helper = core.router.classifier_process if core is not None else None
        log.info("分类子进程：%s",
                 f"pid {helper.pid}" if helper is not None else "未启用（在 worker 进程内分类）")
        log.info("事件循环：%s", loop_name(asyncio.get_running_loop()))
        while not self.should_stop:
            await self.sleep(GAP_CHECK_INTERVAL_S)
            for watch in getattr(self, "watches", ()):
                try:
                    await watch()
                except asyncio.CancelledError:
                    raise
                except Exception:  # a failed check is tried again at the next interval
                    log.exception("偏移检查失败")

    def _new_consumer(self) -> Any:
        consumer = super()._new_consumer()
        # streams.gaps: what the fetch loop did with each message, for the gap watch's warning
        # (a diagnostic, off unless HOTLINE_DELIVERY_LEDGER=1: see DeliveryLedger)
        ledger = DeliveryLedger() if os.environ.get(LEDGER_ENV) == "1" else None
        if ledger is not None:
            consumer.callback = ledger.wrap(consumer.callback)  # type: ignore[attr-defined]
        consumer._read_offset = NoReadOffsets(ledger)  # type: ignore[attr-defined]
        if TIMES.enabled:
            consumer._wait_next_records = functools.partial(  # type: ignore[attr-defined]
                timed_fetch, consumer._wait_next_records)
        consumer.ack = functools.partial(  # type: ignore[method-assign]
            ack_current_generation, self, consumer.ack, consumer
        )
        # streams.gaps: commit only a run that starts at the committed position; after a
        # rebalance go back to the committed offset or, with none, to the start of the log
        consumer._new_offset = functools.partial(  # type: ignore[attr-defined]
            strict_new_offset, consumer, consumer._new_offset
        )
        consumer.perform_seek = functools.partial(  # type: ignore[method-assign]
            seek_to_committed_or_start, self, consumer
        )
        consumer.wait_first = functools.partial(  # type: ignore[method-assign]
            deliver_inline, self, consumer, consumer.wait_first
        )
        if self.fetch_wait_ms:
            thread = consumer._thread  # type: ignore[attr-defined]
            thread._create_worker_consumer = functools.partial(
                gathered_fetches, thread._create_worker_consumer, self.fetch_wait_ms
            )
            consumer._wait_next_records = functools.partial(  # type: ignore[attr-defined]
                gather_below_backlog, thread, consumer._wait_next_records)
        return consumer

    def _new_producer(self) -> Any:
        producer = super()._new_producer()
        producer.buffer.max_messages = PRODUCER_BUFFER_MESSAGES
        return producer

    @cached_property
    def flow_control(self) -> FlowControlEvent:
        """faust's flow control, whose resume also reads again what it empties from the
        streams' queues (streams.gaps.resume_flow_and_reread)."""
        flow = FlowControlEvent(loop=self.loop)
        flow.resume = functools.partial(  # type: ignore[method-assign]
            resume_flow_and_reread, self, flow.resume
        )
        return flow


def gathered_fetches(
    create: Callable[[Any], Any], wait_ms: int, transport: Any
) -> Any:
    """faust's aiokafka consumer, whose fetches the broker holds until it has `FETCH_MIN_BYTES`
    or ``wait_ms`` passed (faust keeps aiokafka's one byte and lets the broker wait up to 1.5 s
    for it). aiokafka's consumer hands both to its fetcher when it starts."""
    consumer = create(transport)
    consumer._fetch_min_bytes = FETCH_MIN_BYTES
    consumer._fetch_max_wait_ms = wait_ms
    return consumer


async def gather_below_backlog(
    thread: Any, inner: Callable[[float], Awaitable[Any]], timeout: float
) -> Any:
    """faust's wait for the next fetched records, after which the next fetches gather
    `FETCH_MIN_BYTES` only while the worker keeps up: a fetch that brought `BACKLOG_RECORDS` or
    more means a backlog, and the broker then answers at the first byte again."""
    records, active = await inner(timeout)
    # the fetcher runs on the consumer's thread and reads the value for each fetch request it
    # builds; one attribute store from this thread is atomic
    fetcher = getattr(getattr(thread, "_consumer", None), "_fetcher", None)
    if fetcher is not None:
        n = sum(len(batch) for batch in (records or {}).values())
        fetcher._fetch_min_bytes = 1 if n >= BACKLOG_RECORDS else FETCH_MIN_BYTES
    return records, active


async def timed_fetch(inner: Callable[[float], Awaitable[Any]], timeout: float) -> Any:
    """faust's wait for the next fetched records, with stage timing (HOTLINE_STAGE_TIMING):
    "fetch.wait" (how long it waited, and the records it got) and "fetch.age" (how old the
    oldest of them was: time since its producer's timestamp)."""
    started = time.perf_counter()
    records, active = await inner(timeout)
    stamps = [batch[0].timestamp for batch in (records or {}).values() if batch]
    if stamps:
        n = sum(len(batch) for batch in records.values())
        TIMES.add("fetch.wait", time.perf_counter() - started, n)
        TIMES.add("fetch.age", time.time() - min(stamps) / 1000, n)
    return records, active


_EVENT_WAIT = asyncio.Event.wait.__code__


async def deliver_inline(
    app: faust.App, consumer: Any, wait_first: Callable[..., Awaitable[Any]], *coros: Any,
    timeout: Any = None,
) -> Any:
    """faust's fetch loop hands each message to the streams with
    ``consumer.wait_first(callback(message), consumer.suspend_flow.wait())``: four tasks, a
    wait and three cancellations per message, several turns of the event loop, and after each
    turn's select() the loop thread waits for the GIL while the router thread holds it. That
    capped delivery near 1,000 messages a second while the router handled large batches, so at
    half rate a backlog, once there, stayed (latency 1.2-1.5 s for tens of seconds).

    When the delivery cannot wait, the callback is awaited directly, with no task and no turn
    of the loop: the flow is on and not being suspended, the producer buffer is within its
    limit, no subscription change holds the conductor's lock, and every stream queue has room,
    so the callback only decodes the message and puts it on the queues. Anything else (where
    faust races the delivery against a suspension of the flow) goes the way faust does it."""
    conductor = app.topics
    if (
        len(coros) == 2 and timeout is None
        and getattr(coros[1], "cr_code", None) is _EVENT_WAIT
        and not consumer.suspend_flow.is_set()
        and app.flow_control.is_active()
        and app.producer.buffer.size <= app.producer.buffer.max_messages
        and not conductor._tp_to_callback_lock.locked()
        and not any(channel.queue.full() for channel in conductor._topics)
    ):
        coros[1].close()
        result = await coros[0]
        return WaitResults([coros[0]], [result], False)
    return await wait_first(*coros, timeout=timeout)


def ack_current_generation(
    app: faust.App, ack: Callable[[Any], bool], consumer: Any, message: Any
) -> bool:
    """Acknowledge `message`; the acknowledgement moves the committed offset only while the
    stream flows and for a message fetched in the current consumer generation.

    While a rebalance or a shutdown holds the flow, faust acknowledges every message its
    streams still pull from their queues without handing it to the agent ("skipped"), then
    commits; a worker that stopped or lost its partitions that way committed past orders nobody
    had routed. Such acknowledgements, and our own for a batch that spans a rebalance, mark the
    message done but give the commit no credit: the message is fetched again from the committed
    offset (by this worker or the next owner) and handled, idempotently, before it counts."""
    generation = getattr(message, "generation_id", None)
    current = generation is None or generation == app.consumer_generation_id
    if current and app.flow_control.is_active():
        return ack(message)
    message.acked = True
    consumer._unacked_messages.discard(message)
    return False


def consumer_state(app: faust.App) -> str:
    """What the consumer thinks it is doing: flow, assignment, paused partitions, offsets."""
    c: Any = app.consumer
    assigned = c.assignment()
    live = live_in_hand(c, app.consumer_generation_id)
    tracked = sorted((str(m.tp), m.offset, m.generation_id, m.acked)
                     for m in list(c._unacked_messages))
    lines = [
        f"flow_control active={app.flow_control.is_active()} consumer flow_active="
        f"{getattr(c, 'flow_active', None)} rebalancing={app.rebalancing} "
        f"generation={app.consumer_generation_id} unacked={len(c._unacked_messages)}",
        f"assignment={sorted(map(str, assigned))}",
        f"paused={sorted(map(str, c._paused_partitions))}",
        f"active={sorted(map(str, c._active_partitions or ()))}",
        f"committed={ {str(k): v for k, v in c._committed_offset.items()} }",
        f"acked={ {str(k): (len(v), min(v), max(v)) for k, v in c._acked.items() if v} }",
        f"fetched={ {str(k): v for k, v in fetch_positions(c, assigned).items()} }",
        f"log_end={ {str(tp): log_end(c, tp) for tp in assigned} }",
        f"live_in_hand={ {str(k): v for k, v in live.items()} }",
        f"tracked={ tracked[:20] }",
    ]
    return "\n".join(lines)


async def _all_done(futures: Sequence[asyncio.Future[None]]) -> None:
    """Wait for every one of ``futures``; then raise the first failure, if any (a batch whose
    preparation partly failed is handled with what was prepared)."""
    await asyncio.wait(futures)
    for f in futures:
        f.result()


def as_stream(stream: StreamT) -> faust.Stream:
    """The concrete stream (for `noack_take` and the current-event context)."""
    return cast(faust.Stream, stream)


async def batches(stream: StreamT, source: str) -> AsyncIterator[Sequence[EventT]]:
    """Batches of up to BATCH events that stay unacknowledged until `Pipeline.settle`."""
    idle_since = time.perf_counter()
    async for batch in as_stream(stream).noack_take(BATCH, within=BATCH_WITHIN):
        TIMES.add(f"{source}.wait", time.perf_counter() - idle_since, len(batch))
        if TIMES.enabled:  # how long the first message of the piece took to get here
            TIMES.add(f"{source}.age_taken", time.time() - batch[0].message.timestamp)
        yield batch
        idle_since = time.perf_counter()


class Pipeline:
    """The agents' shared plumbing: the router runs on one worker thread (it is synchronous and
    not thread-safe, and the event loop must keep heart-beating while it works), outgoing
    messages are delivered and acknowledged by the broker before the input is acknowledged.
    Intake validation and the deadline tick have a thread each, so that neither waits behind a
    route batch nor holds one up: `Router.validate` and `Router.tick` only use the store (a
    session per call, so thread-safe), the metrics (thread-safe) and pure functions."""

    def __init__(self, app: faust.App, router: Router, settings: Settings) -> None:
        self.app = app
        self.router = router
        self.settings = settings
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="router")
        self.intake_executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="intake")
        self.tick_executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="deadlines")
        self.retrier = Retrier()
        self.topics: dict[str, TopicT] = {}

    def topic(self, name: str, *, internal: bool = False) -> TopicT:
        """The topic `name` (without prefix), declared once with the configured partitions."""
        if name not in self.topics:
            self.topics[name] = self.app.topic(
                self.settings.topic(name), partitions=self.settings.partitions,
                internal=internal,
            )
        return self.topics[name]

    async def call(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """``fn(*args, **kwargs)`` on the router thread."""
        return await self._on(self.executor, fn, *args, **kwargs)

    async def call_intake(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """``fn(*args, **kwargs)`` on the intake thread (validation only)."""
        return await self._on(self.intake_executor, fn, *args, **kwargs)

    async def _on(
        self, executor: ThreadPoolExecutor, fn: Callable[..., T], *args: Any, **kwargs: Any
    ) -> T:
        loop = asyncio.get_running_loop()
        submitted = time.perf_counter()

        def timed() -> T:
            TIMES.add("executor.queue", time.perf_counter() - submitted)
            return fn(*args, **kwargs)

        return await loop.run_in_executor(executor, timed)

    async def send(self, messages: Sequence[OutMessage]) -> list[Awaitable[Any]]:
        """Hand the messages to the producer, in order; each future resolves on the broker's
        ack (or fails). Straight to the app's producer: faust's `Topic.send` adds a pending
        and a future message, codecs and two sensor calls per message, which cost more than
        the routing of the order itself (the values are bytes already, and the domain metrics
        count what is sent)."""
        producer = await self.app.maybe_start_producer()
        return [
            await producer.send(
                self.topic(m.topic).get_topic_name(),
                m.key.encode() if m.key else None,
                m.encode(),
                partition=None, timestamp=None, headers=None,
            )
            for m in messages
        ]

    async def deliver(self, messages: Sequence[OutMessage]) -> None:
        """Send and wait for the broker's acks."""
        for fut in await self.send(messages):
            await fut

    async def outbox(
        self, batch: Sequence[EventT], source: str, handle: Handle
    ) -> list[OutMessage]:
        """Handle a batch (database write included) and return its outbox. A batch that keeps
        failing is split; a single message that keeps failing is dead-lettered with the error."""
        started = time.perf_counter()
        try:
            out = await self.retrier.run(f"{source} batch", lambda: handle(batch))
        except Exception as exc:  # noqa: BLE001 - poison or bug: isolate it, keep flowing
            if len(batch) == 1:
                out = await self._dead_letter(source, batch[0], exc)
            else:
                log.warning("%s: batch of %d failed; handling one by one", source, len(batch))
                out = []
                for event in batch:
                    out.extend(await self._one(source, event, handle))
        TIMES.add(f"{source}.handle", time.perf_counter() - started, len(batch))
        return out

    async def start_delivery(
        self, out: Sequence[OutMessage], source: str
    ) -> list[Awaitable[Any]]:
        """Send a batch's outbox; the futures of its acks. When even handing it to the producer
        fails, deliver it with retries right here (nothing is left to wait for then)."""
        try:
            return await self.send(out)
        except Exception as exc:  # noqa: BLE001 - retried (or raised) with the usual policy
            log.warning("%s delivery: %r; retrying", source, exc)
            await self.retrier.run(f"{source} delivery", lambda: self.deliver(out))
            return []

    async def settle(
        self, stream: faust.Stream, batch: Sequence[EventT], source: str,
        out: Sequence[OutMessage], sent: Sequence[Awaitable[Any]],
    ) -> None:
        """Wait for the broker's acks of a batch's outbox (sending it again when one fails),
        then acknowledge the batch's input."""
        started = time.perf_counter()
        try:
            for fut in sent:
                await fut
        except Exception as exc:  # noqa: BLE001 - retried (or raised) with the usual policy
            log.warning("%s delivery: %r; sending the batch's outbox again", source, exc)
            await self.retrier.run(f"{source} delivery", lambda: self.deliver(out))
        acked = time.perf_counter()
        TIMES.add(f"{source}.acks", acked - started, len(out))
        for event in batch:
            await stream.ack(event)

    async def run(self, stream: faust.Stream, source: str, handle: Handle) -> None:
        """An agent's loop. Batches are handled one at a time and in order (database write
        included), each outbox is sent as soon as it is built, and each batch's input is
        acknowledged after the broker acknowledged its outbox and after the batch before it
        was.

        While one batch is handled, the loop goes on taking from the stream: what it takes
        meanwhile is held and, when the handler can (`prepare`), made ready piece by piece as
        it arrives (validated, and on its way through the classifier process). When the
        router is free, everything held is handled as one batch. So classification overlaps
        the routing and the database write of the batch before, the broker's acks overlap
        both, and under load the batches stay large (each database round trip and commit is
        paid per batch) while under light load a batch starts as soon as it is taken. At most
        `BATCH` events (plus one take) are held, one batch handled and the batches before it
        settling, so memory stays bounded."""
        prepare: Callable[[Sequence[EventT]], Awaitable[None]] | None = getattr(
            handle, "prepare", None)
        loop = asyncio.get_running_loop()
        live: set[asyncio.Future[Any]] = set()

        def track(f: asyncio.Future[Any]) -> asyncio.Future[Any]:
            live.add(f)
            f.add_done_callback(live.discard)
            return f

        handled_prev: asyncio.Future[None] | None = None
        settled_prev: asyncio.Future[None] | None = None
        held: list[EventT] = []
        readies: list[asyncio.Future[None]] = []
        pieces = batches(stream, source).__aiter__()
        taking: asyncio.Future[Sequence[EventT]] | None = track(
            asyncio.ensure_future(pieces.__anext__()))
        try:
            while taking is not None or held:
                router_free = handled_prev is None or handled_prev.done()
                if held and (router_free or taking is None or len(held) >= BATCH):
                    # (a batch in hand that failed was raised after the wait below)
                    if not router_free:
                        await handled_prev  # full: wait for the router (raises if it failed)
                        if settled_prev is not None and settled_prev.done():
                            settled_prev.result()  # raises when it could not be delivered
                    ready = (track(asyncio.ensure_future(_all_done(readies)))
                             if readies else None)
                    handled: asyncio.Future[None] = track(loop.create_future())
                    settled = track(asyncio.ensure_future(self._process(
                        stream, held, source, handle, ready, handled_prev, settled_prev,
                        handled,
                    )))
                    handled_prev, settled_prev = handled, settled
                    held, readies = [], []
                    continue
                # wait for the next take, or for the batch in hand to be handled (then the
                # router is free for what is held) or settled; a failure of either stops the
                # loop at once, as it did when each batch was awaited in turn
                assert taking is not None
                waits: set[asyncio.Future[Any]] = {taking}
                waits.update(f for f in (handled_prev, settled_prev)
                             if f is not None and not f.done())
                await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
                for f in (handled_prev, settled_prev):
                    if f is not None and f.done():
                        f.result()  # raises when that batch could not be handled or delivered
                if not taking.done():
                    continue
                try:
                    piece = taking.result()
                except StopAsyncIteration:
                    taking = None
                    continue
                taking = track(asyncio.ensure_future(pieces.__anext__()))
                held.extend(piece)
                if prepare is not None:
                    readies.append(track(asyncio.ensure_future(prepare(piece))))
            if handled_prev is not None:
                await handled_prev
            if settled_prev is not None:
                await settled_prev
        finally:
            for f in list(live):
                f.cancel()  # unacknowledged: redelivered, and the handlers are idempotent
            forget = getattr(handle, "forget", None)
            if held and forget is not None:
                forget(held)  # taken and prepared, never handled

    async def _process(
        self, stream: faust.Stream, batch: Sequence[EventT], source: str, handle: Handle,
        ready: asyncio.Future[None] | None, handled_prev: asyncio.Future[None] | None,
        settled_prev: asyncio.Future[None] | None, handled: asyncio.Future[None],
    ) -> None:
        """One batch of `run`: handle it after the batch before, send its outbox, then settle
        it after the batch before settled."""
        try:
            if handled_prev is not None:
                await handled_prev
            if ready is not None:
                try:
                    await ready
                except Exception as exc:  # noqa: BLE001 - the handler then does it all itself
                    log.warning("%s: preparing a batch failed (%r); handling it without", source,
                                exc)
            out = await self.outbox(batch, source, handle)
            if TIMES.enabled:
                TIMES.add(f"{source}.age_handled", time.time() - batch[0].message.timestamp)
            sent = await self.start_delivery(out, source)
        except asyncio.CancelledError:
            handled.cancel()
            raise
        except Exception as exc:
            handled.set_exception(exc)
            raise
        except BaseException:
            handled.cancel()  # the loop must not wait for ever on this batch
            raise
        finally:
            forget = getattr(handle, "forget", None)
            if forget is not None:
                forget(batch)
        handled.set_result(None)
        if settled_prev is not None:
            await settled_prev
        await self.settle(stream, batch, source, out, sent)

    async def tick(self, now: datetime) -> None:
        """The deadline tick (超期), on its own thread, at most `TICK_LIMIT` orders a time."""
        started = time.perf_counter()
        results = await self._on(self.tick_executor, self.router.tick, now, limit=TICK_LIMIT)
        TIMES.add("deadlines.tick", time.perf_counter() - started, len(results))

    async def _one(self, source: str, event: EventT, handle: Handle) -> list[OutMessage]:
        try:
            return await self.retrier.run(f"{source} message", lambda: handle([event]))
        except Exception as exc:  # noqa: BLE001 - this message is the poison one
            return await self._dead_letter(source, event, exc)

    async def _dead_letter(self, source: str, event: EventT, error: Exception) -> list[OutMessage]:
        return await self.retrier.run(
            f"{source} dead letter",
            lambda: self.call(handler_failed, self.router, source, event.value, error),
        )


def as_table_event(event: EventT) -> None:
    """Make `event` the current event of this task, for the table: it sends its changelog to
    the partition of the current event, and a batch from `noack_take` is outside faust's
    per-event context. Only faust's task-local context variable is set, never the stream's
    own `current_event`: that one belongs to the stream's iterator, and `noack_take` reads it
    when it buffers the next event after waiting for the batch in hand. Setting it here (as
    this handler once did) could make the stream buffer an event of the previous batch in
    place of the new one, which then was never handled nor acknowledged: its partition
    stopped at it until the gap watch sent the consumer back (streams.gaps)."""
    faust_streams._current_event.set(weakref.ref(event))


RouteOrders = Callable[..., Awaitable[list[OutMessage]]]


def order_router(pipeline: Pipeline, repeats: TableT, source: str) -> RouteOrders:
    """Count repeats in the table, then classify, route and persist orders, each with the
    event it came in (on its enterprise's home partition); a redelivered order that is already
    routed has its current dispatch sent again (its first delivery may be lost)."""
    router = pipeline.router
    window = router.config.settings.repeat_window_days

    def work(
        orders: list[OrderIn], counts: dict[str, int], ahead: Ahead | None
    ) -> list[OutMessage]:
        out: list[OutMessage] = []
        for o in router.route_orders(orders, repeat_counts=counts, source=source, ahead=ahead):
            if o.status == "duplicate" and o.order_id:
                out.extend(router.current_dispatch(o.order_id))
            else:
                out.extend(o.outbox)
        return out

    async def route(
        pairs: Sequence[tuple[EventT, OrderIn]], ahead: Ahead | None = None
    ) -> list[OutMessage]:
        if not pairs:
            return []
        orders: list[OrderIn] = []
        counts: dict[str, int] = {}
        entries: dict[str, tuple[EventT, dict[str, str]]] = {}  # key -> (last event, entry)
        started = time.perf_counter()
        for event, order in pairs:
            key = enterprise_key(order)
            if not has_enterprise(key):
                counts[order.order_id] = 1
            else:
                seen = entries[key][1] if key in entries else repeats[key]
                seen, counts[order.order_id] = count_repeats(seen, order, window)
                entries[key] = (event, seen)
            orders.append(order)
        for key, (event, seen) in entries.items():
            # one write (one changelog message) per enterprise and batch, to the partition of
            # the current event (the key's home partition)
            as_table_event(event)
            repeats[key] = seen
        TIMES.add("route.table", time.perf_counter() - started, len(pairs))
        return await pipeline.call(work, orders, counts, ahead)

    return route


class IntakeHandler:
    """Validate raw intake: bad messages go to the DLQ; an order on its enterprise's home
    partition (or of no enterprise: it has no table entry) is routed right here; any other is
    forwarded to `workorders.by-enterprise`, keyed by its enterprise.

    Routing here is only safe while `workorders.received` has as many partitions as the table
    (partition p of both then belongs to one worker); otherwise every order is forwarded.

    `prepare` (called by `Pipeline.run` for each piece it takes while the batch before is
    still being handled) validates the piece on the intake thread and hands its orders to the
    worker's classifier process; a batch made of several pieces then uses what each piece
    prepared. Any event handled without it (a preparation that failed, or one message at a
    time after a batch failed) is validated then."""

    def __init__(self, pipeline: Pipeline, repeats: TableT) -> None:
        self.pipeline = pipeline
        self.router = pipeline.router
        self.partitions = pipeline.settings.partitions
        self.route = order_router(pipeline, repeats, RECEIVED)
        self.received = pipeline.topic(RECEIVED).get_topic_name()
        #: id(event) -> (event, validated, its piece's predictions on their way)
        self._prepared: dict[int, tuple[EventT, OrderIn | Outcome, Ahead | None]] = {}

    def _validate(self, raws: list[Any]) -> list[OrderIn | Outcome]:
        return [self.router.validate(raw, source=RECEIVED) for raw in raws]

    def _validate_and_submit(
        self, raws: list[Any]
    ) -> tuple[list[OrderIn | Outcome], Ahead | None]:
        checked = self._validate(raws)
        helper = self.router.classifier_process
        orders = [c for c in checked if isinstance(c, OrderIn)]
        return checked, helper.submit(orders, k=3) if helper is not None and orders else None

    async def prepare(self, events: Sequence[EventT]) -> None:
        checked, ahead = await self.pipeline.call_intake(
            self._validate_and_submit, [e.value for e in events]
        )
        for event, c in zip(events, checked, strict=True):
            self._prepared[id(event)] = (event, c, ahead)

    def forget(self, events: Sequence[EventT]) -> None:
        for event in events:
            self._prepared.pop(id(event), None)

    def _routes_here(self, event: EventT, key: str, co_partitioned: bool) -> bool:
        if not has_enterprise(key):
            return True
        return co_partitioned and event.message.partition == home_partition(key, self.partitions)

    async def _checked(
        self, events: Sequence[EventT]
    ) -> tuple[list[OrderIn | Outcome], dict[int, Ahead]]:
        """Each event validated (as prepared, or now), and the predictions on their way for
        the orders that have some (by id of the order)."""
        checked: list[OrderIn | Outcome | None] = []
        aheads: dict[int, Ahead] = {}
        missing: list[int] = []
        for i, event in enumerate(events):
            prepared = self._prepared.get(id(event))
            if prepared is None or prepared[0] is not event:
                checked.append(None)
                missing.append(i)
                continue
            checked.append(prepared[1])
            if prepared[2] is not None and isinstance(prepared[1], OrderIn):
                aheads[id(prepared[1])] = prepared[2]
        if missing:
            now = await self.pipeline.call_intake(
                self._validate, [events[i].value for i in missing])
            for i, c in zip(missing, now, strict=True):
                checked[i] = c
        return cast(list[OrderIn | Outcome], checked), aheads

    async def __call__(self, events: Sequence[EventT]) -> list[OutMessage]:
        checked, aheads = await self._checked(events)
        co_partitioned = (
            partition_count(self.pipeline.app.consumer, self.received) == self.partitions
        )
        out: list[OutMessage] = []
        here: list[tuple[EventT, OrderIn]] = []
        for event, c in zip(events, checked, strict=True):
            if isinstance(c, Outcome):
                out.extend(c.outbox)
                continue
            key = enterprise_key(c)
            if self._routes_here(event, key, co_partitioned):
                here.append((event, c))
            else:
                out.append(OutMessage(BY_ENTERPRISE, key, order_to_json(c)))
        ahead = MergedAhead.of([(o, aheads.get(id(o))) for _, o in here])
        out.extend(await self.route(here, ahead))
        return out


def partition_count(consumer: Any, topic: str) -> int | None:
    """The number of partitions of ``topic`` as this worker's consumer knows it (None before
    it has the topic's metadata). faust's `Consumer.topic_partitions` reads the snapshot that
    aiokafka's group coordinator keeps for assigning partitions, and only the group's leader
    keeps one: in every other worker of the group it is empty, and the intake handler, taking
    the topics for not co-partitioned, sent every enterprise's order through
    `workorders.by-enterprise` (in the bench with two workers, about half of one worker's
    orders). The consumer's cluster metadata, which every member has for the topics it reads
    (`AIOKafkaConsumer.partitions_for_topic`), answers when that snapshot does not."""
    count = consumer.topic_partitions(topic)
    if count:
        return int(count)
    aiokafka_consumer = getattr(getattr(consumer, "_thread", None), "_consumer", None)
    found = aiokafka_consumer.partitions_for_topic(topic) if aiokafka_consumer else None
    return len(found) if found else None


def intake_handler(pipeline: Pipeline, repeats: TableT) -> IntakeHandler:
    """The handler of `workorders.received` (see `IntakeHandler`)."""
    return IntakeHandler(pipeline, repeats)


def route_handler(pipeline: Pipeline, repeats: TableT) -> Handle:
    """Route the orders forwarded to `workorders.by-enterprise` (see `intake_handler`)."""
    route = order_router(pipeline, repeats, BY_ENTERPRISE)

    async def handle(events: Sequence[EventT]) -> list[OutMessage]:
        return await route([(e, order_from_json(json.loads(e.value))) for e in events])

    return handle


def lifecycle_handler(pipeline: Pipeline) -> Handle:
    """Apply lifecycle events (退单 → 改派); an unreadable event is dead-lettered."""
    router = pipeline.router

    def apply(raw: bytes) -> list[OutMessage]:
        try:
            event = LifecycleEvent.from_json(json.loads(raw))
        except (ValueError, TypeError, AttributeError, InvalidEventData) as exc:
            return router.reject_event_payload(raw, exc).outbox
        outcome = router.apply_event(event)
        if outcome.result.duplicate and event.kind in REDISPATCHING_EVENTS:
            return router.current_dispatch(event.order_id)
        return outcome.outbox

    def work(raws: list[bytes]) -> list[OutMessage]:
        return [m for raw in raws for m in apply(raw)]

    async def handle(events: Sequence[EventT]) -> list[OutMessage]:
        return await pipeline.call(work, [e.value for e in events])

    return handle


def tune_worker_process() -> None:
    """Interpreter settings for a worker process. The router thread is busy with the CPU (the
    classifier, the database rows) while the event loop does many short system calls (fetch,
    produce, acks): after each one the loop waits for the GIL for up to the switch interval,
    5 ms by default, so a produce round trip cost several of those; a shorter interval costs the
    router thread more hand-overs. Kafka phases of the bench, 40,000 orders, interleaved runs:
    3 ms routed 2,080-2,162 orders/s (3 runs) with half-rate p99 99-103 ms; 1 ms 2,004-2,109/s
    (3 runs), p99 186-289 ms; 5 ms 2,021-2,031/s (2 runs), p99 181-224 ms."""
    sys.setswitchinterval(SWITCH_INTERVAL_S)


def use_event_loop(name: str) -> str:
    """Make ``name`` ("uvloop" or "aio", `Settings.event_loop`) this process's asyncio event
    loop, before faust or aiokafka create one; the loop actually in use. uvloop (libuv)
    runs the loop's own machinery (handles, timers, futures' callbacks, `select`) in C; in a
    worker that machinery shares the GIL with the router thread. Kafka phases of the bench,
    40,000 orders, interleaved runs: uvloop routed 2,738-2,871 orders/s, the standard loop
    2,612-2,671/s. Where uvloop is not installed (it is a Linux/macOS wheel) the standard loop
    is used and a warning says so."""
    if name not in EVENT_LOOPS:
        raise ValueError(f"未知的事件循环 {name!r}，可选：{'、'.join(EVENT_LOOPS)}")
    if name == "uvloop":
        try:
            import uvloop
        except ImportError:
            log.warning("uvloop 未安装，改用标准 asyncio 事件循环")
            name = "aio"
        else:
            asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    if name == "aio":
        asyncio.set_event_loop_policy(None)  # the standard library's default policy
    return name


def loop_name(loop: asyncio.AbstractEventLoop) -> str:
    """Which of `EVENT_LOOPS` ``loop`` is (the worker's log and its /health view)."""
    return "uvloop" if type(loop).__module__.startswith("uvloop") else "aio"


def bootstrap_worker(settings: Settings, *, attempts: int = 5) -> App:
    """`bootstrap` for a worker process. Several workers starting at once race on the unit
    table's upsert (one insert wins, the others see a unique violation), and the database may
    not be up yet: both go away when tried again."""
    delay = BACKOFF_START_S
    for attempt in range(1, attempts + 1):
        try:
            app = bootstrap(settings)
            settle_heap()
            return app
        except (IntegrityError, OperationalError) as exc:
            if attempt == attempts:
                raise
            log.warning("bootstrap attempt %d failed, retrying in %.1f s: %s", attempt, delay,
                        type(exc).__name__)
            time.sleep(delay)
            delay = min(delay * 2, BACKOFF_MAX_S)
    raise AssertionError("unreachable")


def create_app(
    settings: Settings | None = None, *, hotline_app: App | None = None,
    web_bind: str = "127.0.0.1",
) -> faust.App:
    """Build the faust app and its agents. Nothing connects until the worker starts. The health
    view and /metrics listen on `web_bind` (loopback unless a container must be scraped)."""
    settings = settings or Settings()
    if not settings.kafka_bootstrap:
        raise ValueError("未配置 HOTLINE_KAFKA_BOOTSTRAP：Kafka 模式需要 broker 地址")
    core = hotline_app or bootstrap_worker(settings)
    router = core.router
    app_id = f"{settings.topic_prefix}hotline-router"
    datadir = Path(tempfile.gettempdir()) / "hotline-faust" / f"{app_id}-{settings.worker_id}"
    datadir.parent.mkdir(parents=True, exist_ok=True)
    app = HotlineApp(
        app_id,
        datadir=str(datadir),
        broker=f"kafka://{settings.kafka_bootstrap}",
        store="memory://",
        value_serializer="raw",
        key_serializer="raw",
        topic_partitions=settings.partitions,
        topic_replication_factor=1,
        consumer_auto_offset_reset="earliest",
        processing_guarantee="at_least_once",
        broker_commit_every=COMMIT_EVERY,
        broker_commit_interval=COMMIT_INTERVAL_S,
        broker_session_timeout=SESSION_TIMEOUT_S,
        broker_heartbeat_interval=HEARTBEAT_S,
        web_bind=web_bind,
        web_host="127.0.0.1",
        web_port=settings.metrics_port or 6066,
        web_enabled=True,
        producer_acks=-1,
        producer_max_batch_size=PRODUCER_BATCH_BYTES,
        stream_buffer_maxsize=STREAM_BUFFER,
        broker_max_poll_records=MAX_POLL_RECORDS,
        # No standby copies of the repeat table: a standby that faust promotes to active in a
        # takeover can wait for ever for changelog events it already read ("No event received
        # for active tp … since recovery start", seen here after a worker was killed during a
        # rebalance). The table is in memory and small; a new owner reads its changelog
        # partitions from the start instead.
        table_standby_replicas=0,
    )
    app.hotline = core  # type: ignore[attr-defined]
    app.fetch_wait_ms = settings.fetch_wait_ms
    setup_sensors(app, registry=router.metrics.registry, name_prefix="faust")  # faust_* metrics
    install_lag_gauge(app, router.metrics.consumer_lag)  # hotline_consumer_lag{topic,partition}
    pipeline = Pipeline(app, router, settings)

    received = pipeline.topic(RECEIVED)
    by_enterprise = pipeline.topic(BY_ENTERPRISE, internal=True)
    events = pipeline.topic(EVENTS)
    repeats = app.Table(
        "enterprise-repeats", default=dict, partitions=settings.partitions,
        schema=faust.Schema(key_type=str,
                            key_serializer="json", value_serializer="json"),
    )

    @app.agent(received)
    async def intake(stream: StreamT) -> None:
        await pipeline.run(as_stream(stream), RECEIVED, intake_handler(pipeline, repeats))

    @app.agent(by_enterprise)
    async def route(stream: StreamT) -> None:
        handle = route_handler(pipeline, repeats)
        await pipeline.run(as_stream(stream), BY_ENTERPRISE, handle)

    @app.agent(events)
    async def lifecycle(stream: StreamT) -> None:
        await pipeline.run(as_stream(stream), EVENTS, lifecycle_handler(pipeline))

    gap_watch = GapWatch()
    recovery_watch = RecoveryWatch()

    async def heal_gaps() -> None:  # a partition that stopped short is read again
        now = time.monotonic()
        await heal_recovery(app, recovery_watch, now, router.metrics.rewinds)
        await heal(app, gap_watch, now, router.metrics.rewinds)

    app.watches = [heal_gaps]  # from the start: the first table recovery is watched too

    if TIMES.enabled:
        @app.task
        async def loop_lag() -> None:  # the event loop's wake-up lag, with the stage timings
            await watch_loop_lag()

    @app.timer(interval=TICK_INTERVAL_S)
    async def deadlines() -> None:
        try:
            await pipeline.tick(now_local())
        except Exception as exc:
            if not is_transient(exc):
                raise
            log.warning("deadline tick skipped, database unavailable: %s", exc)

    @app.page("/health")
    async def health(web: Any, request: Any) -> Any:
        assigned = app.consumer.assignment() if app.consumer is not None else set()
        return web.json({
            "status": "ok", "worker": settings.worker_id,
            "model_version": router.classifier.version,
            "event_loop": loop_name(asyncio.get_running_loop()),
            "assigned_partitions": sorted(f"{tp.topic}:{tp.partition}" for tp in assigned),
        })

    return app
