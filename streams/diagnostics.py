"""What a running worker is doing (运行诊断): `kill -USR1 <pid>` writes the stack of every asyncio
task (down the chain of awaits) and of every thread to the worker's log, for an operator looking
at a stalled partition."""

from __future__ import annotations

import asyncio
import io
import logging
import signal
import sys
import threading
import traceback
from types import FrameType
from typing import Any

log = logging.getLogger(__name__)


def _await_chain(coro: Any) -> list[FrameType]:
    """The frames of a coroutine and of everything it is awaiting, outermost first."""
    frames: list[FrameType] = []
    while coro is not None:
        frame = getattr(coro, "cr_frame", None) or getattr(coro, "ag_frame", None)
        if frame is not None:
            frames.append(frame)
        coro = getattr(coro, "cr_await", None) or getattr(coro, "ag_await", None)
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


def dump_stacks() -> None:
    log.warning("诊断：协程堆栈\n%s\n诊断：线程堆栈\n%s", task_stacks(), thread_stacks())


def install_stack_dump() -> None:
    """Dump the stacks on SIGUSR1 (call from inside the running loop)."""
    asyncio.get_running_loop().add_signal_handler(signal.SIGUSR1, dump_stacks)
