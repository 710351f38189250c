"""The run summary (运行小结) printed by `hotline run`."""

from __future__ import annotations

from collections import Counter
from typing import Any

from hotline.masking import mask_pii
from streams.handlers import Router
from streams.runner import RunReport

_TRIGGERS = {
    "repeat": "多次重复涉企投诉",
    "beyond_power": "街镇无力解决",
    "legacy": "历史遗留",
    "reopened": "街镇办理后重办",
}


def build(router: Router, report: RunReport) -> dict[str, Any]:
    store = router.store
    statuses = report.status_counts()
    first = {o.order_id: o for o in report.outcomes if o.decision is not None}
    line_first = [
        {
            "order_id": o.order_id,
            "lead_unit": o.decision.lead_unit,
            "co_units": list(o.decision.co_units),
            "trigger": o.decision.trigger,
        }
        for o in [*report.outcomes, *report.redispatches]
        if o.decision is not None and o.decision.line_first
    ]
    events = Counter()
    for eo in report.event_outcomes:
        for e in eo.result.applied:
            events[e.kind] += 1
    rejected = Counter(
        eo.result.rejected.code for eo in report.event_outcomes if eo.result.rejected is not None
    )
    counts = store.counts()
    per_unit: Counter[str] = Counter()
    for oid in first:
        row = store.get_order(oid)
        per_unit[(row.lead_unit if row and row.lead_unit else "（待人工派单）")] += 1
    return {
        "messages": len(report.outcomes),
        "accepted_orders": len(first),
        "auto_dispatched": sum(1 for o in first.values() if not o.decision.manual),
        "manual": sum(1 for o in first.values() if o.decision.manual),
        "duplicates": statuses.get("duplicate", 0),
        "dead_letters": [
            {"code": d["code"], "reason": mask_pii(d["reason"])[:120]} for d in report.dead_letters
        ],
        "per_unit": dict(per_unit),
        "per_state": counts["by_state"],
        "line_first": line_first,
        "redispatched": sum(1 for o in report.redispatches if o.status == "redispatched"),
        "returns": events.get("OrderReturned", 0),
        "reopened": events.get("OrderReopened", 0),
        "supervised": len(store.queue("supervised")),
        "overdue": len(store.queue("overdue")),
        "closed": counts["by_state"].get("已办结", 0),
        "revisits": events.get("RevisitRecorded", 0),
        "rejected_events": dict(rejected),
        "feeds": {topic: len(v) for topic, v in sorted(report.feeds.items())},
        "model_version": router.classifier.version,
    }


def render(d: dict[str, Any]) -> str:
    lines = ["", "══════ 运行小结 ══════"]
    lines.append(f"消息 {d['messages']} 条")
    lines.append(
        f"受理工单 {d['accepted_orders']} 件：自动派单 {d['auto_dispatched']} 件，"
        f"转人工派单 {d['manual']} 件；重复消息 {d['duplicates']} 条；死信 {len(d['dead_letters'])} 条"
    )
    lines.append(f"模型版本：{d['model_version']}")
    lines.append("")
    lines.append("【各承办单位工单数（当前主办）】")
    per_unit = sorted(d["per_unit"].items(), key=lambda kv: (-kv[1], kv[0]))
    for unit, n in per_unit:
        lines.append(f"  {unit:<12}{n:>5}")
    lines.append("")
    lines.append(f"【条线部门为主】{len(d['line_first'])} 件")
    by_trigger = Counter(x["trigger"] for x in d["line_first"])
    for trig, n in by_trigger.most_common():
        lines.append(f"  触发：{_TRIGGERS.get(trig, trig)} {n} 件")
    for x in d["line_first"][:12]:
        co = "、".join(x["co_units"]) or "无"
        lines.append(
            f"    {x['order_id']} → 主办 {x['lead_unit']}，协办 {co}（{_TRIGGERS.get(x['trigger'], x['trigger'])}）"
        )
    lines.append("")
    lines.append("【闭环】")
    lines.append(
        f"  退单 {d['returns']} 次，改派 {d['redispatched']} 次；回访 {d['revisits']} 次；"
        f"重办 {d['reopened']} 次；督办 {d['supervised']} 件；超期 {d['overdue']} 件；办结 {d['closed']} 件"
    )
    states = "，".join(f"{k} {v}" for k, v in sorted(d["per_state"].items(), key=lambda kv: -kv[1]))
    lines.append(f"  当前状态：{states}")
    if d["rejected_events"]:
        rej = "，".join(f"{k} {v}" for k, v in d["rejected_events"].items())
        lines.append(f"  被拒绝的事件（已记录原因）：{rej}")
    lines.append("")
    lines.append(f"【死信】{len(d['dead_letters'])} 条")
    for x in d["dead_letters"]:
        lines.append(f"  {x['code']}：{x['reason']}")
    return "\n".join(lines)
