"""Hostile event sequences against the lifecycle (工单闭环) and the store, stateful.

Random events — right and wrong kinds, actors, data, times; replays of old event ids — are fed to
`Store.apply`. Never an unexpected exception; every rejection is named with a reason and recorded;
a replayed event id changes nothing; and the invariants hold after every step: return_count ==
len(returned_units), 已办结 is terminal, never dispatched to a unit that returned it, 督办 after two
重办, and the stored snapshot equals the replay of the accepted event log.
"""

from __future__ import annotations

import itertools
from datetime import datetime, timedelta
from typing import Any

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from models.lifecycle import (
    EVENT_KINDS,
    InvalidEventData,
    LifecycleEvent,
    OrderLifecycle,
    State,
    TransitionRejected,
)
from models.records import OrderIn
from models.store import ApplyResult, Store

T0 = datetime(2026, 3, 2, 9, 0)  # a Monday
ORDER_IDS = ("GD-1", "GD-2", "GD-3")
UNITS = ("朱泾镇", "区市场监管局", "区人社局", "枫泾镇")
ACTORS = (*UNITS, "dispatcher:值班长", "revisit:回访组", "system", "", "'; DROP TABLE event_log; --")
REJECTION_CODES = {
    cls.code for cls in (TransitionRejected, *TransitionRejected.__subclasses__())
}

texts = st.one_of(st.sampled_from(["非本单位职责", "已处理", "", "  "]), st.text(max_size=20))
junk = st.one_of(st.none(), st.integers(), st.floats(allow_nan=True), texts, st.lists(texts, max_size=2))
event_data = st.fixed_dictionaries(
    {},
    optional={
        "unit": st.one_of(st.sampled_from(UNITS), junk),
        "co_units": st.one_of(st.lists(st.sampled_from(UNITS), max_size=2), junk),
        "by_dispatcher": st.one_of(st.booleans(), junk),
        "manual": st.one_of(st.booleans(), junk),
        "reason": st.one_of(st.just("非本单位职责"), junk),
        "beyond_power": st.one_of(st.booleans(), junk),
        "suggested_unit": st.one_of(st.sampled_from(UNITS), junk),
        "reply": st.one_of(st.just("已处理完毕"), junk),
        "contacted": st.one_of(st.sampled_from(["已联系", "未联系"]), junk),
        "solved": st.one_of(st.sampled_from(["已解决", "未解决"]), junk),
        "satisfaction": st.one_of(st.sampled_from(["满意", "基本满意", "不满意"]), junk),
        "appeal_type": st.one_of(st.sampled_from(["投诉", "咨询"]), junk),
        "deadline": st.one_of(st.sampled_from(["签收", "办结", "回访"]), junk),
        "due": st.one_of(st.just(T0.isoformat()), junk),
        "is_enterprise": st.one_of(st.booleans(), junk),
        "suggestions": st.one_of(st.lists(st.sampled_from(UNITS)), junk),
    },
)
times = st.one_of(
    st.integers(0, 24 * 60).map(lambda h: T0 + timedelta(hours=h)),
    st.sampled_from([datetime(1, 1, 1), datetime(9999, 12, 31, 23, 59), datetime(1999, 1, 1)]),
)


def order(order_id: str, enterprise: bool) -> OrderIn:
    return OrderIn(
        order_id=order_id, channel="12345热线", received_at=T0, title="企业反映",
        text="园区道路破损", is_enterprise=enterprise, appeal_type="投诉",
        enterprise_name="上海某某有限公司" if enterprise else None,
    )


def check_result(result: ApplyResult) -> None:
    """Exactly one of applied / duplicate / rejected; a rejection is named with a reason."""
    assert sum((bool(result.applied), result.duplicate, result.rejected is not None)) == 1
    if result.rejected is not None:
        assert result.rejected.code in REJECTION_CODES
        assert result.rejected.reason.strip()


class LifecycleMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.store = Store.from_url("sqlite://")
        self.serial = itertools.count()
        self.sent: list[LifecycleEvent] = []
        self.closed: dict[str, int] = {}  # order id -> version when first seen 已办结
        self.applied_before: dict[str, ApplyResult] = {}

    @initialize(enterprise=st.lists(st.booleans(), min_size=3, max_size=3))
    def receive_orders(self, enterprise: list[bool]) -> None:
        for order_id, flag in zip(ORDER_IDS, enterprise, strict=True):
            assert self.store.add_order(order(order_id, flag)) == "new"

    def _send(self, event: LifecycleEvent) -> ApplyResult:
        result = self.store.apply(event)
        check_result(result)
        if result.rejected is not None:
            [row] = [r for r in self.store.history(event.order_id) if r.event_id == event.event_id]
            assert not row.accepted and row.rejection_code == result.rejected.code
            assert row.rejection_reason == result.rejected.reason
        self.sent.append(event)
        return result

    @rule(
        order_id=st.sampled_from((*ORDER_IDS, "GD-unknown")),
        kind=st.one_of(st.sampled_from(EVENT_KINDS), texts),
        actor=st.sampled_from(ACTORS),
        at=times,
        data=event_data,
    )
    def random_event(
        self, order_id: str, kind: str, actor: str, at: datetime, data: dict[str, Any]
    ) -> None:
        self._send(LifecycleEvent(f"e{next(self.serial)}", order_id, kind, at, actor, data))

    @rule(order_id=st.sampled_from(ORDER_IDS), data=st.data())
    def plausible_step(self, order_id: str, data: st.DataObject) -> None:
        """A step that often fits the order's state, so the machine gets past 派单."""
        lc = self.store.lifecycle(order_id)
        holder = lc.unit or "朱泾镇"
        at = T0 + timedelta(hours=next(self.serial))
        fresh = [u for u in UNITS if u not in lc.returned_units] or ["区经委"]
        choices = [
            ("OrderDispatched", "dispatcher:值班长",
             {"unit": data.draw(st.sampled_from(fresh)), "by_dispatcher": True}),
            ("OrderDispatched", "system", {"unit": data.draw(st.sampled_from(UNITS))}),
            ("OrderAccepted", holder, {}),
            ("OrderReturned", holder, {"reason": "非本单位职责", "beyond_power": True}),
            ("OrderReplied", holder, {"reply": "已处理"}),
            ("RevisitRecorded", "revisit:回访组", {
                "contacted": data.draw(st.sampled_from(["已联系", "未联系"])),
                "solved": data.draw(st.sampled_from(["已解决", "未解决"])),
                "satisfaction": data.draw(st.sampled_from(["满意", "不满意"])),
            }),
            ("OrderClosed", "system", {}),
        ]
        kind, actor, payload = data.draw(st.sampled_from(choices))
        self._send(LifecycleEvent(f"p{next(self.serial)}", order_id, kind, at, actor, payload))

    @rule(index=st.integers(min_value=0), data=st.data())
    def replay_an_old_event(self, index: int, data: st.DataObject) -> None:
        """Applying an event id again changes nothing, even with other content."""
        if not self.sent:
            return
        old = self.sent[index % len(self.sent)]
        again = old if data.draw(st.booleans()) else LifecycleEvent(
            old.event_id, old.order_id, "OrderClosed", old.at, "system", {})
        before = self._snapshot(old.order_id)
        history = len(self.store.history(old.order_id))
        result = self.store.apply(again)
        assert result.duplicate and not result.applied and result.rejected is None
        assert self._snapshot(old.order_id) == before
        assert len(self.store.history(old.order_id)) == history

    @rule(days=st.integers(0, 30))
    def tick(self, days: int) -> None:
        for result in self.store.tick_deadlines(T0 + timedelta(days=days)):
            check_result(result)

    def _snapshot(self, order_id: str) -> Any:
        if self.store.get_order(order_id) is None:
            return None
        lc = self.store.lifecycle(order_id)
        return (lc.state, lc.unit, lc.version, lc.return_count, lc.reopen_count, lc.supervised)

    @invariant()
    def invariants_hold(self) -> None:
        for order_id in ORDER_IDS:
            lc = self.store.lifecycle(order_id)
            assert lc.return_count == len(lc.returned_units)
            assert lc.unit is None or lc.unit not in lc.returned_units
            if lc.state in (State.RETURNED, State.MANUAL, State.RECEIVED):
                assert lc.unit is None
            if lc.reopen_count >= 2:
                assert lc.supervised
            if lc.state == State.CLOSED:
                self.closed.setdefault(order_id, lc.version)
            if order_id in self.closed:
                assert lc.state == State.CLOSED and lc.version == self.closed[order_id]
            history = self.store.history(order_id)
            replayed = OrderLifecycle.replay(
                order_id,
                [LifecycleEvent(r.event_id, r.order_id, r.kind, r.at, r.actor, dict(r.data))
                 for r in history if r.accepted],
                calendar=self.store.calendar, policy=self.store.policy,
            )
            assert (replayed.state, replayed.unit, replayed.returned_units, replayed.reopen_count,
                    replayed.supervised, replayed.version) == (
                lc.state, lc.unit, lc.returned_units, lc.reopen_count, lc.supervised, lc.version)
        unknown = self.store.history("GD-unknown")
        assert all(not r.accepted and r.rejection_code for r in unknown)

    def teardown(self) -> None:
        self.store.close()


LifecycleMachine.TestCase.settings = settings(
    max_examples=12, stateful_step_count=25, deadline=None, derandomize=True,
    suppress_health_check=[HealthCheck.too_slow], report_multiple_bugs=False,
)
TestHostileLifecycle = LifecycleMachine.TestCase


class LongLifecycleMachine(LifecycleMachine):
    pass


LongLifecycleMachine.TestCase.settings = settings(
    max_examples=150, stateful_step_count=60, deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
TestHostileLifecycleLong = pytest.mark.slow(LongLifecycleMachine.TestCase)


@pytest.mark.parametrize(
    ("raw", "fragment"),
    [
        ({"event_id": "x", "order_id": "GD-1", "kind": "OrderAccepted", "actor": "朱泾镇"}, "at"),
        ({"event_id": "x\ud800", "order_id": "GD-1", "kind": "K", "at": "2026-03-02T09:00:00",
          "actor": "a"}, "无法编码"),
        ({"event_id": "x\x00", "order_id": "GD-1", "kind": "K", "at": "2026-03-02T09:00:00",
          "actor": "a"}, "空字符"),
        ({"event_id": "x" * 201, "order_id": "GD-1", "kind": "K", "at": "2026-03-02T09:00:00",
          "actor": "a"}, "超过"),
        ({"event_id": "x", "order_id": "GD-1", "kind": "K", "at": "2026-03-02T09:00:00",
          "actor": "a", "data": {"n": float("nan")}}, "非有限"),
        ({"event_id": "x", "order_id": "GD-1", "kind": "K", "at": "2026-03-02T09:00:00",
          "actor": "a", "data": [1]}, "对象"),
        ({"event_id": "x", "order_id": "GD-1", "kind": "K", "at": "明天", "actor": "a"}, "时间"),
    ],
)
def test_malformed_json_events_are_rejected_by_name(raw: dict[str, Any], fragment: str) -> None:
    with pytest.raises(InvalidEventData, match=fragment):
        LifecycleEvent.from_json(raw)


def test_an_event_time_out_of_range_is_rejected_not_raised() -> None:
    store = Store.from_url("sqlite://")
    store.add_order(order("GD-1", False))
    result = store.apply(LifecycleEvent("far", "GD-1", "OrderDispatched", datetime(9999, 12, 31),
                                        "system", {"unit": "朱泾镇"}))
    assert result.rejected is not None and "超出范围" in result.rejected.reason
