"""`kill -USR1` diagnostics: the stack of a task goes down its chain of awaits."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import pytest

from streams.diagnostics import dump_stacks, task_stacks, thread_stacks


async def _inner_wait(event: asyncio.Event) -> None:
    await event.wait()


async def _outer_wait(event: asyncio.Event) -> None:
    await _inner_wait(event)


def dump_of(waiter: Callable[[asyncio.Event], Awaitable[None]], name: str) -> str:
    """The dump's section for a task named `name` running `waiter` while it is suspended."""

    async def main() -> str:
        event = asyncio.Event()
        task = asyncio.create_task(waiter(event), name=name)
        await asyncio.sleep(0)
        dump = task_stacks()
        event.set()
        await task
        return dump

    return asyncio.run(main()).split(f"--- task {name}\n", 1)[1].split("--- task", 1)[0]


def test_task_stacks_show_the_whole_await_chain() -> None:
    section = dump_of(_outer_wait, "stalled-agent")
    assert "_outer_wait" in section and "_inner_wait" in section


def test_thread_stacks_name_the_threads() -> None:
    assert "--- thread MainThread" in thread_stacks()


async def _batches(event: asyncio.Event):  # type: ignore[no-untyped-def]
    await event.wait()
    yield 1


async def _agent(event: asyncio.Event) -> None:
    async for _ in _batches(event):
        pass


def test_task_stacks_go_into_an_async_for() -> None:
    """An agent waits inside `async for batch in stream.noack_take(...)`: the dump shows the
    generator's frame too, not only the agent's."""
    section = dump_of(_agent, "agent")
    assert "_agent" in section and "_batches" in section


def test_a_state_that_cannot_be_read_does_not_stop_the_dump(
    caplog: pytest.LogCaptureFixture,
) -> None:
    def unreadable() -> str:
        raise RuntimeError("Consumer thread not yet started")

    async def main() -> None:  # the worker dumps from its event loop
        dump_stacks(unreadable)

    with caplog.at_level("WARNING"):
        asyncio.run(main())
    text = caplog.text
    assert "诊断：线程堆栈" in text and "状态不可读" in text and "MainThread" in text
