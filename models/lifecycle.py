"""The work-order lifecycle (工单闭环) as an explicit state machine. Pure Python: no SQL, no Kafka.

收集 → 派单 → 签收 → 办理 → 反馈 → 回访 → 办结; 退单 → 改派 (never back to a unit that returned it;
after two returns the dispatcher decides); 未联系/未解决/不满意 → 重办 to the same unit; a second
重办 or a passed deadline (超期) → 督办. Every event carries an id: applying it twice changes
nothing.
An event that does not fit raises a named `TransitionRejected` with a Chinese reason.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from enum import StrEnum
from typing import Any

from models.calendar import WorkCalendar
from models.policy import (
    DEADLINE_ACCEPT,
    DEADLINE_HANDLE,
    DEADLINE_KINDS,
    DEADLINE_REVISIT,
    LifecyclePolicy,
    PolicyError,
    load_policy,
)
from models.records import APPEAL_TYPES

__all__ = [
    "AlreadyClosed", "DispatcherDecisionRequired", "InvalidEventData", "InvalidTransition",
    "LifecycleEvent", "LifecyclePolicy", "NotAssignedUnit", "OrderLifecycle", "PolicyError",
    "ReturnedUnitError", "RevisitRequired", "State", "TransitionRejected", "ActorNotAllowed",
    "UnknownOrder", "EVENT_KINDS", "EVENT_NAMES", "due_deadlines", "deadline_event",
    "load_policy", "local_naive",
    "DEADLINE_ACCEPT", "DEADLINE_HANDLE", "DEADLINE_REVISIT", "DEADLINE_KINDS",
]

#: China Standard Time; no daylight saving, so a fixed offset is exact.
CHINA_TZ = timezone(timedelta(hours=8), "Asia/Shanghai")


class State(StrEnum):
    RECEIVED = "收集"
    MANUAL = "待人工派单"
    DISPATCHED = "已派单"
    HANDLING = "办理中"
    REPLIED = "已反馈"
    RETURNED = "已退单"
    CLOSED = "已办结"


# ---- event kinds (事件) ------------------------------------------------------------------------
ORDER_RECEIVED = "OrderReceived"  # 收集
ORDER_DISPATCHED = "OrderDispatched"  # 派单 / 改派
SENT_TO_MANUAL_QUEUE = "SentToManualQueue"  # 转人工派单
ORDER_ACCEPTED = "OrderAccepted"  # 签收
ORDER_RETURNED = "OrderReturned"  # 退单
ORDER_REPLIED = "OrderReplied"  # 反馈 / 办结报告
REVISIT_RECORDED = "RevisitRecorded"  # 回访
ORDER_REOPENED = "OrderReopened"  # 重办 (derived)
ORDER_SUPERVISED = "OrderSupervised"  # 督办 (derived or by a dispatcher)
DEADLINE_PASSED = "DeadlinePassed"  # 超期
ORDER_CLOSED = "OrderClosed"  # 办结
EVENT_KINDS: tuple[str, ...] = (
    ORDER_RECEIVED, ORDER_DISPATCHED, SENT_TO_MANUAL_QUEUE, ORDER_ACCEPTED, ORDER_RETURNED,
    ORDER_REPLIED, REVISIT_RECORDED, ORDER_REOPENED, ORDER_SUPERVISED, DEADLINE_PASSED,
    ORDER_CLOSED,
)

CONTACTED = ("已联系", "未联系")
SOLVED = ("已解决", "未解决")
SATISFACTION = ("满意", "基本满意", "不满意")

SYSTEM = "system"
DISPATCHER_PREFIX = "dispatcher:"
REVISIT_PREFIX = "revisit:"

OPEN_STATES = frozenset(State) - {State.CLOSED}


def local_naive(at: datetime) -> datetime:
    """China local wall-clock time without tzinfo; naive input is taken as already local."""
    if at.tzinfo is None:
        return at
    return at.astimezone(CHINA_TZ).replace(tzinfo=None)


#: Limits of what an event may carry (the event log's column sizes and a sane time range).
MAX_EVENT_ID_CHARS = 200
MAX_ORDER_ID_CHARS = 64
MAX_DATA_DEPTH = 20
MIN_YEAR, MAX_YEAR = 2000, 2100


# ---- rejections (拒绝) --------------------------------------------------------------------------
class TransitionRejected(Exception):
    """An event that does not fit the order; recorded with its `code` and Chinese `reason`."""

    code = "rejected"

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class InvalidTransition(TransitionRejected):
    code = "invalid_transition"


class NotAssignedUnit(TransitionRejected):
    code = "not_assigned_unit"


class ReturnedUnitError(TransitionRejected):
    code = "returned_unit"


class DispatcherDecisionRequired(TransitionRejected):
    code = "dispatcher_decision_required"


class RevisitRequired(TransitionRejected):
    code = "revisit_required"


class InvalidEventData(TransitionRejected):
    code = "invalid_event_data"


class AlreadyClosed(TransitionRejected):
    code = "already_closed"


class ActorNotAllowed(TransitionRejected):
    """The actor's role may not record this event (e.g. a unit recording its own 回访)."""

    code = "actor_not_allowed"


class UnknownOrder(TransitionRejected):
    """An event for an order the store has never received."""

    code = "unknown_order"


# ---- the event record ---------------------------------------------------------------------------
@dataclass(frozen=True)
class LifecycleEvent:
    """One lifecycle event. ``actor``: a unit name, "dispatcher:<name>", "revisit:<name>" or
    "system". ``at`` is China local time (aware input is converted, then stored naive)."""

    event_id: str
    order_id: str
    kind: str
    at: datetime
    actor: str
    data: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "at", local_naive(self.at))

    def to_json(self) -> dict[str, Any]:
        return {
            "event_id": self.event_id,
            "order_id": self.order_id,
            "kind": self.kind,
            "at": self.at.isoformat(),
            "actor": self.actor,
            "data": self.data,
        }

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> LifecycleEvent:
        """Parse a JSON event; raises `InvalidEventData` naming the bad field."""
        for name in ("event_id", "order_id", "kind", "at", "actor"):
            if not isinstance(raw.get(name), str) or not raw[name].strip():
                raise InvalidEventData(f"事件缺少字段或字段无效: {name}")
            _check_storable(raw[name], name)
        for name, limit in (("event_id", MAX_EVENT_ID_CHARS), ("order_id", MAX_ORDER_ID_CHARS)):
            if len(raw[name]) > limit:
                raise InvalidEventData(f"事件字段 {name} 超过 {limit} 字")
        data = raw.get("data") or {}
        if not isinstance(data, dict):
            raise InvalidEventData("事件字段 data 应为对象")
        _check_json(data, "data", depth=0)
        try:
            at = datetime.fromisoformat(raw["at"])
        except ValueError:
            raise InvalidEventData(f"事件时间格式无效: {raw['at']!r}") from None
        return cls(raw["event_id"], raw["order_id"], raw["kind"], at, raw["actor"], dict(data))

    def derive(self, kind: str, suffix: str, data: dict[str, Any]) -> LifecycleEvent:
        """An event the state machine records as a consequence of this one."""
        event_id = f"{self.event_id}:{suffix}"
        return LifecycleEvent(event_id, self.order_id, kind, self.at, SYSTEM, data)


def is_dispatcher(actor: str) -> bool:
    return actor.startswith(DISPATCHER_PREFIX)


def deadline_event(order_id: str, kind: str, due: datetime, now: datetime) -> LifecycleEvent:
    """The DeadlinePassed (超期) event for one deadline; its id is fixed by order, kind and due,
    so every worker raising it for the same deadline produces the same event."""
    return LifecycleEvent(
        event_id=f"{order_id}:超期:{kind}:{due.isoformat()}",
        order_id=order_id,
        kind=DEADLINE_PASSED,
        at=now,
        actor=SYSTEM,
        data={"deadline": kind, "due": due.isoformat()},
    )


# ---- payload checks (parsing untrusted JSON events) ---------------------------------------------
def _check_encodable(value: str, name: str) -> None:
    """No lone surrogates (from `\\ud800`-style JSON escapes): they cannot be stored as UTF-8."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidEventData(f"事件字段 {name} 含无法编码的字符") from None


def _check_storable(value: str, name: str) -> None:
    """A column value: encodable and without NUL (PostgreSQL text cannot hold it; JSON data
    can, escaped)."""
    _check_encodable(value, name)
    if "\x00" in value:
        raise InvalidEventData(f"事件字段 {name} 含空字符（\\x00）")


def storable_text(value: str) -> str:
    """``value`` as a column can hold it, for recording what a rejected event carried: NUL and
    characters UTF-8 cannot encode (lone surrogates) become backslash escapes; any other text
    is returned unchanged."""
    if "\x00" not in value:
        try:
            value.encode("utf-8")
            return value
        except UnicodeEncodeError:
            pass
    return value.encode("utf-8", "backslashreplace").decode("utf-8").replace("\x00", "\\x00")


def _check_json(value: Any, name: str, *, depth: int) -> None:
    """Plain JSON a database can store: finite numbers, storable strings, bounded depth."""
    if depth > MAX_DATA_DEPTH:
        raise InvalidEventData(f"事件字段 {name} 嵌套过深")
    if isinstance(value, str):
        _check_encodable(value, name)
    elif isinstance(value, float) and not math.isfinite(value):
        raise InvalidEventData(f"事件字段 {name} 含非有限数值 {value!r}")
    elif isinstance(value, dict):
        for key, item in value.items():
            _check_encodable(str(key), name)
            _check_json(item, f"{name}.{key}", depth=depth + 1)
    elif isinstance(value, list):
        for item in value:
            _check_json(item, name, depth=depth + 1)


# ---- data checks --------------------------------------------------------------------------------
def _text(data: dict[str, Any], name: str, *, required: bool = True) -> str | None:
    value = data.get(name)
    if value is None and not required:
        return None
    if not isinstance(value, str) or not value.strip():
        raise InvalidEventData(f"缺少或无效的字段 {name}")
    return value.strip()


def _choice(data: dict[str, Any], name: str, allowed: tuple[str, ...]) -> str:
    value = data.get(name)
    if value not in allowed:
        raise InvalidEventData(f"字段 {name} 应为 {'/'.join(allowed)} 之一，实际为 {value!r}")
    return str(value)


def _flag(data: dict[str, Any], name: str) -> bool:
    value = data.get(name, False)
    if not isinstance(value, bool):
        raise InvalidEventData(f"字段 {name} 应为 true/false，实际为 {value!r}")
    return value


def _check_appeal_type(value: Any) -> None:
    if value not in APPEAL_TYPES:
        raise InvalidEventData(f"诉求类型应为 {'/'.join(APPEAL_TYPES)} 之一，实际为 {value!r}")


def _units(data: dict[str, Any], name: str) -> list[str]:
    value = data.get(name) or []
    if not isinstance(value, list) or not all(isinstance(u, str) and u.strip() for u in value):
        raise InvalidEventData(f"字段 {name} 应为单位名称列表")
    return list(dict.fromkeys(u.strip() for u in value))


# ---- the aggregate ------------------------------------------------------------------------------
@dataclass
class OrderLifecycle:
    """One work order's lifecycle state. `apply` is the only way to change it."""

    order_id: str
    is_enterprise: bool = False
    appeal_type: str | None = None
    urgent: bool = False
    state: State = State.RECEIVED
    unit: str | None = None  # current lead unit (主办)
    co_units: list[str] = field(default_factory=list)  # 协办
    returned_units: list[str] = field(default_factory=list)  # units that returned it (退单)
    return_count: int = 0
    reopen_count: int = 0
    supervised: bool = False  # 督办
    overdue: set[str] = field(default_factory=set)  # deadline kinds passed in the current round
    deadlines: dict[str, datetime] = field(default_factory=dict)  # pending deadlines
    applied_event_ids: set[str] = field(default_factory=set)
    version: int = 0

    @property
    def is_open(self) -> bool:
        return self.state != State.CLOSED

    @classmethod
    def replay(
        cls,
        order_id: str,
        events: Iterable[LifecycleEvent],
        *,
        calendar: WorkCalendar,
        policy: LifecyclePolicy,
    ) -> OrderLifecycle:
        """Rebuild from recorded events (derived events are re-derived, not re-applied)."""
        lc = cls(order_id=order_id)
        for event in events:
            if event.event_id not in lc.applied_event_ids:
                lc.apply(event, calendar=calendar, policy=policy)
        return lc

    def apply(
        self, event: LifecycleEvent, *, calendar: WorkCalendar, policy: LifecyclePolicy
    ) -> list[LifecycleEvent]:
        """Apply ``event``; return the events recorded (it plus derived ones), or [] when its id
        was already applied. Raises a `TransitionRejected` subclass and changes nothing when the
        event does not fit."""
        if event.event_id in self.applied_event_ids:
            return []
        if event.order_id != self.order_id:
            raise InvalidEventData(f"事件工单编号 {event.order_id} 与工单 {self.order_id} 不符")
        handler = _HANDLERS.get(event.kind)
        if handler is None:
            raise InvalidEventData(f"未知事件类型 {storable_text(event.kind)}")
        if not MIN_YEAR <= event.at.year <= MAX_YEAR:
            raise InvalidEventData(f"事件时间超出范围：{event.at.year} 年")
        if event.kind != ORDER_RECEIVED and self.version == 0:
            raise InvalidTransition("工单尚未收集，不能处理该事件")
        if self.state == State.CLOSED and self.version > 0:
            raise AlreadyClosed("工单已办结，不再接受事件")
        staged = _copy(self)
        derived = handler(staged, event, _Ctx(calendar, policy))
        recorded = [event, *derived]
        staged.applied_event_ids.update(e.event_id for e in recorded)
        staged.version += len(recorded)
        self.__dict__.update(staged.__dict__)
        return recorded

    # -- helpers used by the transition functions
    def require_state(self, event: LifecycleEvent, *allowed: State) -> None:
        if self.state not in allowed:
            names = "/".join(s.value for s in allowed)
            raise InvalidTransition(
                f"{EVENT_NAMES[event.kind]}仅在「{names}」状态下有效，工单当前为「{self.state.value}」"
            )

    def require_holder(self, event: LifecycleEvent) -> None:
        """The lead unit itself, or a dispatcher recording on its behalf (代为操作)."""
        if is_dispatcher(event.actor):
            return
        if event.actor != self.unit:
            raise NotAssignedUnit(
                f"{event.actor} 不是该工单的主办单位（当前主办：{self.unit or '无'}），"
                f"不能{EVENT_NAMES[event.kind]}"
            )

    def set_deadline(self, kind: str, start: datetime, ctx: _Ctx) -> None:
        days = ctx.policy.deadline_days(self.appeal_type, self.urgent, kind)
        self.deadlines[kind] = ctx.calendar.add_working_days(start, days)
        self.overdue.discard(kind)

    def clear_deadlines(self, *kinds: str) -> None:
        for kind in kinds:
            self.deadlines.pop(kind, None)


@dataclass(frozen=True)
class _Ctx:
    calendar: WorkCalendar
    policy: LifecyclePolicy


def _copy(lc: OrderLifecycle) -> OrderLifecycle:
    return OrderLifecycle(
        order_id=lc.order_id, is_enterprise=lc.is_enterprise, appeal_type=lc.appeal_type,
        urgent=lc.urgent, state=lc.state, unit=lc.unit, co_units=list(lc.co_units),
        returned_units=list(lc.returned_units), return_count=lc.return_count,
        reopen_count=lc.reopen_count, supervised=lc.supervised, overdue=set(lc.overdue),
        deadlines=dict(lc.deadlines), applied_event_ids=set(lc.applied_event_ids),
        version=lc.version,
    )


#: Glossary: event kind -> the Chinese term shown to people (事件名称).
EVENT_NAMES: dict[str, str] = {
    ORDER_RECEIVED: "收集", ORDER_DISPATCHED: "派单", SENT_TO_MANUAL_QUEUE: "转人工派单",
    ORDER_ACCEPTED: "签收", ORDER_RETURNED: "退单", ORDER_REPLIED: "反馈",
    REVISIT_RECORDED: "回访", ORDER_REOPENED: "重办", ORDER_SUPERVISED: "督办",
    DEADLINE_PASSED: "超期", ORDER_CLOSED: "办结",
}

Transition = Callable[[OrderLifecycle, LifecycleEvent, _Ctx], list[LifecycleEvent]]


# ---- transitions --------------------------------------------------------------------------------
def _received(lc: OrderLifecycle, e: LifecycleEvent, ctx: _Ctx) -> list[LifecycleEvent]:
    if lc.version > 0:
        raise InvalidTransition("工单已收集，不能重复收集")
    appeal_type = e.data.get("appeal_type")
    if appeal_type is not None:
        _check_appeal_type(appeal_type)
    lc.is_enterprise = _flag(e.data, "is_enterprise")
    lc.urgent = _flag(e.data, "urgent")
    lc.appeal_type = appeal_type
    lc.state = State.RECEIVED
    return []


def _dispatched(lc: OrderLifecycle, e: LifecycleEvent, ctx: _Ctx) -> list[LifecycleEvent]:
    lc.require_state(e, State.RECEIVED, State.MANUAL, State.RETURNED)
    unit = _text(e.data, "unit")
    assert unit is not None
    co_units = [u for u in _units(e.data, "co_units") if u != unit]
    by_dispatcher = _flag(e.data, "by_dispatcher")
    _flag(e.data, "manual")
    if by_dispatcher and not is_dispatcher(e.actor):
        raise ActorNotAllowed(f"{e.actor} 不是派单员，不能以派单员身份派单")
    if unit in lc.returned_units:
        raise ReturnedUnitError(f"{unit} 已退回过该工单，不能再派给该单位")
    if lc.return_count >= ctx.policy.dispatcher_after_returns and not by_dispatcher:
        raise DispatcherDecisionRequired(
            f"该工单已退单 {lc.return_count} 次，须由派单员人工决定承办单位"
        )
    appeal_type = e.data.get("appeal_type")
    if appeal_type is not None:
        _check_appeal_type(appeal_type)
        lc.appeal_type = appeal_type
    lc.state, lc.unit, lc.co_units = State.DISPATCHED, unit, co_units
    lc.clear_deadlines(DEADLINE_HANDLE, DEADLINE_REVISIT)
    lc.set_deadline(DEADLINE_ACCEPT, e.at, ctx)
    return []


def _to_manual(lc: OrderLifecycle, e: LifecycleEvent, ctx: _Ctx) -> list[LifecycleEvent]:
    lc.require_state(e, State.RECEIVED, State.RETURNED)
    _text(e.data, "reason")
    suggestions = e.data.get("suggestions", [])
    if not isinstance(suggestions, list):
        raise InvalidEventData("字段 suggestions 应为列表")
    lc.state, lc.unit, lc.co_units = State.MANUAL, None, []
    lc.clear_deadlines(*DEADLINE_KINDS)
    return []


def _accepted(lc: OrderLifecycle, e: LifecycleEvent, ctx: _Ctx) -> list[LifecycleEvent]:
    lc.require_state(e, State.DISPATCHED)
    lc.require_holder(e)
    lc.state = State.HANDLING
    lc.clear_deadlines(DEADLINE_ACCEPT)
    lc.set_deadline(DEADLINE_HANDLE, e.at, ctx)
    return []


def _returned(lc: OrderLifecycle, e: LifecycleEvent, ctx: _Ctx) -> list[LifecycleEvent]:
    lc.require_state(e, State.DISPATCHED, State.HANDLING)
    lc.require_holder(e)
    _text(e.data, "reason")
    _flag(e.data, "beyond_power")
    suggested = _text(e.data, "suggested_unit", required=False)
    if suggested is not None and suggested == lc.unit:
        raise InvalidEventData("建议改派单位不能是退单单位本身")
    assert lc.unit is not None
    returned_by = lc.unit
    lc.returned_units.append(returned_by)
    lc.return_count += 1
    lc.state, lc.unit, lc.co_units = State.RETURNED, None, []
    lc.clear_deadlines(*DEADLINE_KINDS)
    if lc.return_count < ctx.policy.dispatcher_after_returns:
        return []
    manual = e.derive(SENT_TO_MANUAL_QUEUE, "转人工", {
        "reason": f"已退单 {lc.return_count} 次，由派单员决定承办单位",
        "suggestions": [suggested] if suggested else [],
        "returned_units": list(lc.returned_units),
    })
    _to_manual(lc, manual, ctx)
    return [manual]


def _replied(lc: OrderLifecycle, e: LifecycleEvent, ctx: _Ctx) -> list[LifecycleEvent]:
    if lc.state == State.DISPATCHED:
        raise InvalidTransition("工单尚未签收，请先签收再反馈")
    lc.require_state(e, State.HANDLING)
    lc.require_holder(e)
    _text(e.data, "reply")
    lc.state = State.REPLIED
    lc.clear_deadlines(DEADLINE_HANDLE)
    lc.set_deadline(DEADLINE_REVISIT, e.at, ctx)
    return []


def _revisit(lc: OrderLifecycle, e: LifecycleEvent, ctx: _Ctx) -> list[LifecycleEvent]:
    lc.require_state(e, State.REPLIED)
    if not (e.actor.startswith(REVISIT_PREFIX) or is_dispatcher(e.actor)):
        raise ActorNotAllowed(f"{e.actor} 不是回访员或派单员，不能记录回访")
    contacted = _choice(e.data, "contacted", CONTACTED)
    unanswered = e.data.get("solved") is None and e.data.get("satisfaction") is None
    if contacted == "未联系" and unanswered:
        solved, satisfaction = None, None
    else:
        solved = _choice(e.data, "solved", SOLVED)
        satisfaction = _choice(e.data, "satisfaction", SATISFACTION)
    lc.clear_deadlines(DEADLINE_REVISIT)
    if contacted == "已联系" and solved == "已解决" and satisfaction in ("满意", "基本满意"):
        lc.state = State.CLOSED
        lc.clear_deadlines(*DEADLINE_KINDS)
        return []
    because = [v for v in (contacted, solved, satisfaction) if v in _REOPEN_VALUES]
    return _reopen(lc, e, ctx, because)


_REOPEN_VALUES = frozenset({"未联系", "未解决", "不满意"})


def _reopen(
    lc: OrderLifecycle, e: LifecycleEvent, ctx: _Ctx, because: list[str]
) -> list[LifecycleEvent]:
    lc.reopen_count += 1
    lc.state = State.DISPATCHED
    lc.set_deadline(DEADLINE_ACCEPT, e.at, ctx)
    reopened = e.derive(ORDER_REOPENED, "重办", {
        "unit": lc.unit, "reopen_count": lc.reopen_count, "because": because,
    })
    if lc.reopen_count < ctx.policy.supervise_after_reopens or lc.supervised:
        return [reopened]
    lc.supervised = True
    supervised = e.derive(ORDER_SUPERVISED, "督办", {
        "unit": lc.unit, "reason": f"第 {lc.reopen_count} 次重办（{'、'.join(because)}）",
    })
    return [reopened, supervised]


def _supervised(lc: OrderLifecycle, e: LifecycleEvent, ctx: _Ctx) -> list[LifecycleEvent]:
    if not is_dispatcher(e.actor):
        raise ActorNotAllowed(f"{e.actor} 不是派单员，不能督办")
    _text(e.data, "reason")
    lc.supervised = True
    return []


def _deadline_passed(lc: OrderLifecycle, e: LifecycleEvent, ctx: _Ctx) -> list[LifecycleEvent]:
    kind = _choice(e.data, "deadline", DEADLINE_KINDS)
    try:
        due = datetime.fromisoformat(str(e.data.get("due")))
    except ValueError:
        raise InvalidEventData(f"字段 due 应为 ISO 时间，实际为 {e.data.get('due')!r}") from None
    pending = lc.deadlines.get(kind)
    if pending is None or pending != local_naive(due):
        raise InvalidTransition(f"{kind}时限（{due.isoformat()}）已不在计时中")
    if kind in lc.overdue:
        raise InvalidTransition(f"{kind}超期已记录")
    if e.at < pending:
        raise InvalidEventData(f"{kind}时限 {pending.isoformat()} 尚未到期")
    lc.overdue.add(kind)
    if lc.supervised:
        return []
    lc.supervised = True
    return [e.derive(ORDER_SUPERVISED, "督办", {
        "unit": lc.unit, "reason": f"{kind}超期（时限 {pending.isoformat()}）",
    })]


def _closed(lc: OrderLifecycle, e: LifecycleEvent, ctx: _Ctx) -> list[LifecycleEvent]:
    lc.require_state(e, State.REPLIED)
    if lc.is_enterprise:
        raise RevisitRequired("涉企工单须全量回访，回访满意后方可办结")
    if not (is_dispatcher(e.actor) or e.actor == SYSTEM):
        raise ActorNotAllowed(f"{e.actor} 不能直接办结工单")
    lc.state = State.CLOSED
    lc.clear_deadlines(*DEADLINE_KINDS)
    return []


def _derived_only(lc: OrderLifecycle, e: LifecycleEvent, ctx: _Ctx) -> list[LifecycleEvent]:
    raise InvalidTransition("重办由回访结果自动产生，不能直接提交")


_HANDLERS: dict[str, Transition] = {
    ORDER_RECEIVED: _received,
    ORDER_DISPATCHED: _dispatched,
    SENT_TO_MANUAL_QUEUE: _to_manual,
    ORDER_ACCEPTED: _accepted,
    ORDER_RETURNED: _returned,
    ORDER_REPLIED: _replied,
    REVISIT_RECORDED: _revisit,
    ORDER_REOPENED: _derived_only,
    ORDER_SUPERVISED: _supervised,
    DEADLINE_PASSED: _deadline_passed,
    ORDER_CLOSED: _closed,
}


def due_deadlines(lc: OrderLifecycle, now: datetime) -> list[tuple[str, datetime]]:
    """Deadlines passed at ``now`` whose 超期 is not yet recorded, earliest first."""
    if not lc.is_open:
        return []
    moment = local_naive(now)
    passed = [(k, due) for k, due in lc.deadlines.items() if due <= moment and k not in lc.overdue]
    return sorted(passed, key=lambda item: item[1])
