"""The repeat-complaint counting kept in the faust table (多次重复涉企投诉 on Kafka)."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta
from types import SimpleNamespace

import faust.streams as faust_streams

from models.records import OrderIn
from streams.app import MAX_SEEN_PER_ENTERPRISE, as_table_event, count_repeats, enterprise_key

T0 = datetime(2026, 11, 1, 9, 0)


def order(oid: str, days: float, **kw: object) -> OrderIn:
    return OrderIn(order_id=oid, channel="沪企管家", received_at=T0 + timedelta(days=days),
                   title="", text="企业反映", is_enterprise=True, **kw)  # type: ignore[arg-type]


def test_counts_within_the_window_and_is_idempotent() -> None:
    seen: dict[str, str] = {}
    counts = []
    for i, day in enumerate([0, 10, 20, 45]):
        seen, n = count_repeats(seen, order(f"o{i}", day), window_days=30)
        counts.append(n)
    assert counts == [1, 2, 3, 2]  # day 45 sees days 20 and 45 only
    again, n = count_repeats(seen, order("o3", 45), window_days=30)  # redelivery
    assert n == 2 and again == seen


def test_an_enterprise_entry_stays_bounded() -> None:
    seen: dict[str, str] = {}
    for i in range(200):
        seen, n = count_repeats(seen, order(f"o{i}", i / 100), window_days=30)
    assert len(seen) <= MAX_SEEN_PER_ENTERPRISE + 1
    assert n >= MAX_SEEN_PER_ENTERPRISE  # still far above any repeat threshold
    assert "o199" in seen


def test_orders_of_one_enterprise_share_a_key() -> None:
    a = order("a", 0, credit_code="91310116MA1J8K2X3N", enterprise_name="甲公司")
    b = order("b", 1, credit_code="91310116MA1J8K2X3N", enterprise_name="甲公司（新名）")
    c = order("c", 2, enterprise_name="乙公司")
    assert enterprise_key(a) == enterprise_key(b) != enterprise_key(c)
    assert enterprise_key(order("d", 0)) == "order:d"


class _Event:  # weakly referable, as faust's events are
    def __init__(self, partition: int) -> None:
        self.message = SimpleNamespace(partition=partition)


def test_the_table_event_is_set_for_the_handlers_task_only() -> None:
    """The table writes its changelog to the partition of faust's current event; the route
    handler sets it in its own task, never on the stream, whose `noack_take` buffer filler (a
    task of its own) reads the stream's current event and would buffer the wrong one."""
    event = _Event(3)

    async def filler() -> object:
        return faust_streams.current_event()

    async def main() -> tuple[object, object]:
        other = asyncio.ensure_future(filler())  # its context is copied now
        as_table_event(event)  # type: ignore[arg-type]
        return faust_streams.current_event(), await other

    mine, others = asyncio.run(main())
    assert mine is event and others is None
