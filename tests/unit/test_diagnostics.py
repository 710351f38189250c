"""`kill -USR1` diagnostics: the stack of a task goes down its chain of awaits."""

from __future__ import annotations

import asyncio

from streams.diagnostics import task_stacks, thread_stacks


async def _inner_wait(event: asyncio.Event) -> None:
    await event.wait()


async def _outer_wait(event: asyncio.Event) -> None:
    await _inner_wait(event)


def test_task_stacks_show_the_whole_await_chain() -> None:
    async def main() -> str:
        event = asyncio.Event()
        task = asyncio.create_task(_outer_wait(event), name="stalled-agent")
        await asyncio.sleep(0)
        dump = task_stacks()
        event.set()
        await task
        return dump

    dump = asyncio.run(main())
    section = dump.split("--- task stalled-agent\n", 1)[1].split("--- task", 1)[0]
    assert "_outer_wait" in section and "_inner_wait" in section


def test_thread_stacks_name_the_threads() -> None:
    assert "--- thread MainThread" in thread_stacks()
