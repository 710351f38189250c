"""The worker's fetches wait for `FETCH_MIN_BYTES` or `Settings.fetch_wait_ms` while it keeps up
(streams.app.gathered_fetches, gather_below_backlog), and 0 leaves faust's own fetch settings."""

from __future__ import annotations

import asyncio
import functools
from typing import Any

import aiokafka
import pytest
from pydantic import ValidationError

from hotline.settings import Settings
from streams.app import BACKLOG_RECORDS, FETCH_MIN_BYTES, HotlineApp, gather_below_backlog


def _aiokafka_consumer(wait_ms: int) -> Any:
    """The aiokafka consumer faust's consumer thread would start for a HotlineApp, and the
    app's faust consumer."""

    async def build() -> Any:
        app = HotlineApp(f"hotline-test-fetch-{wait_ms}", broker="kafka://127.0.0.1:1",
                         store="memory://")
        app.fetch_wait_ms = wait_ms
        consumer = app.consumer
        return consumer._thread._create_worker_consumer(consumer.transport), consumer

    return asyncio.run(build())


def test_the_worker_s_fetches_gather_orders_for_the_configured_wait() -> None:
    consumer, faust_consumer = _aiokafka_consumer(25)
    assert consumer._fetch_min_bytes == FETCH_MIN_BYTES
    assert consumer._fetch_max_wait_ms == 25
    assert faust_consumer._wait_next_records.func is gather_below_backlog


def test_no_wait_leaves_faust_s_fetches_answered_at_the_first_byte() -> None:
    consumer, faust_consumer = _aiokafka_consumer(0)
    assert consumer._fetch_min_bytes == 1
    assert consumer._fetch_max_wait_ms == 1500  # faust's own
    assert not isinstance(faust_consumer._wait_next_records, functools.partial)


def test_aiokafka_still_keeps_the_fetch_settings_where_the_worker_sets_them() -> None:
    # gathered_fetches sets them on the consumer after faust built it; aiokafka hands them to
    # its fetcher when the consumer starts. A release that renamed them would fail here
    async def build() -> Any:
        return aiokafka.AIOKafkaConsumer(bootstrap_servers="127.0.0.1:1",
                                         fetch_min_bytes=7, fetch_max_wait_ms=9)

    consumer = asyncio.run(build())
    assert (consumer._fetch_min_bytes, consumer._fetch_max_wait_ms) == (7, 9)


def test_the_wait_is_a_setting_with_bounds(monkeypatch: pytest.MonkeyPatch) -> None:
    assert Settings().fetch_wait_ms == 100
    monkeypatch.setenv("HOTLINE_FETCH_WAIT_MS", "0")
    assert Settings().fetch_wait_ms == 0
    for bad in ("-1", "1001"):
        monkeypatch.setenv("HOTLINE_FETCH_WAIT_MS", bad)
        with pytest.raises(ValidationError, match="fetch_wait_ms"):
            Settings()


class _Fetcher:
    _fetch_min_bytes = FETCH_MIN_BYTES


class _Thread:
    def __init__(self) -> None:
        self._consumer = type("C", (), {"_fetcher": _Fetcher()})()


def _after_fetch_of(n: int, thread: Any) -> int:
    async def inner(timeout: float) -> Any:
        return ({"tp": list(range(n))} if n else {}), {"tp"}

    records, _ = asyncio.run(gather_below_backlog(thread, inner, 1.0))
    assert sum(len(b) for b in records.values()) == n  # handed on untouched
    return thread._consumer._fetcher._fetch_min_bytes


def test_a_backlog_is_fetched_at_the_first_byte_and_gathering_resumes_below_it() -> None:
    thread = _Thread()
    assert _after_fetch_of(BACKLOG_RECORDS, thread) == 1
    assert _after_fetch_of(BACKLOG_RECORDS - 1, thread) == FETCH_MIN_BYTES
    assert _after_fetch_of(0, thread) == FETCH_MIN_BYTES


def test_before_the_consumer_has_started_nothing_is_changed() -> None:
    async def inner(timeout: float) -> Any:
        return {}, set()

    assert asyncio.run(gather_below_backlog(object(), inner, 1.0)) == ({}, set())
