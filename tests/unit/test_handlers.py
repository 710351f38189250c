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
