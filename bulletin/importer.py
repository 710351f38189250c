"""`hotline import`: historical orders (历史工单) from a Haikou 12345 export or a plain CSV.

Each row becomes an `OrderIn` plus its timeline as far as the columns tell it: 收集 at 工单发起时间,
派单 to 处置单位 at 派件时间, 签收 and 反馈 when a reply (办结汇报) exists, 超期 when the reply came
after the 办结 deadline, 办结 when the source says the order is archived (工单归档). Events carry
deterministic ids and the importer as actor or source, so importing twice changes nothing.

Only the given file is read: a symbolic link or anything but a regular file is refused, and
values inside the data (paths, URLs) are stored as text, never opened.
"""

from __future__ import annotations

import csv
import io
import os
import re
import stat
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from bulletin.history import ImportCounts, ImportedOrder, register_historical_units, write_history
from classifier.datasets import map_appeal_type
from models.lifecycle import (
    DEADLINE_HANDLE,
    ORDER_ACCEPTED,
    ORDER_CLOSED,
    ORDER_DISPATCHED,
    ORDER_REPLIED,
    REVISIT_RECORDED,
    LifecycleEvent,
    deadline_event,
)
from models.records import OrderIn
from models.store import Store

FORMATS: tuple[str, ...] = ("haikou12345", "csv")

#: Lead unit for archived Haikou orders whose 处置单位 is empty (mostly 网格员 self-reported
#: 城管 patrol items): the source does not name who handled them.
UNRECORDED_UNIT = "（处置单位未记录）"

#: 工单状态 values meaning the order is finished (办结/归档).
CLOSED_STATUSES = frozenset({"工单归档", "归档", "办结", "已办结", "closed"})

_MAX_FILE_BYTES = 512 * 1024 * 1024
_REPLY_WINDOW = timedelta(days=90)


class ImportRefused(ValueError):
    """The data file or a row cannot be imported (导入被拒绝); the message says why."""


@dataclass(frozen=True)
class Timeline:
    """The facts of one row that become lifecycle events."""

    unit: str | None
    dispatched_at: datetime | None
    reply: str
    replied_at: datetime | None
    reply_time_known: bool
    closed: bool
    revisit: dict[str, str] | None = None
    revisit_at: datetime | None = None


# ---- reading the one given file -------------------------------------------------------------
def read_data_file(path: str | Path) -> str:
    """The text of ``path``: a regular file opened without following symbolic links."""
    p = Path(path)
    # no symlink following; a FIFO must not block the open (it is refused just below)
    flags = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0)
    try:
        fd = os.open(p, flags)
    except FileNotFoundError:
        raise ImportRefused(f"数据文件不存在：{p}") from None
    except OSError as exc:
        if p.is_symlink():
            raise ImportRefused(f"拒绝导入：{p} 是符号链接，只读取给定的普通文件") from None
        raise ImportRefused(f"无法打开数据文件 {p}：{exc.strerror or exc}") from None
    info = os.fstat(fd)
    if not stat.S_ISREG(info.st_mode):
        os.close(fd)
        raise ImportRefused(f"拒绝导入：{p} 不是普通文件")
    with os.fdopen(fd, "rb") as fh:
        if info.st_size > _MAX_FILE_BYTES:
            raise ImportRefused(f"拒绝导入：{p} 超过 {_MAX_FILE_BYTES // 2**20} MB")
        raw = fh.read()
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ImportRefused(f"数据文件 {p} 不是 UTF-8 编码：{exc.reason}") from None


def read_rows(path: str | Path) -> list[tuple[int, dict[str, str]]]:
    """CSV rows with their spreadsheet row numbers (the header is row 1)."""
    text = read_data_file(path)
    try:
        reader = csv.DictReader(io.StringIO(text, newline=""))
        return [(i + 2, {k: (v or "") for k, v in row.items() if k}) for i, row in enumerate(reader)]
    except csv.Error as exc:
        raise ImportRefused(f"数据文件 {path} 不是合法的 CSV：{exc}") from None


# ---- values ---------------------------------------------------------------------------------
_TIME_FORMATS = (
    "%Y/%m/%d %H:%M:%S", "%Y/%m/%d %H:%M", "%Y/%m/%d", "%Y-%m-%d %H:%M:%S", "%Y-%m-%d %H:%M",
    "%Y-%m-%dT%H:%M:%S", "%Y-%m-%d",
)


def parse_time(value: str) -> datetime | None:
    """A source timestamp (local time) or None when empty; `ImportRefused` when malformed."""
    text = value.strip()
    if not text:
        return None
    for fmt in _TIME_FORMATS:
        try:
            return datetime.strptime(text, fmt)
        except ValueError:
            continue
    raise ImportRefused(f"时间格式无法识别：{text!r}")


_REPLY_TIME_RE = re.compile(
    r"(?<!\d)((?:20)?\d{2})-(\d{1,2})-(\d{1,2})\s*(\d{1,2})[:：](\d{2})(?:[:：](\d{2}))?"
)
_REPEAT_RE = re.compile(r"(?:政府工单号[：:]?\s*|办件《|工单号[：:]?\s*)(\d{14})")
_SAME_CITIZEN_RE = re.compile(r"同一(?:位)?市民")


def reply_time(texts: list[str], after: datetime) -> datetime | None:
    """The latest time written in the handling notes that lies within 90 days after ``after``."""
    found: list[datetime] = []
    for text in texts:
        for m in _REPLY_TIME_RE.finditer(text):
            year = int(m.group(1)) + (2000 if len(m.group(1)) == 2 else 0)
            try:
                at = datetime(year, int(m.group(2)), int(m.group(3)), int(m.group(4)),
                              int(m.group(5)), int(m.group(6) or 0))
            except ValueError:
                continue
            if after <= at <= after + _REPLY_WINDOW:
                found.append(at)
    return max(found) if found else None


def repeat_of(text: str) -> str | None:
    """The earlier order a handling note says this one repeats (同一市民反映同一问题)."""
    if not _SAME_CITIZEN_RE.search(text):
        return None
    m = _REPEAT_RE.search(text)
    return m.group(1) if m else None


def _pick(row: dict[str, str], *names: str) -> str:
    for name in names:
        value = row.get(name, "").strip()
        if value:
            return value
    return ""


def _truthy(value: str) -> bool:
    return value.strip().lower() in ("1", "true", "yes", "y", "是", "涉企")


# ---- the timeline ---------------------------------------------------------------------------
def timeline_events(
    order: OrderIn, t: Timeline, *, actor: str, store: Store
) -> tuple[LifecycleEvent, ...]:
    """The lifecycle events a row tells, with deterministic ids (``<id>:import:<step>``)."""
    if t.unit is None:
        return ()
    oid = order.order_id
    source = {"source": actor}
    dispatched_at = max(t.dispatched_at or order.received_at, order.received_at)
    events = [LifecycleEvent(f"{oid}:import:派单", oid, ORDER_DISPATCHED, dispatched_at, actor,
                             {"unit": t.unit, "co_units": [], **source})]
    if not t.reply:
        return tuple(events)
    replied_at = max(t.replied_at or dispatched_at, dispatched_at)
    events.append(LifecycleEvent(f"{oid}:import:签收", oid, ORDER_ACCEPTED, dispatched_at, t.unit,
                                 {**source, "inferred": "有办结汇报即视为已签收"}))
    due = store.calendar.add_working_days(
        dispatched_at, store.policy.deadline_days(order.appeal_type, False, DEADLINE_HANDLE)
    )
    if t.reply_time_known and replied_at > due:
        events.append(deadline_event(oid, DEADLINE_HANDLE, due, due))
    events.append(LifecycleEvent(f"{oid}:import:反馈", oid, ORDER_REPLIED, replied_at, t.unit,
                                 {"reply": t.reply, "time_known": t.reply_time_known, **source}))
    if t.revisit:
        at = max(t.revisit_at or replied_at, replied_at)
        events.append(LifecycleEvent(f"{oid}:import:回访", oid, REVISIT_RECORDED, at,
                                     f"revisit:{actor}", {**t.revisit, **source}))
    elif t.closed:
        events.append(LifecycleEvent(f"{oid}:import:办结", oid, ORDER_CLOSED, replied_at, "system",
                                     {**source, "status": "归档"}))
    return tuple(events)


# ---- Haikou 12345 export --------------------------------------------------------------------
_HAIKOU_NEEDED = ("工单编号", "工单标题", "诉求内容", "工单发起时间", "处置单位", "工单状态")
_HAIKOU_EXTRA = (
    "诉求类型", "行业分类1级", "行业分类2级", "行业分类3级", "行业分类4级", "诉求区域", "辖区", "镇街",
    "村居", "工单状态", "处置单位", "工单最新处理描述", "市民答复要点",
)


def _haikou_area(row: dict[str, str]) -> str | None:
    parts = [row.get(k, "").strip() for k in ("辖区", "镇街")]
    if not parts[0] and row.get("诉求区域", "").strip() not in ("", "全市"):
        parts[0] = row["诉求区域"].strip()
    joined = " ".join(p for p in parts if p)
    return joined or None


def haikou_row(row: dict[str, str], *, actor: str, store: Store) -> ImportedOrder:
    """One row of the Haikou 12345 export."""
    missing = [c for c in _HAIKOU_NEEDED if c not in row]
    if missing:
        raise ImportRefused(f"缺少列：{'、'.join(missing)}")
    oid = _pick(row, "工单编号")
    received = parse_time(row["工单发起时间"])
    if not oid or received is None:
        raise ImportRefused("工单编号或工单发起时间为空")
    notes = _pick(row, "工单最新处理描述")
    extra: dict[str, Any] = {k: row.get(k, "").strip() for k in _HAIKOU_EXTRA}
    extra["source"] = "haikou12345"
    if (earlier := repeat_of(notes)) is not None:
        extra["repeat_of"] = earlier
    order = OrderIn(
        order_id=oid, channel="12345热线", received_at=received, title=row["工单标题"].strip(),
        text=row["诉求内容"].strip(), address=_pick(row, "诉求地址") or None,
        area=_haikou_area(row), appeal_type=map_appeal_type(row.get("诉求类型")), extra=extra,
    )
    reply = _pick(row, "办结汇报", "工单最新处理描述")
    status = row["工单状态"].strip()
    unit = row["处置单位"].strip() or (UNRECORDED_UNIT if status in CLOSED_STATUSES else None)
    dispatched = parse_time(row.get("派件时间", "")) or received
    replied = reply_time([notes, _pick(row, "办结汇报")], dispatched) if reply else None
    t = Timeline(unit=unit, dispatched_at=dispatched, reply=reply, replied_at=replied,
                 reply_time_known=replied is not None, closed=status in CLOSED_STATUSES)
    return ImportedOrder(order, timeline_events(order, t, actor=actor, store=store), unit)


# ---- plain CSV ------------------------------------------------------------------------------
_CSV_KNOWN = {
    "工单编号", "id", "工单标题", "title", "诉求内容", "text", "工单发起时间", "received_at", "处置单位",
    "unit", "派件时间", "dispatched_at", "办结汇报", "reply", "回复时间", "replied_at", "工单状态",
    "status", "来源渠道", "channel", "企业名称", "enterprise_name", "统一社会信用代码", "credit_code",
    "诉求地址", "address", "诉求区域", "area", "诉求类型", "appeal_type", "涉企", "is_enterprise",
    "回访联系", "contacted", "回访解决", "solved", "满意度", "satisfaction", "回访时间", "revisit_at",
}


def csv_row(row: dict[str, str], *, actor: str, store: Store) -> ImportedOrder:
    """One row of a plain CSV (Chinese or English column names, see the README)."""
    oid = _pick(row, "工单编号", "id")
    text = _pick(row, "诉求内容", "text")
    received = parse_time(_pick(row, "工单发起时间", "received_at"))
    if not oid or not text or received is None:
        raise ImportRefused("工单编号、诉求内容或工单发起时间为空")
    enterprise = _pick(row, "企业名称", "enterprise_name") or None
    credit = _pick(row, "统一社会信用代码", "credit_code") or None
    order = OrderIn(
        order_id=oid, channel=_pick(row, "来源渠道", "channel") or "12345热线",
        received_at=received, title=_pick(row, "工单标题", "title"), text=text,
        enterprise_name=enterprise, credit_code=credit,
        address=_pick(row, "诉求地址", "address") or None, area=_pick(row, "诉求区域", "area") or None,
        appeal_type=map_appeal_type(_pick(row, "诉求类型", "appeal_type")),
        is_enterprise=_truthy(_pick(row, "涉企", "is_enterprise")) or bool(enterprise or credit),
        extra={k: v for k, v in row.items() if k not in _CSV_KNOWN and v} | {"source": "csv"},
    )
    revisit = {k: v for k, v in (("contacted", _pick(row, "回访联系", "contacted")),
                                 ("solved", _pick(row, "回访解决", "solved")),
                                 ("satisfaction", _pick(row, "满意度", "satisfaction"))) if v}
    replied = parse_time(_pick(row, "回复时间", "replied_at"))
    unit = _pick(row, "处置单位", "unit") or None
    t = Timeline(
        unit=unit, dispatched_at=parse_time(_pick(row, "派件时间", "dispatched_at")),
        reply=_pick(row, "办结汇报", "reply"), replied_at=replied,
        reply_time_known=replied is not None,
        closed=_pick(row, "工单状态", "status") in CLOSED_STATUSES,
        revisit=revisit or None, revisit_at=parse_time(_pick(row, "回访时间", "revisit_at")),
    )
    return ImportedOrder(order, timeline_events(order, t, actor=actor, store=store), unit)


_PARSERS: dict[str, Callable[..., ImportedOrder]] = {"haikou12345": haikou_row, "csv": csv_row}


def import_file(store: Store, path: str | Path, fmt: str) -> ImportCounts:
    """Import ``path`` in format ``fmt`` into ``store``; returns what changed."""
    if fmt not in FORMATS:
        raise ImportRefused(f"不支持的格式“{fmt}”，可选：{'、'.join(FORMATS)}")
    actor = f"import:{fmt}"
    parse = _PARSERS[fmt]
    items: list[ImportedOrder] = []
    skipped: list[str] = []
    for row_no, row in read_rows(path):
        try:
            items.append(parse(row, actor=actor, store=store))
        except ImportRefused as exc:
            if fmt == "haikou12345" and str(exc).startswith("缺少列"):
                raise ImportRefused(f"数据文件 {path} 第 {row_no} 行{exc}") from None
            skipped.append(f"第 {row_no} 行：{exc}")
    new_units = register_historical_units(store, (i.unit for i in items if i.unit))
    counts = write_history(store, items, actor=actor)
    counts.new_units, counts.skipped_rows = new_units, skipped
    return counts
