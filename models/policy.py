"""Lifecycle policy (工单闭环配置): deadlines (时限) per 诉求类型 and urgency in working days, the
counts that trigger 督办 and the dispatcher's decision, and the holiday calendar. Loaded from YAML
(`routing_rules/jinshan/lifecycle.yaml`) and validated with errors that name the file and key."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import yaml

from models.calendar import WorkCalendar
from models.records import APPEAL_TYPES

#: Deadline kinds (时限种类), as recorded in events and stored on the order.
DEADLINE_ACCEPT = "签收"
DEADLINE_HANDLE = "办结"
DEADLINE_REVISIT = "回访"
DEADLINE_KINDS: tuple[str, ...] = (DEADLINE_ACCEPT, DEADLINE_HANDLE, DEADLINE_REVISIT)

#: YAML key -> deadline kind.
_KIND_KEYS: dict[str, str] = {
    "accept": DEADLINE_ACCEPT,
    "handle": DEADLINE_HANDLE,
    "revisit": DEADLINE_REVISIT,
}
_URGENCY_KEYS: tuple[str, ...] = ("normal", "urgent")

_PROJECT_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_POLICY_PATH = _PROJECT_ROOT / "routing_rules" / "jinshan" / "lifecycle.yaml"


class _Loader(yaml.SafeLoader):
    """Safe loader that keeps dates as strings, so a bad date is reported with its key."""


_Loader.yaml_implicit_resolvers = {
    first: [(tag, rx) for tag, rx in resolvers if tag != "tag:yaml.org,2002:timestamp"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}


class PolicyError(ValueError):
    """A lifecycle policy file is invalid; the message names the file, the key and the line."""


@dataclass(frozen=True)
class DeadlineDays:
    """Working days allowed for 签收 (accept), 办结 (handle) and 回访 (revisit)."""

    accept: int
    handle: int
    revisit: int

    def days(self, kind: str) -> int:
        return {DEADLINE_ACCEPT: self.accept, DEADLINE_HANDLE: self.handle,
                DEADLINE_REVISIT: self.revisit}[kind]


@dataclass(frozen=True)
class LifecyclePolicy:
    """Validated lifecycle configuration."""

    #: (诉求类型, urgent) -> working days per deadline kind
    deadlines: Mapping[tuple[str, bool], DeadlineDays]
    default_appeal_type: str = "投诉"
    supervise_after_reopens: int = 2  # 第二次重办即督办
    dispatcher_after_returns: int = 2  # 两次退单后由派单员决定
    holidays: frozenset[date] = field(default_factory=frozenset)
    makeup_workdays: frozenset[date] = field(default_factory=frozenset)
    source: str = "<memory>"

    def deadline_days(self, appeal_type: str | None, urgent: bool, kind: str) -> int:
        """Working days allowed for ``kind``; an unknown 诉求类型 uses the default type."""
        key = appeal_type if appeal_type in APPEAL_TYPES else self.default_appeal_type
        return self.deadlines[(key, urgent)].days(kind)

    def calendar(self) -> WorkCalendar:
        return WorkCalendar(self.holidays, self.makeup_workdays)


class _Locator:
    """Finds the line of a key path in the YAML text, for error messages."""

    def __init__(self, text: str) -> None:
        try:
            self.root: yaml.Node | None = yaml.compose(text)
        except yaml.YAMLError:
            self.root = None

    def line(self, path: tuple[str | int, ...]) -> int | None:
        node = self.root
        line = node.start_mark.line + 1 if node is not None else None
        for part in path:
            node = _child(node, part)
            if node is None:
                break
            line = node.start_mark.line + 1
        return line


def _child(node: yaml.Node | None, part: str | int) -> yaml.Node | None:
    if isinstance(node, yaml.MappingNode):
        for key, value in node.value:
            if key.value == str(part):
                return value
    if isinstance(node, yaml.SequenceNode) and isinstance(part, int) and part < len(node.value):
        item: yaml.Node = node.value[part]
        return item
    return None


class _Checker:
    def __init__(self, path: Path, text: str) -> None:
        self.path = path
        self.locator = _Locator(text)

    def fail(self, key: tuple[str | int, ...], message: str) -> PolicyError:
        dotted = ".".join(str(k) for k in key) or "<root>"
        line = self.locator.line(key)
        where = f"{self.path}:{line}" if line else str(self.path)
        return PolicyError(f"{where}: 配置项 {dotted}: {message}")

    def mapping(self, value: Any, key: tuple[str | int, ...]) -> dict[str, Any]:
        if not isinstance(value, dict):
            raise self.fail(key, "应为映射 (key: value)")
        return value

    def count(self, value: Any, key: tuple[str | int, ...], minimum: int) -> int:
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            raise self.fail(key, f"应为不小于 {minimum} 的整数，实际为 {value!r}")
        return value

    def day(self, value: Any, key: tuple[str | int, ...]) -> date:
        if isinstance(value, date):
            return value
        try:
            return date.fromisoformat(str(value))
        except ValueError:
            raise self.fail(key, f"应为日期 YYYY-MM-DD，实际为 {value!r}") from None


def load_policy(path: str | Path = DEFAULT_POLICY_PATH) -> LifecyclePolicy:
    """Read and validate a lifecycle policy file; raise `PolicyError` naming file, key and line."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise PolicyError(f"{p}: 无法读取闭环配置文件: {exc}") from exc
    try:
        raw = yaml.load(text, Loader=_Loader)  # noqa: S506 (a SafeLoader)
    except yaml.YAMLError as exc:
        raise PolicyError(f"{p}: YAML 格式错误: {exc}") from exc
    return parse_policy(raw, source=p, text=text)


def parse_policy(raw: Any, *, source: Path, text: str = "") -> LifecyclePolicy:
    check = _Checker(source, text)
    top = check.mapping(raw, ())
    known = {"deadlines", "default_appeal_type", "supervise_after_reopens",
             "dispatcher_after_returns", "holidays", "makeup_workdays"}
    for key in top:
        if key not in known:
            raise check.fail((key,), f"未知配置项，可用: {', '.join(sorted(known))}")
    default_type = top.get("default_appeal_type", "投诉")
    if default_type not in APPEAL_TYPES:
        raise check.fail(("default_appeal_type",), f"应为 {'/'.join(APPEAL_TYPES)} 之一")
    holidays = _holidays(check, top.get("holidays", []))
    makeup = _makeup_days(check, top.get("makeup_workdays", []))
    clash = holidays & makeup
    if clash:
        days = ", ".join(d.isoformat() for d in sorted(clash))
        raise check.fail(("makeup_workdays",), f"日期同时配置为节假日和调休上班日: {days}")
    return LifecyclePolicy(
        deadlines=_deadlines(check, top.get("deadlines")),
        default_appeal_type=default_type,
        supervise_after_reopens=check.count(
            top.get("supervise_after_reopens", 2), ("supervise_after_reopens",), 1),
        dispatcher_after_returns=check.count(
            top.get("dispatcher_after_returns", 2), ("dispatcher_after_returns",), 1),
        holidays=frozenset(holidays),
        makeup_workdays=frozenset(makeup),
        source=str(source),
    )


def _deadlines(check: _Checker, raw: Any) -> dict[tuple[str, bool], DeadlineDays]:
    table = check.mapping(raw, ("deadlines",))
    out: dict[tuple[str, bool], DeadlineDays] = {}
    for appeal_type in table:
        if appeal_type not in APPEAL_TYPES:
            allowed = "/".join(APPEAL_TYPES)
            raise check.fail(("deadlines", appeal_type), f"未知诉求类型，应为 {allowed}")
    for appeal_type in APPEAL_TYPES:
        if appeal_type not in table:
            raise check.fail(("deadlines",), f"缺少诉求类型 {appeal_type} 的时限")
    for appeal_type, per_urgency in table.items():
        levels = check.mapping(per_urgency, ("deadlines", appeal_type))
        for urgency in _URGENCY_KEYS:
            key: tuple[str | int, ...] = ("deadlines", appeal_type, urgency)
            if urgency not in levels:
                raise check.fail(key[:2], f"缺少 {urgency} 时限")
            days = check.mapping(levels[urgency], key)
            for name in _KIND_KEYS:
                if name not in days:
                    raise check.fail(key, f"缺少 {name} ({_KIND_KEYS[name]}) 工作日数")
            extra = set(days) - set(_KIND_KEYS)
            if extra:
                raise check.fail(key, f"未知时限 {', '.join(sorted(map(str, extra)))}")
            out[(appeal_type, urgency == "urgent")] = DeadlineDays(
                **{name: check.count(days[name], (*key, name), 1) for name in _KIND_KEYS}
            )
    return out


def _holidays(check: _Checker, raw: Any) -> set[date]:
    if not isinstance(raw, list):
        raise check.fail(("holidays",), "应为列表")
    days: set[date] = set()
    for i, item in enumerate(raw):
        key: tuple[str | int, ...] = ("holidays", i)
        entry = check.mapping(item, key)
        if "from" not in entry or "to" not in entry:
            raise check.fail(key, "节假日应写作 {name: ..., from: YYYY-MM-DD, to: YYYY-MM-DD}")
        first = check.day(entry["from"], (*key, "from"))
        last = check.day(entry["to"], (*key, "to"))
        if last < first or (last - first).days > 15:
            raise check.fail(key, "假期区间无效 (to 早于 from 或超过 16 天)")
        days.update(first + timedelta(days=k) for k in range((last - first).days + 1))
    return days


def _makeup_days(check: _Checker, raw: Any) -> set[date]:
    if not isinstance(raw, list):
        raise check.fail(("makeup_workdays",), "应为列表")
    days: set[date] = set()
    for i, item in enumerate(raw):
        key: tuple[str | int, ...] = ("makeup_workdays", i)
        entry = check.mapping(item, key)
        if "date" not in entry:
            raise check.fail(key, "调休上班日应写作 {name: ..., date: YYYY-MM-DD}")
        day = check.day(entry["date"], (*key, "date"))
        if day.weekday() < 5:
            raise check.fail((*key, "date"), f"{day.isoformat()} 不是周末，无需配置为调休上班日")
        days.add(day)
    return days
