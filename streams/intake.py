"""Intake: parse and validate raw work orders (工单受理校验).

Every message that cannot become an `OrderIn` raises `IntakeError` with a stable code and a
Chinese reason; the handlers dead-letter it with that reason. Nothing is dropped silently.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from datetime import datetime, timedelta, timezone
from typing import Any

from classifier.features import INDUSTRY_KEYS
from models.records import APPEAL_TYPES, OrderIn

ENTERPRISE_CHANNELS = frozenset({"民营经济发展综合服务平台", "沪企管家", "政务服务好差评"})
MAX_ID_CHARS = 64
MAX_FIELD_CHARS = 500
_ID_RE = re.compile(r"^[0-9A-Za-z_.:\-]+$")
_CREDIT_CODE_RE = re.compile(r"^[0-9A-HJ-NPQRTUWXY]{2}\d{6}[0-9A-HJ-NPQRTUWXY]{10}$")
_TIME_FORMATS = (
    "%Y-%m-%dT%H:%M:%S",
    "%Y-%m-%d %H:%M:%S",
    "%Y-%m-%d %H:%M",
    "%Y/%m/%d %H:%M:%S",
    "%Y/%m/%d %H:%M",
    "%Y-%m-%d",
    "%Y/%m/%d",
)

# field aliases: our JSON keys first, then the 12345 export's Chinese column names
_ALIASES: dict[str, tuple[str, ...]] = {
    "order_id": ("order_id", "id", "工单编号"),
    "channel": ("channel", "来源渠道"),
    "received_at": ("received_at", "工单发起时间"),
    "title": ("title", "工单标题"),
    "text": ("text", "诉求内容"),
    "caller": ("caller", "来电人"),
    "enterprise_name": ("enterprise_name", "企业名称"),
    "credit_code": ("credit_code", "统一社会信用代码"),
    "address": ("address", "诉求地址"),
    "area": ("area", "镇街"),
    "appeal_type": ("appeal_type", "诉求类型"),
    "is_enterprise": ("is_enterprise", "涉企"),
    "legacy": ("legacy", "历史遗留"),
    "urgent": ("urgent", "紧急"),
}


class IntakeError(ValueError):
    """A message that cannot be accepted; `code` is stable, `reason` is for people."""

    def __init__(self, code: str, reason: str, order_id: str | None = None) -> None:
        super().__init__(f"{code}: {reason}")
        self.code = code
        self.reason = reason
        self.order_id = order_id


def decode(raw: bytes | str | Mapping[str, Any]) -> dict[str, Any]:
    """Bytes or text of one JSON object, or an already-decoded mapping."""
    if isinstance(raw, Mapping):
        return dict(raw)
    if isinstance(raw, bytes):
        try:
            raw = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise IntakeError("BAD_ENCODING", f"消息不是 UTF-8 编码（第 {exc.start} 字节）") from exc
    try:
        value = json.loads(raw)
    except (json.JSONDecodeError, RecursionError) as exc:
        raise IntakeError("BAD_JSON", f"消息不是合法 JSON：{str(exc)[:80]}") from exc
    if not isinstance(value, dict):
        raise IntakeError("NOT_OBJECT", "消息必须是 JSON 对象")
    return value


def _require_encodable(value: str, name: str, order_id: str | None) -> None:
    """Lone surrogates (from `\\ud800`-style JSON escapes) cannot be stored as UTF-8."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise IntakeError(
            "BAD_ENCODING", f"字段 {name} 含无法编码的字符（第 {exc.start} 个字符）", order_id
        ) from None


def _pick(msg: Mapping[str, Any], name: str) -> Any:
    for key in _ALIASES[name]:
        if key in msg and msg[key] is not None:
            return msg[key]
    return None


def _text_field(msg: Mapping[str, Any], name: str, order_id: str | None, limit: int) -> str | None:
    value = _pick(msg, name)
    if value is None:
        return None
    if not isinstance(value, str):
        raise IntakeError("WRONG_TYPE", f"字段 {name} 应为字符串，实际为 {type(value).__name__}", order_id)
    _require_encodable(value, name, order_id)
    value = value.replace("\x00", "").strip()
    if len(value) > limit:
        raise IntakeError("TOO_LONG", f"字段 {name} 超过 {limit} 字（{len(value)} 字）", order_id)
    return value or None


def _optional_text(msg: Mapping[str, Any], key: str, order_id: str | None) -> str | None:
    value = msg.get(key)
    if value is None:
        return None
    if not isinstance(value, str):
        raise IntakeError("WRONG_TYPE", f"字段 {key} 应为字符串", order_id)
    return value.strip()[:MAX_FIELD_CHARS] or None


def _bool_field(msg: Mapping[str, Any], name: str, order_id: str | None) -> bool | None:
    value = _pick(msg, name)
    if value is None:
        return None
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip() in ("是", "否", "true", "false", "1", "0"):
        return value.strip() in ("是", "true", "1")
    raise IntakeError("WRONG_TYPE", f"字段 {name} 应为布尔值", order_id)


def parse_time(value: Any, order_id: str | None = None) -> datetime:
    """ISO or the 12345 export's `2018/1/4 21:23:54`; naive times are taken as local (UTC+8)."""
    if isinstance(value, datetime):
        parsed = value
    elif isinstance(value, str):
        text = value.strip()
        parsed = None
        try:
            parsed = datetime.fromisoformat(text)
        except ValueError:
            for fmt in _TIME_FORMATS:
                try:
                    parsed = datetime.strptime(text, fmt)
                    break
                except ValueError:
                    continue
        if parsed is None:
            raise IntakeError("BAD_TIME", f"无法解析受理时间：{text[:40]!r}", order_id)
    else:
        raise IntakeError("BAD_TIME", "受理时间应为字符串", order_id)
    if not 2000 <= parsed.year <= 2100:
        raise IntakeError("BAD_TIME", f"受理时间超出范围：{parsed.year} 年", order_id)
    if parsed.tzinfo is not None:
        parsed = parsed.astimezone(timezone(timedelta(hours=8))).replace(tzinfo=None)
    return parsed


def _order_id(msg: Mapping[str, Any]) -> str:
    value = _pick(msg, "order_id")
    if value is None:
        raise IntakeError("MISSING_ID", "缺少工单编号")
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise IntakeError("WRONG_TYPE", "工单编号应为字符串或整数")
    if isinstance(value, int) and abs(value) >= 10**MAX_ID_CHARS:
        raise IntakeError("BAD_ID", f"工单编号超过 {MAX_ID_CHARS} 位")
    text = str(value).strip()
    if not text or len(text) > MAX_ID_CHARS or not _ID_RE.match(text):
        raise IntakeError("BAD_ID", f"工单编号格式不合法：{text[:40]!r}")
    return text


def _appeal_type(value: str | None) -> str | None:
    if not value:
        return None
    value = value.removesuffix("类")
    return value if value in APPEAL_TYPES else None


def normalize(
    raw: bytes | str | Mapping[str, Any], *, max_text_chars: int, now: datetime | None = None
) -> OrderIn:
    """Decode and validate one message into an `OrderIn`, or raise `IntakeError`."""
    msg = decode(raw)
    order_id = _order_id(msg)
    text = _text_field(msg, "text", order_id, max_text_chars)
    title = _text_field(msg, "title", order_id, MAX_FIELD_CHARS) or ""
    if not text:
        raise IntakeError("EMPTY_TEXT", "诉求内容为空", order_id)
    received = _pick(msg, "received_at")
    if received is None:
        if now is None:
            raise IntakeError("BAD_TIME", "缺少受理时间", order_id)
        received_at = now
    else:
        received_at = parse_time(received, order_id)
    enterprise = _text_field(msg, "enterprise_name", order_id, MAX_FIELD_CHARS)
    extra: dict[str, Any] = {}
    credit = _text_field(msg, "credit_code", order_id, 64)
    if credit is not None:
        credit = credit.upper()
        if not _CREDIT_CODE_RE.match(credit):
            extra["invalid_credit_code"] = credit
            credit = None
    channel = _text_field(msg, "channel", order_id, 64) or "12345热线"
    is_enterprise = _bool_field(msg, "is_enterprise", order_id)
    if is_enterprise is None:
        is_enterprise = bool(enterprise or credit or channel in ENTERPRISE_CHANNELS)
    urgent = _bool_field(msg, "urgent", order_id)
    if urgent:
        extra["urgent"] = True
    for key in INDUSTRY_KEYS:  # the operator's 行业分类, known at intake: a classifier input
        level = _optional_text(msg, key, order_id)
        if level:
            extra[key] = level
    return OrderIn(
        order_id=order_id,
        channel=channel,
        received_at=received_at,
        title=title,
        text=text,
        caller=_text_field(msg, "caller", order_id, MAX_FIELD_CHARS),
        enterprise_name=enterprise,
        credit_code=credit,
        address=_text_field(msg, "address", order_id, MAX_FIELD_CHARS),
        area=_text_field(msg, "area", order_id, 64),
        appeal_type=_appeal_type(_text_field(msg, "appeal_type", order_id, 16)),
        is_enterprise=is_enterprise,
        legacy=bool(_bool_field(msg, "legacy", order_id)),
        extra=extra,
    )
