"""No phone or ID number (手机号、身份证号、座机) in logs, metrics labels or the console.

The sample day runs with extra orders whose text, caller, address, channel and bad fields carry
personal numbers; DEBUG logs and every metrics label value are searched for them. `hotline route`
and `hotline run --input` print masked text.
"""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from hotline.bootstrap import bootstrap
from hotline.cli import main
from hotline.settings import Settings
from models.store import Store
from streams.runner import run_sample_day
from streams.sample_day import build_sample_day

PHONE = "13912345678"
ID_NUMBER = "31022819900101123X"
LANDLINE = "021-57921234"
PII = (PHONE, ID_NUMBER, LANDLINE, "57921234")
#: unmasked mobile numbers and 18-digit resident IDs anywhere in a text
PII_RE = re.compile(r"(?<!\d)(1[3-9]\d{9}|\d{17}[\dXx])(?![\dXx])")


def pii_messages() -> list[Any]:
    text = f"企业负责人手机{PHONE}，身份证{ID_NUMBER}，座机{LANDLINE}，反映公司拖欠工资三个月"
    base = {"received_at": "2026-11-24T09:30:00", "title": f"来电{PHONE}", "text": text,
            "caller": f"张先生 {PHONE}", "address": f"朱泾镇某路1号 {LANDLINE}",
            "enterprise_name": "上海某某有限公司"}
    return [
        {**base, "order_id": "PII-1"},
        {**base, "order_id": "PII-2", "channel": PHONE},
        {**base, "order_id": "PII-3", "received_at": f"{PHONE} {ID_NUMBER}"},  # BAD_TIME
        {**base, "order_id": "PII-4", "credit_code": ID_NUMBER},  # invalid credit code
        {**base, "order_id": "PII-1", "text": f"同一编号不同内容 {PHONE}"},  # CONFLICT
        json.dumps({**base, "order_id": "PII-5", "text": 12345}, ensure_ascii=False),  # WRONG_TYPE
        f"not json {PHONE} {ID_NUMBER}".encode(),  # BAD_JSON
    ]


def assert_no_pii(text: str, where: str) -> None:
    for value in PII:
        assert value not in text, f"{value} in {where}"
    assert PII_RE.search(text) is None, f"{PII_RE.search(text)} in {where}"


def test_sample_day_logs_and_metric_labels_carry_no_personal_numbers(
    caplog: pytest.LogCaptureFixture, tmp_path: Path,
) -> None:
    registry = CollectorRegistry()
    app = bootstrap(Settings(database_url=f"sqlite:///{tmp_path / 'day.db'}"), registry=registry)
    territorial = {u.name for u in app.router.config.territorial_units}
    with caplog.at_level(logging.DEBUG):
        report = run_sample_day(
            app.router, [*build_sample_day()[:60], *pii_messages()], territorial)
    statuses = [(o.order_id, o.status) for o in report.outcomes if o.order_id]
    assert ("PII-1", "dead_letter") in statuses  # the conflicting resend
    assert {s for oid, s in statuses if oid == "PII-1"} & {"dispatched", "manual"}
    assert app.store.get_order("PII-2") is not None
    assert len(report.dead_letters) >= 4
    assert caplog.records, "the run logs something at DEBUG"
    assert_no_pii(caplog.text, "logs")
    labels = [
        str(v) for metric in registry.collect() for sample in metric.samples
        for v in sample.labels.values()
    ]
    assert labels
    assert_no_pii("\n".join(labels), "metric labels")


def test_hotline_route_prints_the_text_masked(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["route", f"我的手机{PHONE}，身份证{ID_NUMBER}，公司拖欠工资"]) == 0
    out = capsys.readouterr()
    assert "工单：" in out.out
    assert_no_pii(out.out + out.err, "hotline route")


def test_hotline_run_input_prints_no_personal_numbers(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("HOTLINE_DATABASE_URL", f"sqlite:///{tmp_path / 'run.db'}")
    path = tmp_path / "orders.jsonl"
    lines = [m if isinstance(m, str) else m.decode() if isinstance(m, bytes)
             else json.dumps(m, ensure_ascii=False) for m in pii_messages()]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    assert main(["run", "--input", str(path)]) == 0
    out = capsys.readouterr()
    assert out.out.strip()
    assert_no_pii(out.out + out.err, "hotline run")
    assert Store.from_url(f"sqlite:///{tmp_path / 'run.db'}").get_order("PII-1") is not None
