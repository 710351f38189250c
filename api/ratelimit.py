"""Rate limits (限流) for the HTTP API: token buckets per bearer token and per client address.

In memory, per process: each `hotline serve` enforces its own limits. A limit of N per minute
allows a burst of N, refilled at N/60 per second.
"""

from __future__ import annotations

import hashlib
import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

RATE_LIMITED_MESSAGE = "请求过于频繁，请稍后再试"


@dataclass
class _Bucket:
    tokens: float
    updated: float


class TokenBuckets:
    """One bucket per key; `take(key)` returns 0 when allowed, else seconds to wait."""

    def __init__(
        self, per_minute: int, *, clock: Callable[[], float] = time.monotonic,
        max_keys: int = 10_000,
    ) -> None:
        self.per_minute = per_minute
        self.clock = clock
        self.max_keys = max_keys
        self._buckets: dict[str, _Bucket] = {}
        self._lock = threading.Lock()

    @property
    def enabled(self) -> bool:
        return self.per_minute > 0

    def take(self, key: str) -> float:
        if not self.enabled:
            return 0.0
        rate = self.per_minute / 60.0
        now = self.clock()
        with self._lock:
            bucket = self._buckets.get(key)
            if bucket is None:
                self._evict_if_full(now, rate)
                bucket = self._buckets[key] = _Bucket(float(self.per_minute), now)
            bucket.tokens = min(self.per_minute, bucket.tokens + (now - bucket.updated) * rate)
            bucket.updated = now
            if bucket.tokens >= 1.0:
                bucket.tokens -= 1.0
                return 0.0
            return (1.0 - bucket.tokens) / rate

    def _evict_if_full(self, now: float, rate: float) -> None:
        """Drop buckets that have refilled completely (they hold no state worth keeping)."""
        if len(self._buckets) < self.max_keys:
            return
        full = [k for k, b in self._buckets.items()
                if b.tokens + (now - b.updated) * rate >= self.per_minute]
        for key in full:
            del self._buckets[key]


class RateLimiter:
    """Both limits: per presented token and per client address."""

    def __init__(
        self, *, per_token: int, per_client: int, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.tokens = TokenBuckets(per_token, clock=clock)
        self.clients = TokenBuckets(per_client, clock=clock)

    def check(self, *, client: str, authorization: str | None) -> int:
        """0 when the request may go on, else the whole seconds to put in Retry-After."""
        waits = [self.clients.take(client)]
        if authorization:
            key = hashlib.sha256(authorization.encode("utf-8")).hexdigest()[:32]
            waits.append(self.tokens.take(key))
        wait = max(waits)
        return 0 if wait <= 0 else max(1, math.ceil(wait))
