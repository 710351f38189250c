"""SQL is built only through the ORM with bound parameters (SQL 注入).

Classic injection strings go into every text field of an order and of its lifecycle events; they
come back verbatim and every table still exists. A source scan keeps raw SQL out of the product.
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry
from sqlalchemy import inspect
from sqlmodel import SQLModel

from hotline.bootstrap import App, bootstrap, load_classifier
from hotline.settings import PROJECT_ROOT, Settings
from models.lifecycle import LifecycleEvent, State
from models.store import Store

INJECTIONS = (
    "'; DROP TABLE work_order; --",
    '" OR 1=1 --',
    "' OR '1'='1",
    "1; DELETE FROM event_log WHERE 1=1",
    "Robert'); DROP TABLE dead_letter;--",
    "\\'; SELECT pg_sleep(10); --",
    "%' UNION SELECT * FROM unit --",
    "`; PRAGMA writable_schema=1; --",
    "中文'); DROP TABLE revisit; --",
)
T0 = datetime(2026, 3, 2, 9, 0)
SETTINGS = Settings(database_url="sqlite://")


@pytest.fixture(scope="module")
def model() -> Any:
    return load_classifier(SETTINGS)


@pytest.fixture
def app(model: Any) -> App:
    return bootstrap(SETTINGS, registry=CollectorRegistry(), classifier=model,
                     store=Store.from_url("sqlite://"))


def tables_intact(app: App) -> None:
    expected = set(SQLModel.metadata.tables)
    assert expected <= set(inspect(app.store.engine).get_table_names())


def hostile_order(i: int, s: str) -> dict[str, Any]:
    return {
        "order_id": f"INJ-{i}", "received_at": T0.isoformat(), "title": s, "text": f"企业拖欠工资{s}",
        "caller": s, "enterprise_name": s, "credit_code": s, "address": s, "area": s,
        "channel": s[:64], "appeal_type": s[:16],
    }


@pytest.mark.parametrize("i", range(len(INJECTIONS)))
def test_injection_strings_in_every_order_field_are_stored_verbatim(app: App, i: int) -> None:
    s = INJECTIONS[i]
    [outcome] = app.router.receive_batch([hostile_order(i, s)])
    assert outcome.status in ("dispatched", "manual")
    row = app.store.get_order(f"INJ-{i}")
    assert row is not None
    assert (row.title, row.text, row.caller, row.enterprise_name, row.address, row.area) == (
        s, f"企业拖欠工资{s}", s, s, s, s)
    assert row.channel == s[:64]
    assert row.extra["invalid_credit_code"] == s.upper()
    assert app.store.repeat_count(credit_code=s, enterprise_name=s, since=T0 - timedelta(days=1),
                                  until=T0 + timedelta(days=1)) == 1
    assert app.store.unit_orders(s) == []
    tables_intact(app)


def test_injection_strings_in_event_fields_are_stored_verbatim(app: App) -> None:
    [outcome] = app.router.receive_batch([hostile_order(0, "正常内容")])
    oid = "INJ-0"
    s = "'; DROP TABLE event_log; --\x00" + INJECTIONS[1]
    dispatcher = f"dispatcher:{INJECTIONS[2]}"
    events = []
    if app.store.lifecycle(oid).state == State.DISPATCHED:  # take it back to the manual queue
        unit = app.store.lifecycle(oid).unit
        events.append(LifecycleEvent(f"{oid}:r1", oid, "OrderReturned", T0, dispatcher,
                                     {"reason": s, "suggested_unit": s}))
        assert unit is not None
    events += [
        LifecycleEvent(f"{oid}:sup", oid, "OrderSupervised", T0, dispatcher, {"reason": s}),
        LifecycleEvent(f"{oid}:bad'--", oid, "OrderReplied", T0, INJECTIONS[0], {"reply": s}),
        LifecycleEvent(f"{oid}:x", f"{oid}' OR '1'='1", "OrderAccepted", T0, s.replace("\x00", ""),
                       {"note": s}),
    ]
    for event in events:
        app.router.apply_event(event)
    stored = {r.event_id: r for r in app.store.history(oid)}
    assert stored[f"{oid}:sup"].actor == dispatcher and stored[f"{oid}:sup"].data["reason"] == s
    assert stored[f"{oid}:bad'--"].data["reply"] == s and not stored[f"{oid}:bad'--"].accepted
    unknown = app.store.history(f"{oid}' OR '1'='1")
    assert [r.event_id for r in unknown] == [f"{oid}:x"] and unknown[0].data["note"] == s
    if f"{oid}:r1" in stored:
        assert stored[f"{oid}:r1"].data["reason"] == s
        assert any(lb.unit == s for lb in app.store.training_labels())
    assert app.store.get_order(oid) is not None
    tables_intact(app)


def test_an_injection_order_id_is_dead_lettered_not_run(app: App) -> None:
    raw = {**hostile_order(0, "x"), "order_id": INJECTIONS[0]}
    [outcome] = app.router.receive_batch([raw])
    assert (outcome.status, outcome.code) == ("dead_letter", "BAD_ID")
    [letter] = app.store.dead_letters()
    assert INJECTIONS[0] in letter.payload
    tables_intact(app)


# ---- no hand-built SQL in the product ----------------------------------------------------------
PRODUCT = ("api", "classifier", "hotline", "models", "routing_rules", "streams")
RAW_SQL = re.compile(r"exec_driver_sql|\.execute\(\s*f[\"']|text\(\s*f[\"']|%\s*\(|\.format\(")
SQL_WORDS = re.compile(r"\b(SELECT|INSERT|UPDATE|DELETE|DROP|CREATE)\b\s", re.IGNORECASE)


def _python_files() -> list[Path]:
    return [p for pkg in PRODUCT for p in (PROJECT_ROOT / pkg).rglob("*.py")
            if "migrations" not in p.parts]


def test_product_code_builds_no_sql_from_strings() -> None:
    offenders = []
    for path in _python_files():
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if "text(" in line and SQL_WORDS.search(line) and RAW_SQL.search(line):
                offenders.append(f"{path.relative_to(PROJECT_ROOT)}:{n}: {line.strip()}")
            elif "exec_driver_sql" in line or re.search(r"\.execute\(\s*f[\"']", line):
                offenders.append(f"{path.relative_to(PROJECT_ROOT)}:{n}: {line.strip()}")
    assert offenders == []
