"""Classify ahead (预先分类): helper processes that classify while this process does the rest.

- `ClassifyAhead`, for the embedded runner: classifies the batches of an ingest while this
  process routes and stores the ones already classified.
- `ClassifierProcess` (分类进程), for a Kafka worker: one helper for the worker's lifetime that
  classifies each route batch while the router thread admits it (a database round trip) and
  while the event loop, free of the classifier's hold on the GIL, consumes, produces and
  acknowledges.

Classification is pure Python for the most part (jieba, the vectorisers), so a thread would
wait for the GIL. A process forked for the ingest has the model and the batches already
(copy-on-write: nothing is sent to it) and runs on the second core through all the batches
without waiting for this one; only the predictions come back, through a queue. Only where
`fork` exists (Linux) and there is more than one core. Anything that goes wrong in the helper
makes the caller classify in-process instead, so the outcome never depends on it.
"""

from __future__ import annotations

import gc
import logging
import multiprocessing
import os
import queue
import threading
import time
from collections.abc import Sequence
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from datetime import datetime
from typing import Any, cast

from models.records import OrderIn, Prediction

log = logging.getLogger(__name__)

POLL_S = 1.0  # how often a wait for the helper checks that it is still alive
STOP_WAIT_S = 5.0


def usable_cores() -> int:
    """Cores this process may run on (its CPU affinity where the OS has one, as a container's
    cpuset sets it), not the machine's count."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def available() -> bool:
    """Whether a helper process can run beside this one: `fork` and two usable cores or more."""
    return "fork" in multiprocessing.get_all_start_methods() and usable_cores() > 1


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


# ---- the Kafka worker's long-lived helper ---------------------------------------------------
def _serve_requests(classifier: Any, conn: Any, parent_end: Any) -> None:
    """The helper of `ClassifierProcess`: answer each (ticket, orders, k) with
    (ticket, "ok", predictions, seconds) or (ticket, "error", reason) until the worker closes
    its end of the pipe (or dies: the helper holds no copy of that end, so it sees EOF)."""
    parent_end.close()
    while True:
        try:
            request = conn.recv()
        except (EOFError, OSError):
            return
        if request is None:  # the worker is closing
            return
        ticket, orders, k = request
        started = time.perf_counter()
        try:
            answer: tuple[Any, ...] = (
                ticket, "ok", classifier.predict(orders, k=k), time.perf_counter() - started
            )
        except Exception as exc:  # reported; the worker classifies that batch itself
            answer = (ticket, "error", repr(exc))
        try:
            conn.send(answer)
        except (BrokenPipeError, OSError):
            return


class Ahead:
    """A batch handed to the classifier process: `get` gives the predictions of some of its
    orders (the same objects, in any order and subset) or None, when the caller must classify
    them itself."""

    def __init__(self, owner: ClassifierProcess, orders: Sequence[OrderIn],
                 future: Future[tuple[list[Prediction], float] | None]) -> None:
        self._owner = owner
        self._positions = {id(o): i for i, o in enumerate(orders)}
        self._future = future

    def get(self, orders: Sequence[OrderIn]) -> tuple[list[Prediction], float] | None:
        """(predictions of ``orders``, seconds the helper spent on the batch), or None."""
        if any(id(o) not in self._positions for o in orders):
            return None
        try:
            answer = self._future.result(timeout=self._owner.timeout_s)
        except FutureTimeout:
            self._owner.give_up(f"{self._owner.timeout_s:g} 秒内无应答", kill=True)
            return None
        if answer is None:
            return None
        predictions, seconds = answer
        return [predictions[self._positions[id(o)]] for o in orders], seconds


class MergedAhead:
    """Several batches' predictions on their way, as one: a batch that `Pipeline.run` merged
    from pieces, each handed to the classifier process as it was taken. ``parts`` gives, per
    order, the `Ahead` it went out with (by id of the order). `get` gives the predictions of
    some of those orders, in their order, or None when any of them has none (the caller then
    classifies them all itself)."""

    def __init__(self, parts: dict[int, Any]) -> None:
        self._parts = parts

    @staticmethod
    def of(pairs: Sequence[tuple[OrderIn, Any]]) -> Any:
        """The predictions on their way for these orders, from (order, its `Ahead` or None)
        pairs: that `Ahead` when every order has the same one, a `MergedAhead` when they
        differ, None when none has any."""
        distinct = {id(a): a for _, a in pairs if a is not None}
        if not distinct:
            return None
        if len(distinct) == 1 and all(a is not None for _, a in pairs):
            return next(iter(distinct.values()))
        return MergedAhead({id(o): a for o, a in pairs if a is not None})

    def get(self, orders: Sequence[OrderIn]) -> tuple[list[Prediction], float] | None:
        groups: dict[int, tuple[Any, list[int]]] = {}
        for i, o in enumerate(orders):
            part = self._parts.get(id(o))
            if part is None:
                return None
            groups.setdefault(id(part), (part, []))[1].append(i)
        out: list[Prediction | None] = [None] * len(orders)
        seconds = 0.0
        for part, positions in groups.values():
            answer = part.get([orders[i] for i in positions])
            if answer is None:
                return None
            for i, p in zip(positions, answer[0], strict=True):
                out[i] = p
            seconds += answer[1]
        return cast(list[Prediction], out), seconds  # every position filled above


class ClassifierProcess:
    """A Kafka worker's classifier helper (分类进程), forked once with the worker's model
    before the worker starts its threads. `submit` hands it a batch and returns at once (the
    intake thread submits a batch while the router thread still routes the one before);
    `Ahead.get` waits for the predictions. When the helper fails on a batch, that batch is
    classified in-process; when it dies or does not answer within `timeout_s`, it is stopped
    and every later batch is classified in-process (logged once). The outcome never depends
    on it: it runs the same model object, forked.

    Forking copies the model copy-on-write; `gc.freeze` around the fork keeps the child's
    collector away from the parent's objects (a collected database connection there would
    close the parent's socket). One reader thread in this process takes the answers."""

    def __init__(self, classifier: Any, *, timeout_s: float = 30.0) -> None:
        self.version = classifier.version
        self.timeout_s = timeout_s
        self._lock = threading.Lock()  # the process, the ticket and the futures
        # the pipe's sending end, never held together with `_lock`: a send blocks while the
        # helper does not read (a hung helper never does), and stopping it must not wait then
        self._send_lock = threading.Lock()
        self._ticket = 0
        self._waiting: dict[int, Future[tuple[list[Prediction], float] | None]] = {}
        # warm: jieba loads its dictionary on first use; loaded here, the child shares it
        classifier.predict([OrderIn(order_id="warm-up", channel="warm-up",
                                    received_at=datetime.now(), title="", text="预热分类器")])
        ctx = multiprocessing.get_context("fork")
        ours, theirs = ctx.Pipe(duplex=True)
        gc.freeze()
        try:
            self._process: Any = ctx.Process(
                target=_serve_requests, args=(classifier, theirs, ours),
                name="classify-process", daemon=True,
            )
            self._process.start()
        finally:
            gc.unfreeze()
        theirs.close()
        self._conn: Any = ours
        self._reader = threading.Thread(target=self._read, name="classify-reader", daemon=True)
        self._reader.start()

    @property
    def alive(self) -> bool:
        return self._process is not None and self._process.is_alive()

    @property
    def pid(self) -> int | None:
        return None if self._process is None else self._process.pid

    def submit(self, orders: Sequence[OrderIn], *, k: int = 3) -> Ahead | None:
        """Hand a batch to the helper (may wait while it reads the one before); None when the
        helper is gone."""
        orders = list(orders)
        future: Future[tuple[list[Prediction], float] | None] = Future()
        with self._lock:
            if self._process is None:
                return None
            self._ticket += 1
            ticket = self._ticket
            self._waiting[ticket] = future
        try:
            with self._send_lock:
                self._conn.send((ticket, orders, k))
        except Exception as exc:  # noqa: BLE001 - the helper died (or was stopped) meanwhile
            self.give_up(f"发送失败：{exc!r}", kill=True)
            return None
        return Ahead(self, orders, future)

    def _read(self) -> None:
        while True:
            try:
                answer = self._conn.recv()
            except (EOFError, OSError) as exc:  # died, or stopped (then this is a no-op)
                self.give_up(f"进程已退出（{exc!r}）")
                return
            with self._lock:
                future = self._waiting.pop(answer[0], None)
            if future is None:
                continue
            if answer[1] == "ok" and all(p.model_version == self.version for p in answer[2]):
                future.set_result((answer[2], answer[3]))
            else:
                log.warning("classifier process: %s; classifying this batch in-process",
                            answer[2] if answer[1] == "error" else "model version differs")
                future.set_result(None)

    def give_up(self, reason: str, *, kill: bool = False) -> None:
        with self._lock:
            self._stop_locked(reason, kill=kill)

    def close(self) -> None:
        with self._lock:
            self._stop_locked(None)

    def _stop_locked(self, reason: str | None, *, kill: bool = False) -> None:
        if self._process is None:
            return
        if reason is not None:
            log.warning("classifier process stopped (%s); classifying in-process from now on",
                        reason)
        process, self._process = self._process, None
        waiting, self._waiting = self._waiting, {}
        for future in waiting.values():
            future.set_result(None)
        if not kill and self._send_lock.acquire(timeout=1.0):
            try:
                self._conn.send(None)  # the helper returns after the batch in hand
            except (BrokenPipeError, OSError):
                pass
            finally:
                self._send_lock.release()
        else:  # asked to, or a send is stuck: the helper does not read
            process.kill()
        process.join(STOP_WAIT_S)  # its end closes with it: the reader thread sees EOF
        if process.is_alive():
            process.kill()
            process.join()
        # a send still under way fails promptly now that the helper is gone; close the pipe
        # only after it, never under it
        if self._send_lock.acquire(timeout=STOP_WAIT_S):
            try:
                self._conn.close()
            finally:
                self._send_lock.release()
