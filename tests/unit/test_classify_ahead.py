"""The classify-ahead helper processes: the embedded runner's (`ClassifyAhead`) and a Kafka
worker's (`ClassifierProcess`). Same outcomes as classifying in-process, and a helper that fails,
dies or hangs leaves the caller to classify."""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Sequence
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from hotline.bootstrap import App, bootstrap
from hotline.settings import Settings
from models.records import Candidate, OrderIn, Prediction
from streams.classify_ahead import ClassifierProcess, ClassifyAhead, available
from streams.runner import EmbeddedRunner

pytestmark = pytest.mark.skipif(not available(), reason="needs fork and two cores")

T0 = datetime(2026, 11, 24, 8, 0)
TEXTS = ("园区道路破损影响货车通行", "企业反映社保缴费基数核定有误", "夜间施工噪声扰民",
         "饭店油烟直排影响居民", "想咨询一下相关事情怎么办理")


class Labeller:
    """A classifier that names the process it ran in, and fails outside ``home`` if asked."""

    version = "fake-1"

    def __init__(self, *, fail_away_from: int | None = None,
                 hang_away_from: int | None = None) -> None:
        self.fail_away_from = fail_away_from
        self.hang_away_from = hang_away_from
        self.batches = 0  # counted in the process that classified

    def predict(self, orders: Sequence[OrderIn], k: int = 3) -> list[Prediction]:
        if self.fail_away_from is not None and os.getpid() != self.fail_away_from:
            raise RuntimeError("helper broke")
        if self.hang_away_from is not None and os.getpid() != self.hang_away_from:
            time.sleep(60)
        self.batches += 1
        return [Prediction(candidates=(Candidate(f"{o.order_id}@{os.getpid()}", 0.9),),
                           model_version=self.version) for o in orders]


def orders(n: int, start: int = 0) -> list[OrderIn]:
    return [OrderIn(order_id=f"A{i}", channel="12345热线", received_at=T0, title="",
                    text=TEXTS[i % len(TEXTS)]) for i in range(start, start + n)]


def test_the_helper_classifies_every_batch_in_order_in_another_process() -> None:
    batches = [orders(3), orders(2, 3), orders(4, 5)]
    helper = ClassifyAhead(Labeller(), batches)
    try:
        got = [helper.next() for _ in batches]
    finally:
        helper.close()
    units = [[p.top.unit for p in answer[0]] for answer in got if answer is not None]
    assert [[u.split("@")[0] for u in batch] for batch in units] == [
        [o.order_id for o in batch] for batch in batches
    ]
    assert {u.split("@")[1] for batch in units for u in batch} != {str(os.getpid())}


def test_a_failing_helper_answers_none_and_stops() -> None:
    helper = ClassifyAhead(Labeller(fail_away_from=os.getpid()), [orders(2), orders(2, 2)])
    try:
        assert helper.next() is None
        assert helper.next() is None
    finally:
        helper.close()


def _app(path: Path) -> App:
    return bootstrap(Settings(database_url=f"sqlite:///{path}"), registry=CollectorRegistry())


def _messages(n: int) -> list[Any]:
    out: list[Any] = [
        {"order_id": f"GD{i:04d}", "received_at": (T0 + timedelta(minutes=i)).isoformat(),
         "text": TEXTS[i % len(TEXTS)], "address": "朱泾镇"}
        for i in range(n)
    ]
    for i in range(5, n, 10):  # one enterprise's repeated complaints (line-first from the 3rd)
        out[i].update(enterprise_name="上海金山某某精细化工有限公司",
                      credit_code="91310116MA1J8XXX0K")
    out[7] = {"order_id": "BAD", "text": ""}  # a dead letter in the first batch
    out[260] = dict(out[3])  # a repeat: routed in the first batch already
    return out


def _seen(outcomes: list[Any]) -> list[tuple[Any, ...]]:
    return [(o.status, o.order_id, o.code, o.decision) for o in outcomes]


def test_the_runner_gives_the_same_outcomes_with_and_without_the_helper(tmp_path: Path) -> None:
    messages = _messages(450)  # three batches
    plain = EmbeddedRunner(_app(tmp_path / "plain.db").router, classify_ahead=False)
    ahead_app = _app(tmp_path / "ahead.db")
    ahead = EmbeddedRunner(ahead_app.router, classify_ahead=True)
    assert ahead.classify_ahead
    expected = plain.ingest(messages)
    got = ahead.ingest(messages)
    assert _seen(got) == _seen(expected)
    assert [o.status for o in got].count("duplicate") == 1
    assert len(ahead_app.store.dead_letters()) == 1
    assert ahead.report.feeds.keys() == plain.report.feeds.keys()


def test_the_runner_classifies_itself_when_the_helper_fails(tmp_path: Path) -> None:
    app = _app(tmp_path / "h.db")
    app.router.classifier = labeller = Labeller(fail_away_from=os.getpid())
    runner = EmbeddedRunner(app.router, classify_ahead=True)
    outcomes = runner.ingest(_messages(450))
    assert len([o for o in outcomes if o.decision is not None]) == 448  # unknown units: manual
    assert labeller.batches == 3  # every batch classified here


# ---- the Kafka worker's classifier process --------------------------------------------------
def _where(answer: Any) -> list[tuple[str, str]]:
    return [tuple(p.top.unit.split("@")) for p in answer[0]]  # type: ignore[misc]


def test_the_classifier_process_answers_for_any_subset_of_a_batch_from_another_process() -> None:
    helper = ClassifierProcess(Labeller())
    try:
        first, second = orders(4), orders(3, 10)
        ahead1 = helper.submit(first)
        ahead2 = helper.submit(second)  # two batches in flight
        assert ahead1 is not None and ahead2 is not None
        got2 = ahead2.get([second[2], second[0]])
        got1 = ahead1.get(first)
        assert got1 is not None and got2 is not None
        assert [u for u, _ in _where(got1)] == ["A0", "A1", "A2", "A3"]
        assert [u for u, _ in _where(got2)] == ["A12", "A10"]
        assert {pid for _, pid in _where(got1) + _where(got2)} == {str(helper.pid)}
        assert helper.pid != os.getpid()
        # orders that were not in the batch (other objects): no answer, classify here
        assert ahead1.get(orders(1)) is None
        assert helper.alive
    finally:
        helper.close()
    assert not helper.alive
    assert helper.submit(orders(1)) is None  # closed: the caller classifies


def test_a_batch_the_process_fails_on_is_classified_by_the_caller_and_the_process_stays() -> None:
    helper = ClassifierProcess(Labeller(fail_away_from=os.getpid()))
    try:
        batch = orders(2)
        ahead = helper.submit(batch)
        assert ahead is not None and ahead.get(batch) is None
        assert helper.alive
    finally:
        helper.close()


def test_a_dead_process_leaves_every_batch_to_the_caller() -> None:
    helper = ClassifierProcess(Labeller())
    try:
        assert helper.pid is not None
        os.kill(helper.pid, signal.SIGKILL)
        batch = orders(2)
        ahead = helper.submit(batch)
        assert ahead is None or ahead.get(batch) is None
        deadline = time.monotonic() + 10
        while helper.alive and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not helper.alive
        assert helper.submit(batch) is None
    finally:
        helper.close()


def test_a_process_that_does_not_answer_in_time_is_stopped() -> None:
    helper = ClassifierProcess(Labeller(hang_away_from=os.getpid()), timeout_s=0.5)
    try:
        batch = orders(2)
        ahead = helper.submit(batch)
        assert ahead is not None
        started = time.monotonic()
        assert ahead.get(batch) is None
        assert time.monotonic() - started < 10
        assert not helper.alive and helper.submit(batch) is None
    finally:
        helper.close()


def test_a_hung_process_does_not_hold_up_a_submit_blocked_behind_it() -> None:
    """The intake thread's submit blocks while the hung helper reads nothing; the router
    thread's wait must still give up in time, and the blocked submit must return."""
    helper = ClassifierProcess(Labeller(hang_away_from=os.getpid()), timeout_s=1.0)
    try:
        first = orders(2)
        ahead = helper.submit(first)
        assert ahead is not None
        big = [OrderIn(order_id=f"B{i}", channel="12345热线", received_at=T0, title="",
                       text=f"{i}" + "长" * 2000) for i in range(400)]  # megabytes
        blocked: list[Any] = []
        sender = threading.Thread(target=lambda: blocked.append(helper.submit(big)))
        sender.start()
        started = time.monotonic()
        assert ahead.get(first) is None
        sender.join(10)
        assert not sender.is_alive(), "a submit stayed blocked after the helper was stopped"
        assert time.monotonic() - started < 10
        assert blocked == [None] or blocked[0].get(big) is None
        assert not helper.alive
    finally:
        helper.close()


def test_the_router_gives_the_same_outcomes_with_the_classifier_process(tmp_path: Path) -> None:
    messages = _messages(300)
    plain = _app(tmp_path / "plain.db").router
    helped_app = _app(tmp_path / "helped.db")
    helped = helped_app.router
    helper = helped.classifier_process = ClassifierProcess(helped.helper_classifier)
    # the rules' text scans ran in the helper, beside the classification: this process's
    # engine (patched after the fork, so the helper's copy is not) never scans an order
    scanned: list[OrderIn] = []
    text_facts = helped.engine.text_facts
    helped.engine.text_facts = lambda o: scanned.append(o) or text_facts(o)  # type: ignore
    submitted: list[tuple[list[OrderIn], Any]] = []
    submit = helper.submit

    def spy(batch: Sequence[OrderIn], *, k: int = 3) -> Any:
        ahead = submit(batch, k=k)
        submitted.append((list(batch), ahead))
        return ahead

    helper.submit = spy  # type: ignore[method-assign]
    try:
        expected, got = [], []
        for start in range(0, len(messages), 100):
            expected.extend(plain.receive_batch(messages[start:start + 100]))
            got.extend(helped.receive_batch(messages[start:start + 100]))
        assert helper.alive
        # every batch went to the process, and the process answered each
        assert len(submitted) == 3
        assert all(a is not None and a.get(b) is not None for b, a in submitted)
    finally:
        helper.close()
    assert _seen(got) == _seen(expected)
    assert scanned == []
    assert any(o.decision is not None and o.decision.trigger == "repeat" for o in got)
    assert [o.status for o in got].count("duplicate") == 1
    assert len(helped_app.store.dead_letters()) == 1
