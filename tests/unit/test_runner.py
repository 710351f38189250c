"""The embedded runner end to end: the bundled sample day through the whole closed loop."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from hotline.bootstrap import App, bootstrap
from hotline.settings import Settings
from models.lifecycle import State
from streams.runner import RunReport, run_sample_day
from streams.sample_day import build_sample_day

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def day(tmp_path_factory: pytest.TempPathFactory) -> tuple[App, RunReport, list[object]]:
    db = Path(tmp_path_factory.mktemp("day")) / "day.db"
    app = bootstrap(Settings(database_url=f"sqlite:///{db}"), registry=CollectorRegistry())
    messages = build_sample_day()
    territorial = {u.name for u in app.router.config.territorial_units}
    return app, run_sample_day(app.router, messages, territorial), messages


def test_sample_day_is_big_and_mixed() -> None:
    messages = build_sample_day()
    dicts = [m for m in messages if isinstance(m, dict) and "corpus_id" in m]
    assert len(dicts) >= 300
    assert len({m["channel"] for m in dicts}) == 4
    assert sum(1 for m in dicts if m.get("enterprise_name")) > 100


def test_every_message_is_accounted_for(day: tuple[App, RunReport, list[object]]) -> None:
    app, report, messages = day
    statuses = report.status_counts()
    assert sum(statuses.values()) == len(messages)
    assert statuses["duplicate"] == 1
    codes = Counter(d["code"] for d in report.dead_letters)
    assert set(codes) == {
        "EMPTY_TEXT", "WRONG_TYPE", "BAD_TIME", "TOO_LONG", "BAD_ENCODING", "BAD_JSON",
        "MISSING_ID", "CONFLICT",
    }
    assert len(app.store.dead_letters()) == len(report.dead_letters) == 9
    # every valid order is stored exactly once
    stored = {o.order_id for o in report.outcomes if o.status in ("dispatched", "manual")}
    assert all(app.store.get_order(oid) is not None for oid in stored)


def test_routes_most_orders_to_the_unit_the_corpus_names(
    day: tuple[App, RunReport, list[object]],
) -> None:
    app, report, messages = day
    expected = {m["order_id"]: m["expected_unit"] for m in messages if isinstance(m, dict)
                and "expected_unit" in m}
    auto = [o for o in report.outcomes if o.status == "dispatched" and o.order_id in expected]
    plain = [o for o in auto if not o.decision.line_first]
    agree = sum(1 for o in plain if o.decision.lead_unit == expected[o.order_id])
    assert len(auto) > 0.8 * len(expected)
    assert agree / len(plain) >= 0.75


def test_line_first_fires_for_each_trigger(day: tuple[App, RunReport, list[object]]) -> None:
    _, report, _ = day
    decisions = [o.decision for o in [*report.outcomes, *report.redispatches] if o.decision]
    triggers = Counter(d.trigger for d in decisions if d.line_first)
    assert triggers["repeat"] > 0 and triggers["legacy"] > 0 and triggers["beyond_power"] > 0
    territorial = {"石化街道", "朱泾镇", "枫泾镇", "张堰镇", "亭林镇", "吕巷镇", "廊下镇", "金山卫镇",
                   "漕泾镇", "山阳镇", "金山工业区"}
    for d in decisions:
        if d.line_first:
            assert d.lead_unit not in territorial


def test_closed_loop_runs(day: tuple[App, RunReport, list[object]]) -> None:
    app, report, _ = day
    store = app.store
    kinds = Counter(e.kind for eo in report.event_outcomes for e in eo.result.applied)
    assert kinds["OrderReturned"] > 0 and kinds["OrderReopened"] > 0
    assert kinds["OrderSupervised"] > 0 and kinds["OrderClosed"] > 0
    assert report.redispatches
    for oid in {o.order_id for o in report.outcomes if o.status in ("dispatched", "manual")}:
        lc = store.lifecycle(oid)
        assert lc.unit not in lc.returned_units or lc.state == State.MANUAL
        if lc.is_enterprise and lc.state == State.CLOSED:
            assert any(e.kind == "RevisitRecorded" and e.accepted for e in store.history(oid))


def test_manual_dispatches_became_training_labels(day: tuple[App, RunReport, list[object]]) -> None:
    app, _, _ = day
    labels = app.store.training_labels()
    assert labels and all(lbl.source in ("manual_dispatch", "return_correction") for lbl in labels)
