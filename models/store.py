"""Persistence (存储). Every state change goes through `Store.apply`, which writes the event log and
the order snapshot in one transaction. Works on SQLite and PostgreSQL with the same code."""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import event as sa_event
from sqlalchemy import String, cast, func, or_, update
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.exc import DisconnectionError, IntegrityError
from sqlmodel import Session, col, create_engine, select

from models.bulk import BulkInsert
from models.jsoncodec import dumps_text
from models.lifecycle import (
    ORDER_RECEIVED,
    REVISIT_RECORDED,
    LifecycleEvent,
    OrderLifecycle,
    State,
    TransitionRejected,
    UnknownOrder,
    deadline_event,
    due_deadlines,
    storable_text,
    local_naive,
)
from models.policy import LifecyclePolicy, load_policy
from models.records import Decision, OrderIn
from models.tables import (
    TRAINING_SOURCES,
    DeadLetter,
    DispatchDecisionRow,
    EventRow,
    RevisitRow,
    TrainingLabel,
    Unit,
    WorkOrder,
    now_local,
)

#: Queue names for `Store.queue` (值班派单员的队列).
QUEUES: tuple[str, ...] = (
    "new", "manual", "dispatched", "overdue", "reopened", "supervised", "revisit_due",
)
UNIT_KINDS: tuple[str, ...] = ("line", "territorial", "historical")
_OPEN_STATES = [s.value for s in State if s is not State.CLOSED]
_RETRIES = 10
_INSERT_ORDERS = BulkInsert(WorkOrder.__table__)  # type: ignore[attr-defined]
_INSERT_EVENTS = BulkInsert(EventRow.__table__)  # type: ignore[attr-defined]
_INSERT_DECISIONS = BulkInsert(DispatchDecisionRow.__table__)  # type: ignore[attr-defined]


class ConflictingOrder(Exception):
    """An order id that is already stored with different content."""

    def __init__(self, order_id: str) -> None:
        super().__init__(f"工单 {order_id} 已存在且内容不同")
        self.order_id = order_id


class OrderNotFound(LookupError):
    def __init__(self, order_id: str) -> None:
        super().__init__(f"工单 {order_id} 不存在")
        self.order_id = order_id


@dataclass
class ApplyResult:
    """What `Store.apply` did: the events recorded, or a duplicate, or a recorded rejection."""

    applied: list[LifecycleEvent] = field(default_factory=list)
    duplicate: bool = False
    rejected: TransitionRejected | None = None


def content_hash(order: OrderIn) -> str:
    """A stable hash of what the caller said (not of transport metadata in ``extra``)."""
    body = order.to_json()
    del body["order_id"], body["extra"]  # transport metadata, not what the caller said
    body["received_at"] = local_naive(order.received_at).isoformat()
    raw = json.dumps(body, ensure_ascii=False, sort_keys=True)
    return hashlib.sha256(raw.encode("utf-8")).hexdigest()


def received_event(order: OrderIn) -> LifecycleEvent:
    """The OrderReceived (收集) event for an order; one fixed id per order."""
    return LifecycleEvent(
        event_id=f"{order.order_id}:收集",
        order_id=order.order_id,
        kind=ORDER_RECEIVED,
        at=order.received_at,
        actor="system",
        data={
            "channel": order.channel,
            "is_enterprise": order.is_enterprise,
            "appeal_type": order.appeal_type,
            "urgent": bool(order.extra.get("urgent", False)),
        },
    )


#: a pooled connection back in the pool for less than this is handed out again unpinged
PING_IDLE_S = 1.0


def _engine_for(url: str) -> Engine:
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite":
        engine = create_engine(url, json_serializer=dumps_text)
        _ping_when_idle(engine)
        return engine
    database = parsed.database or ""
    if database and database != ":memory:" and not database.startswith("file:"):
        Path(database).expanduser().parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30},
                           json_serializer=dumps_text)
    if database and database != ":memory:":
        sa_event.listen(engine, "connect", _sqlite_wal)
    return engine


def _ping_when_idle(engine: Engine) -> None:
    """Pessimistic disconnect handling (断线检测) for connections that sat in the pool: one
    idle for `PING_IDLE_S` or more is pinged at checkout, and a dead one is replaced (the pool
    retries with a new connection). ``pool_pre_ping`` pings at every checkout: a round trip per
    session, two per routed batch, with the GIL given up and taken back under a busy event
    loop. A connection checked in moments ago was working then; if the server went away since,
    the statement fails as a disconnect, SQLAlchemy discards the pool's connections, and the
    caller's retry (`streams.faults.Retrier` in a worker) runs on new ones."""

    @sa_event.listens_for(engine, "checkin")
    def _checked_in(_dbapi_connection: Any, record: Any) -> None:
        record.info["idle_since"] = time.monotonic()

    @sa_event.listens_for(engine, "checkout")
    def _checked_out(dbapi_connection: Any, record: Any, _proxy: Any) -> None:
        since = record.info.pop("idle_since", None)
        if since is not None and time.monotonic() - since < PING_IDLE_S:
            return
        try:
            engine.dialect.do_ping(dbapi_connection)
        except Exception as exc:  # noqa: BLE001 - any failure: a new connection instead
            raise DisconnectionError(f"数据库连接已失效：{exc!r}") from exc


def _sqlite_wal(dbapi_connection: Any, _record: Any) -> None:
    """A file database in WAL mode with synchronous=NORMAL: a commit no longer waits for an
    fsync (a power cut may lose the last commits, never corrupt the file); readers never block
    the writer. Without this every commit costs ~25 ms and caps the embedded pipeline."""
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


def _event_values(
    event: LifecycleEvent, rejected: TransitionRejected | None = None, now: datetime | None = None
) -> dict[str, Any]:
    # a rejected event is recorded as it came, with what no column can hold escaped (an
    # applied one has passed the lifecycle's checks)
    shown = storable_text if rejected is not None else str
    return {
        "event_id": event.event_id,
        "order_id": event.order_id,
        "kind": shown(event.kind),
        "at": event.at,
        "actor": shown(event.actor),
        "data": dict(event.data),
        "accepted": rejected is None,
        "rejection_code": rejected.code if rejected else None,
        "rejection_reason": rejected.reason if rejected else None,
        "recorded_at": now or now_local(),
    }


def _event_row(event: LifecycleEvent, rejected: TransitionRejected | None = None) -> EventRow:
    return EventRow(**_event_values(event, rejected))


def _decision_values(decision: Decision, now: datetime | None = None) -> dict[str, Any]:
    return {
        "order_id": decision.order_id, "at": now or now_local(), "lead_unit": decision.lead_unit,
        "co_units": list(decision.co_units), "manual": decision.manual,
        "rules": list(decision.rules), "reasons": list(decision.reasons),
        "model_version": decision.model_version,
        "candidates": [{"unit": c.unit, "probability": c.probability} for c in decision.candidates],
        "terms": [[t, w] for t, w in decision.terms],
        "against": [[t, w] for t, w in decision.against],
        "line_unit": decision.line_unit, "territorial_unit": decision.territorial_unit,
        "line_first": decision.line_first, "trigger": decision.trigger,
        "appeal_type": decision.appeal_type, "confidence": decision.confidence,
    }


def _decision_row(decision: Decision) -> DispatchDecisionRow:
    return DispatchDecisionRow(**_decision_values(decision))


def _order_values(
    order: OrderIn, values: dict[str, Any], digest: str | None = None, now: datetime | None = None
) -> dict[str, Any]:
    """A newly received order's columns, with the aggregate's columns in `values`; `digest`
    is its `content_hash` when already known."""
    return {
        "id": order.order_id, "channel": order.channel,
        "received_at": local_naive(order.received_at), "title": order.title, "text": order.text,
        "caller": order.caller, "enterprise_name": order.enterprise_name,
        "credit_code": order.credit_code, "address": order.address, "area": order.area,
        "legacy": order.legacy, "extra": _jsonable(order.extra),
        "content_hash": digest or content_hash(order), "model_version": None, "confidence": None,
        "created_at": now or now_local(), **values,
    }


def _new_row(order: OrderIn, values: dict[str, Any], digest: str | None = None) -> WorkOrder:
    return WorkOrder(**_order_values(order, values, digest))


def _snapshot(lc: OrderLifecycle, now: datetime | None = None) -> dict[str, Any]:
    """The WorkOrder columns that mirror the aggregate."""
    pending = [due for kind, due in lc.deadlines.items() if kind not in lc.overdue]
    return {
        "state": lc.state.value,
        "appeal_type": lc.appeal_type,
        "is_enterprise": lc.is_enterprise,
        "urgent": lc.urgent,
        "lead_unit": lc.unit,
        "co_units": list(lc.co_units),
        "returned_units": list(lc.returned_units),
        "return_count": lc.return_count,
        "reopen_count": lc.reopen_count,
        "supervised": lc.supervised,
        "overdue": sorted(lc.overdue),
        "deadlines": {k: v.isoformat() for k, v in sorted(lc.deadlines.items())},
        "next_due": min(pending) if pending else None,
        "version": lc.version,
        "updated_at": now or now_local(),
    }


class Store:
    """The database behind the router. One per process; sessions are short-lived."""

    def __init__(self, engine: Engine, *, policy: LifecyclePolicy | None = None) -> None:
        self.engine = engine
        self.policy = policy if policy is not None else load_policy()
        self.calendar = self.policy.calendar()
        # PostgreSQL: the same pool without BEGIN and ROLLBACK (a round trip each) for a lone
        # read such as `admit`'s
        self._reads: Engine = (
            engine.execution_options(isolation_level="AUTOCOMMIT")
            if engine.dialect.name == "postgresql" else engine
        )

    @classmethod
    def from_url(
        cls, url: str, *, create: bool = True, policy: LifecyclePolicy | None = None
    ) -> Store:
        """Open ``url`` (``sqlite:///path`` or ``postgresql+psycopg://…``); bring its schema to
        the newest Alembic migration (`models.migrate.migrate`) unless ``create`` is False."""
        store = cls(_engine_for(url), policy=policy)
        if create:
            from models.migrate import migrate

            migrate(store.engine)
        return store

    def close(self) -> None:
        self.engine.dispose()

    # ---- orders -------------------------------------------------------------------------------
    def add_order(self, order: OrderIn) -> str:
        """Store a new order and record OrderReceived: "new", or "duplicate" when the same order
        (same id, same content) is already stored; `ConflictingOrder` for same id, other content."""
        digest = content_hash(order)
        event = received_event(order)
        with Session(self.engine) as s:
            existing = s.get(WorkOrder, order.order_id)
            if existing is not None:
                return self._same_or_conflict(existing, digest)
            lc = OrderLifecycle(order_id=order.order_id)
            applied = lc.apply(event, calendar=self.calendar, policy=self.policy)
            row = _new_row(order, _snapshot(lc), digest)
            s.add(row)
            s.add_all(_event_row(e) for e in applied)
            try:
                s.commit()
            except IntegrityError:
                s.rollback()
                again = s.get(WorkOrder, order.order_id)
                if again is None:
                    raise
                return self._same_or_conflict(again, digest)
        return "new"

    @staticmethod
    def _same_or_conflict(row: WorkOrder, digest: str) -> str:
        if row.content_hash != digest:
            raise ConflictingOrder(row.id)
        return "duplicate"

    def get_order(self, order_id: str) -> WorkOrder | None:
        with Session(self.engine) as s:
            return s.get(WorkOrder, order_id)

    def lifecycle(self, order_id: str) -> OrderLifecycle:
        """The aggregate for ``order_id``; `OrderNotFound` when it was never received."""
        with Session(self.engine) as s:
            row = s.get(WorkOrder, order_id)
            if row is None:
                raise OrderNotFound(order_id)
            return self._aggregate(s, row)

    @staticmethod
    def _aggregate(s: Session, row: WorkOrder) -> OrderLifecycle:
        return Store._aggregates(s, [row])[0]

    @staticmethod
    def _aggregates(s: Session, rows: Sequence[WorkOrder]) -> list[OrderLifecycle]:
        """The lifecycles of stored rows, their applied event ids read in one query."""
        ids: dict[str, list[str]] = {row.id: [] for row in rows}
        if ids:
            for order_id, event_id in s.exec(
                select(EventRow.order_id, EventRow.event_id)
                .where(col(EventRow.order_id).in_(list(ids)), col(EventRow.accepted))
            ).all():
                ids[order_id].append(event_id)
        return [Store._lifecycle_of(row, ids[row.id]) for row in rows]

    @staticmethod
    def _lifecycle_of(row: WorkOrder, ids: Iterable[str]) -> OrderLifecycle:
        return OrderLifecycle(
            order_id=row.id, is_enterprise=row.is_enterprise, appeal_type=row.appeal_type,
            urgent=row.urgent, state=State(row.state), unit=row.lead_unit,
            co_units=list(row.co_units), returned_units=list(row.returned_units),
            return_count=row.return_count, reopen_count=row.reopen_count,
            supervised=row.supervised, overdue=set(row.overdue),
            deadlines={k: datetime.fromisoformat(v) for k, v in row.deadlines.items()},
            applied_event_ids=set(ids), version=row.version,
        )

    @staticmethod
    def _add_decision(s: Session, decision: Decision) -> DispatchDecisionRow:
        """Stage a dispatch decision in `s`; fill the order's 诉求类型 (if unknown), model and
        confidence (decisions are stored only with the event that carries them out)."""
        row = _decision_row(decision)
        s.add(row)
        values: dict[str, Any] = {
            "model_version": decision.model_version, "confidence": decision.confidence,
        }
        s.exec(update(WorkOrder).where(col(WorkOrder.id) == decision.order_id).values(**values))
        if decision.appeal_type:
            s.exec(
                update(WorkOrder)
                .where(col(WorkOrder.id) == decision.order_id)
                .where(col(WorkOrder.appeal_type).is_(None))
                .values(appeal_type=decision.appeal_type)
            )
        return row

    # ---- batches: one transaction for a whole batch of first dispatches ---------------------
    def admit(
        self, orders: Sequence[OrderIn], digests: dict[str, str] | None = None
    ) -> list[str]:
        """Where each order stands, in one query: "new", "unrouted" (stored, not yet routed),
        "routed", or "conflict" (same id, other content, stored or earlier in this batch). A
        repeat of an id earlier in the same batch with the same content is "routed".
        `digests`, when given, receives each id's content hash (of its first appearance), for
        `dispatch_batch` to store without hashing again."""
        ids = list({o.order_id for o in orders})
        with Session(self._reads) as s:  # one read: no transaction
            rows = s.exec(
                select(WorkOrder.id, WorkOrder.content_hash, WorkOrder.state)
                .where(col(WorkOrder.id).in_(ids))
            ).all() if ids else []
        known = {rid: (digest, state) for rid, digest, state in rows}
        batch: dict[str, str] = {}  # id -> content hash of its first appearance in this batch
        out = []
        for o in orders:
            digest = content_hash(o)
            first = known[o.order_id][0] if o.order_id in known else batch.get(o.order_id)
            if first is not None and first != digest:
                out.append("conflict")
            elif o.order_id in batch or (
                o.order_id in known and known[o.order_id][1] != State.RECEIVED.value
            ):
                out.append("routed")
            else:
                out.append("unrouted" if o.order_id in known else "new")
            batch.setdefault(o.order_id, digest)
        if digests is not None:
            digests.update((k, v) for k, v in batch.items() if k not in digests)
        return out

    def dispatch_batch(
        self,
        items: Sequence[tuple[OrderIn, bool, Decision, LifecycleEvent]],
        digests: Mapping[str, str] | None = None,
    ) -> list[ApplyResult] | None:
        """Store (when new), record the decision and apply the first dispatch (or manual-queue)
        event of many orders in ONE transaction. Items: (order, is_new, decision, event).
        Returns one result per item, or None when a concurrent writer got there first (nothing
        is written then; the caller falls back to `add_order` and `apply`). `digests`: content
        hashes by order id, as `admit` computed them (others are computed here)."""
        results: list[ApplyResult] = []
        now = now_local()  # one recording time for the batch (to the second)
        new_orders: list[dict[str, Any]] = []
        events: list[dict[str, Any]] = []
        with Session(self.engine) as s:
            for order, is_new, decision, event in items:
                if is_new:
                    lc = OrderLifecycle(order_id=order.order_id)
                    applied = lc.apply(received_event(order), calendar=self.calendar,
                                       policy=self.policy)
                else:
                    row = s.get(WorkOrder, order.order_id, with_for_update=True)
                    if row is None:
                        s.rollback()
                        return None
                    lc = self._aggregate(s, row)
                    applied = []
                lc.appeal_type = lc.appeal_type or decision.appeal_type
                try:
                    applied += lc.apply(event, calendar=self.calendar, policy=self.policy)
                    results.append(ApplyResult(applied=applied))
                except TransitionRejected as exc:
                    events.append(_event_values(event, exc, now))
                    results.append(ApplyResult(rejected=exc))
                events.extend(_event_values(e, None, now) for e in applied)
                values = {**_snapshot(lc, now), "model_version": decision.model_version,
                          "confidence": decision.confidence}
                if is_new:
                    digest = digests.get(order.order_id) if digests else None
                    new_orders.append(_order_values(order, values, digest, now))
                else:
                    s.exec(update(WorkOrder).where(col(WorkOrder.id) == order.order_id)
                           .values(**values))
            if not self._insert_and_commit(
                s, (_INSERT_ORDERS, new_orders), (_INSERT_EVENTS, events),
                (_INSERT_DECISIONS, [_decision_values(d, now) for _, _, d, _ in items]),
            ):
                return None
        return results

    def decisions(self, order_id: str) -> list[DispatchDecisionRow]:
        with Session(self.engine) as s:
            stmt = select(DispatchDecisionRow).where(DispatchDecisionRow.order_id == order_id)
            return list(s.exec(stmt.order_by(col(DispatchDecisionRow.id))).all())

    # ---- events -------------------------------------------------------------------------------
    def apply(self, event: LifecycleEvent, *, decision: Decision | None = None) -> ApplyResult:
        """Apply one event in one transaction. A duplicate id changes nothing; a rejection is
        recorded (accepted=False) and returned, not raised. Retries on a concurrent update.

        `decision`, the dispatch decision the event carries out, is stored in the same
        transaction, and only when the event is applied: two workers racing on one order leave
        one dispatch and its own decision, never a dispatch beside another worker's decision."""
        for _ in range(_RETRIES):
            result = self._try_apply(event, decision)
            if result is not None:
                return result
        raise RuntimeError(f"工单 {event.order_id} 并发更新冲突，重试 {_RETRIES} 次仍失败")

    def _try_apply(self, event: LifecycleEvent, decision: Decision | None) -> ApplyResult | None:
        with Session(self.engine) as s:
            if self._seen(s, event.event_id):
                return ApplyResult(duplicate=True)
            row = s.get(WorkOrder, event.order_id, with_for_update=True)  # row lock on PostgreSQL
            if row is None:
                return self._reject(s, event, UnknownOrder(f"工单 {event.order_id} 不存在"))
            lc = self._aggregate(s, row)
            old_version = lc.version
            try:
                applied = lc.apply(event, calendar=self.calendar, policy=self.policy)
            except TransitionRejected as exc:
                return self._reject(s, event, exc)
            if not applied:
                return ApplyResult(duplicate=True)
            s.add_all(_event_row(e) for e in applied)
            s.add_all(_revisit_rows(applied))
            if not self._write_snapshot(s, lc, old_version):
                return None
            if decision is not None:
                self._add_decision(s, decision)
            if not self._commit(s):
                return None if not self._seen_now(event.event_id) else ApplyResult(duplicate=True)
            return ApplyResult(applied=applied)

    def _insert_and_commit(
        self, s: Session, *inserts: tuple[BulkInsert, Sequence[Mapping[str, Any]]]
    ) -> bool:
        """One executemany per table, then commit `s`. False when a concurrent writer clashed
        (a unique key): the transaction is rolled back and nothing is written."""
        conn = s.connection()
        try:
            for insert, rows in inserts:
                insert(conn, rows)
        except IntegrityError:
            s.rollback()
            return False
        return self._commit(s)

    @staticmethod
    def _write_snapshot(
        s: Session, lc: OrderLifecycle, old_version: int, now: datetime | None = None
    ) -> bool:
        """Update the order's row to `lc` if it is still at `old_version`; otherwise roll the
        transaction back (a concurrent writer got there first) and return False."""
        stmt = (
            update(WorkOrder)
            .where(col(WorkOrder.id) == lc.order_id, col(WorkOrder.version) == old_version)
            .values(**_snapshot(lc, now))
        )
        if s.exec(stmt).rowcount != 1:  # type: ignore[attr-defined]
            s.rollback()
            return False
        return True

    def _reject(self, s: Session, event: LifecycleEvent, exc: TransitionRejected) -> ApplyResult:
        s.add(_event_row(event, exc))
        if not self._commit(s):
            return ApplyResult(duplicate=True)
        return ApplyResult(rejected=exc)

    @staticmethod
    def _commit(s: Session) -> bool:
        try:
            s.commit()
        except IntegrityError:
            s.rollback()
            return False
        return True

    @staticmethod
    def _seen(s: Session, event_id: str) -> bool:
        return s.exec(select(EventRow.seq).where(EventRow.event_id == event_id)).first() is not None

    def _seen_now(self, event_id: str) -> bool:
        with Session(self.engine) as s:
            return self._seen(s, event_id)

    def history(self, order_id: str) -> list[EventRow]:
        """Every event recorded for the order, accepted and rejected, in order."""
        with Session(self.engine) as s:
            stmt = select(EventRow).where(EventRow.order_id == order_id).order_by(col(EventRow.seq))
            return list(s.exec(stmt).all())

    def events_since(self, seq: int, limit: int = 1000) -> list[EventRow]:
        """Accepted and rejected events after ``seq`` (for feeds and reports)."""
        with Session(self.engine) as s:
            stmt = select(EventRow).where(col(EventRow.seq) > seq).order_by(col(EventRow.seq))
            return list(s.exec(stmt.limit(limit)).all())

    def tick_deadlines(self, now: datetime, *, limit: int | None = None) -> list[ApplyResult]:
        """Record DeadlinePassed (超期) for every deadline passed at ``now``; with ``limit``,
        for the ``limit`` orders due first only (the rest on a later tick).

        All of a tick's orders are done in one transaction (`_tick_batch`). When that meets a
        concurrent writer (a version or event-id clash: nothing is written), each order is
        done on its own, as `apply` does it."""
        moment = local_naive(now)
        results = self._tick_batch(moment, limit)
        if results is not None:
            return results
        with Session(self.engine) as s:
            order_ids = list(s.exec(self._due_query(WorkOrder.id, moment, limit)).all())
        results = []
        for order_id in order_ids:
            lc = self.lifecycle(order_id)
            for kind, due in due_deadlines(lc, moment):
                results.append(self.apply(deadline_event(order_id, kind, due, moment)))
        return results

    @staticmethod
    def _due_query(what: Any, moment: datetime, limit: int | None) -> Any:
        stmt = select(what).where(
            col(WorkOrder.next_due).is_not(None), col(WorkOrder.next_due) <= moment
        ).order_by(col(WorkOrder.next_due))
        return stmt.limit(limit) if limit is not None else stmt

    def _tick_batch(self, moment: datetime, limit: int | None) -> list[ApplyResult] | None:
        """The deadlines of a tick's orders in ONE transaction: a handful of statements
        instead of several round trips and a commit per event. On PostgreSQL the due rows are
        locked as they are read, skipping rows another transaction holds (a worker routing or
        applying an event to that order; the next tick takes them), so the tick never waits
        for a lock and cannot deadlock with a batch that locks rows in another order. None
        when a concurrent writer got there first: nothing is written then."""
        now = now_local()
        results: list[ApplyResult] = []
        events: list[dict[str, Any]] = []
        with Session(self.engine) as s:
            stmt = self._due_query(WorkOrder, moment, limit).with_for_update(skip_locked=True)
            rows = list(s.exec(stmt).all())
            for row, lc in zip(rows, self._aggregates(s, rows), strict=True):
                old_version = lc.version
                applied_here: list[LifecycleEvent] = []
                for kind, due in due_deadlines(lc, moment):
                    event = deadline_event(lc.order_id, kind, due, moment)
                    try:
                        applied = lc.apply(event, calendar=self.calendar, policy=self.policy)
                    except TransitionRejected as exc:
                        events.append(_event_values(event, exc, now))
                        results.append(ApplyResult(rejected=exc))
                        continue
                    results.append(ApplyResult(applied=applied, duplicate=not applied))
                    applied_here += applied
                if not applied_here:
                    continue
                events.extend(_event_values(e, None, now) for e in applied_here)
                s.add_all(_revisit_rows(applied_here))
                if not self._write_snapshot(s, lc, old_version, now):
                    return None
            if not events:
                return results
            if not self._insert_and_commit(s, (_INSERT_EVENTS, events)):
                return None
        return results

    # ---- other records ------------------------------------------------------------------------
    def dead_letter(
        self, *, source: str, reason: str, payload: str, order_id: str | None = None
    ) -> None:
        with Session(self.engine) as s:
            s.add(DeadLetter(source=source, reason=reason, payload=payload, order_id=order_id))
            s.commit()

    def dead_letters(self, limit: int = 100) -> list[DeadLetter]:
        with Session(self.engine) as s:
            stmt = select(DeadLetter).order_by(col(DeadLetter.id).desc()).limit(limit)
            return list(s.exec(stmt).all())

    def repeat_count(
        self,
        *,
        credit_code: str | None,
        enterprise_name: str | None,
        since: datetime,
        until: datetime,
        exclude: Iterable[str] = (),
    ) -> int:
        """Orders of the same enterprise received in [since, until]: matched by 统一社会信用代码,
        and by name for orders that carry no credit code; ids in `exclude` are not counted."""
        code = (credit_code or "").strip()
        name = (enterprise_name or "").strip()
        if not code and not name:
            return 0
        if code and name:
            same = or_(
                col(WorkOrder.credit_code) == code,
                (col(WorkOrder.credit_code).is_(None)) & (col(WorkOrder.enterprise_name) == name),
            )
        elif code:
            same = col(WorkOrder.credit_code) == code
        else:
            same = col(WorkOrder.enterprise_name) == name
        stmt = select(func.count()).select_from(WorkOrder).where(
            same,
            col(WorkOrder.received_at) >= local_naive(since),
            col(WorkOrder.received_at) <= local_naive(until),
        )
        skip = list(exclude)
        if skip:
            stmt = stmt.where(col(WorkOrder.id).not_in(skip))
        with Session(self.engine) as s:
            return int(s.exec(stmt).one())

    def enterprise_orders_since(
        self, *, codes: Iterable[str], names: Iterable[str], since: datetime,
        exclude: Iterable[str] = (),
    ) -> list[tuple[str | None, str | None, datetime]]:
        """(credit code, enterprise name, received time) of stored orders since `since` whose
        credit code or name is among the given ones: one query for a whole batch's 多次重复."""
        codes, names, skip = list(set(codes)), list(set(names)), list(exclude)
        if not codes and not names:
            return []
        stmt = select(WorkOrder.credit_code, WorkOrder.enterprise_name, WorkOrder.received_at).where(
            or_(col(WorkOrder.credit_code).in_(codes), col(WorkOrder.enterprise_name).in_(names)),
            col(WorkOrder.received_at) >= local_naive(since),
        )
        if skip:
            stmt = stmt.where(col(WorkOrder.id).not_in(skip))
        with Session(self.engine) as s:
            return [(c, n, t) for c, n, t in s.exec(stmt).all()]

    def queue(self, name: str) -> list[WorkOrder]:
        """A dispatcher queue: new, manual (incl. 已退单 awaiting 改派), dispatched, overdue,
        reopened, supervised (open orders only), revisit_due (已反馈, enterprise first)."""
        stmt, order_by = self._queue_query(name)
        with Session(self.engine) as s:
            rows = list(s.exec(stmt.order_by(*order_by)).all())
        if name == "overdue":
            rows = [r for r in rows if r.overdue]
        return rows

    def queue_size(self, name: str) -> int:
        """``len(self.queue(name))``, counted by the database (for gauges: no rows loaded)."""
        stmt, _ = self._queue_query(name)
        if name == "overdue":  # a JSON list column: empty is stored as the text '[]'
            stmt = stmt.where(cast(col(WorkOrder.overdue), String) != "[]")
        with Session(self.engine) as s:
            return int(s.exec(select(func.count()).select_from(stmt.subquery())).one())

    @staticmethod
    def _queue_query(name: str) -> tuple[Any, list[Any]]:
        """The rows of a queue (before the overdue filter) and their order."""
        if name not in QUEUES:
            raise ValueError(f"未知队列 {name!r}，可用: {', '.join(QUEUES)}")
        stmt = select(WorkOrder)
        order_by: list[Any] = [col(WorkOrder.received_at), col(WorkOrder.id)]
        if name == "new":
            stmt = stmt.where(WorkOrder.state == State.RECEIVED.value)
        elif name == "manual":
            stmt = stmt.where(col(WorkOrder.state).in_([State.MANUAL.value, State.RETURNED.value]))
        elif name == "dispatched":
            stmt = stmt.where(WorkOrder.state == State.DISPATCHED.value)
        elif name == "revisit_due":
            stmt = stmt.where(WorkOrder.state == State.REPLIED.value)
            order_by = [col(WorkOrder.is_enterprise).desc(), *order_by]
        else:
            stmt = stmt.where(col(WorkOrder.state).in_(_OPEN_STATES))
            if name == "reopened":
                stmt = stmt.where(col(WorkOrder.reopen_count) > 0)
            elif name == "supervised":
                stmt = stmt.where(col(WorkOrder.supervised))
        return stmt, order_by

    def unit_orders(self, unit: str, *, open_only: bool = True) -> list[WorkOrder]:
        """A unit's own feed: orders it leads (主办) or assists (协办)."""
        stmt = select(WorkOrder)
        if open_only:
            stmt = stmt.where(col(WorkOrder.state).in_(_OPEN_STATES))
        with Session(self.engine) as s:
            rows = s.exec(stmt.order_by(col(WorkOrder.received_at))).all()
        return [r for r in rows if r.lead_unit == unit or unit in r.co_units]

    def sync_units(
        self, units: Iterable[tuple[str, str, str, str, Sequence[str]]]
    ) -> int:
        """Make the unit table match config: upsert (code, name, kind, duties, areas); units not
        listed are kept but marked inactive. Returns the number of active units."""
        wanted = {code: (name, kind, duties, list(areas))
                  for code, name, kind, duties, areas in units}
        for code, (_, kind, _, _) in wanted.items():
            if kind not in UNIT_KINDS:
                raise ValueError(f"单位 {code} 的类型 {kind!r} 无效，应为 {'/'.join(UNIT_KINDS)}")
        with Session(self.engine) as s:
            for row in s.exec(select(Unit)).all():
                if row.code not in wanted:
                    row.active = False
                    s.add(row)
            s.flush()
            for code, (name, kind, duties, areas) in wanted.items():
                row = s.get(Unit, code) or Unit(code=code, name=name, kind=kind)
                row.name, row.kind, row.duties, row.areas = name, kind, duties, areas
                row.active = True
                s.add(row)
            s.commit()
        return len(wanted)

    def units(self, *, active_only: bool = True) -> list[Unit]:
        with Session(self.engine) as s:
            stmt = select(Unit).order_by(col(Unit.code))
            if active_only:
                stmt = stmt.where(col(Unit.active))
            return list(s.exec(stmt).all())

    def add_training_label(
        self, *, order_id: str, text: str, unit: str, source: str, actor: str,
        at: datetime | None = None,
    ) -> int:
        """Record a person's unit label for an order (人工派单 or 退单 correction)."""
        if source not in TRAINING_SOURCES:
            raise ValueError(f"标注来源 {source!r} 无效，应为 {'/'.join(TRAINING_SOURCES)}")
        row = TrainingLabel(order_id=order_id, text=text, unit=unit, source=source, actor=actor,
                            at=local_naive(at) if at else now_local())
        with Session(self.engine) as s:
            s.add(row)
            s.commit()
            s.refresh(row)
            assert row.id is not None
            return row.id

    def training_labels(self) -> list[TrainingLabel]:
        with Session(self.engine) as s:
            return list(s.exec(select(TrainingLabel).order_by(col(TrainingLabel.id))).all())

    def revisits(self, order_id: str | None = None) -> list[RevisitRow]:
        with Session(self.engine) as s:
            stmt = select(RevisitRow).order_by(col(RevisitRow.id))
            if order_id is not None:
                stmt = stmt.where(RevisitRow.order_id == order_id)
            return list(s.exec(stmt).all())

    def counts(self) -> dict[str, dict[str, int]]:
        """Orders per state (all) and open orders per lead unit, for summaries."""
        with Session(self.engine) as s:
            by_state = s.exec(
                select(WorkOrder.state, func.count()).group_by(col(WorkOrder.state))
            ).all()
            by_unit = s.exec(
                select(WorkOrder.lead_unit, func.count())
                .where(col(WorkOrder.state).in_(_OPEN_STATES))
                .where(col(WorkOrder.lead_unit).is_not(None))
                .group_by(col(WorkOrder.lead_unit))
            ).all()
        return {
            "by_state": {str(state): int(n) for state, n in by_state},
            "by_unit": {str(unit): int(n) for unit, n in by_unit},
        }


def _revisit_rows(events: Iterable[LifecycleEvent]) -> list[RevisitRow]:
    return [
        RevisitRow(
            order_id=e.order_id, at=e.at, by=e.actor, contacted=str(e.data["contacted"]),
            solved=e.data.get("solved"), satisfaction=e.data.get("satisfaction"),
            event_id=e.event_id,
        )
        for e in events
        if e.kind == REVISIT_RECORDED
    ]


def _jsonable(extra: dict[str, Any]) -> dict[str, Any]:
    """``extra`` as plain JSON (dates become ISO strings)."""
    loaded: dict[str, Any] = json.loads(json.dumps(extra, ensure_ascii=False, default=str))
    return loaded
