"""The 每日值班小结 on a small seeded store: decisions first, 涉企 marked, counts per unit."""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from bulletin.daily import ENTERPRISE_MARK, build_daily, render_daily
from hotline.bootstrap import App, bootstrap
from hotline.settings import Settings
from models.lifecycle import LifecycleEvent
from models.records import OrderIn
from streams.runner import run_sample_day
from streams.sample_day import SAMPLE_DATE, build_sample_day

DAY_MESSAGES = 24


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory) -> App:
    db = tmp_path_factory.mktemp("daily") / "daily.db"
    the_app = bootstrap(Settings(database_url=f"sqlite:///{db}"), registry=CollectorRegistry())
    territorial = {u.name for u in the_app.router.config.territorial_units}
    run_sample_day(the_app.router, build_sample_day()[:DAY_MESSAGES], territorial)
    return the_app


def _order(oid: str, at: datetime, *, enterprise: bool) -> OrderIn:
    return OrderIn(order_id=oid, channel="12345热线", received_at=at, title="",
                   text="企业反映园区道路积水，联系电话13912345678", is_enterprise=enterprise,
                   enterprise_name="金山某化工公司" if enterprise else None)


def _event(oid: str, kind: str, at: datetime, actor: str, **data: object) -> LifecycleEvent:
    return LifecycleEvent(f"{oid}:{kind}", oid, kind, at, actor, dict(data))


def test_daily_lists_decisions_first_with_enterprise_marked(app: App, tmp_path: Path) -> None:
    store = app.store
    day = SAMPLE_DATE.date()
    at = datetime.combine(day, datetime.min.time()) + timedelta(hours=9)
    store.add_order(_order("T-MANUAL", at, enterprise=True))
    store.apply(_event("T-MANUAL", "SentToManualQueue", at, "system", reason="置信度不足"))
    store.add_order(_order("T-RETURN", at, enterprise=False))
    store.apply(_event("T-RETURN", "OrderDispatched", at, "system", unit="区建管委"))
    store.apply(_event("T-RETURN", "OrderReturned", at + timedelta(hours=1), "区建管委",
                       reason="非本单位职责"))

    summary = build_daily(store, day)
    groups = [i.group for i in summary.items]
    assert groups[:2] == ["manual", "returned"]
    assert groups == sorted(groups, key=["manual", "returned", "supervised", "overdue",
                                         "reopened"].index)
    text = render_daily(summary)
    assert f"{ENTERPRISE_MARK}T-MANUAL" in text
    assert text.index("待人工派单") < text.index("退单待改派") < text.index("二、当日各单位办理情况")
    assert "13912345678" not in text and "139****5678" in text
    assert summary.received >= DAY_MESSAGES // 2 and summary.per_unit
    assert sum(c.get("派单", 0) for c in summary.per_unit.values()) >= 1
    assert summary.to_json()["decisions"]
