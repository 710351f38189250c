"""The worker's faust consumer delivers every fetched message: its read-offset memory, which
dropped re-fetched messages and skipped "gaps" after a partition takeover, remembers nothing."""

from __future__ import annotations

from faust.types import TP

from streams.app import HotlineApp, NoReadOffsets


def test_the_app_consumer_forgets_read_offsets() -> None:
    app = HotlineApp("hotline-test-consumer", broker="kafka://127.0.0.1:1", store="memory://")
    consumer = app.consumer
    tp = TP("workorders.by-enterprise", 0)
    assert isinstance(consumer._read_offset, NoReadOffsets)
    consumer._read_offset[tp] = 254  # what the drain loop records after each message
    consumer._read_offset.update({tp: 254})  # what a seek to the committed offset records
    # the drain loop delivers a message when the read offset is None, and counts a gap only
    # when there is one: a message at offset 68 after a seek is delivered, nothing is skipped
    assert consumer._read_offset[tp] is None
    assert tp not in consumer._read_offset.keys()
    assert consumer._read_offset.pop(tp, None) is None
