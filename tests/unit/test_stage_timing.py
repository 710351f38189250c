"""The opt-in per-stage timings of the worker (streams.stage_timing)."""

from __future__ import annotations

import logging

import pytest

from streams.stage_timing import StageTimes


def test_disabled_timings_record_nothing() -> None:
    times = StageTimes(enabled=False)
    with times.stage("route.classify", 10):
        pass
    times.add("route.acks", 0.5, 3)
    assert "route" not in times.summary()


def test_enabled_timings_sum_batches_items_and_time() -> None:
    times = StageTimes(enabled=True, report_every=3600)
    times.add("route.acks", 0.25, 100)
    times.add("route.acks", 0.75, 300)
    with times.stage("router.classify", 7):
        pass
    line = times.summary()
    assert "route.acks: n=2 items=400 (200/batch) 500.0ms/batch" in line
    assert "router.classify: n=1 items=7" in line


def test_a_report_is_logged_and_starts_a_new_interval(caplog: pytest.LogCaptureFixture) -> None:
    times = StageTimes(enabled=True, report_every=0.0)
    with caplog.at_level(logging.WARNING, logger="streams.stage_timing"):
        times.add("intake.handle", 0.01, 5)
    assert "intake.handle: n=1 items=5" in caplog.text
    assert "intake.handle" not in times.summary()
