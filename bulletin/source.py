"""Reading a period's orders and their lifecycle facts from the store (分析数据源)."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from typing import Any

from sqlmodel import Session, col, select

from models.lifecycle import DEADLINE_PASSED, ORDER_CLOSED, ORDER_REPLIED
from models.store import Store
from models.tables import EventRow, RevisitRow, WorkOrder

#: Lead-unit label for orders no unit holds (未派单 / 待人工派单).
NO_UNIT = "（未派单）"
NO_AREA = "（未注明）"
_CATEGORY_KEYS = ("行业分类1级", "行业分类2级")


@dataclass(frozen=True)
class OrderView:
    """What the analyses need of one order."""

    order_id: str
    received_at: datetime
    title: str
    text: str
    unit: str  # 主办 (current lead unit) or NO_UNIT
    state: str
    area: str  # first area token (区/街镇) or NO_AREA
    category: str  # 问题分类: source categories, else 诉求类型
    appeal_type: str | None = None
    is_enterprise: bool = False
    enterprise_name: str | None = None
    credit_code: str | None = None
    caller: str | None = None
    reopen_count: int = 0
    supervised: bool = False
    repeat_of: str | None = None  # earlier order the source says this one repeats

    @property
    def full_text(self) -> str:
        return f"{self.title}\n{self.text}" if self.title else self.text


@dataclass
class OrderFacts:
    """Lifecycle facts of one order from its accepted events and revisits."""

    replied: bool = False
    reply_time_known: bool = True
    closed: bool = False
    overdue: bool = False  # a 签收 or 办结 deadline passed (超期)
    revisits: list[tuple[str, str | None, str | None]] = field(default_factory=list)


def category_of(extra: dict[str, Any], appeal_type: str | None) -> str:
    """The order's issue category (问题分类): 行业分类1级·2级 when the source has them."""
    parts = [str(extra.get(k, "")).strip() for k in _CATEGORY_KEYS]
    parts = [p for p in parts if p]
    if parts:
        if len(parts) == 2 and parts[1] in ("其他", parts[0]):
            parts = parts[:1]
        return "·".join(parts)
    return f"诉求类型·{appeal_type}" if appeal_type else "未分类"


def _view(row: WorkOrder) -> OrderView:
    extra = row.extra or {}
    area = (row.area or "").split()
    return OrderView(
        order_id=row.id, received_at=row.received_at, title=row.title, text=row.text,
        unit=row.lead_unit or NO_UNIT, state=row.state, area=area[0] if area else NO_AREA,
        category=category_of(extra, row.appeal_type), appeal_type=row.appeal_type,
        is_enterprise=row.is_enterprise, enterprise_name=row.enterprise_name,
        credit_code=row.credit_code, caller=row.caller, reopen_count=row.reopen_count,
        supervised=row.supervised, repeat_of=extra.get("repeat_of") or None,
    )


def day_bounds(start: date, end: date) -> tuple[datetime, datetime]:
    """[start 00:00, end+1 00:00): the inclusive day range as half-open times."""
    return datetime.combine(start, time()), datetime.combine(end + timedelta(days=1), time())


def load_orders(store: Store, start: datetime, end: datetime) -> list[OrderView]:
    """Orders received in [start, end), oldest first."""
    stmt = select(WorkOrder).where(
        col(WorkOrder.received_at) >= start, col(WorkOrder.received_at) < end
    ).order_by(col(WorkOrder.received_at), col(WorkOrder.id))
    with Session(store.engine) as s:
        return [_view(r) for r in s.exec(stmt).all()]


def load_facts(store: Store, order_ids: Sequence[str], *, chunk: int = 900) -> dict[str, OrderFacts]:
    """Replies, closures, 超期 and revisits for ``order_ids``."""
    facts: dict[str, OrderFacts] = defaultdict(OrderFacts)
    kinds = [ORDER_REPLIED, ORDER_CLOSED, DEADLINE_PASSED]
    with Session(store.engine) as s:
        for i in range(0, len(order_ids), chunk):
            ids = list(order_ids[i : i + chunk])
            events = s.exec(
                select(EventRow.order_id, EventRow.kind, EventRow.data)
                .where(col(EventRow.order_id).in_(ids), col(EventRow.accepted))
                .where(col(EventRow.kind).in_(kinds))
            ).all()
            for oid, kind, data in events:
                _note(facts[oid], kind, data or {})
            revisits = s.exec(
                select(RevisitRow).where(col(RevisitRow.order_id).in_(ids))
                .order_by(col(RevisitRow.at), col(RevisitRow.id))
            ).all()
            for r in revisits:
                facts[r.order_id].revisits.append((r.contacted, r.solved, r.satisfaction))
    return dict(facts)


def _note(f: OrderFacts, kind: str, data: Mapping[str, Any]) -> None:
    if kind == ORDER_REPLIED:
        f.replied = True
        if data.get("time_known") is False:
            f.reply_time_known = False
    elif kind == ORDER_CLOSED:
        f.closed = True
    elif kind == DEADLINE_PASSED and data.get("deadline") in ("签收", "办结"):
        f.overdue = True
