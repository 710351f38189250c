"""The 热点快报 (hot-spot bulletin) for a period: built from the store, rendered by `render`."""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, timedelta

from bulletin.hotspots import Cluster, near_duplicates, topic_clusters
from bulletin.rates import UnitRates, overall_rates, unit_rates
from bulletin.source import OrderView, day_bounds, load_facts, load_orders
from bulletin.surges import Surge, find_surges
from hotline.masking import mask_pii
from models.store import Store

TOP_N = 10


@dataclass(frozen=True)
class RepeatGroup:
    """Orders from the same enterprise, caller, or marked by the source as the same matter."""

    basis: str  # 同一企业 / 同一来电人 / 来源标注同一诉求
    key: str  # masked
    order_ids: tuple[str, ...]
    units: tuple[str, ...]
    snippet: str
    enterprise: bool

    def to_json(self) -> dict[str, object]:
        return {"basis": self.basis, "key": self.key, "order_ids": list(self.order_ids),
                "units": list(self.units), "snippet": self.snippet, "enterprise": self.enterprise}


@dataclass
class Bulletin:
    start: date
    end: date
    previous_start: date
    previous_end: date
    total: int
    previous_total: int
    enterprise_total: int
    daily: list[tuple[date, int]]
    previous_daily: list[tuple[date, int]]
    top_categories: list[tuple[str, int]]
    top_areas: list[tuple[str, int]]
    surges: list[Surge]
    near_duplicates: list[Cluster]
    topics: list[Cluster]
    repeats: list[RepeatGroup]
    rates: list[UnitRates]
    overall: UnitRates
    notes: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, object]:
        return {
            "from": self.start.isoformat(), "to": self.end.isoformat(),
            "previous": [self.previous_start.isoformat(), self.previous_end.isoformat()],
            "total": self.total, "previous_total": self.previous_total,
            "enterprise_total": self.enterprise_total,
            "daily": [[d.isoformat(), n] for d, n in self.daily],
            "top_categories": self.top_categories, "top_areas": self.top_areas,
            "surges": [s.to_json() for s in self.surges],
            "near_duplicates": [c.to_json() for c in self.near_duplicates],
            "topics": [c.to_json() for c in self.topics],
            "repeats": [r.to_json() for r in self.repeats],
            "rates": [r.to_json() for r in self.rates], "overall": self.overall.to_json(),
            "notes": self.notes,
        }


def _daily(orders: Sequence[OrderView], start: date, end: date) -> list[tuple[date, int]]:
    counts = Counter(o.received_at.date() for o in orders)
    days = (end - start).days + 1
    return [(start + timedelta(days=i), counts.get(start + timedelta(days=i), 0))
            for i in range(days)]


def repeat_groups(orders: Sequence[OrderView], *, min_orders: int = 2) -> list[RepeatGroup]:
    """Repeated complaints in the period: same enterprise (信用代码 or name), same caller, and
    orders the source notes as the same citizen's same matter (同一市民反映同一问题)."""
    groups: dict[tuple[str, str], list[OrderView]] = defaultdict(list)
    by_id = {o.order_id: o for o in orders}
    for o in orders:
        if o.credit_code or o.enterprise_name:
            groups[("同一企业", o.credit_code or o.enterprise_name or "")].append(o)
        elif o.caller:
            groups[("同一来电人", o.caller)].append(o)
        if o.repeat_of:
            marked = ("来源标注同一诉求", o.repeat_of)
            if not groups[marked] and o.repeat_of in by_id:
                groups[marked].append(by_id[o.repeat_of])
            groups[marked].append(o)
    found = []
    for (basis, key), members in groups.items():
        members = list({m.order_id: m for m in members}.values())
        needed = 1 if basis == "来源标注同一诉求" else min_orders
        if len(members) >= needed:
            found.append(RepeatGroup(
                basis=basis, key=mask_pii(key),
                order_ids=tuple(m.order_id for m in members),
                units=tuple(dict.fromkeys(m.unit for m in members)),
                snippet=mask_pii((members[0].title or members[0].text)[:60]),
                enterprise=any(m.is_enterprise for m in members),
            ))
    return sorted(found, key=lambda g: (not g.enterprise, -len(g.order_ids), g.key))


def build_bulletin(store: Store, start: date, end: date) -> Bulletin:
    """The 热点快报 for [start, end] (whole days), against the previous period of equal length."""
    if end < start:
        raise ValueError(f"结束日期 {end} 早于开始日期 {start}")
    length = (end - start).days + 1
    prev_end = start - timedelta(days=1)
    prev_start = prev_end - timedelta(days=length - 1)
    orders = load_orders(store, *day_bounds(start, end))
    previous = load_orders(store, *day_bounds(prev_start, prev_end))
    facts = load_facts(store, [o.order_id for o in orders])
    notes = []
    if not previous:
        notes.append(f"上期（{prev_start}至{prev_end}）无工单数据，本期不做环比激增检验。")
    return Bulletin(
        start=start, end=end, previous_start=prev_start, previous_end=prev_end,
        total=len(orders), previous_total=len(previous),
        enterprise_total=sum(o.is_enterprise for o in orders),
        daily=_daily(orders, start, end), previous_daily=_daily(previous, prev_start, prev_end),
        top_categories=Counter(o.category for o in orders).most_common(TOP_N),
        top_areas=Counter(o.area for o in orders).most_common(TOP_N),
        surges=find_surges(orders, previous), near_duplicates=near_duplicates(orders),
        topics=topic_clusters(orders), repeats=repeat_groups(orders),
        rates=unit_rates(orders, facts), overall=overall_rates(orders, facts), notes=notes,
    )
