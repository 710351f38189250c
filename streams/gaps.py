"""Self-healing of a partition that stopped short (缺口自愈).

Within a partition a worker handles and acknowledges messages in order. So when the lowest
acknowledged offset of a partition stays above its committed offset, the messages in between
were lost inside the consumer (faust skips messages it pulls while its flow is held and never
hands them to the agent), and the commit can never move again: the partition is stuck. After
`GRACE_S` seconds of the same gap, with the flow running and no rebalance, the consumer is sent
back to the committed offset; the messages come again and the idempotent handlers absorb the
ones already handled.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

log = logging.getLogger(__name__)

GRACE_S = 15.0  # a batch in flight acknowledges within seconds; a gap this old is a loss
CHECK_INTERVAL_S = 5.0


class GapWatch:
    """Remembers since when each partition has had its current head gap."""

    def __init__(self, grace_s: float = GRACE_S) -> None:
        self.grace_s = grace_s
        self.since: dict[Any, tuple[int, float]] = {}

    def stuck(
        self, acked: Mapping[Any, Sequence[int]], committed: Mapping[Any, int | None], now: float
    ) -> dict[Any, int]:
        """Partitions whose head gap (committed < lowest acked) has lasted `grace_s`: the
        offset to go back to, each."""
        gaps: dict[Any, int] = {}
        for tp, offsets in acked.items():
            done = committed.get(tp)
            if offsets and done is not None and min(offsets) > done:
                gaps[tp] = done
        self.since = {
            tp: self.since[tp] if tp in self.since and self.since[tp][0] == off else (off, now)
            for tp, off in gaps.items()
        }
        return {tp: off for tp, (off, t0) in self.since.items() if now - t0 >= self.grace_s}

    def reset(self) -> None:
        self.since.clear()


async def heal(app: Any, watch: GapWatch, now: float) -> dict[Any, int]:
    """Send the consumer back to the committed offset of every stuck partition it still holds
    (nothing while a rebalance or the flow is held: the rebalance seeks by itself)."""
    consumer = app.consumer
    if app.rebalancing or not app.flow_control.is_active():
        watch.reset()
        return {}
    assigned = consumer.assignment()
    stuck = {
        tp: off for tp, off in watch.stuck(consumer._acked, consumer._committed_offset, now).items()
        if tp in assigned
    }
    if stuck:
        log.warning("分区停在已提交偏移处（其后的消息已确认）：回到已提交偏移重新消费 %s",
                    {str(tp): off for tp, off in stuck.items()})
        await consumer.seek_wait(stuck)
        watch.reset()
    return stuck
