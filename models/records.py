"""Plain records shared by every layer: the normalized work order (工单), the classifier's
prediction and the routing decision (派单决定). No Kafka, no SQL here."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

#: 诉求类型 (appeal type) labels the product uses.
APPEAL_TYPES: tuple[str, ...] = ("咨询", "投诉", "举报", "建议", "求助")

#: Intake channels (来源渠道).
CHANNELS: tuple[str, ...] = (
    "12345热线",
    "民营经济发展综合服务平台",
    "沪企管家",
    "政务服务好差评",
    "HTTP",
    "CLI",
)


@dataclass(frozen=True)
class OrderIn:
    """A validated, normalized work order (工单) as it enters routing."""

    order_id: str
    channel: str
    received_at: datetime
    title: str
    text: str
    caller: str | None = None
    enterprise_name: str | None = None
    credit_code: str | None = None  # 统一社会信用代码
    address: str | None = None
    area: str | None = None  # 属地街镇 when the intake already knows it
    appeal_type: str | None = None  # 诉求类型 when the intake already knows it
    is_enterprise: bool = False  # 涉企工单
    legacy: bool = False  # 历史遗留 flagged by the intake or a dispatcher
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def full_text(self) -> str:
        return f"{self.title}\n{self.text}" if self.title else self.text

    def to_json(self) -> dict[str, Any]:
        """The order as JSON (repartition topic, unit feeds, dead letters, content hash);
        `extra` must hold JSON values (the intake only puts strings and booleans there)."""
        return {
            "order_id": self.order_id,
            "channel": self.channel,
            "received_at": self.received_at.isoformat(),
            "title": self.title,
            "text": self.text,
            "caller": self.caller,
            "enterprise_name": self.enterprise_name,
            "credit_code": self.credit_code,
            "address": self.address,
            "area": self.area,
            "appeal_type": self.appeal_type,
            "is_enterprise": self.is_enterprise,
            "legacy": self.legacy,
            "extra": dict(self.extra),
        }

    @classmethod
    def from_json(cls, value: dict[str, Any]) -> OrderIn:
        """The order back from `to_json` (the repartition hop)."""
        return cls(
            order_id=value["order_id"],
            channel=value["channel"],
            received_at=datetime.fromisoformat(value["received_at"]),
            title=value.get("title") or "",
            text=value["text"],
            caller=value.get("caller"),
            enterprise_name=value.get("enterprise_name"),
            credit_code=value.get("credit_code"),
            address=value.get("address"),
            area=value.get("area"),
            appeal_type=value.get("appeal_type"),
            is_enterprise=bool(value.get("is_enterprise")),
            legacy=bool(value.get("legacy")),
            extra=dict(value.get("extra") or {}),
        )


@dataclass(frozen=True)
class Candidate:
    unit: str
    probability: float


@dataclass(frozen=True)
class Prediction:
    """What the classifier proposes for one text."""

    candidates: tuple[Candidate, ...]  # best first, probabilities calibrated
    model_version: str
    appeal_type: str | None = None
    appeal_type_probability: float = 0.0
    #: terms (词) that pushed toward the top candidate, with their weights
    terms: tuple[tuple[str, float], ...] = ()
    #: terms that pushed toward the runner-up instead
    against: tuple[tuple[str, float], ...] = ()
    #: the routing rules' findings in the order's text (`routing_rules.engine.TextFacts`),
    #: when a helper process classified it and ran those scans beside (None otherwise: the
    #: engine then finds them itself). Not part of what the model proposes
    rule_facts: Any = field(default=None, compare=False, repr=False)

    @property
    def top(self) -> Candidate:
        return self.candidates[0]


@dataclass(frozen=True)
class RoutingContext:
    """Facts about an order's history that the rules need (filled by the handlers)."""

    repeat_count: int = 1  # same enterprise / same issue within the window, this one included
    returned_by: tuple[str, ...] = ()  # units that returned (退单) it, oldest first
    beyond_power: bool = False  # a 街镇 returned it as 无力解决
    reopened_with_territorial: bool = False  # reopened (重办) while a 街镇 was leading


@dataclass(frozen=True)
class Decision:
    """A dispatch decision with its audit trail and explanation."""

    order_id: str
    lead_unit: str | None  # 主办 (None when manual)
    co_units: tuple[str, ...]  # 协办
    manual: bool  # goes to the dispatcher's manual queue (人工派单)
    rules: tuple[str, ...]  # ids of the rules that fired
    reasons: tuple[str, ...]  # human explanation lines (Chinese)
    model_version: str
    candidates: tuple[Candidate, ...]  # top candidates with probabilities
    terms: tuple[tuple[str, float], ...] = ()
    against: tuple[tuple[str, float], ...] = ()
    line_unit: str | None = None  # 条线 proposed
    territorial_unit: str | None = None  # 属地街镇 from the address/area
    line_first: bool = False  # 条线部门为主 applied
    trigger: str | None = None  # what made it line-first: repeat / beyond_power / legacy / reopened
    appeal_type: str | None = None
    confidence: float = 0.0

    def to_json(self) -> dict[str, Any]:
        # float(): the classifier hands numpy floats, whose round() is ~50x slower
        return {
            "order_id": self.order_id,
            "lead_unit": self.lead_unit,
            "co_units": list(self.co_units),
            "manual": self.manual,
            "rules": list(self.rules),
            "reasons": list(self.reasons),
            "model_version": self.model_version,
            "candidates": [
                {"unit": c.unit, "probability": round(float(c.probability), 4)}
                for c in self.candidates
            ],
            "terms": [[t, round(float(w), 4)] for t, w in self.terms],
            "against": [[t, round(float(w), 4)] for t, w in self.against],
            "line_unit": self.line_unit,
            "territorial_unit": self.territorial_unit,
            "line_first": self.line_first,
            "trigger": self.trigger,
            "appeal_type": self.appeal_type,
            "confidence": round(float(self.confidence), 4),
        }
