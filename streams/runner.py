"""The embedded runner (内嵌模式): the whole pipeline in one process, no Kafka.

Feeds intake messages through the same `Router` handlers the faust agents use, delivers the
outbox to in-memory per-unit feeds, and — for the sample day — plays the units' and the revisit
staff's side so the closed loop (收集—办理—反馈—回访) runs end to end.
"""

from __future__ import annotations

import random
import time
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from models.lifecycle import LifecycleEvent, State
from models.records import OrderIn
from streams.classify_ahead import ClassifyAhead, available
from streams.handlers import EventOutcome, Outcome, OutMessage, Router
from streams.stage_timing import TIMES

BATCH = 200  # orders per embedded batch (the Kafka worker's are `streams.app.BATCH`)


@dataclass
class RunReport:
    """Counts for the run summary (运行小结)."""

    outcomes: list[Outcome] = field(default_factory=list)  # intake messages
    redispatches: list[Outcome] = field(default_factory=list)  # 改派 / manual after 退单
    event_outcomes: list[EventOutcome] = field(default_factory=list)
    feeds: dict[str, list[dict[str, Any]]] = field(default_factory=lambda: defaultdict(list))
    dead_letters: list[dict[str, Any]] = field(default_factory=list)
    dispatched: list[dict[str, Any]] = field(default_factory=list)

    def deliver(self, messages: Iterable[OutMessage]) -> None:
        for m in messages:
            if m.topic == "workorders.dlq":
                self.dead_letters.append(m.value)
            elif m.topic == "workorders.dispatched":
                self.dispatched.append(m.value)
            else:
                self.feeds[m.topic].append(m.value)

    def status_counts(self) -> Counter[str]:
        return Counter(o.status for o in self.outcomes)


class EmbeddedRunner:
    """Feeds intake messages through the router in batches and delivers the outboxes.

    With ``classify_ahead`` (where `classify_ahead.available()`), an ingest of more than one
    batch is classified in a helper process on the second core while this process routes and
    stores the batches already classified; the outcomes are the same either way. `hotline run`
    turns it on unless ``--no-classify-ahead`` or ``HOTLINE_CLASSIFY_PROCESS=0``; here it is off
    unless asked for (`make bench` measures both ways)."""

    def __init__(self, router: Router, *, classify_ahead: bool = False) -> None:
        self.router = router
        self.report = RunReport()
        self.classify_ahead = classify_ahead and available()

    def ingest(self, messages: Sequence[Any], *, batch: int = BATCH) -> list[Outcome]:
        chunks = [messages[start : start + batch] for start in range(0, len(messages), batch)]
        if self.classify_ahead and len(chunks) > 1:
            results = self._ingest_ahead(chunks)
        else:
            results = []
            for chunk in chunks:
                results.extend(self._deliver(self.router.receive_batch(chunk)))
        self.report.outcomes.extend(results)
        return results

    def _ingest_ahead(self, chunks: Sequence[Sequence[Any]]) -> list[Outcome]:
        """Validate every batch first (dead letters are stored then), then route them in order
        while the helper classifies the batches ahead of the one being routed."""
        results: list[Outcome] = []
        checked = [self._validate(chunk) for chunk in chunks]
        helper = ClassifyAhead(self.router.classifier, [_orders(c) for c in checked])
        try:
            for current in checked:
                waited = time.perf_counter()
                ahead = helper.next()
                TIMES.add("runner.classify_wait", time.perf_counter() - waited, len(current))
                predictions = None
                if ahead is not None:
                    predictions, seconds = ahead
                    self.router.metrics.classification.observe(seconds)
                    TIMES.add("runner.classify_ahead", seconds, len(predictions))
                results.extend(self._deliver(
                    self.router.receive_checked(current, predictions=predictions)
                ))
        finally:
            helper.close()
        return results

    def _validate(self, chunk: Sequence[Any]) -> list[OrderIn | Outcome]:
        return [self.router.validate(raw) for raw in chunk]

    def _deliver(self, outs: list[Outcome]) -> list[Outcome]:
        for o in outs:
            self.report.deliver(o.outbox)
        return outs

    def apply(self, events: Iterable[LifecycleEvent]) -> list[EventOutcome]:
        results = []
        for e in events:
            out = self.router.apply_event(e)
            self.report.deliver(out.outbox)
            if out.decision is not None and e.kind == "OrderReturned":
                self.report.redispatches.append(
                    Outcome(
                        status="manual" if out.decision.manual else "redispatched",
                        order_id=e.order_id,
                        decision=out.decision,
                    )
                )
            results.append(out)
        self.report.event_outcomes.extend(results)
        return results


def _orders(checked: Sequence[OrderIn | Outcome]) -> list[OrderIn]:
    return [c for c in checked if not isinstance(c, Outcome)]


# ---- the units' and revisit staff's side for the sample day ---------------------------------

_RETURN_REASONS = ("非本单位职责范围，请改派", "经核实不属于本单位管辖", "诉求涉及多部门，建议由职能部门牵头")
_BEYOND_POWER = "街镇已多次协调，超出属地处置能力，无力解决，请条线部门主办"
_REPLIES = (
    "已联系诉求人，现场核实后已督促整改，情况已向诉求人反馈。",
    "已电话联系企业负责人，说明相关政策并协助办理，企业表示认可。",
    "经核查，已责令相关方限期整改，后续将持续跟踪。",
    "已安排工作人员上门处置，问题已解决。",
)


class UnitSimulator:
    """Plays the 承办单位 and the 回访员 for the sample day. Seeded: the same day, the same run."""

    def __init__(self, runner: EmbeddedRunner, territorial: set[str], seed: int = 7) -> None:
        self.runner = runner
        self.store = runner.router.store
        self.territorial = territorial
        self.rng = random.Random(seed)
        self.serial = 0

    def _event(self, order_id: str, kind: str, at: datetime, actor: str, **data: Any) -> LifecycleEvent:
        self.serial += 1
        return LifecycleEvent(
            event_id=f"{order_id}:sim:{self.serial}", order_id=order_id, kind=kind, at=at,
            actor=actor, data=data,
        )

    def _now(self, order_id: str) -> datetime:
        row = self.store.get_order(order_id)
        assert row is not None
        return row.received_at

    def play_units(self, order_ids: Sequence[str], hours: float) -> None:
        """Each unit holding an order either returns it, leaves it unsigned, or signs and replies."""
        for oid in order_ids:
            lc = self.store.lifecycle(oid)
            if lc.state != State.DISPATCHED or lc.unit is None:
                continue
            at = self._now(oid) + timedelta(hours=hours)
            roll = self.rng.random()
            if roll < 0.07 and lc.reopen_count == 0:
                beyond = lc.unit in self.territorial and self.rng.random() < 0.6
                reason = _BEYOND_POWER if beyond else self.rng.choice(_RETURN_REASONS)
                self.runner.apply([self._event(oid, "OrderReturned", at, lc.unit, reason=reason,
                                               beyond_power=beyond)])
            elif roll < 0.11:
                continue  # never signed for: the 签收 deadline will pass
            else:
                self.runner.apply([
                    self._event(oid, "OrderAccepted", at, lc.unit),
                    self._event(oid, "OrderReplied", at + timedelta(hours=20), lc.unit,
                                reply=self.rng.choice(_REPLIES)),
                ])

    def play_dispatcher(self, order_ids: Sequence[str], actor: str = "dispatcher:值班长") -> int:
        """The duty dispatcher takes the manual queue: dispatch to the top suggestion."""
        done = 0
        for oid in order_ids:
            lc = self.store.lifecycle(oid)
            if lc.state != State.MANUAL:
                continue
            history = self.store.history(oid)
            suggestions = [
                u for e in history if e.kind == "SentToManualQueue" and e.accepted
                for u in e.data.get("suggestions", [])
            ]
            unit = next((u for u in suggestions if u not in lc.returned_units), None)
            if unit is None:
                continue
            at = self._now(oid) + timedelta(hours=2)
            self.runner.apply([self._event(oid, "OrderDispatched", at, actor, unit=unit,
                                           co_units=[], manual=True, by_dispatcher=True)])
            done += 1
        return done

    def play_revisits(self, order_ids: Sequence[str], hours: float, negative_rate: float) -> None:
        """回访: every enterprise order and a share of the others; the rest are closed."""
        for oid in order_ids:
            lc = self.store.lifecycle(oid)
            if lc.state != State.REPLIED:
                continue
            at = self._now(oid) + timedelta(hours=hours)
            if not lc.is_enterprise and self.rng.random() < 0.6:
                self.runner.apply([self._event(oid, "OrderClosed", at, "system")])
                continue
            roll = self.rng.random()
            contacted, solved, satisfaction = "已联系", "已解决", self.rng.choice(["满意", "满意", "基本满意"])
            if roll < negative_rate * 0.25:
                contacted, solved, satisfaction = "未联系", "未解决", "不满意"
            elif roll < negative_rate * 0.6:
                solved, satisfaction = "未解决", "不满意"
            elif roll < negative_rate:
                satisfaction = "不满意"
            self.runner.apply([self._event(oid, "RevisitRecorded", at, "revisit:回访组",
                                           contacted=contacted, solved=solved,
                                           satisfaction=satisfaction)])


def run_sample_day(
    router: Router, messages: Sequence[Any], territorial: set[str], *,
    classify_ahead: bool = False,
) -> RunReport:
    """Replay a day and play every other party's side of the closed loop."""
    runner = EmbeddedRunner(router, classify_ahead=classify_ahead)
    runner.ingest(messages)
    ids = [o.order_id for o in runner.report.outcomes if o.order_id and o.status != "dead_letter"]
    ids = list(dict.fromkeys(ids))
    sim = UnitSimulator(runner, territorial)
    sim.play_dispatcher(ids)
    for round_hours in (2, 6, 30, 54):  # returns get re-dispatched and handled in later rounds
        sim.play_units(ids, round_hours)
        sim.play_dispatcher(ids)
    sim.play_revisits(ids, 48, negative_rate=0.18)
    sim.play_units(ids, 70)
    sim.play_revisits(ids, 96, negative_rate=0.45)
    sim.play_units(ids, 110)
    sim.play_revisits(ids, 130, negative_rate=0.1)
    first = min((router.store.get_order(i).received_at for i in ids), default=datetime.now())
    router.tick(first + timedelta(days=14))
    return runner.report
