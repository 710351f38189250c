"""Classify ahead (预先分类): a helper process of the embedded runner that classifies the
batches of an ingest while this process routes and stores the ones already classified.

Classification is pure Python for the most part (jieba, the vectorisers), so a thread would
wait for the GIL. A process forked for the ingest has the model and the batches already
(copy-on-write: nothing is sent to it) and runs on the second core through all the batches
without waiting for this one; only the predictions come back, through a queue. Only where
`fork` exists (Linux) and there is more than one core. Anything that goes wrong in the helper
makes the caller classify in-process instead, so the outcome never depends on it.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import queue
import time
from collections.abc import Sequence
from typing import Any

from models.records import OrderIn, Prediction

log = logging.getLogger(__name__)

POLL_S = 1.0  # how often a wait for the helper checks that it is still alive
STOP_WAIT_S = 5.0


def available() -> bool:
    """Whether a helper process can run beside this one: `fork` and two cores or more."""
    return "fork" in multiprocessing.get_all_start_methods() and (os.cpu_count() or 1) > 1


def _serve(classifier: Any, batches: Sequence[Sequence[OrderIn]], k: int, out: Any) -> None:
    """The helper: classify every batch in turn, put (predictions, seconds) or an error."""
    for batch in batches:
        started = time.perf_counter()
        try:
            out.put(("ok", list(classifier.predict(list(batch), k=k)),
                     time.perf_counter() - started))
        except Exception as exc:  # reported to the caller, which classifies in-process
            out.put(("error", repr(exc)))
            break
    out.close()
    out.join_thread()


class ClassifyAhead:
    """A helper process classifying ``batches`` with ``classifier`` (both inherited by fork).
    `next` gives the next batch's predictions in order, or None once the helper has failed
    (then the caller classifies, for that batch and the rest)."""

    def __init__(
        self, classifier: Any, batches: Sequence[Sequence[OrderIn]], *, k: int = 3
    ) -> None:
        ctx = multiprocessing.get_context("fork")
        self._out: Any = ctx.Queue()
        self._process: Any = ctx.Process(
            target=_serve, args=(classifier, batches, k, self._out), name="classify-ahead",
            daemon=True,
        )
        self._process.start()

    def next(self) -> tuple[list[Prediction], float] | None:
        """(predictions, seconds the helper spent) of the next batch, or None."""
        while self._process is not None:
            try:
                answer = self._out.get(timeout=POLL_S)
            except queue.Empty:
                if self._process.is_alive():
                    continue
                log.warning("classify-ahead helper died; classifying in-process")
                break
            if answer[0] == "ok":
                return answer[1], answer[2]
            log.warning("classify-ahead helper failed (%s); classifying in-process", answer[1])
            break
        self.close()
        return None

    def close(self) -> None:
        """Stop the helper (at once if it still has batches the caller no longer wants)."""
        if self._process is None:
            return
        process, self._process = self._process, None
        if process.is_alive():
            process.terminate()
        process.join(STOP_WAIT_S)
        if process.is_alive():
            process.kill()
            process.join()
        self._out.close()
        self._out.cancel_join_thread()
