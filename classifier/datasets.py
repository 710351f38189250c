"""Labelled training data (训练数据): loaders for the Haikou 12345 export, plain CSV and the
project's JSONL corpus, plus the removal of dispatcher hints (派单提示) that give the answer away.
"""

from __future__ import annotations

import csv
import json
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

FORMATS: tuple[str, ...] = ("haikou12345", "csv", "jsonl")

#: Catch-all 处置单位 values of the Haikou export that are not units to route to (兜底单位).
CATCHALL_UNITS: frozenset[str] = frozenset({"其他单位", "省级单位", "除海口外的市县", "省外单位"})

#: Haikou 诉求类型 -> the product's appeal types (see `map_appeal_type`).
HAIKOU_APPEAL_MAP: dict[str, str | None] = {
    "咨询类": "咨询",
    "投诉类": "投诉",
    "建议类": "建议",
    "紧急类": "求助",  # urgent calls ask for help now (求助)
    "反馈类": None,  # follow-ups on an earlier order: no intrinsic type
    "其他类": None,
}


class DatasetError(ValueError):
    """A data file that cannot be read or lacks a needed column (数据文件错误)."""


@dataclass(frozen=True)
class LabeledText:
    """One labelled order: the text the model reads and the unit that handled it."""

    order_id: str
    text: str
    unit: str  # 承办单位 label ("" when unknown)
    appeal_type: str | None = None  # 诉求类型, one of models.records.APPEAL_TYPES or None
    area: str = ""  # 区域/街镇 known at intake
    address: str = ""  # 诉求地址
    extra: dict[str, Any] = field(default_factory=dict)


# --- dispatcher hints (派单提示) -------------------------------------------------------------

# Time-limit instructions for the unit, with or without brackets:
# "（请职能局按规定在30分钟内联系市民，响应处置）", "（30分钟办件！）", "请30分钟响应处置）".
_NUM = r"(?:\d+|[一二三四五六七八九十]+)"
_NOT_REQ = r"(?<![申邀聘提恳敬])"
_TIME_LIMIT_RE = re.compile(
    r"(?:[（(]\s*请?|" + _NOT_REQ + r"请)"
    r"(?:[^\s，,。！!（）()\d]{0,10}?)?\s*(?:按照|按)?\s*(?:在)?\s*(?:规定)?\s*(?:在)?\s*"
    + _NUM
    + r"\s*分(?:钟(?:之?内)?|之?内)[^（）()\n]{0,24}?"
    r"(?:响应(?:并)?处置|办件|核实处理|现场处理|处置|联系市民|联系群众)"
    r"(?:[，,]?\s*(?:并)?(?:响应)?(?:并)?处置)?[。！!]?\s*[）)]?"
)
# "请美兰区政府核实处理", "请交警部门给予核实回复", "请城管部门按规定…核实处理", "请交警到现场查处吧".
_ASK_UNIT_RE = re.compile(
    _NOT_REQ + r"请(?![求问您你假])[^，,。！!？?；;：:\n（(]{0,24}?"
    r"(?:核实|查处|处理|回复|调查|处置|牵头|督促|跟进)"
    r"[^，,。！!？?；;\n（(]{0,8}[，,。！!；;]?\s*(?:谢谢[！!。]?)?"
)
# "请住建局督促开发商缴纳尾款": a request addressed to a named unit.
_ASK_NAMED_RE = re.compile(
    _NOT_REQ + r"请(?![求问您你假])[^，,。！!？?；;：:\n（(]{0,12}?"
    r"(?:局|部门|公司|集团|政府|支队|大队|交警|城管|公安)"
    r"[^，,。！!？?；;\n（(]{0,20}[，,。！!；;]?"
)
# A bare "（响应处置）" left by the dispatcher.
_BARE_NOTE_RE = re.compile(r"[（(]\s*(?:请)?(?:及时)?响应(?:并)?处置[。！!]?\s*[）)]")
_SPACES_RE = re.compile(r"[ \t\u3000]+")
_BLANK_LINES_RE = re.compile(r"\n\s*\n+")


def strip_dispatch_hints(text: str) -> str:
    """Remove the dispatcher's hints naming the unit and the time-limit notes.

    The citizen's own words are kept: "请求…", "请问…" and requests that name no unit stay.
    """
    if not text:
        return ""
    out = _TIME_LIMIT_RE.sub("", text)
    out = _BARE_NOTE_RE.sub("", out)
    out = _ASK_UNIT_RE.sub("", out)
    out = _ASK_NAMED_RE.sub("", out)
    out = _SPACES_RE.sub(" ", out)
    out = _BLANK_LINES_RE.sub("\n", out)
    return out.strip()


def map_appeal_type(raw: str | None) -> str | None:
    """Map a source 诉求类型 to 咨询/投诉/举报/建议/求助 (None when it has no such meaning).

    Haikou: 咨询类→咨询, 投诉类→投诉, 建议类→建议, 紧急类→求助; 反馈类 (a follow-up on an earlier
    order) and 其他类 → None. Values already in the product's vocabulary pass through.
    """
    if raw is None:
        return None
    value = raw.strip()
    if not value:
        return None
    if value in HAIKOU_APPEAL_MAP:
        return HAIKOU_APPEAL_MAP[value]
    stem = value[:-1] if value.endswith("类") else value
    return stem if stem in ("咨询", "投诉", "举报", "建议", "求助") else None


# --- loaders ----------------------------------------------------------------------------------


def load_dataset(path: str | Path, fmt: str = "haikou12345", *, drop_catchall: bool = True) -> list[
    LabeledText
]:
    """Load labelled orders from ``path`` in format ``fmt`` (haikou12345 / csv / jsonl).

    With ``drop_catchall`` (the default, for training and evaluation) orders whose unit is
    empty or a catch-all (其他单位, 省级单位, 除海口外的市县) are left out.
    """
    p = Path(path)
    if fmt not in FORMATS:
        raise DatasetError(f"不支持的数据格式“{fmt}”，可选：{'、'.join(FORMATS)}")
    if fmt == "jsonl":
        records = list(_load_jsonl(p))
    else:
        rows = _read_csv(p)
        parse = _haikou_record if fmt == "haikou12345" else _csv_record
        records = [parse(p, i, row) for i, row in rows]
    if drop_catchall:
        records = [r for r in records if r.unit and r.unit not in CATCHALL_UNITS]
    return records


def _read_csv(path: Path) -> list[tuple[int, dict[str, str]]]:
    try:
        with path.open(encoding="utf-8-sig", newline="") as fh:
            reader = csv.DictReader(fh)
            # Row numbers as a spreadsheet shows them: the header is row 1.
            return [(i + 2, row) for i, row in enumerate(reader)]
    except OSError as exc:
        raise DatasetError(f"无法读取数据文件 {path}：{exc.strerror or exc}") from exc
    except UnicodeDecodeError as exc:
        raise DatasetError(f"数据文件 {path} 不是 UTF-8 编码：{exc.reason}") from exc
    except csv.Error as exc:
        raise DatasetError(f"数据文件 {path} 不是合法的 CSV：{exc}") from exc


def _need(path: Path, row_no: int, row: dict[str, str | None], *names: str) -> str:
    """The first present column among ``names``; a clear error naming file and row if none."""
    for name in names:
        if name in row and row[name] is not None:
            return str(row[name]).strip()
    wanted = " 或 ".join(names)
    raise DatasetError(f"数据文件 {path} 第 {row_no} 行缺少列：{wanted}")


def _opt(row: dict[str, str | None], *names: str) -> str:
    for name in names:
        value = row.get(name)
        if value is not None and str(value).strip():
            return str(value).strip()
    return ""


def _join(title: str, body: str) -> str:
    return f"{title}\n{body}" if title else body


_HAIKOU_EXTRA = ("行业分类1级", "行业分类2级", "行业分类3级", "行业分类4级", "诉求区域", "辖区", "镇街", "村居")


def _haikou_record(path: Path, row_no: int, row: dict[str, str]) -> LabeledText:
    order_id = _need(path, row_no, row, "工单编号")
    title = strip_dispatch_hints(_need(path, row_no, row, "工单标题"))
    body = strip_dispatch_hints(_need(path, row_no, row, "诉求内容"))
    unit = _need(path, row_no, row, "处置单位")
    area = _haikou_area(row)
    return LabeledText(
        order_id=order_id,
        text=_join(title, body),
        unit=unit,
        appeal_type=map_appeal_type(row.get("诉求类型")),
        area=area,
        address=_opt(row, "诉求地址"),
        extra={k: _opt(row, k) for k in _HAIKOU_EXTRA} | {"raw_appeal_type": _opt(row, "诉求类型")},
    )


def _haikou_area(row: dict[str, str]) -> str:
    """Intake area facts joined: 诉求区域 (unless 全市), 辖区, 镇街, 村居."""
    parts = [_opt(row, "诉求区域"), _opt(row, "辖区"), _opt(row, "镇街"), _opt(row, "村居")]
    seen: list[str] = []
    for part in parts:
        if part and part != "全市" and part not in seen:
            seen.append(part)
    return " ".join(seen)


def _csv_record(path: Path, row_no: int, row: dict[str, str]) -> LabeledText:
    order_id = _need(path, row_no, row, "工单编号", "id")
    body = _need(path, row_no, row, "text", "诉求内容")
    title = _opt(row, "工单标题", "title")
    unit = _need(path, row_no, row, "unit", "处置单位")
    known = {"工单编号", "id", "text", "诉求内容", "工单标题", "title", "unit", "处置单位"}
    known |= {"appeal_type", "诉求类型", "address", "诉求地址", "area", "诉求区域"}
    return LabeledText(
        order_id=order_id,
        text=_join(strip_dispatch_hints(title), strip_dispatch_hints(body)),
        unit=unit,
        appeal_type=map_appeal_type(_opt(row, "appeal_type", "诉求类型")),
        area=_opt(row, "area", "诉求区域"),
        address=_opt(row, "address", "诉求地址"),
        extra={k: v for k, v in row.items() if k not in known and k is not None},
    )


def _load_jsonl(path: Path) -> Iterator[LabeledText]:
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise DatasetError(f"无法读取数据文件 {path}：{exc.strerror or exc}") from exc
    except UnicodeDecodeError as exc:
        raise DatasetError(f"数据文件 {path} 不是 UTF-8 编码：{exc.reason}") from exc
    for line_no, line in enumerate(lines, start=1):
        if line.strip():
            yield _jsonl_record(path, line_no, line)


def _jsonl_record(path: Path, line_no: int, line: str) -> LabeledText:
    try:
        obj = json.loads(line)
    except json.JSONDecodeError as exc:
        raise DatasetError(f"数据文件 {path} 第 {line_no} 行不是合法的 JSON：{exc.msg}") from exc
    if not isinstance(obj, dict):
        raise DatasetError(f"数据文件 {path} 第 {line_no} 行应为 JSON 对象")
    order_id = _need(path, line_no, obj, "id")
    text = _need(path, line_no, obj, "text")
    unit = _need(path, line_no, obj, "line_unit", "unit")
    known = {"id", "text", "title", "line_unit", "appeal_type", "address", "area"}
    return LabeledText(
        order_id=order_id,
        text=_join(_opt(obj, "title"), text),
        unit=unit,
        appeal_type=map_appeal_type(_opt(obj, "appeal_type")),
        area=_opt(obj, "area"),
        address=_opt(obj, "address"),
        extra={k: v for k, v in obj.items() if k not in known},
    )


def iter_texts(records: Iterable[LabeledText]) -> list[str]:
    """The texts of ``records`` in order."""
    return [r.text for r in records]
