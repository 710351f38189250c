"""The 每日值班小结 (daily duty summary): what needs a decision first, then the day's counts.

Items needing a decision (待决事项), each open order listed once under its most pressing reason:
待人工派单 (the manual queue), 退单待改派, 督办, 超期, 重办. Enterprise orders (涉企) are marked
【涉企】 and listed first within each group. Then, for the day: orders received, dispatched,
replied, closed, returned and reopened per unit.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta

from sqlmodel import Session, col, select

from bulletin.source import NO_UNIT
from hotline.masking import mask_pii
from models.lifecycle import (
    EVENT_NAMES,
    ORDER_CLOSED,
    ORDER_DISPATCHED,
    ORDER_RECEIVED,
    ORDER_REOPENED,
    ORDER_REPLIED,
    ORDER_RETURNED,
    State,
)
from models.store import Store
from models.tables import EventRow, WorkOrder

ENTERPRISE_MARK = "【涉企】"
#: Decision groups, most pressing first: (key, Chinese heading).
GROUPS: tuple[tuple[str, str], ...] = (
    ("manual", "待人工派单"), ("returned", "退单待改派"), ("supervised", "督办"),
    ("overdue", "超期"), ("reopened", "重办"),
)
_DAY_KINDS = (ORDER_RECEIVED, ORDER_DISPATCHED, ORDER_REPLIED, ORDER_CLOSED, ORDER_RETURNED,
              ORDER_REOPENED)


@dataclass(frozen=True)
class DecisionItem:
    group: str  # a key of GROUPS
    order_id: str
    enterprise: bool
    unit: str
    state: str
    received_at: str
    snippet: str  # masked
    detail: str

    def line(self) -> str:
        mark = ENTERPRISE_MARK if self.enterprise else ""
        return (f"{mark}{self.order_id}｜{self.unit}｜{self.state}｜{self.detail}｜{self.snippet}")


@dataclass
class DailySummary:
    day: date
    items: list[DecisionItem] = field(default_factory=list)
    per_unit: dict[str, dict[str, int]] = field(default_factory=dict)
    received: int = 0
    enterprise_received: int = 0

    def to_json(self) -> dict[str, object]:
        return {
            "date": self.day.isoformat(), "received": self.received,
            "enterprise_received": self.enterprise_received,
            "decisions": [i.__dict__ for i in self.items], "per_unit": self.per_unit,
        }


def _group(row: WorkOrder) -> tuple[str, str] | None:
    """The most pressing reason an open order needs a decision, with a detail line."""
    if row.state == State.MANUAL.value:
        return "manual", "低置信度或规则要求人工研判"
    if row.state == State.RETURNED.value:
        return "returned", f"已退单 {row.return_count} 次（{'、'.join(row.returned_units)}）"
    if row.supervised:
        return "supervised", f"督办中；重办 {row.reopen_count} 次；超期：{'、'.join(row.overdue) or '无'}"
    if row.overdue:
        return "overdue", f"{'、'.join(row.overdue)}时限已过"
    if row.reopen_count:
        return "reopened", f"第 {row.reopen_count} 次重办"
    return None


def _snippet(row: WorkOrder) -> str:
    text = (row.title or row.text).replace("\n", " ").strip()
    text = mask_pii(text)
    return text if len(text) <= 40 else text[:39] + "…"


def decision_items(store: Store, until: datetime) -> list[DecisionItem]:
    """Open orders received before ``until`` that need a decision, grouped, 涉企 first."""
    open_states = [s.value for s in State if s is not State.CLOSED]
    stmt = select(WorkOrder).where(
        col(WorkOrder.state).in_(open_states), col(WorkOrder.received_at) < until
    ).order_by(col(WorkOrder.received_at), col(WorkOrder.id))
    with Session(store.engine) as s:
        rows = list(s.exec(stmt).all())
    items = []
    for row in rows:
        found = _group(row)
        if found is None:
            continue
        group, detail = found
        items.append(DecisionItem(
            group=group, order_id=row.id, enterprise=row.is_enterprise,
            unit=row.lead_unit or NO_UNIT, state=row.state,
            received_at=row.received_at.isoformat(sep=" "), snippet=_snippet(row), detail=detail,
        ))
    rank = {key: i for i, (key, _) in enumerate(GROUPS)}
    return sorted(items, key=lambda i: (rank[i.group], not i.enterprise, i.received_at))


def day_counts(store: Store, day: date) -> tuple[dict[str, dict[str, int]], int, int]:
    """Per unit, the day's events by Chinese name; plus orders received (all, 涉企)."""
    start = datetime.combine(day, time())
    end = start + timedelta(days=1)
    with Session(store.engine) as s:
        events = s.exec(
            select(EventRow.order_id, EventRow.kind, EventRow.actor, EventRow.data)
            .where(col(EventRow.accepted), col(EventRow.kind).in_(_DAY_KINDS))
            .where(col(EventRow.at) >= start, col(EventRow.at) < end)
        ).all()
        ids = list({oid for oid, *_ in events})
        orders = {r.id: r for r in s.exec(select(WorkOrder).where(col(WorkOrder.id).in_(ids)))}
    per_unit: dict[str, Counter[str]] = defaultdict(Counter)
    received = enterprise = 0
    for oid, kind, actor, data in events:
        row = orders.get(oid)
        if kind == ORDER_RECEIVED:
            received += 1
            enterprise += int(bool(row and row.is_enterprise))
            continue
        unit = (data or {}).get("unit") or (actor if kind in (ORDER_REPLIED, ORDER_RETURNED)
                                            else (row.lead_unit if row else None))
        per_unit[unit or NO_UNIT][EVENT_NAMES[kind]] += 1
    table = {u: dict(c) for u, c in sorted(per_unit.items(), key=lambda x: -sum(x[1].values()))}
    return table, received, enterprise


def build_daily(store: Store, day: date) -> DailySummary:
    """The 每日值班小结 for ``day``: open decisions as of the end of the day, and its counts."""
    per_unit, received, enterprise = day_counts(store, day)
    until = datetime.combine(day + timedelta(days=1), time())
    return DailySummary(day=day, items=decision_items(store, until), per_unit=per_unit,
                        received=received, enterprise_received=enterprise)


def render_daily(d: DailySummary) -> str:
    """Chinese text for the duty dispatcher; every order text masked."""
    lines = [f"每日值班小结（{d.day}）",
             f"当日受理 {d.received} 件，其中{ENTERPRISE_MARK}{d.enterprise_received} 件。", "",
             f"一、待决事项（{len(d.items)} 件，优先处理）"]
    if not d.items:
        lines.append("  无。")
    for key, title in GROUPS:
        group = [i for i in d.items if i.group == key]
        if group:
            lines.append(f"  {title}（{len(group)} 件）")
            lines += [f"    · {i.line()}" for i in group]
    lines += ["", "二、当日各单位办理情况"]
    if not d.per_unit:
        lines.append("  当日无派单、反馈或办结记录。")
    names = [EVENT_NAMES[k] for k in _DAY_KINDS if k != ORDER_RECEIVED]
    for unit, counts in d.per_unit.items():
        lines.append(f"  {unit}：" + "，".join(f"{n} {counts.get(n, 0)}" for n in names))
    return "\n".join(lines)
