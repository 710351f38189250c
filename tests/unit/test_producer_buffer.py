"""The table writes of the routing agents' batches never stop the streams: faust's producer
buffer (the changelog messages of table writes waiting to be sent) lets the conductor hand
fetched messages on below `PRODUCER_BUFFER_MESSAGES`, and still holds them above it."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from hotline.bootstrap import bootstrap
from hotline.settings import Settings
from streams.app import BATCH, PRODUCER_BUFFER_MESSAGES, create_app


def _buffer(tmp_path: Path):  # type: ignore[no-untyped-def]
    settings = Settings(database_url=f"sqlite:///{tmp_path / 'w.db'}",
                        kafka_bootstrap="127.0.0.1:1")  # nothing connects until it starts
    app = create_app(settings, hotline_app=bootstrap(settings, registry=CollectorRegistry()))
    return app.producer.buffer


def test_two_agents_full_batches_of_table_writes_do_not_stop_the_streams(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    buffer = _buffer(tmp_path)
    writes = 2 * (2 * BATCH)  # the intake and route agents, each a batch plus one take
    assert writes < PRODUCER_BUFFER_MESSAGES
    for i in range(writes):
        buffer.pending.put_nowait(i)
    with caplog.at_level(logging.WARNING):
        asyncio.run(asyncio.wait_for(buffer.wait_until_ebb(), timeout=1))
    assert buffer.size == writes  # nothing had to be sent first
    assert "producer buffer full" not in caplog.text


def test_a_producer_that_cannot_keep_up_still_stops_the_streams(tmp_path: Path) -> None:
    buffer = _buffer(tmp_path)
    for i in range(PRODUCER_BUFFER_MESSAGES + 1):
        buffer.pending.put_nowait(i)
    # the conductor waits for the buffer to be sent; this producer never started
    with pytest.raises(RuntimeError, match="Producer not Running"):
        asyncio.run(buffer.wait_until_ebb())
