"""Router handlers: what reaches the units' feeds after 人工派单, 退单 and 重办."""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from hotline.bootstrap import App, bootstrap
from hotline.settings import Settings
from models.lifecycle import LifecycleEvent, State

T0 = datetime(2026, 11, 24, 9, 0)


@pytest.fixture
def app(tmp_path: Path) -> App:
    return bootstrap(Settings(database_url=f"sqlite:///{tmp_path / 'h.db'}"),
                     registry=CollectorRegistry())


def ev(order_id: str, kind: str, actor: str, minutes: int, **data: object) -> LifecycleEvent:
    return LifecycleEvent(event_id=f"{order_id}:{kind}:{minutes}", order_id=order_id, kind=kind,
                          at=T0 + timedelta(minutes=minutes), actor=actor, data=data)


def feeds(outbox: list) -> dict[str, str]:
    return {m.topic: m.value.get("role") for m in outbox if m.topic.startswith("dispatch.")}


def sent(outbox: list) -> list[tuple[str, str, str | None, list[str]]]:
    """What a feed consumer acts on: topic, key, lead unit, co-units."""
    return [(m.topic, m.key, m.value["decision"]["lead_unit"], m.value["decision"]["co_units"])
            for m in outbox]


def test_manual_dispatch_reaches_the_unit_feed_and_is_audited(app: App) -> None:
    router = app.router
    out = router.receive({"order_id": "M-1", "received_at": T0.isoformat(),
                          "text": "想咨询一下相关事情怎么办理"})
    oid = out.order_id
    if out.status != "manual":  # make sure it waits for the dispatcher
        router.apply_event(ev(oid, "OrderReturned", app.store.lifecycle(oid).unit, 1,
                              reason="非本单位职责", beyond_power=False))
        lc = app.store.lifecycle(oid)
        if lc.state != State.MANUAL:
            router.apply_event(ev(oid, "OrderReturned", lc.unit, 2, reason="非本单位职责",
                                  beyond_power=False))
    assert app.store.lifecycle(oid).state == State.MANUAL
    res = router.apply_event(ev(oid, "OrderDispatched", "dispatcher:王", 5, unit="区人社局",
                                co_units=[], manual=True, by_dispatcher=True))
    assert res.result.rejected is None
    assert feeds(res.outbox) == {"dispatch.hr": "主办"}
    assert app.store.decisions(oid)[-1].rules == ["MANUAL-DISPATCH"]
    assert any(lbl.unit == "区人社局" for lbl in app.store.training_labels())


def test_reopen_sends_the_order_back_to_the_same_unit(app: App) -> None:
    router = app.router
    out = router.receive({"order_id": "R-1", "received_at": T0.isoformat(),
                          "enterprise_name": "上海某某机械有限公司",
                          "text": "公司拖欠我们三个月工资不发，二十多个工人讨薪无果"})
    assert out.status == "dispatched"
    unit = out.decision.lead_unit
    router.apply_event(ev("R-1", "OrderAccepted", unit, 10))
    router.apply_event(ev("R-1", "OrderReplied", unit, 20, reply="已协调"))
    res = router.apply_event(ev("R-1", "RevisitRecorded", "revisit:李", 30, contacted="已联系",
                                solved="未解决", satisfaction="不满意"))
    assert {e.kind for e in res.result.applied} >= {"RevisitRecorded", "OrderReopened"}
    assert feeds(res.outbox).get(f"dispatch.{router.config.code_of(unit)}") == "主办"
    assert app.store.lifecycle("R-1").reopen_count == 1


def test_a_return_redispatches_never_to_the_returning_unit(app: App) -> None:
    router = app.router
    out = router.receive({"order_id": "X-1", "received_at": T0.isoformat(),
                          "text": "厂区今天上午突然停电，没有任何通知，生产线全部停下"})
    first = out.decision.lead_unit
    res = router.apply_event(ev("X-1", "OrderReturned", first, 3, reason="非本单位职责",
                                beyond_power=False))
    assert res.decision is not None
    assert res.decision.lead_unit != first
    assert f"dispatch.{router.config.code_of(first)}" not in feeds(res.outbox)


def test_a_worker_that_loses_the_race_sends_the_stored_dispatch_not_its_own(
    app: App, tmp_path: Path
) -> None:
    """Two workers route the same order at once (a partition handed over while the old owner
    still works): the dispatch is applied once, and the loser sends the winner's decision, so
    the feeds never disagree with the database."""
    from dataclasses import replace

    from models.records import OrderIn

    other = bootstrap(Settings(database_url=f"sqlite:///{tmp_path / 'h.db'}"),
                      registry=CollectorRegistry())
    order = OrderIn(order_id="RACE-1", channel="12345热线", received_at=T0, title="",
                    text="厂区今天上午突然停电，没有任何通知，生产线全部停下")
    won = app.router.route_orders([order])[0]
    assert won.status == "dispatched" and won.decision is not None
    # the other worker saw the order before the winner committed and decided differently
    mine = replace(won.decision, co_units=("漕泾镇",), rules=("OTHER",))
    out = other.router._dispatch(order, mine, round_no=1, actor="system", at=T0)
    want = {m.topic: m.value["decision"]["co_units"] for m in won.outbox}
    assert {m.topic: m.value["decision"]["co_units"] for m in out} == want
    assert "dispatch.caojing" not in feeds(out)
    assert [d.rules for d in app.store.decisions("RACE-1")] == [list(won.decision.rules)]
    assert sent(app.router.current_dispatch("RACE-1")) == sent(won.outbox)


def test_current_dispatch_only_for_an_order_waiting_for_its_unit(app: App) -> None:
    """A redelivered message re-sends the dispatch of an order still 已派单; once the unit has
    签收 it there is nothing to send again."""
    router = app.router
    out = router.receive({"order_id": "C-1", "received_at": T0.isoformat(),
                          "text": "厂区今天上午突然停电，没有任何通知，生产线全部停下"})
    assert out.status == "dispatched" and out.decision is not None
    assert sent(router.current_dispatch("C-1")) == sent(out.outbox)
    router.apply_event(ev("C-1", "OrderAccepted", out.decision.lead_unit, 5))
    assert router.current_dispatch("C-1") == []
