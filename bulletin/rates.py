"""Per-unit performance rates (单位办理指标) for the 热点快报.

- 办结率: orders closed (已办结) / orders received in the period and led by the unit.
- 按时办结率: closed orders with no 签收/办结 deadline passed (超期) / closed orders whose reply
  time is known (imported orders without a reply time are left out of this rate).
- 满意率: last revisit 满意 or 基本满意 / orders with a satisfaction answer.
- 重办率: orders reopened (重办) at least once / orders.
- 全量回访率: 涉企 orders revisited at least once / 涉企 orders that got a reply (反馈).
A rate with an empty denominator is None (shown as "—"), never a made-up number.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from bulletin.source import OrderFacts, OrderView

SATISFIED = frozenset({"满意", "基本满意"})


@dataclass
class UnitRates:
    unit: str
    orders: int = 0
    closed: int = 0
    timed_closed: int = 0  # closed with a known reply time
    closed_on_time: int = 0
    rated: int = 0  # orders with a satisfaction answer
    satisfied: int = 0
    reopened: int = 0
    enterprise_replied: int = 0
    enterprise_revisited: int = 0

    @staticmethod
    def _rate(num: int, den: int) -> float | None:
        return num / den if den else None

    @property
    def close_rate(self) -> float | None:  # 办结率
        return self._rate(self.closed, self.orders)

    @property
    def on_time_rate(self) -> float | None:  # 按时办结率
        return self._rate(self.closed_on_time, self.timed_closed)

    @property
    def satisfaction_rate(self) -> float | None:  # 满意率
        return self._rate(self.satisfied, self.rated)

    @property
    def reopen_rate(self) -> float | None:  # 重办率
        return self._rate(self.reopened, self.orders)

    @property
    def revisit_rate(self) -> float | None:  # 全量回访率
        return self._rate(self.enterprise_revisited, self.enterprise_replied)

    def to_json(self) -> dict[str, object]:
        return {
            "unit": self.unit, "orders": self.orders, "closed": self.closed,
            "办结率": self.close_rate, "按时办结率": self.on_time_rate,
            "满意率": self.satisfaction_rate, "重办率": self.reopen_rate,
            "全量回访率": self.revisit_rate,
        }


def _add(r: UnitRates, o: OrderView, f: OrderFacts) -> None:
    r.orders += 1
    if f.closed:
        r.closed += 1
        if f.reply_time_known:
            r.timed_closed += 1
            r.closed_on_time += int(not f.overdue)
    answers = [sat for _, _, sat in f.revisits if sat]
    if answers:
        r.rated += 1
        r.satisfied += int(answers[-1] in SATISFIED)
    r.reopened += int(o.reopen_count > 0)
    if o.is_enterprise and f.replied:
        r.enterprise_replied += 1
        r.enterprise_revisited += int(bool(f.revisits))


def unit_rates(orders: Sequence[OrderView], facts: Mapping[str, OrderFacts]) -> list[UnitRates]:
    """Rates per lead unit, most orders first."""
    by_unit: dict[str, UnitRates] = defaultdict(lambda: UnitRates(unit=""))
    for o in orders:
        r = by_unit[o.unit]
        r.unit = o.unit
        _add(r, o, facts.get(o.order_id, OrderFacts()))
    return sorted(by_unit.values(), key=lambda r: (-r.orders, r.unit))


def overall_rates(orders: Sequence[OrderView], facts: Mapping[str, OrderFacts]) -> UnitRates:
    """The same rates over all orders (全区合计)."""
    total = UnitRates(unit="合计")
    for o in orders:
        _add(total, o, facts.get(o.order_id, OrderFacts()))
    return total
