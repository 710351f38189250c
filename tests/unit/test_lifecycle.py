"""The lifecycle state machine (工单闭环): every transition, every named rejection, idempotency,
deadlines → 超期 → 督办, reopen → 督办, 退单 rules."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from models.lifecycle import (
    ActorNotAllowed,
    AlreadyClosed,
    DispatcherDecisionRequired,
    InvalidEventData,
    InvalidTransition,
    LifecycleEvent,
    NotAssignedUnit,
    OrderLifecycle,
    ReturnedUnitError,
    RevisitRequired,
    State,
    TransitionRejected,
    deadline_event,
    due_deadlines,
)
from models.policy import load_policy

POLICY = load_policy()
CAL = POLICY.calendar()
T0 = datetime(2025, 3, 3, 9, 0)  # a Monday
_ids = itertools.count(1)

TOWN = "朱泾镇"
BUREAU = "区市场监管局"


def ev(kind: str, actor: str = "system", at: datetime = T0, **data: Any) -> LifecycleEvent:
    return LifecycleEvent(f"e{next(_ids)}", "GD1", kind, at, actor, data)


def apply(lc: OrderLifecycle, event: LifecycleEvent) -> list[LifecycleEvent]:
    return lc.apply(event, calendar=CAL, policy=POLICY)


def received(*, enterprise: bool = True, appeal_type: str | None = "投诉") -> OrderLifecycle:
    lc = OrderLifecycle(order_id="GD1")
    apply(lc, ev("OrderReceived", is_enterprise=enterprise, appeal_type=appeal_type))
    return lc


def dispatched(unit: str = TOWN, **kw: Any) -> OrderLifecycle:
    lc = received(**kw)
    apply(lc, ev("OrderDispatched", unit=unit, co_units=[BUREAU], manual=False,
                 by_dispatcher=False))
    return lc


def replied(unit: str = TOWN, **kw: Any) -> OrderLifecycle:
    lc = dispatched(unit, **kw)
    apply(lc, ev("OrderAccepted", unit, at=T0 + timedelta(hours=1)))
    apply(lc, ev("OrderReplied", unit, at=T0 + timedelta(days=2), reply="已上门核实并处理"))
    return lc


def revisit(lc: OrderLifecycle, contacted: str, solved: str | None, satisfaction: str | None,
            at: datetime = T0 + timedelta(days=3)) -> list[LifecycleEvent]:
    data: dict[str, Any] = {"contacted": contacted}
    if solved is not None:
        data["solved"] = solved
    if satisfaction is not None:
        data["satisfaction"] = satisfaction
    return apply(lc, ev("RevisitRecorded", "revisit:王", at=at, **data))


# ---- the happy path ---------------------------------------------------------------------------
def test_received_then_dispatched_sets_unit_and_accept_deadline() -> None:
    lc = dispatched()
    assert lc.state is State.DISPATCHED
    assert (lc.unit, lc.co_units) == (TOWN, [BUREAU])
    assert lc.deadlines == {"签收": datetime(2025, 3, 4, 9, 0)}
    assert lc.is_enterprise and lc.version == 2


def test_accept_sets_handle_deadline_by_type_and_urgency() -> None:
    lc = dispatched()
    apply(lc, ev("OrderAccepted", TOWN, at=T0))
    assert lc.state is State.HANDLING
    assert lc.deadlines == {"办结": datetime(2025, 3, 17, 9, 0)}  # 投诉: 10 working days

    urgent = OrderLifecycle(order_id="GD1")
    apply(urgent, ev("OrderReceived", appeal_type="咨询", urgent=True))
    apply(urgent, ev("OrderDispatched", unit=TOWN))
    apply(urgent, ev("OrderAccepted", TOWN, at=T0))
    assert urgent.deadlines == {"办结": datetime(2025, 3, 4, 9, 0)}  # 咨询 urgent: 1 day


def test_full_loop_closes_on_satisfied_revisit() -> None:
    lc = replied()
    assert lc.state is State.REPLIED and "回访" in lc.deadlines
    recorded = revisit(lc, "已联系", "已解决", "基本满意")
    assert [e.kind for e in recorded] == ["RevisitRecorded"]
    assert lc.state is State.CLOSED and lc.deadlines == {}


def test_non_enterprise_order_closes_without_revisit() -> None:
    lc = replied(enterprise=False)
    apply(lc, ev("OrderClosed", "dispatcher:李"))
    assert lc.state is State.CLOSED


def test_dispatcher_sends_to_manual_queue_then_dispatches() -> None:
    lc = received()
    apply(lc, ev("SentToManualQueue", reason="置信度低", suggestions=[BUREAU, TOWN]))
    assert lc.state is State.MANUAL
    apply(lc, ev("OrderDispatched", "dispatcher:李", unit=BUREAU, manual=True, by_dispatcher=True))
    assert (lc.state, lc.unit) == (State.DISPATCHED, BUREAU)


def test_appeal_type_from_dispatch_drives_deadlines() -> None:
    lc = received(appeal_type=None)
    apply(lc, ev("OrderDispatched", unit=TOWN, appeal_type="举报"))
    apply(lc, ev("OrderAccepted", TOWN, at=T0))
    assert lc.appeal_type == "举报"
    assert lc.deadlines["办结"] == CAL.add_working_days(T0, 15)


# ---- idempotency ------------------------------------------------------------------------------
def test_same_event_id_twice_changes_nothing() -> None:
    lc = dispatched()
    accept = ev("OrderAccepted", TOWN)
    assert len(apply(lc, accept)) == 1
    before = (lc.state, lc.version, dict(lc.deadlines))
    assert apply(lc, accept) == []
    assert (lc.state, lc.version, dict(lc.deadlines)) == before


def test_derived_events_have_stable_ids_and_replay_rebuilds_the_same_state() -> None:
    steps: list[tuple[str, str, dict[str, Any]]] = [
        ("OrderReceived", "system", {"is_enterprise": True}),
        ("OrderDispatched", "system", {"unit": TOWN}),
        ("OrderAccepted", TOWN, {}),
        ("OrderReplied", TOWN, {"reply": "已处理"}),
        ("RevisitRecorded", "revisit:王", {"contacted": "未联系"}),
    ]
    events = [
        LifecycleEvent(f"r{i}", "GD1", k, T0 + timedelta(hours=i), a, d)
        for i, (k, a, d) in enumerate(steps)
    ]
    lc = OrderLifecycle.replay("GD1", events, calendar=CAL, policy=POLICY)
    assert lc.state is State.DISPATCHED and lc.reopen_count == 1
    assert "r4:重办" in lc.applied_event_ids
    again = OrderLifecycle.replay("GD1", events + events, calendar=CAL, policy=POLICY)
    assert again == lc


def test_a_rejected_event_leaves_the_aggregate_untouched() -> None:
    lc = dispatched()
    before = (lc.state, lc.version, set(lc.applied_event_ids))
    with pytest.raises(InvalidTransition):
        apply(lc, ev("OrderReplied", TOWN, reply="x"))
    assert (lc.state, lc.version, lc.applied_event_ids) == before


# ---- rejections -------------------------------------------------------------------------------
def test_revisit_before_reply_is_an_invalid_transition() -> None:
    lc = dispatched()
    with pytest.raises(InvalidTransition) as info:
        revisit(lc, "已联系", "已解决", "满意")
    assert info.value.code == "invalid_transition"
    assert "已反馈" in info.value.reason and "已派单" in info.value.reason


def test_reply_before_accept_is_refused_with_a_clear_reason() -> None:
    with pytest.raises(InvalidTransition, match="先签收"):
        apply(dispatched(), ev("OrderReplied", TOWN, reply="已处理"))


def test_events_before_receipt_and_double_receipt_are_refused() -> None:
    with pytest.raises(InvalidTransition):
        apply(OrderLifecycle(order_id="GD1"), ev("OrderDispatched", unit=TOWN))
    with pytest.raises(InvalidTransition):
        apply(received(), ev("OrderReceived"))


def test_other_unit_cannot_accept_return_or_reply() -> None:
    lc = dispatched()
    attempts: list[tuple[str, dict[str, Any]]] = [
        ("OrderAccepted", {}), ("OrderReturned", {"reason": "非本单位职责"}),
    ]
    for kind, data in attempts:
        with pytest.raises(NotAssignedUnit) as info:
            apply(lc, LifecycleEvent(f"x-{kind}", "GD1", kind, T0, BUREAU, data))
        assert info.value.code == "not_assigned_unit"
    apply(lc, ev("OrderAccepted", TOWN))
    with pytest.raises(NotAssignedUnit):
        apply(lc, ev("OrderReplied", BUREAU, reply="x"))


def test_dispatcher_may_act_on_behalf_of_the_unit() -> None:
    lc = dispatched()
    apply(lc, ev("OrderAccepted", "dispatcher:李"))
    assert lc.state is State.HANDLING


def test_invalid_revisit_values_are_refused() -> None:
    lc = replied()
    with pytest.raises(InvalidEventData) as info:
        revisit(lc, "已联系", "已解决", "非常满意")
    assert info.value.code == "invalid_event_data" and "satisfaction" in info.value.reason
    with pytest.raises(InvalidEventData):
        revisit(lc, "已联系", None, "满意")


def test_missing_fields_are_invalid_event_data() -> None:
    with pytest.raises(InvalidEventData, match="unit"):
        apply(received(), ev("OrderDispatched", co_units=[]))
    with pytest.raises(InvalidEventData, match="reason"):
        apply(dispatched(), ev("OrderReturned", TOWN))
    with pytest.raises(InvalidEventData, match="reply"):
        lc = dispatched()
        apply(lc, ev("OrderAccepted", TOWN))
        apply(lc, ev("OrderReplied", TOWN, reply="  "))
    with pytest.raises(InvalidEventData, match="未知事件类型"):
        apply(received(), ev("OrderTeleported"))


def test_unit_cannot_record_its_own_revisit() -> None:
    lc = replied()
    with pytest.raises(ActorNotAllowed):
        apply(lc, ev("RevisitRecorded", TOWN, contacted="已联系", solved="已解决",
                     satisfaction="满意"))


def test_automatic_dispatch_cannot_claim_to_be_by_dispatcher() -> None:
    with pytest.raises(ActorNotAllowed):
        apply(received(), ev("OrderDispatched", "system", unit=TOWN, by_dispatcher=True))


def test_enterprise_order_cannot_close_without_revisit() -> None:
    lc = replied(enterprise=True)
    with pytest.raises(RevisitRequired) as info:
        apply(lc, ev("OrderClosed", "dispatcher:李"))
    assert info.value.code == "revisit_required" and "回访" in info.value.reason
    assert lc.state is State.REPLIED


def test_anything_on_a_closed_order_is_already_closed() -> None:
    lc = replied()
    revisit(lc, "已联系", "已解决", "满意")
    for event in [ev("OrderAccepted", TOWN), ev("OrderSupervised", "dispatcher:李", reason="x"),
                  ev("RevisitRecorded", "revisit:王", contacted="已联系")]:
        with pytest.raises(AlreadyClosed) as info:
            apply(lc, event)
        assert info.value.code == "already_closed"


def test_reopened_cannot_be_submitted_directly() -> None:
    with pytest.raises(InvalidTransition):
        apply(replied(), ev("OrderReopened", "dispatcher:李"))


def test_all_rejections_share_the_base_class() -> None:
    for cls in (InvalidTransition, NotAssignedUnit, ReturnedUnitError, DispatcherDecisionRequired,
                RevisitRequired, InvalidEventData, AlreadyClosed, ActorNotAllowed):
        assert issubclass(cls, TransitionRejected)
    assert len({c.code for c in TransitionRejected.__subclasses__()}) == len(
        TransitionRejected.__subclasses__())


# ---- 退单 / 改派 ------------------------------------------------------------------------------
def test_return_then_redispatch_never_back_to_the_returning_unit() -> None:
    lc = dispatched(TOWN)
    apply(lc, ev("OrderReturned", TOWN, reason="无力解决", beyond_power=True,
                 suggested_unit=BUREAU))
    assert (lc.state, lc.unit, lc.return_count, lc.returned_units) == (
        State.RETURNED, None, 1, [TOWN])
    assert lc.deadlines == {}
    with pytest.raises(ReturnedUnitError) as info:
        apply(lc, ev("OrderDispatched", unit=TOWN))
    assert info.value.code == "returned_unit"
    # the returning 街镇 may still assist (协办) a line-first dispatch
    apply(lc, ev("OrderDispatched", unit=BUREAU, co_units=[TOWN]))
    assert (lc.state, lc.unit, lc.co_units) == (State.DISPATCHED, BUREAU, [TOWN])


def test_second_return_goes_to_the_dispatcher() -> None:
    lc = dispatched(TOWN)
    apply(lc, ev("OrderReturned", TOWN, reason="非本辖区"))
    apply(lc, ev("OrderDispatched", unit=BUREAU))
    apply(lc, ev("OrderAccepted", BUREAU))
    recorded = apply(lc, ev("OrderReturned", BUREAU, reason="不属于本部门职责"))
    assert [e.kind for e in recorded] == ["OrderReturned", "SentToManualQueue"]
    assert lc.state is State.MANUAL and lc.return_count == 2
    with pytest.raises(DispatcherDecisionRequired) as info:
        apply(lc, ev("OrderDispatched", unit="区税务局"))
    assert info.value.code == "dispatcher_decision_required"
    with pytest.raises(ReturnedUnitError):
        apply(lc, ev("OrderDispatched", "dispatcher:李", unit=BUREAU, by_dispatcher=True))
    apply(lc, ev("OrderDispatched", "dispatcher:李", unit="区税务局", manual=True,
                 by_dispatcher=True))
    assert (lc.state, lc.unit) == (State.DISPATCHED, "区税务局")


# ---- 回访 / 重办 / 督办 -----------------------------------------------------------------------
@pytest.mark.parametrize("answers", [
    ("未联系", None, None), ("已联系", "未解决", "满意"), ("已联系", "已解决", "不满意"),
])
def test_unsatisfactory_revisit_reopens_to_the_same_unit(answers: tuple[Any, Any, Any]) -> None:
    lc = replied(TOWN)
    recorded = revisit(lc, *answers)
    assert [e.kind for e in recorded] == ["RevisitRecorded", "OrderReopened"]
    assert (lc.state, lc.unit, lc.reopen_count, lc.supervised) == (
        State.DISPATCHED, TOWN, 1, False)
    assert recorded[1].data["unit"] == TOWN and "签收" in lc.deadlines


def test_second_reopen_sets_supervision() -> None:
    lc = replied(TOWN)
    revisit(lc, "已联系", "未解决", "不满意")
    apply(lc, ev("OrderAccepted", TOWN, at=T0 + timedelta(days=4)))
    apply(lc, ev("OrderReplied", TOWN, at=T0 + timedelta(days=5), reply="再次处理"))
    recorded = revisit(lc, "已联系", "已解决", "不满意", at=T0 + timedelta(days=6))
    assert [e.kind for e in recorded] == ["RevisitRecorded", "OrderReopened", "OrderSupervised"]
    assert lc.reopen_count == 2 and lc.supervised


def test_dispatcher_can_supervise_any_open_order_but_a_unit_cannot() -> None:
    lc = dispatched()
    with pytest.raises(ActorNotAllowed):
        apply(lc, ev("OrderSupervised", TOWN, reason="疑难"))
    apply(lc, ev("OrderSupervised", "dispatcher:李", reason="疑难事项"))
    assert lc.supervised and lc.state is State.DISPATCHED


# ---- deadlines / 超期 -------------------------------------------------------------------------
def test_passed_accept_deadline_raises_overdue_and_supervision_once() -> None:
    lc = dispatched()
    assert due_deadlines(lc, T0 + timedelta(hours=23)) == []
    now = datetime(2025, 3, 4, 9, 0)
    [(kind, due)] = due_deadlines(lc, now)
    assert (kind, due) == ("签收", datetime(2025, 3, 4, 9, 0))
    recorded = apply(lc, deadline_event("GD1", kind, due, now))
    assert [e.kind for e in recorded] == ["DeadlinePassed", "OrderSupervised"]
    assert lc.overdue == {"签收"} and lc.supervised
    assert due_deadlines(lc, now + timedelta(days=3)) == []
    assert apply(lc, deadline_event("GD1", kind, due, now)) == []  # same id: nothing
    with pytest.raises(InvalidTransition):
        apply(lc, LifecycleEvent("other", "GD1", "DeadlinePassed", now, "system",
                                 {"deadline": kind, "due": due.isoformat()}))


def test_second_overdue_kind_is_recorded_without_a_second_supervision() -> None:
    lc = dispatched()
    apply(lc, deadline_event("GD1", "签收", lc.deadlines["签收"], datetime(2025, 3, 5)))
    apply(lc, ev("OrderAccepted", TOWN, at=datetime(2025, 3, 5, 10)))
    late = datetime(2025, 4, 1)
    [(kind, due)] = due_deadlines(lc, late)
    assert kind == "办结"
    recorded = apply(lc, deadline_event("GD1", kind, due, late))
    assert [e.kind for e in recorded] == ["DeadlinePassed"]
    assert lc.overdue == {"签收", "办结"}


def test_deadline_over_the_weekend_is_not_overdue_on_saturday() -> None:
    lc = received()
    friday = datetime(2025, 3, 7, 16, 0)
    apply(lc, ev("OrderDispatched", at=friday, unit=TOWN))
    assert due_deadlines(lc, datetime(2025, 3, 9, 23, 0)) == []
    assert due_deadlines(lc, datetime(2025, 3, 10, 16, 0)) == [("签收", datetime(2025, 3, 10, 16))]


def test_deadline_event_for_a_met_or_future_deadline_is_refused() -> None:
    lc = dispatched()
    due = lc.deadlines["签收"]
    with pytest.raises(InvalidEventData, match="尚未到期"):
        apply(lc, deadline_event("GD1", "签收", due, due - timedelta(minutes=1)))
    apply(lc, ev("OrderAccepted", TOWN))
    with pytest.raises(InvalidTransition, match="不在计时中"):
        apply(lc, deadline_event("GD1", "签收", due, due + timedelta(days=1)))


# ---- the event record -------------------------------------------------------------------------
def test_event_json_round_trip_and_timezone_normalisation() -> None:
    aware = datetime(2025, 3, 3, 1, 0, tzinfo=UTC)
    e = LifecycleEvent("x1", "GD1", "OrderAccepted", aware, TOWN, {"note": "签收"})
    assert e.at == datetime(2025, 3, 3, 9, 0)
    assert LifecycleEvent.from_json(e.to_json()) == e
    with pytest.raises(InvalidEventData, match="event_id"):
        LifecycleEvent.from_json({"order_id": "GD1", "kind": "x", "at": "2025-01-01", "actor": "a"})
    with pytest.raises(InvalidEventData, match="时间"):
        LifecycleEvent.from_json({**e.to_json(), "at": "yesterday"})
