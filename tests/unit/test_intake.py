"""Intake validation: every kind of bad input raises IntakeError with a stable code."""

from __future__ import annotations

import json
from datetime import datetime

import pytest

from hotline.masking import mask_pii
from models.records import OrderIn
from streams.intake import IntakeError, normalize

NOW = datetime(2026, 11, 24, 9, 0)


def good(**over: object) -> dict[str, object]:
    base = {
        "order_id": "JS-1",
        "received_at": "2026-11-24T09:30:00",
        "title": "关于工资拖欠的问题",
        "text": "来电人反映其所在公司拖欠三个月工资。",
    }
    base.update(over)
    return base


def test_normalizes_a_plain_order() -> None:
    o = normalize(good(), max_text_chars=5000)
    assert o.order_id == "JS-1"
    assert o.received_at == datetime(2026, 11, 24, 9, 30)
    assert o.channel == "12345热线"
    assert not o.is_enterprise


def test_accepts_the_12345_export_columns_and_time_format() -> None:
    row = {"工单编号": "20180104160369", "工单发起时间": "2018/1/4 21:23:54",
           "工单标题": "关于高铁东站丢失物件的问题", "诉求内容": "市民来电反映丢失物件", "诉求类型": "咨询类"}
    o = normalize(row, max_text_chars=5000)
    assert o.order_id == "20180104160369"
    assert o.received_at == datetime(2018, 1, 4, 21, 23, 54)
    assert o.appeal_type == "咨询"


def test_enterprise_flag_from_name_code_or_channel() -> None:
    assert normalize(good(enterprise_name="上海某某有限公司"), max_text_chars=5000).is_enterprise
    assert normalize(good(channel="沪企管家"), max_text_chars=5000).is_enterprise
    o = normalize(good(credit_code="91310116ma1j8k2x3n"), max_text_chars=5000)
    assert o.credit_code == "91310116MA1J8K2X3N" and o.is_enterprise


def test_bad_credit_code_is_kept_aside_not_fatal() -> None:
    o = normalize(good(credit_code="12345"), max_text_chars=5000)
    assert o.credit_code is None
    assert o.extra["invalid_credit_code"] == "12345"


def test_timezone_aware_times_become_beijing_local() -> None:
    o = normalize(good(received_at="2026-11-24T01:30:00+00:00"), max_text_chars=5000)
    assert o.received_at == datetime(2026, 11, 24, 9, 30)


@pytest.mark.parametrize(
    ("raw", "code"),
    [
        (good(text="   "), "EMPTY_TEXT"),
        (good(text=None), "EMPTY_TEXT"),
        (good(text=12345), "WRONG_TYPE"),
        (good(received_at="昨天下午"), "BAD_TIME"),
        (good(received_at="1899-01-01T00:00:00"), "BAD_TIME"),
        (good(received_at=20261124), "BAD_TIME"),
        (good(text="长" * 5001), "TOO_LONG"),
        (good(is_enterprise="maybe"), "WRONG_TYPE"),
        ({k: v for k, v in good().items() if k != "order_id"}, "MISSING_ID"),
        (good(order_id="has space"), "BAD_ID"),
        (good(order_id=True), "WRONG_TYPE"),
        (b"\xb2\xbb\xca\xc7", "BAD_ENCODING"),
        ('{"order_id": "x", "text": "截断', "BAD_JSON"),
        ("[1, 2]", "NOT_OBJECT"),
    ],
)
def test_bad_input_is_rejected_with_a_code(raw: object, code: str) -> None:
    with pytest.raises(IntakeError) as err:
        normalize(raw, max_text_chars=5000)  # type: ignore[arg-type]
    assert err.value.code == code
    assert err.value.reason  # a human reason, in Chinese


def test_json_bytes_round_trip() -> None:
    raw = json.dumps(good(), ensure_ascii=False).encode("utf-8")
    assert normalize(raw, max_text_chars=5000).text.startswith("来电人")


def test_missing_time_uses_now_only_when_given() -> None:
    msg = {k: v for k, v in good().items() if k != "received_at"}
    assert normalize(msg, max_text_chars=5000, now=NOW).received_at == NOW
    with pytest.raises(IntakeError):
        normalize(msg, max_text_chars=5000)


def test_masking_hides_phones_and_ids() -> None:
    text = "联系电话13917652283，身份证号310228198805061234，座机021-57351234"
    masked = mask_pii(text)
    assert "13917652283" not in masked and "139****2283" in masked
    assert "310228198805061234" not in masked and masked.count("*") >= 8
    assert "57351234" not in masked
    assert mask_pii("工单编号20180219633698") == "工单编号20180219633698"


def test_operator_industry_levels_are_kept_for_the_classifier() -> None:
    o = normalize(good(行业分类1级="劳动和社会保障", 行业分类2级="工资福利"),
                  max_text_chars=5000)
    assert o.extra["行业分类1级"] == "劳动和社会保障" and o.extra["行业分类2级"] == "工资福利"
    with pytest.raises(IntakeError):
        normalize(good(行业分类1级=3), max_text_chars=5000)


def test_an_order_survives_the_repartition_hop_with_its_extra_fields() -> None:
    o = normalize(good(行业分类1级="劳动和社会保障", urgent=True), max_text_chars=5000)
    back = OrderIn.from_json(json.loads(json.dumps(o.to_json(), ensure_ascii=False)))
    assert back == o and back.extra["行业分类1级"] == "劳动和社会保障"
