"""Helpers shared by the unit and integration tiers."""

from __future__ import annotations

from collections.abc import Container

from hotline.bootstrap import App
from models.lifecycle import LifecycleEvent, State
from models.tables import now_local


def send_back_to_dispatcher(app: App, wanted: int, *, keep: Container[str] = ()) -> None:
    """Make sure ``wanted`` orders wait for a dispatcher, however good the model: let units
    return dispatched orders (退单) until the second return sends each to the manual queue, as
    the lifecycle rules say. Orders in ``keep`` are left alone."""
    dispatched = iter(r for r in app.store.queue("dispatched") if r.id not in keep)
    while len(app.store.queue("manual")) < wanted:
        row = next(dispatched)
        for attempt in range(3):
            current = app.store.get_order(row.id)
            if current is None or current.state != State.DISPATCHED.value:
                break
            app.router.apply_event(LifecycleEvent(
                f"{row.id}:seed-return:{attempt}", row.id, "OrderReturned", now_local(),
                str(current.lead_unit), {"reason": "不属于本单位职责范围"},
            ))
