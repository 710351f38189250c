"""The embedded runner's classify-ahead helper process: same outcomes as classifying in-process,
and a helper that fails leaves the caller to classify."""

from __future__ import annotations

import os
from collections.abc import Sequence
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from hotline.bootstrap import App, bootstrap
from hotline.settings import Settings
from models.records import Candidate, OrderIn, Prediction
from streams.classify_ahead import ClassifyAhead, available
from streams.runner import EmbeddedRunner

pytestmark = pytest.mark.skipif(not available(), reason="needs fork and two cores")

T0 = datetime(2026, 11, 24, 8, 0)
TEXTS = ("园区道路破损影响货车通行", "企业反映社保缴费基数核定有误", "夜间施工噪声扰民",
         "饭店油烟直排影响居民", "想咨询一下相关事情怎么办理")


class Labeller:
    """A classifier that names the process it ran in, and fails outside ``home`` if asked."""

    version = "fake-1"

    def __init__(self, *, fail_away_from: int | None = None) -> None:
        self.fail_away_from = fail_away_from
        self.batches = 0  # counted in the process that classified

    def predict(self, orders: Sequence[OrderIn], k: int = 3) -> list[Prediction]:
        if self.fail_away_from is not None and os.getpid() != self.fail_away_from:
            raise RuntimeError("helper broke")
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
    out[7] = {"order_id": "BAD", "text": ""}  # a dead letter in the first batch
    out[260] = dict(out[3])  # a repeat: routed in the first batch already
    return out


def _seen(outcomes: list[Any]) -> list[tuple[Any, ...]]:
    return [(o.status, o.order_id, o.code, o.decision.lead_unit if o.decision else None,
             o.decision.candidates if o.decision else None) for o in outcomes]


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
