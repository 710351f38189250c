"""The Kafka worker's event loop (事件循环): `HOTLINE_EVENT_LOOP`, uvloop by default."""

from __future__ import annotations

import asyncio
import logging
import sys
from collections.abc import Iterator

import pytest
import uvloop
from pydantic import ValidationError

from hotline.settings import Settings
from streams.app import loop_name, use_event_loop


@pytest.fixture(autouse=True)
def standard_policy_after() -> Iterator[None]:
    yield
    asyncio.set_event_loop_policy(None)


async def running_loop() -> asyncio.AbstractEventLoop:
    return asyncio.get_running_loop()


def test_uvloop_is_the_default_and_runs_the_loop() -> None:
    assert Settings().event_loop == "uvloop"
    assert use_event_loop(Settings().event_loop) == "uvloop"
    loop = asyncio.run(running_loop())
    assert isinstance(loop, uvloop.Loop)
    assert loop_name(loop) == "uvloop"


def test_aio_puts_the_standard_loop_back() -> None:
    use_event_loop("uvloop")
    assert use_event_loop("aio") == "aio"
    loop = asyncio.run(running_loop())
    assert not isinstance(loop, uvloop.Loop)
    assert loop_name(loop) == "aio"


def test_an_unknown_loop_is_refused_by_name() -> None:
    with pytest.raises(ValueError, match="tornado"):
        use_event_loop("tornado")
    with pytest.raises(ValidationError, match="event_loop must be one of uvloop, aio"):
        Settings(event_loop="tornado")


def test_without_uvloop_the_standard_loop_runs_and_a_warning_says_so(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setitem(sys.modules, "uvloop", None)  # import uvloop raises ImportError
    with caplog.at_level(logging.WARNING, logger="streams.app"):
        assert use_event_loop("uvloop") == "aio"
    assert "uvloop 未安装" in caplog.text
    assert loop_name(asyncio.run(running_loop())) == "aio"
