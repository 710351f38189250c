"""Fault handling for the faust agents (故障处理): back off on transient failures, dead-letter a
message whose handler keeps raising, and re-emit the feed of an order whose first delivery may
have been lost.

- A transient failure (the database or the broker unreachable, a lock timeout) is retried with
  a capped exponential backoff for as long as it lasts: nothing is acknowledged meanwhile, so no
  offset is committed for an order that is not yet written.
- Any other exception is a bug or a poison message: a batch that raises is retried a bounded
  number of times, then split into single messages; a single message that still raises goes to
  `workorders.dlq` with the error, and the partition keeps flowing.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from aiokafka.errors import KafkaError  # type: ignore[import-untyped]
from sqlalchemy.exc import DBAPIError, DisconnectionError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout

from hotline.masking import mask_pii
from streams.handlers import (
    DLQ,
    OutMessage,
    Router,
    payload_text,
)

log = logging.getLogger(__name__)

T = TypeVar("T")

#: attempts for a handler that raises a non-transient error, before the dead-letter topic
HANDLER_ATTEMPTS = 3
BACKOFF_START_S = 0.5
BACKOFF_MAX_S = 8.0
HANDLER_ERROR = "HANDLER_ERROR"


def is_transient(exc: BaseException) -> bool:
    """Failures that go away by themselves: a lost database connection, a broker away."""
    if isinstance(exc, (OperationalError, DisconnectionError, PoolTimeout, KafkaError)):
        return True
    if isinstance(exc, DBAPIError) and exc.connection_invalidated:
        return True
    return isinstance(exc, (ConnectionError, TimeoutError, asyncio.TimeoutError))


class Retrier:
    """Runs a step until it succeeds: transient failures without limit (with backoff), other
    failures up to `attempts` times, then re-raises."""

    def __init__(
        self,
        *,
        attempts: int = HANDLER_ATTEMPTS,
        start: float = BACKOFF_START_S,
        cap: float = BACKOFF_MAX_S,
        on_transient: Callable[[str, BaseException], None] | None = None,
    ) -> None:
        self.attempts = attempts
        self.start = start
        self.cap = cap
        self.on_transient = on_transient

    async def run(self, what: str, step: Callable[[], Awaitable[T]]) -> T:
        failures = 0
        delay = self.start
        while True:
            try:
                return await step()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                if is_transient(exc):
                    log.warning("%s: transient failure, retrying in %.1f s: %s", what, delay,
                                mask_pii(str(exc))[:300])
                    if self.on_transient is not None:
                        self.on_transient(what, exc)
                else:
                    failures += 1
                    if failures >= self.attempts:
                        raise
                    log.warning("%s: failed (attempt %d of %d): %r", what, failures,
                                self.attempts, exc)
                await asyncio.sleep(delay)
                delay = min(delay * 2, self.cap)


def handler_failed(router: Router, source: str, raw: Any, exc: BaseException) -> list[OutMessage]:
    """Dead-letter a message whose handler kept raising: recorded in the database with the
    error, counted, and returned as the `workorders.dlq` message."""
    payload = payload_text(raw)
    reason = f"处理失败（重试 {HANDLER_ATTEMPTS} 次）：{type(exc).__name__}: {exc}"
    router.store.dead_letter(source=source, reason=f"{HANDLER_ERROR}: {reason}", payload=payload)
    router.metrics.dead_letters.labels(HANDLER_ERROR).inc()
    log.error("dead-lettered %s from %s: %s", HANDLER_ERROR, source, mask_pii(reason))
    value = {"code": HANDLER_ERROR, "reason": reason, "source": source,
             "payload": payload[:100_000]}
    return [OutMessage(DLQ, None, value)]
