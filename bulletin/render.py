"""Rendering the 热点快报: HTML with charts embedded as base64 PNG, or Markdown with the PNG
charts saved beside the .md file. Every text from orders is masked (`mask_pii`) here again."""

from __future__ import annotations

import base64
import html
import io
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import cast

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
from matplotlib import font_manager
from matplotlib.figure import Figure

from bulletin.hotspots import Cluster
from bulletin.rates import UnitRates
from bulletin.report import Bulletin
from hotline.masking import mask_pii

CJK_FONTS = ("WenQuanYi Micro Hei", "Noto Sans CJK SC", "Source Han Sans SC", "SimHei",
             "Microsoft YaHei", "PingFang SC")
CHART_UNITS = 12


def cjk_font() -> str | None:
    """The first installed font that can draw Chinese, or None (charts then number labels)."""
    installed = {f.name for f in font_manager.fontManager.ttflist}
    return next((name for name in CJK_FONTS if name in installed), None)


def _labels(names: Sequence[str], font: str | None) -> list[str]:
    return [n if font else f"#{i + 1}" for i, n in enumerate(names)]


def _pct(value: float | None) -> str:
    return "—" if value is None else f"{value:.1%}"


# ---- charts -------------------------------------------------------------------------------
def _figure() -> tuple[Figure, plt.Axes]:
    font = cjk_font()
    if font:
        plt.rcParams["font.sans-serif"] = [font, "DejaVu Sans"]
    plt.rcParams["axes.unicode_minus"] = False
    return plt.subplots(figsize=(8, 3.6), dpi=100)


def _png(fig: Figure) -> bytes:
    buf = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buf, format="png")
    plt.close(fig)
    return buf.getvalue()


def chart_trend(b: Bulletin) -> bytes:
    fig, ax = _figure()
    days = [d.strftime("%m-%d") for d, _ in b.daily]
    ax.plot(days, [n for _, n in b.daily], marker="o", label="本期" if cjk_font() else "current")
    if b.previous_total:
        ax.plot(days, [n for _, n in b.previous_daily], linestyle="--",
                label="上期" if cjk_font() else "previous")
    ax.set_ylabel("工单量" if cjk_font() else "orders")
    ax.tick_params(axis="x", labelrotation=60, labelsize=7)
    ax.legend()
    return _png(fig)


def _barh(names: Sequence[str], values: Sequence[float], xlabel: str) -> bytes:
    fig, ax = _figure()
    labels = _labels(names, cjk_font())
    ax.barh(labels[::-1], list(values)[::-1], color="#3b6ea8")
    ax.set_xlabel(xlabel if cjk_font() else "")
    ax.tick_params(axis="y", labelsize=8)
    return _png(fig)


def chart_categories(b: Bulletin) -> bytes:
    return _barh([c for c, _ in b.top_categories], [n for _, n in b.top_categories], "工单量")


def chart_clusters(clusters: Sequence[Cluster]) -> bytes:
    top = list(clusters)[:10]
    return _barh([c.label[:18] for c in top], [c.size for c in top], "工单量")


def chart_rates(rates: Sequence[UnitRates]) -> bytes:
    top = list(rates)[:CHART_UNITS]
    fig, ax = _figure()
    labels = _labels([r.unit[:14] for r in top], cjk_font())
    y = range(len(top))
    chinese = cjk_font() is not None
    series: list[tuple[str, Callable[[UnitRates], float | None]]] = [
        ("办结率" if chinese else "closed", lambda r: r.close_rate),
        ("按时办结率" if chinese else "on time", lambda r: r.on_time_rate),
        ("满意率" if chinese else "satisfied", lambda r: r.satisfaction_rate),
    ]
    height = 0.26
    for k, (name, get) in enumerate(series):
        values = [(get(r) or 0.0) * 100 for r in top]
        ax.barh([i + (k - 1) * height for i in y], values, height=height, label=name)
    ax.set_yticks(list(y), labels)
    ax.invert_yaxis()
    ax.set_xlim(0, 100)
    ax.set_xlabel("%")
    ax.tick_params(axis="y", labelsize=8)
    ax.legend(fontsize=7, loc="lower right")
    return _png(fig)


def charts(b: Bulletin) -> dict[str, bytes]:
    """Chart name -> PNG bytes."""
    out = {"trend": chart_trend(b), "categories": chart_categories(b), "rates": chart_rates(b.rates)}
    if b.near_duplicates:
        out["near_duplicates"] = chart_clusters(b.near_duplicates)
    if b.topics:
        out["topics"] = chart_clusters(b.topics)
    return out


CHART_TITLES = {
    "trend": "工单量走势（按日）", "categories": "热点问题分类 Top 10", "rates": "承办单位办理指标",
    "near_duplicates": "近似重复诉求组", "topics": "主题聚类",
}


# ---- the document as (kind, payload) blocks shared by HTML and Markdown ----------------------
Block = tuple[str, object]
Table = tuple[list[str], list[list[str]]]


def _cluster_rows(clusters: Sequence[Cluster]) -> list[list[str]]:
    rows = []
    for i, c in enumerate(clusters, 1):
        reps = "；".join(f"{r.order_id} {r.snippet}" for r in c.representatives)
        areas = "、".join(f"{a}({n})" for a, n in c.areas) or "—"
        rows.append([str(i), c.label, str(c.size), f"{c.dominant_unit}（{c.unit_share:.0%}）",
                     areas, "、".join(c.terms[:5]), f"{c.first[:10]}～{c.last[:10]}", reps])
    return rows


_CLUSTER_HEAD = ["#", "诉求", "件数", "主要承办单位", "区域", "关键词", "时间", "代表工单"]


def blocks(b: Bulletin) -> list[Block]:
    """The bulletin's content in order: headings, paragraphs, tables and charts."""
    out: list[Block] = [("h1", f"热点快报（{b.start}至{b.end}）")]
    change = (f"，上期（{b.previous_start}至{b.previous_end}）{b.previous_total} 件"
              if b.previous_total else "")
    out.append(("p", (f"本期共受理工单 {b.total} 件，其中涉企工单 {b.enterprise_total} 件{change}。"
                     f"办结率 {_pct(b.overall.close_rate)}，按时办结率 {_pct(b.overall.on_time_rate)}，"
                     f"满意率 {_pct(b.overall.satisfaction_rate)}，重办率 {_pct(b.overall.reopen_rate)}，"
                     f"涉企全量回访率 {_pct(b.overall.revisit_rate)}。")))
    out.extend(("note", n) for n in b.notes)
    out += [("h2", "一、总量与走势"), ("chart", "trend")]
    out += [("h2", "二、热点问题"), ("chart", "categories"),
            ("table", (["#", "问题分类", "件数"],
                       [[str(i), c, str(n)] for i, (c, n) in enumerate(b.top_categories, 1)])),
            ("table", (["#", "区域", "件数"],
                       [[str(i), a, str(n)] for i, (a, n) in enumerate(b.top_areas, 1)]))]
    out.append(("h2", "三、环比激增（精确二项检验，BH 校正）"))
    significant = [s for s in b.surges if s.significant]
    if significant:
        out.append(("table", (["维度", "对象", "本期", "上期", "p 值", "校正后 q 值"], [
            [s.dimension, s.value, str(s.current), str(s.previous), f"{s.p_value:.2g}",
             f"{s.q_value:.2g}"] for s in significant])))
    elif b.previous_total:
        out.append(("p", "本期无统计显著的激增（q < 0.05）。"))
    else:
        out.append(("p", "上期无工单数据，没有可比基数，未做激增检验。"))
    out += [("h2", "四、集中诉求"), ("h3", "（一）近似重复诉求")]
    if b.near_duplicates:
        out += [("chart", "near_duplicates"),
                ("table", (_CLUSTER_HEAD, _cluster_rows(b.near_duplicates[:15])))]
    else:
        out.append(("p", "未发现 3 件以上的近似重复诉求。"))
    out.append(("h3", "（二）主题聚类"))
    if b.topics:
        out += [("chart", "topics"), ("table", (_CLUSTER_HEAD, _cluster_rows(b.topics)))]
    else:
        out.append(("p", "工单量不足，未做主题聚类。"))
    out.append(("h2", "五、重复投诉"))
    if b.repeats:
        out.append(("table", (["依据", "对象", "件数", "工单", "承办单位", "诉求"], [
            [("【涉企】" if g.enterprise else "") + g.basis, g.key, str(len(g.order_ids)),
             "、".join(g.order_ids[:6]), "、".join(g.units), g.snippet] for g in b.repeats[:30]])))
    else:
        out.append(("p", "本期未发现重复投诉。"))
    out += [("h2", "六、承办单位办理指标"), ("chart", "rates"),
            ("table", (["承办单位", "工单", "办结率", "按时办结率", "满意率", "重办率", "全量回访率"], [
                [r.unit, str(r.orders), _pct(r.close_rate), _pct(r.on_time_rate),
                 _pct(r.satisfaction_rate), _pct(r.reopen_rate), _pct(r.revisit_rate)]
                for r in [*b.rates[:30], b.overall]])),
            ("note", ("办结率=已办结/受理；按时办结率=未超期办结/回复时间可知的办结；满意率=末次回访满意或"
                     "基本满意/有满意度回答；重办率=发生重办/受理；全量回访率=已回访涉企工单/已反馈涉企工单。"
                     "“—”表示无可计算的数据。"))]
    return out


# ---- HTML ---------------------------------------------------------------------------------
_CSS = """body{font-family:'WenQuanYi Micro Hei','Noto Sans CJK SC',sans-serif;margin:24px;
color:#222;max-width:1200px}h1{color:#1d4f91}h2{border-left:4px solid #1d4f91;padding-left:8px}
table{border-collapse:collapse;margin:8px 0;font-size:13px}td,th{border:1px solid #ccc;
padding:3px 6px;vertical-align:top}th{background:#eef3fa}.note{color:#666;font-size:13px}
img{max-width:100%}"""


def _esc(value: object) -> str:
    return html.escape(mask_pii(str(value)))


def to_html(b: Bulletin, pngs: dict[str, bytes] | None = None) -> str:
    pngs = pngs if pngs is not None else charts(b)
    parts = ["<!DOCTYPE html><html lang='zh-CN'><head><meta charset='utf-8'>",
             f"<title>{_esc(f'热点快报 {b.start}至{b.end}')}</title><style>{_CSS}</style></head><body>"]
    for kind, payload in blocks(b):
        if kind in ("h1", "h2", "h3"):
            parts.append(f"<{kind}>{_esc(payload)}</{kind}>")
        elif kind == "p":
            parts.append(f"<p>{_esc(payload)}</p>")
        elif kind == "note":
            parts.append(f"<p class='note'>{_esc(payload)}</p>")
        elif kind == "chart":
            data = base64.b64encode(pngs[str(payload)]).decode("ascii")
            title = _esc(CHART_TITLES[str(payload)])
            parts.append(f"<figure><img alt='{title}' src='data:image/png;base64,{data}'>"
                         f"<figcaption class='note'>{title}</figcaption></figure>")
        elif kind == "table":
            head, rows = cast(Table, payload)
            parts.append("<table><tr>" + "".join(f"<th>{_esc(h)}</th>" for h in head) + "</tr>")
            parts.extend("<tr>" + "".join(f"<td>{_esc(c)}</td>" for c in row) + "</tr>"
                         for row in rows)
            parts.append("</table>")
    parts.append("</body></html>")
    return "\n".join(parts)


# ---- Markdown -----------------------------------------------------------------------------
def _md_cell(value: object) -> str:
    return mask_pii(str(value)).replace("|", "｜").replace("\n", " ")


def to_markdown(b: Bulletin, chart_names: dict[str, str]) -> str:
    """Markdown; ``chart_names`` maps chart name -> the PNG file name beside the .md file."""
    lines: list[str] = []
    for kind, payload in blocks(b):
        if kind in ("h1", "h2", "h3"):
            lines += ["#" * int(kind[1]) + " " + _md_cell(payload), ""]
        elif kind in ("p", "note"):
            lines += [("> " if kind == "note" else "") + _md_cell(payload), ""]
        elif kind == "chart":
            lines += [f"![{CHART_TITLES[str(payload)]}]({chart_names[str(payload)]})", ""]
        elif kind == "table":
            head, rows = cast(Table, payload)
            lines.append("| " + " | ".join(_md_cell(h) for h in head) + " |")
            lines.append("|" + "---|" * len(head))
            lines += ["| " + " | ".join(_md_cell(c) for c in row) + " |" for row in rows]
            lines.append("")
    return "\n".join(lines)


def write_bulletin(b: Bulletin, out: str | Path) -> list[Path]:
    """Write ``out`` (.html, or .md with PNG charts beside it); returns the files written."""
    path = Path(out)
    suffix = path.suffix.lower()
    if suffix not in (".html", ".htm", ".md"):
        raise ValueError(f"输出文件须为 .html 或 .md：{path}")
    path.parent.mkdir(parents=True, exist_ok=True)
    pngs = charts(b)
    if suffix != ".md":
        path.write_text(to_html(b, pngs), encoding="utf-8")
        return [path]
    names = {name: f"{path.stem}-{name}.png" for name in pngs}
    written = [path]
    for name, data in pngs.items():
        target = path.with_name(names[name])
        target.write_bytes(data)
        written.append(target)
    path.write_text(to_markdown(b, names), encoding="utf-8")
    return written
