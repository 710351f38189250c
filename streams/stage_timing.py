"""Per-stage timings of the worker's batches (分阶段耗时), for profiling: off unless
``HOTLINE_STAGE_TIMING=1``.

Each stage adds its wall time and the number of items it handled; every `REPORT_EVERY_S`
(10 s, or ``HOTLINE_STAGE_TIMING_EVERY`` seconds) one log line (WARNING, so it shows at the
bench's log level) gives, per stage, the batches, the items, the mean items per batch, the
mean milliseconds per batch and the share of the interval.
Stages run on the event loop and on the router thread, so shares can add up to more than 100%.
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

log = logging.getLogger(__name__)

REPORT_EVERY_S = float(os.environ.get("HOTLINE_STAGE_TIMING_EVERY", "10"))
ENV = "HOTLINE_STAGE_TIMING"


class StageTimes:
    """Wall time and item counts per stage, reported and reset every `REPORT_EVERY_S`."""

    def __init__(self, *, enabled: bool, report_every: float = REPORT_EVERY_S) -> None:
        self.enabled = enabled
        self.report_every = report_every
        self._lock = threading.Lock()
        self._totals: dict[str, list[float]] = {}  # stage -> [batches, items, seconds]
        self._since = time.perf_counter()

    def add(self, stage: str, seconds: float, items: int = 1) -> None:
        if not self.enabled:
            return
        with self._lock:
            t = self._totals.setdefault(stage, [0.0, 0.0, 0.0])
            t[0] += 1
            t[1] += items
            t[2] += seconds
        self._maybe_report()

    @contextmanager
    def stage(self, name: str, items: int = 1) -> Iterator[None]:
        if not self.enabled:
            yield
            return
        started = time.perf_counter()
        try:
            yield
        finally:
            self.add(name, time.perf_counter() - started, items)

    def summary(self) -> str:
        """One line: stage batches/items/per-batch mean/ms per batch/share of the interval."""
        with self._lock:
            span = max(time.perf_counter() - self._since, 1e-9)
            parts = [
                f"{name}: n={int(b)} items={int(i)} ({i / b:.0f}/batch) "
                f"{s / b * 1000:.1f}ms/batch {s / span:.0%}"
                for name, (b, i, s) in sorted(self._totals.items())
            ]
        return f"stage timings over {span:.1f}s | " + " | ".join(parts)

    def _maybe_report(self) -> None:
        if time.perf_counter() - self._since < self.report_every:
            return
        line = self.summary()
        with self._lock:
            self._totals.clear()
            self._since = time.perf_counter()
        log.warning("%s", line)


#: the process-wide timings (the worker has one router and one event loop)
TIMES = StageTimes(enabled=os.environ.get(ENV, "") not in ("", "0"))


async def watch_loop_lag(times: StageTimes = TIMES, interval: float = 0.01) -> None:
    """For ever: how late a `interval` sleep wakes up ("loop.lag", and "loop.lag_over_20ms"
    for the late ones), i.e. how long the event loop is held by other work or by the GIL."""
    while True:
        started = time.perf_counter()
        await asyncio.sleep(interval)
        lag = time.perf_counter() - started - interval
        times.add("loop.lag", lag)
        if lag > 0.02:
            times.add("loop.lag_over_20ms", lag)
