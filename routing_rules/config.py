"""Routing configuration (派单规则配置): the unit catalogue, areas, settings and explicit rules.

A rules directory holds
- `units.yaml`  — the 承办单位 catalogue (line bureaus 条线部门 and territorial units 属地街镇
  with their place names for address matching);
- `rules.yaml`  — settings, thresholds, keyword lists, keyword rules, enterprise rules;
- `abnormal.yaml` (optional) — the abnormal-complainant list (异常名录).

`load_rules(dir)` validates all of it; anything wrong raises `RuleFileError` naming the file,
the line and column, and the reason. Unit references in rules may be a unit's name or code;
they are stored as names, which is what `Decision` carries.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from models.records import APPEAL_TYPES, CHANNELS
from routing_rules.marked_yaml import MarkedDoc, PathT, RuleFileError, load_marked

__all__ = [
    "AbnormalEntry",
    "EnterpriseRule",
    "KeywordRule",
    "LocalMatter",
    "RoutingConfig",
    "RoutingSettings",
    "RuleFileError",
    "UnitConfig",
    "load_rules",
]

UNITS_FILE = "units.yaml"
RULES_FILE = "rules.yaml"
ABNORMAL_FILE = "abnormal.yaml"

_CODE_RE = r"^[a-z][a-z0-9_]*$"
_RULE_ID_RE = r"^[A-Z][A-Z0-9]*(-[A-Z0-9]+)*$"
_CREDIT_CODE_RE = r"^[0-9A-HJ-NPQRTUWXY]{2}\d{6}[0-9A-HJ-NPQRTUWXY]{10}$"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


# ---------------------------------------------------------------------------- units 承办单位
class UnitConfig(_Strict):
    """One 承办单位."""

    code: str = Field(pattern=_CODE_RE)
    name: str = Field(min_length=2)
    kind: Literal["line", "territorial"]  # 条线部门 | 属地街镇
    duties: str = Field(min_length=2)  # 职责
    local_handling: bool = False  # line: whole remit handled locally (属地为主) by default
    territorial_co: bool = False  # line: add the 街镇 as 协办 on non-local matters
    aliases: tuple[str, ...] = ()  # territorial: short forms of the name
    places: tuple[str, ...] = ()  # territorial: 村/居委/道路/小区/地标 in its area

    @model_validator(mode="after")
    def _kind_fields(self) -> UnitConfig:
        if self.kind == "line" and (self.aliases or self.places):
            raise ValueError("条线部门不应配置 aliases/places（地名只属于属地街镇）")
        if self.kind == "territorial" and (self.local_handling or self.territorial_co):
            raise ValueError("属地街镇不应配置 local_handling/territorial_co")
        return self

    @property
    def is_line(self) -> bool:
        return self.kind == "line"


class _UnitsFile(_Strict):
    units: tuple[UnitConfig, ...] = Field(min_length=1)


# ---------------------------------------------------------------------------- settings 设置
class RoutingSettings(_Strict):
    """Numbers the rules use. `repeat_*` define 多次重复 (N orders within W days)."""

    repeat_min_count: int = Field(default=3, ge=2)  # N: this order included
    repeat_window_days: int = Field(default=30, ge=1)  # W
    max_returns: int = Field(default=2, ge=1)  # 退单 count that sends it to the dispatcher
    default_threshold: float = Field(default=0.45, ge=0.0, le=1.0)
    unit_thresholds: dict[str, float] = Field(default_factory=dict)  # per unit (name or code)
    threshold_source: Literal["config", "model"] = "config"
    reroute_min_probability: float = Field(default=0.15, ge=0.0, le=1.0)
    suggestions: int = Field(default=3, ge=1, le=10)
    abnormal_review_unit: str = "区市场监管局"

    @field_validator("unit_thresholds")
    @classmethod
    def _in_range(cls, v: dict[str, float]) -> dict[str, float]:
        for unit, t in v.items():
            if not 0.0 <= t <= 1.0:
                raise ValueError(f"{unit} 的阈值 {t} 不在 0 到 1 之间")
        return v

    @property
    def thresholds_from_model(self) -> bool:
        """`threshold_source: model`: use the model's own per-unit thresholds when it has them."""
        return self.threshold_source == "model"


# ---------------------------------------------------------------------------- rules 规则
def longest_first(words: Iterable[str]) -> re.Pattern[str] | None:
    """An alternation of ``words``, longest first, so that at any position the first
    alternative that matches is the longest word there (None for no words). A plain
    alternation, not one inside a lookahead: `search` then skips ahead to the words' first
    characters in C, where a lookahead is tried at every position (ten times slower on
    order texts). `every_start` finds the overlapping ones."""
    ordered = sorted(set(words), key=lambda w: (-len(w), w))
    return re.compile("|".join(map(re.escape, ordered))) if ordered else None


def every_start(pattern: re.Pattern[str], text: str) -> Iterator[re.Match[str]]:
    """At every position of ``text`` where ``pattern`` matches, its match there, left to
    right: overlapping matches included (each search starts one character after the last
    match's start)."""
    m = pattern.search(text)
    while m is not None:
        yield m
        m = pattern.search(text, m.start() + 1)


def _check_appeal_types(v: tuple[str, ...]) -> tuple[str, ...]:
    bad = [a for a in v if a not in APPEAL_TYPES]
    if bad:
        raise ValueError(f"未知的诉求类型 {bad}，可选：{'/'.join(APPEAL_TYPES)}")
    return v


def _check_channels(v: tuple[str, ...]) -> tuple[str, ...]:
    bad = [c for c in v if c not in CHANNELS]
    if bad:
        raise ValueError(f"未知的来源渠道 {bad}，可选：{'/'.join(CHANNELS)}")
    return v


def _no_blank(v: tuple[str, ...]) -> tuple[str, ...]:
    if any(not k.strip() for k in v):
        raise ValueError("关键词不能为空字符串")
    return v


class LocalMatter(_Strict):
    """A kind of 属地事项: its keywords and the line bureau whose duty it is (协办)."""

    id: str = Field(pattern=_RULE_ID_RE)
    unit: str
    keywords: tuple[str, ...] = Field(min_length=1)
    description: str = ""

    _blank = field_validator("keywords")(_no_blank)


class KeywordRule(_Strict):
    """Keyword rule (关键词规则): conditions on the text, appeal type and channel; effects."""

    id: str = Field(pattern=_RULE_ID_RE)
    description: str = ""  # shown in the decision's reasons
    any: tuple[str, ...] = ()  # at least one of these occurs
    all: tuple[str, ...] = ()  # every one of these occurs
    none: tuple[str, ...] = ()  # none of these occurs
    pattern: str | None = None  # a regular expression that must match
    appeal_types: tuple[str, ...] = ()  # 诉求类型 limits (empty: any)
    channels: tuple[str, ...] = ()  # 来源渠道 limits (empty: any)
    force_unit: str | None = None  # this unit becomes the line unit (主办 unless scope: local)
    co_units: tuple[str, ...] = ()  # added as 协办
    scope: Literal["local", "line"] | None = None  # mark the matter 属地 or 条线
    manual: bool = False  # send to the manual queue (人工派单)
    urgent: bool = False  # 紧急

    _blank = field_validator("any", "all", "none")(_no_blank)
    _appeal = field_validator("appeal_types")(_check_appeal_types)
    _channel = field_validator("channels")(_check_channels)

    @field_validator("pattern")
    @classmethod
    def _regex(cls, v: str | None) -> str | None:
        if v is not None:
            try:
                re.compile(v)
            except re.error as exc:
                raise ValueError(f"正则表达式无效：{exc}") from exc
        return v

    @model_validator(mode="after")
    def _shape(self) -> KeywordRule:
        if not (self.any or self.all or self.pattern):
            raise ValueError("规则至少需要 any、all 或 pattern 之一作为条件")
        if not (self.force_unit or self.co_units or self.scope or self.manual or self.urgent):
            raise ValueError("规则没有任何效果（force_unit/co_units/scope/manual/urgent）")
        if self.manual and self.force_unit:
            raise ValueError("manual 与 force_unit 不能同时设置")
        return self

    @property
    def regex(self) -> re.Pattern[str] | None:
        return re.compile(self.pattern) if self.pattern else None


class Enterprise(_Strict):
    name: str | None = None
    credit_code: str | None = Field(default=None, pattern=_CREDIT_CODE_RE)  # 统一社会信用代码

    @model_validator(mode="after")
    def _one(self) -> Enterprise:
        if not (self.name or self.credit_code):
            raise ValueError("企业需要 name 或 credit_code")
        return self


class EnterpriseRule(_Strict):
    """Enterprise rule (企业名单规则), e.g. a key enterprise's 服务包 unit."""

    id: str = Field(pattern=_RULE_ID_RE)
    description: str = ""
    enterprises: tuple[Enterprise, ...] = Field(min_length=1)
    force_unit: str | None = None
    co_units: tuple[str, ...] = ()
    manual: bool = False
    urgent: bool = False

    @model_validator(mode="after")
    def _shape(self) -> EnterpriseRule:
        if not (self.force_unit or self.co_units or self.manual or self.urgent):
            raise ValueError("规则没有任何效果（force_unit/co_units/manual/urgent）")
        if self.manual and self.force_unit:
            raise ValueError("manual 与 force_unit 不能同时设置")
        return self


class _RulesFile(_Strict):
    settings: RoutingSettings = Field(default_factory=RoutingSettings)
    local_matters: tuple[LocalMatter, ...] = ()
    line_keywords: tuple[str, ...] = ()
    legacy_keywords: tuple[str, ...] = ()
    keyword_rules: tuple[KeywordRule, ...] = ()
    enterprise_rules: tuple[EnterpriseRule, ...] = ()

    _blank = field_validator("line_keywords", "legacy_keywords")(_no_blank)


class AbnormalEntry(_Strict):
    """One 异常名录 entry: a profit-seeking professional complainant (牟利性职业索赔)."""

    id: str = Field(pattern=_RULE_ID_RE)
    callers: tuple[str, ...] = ()  # caller phone numbers as intake records them
    enterprises: tuple[str, ...] = ()  # enterprise names used by the complainant
    credit_codes: tuple[str, ...] = ()
    reason: str = Field(min_length=2)  # 列入理由
    listed_on: date | None = None

    @model_validator(mode="after")
    def _one(self) -> AbnormalEntry:
        if not (self.callers or self.enterprises or self.credit_codes):
            raise ValueError("异常名录条目需要 callers、enterprises 或 credit_codes 之一")
        return self


class _AbnormalFile(_Strict):
    abnormal_complainants: tuple[AbnormalEntry, ...] = ()


# ---------------------------------------------------------------------------- the whole config
@dataclass(frozen=True)
class RoutingConfig:
    """Everything the rule engine reads; built by `load_rules`."""

    units: tuple[UnitConfig, ...]
    settings: RoutingSettings
    local_matters: tuple[LocalMatter, ...] = ()
    line_keywords: tuple[str, ...] = ()
    legacy_keywords: tuple[str, ...] = ()
    keyword_rules: tuple[KeywordRule, ...] = ()
    enterprise_rules: tuple[EnterpriseRule, ...] = ()
    abnormal: tuple[AbnormalEntry, ...] = ()
    source_dir: Path | None = None
    _by_name: dict[str, UnitConfig] = field(init=False, repr=False, compare=False)
    _by_code: dict[str, UnitConfig] = field(init=False, repr=False, compare=False)
    _areas: dict[str, str] = field(init=False, repr=False, compare=False)
    _place_re: re.Pattern[str] | None = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_by_name", {u.name: u for u in self.units})
        object.__setattr__(self, "_by_code", {u.code: u for u in self.units})
        areas: dict[str, str] = {}
        for u in self.territorial_units:
            for place in (u.name, *u.aliases, *u.places):
                areas[place] = u.name
        object.__setattr__(self, "_areas", areas)
        object.__setattr__(self, "_place_re", longest_first(areas))

    @property
    def unit_by_name(self) -> dict[str, UnitConfig]:
        return self._by_name

    @property
    def unit_by_code(self) -> dict[str, UnitConfig]:
        return self._by_code

    @property
    def line_units(self) -> tuple[UnitConfig, ...]:
        return tuple(u for u in self.units if u.kind == "line")

    @property
    def territorial_units(self) -> tuple[UnitConfig, ...]:
        return tuple(u for u in self.units if u.kind == "territorial")

    @property
    def areas(self) -> dict[str, str]:
        """Place name (incl. the 街镇's own name and aliases) → 街镇 name."""
        return self._areas

    @property
    def place_pattern(self) -> re.Pattern[str] | None:
        """Matches the longest place name that starts where it matches (`areas.match_place`
        searches again from the next position for the overlapping ones)."""
        return self._place_re

    def unit(self, name_or_code: str) -> UnitConfig | None:
        return self._by_name.get(name_or_code) or self._by_code.get(name_or_code)

    def code_of(self, name: str) -> str:
        """The code of a unit given by name (or code); KeyError for an unknown unit."""
        unit = self.unit(name)
        if unit is None:
            raise KeyError(f"未知的承办单位：{name}")
        return unit.code

    def threshold_for(self, unit: str, model_thresholds: dict[str, float] | None = None) -> float:
        """Auto-dispatch threshold of `unit`: the model's own when configured and known, else
        the per-unit override, else the default."""
        s = self.settings
        if s.thresholds_from_model and model_thresholds:
            code = self.code_of(unit) if self.unit(unit) else unit
            for key in (unit, code):
                if key in model_thresholds:
                    return float(model_thresholds[key])
        return s.unit_thresholds.get(unit, s.default_threshold)

    @property
    def urgent_rule_ids(self) -> frozenset[str]:
        kw = {r.id for r in self.keyword_rules if r.urgent}
        return frozenset(kw | {r.id for r in self.enterprise_rules if r.urgent})


# ---------------------------------------------------------------------------- loading
_M = TypeVar("_M", bound=BaseModel)
_R = TypeVar("_R", KeywordRule, EnterpriseRule)


def load_rules(directory: Path) -> RoutingConfig:
    """Load and validate a rules directory (units.yaml, rules.yaml, optional abnormal.yaml)."""
    directory = Path(directory)
    units_doc = _require(directory / UNITS_FILE)
    rules_doc = _require(directory / RULES_FILE)
    units_file = _validate(units_doc, _UnitsFile)
    units = units_file.units
    _check_catalogue(units_doc, units)
    lookup = {**{u.name: u.name for u in units}, **{u.code: u.name for u in units}}
    rules_file = _validate(rules_doc, _RulesFile)
    rules_file = _resolve_rule_units(rules_doc, rules_file, lookup)
    abnormal: tuple[AbnormalEntry, ...] = ()
    abnormal_path = directory / ABNORMAL_FILE
    seen_ids = _check_rule_ids(rules_doc, rules_file)
    if abnormal_path.exists():
        abnormal_doc = load_marked(abnormal_path)
        abnormal = _validate(abnormal_doc, _AbnormalFile).abnormal_complainants
        _check_abnormal_ids(abnormal_doc, abnormal, seen_ids)
    return RoutingConfig(
        units=units,
        settings=rules_file.settings,
        local_matters=rules_file.local_matters,
        line_keywords=rules_file.line_keywords,
        legacy_keywords=rules_file.legacy_keywords,
        keyword_rules=rules_file.keyword_rules,
        enterprise_rules=rules_file.enterprise_rules,
        abnormal=abnormal,
        source_dir=directory,
    )


def _require(path: Path) -> MarkedDoc:
    if not path.is_file():
        raise RuleFileError(path, None, None, "文件不存在")
    return load_marked(path)


def _validate(doc: MarkedDoc, model: type[_M]) -> _M:
    data = doc.data if doc.data is not None else {}
    if not isinstance(data, dict):
        raise doc.error((), "文件顶层必须是映射（key: value）")
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        err = exc.errors()[0]
        loc: PathT = tuple(p if isinstance(p, int) else str(p) for p in err["loc"])
        where = ".".join(str(p) for p in loc) or "（顶层）"
        raise doc.error(loc, f"{where}：{_explain(err)}") from exc


def _explain(err: Any) -> str:
    kind = err.get("type", "")
    if kind == "extra_forbidden":
        return "未知的键"
    if kind == "missing":
        return "缺少必填项"
    msg = str(err.get("msg", ""))
    return msg.removeprefix("Value error, ")


def _check_catalogue(doc: MarkedDoc, units: tuple[UnitConfig, ...]) -> None:
    """Unique codes and names; each place name belongs to one 街镇 only."""
    codes: set[str] = set()
    names: set[str] = set()
    owner: dict[str, str] = {}
    for i, u in enumerate(units):
        if u.code in codes:
            raise doc.error(("units", i, "code"), f"重复的单位代码 {u.code}")
        if u.name in names:
            raise doc.error(("units", i, "name"), f"重复的单位名称 {u.name}")
        codes.add(u.code)
        names.add(u.name)
    for i, u in enumerate(units):
        for key, values in (("aliases", u.aliases), ("places", u.places)):
            for j, place in enumerate(values):
                other = owner.get(place)
                if other is not None and other != u.name:
                    raise doc.error(
                        ("units", i, key, j), f"地名 {place} 同时属于 {other} 和 {u.name}，有歧义"
                    )
                if place in names and place != u.name:
                    raise doc.error(("units", i, key, j), f"地名 {place} 与单位名称重名")
                owner[place] = u.name
        if u.kind == "territorial":
            owner.setdefault(u.name, u.name)


def _resolve_rule_units(
    doc: MarkedDoc, rules: _RulesFile, lookup: dict[str, str]
) -> _RulesFile:
    """Check every unit a rule names and store it by name."""

    def one(path: PathT, value: str) -> str:
        if value not in lookup:
            raise doc.error(path, f"未知的承办单位 {value!r}（不在 units.yaml 中）")
        return lookup[value]

    s = rules.settings
    settings = s.model_copy(
        update={
            "abnormal_review_unit": one(("settings", "abnormal_review_unit"), s.abnormal_review_unit),
            "unit_thresholds": {
                one(("settings", "unit_thresholds", k), k): v for k, v in s.unit_thresholds.items()
            },
        }
    )
    matters = tuple(
        m.model_copy(update={"unit": one(("local_matters", i, "unit"), m.unit)})
        for i, m in enumerate(rules.local_matters)
    )
    kw = tuple(
        _resolve_effects(r, ("keyword_rules", i), one) for i, r in enumerate(rules.keyword_rules)
    )
    ent = tuple(
        _resolve_effects(r, ("enterprise_rules", i), one)
        for i, r in enumerate(rules.enterprise_rules)
    )
    return rules.model_copy(
        update={"settings": settings, "local_matters": matters, "keyword_rules": kw,
                "enterprise_rules": ent}
    )


def _resolve_effects(rule: _R, path: PathT, one: Callable[[PathT, str], str]) -> _R:
    force = one((*path, "force_unit"), rule.force_unit) if rule.force_unit else None
    co = tuple(one((*path, "co_units", j), u) for j, u in enumerate(rule.co_units))
    return rule.model_copy(update={"force_unit": force, "co_units": co})


def _check_rule_ids(doc: MarkedDoc, rules: _RulesFile) -> dict[str, str]:
    seen: dict[str, str] = {}
    groups: tuple[tuple[str, tuple[Any, ...]], ...] = (
        ("local_matters", rules.local_matters),
        ("keyword_rules", rules.keyword_rules),
        ("enterprise_rules", rules.enterprise_rules),
    )
    for group, items in groups:
        for i, item in enumerate(items):
            if item.id in seen or item.id in BUILTIN_RULE_IDS:
                first = seen.get(item.id, "引擎内置规则")
                raise doc.error((group, i, "id"), f"重复的规则编号 {item.id}（已用于 {first}）")
            seen[item.id] = f"{group}[{i}]"
    return seen


def _check_abnormal_ids(
    doc: MarkedDoc, entries: tuple[AbnormalEntry, ...], seen: dict[str, str]
) -> None:
    local: set[str] = set()
    for i, e in enumerate(entries):
        if e.id in local or e.id in seen or e.id in BUILTIN_RULE_IDS:
            raise doc.error(("abnormal_complainants", i, "id"), f"重复的规则编号 {e.id}")
        local.add(e.id)


#: Ids of the rules built into the engine (see `routing_rules.engine`); YAML may not reuse them.
BUILTIN_RULE_IDS: frozenset[str] = frozenset(
    {
        "ABNORMAL-LIST",
        "RETURN-LIMIT",
        "LOW-CONFIDENCE",
        "LOCAL-TERRITORIAL",
        "LOCAL-NO-AREA",
        "TERRITORIAL-RETURNED",
        "TERRITORIAL-CO",
        "LINE-FIRST-REPEAT",
        "LINE-FIRST-BEYOND-POWER",
        "LINE-FIRST-REOPENED",
        "LINE-FIRST-LEGACY",
        "REROUTE",
        "RULE-UNIT-RETURNED",
    }
)
