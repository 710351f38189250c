"""A partition whose lowest acknowledged offset stays above its committed offset is read again
from the committed offset (streams.gaps)."""

from __future__ import annotations

import asyncio
from typing import Any

from streams.gaps import GapWatch, heal


def test_a_head_gap_is_stuck_only_after_the_grace_period() -> None:
    watch = GapWatch(grace_s=15)
    acked = {"p0": [60, 61, 62], "p1": [50, 51], "p2": []}
    committed: dict[str, int | None] = {"p0": 50, "p1": 50, "p2": 40}
    assert watch.stuck(acked, committed, now=100.0) == {}  # p1 in order, p2 idle: no gap
    assert watch.stuck(acked, committed, now=110.0) == {}
    assert watch.stuck(acked, committed, now=115.0) == {"p0": 50}


def test_a_gap_that_moves_or_closes_starts_over() -> None:
    watch = GapWatch(grace_s=15)
    assert watch.stuck({"p0": [60]}, {"p0": 50}, now=0.0) == {}
    assert watch.stuck({"p0": [70]}, {"p0": 65}, now=10.0) == {}  # the commit moved on
    assert watch.stuck({"p0": [70]}, {"p0": 65}, now=20.0) == {}
    assert watch.stuck({"p0": [66]}, {"p0": 66}, now=40.0) == {}  # closed
    assert watch.stuck({"p0": [80]}, {"p0": 66}, now=41.0) == {}  # a new gap, a new clock


class _Flow:
    def __init__(self, active: bool) -> None:
        self.active = active

    def is_active(self) -> bool:
        return self.active


class _Consumer:
    def __init__(self) -> None:
        self._acked = {"p0": [60, 61]}
        self._committed_offset = {"p0": 50}
        self.sought: list[dict[str, int]] = []

    def assignment(self) -> set[str]:
        return {"p0"}

    async def seek_wait(self, partitions: dict[str, int]) -> None:
        self.sought.append(dict(partitions))


class _App:
    def __init__(self, *, rebalancing: bool = False, flowing: bool = True) -> None:
        self.consumer = _Consumer()
        self.rebalancing = rebalancing
        self.flow_control = _Flow(flowing)


def test_heal_seeks_back_to_the_committed_offset_but_not_during_a_rebalance() -> None:
    watch = GapWatch(grace_s=15)
    app: Any = _App()
    asyncio.run(heal(app, watch, 0.0))
    assert asyncio.run(heal(app, watch, 16.0)) == {"p0": 50}
    assert app.consumer.sought == [{"p0": 50}]
    held: Any = _App(rebalancing=True)
    watch = GapWatch(grace_s=15)
    asyncio.run(heal(held, watch, 0.0))
    assert asyncio.run(heal(held, watch, 16.0)) == {} and held.consumer.sought == []
