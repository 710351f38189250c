"""The handlers: intake → normalize and validate → classify → route → persist → emit.

Plain Python over the store, the classifier and the rule engine. The embedded runner and the
faust agents are thin adapters: they feed raw messages / lifecycle events in and deliver the
returned outbox (messages for `workorders.dispatched`, the per-unit feeds `dispatch.<code>` and
`workorders.dlq`) to wherever their transport is.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any, Protocol

from hotline.masking import mask_pii
from hotline.metrics import Metrics
from models.jsoncodec import dumps
from models.lifecycle import LifecycleEvent, State
from models.records import CHANNELS, Candidate, Decision, OrderIn, Prediction, RoutingContext
from models.store import ApplyResult, ConflictingOrder, Store
from routing_rules.config import RoutingConfig
from routing_rules.engine import RoutingEngine
from streams.intake import IntakeError, normalize
from streams.stage_timing import TIMES

log = logging.getLogger(__name__)

DISPATCHED = "workorders.dispatched"
DLQ = "workorders.dlq"
FEED_PREFIX = "dispatch."
EVENTS_SOURCE = "workorders.events"


class Classifier(Protocol):
    version: str

    def predict(self, orders: Sequence[OrderIn], k: int = 3) -> list[Prediction]: ...


class WithRuleFacts:
    """``classifier``, with each prediction carrying ``engine``'s `TextFacts` of its order
    (`Prediction.rule_facts`). This is what a Kafka worker's classifier process runs
    (`Router.helper_classifier`, streams.classify_ahead.ClassifierProcess): the rules' text
    scans, about three quarters of `RoutingEngine.decide`'s work, then run there beside the
    classification, and the router thread, which shares the worker's GIL with the event loop,
    only applies the rules. The helper is forked with the engine, so the facts carry its
    token; any other engine finds them again itself."""

    def __init__(self, classifier: Classifier, engine: RoutingEngine) -> None:
        self.classifier = classifier
        self.engine = engine

    @property
    def version(self) -> str:
        return self.classifier.version

    def predict(self, orders: Sequence[OrderIn], k: int = 3) -> list[Prediction]:
        facts = self.engine.text_facts
        return [
            replace(p, rule_facts=facts(o))
            for o, p in zip(orders, self.classifier.predict(orders, k=k), strict=True)
        ]


class Ahead(Protocol):
    """Predictions on their way (`streams.classify_ahead.Ahead`)."""

    def get(self, orders: Sequence[OrderIn]) -> tuple[list[Prediction], float] | None: ...


class ClassifierHelper(Protocol):
    def submit(self, orders: Sequence[OrderIn], *, k: int = 3) -> Ahead | None: ...


class SharedBody:
    """A JSON object several messages carry, encoded at most once: an order's dispatch goes to
    `workorders.dispatched` and, with a `role` added, to each unit's feed (the order's text is
    most of each message). Encoded only when a message is sent, so the embedded runner, which
    sends nothing, never pays for it."""

    __slots__ = ("value", "_bytes")

    def __init__(self, value: dict[str, Any]) -> None:
        self.value = value
        self._bytes: bytes | None = None

    def encode(self, extra: Mapping[str, Any] | None = None) -> bytes:
        """``{**value, **extra}`` as UTF-8 JSON (`models.jsoncodec.dumps`), with `value`
        encoded once. `extra`'s keys must not be in `value` (they follow its keys, as in the
        dict merge)."""
        if self._bytes is None:
            self._bytes = dumps(self.value)
        if not extra:
            return self._bytes
        tail = dumps(extra)[1:]
        return self._bytes[:-1] + (b"," + tail if self.value else tail)


@dataclass(frozen=True)
class OutMessage:
    """A message the adapter must deliver: topic name (without prefix), key, JSON value.
    `shared` (with `extra`) says `value` is ``{**shared.value, **extra}``, so its encoding can
    reuse the shared body's."""

    topic: str
    key: str | None
    value: dict[str, Any]
    shared: SharedBody | None = field(default=None, compare=False)
    extra: Mapping[str, Any] | None = field(default=None, compare=False)

    def encode(self) -> bytes:
        """The value as UTF-8 JSON (non-ASCII characters as they are)."""
        if self.shared is not None:
            return self.shared.encode(self.extra)
        return dumps(self.value)


@dataclass
class Outcome:
    """What happened to one intake message."""

    status: str  # dispatched | manual | duplicate | dead_letter
    order_id: str | None = None
    decision: Decision | None = None
    code: str | None = None  # dead-letter reason code
    reason: str | None = None
    outbox: list[OutMessage] = field(default_factory=list)


@dataclass
class EventOutcome:
    """What happened to one lifecycle event (and the re-dispatch it caused, if any)."""

    result: ApplyResult
    decision: Decision | None = None
    outbox: list[OutMessage] = field(default_factory=list)


def order_from_row(row: Any) -> OrderIn:
    """Rebuild the routing input from a stored `WorkOrder` row."""
    return OrderIn(
        order_id=row.id,
        channel=row.channel,
        received_at=row.received_at,
        title=row.title or "",
        text=row.text,
        caller=row.caller,
        enterprise_name=row.enterprise_name,
        credit_code=row.credit_code,
        address=row.address,
        area=row.area,
        appeal_type=row.appeal_type,
        is_enterprise=row.is_enterprise,
        legacy=row.legacy,
        extra=dict(row.extra or {}),  # 行业分类 levels and urgency: classifier and deadline inputs
    )


#: the normalized order as JSON (for the repartition topic, feeds and dead letters)
order_to_json = OrderIn.to_json


def _storable(text: str) -> str:
    """``text`` with lone surrogates escaped, so any database can store it as UTF-8."""
    return text.encode("utf-8", errors="backslashreplace").decode("utf-8")


def decision_from_row(row: Any) -> Decision:
    """Rebuild a `Decision` from its stored `DispatchDecisionRow`."""
    return Decision(
        order_id=row.order_id, lead_unit=row.lead_unit, co_units=tuple(row.co_units),
        manual=row.manual, rules=tuple(row.rules), reasons=tuple(row.reasons),
        model_version=row.model_version,
        candidates=tuple(Candidate(c["unit"], c["probability"]) for c in row.candidates),
        terms=tuple((t, w) for t, w in row.terms),
        against=tuple((t, w) for t, w in row.against),
        line_unit=row.line_unit, territorial_unit=row.territorial_unit,
        line_first=row.line_first, trigger=row.trigger, appeal_type=row.appeal_type,
        confidence=row.confidence,
    )


def _key_of(credit_code: str | None, enterprise_name: str | None) -> str | None:
    if credit_code:
        return f"code:{credit_code}"
    return f"name:{enterprise_name}" if enterprise_name else None


def _enterprise_key(order: OrderIn) -> str | None:
    """Who complains, for 多次重复: the credit code, else the enterprise name (enterprise
    orders only)."""
    return _key_of(order.credit_code, order.enterprise_name) if order.is_enterprise else None


def payload_text(raw: Any) -> str:
    """The raw message as text for the dead-letter record; never raises."""
    if isinstance(raw, bytes):
        return raw.decode("utf-8", errors="replace")
    if isinstance(raw, str):
        return _storable(raw)
    try:
        return _storable(json.dumps(raw, ensure_ascii=False, default=str))
    except (TypeError, ValueError, RecursionError):
        pass
    try:
        return _storable(repr(raw))
    except (ValueError, RecursionError):  # e.g. an int too long to print
        keys = [k for k in list(raw)[:50] if isinstance(k, str)] if isinstance(raw, Mapping) else []
        return f"<无法序列化的消息：{type(raw).__name__}，字段 {_storable('、'.join(keys))}>"


def channel_label(channel: str) -> str:
    """The metrics label for an intake channel: known channels only, so caller-supplied text
    (possibly a phone number) never becomes a label value."""
    return channel if channel in CHANNELS else "其他"


class Router:
    """The work-order handlers. One instance per process; not thread-safe."""

    def __init__(
        self,
        *,
        store: Store,
        classifier: Classifier,
        config: RoutingConfig,
        metrics: Metrics,
        max_text_chars: int = 5000,
        model_thresholds: Mapping[str, float] | None = None,
    ) -> None:
        self.store = store
        self.classifier = classifier
        self.config = config
        self.engine = RoutingEngine(config)
        self.metrics = metrics
        self.max_text_chars = max_text_chars
        self.model_thresholds = dict(model_thresholds) if model_thresholds else None
        #: a Kafka worker's `streams.classify_ahead.ClassifierProcess`, when it runs one:
        #: `route_orders` then classifies each batch there while it admits the batch here
        self.classifier_process: ClassifierHelper | None = None

    @property
    def helper_classifier(self) -> WithRuleFacts:
        """What a Kafka worker's classifier process runs for this router: the classifier,
        and the rules' text scans beside it (`WithRuleFacts`). The embedded runner's helper
        (`ClassifyAhead`) runs the classifier alone: there the helper and this process take
        about as long per batch, and the scans would only move the wait to this side."""
        return WithRuleFacts(self.classifier, self.engine)

    # ---- intake -------------------------------------------------------------------------
    def receive(self, raw: bytes | str | Mapping[str, Any], *, source: str = "intake") -> Outcome:
        return self.receive_batch([raw], source=source)[0]

    def receive_batch(
        self, raws: Sequence[bytes | str | Mapping[str, Any]], *, source: str = "intake"
    ) -> list[Outcome]:
        """Accept a batch: validate each, classify the valid ones together, route, persist."""
        return self.receive_checked([self.validate(raw, source=source) for raw in raws],
                                    source=source)

    def receive_checked(
        self,
        checked: Sequence[OrderIn | Outcome],
        *,
        source: str = "intake",
        predictions: Sequence[Prediction] | None = None,
    ) -> list[Outcome]:
        """`receive_batch` after `validate`: route the valid orders of ``checked`` (one outcome
        per item). `predictions`, when given, are the classifier's (k=3) for the valid orders,
        in their order (see `route_orders`)."""
        outcomes: list[Outcome | None] = [c if isinstance(c, Outcome) else None for c in checked]
        valid = [(i, c) for i, c in enumerate(checked) if not isinstance(c, Outcome)]
        routed = self.route_orders([o for _, o in valid], source=source, predictions=predictions)
        for (i, _), outcome in zip(valid, routed, strict=True):
            outcomes[i] = outcome
        return [o for o in outcomes if o is not None]

    def validate(self, raw: bytes | str | Mapping[str, Any], *, source: str = "intake") -> OrderIn | Outcome:
        """Normalize one message; a bad one is dead-lettered and its `Outcome` returned."""
        try:
            return normalize(raw, max_text_chars=self.max_text_chars)
        except IntakeError as exc:
            return self._dead_letter(source, exc.code, exc.reason, raw, exc.order_id)
        except Exception as exc:  # a bug in validation must not lose the message
            log.exception("intake failed")
            return self._dead_letter(source, "INTAKE_ERROR", f"受理异常：{exc!r}", raw, None)

    def route_orders(
        self,
        orders: Sequence[OrderIn],
        *,
        repeat_counts: Mapping[str, int] | None = None,
        source: str = "intake",
        predictions: Sequence[Prediction] | None = None,
        ahead: Ahead | None = None,
    ) -> list[Outcome]:
        """Store, classify (one batch), route and dispatch validated orders.

        `repeat_counts` (order id → same-enterprise orders in the window) comes from the faust
        table on Kafka; without it the store counts them. `predictions`, one per order of
        ``orders`` (k=3), when the caller has classified them already (the embedded runner's
        classify-ahead helper). `ahead`: predictions of these orders already on their way
        from the worker's classifier process (submitted with the batch's validation). Without
        either, the batch goes to the classifier process if the worker runs one (it classifies
        while this thread admits the batch), else the classifier runs here.
        """
        if predictions is not None and len(predictions) != len(orders):
            raise ValueError(f"{len(predictions)} 个分类结果对应 {len(orders)} 条工单")
        outcomes: list[Outcome | None] = [None] * len(orders)
        to_route: list[tuple[int, OrderIn, bool]] = []  # (position, order, is new)
        with_prediction: list[Prediction] = []  # the given predictions of the orders to route
        if predictions is None and ahead is None and self.classifier_process is not None:
            ahead = self.classifier_process.submit(orders, k=3)
        with TIMES.stage("router.admit", len(orders)):
            digests: dict[str, str] = {}
            admitted = self.store.admit(orders, digests)
        for i, (order, status) in enumerate(zip(orders, admitted, strict=True)):
            if status == "conflict":
                outcomes[i] = self._dead_letter(
                    source, "CONFLICT", f"工单编号 {order.order_id} 已存在且内容不同",
                    order_to_json(order), order.order_id,
                )
            elif status == "routed":
                outcomes[i] = Outcome(status="duplicate", order_id=order.order_id)
            else:
                to_route.append((i, order, status == "new"))
                if predictions is not None:
                    with_prediction.append(predictions[i])
        if not to_route:
            return [o for o in outcomes if o is not None]
        started = time.perf_counter()
        if predictions is None:
            got = ahead.get([o for _, o, _ in to_route]) if ahead is not None else None
            if got is not None:  # the classifier process did it
                with_prediction, seconds = got
                self.metrics.classification.observe(seconds)
                TIMES.add("router.classify_wait", time.perf_counter() - started, len(to_route))
            else:
                with_prediction = self.classifier.predict([o for _, o, _ in to_route], k=3)
                self.metrics.classification.observe(time.perf_counter() - started)
                TIMES.add("router.classify", time.perf_counter() - started, len(to_route))
        decided = time.perf_counter()
        counts = dict(repeat_counts) if repeat_counts else self._repeat_counts(
            [o for _, o, _ in to_route]
        )
        decisions = [
            self.engine.decide(order, prediction,
                               RoutingContext(repeat_count=max(counts.get(order.order_id, 1), 1)),
                               model_thresholds=self.model_thresholds)
            for (_, order, _), prediction in zip(to_route, with_prediction, strict=True)
        ]
        items = [
            (order, is_new, d, self._route_event(order, d, round_no=1, actor="system",
                                                 at=order.received_at))
            for (_, order, is_new), d in zip(to_route, decisions, strict=True)
        ]
        TIMES.add("router.decide", time.perf_counter() - decided, len(items))
        with TIMES.stage("router.db_write", len(items)):
            results = self.store.dispatch_batch(items, digests)
        built = time.perf_counter()
        for k, ((i, order, is_new), decision) in enumerate(zip(to_route, decisions, strict=True)):
            if results is None:  # another writer raced us: the careful one-by-one path
                outcomes[i] = self._route_one(order, decision, source)
                continue
            if is_new:
                self.metrics.child(self.metrics.received, channel_label(order.channel)).inc()
            outcomes[i] = Outcome(
                status="manual" if decision.manual else "dispatched", order_id=order.order_id,
                decision=decision, outbox=self._after_dispatch(order, decision, results[k]),
            )
        TIMES.add("router.outbox", time.perf_counter() - built, len(items))
        self.metrics.dispatch_latency.observe(time.perf_counter() - started)
        return [o for o in outcomes if o is not None]

    def _route_one(self, order: OrderIn, decision: Decision, source: str) -> Outcome:
        try:
            added = self.store.add_order(order)
        except ConflictingOrder:
            return self._dead_letter(source, "CONFLICT", f"工单编号 {order.order_id} 已存在且内容不同",
                                     order_to_json(order), order.order_id)
        if added == "new":
            self.metrics.child(self.metrics.received, channel_label(order.channel)).inc()
        elif self._already_routed(order.order_id):
            return Outcome(status="duplicate", order_id=order.order_id)
        outbox = self._dispatch(order, decision, round_no=1, actor="system", at=order.received_at)
        return Outcome(status="manual" if decision.manual else "dispatched",
                       order_id=order.order_id, decision=decision, outbox=outbox)

    def _repeat_counts(self, orders: Sequence[OrderIn]) -> dict[str, int]:
        """Same-enterprise orders within the window, this one included: the stored ones plus
        the earlier ones of this batch (not stored yet). One query for the whole batch."""
        keyed = [(o, k) for o in orders if (k := _enterprise_key(o)) is not None]
        if not keyed:
            return {}
        window = timedelta(days=self.config.settings.repeat_window_days)
        stored = self.store.enterprise_orders_since(
            codes=[o.credit_code for o, _ in keyed if o.credit_code],
            names=[o.enterprise_name for o, _ in keyed if o.enterprise_name],
            since=min(o.received_at for o, _ in keyed) - window,
            exclude=[o.order_id for o in orders],
        )
        seen: dict[str | None, list[datetime]] = {}
        for code, name, at in stored:
            seen.setdefault(_key_of(code, name), []).append(at)
        for o, k in keyed:
            seen.setdefault(k, []).append(o.received_at)
        return {
            order.order_id: sum(
                1 for at in seen[key] if order.received_at - window <= at <= order.received_at
            )
            for order, key in keyed
        }

    def _already_routed(self, order_id: str) -> bool:
        lc = self.store.lifecycle(order_id)
        return lc.state != State.RECEIVED

    def _route_event(
        self, order: OrderIn, decision: Decision, *, round_no: int, actor: str, at: datetime
    ) -> LifecycleEvent:
        """The dispatch (派单) or manual-queue event that carries out a decision."""
        if decision.manual or decision.lead_unit is None:
            kind = "SentToManualQueue"
            data: dict[str, Any] = {
                "reason": "；".join(decision.reasons) or "待人工派单",
                "suggestions": [c.unit for c in decision.candidates[:3]],
            }
        else:
            kind = "OrderDispatched"
            data = {
                "unit": decision.lead_unit,
                "co_units": list(decision.co_units),
                "manual": False,
                "by_dispatcher": False,
                "decision_rules": list(decision.rules),
            }
        return LifecycleEvent(event_id=f"{order.order_id}:route:{round_no}",
                              order_id=order.order_id, kind=kind, at=at, actor=actor, data=data)

    def _dispatch(
        self, order: OrderIn, decision: Decision, *, round_no: int, actor: str, at: datetime
    ) -> list[OutMessage]:
        """Persist the dispatch (or manual-queue) event with its decision; build the outbox."""
        event = self._route_event(order, decision, round_no=round_no, actor=actor, at=at)
        return self._after_dispatch(order, decision, self.store.apply(event, decision=decision))

    def _after_dispatch(
        self, order: OrderIn, decision: Decision, result: ApplyResult
    ) -> list[OutMessage]:
        self._count_event(result)
        if result.duplicate:  # another worker routed it first: send what is stored, not ours
            return self.current_dispatch(order.order_id)
        if result.rejected is not None:
            log.warning("dispatch rejected for %s: %s", order.order_id, result.rejected.reason)
            return []
        if decision.manual or decision.lead_unit is None:
            self.metrics.manual.inc()
            return []
        rule = decision.rules[0] if decision.rules else "MODEL"
        self.metrics.child(self.metrics.dispatched, decision.lead_unit, rule).inc()
        return self._feed_messages(order, decision)

    def _feed_messages(self, order: OrderIn, decision: Decision) -> list[OutMessage]:
        body = {**order_to_json(order), "decision": decision.to_json()}
        shared = SharedBody(body)
        out = [OutMessage(DISPATCHED, order.order_id, body, shared)]
        for unit, role in [(decision.lead_unit, "主办"), *((u, "协办") for u in decision.co_units)]:
            if unit is None:
                continue
            code = self.config.code_of(unit)
            extra = {"role": role}
            out.append(OutMessage(FEED_PREFIX + code, order.order_id, {**body, **extra},
                                  shared, extra))
        return out

    def _dead_letter(
        self,
        source: str,
        code: str,
        reason: str,
        raw: bytes | str | Mapping[str, Any],
        order_id: str | None,
    ) -> Outcome:
        payload = payload_text(raw)
        reason = _storable(reason)
        self.store.dead_letter(source=source, reason=f"{code}: {reason}", payload=payload, order_id=order_id)
        self.metrics.child(self.metrics.dead_letters, code).inc()
        log.info("dead-lettered %s: %s", code, mask_pii(reason))
        value = {"code": code, "reason": reason, "source": source, "payload": payload[:100_000]}
        return Outcome(
            status="dead_letter",
            order_id=order_id,
            code=code,
            reason=reason,
            outbox=[OutMessage(DLQ, order_id, value)],
        )

    # ---- lifecycle ------------------------------------------------------------------------
    def apply_event(self, event: LifecycleEvent) -> EventOutcome:
        """Apply one lifecycle event; a 退单 triggers 改派 (or the manual queue)."""
        manual = (self._manual_decision(event)
                  if event.kind == "OrderDispatched" and event.data.get("unit") else None)
        result = self.store.apply(event, decision=manual)
        self._count_event(result)
        outcome = EventOutcome(result=result)
        if result.rejected is not None or result.duplicate:
            return outcome
        self._learn(event, result)
        kinds = {e.kind for e in result.applied}
        if "OrderReturned" in kinds:
            self._redispatch(event.order_id, outcome, at=event.at)
        elif manual is not None and "OrderDispatched" in kinds:
            outcome.decision = manual
            outcome.outbox = self.current_dispatch(event.order_id)
        elif "OrderReopened" in kinds:  # 重办: the same unit gets the order again
            outcome.outbox = self.current_dispatch(event.order_id)
        return outcome

    def _manual_decision(self, event: LifecycleEvent) -> Decision:
        """A dispatcher's 人工派单, recorded as a decision like the automatic ones."""
        return Decision(
            order_id=event.order_id, lead_unit=str(event.data["unit"]),
            co_units=tuple(event.data.get("co_units") or ()), manual=False,
            rules=("MANUAL-DISPATCH",), reasons=(f"人工派单（{event.actor}）",),
            model_version=self.classifier.version, candidates=(),
        )

    def current_dispatch(self, order_id: str) -> list[OutMessage]:
        """The dispatch messages of the order's current dispatch: sent on 人工派单 and 重办, and
        again after a redelivery (the database write may have happened while the delivery did
        not). Feed consumers see at most a repeat of the same dispatch, never a lost one. Only
        an order waiting for its unit's 签收 (已派单) has a dispatch to send."""
        row = self.store.get_order(order_id)
        if row is None or row.lead_unit is None or row.state != State.DISPATCHED.value:
            return []
        decisions = self.store.decisions(order_id)
        if not decisions:
            return []
        decision = decision_from_row(decisions[-1])
        if decision.manual or decision.lead_unit != row.lead_unit:
            return []
        return self._feed_messages(order_from_row(row), decision)

    def _learn(self, event: LifecycleEvent, result: ApplyResult) -> None:
        """A dispatcher's manual dispatch, and a 退单 naming the right unit, become labels."""
        if event.kind == "OrderDispatched" and event.data.get("by_dispatcher"):
            unit, source = event.data.get("unit"), "manual_dispatch"
        elif event.kind == "OrderReturned" and event.data.get("suggested_unit"):
            unit, source = event.data.get("suggested_unit"), "return_correction"
        else:
            return
        row = self.store.get_order(event.order_id)
        if row is None or not unit or not any(e.event_id == event.event_id for e in result.applied):
            return
        self.store.add_training_label(
            order_id=row.id, text=f"{row.title}\n{row.text}", unit=str(unit), source=source,
            actor=event.actor, at=event.at,
        )

    def reject_event_payload(self, raw: bytes | str, exc: Exception) -> Outcome:
        """A lifecycle event that cannot even be parsed goes to the dead-letter path."""
        return self._dead_letter(EVENTS_SOURCE, "BAD_EVENT", f"事件无法解析：{exc}", raw, None)

    def apply_events(self, events: Iterable[LifecycleEvent]) -> list[EventOutcome]:
        return [self.apply_event(e) for e in events]

    def _redispatch(self, order_id: str, outcome: EventOutcome, *, at: datetime) -> None:
        row = self.store.get_order(order_id)
        lc = self.store.lifecycle(order_id)
        if row is None or lc.state != State.RETURNED:
            return
        order = order_from_row(row)
        returns = [e for e in self.store.history(order_id) if e.accepted and e.kind == "OrderReturned"]
        territorial = {u.name for u in self.config.territorial_units}
        ctx = RoutingContext(
            repeat_count=self._repeat_counts([order]).get(order.order_id, 1),
            returned_by=tuple(lc.returned_units),
            beyond_power=any(
                bool(e.data.get("beyond_power")) and e.actor in territorial for e in returns
            ),
            reopened_with_territorial=lc.reopen_count > 0
            and any(u in territorial for u in lc.returned_units),
        )
        prediction = self.classifier.predict([order], k=5)[0]
        decision = self.engine.decide(order, prediction, ctx, model_thresholds=self.model_thresholds)
        outcome.decision = decision
        outcome.outbox = self._dispatch(
            order, decision, round_no=lc.return_count + 1, actor="system", at=at
        )

    def _count_event(self, result: ApplyResult) -> None:
        if result.rejected is not None:
            self.metrics.child(self.metrics.events, "rejected", result.rejected.code).inc()
            return
        for e in result.applied:
            self.metrics.child(self.metrics.events, e.kind, "applied").inc()
            unit = str(e.data.get("unit") or "")
            if e.kind == "OrderReopened":
                self.metrics.child(self.metrics.reopens, unit).inc()
            elif e.kind == "OrderSupervised":
                self.metrics.child(self.metrics.supervised, unit).inc()
            elif e.kind == "OrderReturned":
                self.metrics.child(self.metrics.returns, self._returning_unit(e)).inc()

    def _returning_unit(self, event: LifecycleEvent) -> str:
        """The unit that returned the order (a dispatcher may record a 退单 on its behalf; the
        metrics label is the unit, never the person)."""
        returned = self.store.lifecycle(event.order_id).returned_units
        return returned[-1] if returned else ""

    def tick(self, now: datetime, *, limit: int | None = None) -> list[ApplyResult]:
        """Raise overdue events for every passed deadline (with ``limit``: for that many orders,
        the earliest due; the rest on a later tick); refresh the queue gauges."""
        results = self.store.tick_deadlines(now, limit=limit)
        for r in results:
            self._count_event(r)
        self.refresh_gauges()
        return results

    def refresh_gauges(self) -> None:
        self.metrics.manual_queue.set(self.store.queue_size("manual"))
        self.metrics.overdue.set(self.store.queue_size("overdue"))
