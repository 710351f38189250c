"""The fetch loop's delivery of a message to the streams (`streams.app.deliver_inline`): inline,
in the task that fetched it, when nothing can make it wait; faust's race against a suspension
of the flow otherwise."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from types import SimpleNamespace
from typing import Any

import pytest
from mode.utils.queues import FlowControlEvent

from streams.app import deliver_inline


class Channel:
    def __init__(self) -> None:
        self.queue: asyncio.Queue[int] = asyncio.Queue(maxsize=2)


class Fixture:
    def __init__(self) -> None:
        self.channel = Channel()
        self.app = SimpleNamespace(
            topics=SimpleNamespace(_tp_to_callback_lock=asyncio.Lock(), _topics={self.channel}),
            flow_control=FlowControlEvent(initially_suspended=False),
            producer=SimpleNamespace(buffer=SimpleNamespace(size=0, max_messages=10)),
        )
        self.consumer = SimpleNamespace(suspend_flow=asyncio.Event())
        self.delivered: list[tuple[str, asyncio.Task[Any] | None]] = []
        self.faust_path: list[int] = []

    async def callback(self, message: str) -> str:
        self.delivered.append((message, asyncio.current_task()))
        return message

    async def wait_first(self, *coros: Any, timeout: Any = None) -> str:
        self.faust_path.append(len(coros))
        for c in coros:
            c.close()
        return "faust"

    async def deliver(self, message: str) -> Any:
        return await deliver_inline(
            self.app, self.consumer, self.wait_first,
            self.callback(message), self.consumer.suspend_flow.wait(),
        )


def test_a_message_that_cannot_wait_is_delivered_in_the_fetching_task() -> None:
    async def main() -> None:
        f = Fixture()
        result = await f.deliver("m1")
        assert result.results == ["m1"] and not result.stopped
        assert f.delivered == [("m1", asyncio.current_task())]  # no task of its own
        assert f.faust_path == []

    asyncio.run(main())


def _suspended_flow(f: Fixture) -> None:
    f.app.flow_control.suspend()


async def _held_lock(f: Fixture) -> None:
    await f.app.topics._tp_to_callback_lock.acquire()


@pytest.mark.parametrize("make_it_wait", [
    pytest.param(lambda f: f.consumer.suspend_flow.set(), id="flow being suspended"),
    pytest.param(_suspended_flow, id="flow suspended"),
    pytest.param(lambda f: setattr(f.app.producer.buffer, "size", 11), id="producer buffer full"),
    pytest.param(_held_lock, id="subscription change"),
    pytest.param(lambda f: [f.channel.queue.put_nowait(i) for i in range(2)], id="queue full"),
])
def test_a_delivery_that_could_wait_goes_faust_s_way(make_it_wait: Callable[[Fixture], Any]) -> None:
    async def main() -> None:
        f = Fixture()
        done = make_it_wait(f)
        if asyncio.iscoroutine(done):
            await done
        assert await f.deliver("m1") == "faust"
        assert f.faust_path == [2] and f.delivered == []

    asyncio.run(main())


def test_other_waits_go_faust_s_way() -> None:
    async def main() -> None:
        f = Fixture()
        other = asyncio.Event()
        assert await deliver_inline(f.app, f.consumer, f.wait_first, f.callback("m1"),
                                    other.wait(), timeout=1.0) == "faust"
        assert await deliver_inline(f.app, f.consumer, f.wait_first, f.callback("m2")) == "faust"
        assert f.faust_path == [2, 1]

    asyncio.run(main())
