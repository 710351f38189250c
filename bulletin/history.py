"""Writing imported history (历史工单导入) into the store in batches.

Each imported order's timeline is replayed through the same `OrderLifecycle` state machine that
`Store.apply` uses, in memory, and written with its events in one transaction per batch: fast
(thousands of orders a second on SQLite) and idempotent (event ids are deterministic; an order
already stored only gets the events it lacks, through `Store.apply`).
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import insert
from sqlmodel import Session, col, select

from models.lifecycle import (
    REVISIT_RECORDED,
    LifecycleEvent,
    OrderLifecycle,
    TransitionRejected,
)
from models.records import OrderIn
from models.store import Store, _jsonable, _snapshot, content_hash, received_event
from models.tables import EventRow, RevisitRow, Unit, WorkOrder, now_local

#: Duties text of units registered by an import (历史单位).
HISTORICAL_DUTIES = "导入历史工单时登记的处置单位（不在本地单位目录中）"


@dataclass(frozen=True)
class ImportedOrder:
    """One historical order and its timeline as far as the source columns tell it."""

    order: OrderIn
    events: tuple[LifecycleEvent, ...]
    unit: str | None = None  # 处置单位 as recorded


@dataclass
class ImportCounts:
    """What an import did (导入结果)."""

    new_orders: int = 0
    unchanged_orders: int = 0
    events: int = 0  # accepted events recorded, derived ones included
    rejected_events: int = 0  # events the lifecycle refused, recorded with the reason
    new_units: list[str] = field(default_factory=list)
    conflicts: list[str] = field(default_factory=list)  # same id, other content: not touched
    skipped_rows: list[str] = field(default_factory=list)  # "row N: reason"

    def to_json(self) -> dict[str, object]:
        return dataclasses.asdict(self)


def historical_unit_code(name: str) -> str:
    """A stable code for a unit known only by name (历史单位编码)."""
    return "hist-" + hashlib.sha1(name.encode("utf-8")).hexdigest()[:12]


def register_historical_units(store: Store, names: Iterable[str]) -> list[str]:
    """Add units named in the history but missing from the unit table, as kind `historical`.
    Units already known (any kind, active or not) are left as they are. Returns those added."""
    wanted = sorted({n.strip() for n in names if n and n.strip()})
    with Session(store.engine) as s:
        known = set(s.exec(select(Unit.name)).all())
        added = [n for n in wanted if n not in known]
        s.add_all(
            Unit(code=historical_unit_code(n), name=n, kind="historical", duties=HISTORICAL_DUTIES)
            for n in added
        )
        s.commit()
    return added


def imported_received_event(order: OrderIn, actor: str) -> LifecycleEvent:
    """The OrderReceived event with the store's fixed id, recorded as coming from the import."""
    event = received_event(order)
    return dataclasses.replace(event, actor=actor, data={**event.data, "source": actor})


def write_history(
    store: Store, items: Sequence[ImportedOrder], *, actor: str, batch: int = 500
) -> ImportCounts:
    """Store ``items``: new orders in bulk with their replayed timeline; orders already stored
    with the same content get only the events they lack; other content is a conflict."""
    counts = ImportCounts()
    for start in range(0, len(items), batch):
        later = _write_batch(store, items[start : start + batch], actor, counts)
        _apply_missing(store, later, counts)
    return counts


@dataclass
class _Rows:
    """Rows of one batch, inserted with one executemany per table (fast on both databases)."""

    orders: list[dict[str, Any]] = field(default_factory=list)
    events: list[dict[str, Any]] = field(default_factory=list)
    revisits: list[dict[str, Any]] = field(default_factory=list)

    def insert(self, s: Session) -> None:
        for table, rows in ((WorkOrder, self.orders), (EventRow, self.events),
                            (RevisitRow, self.revisits)):
            if rows:
                s.execute(insert(table.__table__), rows)  # type: ignore[attr-defined,union-attr]


def _write_batch(
    store: Store, chunk: Sequence[ImportedOrder], actor: str, counts: ImportCounts
) -> list[ImportedOrder]:
    ids = [item.order.order_id for item in chunk]
    later: list[ImportedOrder] = []
    rows = _Rows()
    with Session(store.engine) as s:
        stored = {
            oid: digest for oid, digest in s.exec(
                select(WorkOrder.id, WorkOrder.content_hash).where(col(WorkOrder.id).in_(ids))
            ).all()
        }
        for item in chunk:
            oid, digest = item.order.order_id, content_hash(item.order)
            if oid in stored:
                if stored[oid] != digest:
                    counts.conflicts.append(oid)
                else:
                    later.append(item)
                continue
            stored[oid] = digest
            _add_new(rows, store, item, actor, digest, counts)
        rows.insert(s)
        s.commit()
    return later


def _add_new(
    rows: _Rows, store: Store, item: ImportedOrder, actor: str, digest: str, counts: ImportCounts
) -> None:
    order = item.order
    now = now_local()
    lc = OrderLifecycle(order_id=order.order_id)
    for event in (imported_received_event(order, actor), *item.events):
        try:
            applied = lc.apply(event, calendar=store.calendar, policy=store.policy)
        except TransitionRejected as exc:
            rows.events.append(_event_dict(event, now, exc))
            counts.rejected_events += 1
            continue
        rows.events.extend(_event_dict(e, now) for e in applied)
        rows.revisits.extend(_revisit_dict(e) for e in applied if e.kind == REVISIT_RECORDED)
        counts.events += len(applied)
    rows.orders.append({
        "id": order.order_id, "channel": order.channel, "received_at": order.received_at,
        "title": order.title, "text": order.text, "caller": order.caller,
        "enterprise_name": order.enterprise_name, "credit_code": order.credit_code,
        "address": order.address, "area": order.area, "legacy": order.legacy,
        "extra": _jsonable(order.extra), "content_hash": digest, "model_version": None,
        "confidence": None, "created_at": now, **_snapshot(lc), "updated_at": now,
    })
    counts.new_orders += 1


def _event_dict(
    e: LifecycleEvent, now: datetime, rejected: TransitionRejected | None = None
) -> dict[str, Any]:
    return {
        "event_id": e.event_id, "order_id": e.order_id, "kind": e.kind, "at": e.at,
        "actor": e.actor, "data": dict(e.data), "accepted": rejected is None,
        "rejection_code": rejected.code if rejected else None,
        "rejection_reason": rejected.reason if rejected else None, "recorded_at": now,
    }


def _revisit_dict(e: LifecycleEvent) -> dict[str, Any]:
    return {
        "order_id": e.order_id, "at": e.at, "by": e.actor, "contacted": str(e.data["contacted"]),
        "solved": e.data.get("solved"), "satisfaction": e.data.get("satisfaction"),
        "event_id": e.event_id,
    }


def _apply_missing(store: Store, items: Sequence[ImportedOrder], counts: ImportCounts) -> None:
    """Orders already stored: apply, through `Store.apply`, only the events not yet recorded."""
    ids = [e.event_id for item in items for e in item.events]
    with Session(store.engine) as s:
        seen = set(s.exec(select(EventRow.event_id).where(col(EventRow.event_id).in_(ids))).all())
    for item in items:
        missing = [e for e in item.events if e.event_id not in seen]
        counts.unchanged_orders += int(not missing)
        for event in missing:
            result = store.apply(event)
            counts.events += len(result.applied)
            counts.rejected_events += int(result.rejected is not None)
