"""The faust app (流处理): topics, agents and the repeat-complaint table on Kafka.

Agents are thin adapters over `streams.handlers.Router`, the same handlers the embedded runner
uses. Offsets are acknowledged only after the database write and after the outgoing messages
are delivered (at-least-once); the handlers are idempotent by order id and event id, so a
redelivered message changes nothing.

    workorders.received  (key = order id)
      -> intake agent: validate; bad input -> workorders.dlq with the reason
      -> workorders.by-enterprise (key = enterprise key: credit code, else name, else order id)
      -> route agent: repeat counts in the `enterprise-repeats` table (changelog-backed),
         classify, route, persist -> workorders.dispatched + dispatch.<unit code>
    workorders.events (key = order id)
      -> events agent: lifecycle; 退单 -> 改派 -> dispatch.<unit code>
"""

from __future__ import annotations

import json
import logging
from datetime import datetime, timedelta
from typing import Any

import faust
from faust.sensors.prometheus import setup_prometheus_sensors

from hotline.bootstrap import App, bootstrap
from hotline.settings import Settings
from models.lifecycle import LifecycleEvent
from models.records import OrderIn
from models.tables import now_local
from streams.handlers import OutMessage, Outcome, order_to_json

log = logging.getLogger(__name__)

RECEIVED = "workorders.received"
BY_ENTERPRISE = "workorders.by-enterprise"
EVENTS = "workorders.events"
BATCH = 200
BATCH_WITHIN = 0.2


def enterprise_key(order: OrderIn) -> str:
    """Orders of one enterprise meet in one partition (统一社会信用代码, else its name)."""
    if order.credit_code:
        return f"code:{order.credit_code}"
    if order.enterprise_name:
        return f"name:{order.enterprise_name}"
    return f"order:{order.order_id}"


def order_from_json(value: dict[str, Any]) -> OrderIn:
    return OrderIn(
        order_id=value["order_id"],
        channel=value["channel"],
        received_at=datetime.fromisoformat(value["received_at"]),
        title=value.get("title") or "",
        text=value["text"],
        caller=value.get("caller"),
        enterprise_name=value.get("enterprise_name"),
        credit_code=value.get("credit_code"),
        address=value.get("address"),
        area=value.get("area"),
        appeal_type=value.get("appeal_type"),
        is_enterprise=bool(value.get("is_enterprise")),
        legacy=bool(value.get("legacy")),
    )


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
    kept = {k: v for k, v in seen.items() if datetime.fromisoformat(v) >= horizon}
    count = sum(1 for v in kept.values() if since <= datetime.fromisoformat(v) <= order.received_at)
    return kept, count


def create_app(settings: Settings | None = None, *, hotline_app: App | None = None) -> faust.App:
    """Build the faust app and its agents. Nothing connects until the worker starts."""
    settings = settings or Settings()
    if not settings.kafka_bootstrap:
        raise ValueError("未配置 HOTLINE_KAFKA_BOOTSTRAP：Kafka 模式需要 broker 地址")
    core = hotline_app or bootstrap(settings)
    router = core.router
    window = router.config.settings.repeat_window_days
    app = faust.App(
        f"{settings.topic_prefix}hotline-router",
        broker=f"kafka://{settings.kafka_bootstrap}",
        store="memory://",
        value_serializer="raw",
        key_serializer="raw",
        topic_partitions=settings.partitions,
        topic_replication_factor=1,
        consumer_auto_offset_reset="earliest",
        processing_guarantee="at_least_once",
        broker_commit_every=BATCH,
        broker_commit_interval=1.0,
        web_host="127.0.0.1",
        web_port=settings.metrics_port or 6066,
        web_enabled=True,
        producer_acks=-1,
    )
    app.hotline = core  # type: ignore[attr-defined]
    setup_prometheus_sensors(app, registry=router.metrics.registry, name_prefix="faust")

    received = app.topic(settings.topic(RECEIVED), partitions=settings.partitions)
    by_enterprise = app.topic(
        settings.topic(BY_ENTERPRISE), partitions=settings.partitions, internal=True
    )
    events = app.topic(settings.topic(EVENTS), partitions=settings.partitions)
    repeats = app.Table(
        "enterprise-repeats", default=dict, partitions=settings.partitions,
        key_serializer="json", value_serializer="json",
    )
    out_topics: dict[str, faust.TopicT] = {}

    def out_topic(name: str) -> faust.TopicT:
        if name not in out_topics:
            out_topics[name] = app.topic(settings.topic(name), partitions=settings.partitions)
        return out_topics[name]

    async def deliver(messages: list[OutMessage]) -> None:
        futures = []
        for m in messages:
            futures.append(
                await out_topic(m.topic).send(
                    key=m.key.encode() if m.key else None,
                    value=json.dumps(m.value, ensure_ascii=False).encode(),
                )
            )
        for fut in futures:  # wait for the broker's acks before acking the input
            await fut

    @app.agent(received)
    async def intake(stream: faust.StreamT) -> None:
        async for batch in stream.noack_take(BATCH, within=BATCH_WITHIN):
            forward: list[tuple[str, OrderIn]] = []
            dead: list[OutMessage] = []
            for event in batch:
                checked = router.validate(event.value, source=RECEIVED)
                if isinstance(checked, Outcome):
                    dead.extend(checked.outbox)
                else:
                    forward.append((enterprise_key(checked), checked))
            futures = [
                await by_enterprise.send(
                    key=k.encode(), value=json.dumps(order_to_json(o), ensure_ascii=False).encode()
                )
                for k, o in forward
            ]
            for fut in futures:
                await fut
            await deliver(dead)
            for event in batch:
                await stream.ack(event)

    @app.agent(by_enterprise)
    async def route(stream: faust.StreamT) -> None:
        async for batch in stream.noack_take(BATCH, within=BATCH_WITHIN):
            orders: list[OrderIn] = []
            counts: dict[str, int] = {}
            for event in batch:
                order = order_from_json(json.loads(event.value))
                key = enterprise_key(order)
                if key.startswith("order:"):
                    counts[order.order_id] = 1
                else:
                    seen, counts[order.order_id] = count_repeats(repeats[key], order, window)
                    repeats[key] = seen
                orders.append(order)
            outcomes = router.route_orders(orders, repeat_counts=counts, source=BY_ENTERPRISE)
            await deliver([m for o in outcomes for m in o.outbox])
            for event in batch:
                await stream.ack(event)

    @app.agent(events)
    async def lifecycle(stream: faust.StreamT) -> None:
        async for batch in stream.noack_take(BATCH, within=BATCH_WITHIN):
            out: list[OutMessage] = []
            for event in batch:
                try:
                    le = LifecycleEvent.from_json(json.loads(event.value))
                except Exception as exc:  # malformed event: dead-letter with the reason
                    out.extend(router.reject_event_payload(event.value, exc).outbox)
                    continue
                out.extend(router.apply_event(le).outbox)
            await deliver(out)
            for event in batch:
                await stream.ack(event)

    @app.timer(interval=30.0)
    async def deadlines() -> None:
        router.tick(now_local())

    @app.page("/health")
    async def health(web: Any, request: Any) -> Any:
        return web.json({"status": "ok", "model_version": router.classifier.version,
                         "worker": settings.worker_id})

    return app

