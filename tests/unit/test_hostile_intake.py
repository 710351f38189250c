"""Hostile and broken intake input (恶意/残缺输入), property-based.

Whatever arrives — random bytes, GBK text, emoji, control characters, 1 MB texts, missing and
extra fields, huge numbers, NaN, bad timestamps, duplicate ids with other content — the router
never raises and never drops a message: each one is stored as an order (dispatched / manual /
duplicate) or dead-lettered with a non-empty reason, and the counts add up.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from collections.abc import Sequence
from functools import cache
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry
from sqlmodel import Session, func, select

from hotline.bootstrap import App, bootstrap, load_classifier
from hotline.settings import Settings
from models.store import Store
from models.tables import DeadLetter, WorkOrder
from streams.handlers import Outcome

STATUSES = {"dispatched", "manual", "duplicate", "dead_letter"}
SETTINGS = Settings(database_url="sqlite://")
FAST = settings(
    max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow],
    derandomize=True, report_multiple_bugs=False,
)
MORE = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@cache
def _model() -> Any:
    return load_classifier(SETTINGS)


def fresh_app() -> App:
    """A router on its own in-memory SQLite database and its own metrics registry."""
    return bootstrap(
        SETTINGS, registry=CollectorRegistry(), classifier=_model(),
        store=Store.from_url("sqlite://"),
    )


# ---- strategies ---------------------------------------------------------------------------------
FIELDS = (
    "order_id", "id", "工单编号", "channel", "来源渠道", "received_at", "工单发起时间", "title",
    "工单标题", "text", "诉求内容", "caller", "来电人", "enterprise_name", "企业名称",
    "credit_code", "统一社会信用代码", "address", "诉求地址", "area", "镇街", "appeal_type",
    "诉求类型", "is_enterprise", "涉企", "legacy", "历史遗留", "urgent", "紧急",
)
HOSTILE_TEXT = (
    "😀🔥💣", "\x00\x01\x07\x1b[31m", "\u202e反转\u200b零宽", "'; DROP TABLE work_order; --",
    "\ud800孤立代理", "\udfff", "𠀀𪚥", "　 \t\n", "13812345678", "310101199001011234",
)
BAD_TIMES = (
    "2026-13-45", "昨天", "", "0000-00-00", "1970-01-01", "9999-12-31T23:59:59", "2101-01-01",
    "2026-01-05T09:00:00+99:00", "NaN", "2026-01-05 25:61",
)
GOOD_TIMES = ("2026-01-05T09:00:00", "2026/1/4 21:23:54", "2026-01-05T01:00:00+00:00", "2026-01-05")

def _huge(digits: int) -> int:
    """An integer with ``abs(digits)`` digits (negative for negative digits)."""
    return (1 if digits > 0 else -1) * 10 ** abs(digits)


hostile_text = st.one_of(st.text(max_size=60), st.sampled_from(HOSTILE_TEXT))
scalars = st.one_of(
    st.none(), st.booleans(), st.integers(), st.sampled_from([400, -5000, 19]).map(_huge),
    st.floats(allow_nan=True, allow_infinity=True), hostile_text,
)
junk = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=8,
)
order_ids = st.sampled_from(["JS-1", "JS-2", "20260105000001", "JS-3"])


@st.composite
def plausible_orders(draw: st.DrawFn) -> dict[str, Any]:
    """A mostly valid order with some fields dropped, replaced by junk, or added."""
    order: dict[str, Any] = {
        "order_id": draw(order_ids),
        "received_at": draw(st.sampled_from(GOOD_TIMES + BAD_TIMES)),
        "title": draw(st.sampled_from(["企业反映", "", "关于工资拖欠的问题"])),
        "text": draw(st.sampled_from(["公司拖欠工资三个月", "园区道路破损影响货车通行", "排污异味"]))
        + draw(hostile_text),
    }
    if draw(st.booleans()):
        order["enterprise_name"] = draw(st.sampled_from(["上海某某有限公司", "金山某厂"]))
    for name in draw(st.lists(st.sampled_from(list(order)), max_size=2)):
        order.pop(name, None)
    order.update(draw(st.dictionaries(st.sampled_from(FIELDS), junk, max_size=3)))
    order.update(draw(st.dictionaries(st.text(max_size=10), junk, max_size=2)))
    return order


def as_wire(order: dict[str, Any], form: str) -> bytes | str | dict[str, Any]:
    """The same message as a mapping, JSON text, UTF-8 bytes or GBK bytes."""
    if form == "mapping":
        return order
    try:
        text = json.dumps(order, ensure_ascii=False)
    except ValueError:  # an int too long to print: send the mapping itself
        return order
    if form == "text":
        return text
    if form == "gbk":
        return text.encode("gbk", errors="replace")
    return text.encode("utf-8", errors="surrogatepass")


def _json_text(value: Any) -> str:
    """``value`` as JSON text (non-standard NaN/Infinity included); huge ints as a bare number."""
    try:
        return json.dumps(value, default=str)
    except ValueError:
        return "9" * 5000


wire_orders = st.builds(
    as_wire, plausible_orders(), st.sampled_from(["mapping", "text", "utf8", "gbk"])
)
raw_messages = st.one_of(
    wire_orders,
    st.binary(max_size=120),
    st.text(max_size=120),
    junk.map(_json_text),
    st.dictionaries(st.text(max_size=8), junk, max_size=5),
)
batches = st.lists(raw_messages, min_size=1, max_size=8)


# ---- the invariant -----------------------------------------------------------------------------
def _count(app: App, table: type[Any]) -> int:
    with Session(app.store.engine) as s:
        return int(s.exec(select(func.count()).select_from(table)).one())


def _metric(app: App, name: str) -> float:
    return sum(
        s.value for m in app.router.metrics.registry.collect() for s in m.samples
        if s.name == f"{name}_total"
    )


def check_accounted(app: App, raws: Sequence[Any], outcomes: Sequence[Outcome]) -> None:
    """Nothing lost, nothing raised: every message has exactly one outcome, and the database and
    the metrics agree with the outcomes."""
    assert len(outcomes) == len(raws)
    statuses = Counter(o.status for o in outcomes)
    assert set(statuses) <= STATUSES
    for o in outcomes:
        if o.status == "dead_letter":
            assert o.code and o.reason and o.reason.strip()
            assert [m.topic for m in o.outbox] == ["workorders.dlq"]
        else:
            assert o.order_id and app.store.get_order(o.order_id) is not None
    stored_ids = {o.order_id for o in outcomes if o.status != "dead_letter"}
    routed = [o.order_id for o in outcomes if o.status in ("dispatched", "manual")]
    assert len(routed) == len(set(routed)) == len(stored_ids), "each stored order routed once"
    assert _count(app, WorkOrder) == len(stored_ids)
    assert _count(app, DeadLetter) == statuses["dead_letter"]
    assert _metric(app, "hotline_dead_letters") == statuses["dead_letter"]
    assert _metric(app, "hotline_orders_received") == len(stored_ids)
    for letter in app.store.dead_letters(limit=len(raws) + 1):
        assert ":" in letter.reason and letter.reason.split(":", 1)[1].strip()


def run_batch(raws: list[Any]) -> None:
    app = fresh_app()
    outcomes = app.router.receive_batch(raws)
    check_accounted(app, raws, outcomes)


@FAST
@given(batches)
def test_any_batch_is_accounted_for(raws: list[Any]) -> None:
    run_batch(raws)


@pytest.mark.slow
@MORE
@given(batches)
def test_any_batch_is_accounted_for_many(raws: list[Any]) -> None:
    run_batch(raws)


@settings(FAST, max_examples=10)
@given(st.lists(plausible_orders(), min_size=2, max_size=6))
def test_duplicate_ids_with_other_content_are_dead_lettered_as_conflicts(
    orders: list[dict[str, Any]],
) -> None:
    """The first valid order for an id wins; a resend is a duplicate, other content a conflict."""
    app = fresh_app()
    outcomes = app.router.receive_batch(orders)
    check_accounted(app, orders, outcomes)
    first: dict[str, Outcome] = {}
    for o in outcomes:
        if o.order_id is None:
            continue
        if o.status in ("dispatched", "manual"):
            assert o.order_id not in first
            first[o.order_id] = o
        elif o.status == "duplicate":
            assert o.order_id in first
        elif o.code == "CONFLICT":
            assert "已存在且内容不同" in (o.reason or "")


# ---- named cases the property covers, kept as plain examples -----------------------------------
def _one(raw: Any) -> Outcome:
    app = fresh_app()
    [outcome] = app.router.receive_batch([raw])
    check_accounted(app, [raw], [outcome])
    return outcome


def _order(**over: Any) -> dict[str, Any]:
    return {"order_id": "JS-9", "received_at": "2026-01-05T09:00:00", "text": "公司拖欠工资", **over}


@pytest.mark.parametrize(
    ("raw", "code"),
    [
        (b"\xff\xfe\x00garbage", "BAD_ENCODING"),
        (json.dumps(_order(), ensure_ascii=False).encode("gbk"), "BAD_ENCODING"),
        ('{"order_id": "JS-9", "text": "半截', "BAD_JSON"),
        ("[" * 50_000, "BAD_JSON"),
        ("[1, 2]", "NOT_OBJECT"),
        (_order(text="诉" * 1_000_000), "TOO_LONG"),
        (_order(order_id=10**5000), "BAD_ID"),
        (_order(order_id=True), "WRONG_TYPE"),
        (_order(text={"nested": ["junk"]}), "WRONG_TYPE"),
        (_order(received_at=math.nan), "BAD_TIME"),
        (_order(received_at="9999-12-31T23:59:59"), "BAD_TIME"),
        (_order(received_at="2026-02-30"), "BAD_TIME"),
        ('{"order_id": "JS-9", "received_at": "2026-01-05", "text": "\\ud800"}', "BAD_ENCODING"),
        (_order(text=" \x00 \t"), "EMPTY_TEXT"),
        ({"text": "没有编号"}, "MISSING_ID"),
    ],
)
def test_named_bad_input_is_dead_lettered_with_its_code(raw: Any, code: str) -> None:
    outcome = _one(raw)
    assert (outcome.status, outcome.code) == ("dead_letter", code)


def test_a_dead_letter_with_an_unprintable_payload_still_keeps_a_record() -> None:
    outcome = _one({"order_id": -(10**5000), "text": "x"})
    assert outcome.status == "dead_letter"
    app = fresh_app()
    app.router.receive_batch([{"junk": 10**5000, "order_id": []}])
    [letter] = app.store.dead_letters()
    assert "junk" in letter.payload


def test_emoji_control_characters_and_extra_fields_are_accepted_verbatim() -> None:
    text = "公司拖欠工资😀\u202e\x07 𠀀"
    outcome = _one(_order(text=text, 附加字段={"x": [1, None]}, nested={"a": {"b": 10**400}}))
    assert outcome.status in ("dispatched", "manual")


def test_caller_supplied_channel_never_becomes_a_metrics_label() -> None:
    app = fresh_app()
    app.router.receive_batch([_order(channel="13812345678")])
    labels = {
        s.labels.get("channel") for m in app.router.metrics.registry.collect() for s in m.samples
        if s.name == "hotline_orders_received_total"
    }
    assert labels == {"其他"}
