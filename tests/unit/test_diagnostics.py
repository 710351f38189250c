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


async def _batches(event: asyncio.Event):  # type: ignore[no-untyped-def]
    await event.wait()
    yield 1


async def _agent(event: asyncio.Event) -> None:
    async for _ in _batches(event):
        pass


def test_task_stacks_go_into_an_async_for() -> None:
    """An agent waits inside `async for batch in stream.noack_take(...)`: the dump shows the
    generator's frame too, not only the agent's."""

    async def main() -> str:
        event = asyncio.Event()
        task = asyncio.create_task(_agent(event), name="agent")
        await asyncio.sleep(0)
        dump = task_stacks()
        event.set()
        await task
        return dump

    section = asyncio.run(main()).split("--- task agent\n", 1)[1].split("--- task", 1)[0]
    assert "_agent" in section and "_batches" in section
