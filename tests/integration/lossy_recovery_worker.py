"""`hotline worker` with one injected fault: its table recovery loses the first delivery of
every changelog record (each record the recovery asks for the first time is fetched by the
consumer and thrown away before the recovery sees it; asked for again, it arrives).

This is the stuck-recovery mode seen after takeovers (docs/guarantees.md §2): the changelog
partition fetched to its end while the recovery never received its records and waited for ever.
`streams.gaps.RecoveryWatch` must notice and send the consumer back. Run as
``python tests/integration/lossy_recovery_worker.py worker --loglevel info``; test use only.
"""

from __future__ import annotations

import logging
import sys
from typing import Any

from faust.tables.manager import TableManager

from hotline.cli import main

log = logging.getLogger("lossy_recovery_worker")
DROPPED_LINE = "fault injected: dropping the first delivery of every record of %s[%d]"

_original_queue = TableManager.changelog_queue
struck: set[tuple[str, int]] = set()


def _lossy_queue(self: TableManager) -> Any:
    queue = _original_queue.fget(self)  # type: ignore[attr-defined]
    if getattr(queue, "_lossy", False):
        return queue
    get = queue.get
    delivered: set[tuple[str, int, int]] = set()

    async def get_after_losing_first_deliveries() -> Any:
        while True:
            event = await get()
            m = event.message
            where = (m.topic, m.partition, m.offset)
            if where in delivered:
                return event
            delivered.add(where)
            if (m.topic, m.partition) not in struck:
                struck.add((m.topic, m.partition))
                log.warning(DROPPED_LINE, m.topic, m.partition)

    queue.get = get_after_losing_first_deliveries
    queue._lossy = True
    return queue


TableManager.changelog_queue = property(_lossy_queue)  # type: ignore[method-assign,assignment]

if __name__ == "__main__":
    sys.exit(main())
