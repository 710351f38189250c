"""`hotline.bootstrap.settle_heap`: the long-lived heap leaves the collector's generations."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

from hotline.bootstrap import GC_YOUNG_THRESHOLD, settle_heap


@pytest.fixture
def restored_gc() -> Iterator[None]:
    threshold = gc.get_threshold()
    yield
    gc.unfreeze()
    gc.set_threshold(*threshold)


def test_settle_heap_freezes_what_is_alive_and_raises_the_young_threshold(
    restored_gc: None,
) -> None:
    alive = [[i] for i in range(1000)]  # long-lived containers, tracked by the collector
    gc.unfreeze()
    settle_heap()
    assert gc.get_freeze_count() >= len(alive)
    assert gc.get_threshold()[0] == GC_YOUNG_THRESHOLD
