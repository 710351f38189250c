"""SQLModel tables (数据表). The same code runs on SQLite (embedded) and PostgreSQL (production).

Times are China local wall-clock time stored without tzinfo (see `models.lifecycle.local_naive`).
JSON columns hold lists and small dicts; they are always replaced, never mutated in place.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Column, DateTime, Text
from sqlmodel import Field, SQLModel

from models.lifecycle import CHINA_TZ


def now_local() -> datetime:
    """The current China local time, naive, to the second."""
    return datetime.now(CHINA_TZ).replace(tzinfo=None, microsecond=0)


def _time(*, index: bool = False, nullable: bool = False, now: bool = False) -> Any:
    """A naive (local wall-clock) DateTime column, whatever the SQLModel version's default."""
    column = Column(DateTime(timezone=False), index=index, nullable=nullable)
    if now:
        return Field(default_factory=now_local, sa_column=column)
    if nullable:
        return Field(default=None, sa_column=column)
    return Field(sa_column=column)


def _json_list() -> Any:
    return Field(default_factory=list, sa_column=Column(JSON, nullable=False))


def _json_dict() -> Any:
    return Field(default_factory=dict, sa_column=Column(JSON, nullable=False))


class WorkOrder(SQLModel, table=True):
    """A work order (工单) with its lifecycle snapshot; the event log is `EventRow`."""

    __tablename__ = "work_order"

    id: str = Field(primary_key=True, max_length=64)  # 工单编号
    channel: str  # 来源渠道
    received_at: datetime = _time(index=True)
    title: str = ""
    text: str = Field(sa_column=Column(Text, nullable=False))  # 诉求内容
    caller: str | None = None
    enterprise_name: str | None = Field(default=None, index=True)
    credit_code: str | None = Field(default=None, index=True)  # 统一社会信用代码
    address: str | None = None
    area: str | None = None
    appeal_type: str | None = None  # 诉求类型
    is_enterprise: bool = False  # 涉企
    legacy: bool = False  # 历史遗留
    urgent: bool = False
    extra: dict[str, Any] = _json_dict()
    content_hash: str = Field(max_length=64)
    # lifecycle snapshot (工单状态)
    state: str = Field(index=True)
    lead_unit: str | None = Field(default=None, index=True)  # 主办
    co_units: list[str] = _json_list()  # 协办
    returned_units: list[str] = _json_list()
    return_count: int = 0
    reopen_count: int = 0
    supervised: bool = False  # 督办
    overdue: list[str] = _json_list()  # deadline kinds passed this round
    deadlines: dict[str, str] = _json_dict()  # kind -> ISO due time, pending only
    next_due: datetime | None = _time(index=True, nullable=True)  # earliest not-yet-overdue due
    version: int = 0
    # routing
    model_version: str | None = None
    confidence: float | None = None
    created_at: datetime = _time(now=True)
    updated_at: datetime = _time(now=True)


class Unit(SQLModel, table=True):
    """A handling unit (承办单位): line bureau (条线), 街镇 (territorial) or historical."""

    __tablename__ = "unit"

    code: str = Field(primary_key=True, max_length=64)
    name: str = Field(unique=True, index=True)
    kind: str  # line | territorial | historical
    duties: str = Field(default="", sa_column=Column(Text, nullable=False))
    areas: list[str] = _json_list()
    active: bool = True


class DispatchDecisionRow(SQLModel, table=True):
    """One dispatch decision (派单决定) with its audit trail."""

    __tablename__ = "dispatch_decision"

    id: int | None = Field(default=None, primary_key=True)
    order_id: str = Field(index=True, max_length=64)
    at: datetime = _time(now=True)
    lead_unit: str | None = None
    co_units: list[str] = _json_list()
    manual: bool = False
    rules: list[str] = _json_list()
    reasons: list[str] = _json_list()
    model_version: str = ""
    candidates: list[dict[str, Any]] = _json_list()
    terms: list[list[Any]] = _json_list()
    against: list[list[Any]] = _json_list()
    line_unit: str | None = None
    territorial_unit: str | None = None
    line_first: bool = False
    trigger: str | None = None
    appeal_type: str | None = None
    confidence: float = 0.0


class EventRow(SQLModel, table=True):
    """The append-only event log (事件日志); rejected events are recorded too."""

    __tablename__ = "event_log"

    seq: int | None = Field(default=None, primary_key=True)
    event_id: str = Field(unique=True, index=True, max_length=200)
    order_id: str = Field(index=True, max_length=64)
    kind: str = Field(index=True)
    at: datetime = _time()
    actor: str
    data: dict[str, Any] = _json_dict()
    accepted: bool = True
    rejection_code: str | None = None
    rejection_reason: str | None = None
    recorded_at: datetime = _time(now=True)


class RevisitRow(SQLModel, table=True):
    """A revisit (回访) result, one row per accepted RevisitRecorded event."""

    __tablename__ = "revisit"

    id: int | None = Field(default=None, primary_key=True)
    order_id: str = Field(index=True, max_length=64)
    at: datetime = _time()
    by: str  # 回访员
    contacted: str  # 已联系 / 未联系
    solved: str | None = None  # 已解决 / 未解决
    satisfaction: str | None = None  # 满意 / 基本满意 / 不满意
    event_id: str = Field(unique=True, max_length=200)


class DeadLetter(SQLModel, table=True):
    """Input that could not be processed (死信), kept with the reason; nothing is dropped."""

    __tablename__ = "dead_letter"

    id: int | None = Field(default=None, primary_key=True)
    at: datetime = _time(index=True, now=True)
    source: str
    order_id: str | None = Field(default=None, index=True)
    reason: str = Field(sa_column=Column(Text, nullable=False))
    payload: str = Field(sa_column=Column(Text, nullable=False))


TRAINING_SOURCES: tuple[str, ...] = ("manual_dispatch", "return_correction")


class TrainingLabel(SQLModel, table=True):
    """A unit label from a person (人工派单 or a 退单 correction), for retraining."""

    __tablename__ = "training_label"

    id: int | None = Field(default=None, primary_key=True)
    order_id: str = Field(index=True, max_length=64)
    text: str = Field(sa_column=Column(Text, nullable=False))
    unit: str
    source: str  # manual_dispatch | return_correction
    at: datetime = _time(now=True)
    actor: str
