"""What a running worker is doing (运行诊断): `kill -USR1 <pid>` writes the stack of every asyncio
task (down the chain of awaits) and of every thread to the worker's log, for an operator looking
at a stalled partition."""

from __future__ import annotations

import asyncio
import gc
import io
import logging
import signal
import sys
import threading
import traceback
from collections.abc import Callable
from types import FrameType
from typing import Any

log = logging.getLogger(__name__)


def _awaited(obj: Any) -> Any:
    """What a coroutine or async generator is suspended on; through an `asend` wrapper (an
    ``async for`` step, which exposes no attributes) to the generator it drives."""
    nxt = getattr(obj, "cr_await", None) or getattr(obj, "ag_await", None)
    if nxt is None or hasattr(nxt, "cr_frame") or hasattr(nxt, "ag_frame"):
        return nxt
    for ref in gc.get_referents(nxt):
        if hasattr(ref, "ag_frame") or hasattr(ref, "cr_frame"):
            return ref
    return nxt


def _await_chain(coro: Any) -> list[FrameType]:
    """The frames of a coroutine and of everything it is awaiting, outermost first."""
    frames: list[FrameType] = []
    seen: set[int] = set()
    while coro is not None and id(coro) not in seen:
        seen.add(id(coro))
        frame = getattr(coro, "cr_frame", None) or getattr(coro, "ag_frame", None)
        if frame is not None:
            frames.append(frame)
        coro = _awaited(coro)
    return frames


def _where(frame: FrameType) -> str:
    code = frame.f_code
    return f"    {code.co_filename}:{frame.f_lineno} in {code.co_name}\n"


def task_stacks() -> str:
    """Every asyncio task of the running loop with the frames it is suspended in."""
    out = io.StringIO()
    for task in asyncio.all_tasks():
        out.write(f"--- task {task.get_name()}\n")
        out.writelines(_where(f) for f in _await_chain(task.get_coro()))
    return out.getvalue()


def thread_stacks() -> str:
    names = {t.ident: t.name for t in threading.enumerate()}
    out = io.StringIO()
    for ident, frame in sys._current_frames().items():
        out.write(f"--- thread {names.get(ident, ident)}\n")
        out.writelines(traceback.format_stack(frame, limit=30))
    return out.getvalue()


def dump_stacks(state: Callable[[], str] | None = None) -> None:
    try:
        extra = state() if state is not None else ""
    except Exception as exc:  # e.g. the consumer not started yet: the stacks still count
        extra = f"（状态不可读：{exc!r}）"
    log.warning("诊断：协程堆栈\n%s\n诊断：线程堆栈\n%s\n诊断：状态\n%s",
                task_stacks(), thread_stacks(), extra)


def install_stack_dump(state: Callable[[], str] | None = None) -> None:
    """Dump the stacks (and `state()`, e.g. the consumer's) on SIGUSR1; call from inside the
    running loop."""
    asyncio.get_running_loop().add_signal_handler(signal.SIGUSR1, dump_stacks, state)
