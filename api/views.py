"""Read models for the API (视图): orders, history, queues and unit load as JSON.

Masking (脱敏): a unit sees its own orders as they are, caller phone included; a revisit
officer sees the caller's phone (to call back) but masked text; a dispatcher and the console
see every phone and ID number masked.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import func
from sqlmodel import Session, col, select

from api.auth import ROLE_REVISIT, ROLE_UNIT
from hotline.masking import mask_pii
from models.lifecycle import EVENT_NAMES, State
from models.store import Store
from models.tables import DispatchDecisionRow, EventRow, WorkOrder

OPEN_STATES = [s.value for s in State if s is not State.CLOSED]
SNIPPET_CHARS = 120


@dataclass(frozen=True)
class Exposure:
    """What personal data a role may see unmasked."""

    text: bool  # 诉求内容, title, address, event data
    caller: bool  # 来电人 / 联系电话

    @classmethod
    def for_role(cls, role: str) -> Exposure:
        if role == ROLE_UNIT:
            return cls(text=True, caller=True)
        if role == ROLE_REVISIT:
            return cls(text=False, caller=True)
        return cls(text=False, caller=False)


MASKED = Exposure(text=False, caller=False)


def _shown(value: str | None, reveal: bool) -> str | None:
    if value is None:
        return None
    return value if reveal else mask_pii(value)


def _masked_data(value: Any) -> Any:
    if isinstance(value, str):
        return mask_pii(value)
    if isinstance(value, list):
        return [_masked_data(v) for v in value]
    if isinstance(value, dict):
        return {k: _masked_data(v) for k, v in value.items()}
    return value


def latest_decisions(store: Store, order_ids: Sequence[str]) -> dict[str, DispatchDecisionRow]:
    """The most recent dispatch decision per order (one query)."""
    if not order_ids:
        return {}
    stmt = (
        select(DispatchDecisionRow)
        .where(col(DispatchDecisionRow.order_id).in_(list(order_ids)))
        .order_by(col(DispatchDecisionRow.id))
    )
    with Session(store.engine) as s:
        rows = s.exec(stmt).all()
    return {row.order_id: row for row in rows}


def suggestions(row: WorkOrder, decision: DispatchDecisionRow | None) -> list[dict[str, Any]]:
    """The top three candidate units (前三建议), never one that already returned the order."""
    if decision is None:
        return []
    returned = set(row.returned_units)
    picked = [c for c in decision.candidates if c.get("unit") and c["unit"] not in returned]
    return [
        {"unit": c["unit"], "probability": round(float(c.get("probability", 0.0)), 4)}
        for c in picked[:3]
    ]


def decision_json(decision: DispatchDecisionRow | None) -> dict[str, Any] | None:
    if decision is None:
        return None
    return {
        "at": decision.at.isoformat(),
        "lead_unit": decision.lead_unit,
        "co_units": list(decision.co_units),
        "manual": decision.manual,
        "confidence": round(decision.confidence, 4),
        "rules": list(decision.rules),
        "reasons": list(decision.reasons),
        "line_first": decision.line_first,
        "trigger": decision.trigger,
        "model_version": decision.model_version,
        "candidates": [
            {"unit": c.get("unit"), "probability": round(float(c.get("probability", 0.0)), 4)}
            for c in decision.candidates
        ],
    }


def order_json(
    row: WorkOrder, exposure: Exposure, decision: DispatchDecisionRow | None = None
) -> dict[str, Any]:
    """One order with its lifecycle snapshot and the latest dispatch decision."""
    return {
        "id": row.id,
        "channel": row.channel,
        "received_at": row.received_at.isoformat(),
        "title": _shown(row.title, exposure.text),
        "text": _shown(row.text, exposure.text),
        "caller": _shown(row.caller, exposure.caller),
        "enterprise_name": row.enterprise_name,
        "credit_code": row.credit_code,
        "address": _shown(row.address, exposure.text),
        "area": row.area,
        "appeal_type": row.appeal_type,
        "is_enterprise": row.is_enterprise,
        "legacy": row.legacy,
        "urgent": row.urgent,
        "state": row.state,
        "lead_unit": row.lead_unit,
        "co_units": list(row.co_units),
        "returned_units": list(row.returned_units),
        "return_count": row.return_count,
        "reopen_count": row.reopen_count,
        "supervised": row.supervised,
        "overdue": list(row.overdue),
        "deadlines": dict(row.deadlines),
        "next_due": row.next_due.isoformat() if row.next_due else None,
        "model_version": row.model_version,
        "confidence": round(row.confidence, 4) if row.confidence is not None else None,
        "decision": decision_json(decision),
        "suggestions": suggestions(row, decision),
    }


def queue_item(row: WorkOrder, decision: DispatchDecisionRow | None) -> dict[str, Any]:
    """A console row: masked, with a text snippet, the decision's why and the suggestions."""
    text = mask_pii(row.text)
    return {
        "id": row.id,
        "received_at": row.received_at.isoformat(),
        "title": mask_pii(row.title),
        "snippet": text[:SNIPPET_CHARS] + ("…" if len(text) > SNIPPET_CHARS else ""),
        "enterprise_name": row.enterprise_name,
        "is_enterprise": row.is_enterprise,
        "area": row.area,
        "appeal_type": row.appeal_type,
        "state": row.state,
        "lead_unit": row.lead_unit,
        "co_units": list(row.co_units),
        "returned_units": list(row.returned_units),
        "confidence": round(row.confidence, 4) if row.confidence is not None else None,
        "reasons": list(decision.reasons) if decision else [],
        "rules": list(decision.rules) if decision else [],
        "suggestions": suggestions(row, decision),
        "overdue": list(row.overdue),
        "reopen_count": row.reopen_count,
        "return_count": row.return_count,
        "supervised": row.supervised,
        "next_due": row.next_due.isoformat() if row.next_due else None,
    }


def history_json(events: Iterable[EventRow], exposure: Exposure) -> list[dict[str, Any]]:
    """The audit trail (处理记录): every event, accepted or rejected, with who did it."""
    return [
        {
            "seq": e.seq,
            "event_id": e.event_id,
            "kind": e.kind,
            "name": EVENT_NAMES.get(e.kind, e.kind),
            "at": e.at.isoformat(),
            "actor": e.actor,
            "accepted": e.accepted,
            "rejection_code": e.rejection_code,
            "rejection_reason": e.rejection_reason,
            "data": dict(e.data) if exposure.text else _masked_data(dict(e.data)),
            "recorded_at": e.recorded_at.isoformat(),
        }
        for e in events
    ]


def unit_load(store: Store) -> list[dict[str, Any]]:
    """Open orders per lead unit (各单位在办量): total, waiting for 签收, overdue, 督办."""
    stmt = select(WorkOrder.lead_unit, WorkOrder.state, WorkOrder.overdue, WorkOrder.supervised)
    stmt = stmt.where(col(WorkOrder.state).in_(OPEN_STATES), col(WorkOrder.lead_unit).is_not(None))
    with Session(store.engine) as s:
        rows = s.exec(stmt).all()
    total: Counter[str] = Counter()
    waiting: Counter[str] = Counter()
    overdue: Counter[str] = Counter()
    supervised: Counter[str] = Counter()
    for lead, state, passed, sup in rows:
        unit = str(lead)
        total[unit] += 1
        waiting[unit] += state == State.DISPATCHED.value
        overdue[unit] += bool(passed)
        supervised[unit] += bool(sup)
    kinds = {u.name: u.kind for u in store.units()}
    return [
        {
            "unit": unit, "kind": kinds.get(unit, ""), "open": n, "waiting_accept": waiting[unit],
            "overdue": overdue[unit], "supervised": supervised[unit],
        }
        for unit, n in sorted(total.items(), key=lambda item: (-item[1], item[0]))
    ]


def open_counts(store: Store) -> dict[tuple[str, str], int]:
    """Open orders per (lead unit, state), for the `hotline_unit_open_orders` gauge."""
    stmt = (
        select(WorkOrder.lead_unit, WorkOrder.state, func.count())
        .where(col(WorkOrder.state).in_(OPEN_STATES), col(WorkOrder.lead_unit).is_not(None))
        .group_by(col(WorkOrder.lead_unit), col(WorkOrder.state))
    )
    with Session(store.engine) as s:
        return {(str(unit), str(state)): int(n) for unit, state, n in s.exec(stmt).all()}


def visible_to_unit(row: WorkOrder, unit: str) -> bool:
    """A unit sees the orders it leads (主办) or assists (协办)."""
    return row.lead_unit == unit or unit in row.co_units
