"""属地街镇 resolution from area, address and text."""

from __future__ import annotations

from dataclasses import replace

import pytest
from hypothesis import given
from hypothesis import strategies as st

from routing_rules import load_default
from routing_rules.areas import match_place, resolve_area

CFG = load_default()


@pytest.mark.parametrize(
    ("address", "town"),
    [
        ("金山区朱泾镇万安街88弄3号", "朱泾镇"),
        ("待泾村6组", "朱泾镇"),
        ("枫泾古镇北大街", "枫泾镇"),
        ("兴塔老街", "枫泾镇"),
        ("卫零路485号", "石化街道"),
        ("石化十三村12号楼", "石化街道"),
        ("龙皓路1088号某商务楼", "山阳镇"),
        ("金山嘴渔村", "山阳镇"),
        ("夏宁路818号", "金山工业区"),
        ("金山卫站南广场", "金山卫镇"),
        ("中华村3组", "廊下镇"),
        ("水库村", "漕泾镇"),
        ("干巷社区", "吕巷镇"),
        ("南社纪念馆对面", "张堰镇"),
        ("松隐村", "亭林镇"),
    ],
)
def test_place_names_in_addresses(address: str, town: str) -> None:
    assert resolve_area(address, None, "", CFG) == town


def test_explicit_area_wins_over_address_and_text() -> None:
    assert resolve_area("卫零路1号", "枫泾镇", "朱泾镇的事", CFG) == "枫泾镇"


def test_unknown_area_falls_back_to_address_then_text() -> None:
    assert resolve_area("卫零路1号", "金山区", "", CFG) == "石化街道"
    assert resolve_area(None, None, "我在吕巷镇颜圩村开了一个农场", CFG) == "吕巷镇"
    assert resolve_area("上海市金山区", None, "投诉内容不含地名", CFG) is None
    assert resolve_area(None, None, "", CFG) is None


def test_address_wins_over_text() -> None:
    assert resolve_area("亭林镇油车村", None, "之前在枫泾古镇也遇到过", CFG) == "亭林镇"


def test_longest_match_wins() -> None:
    # "金山卫站" (4) over the alias "金山卫" inside it; and a long place beats a short alias
    assert match_place("去金山卫站坐车", CFG) == "金山卫镇"
    assert match_place("朱泾人，现在住石化十三村", CFG) == "石化街道"


def test_ordinary_words_do_not_match() -> None:
    assert match_place("快递堆在走廊下面没人管", CFG) is None  # 廊下 alone is not a place


def _every_occurrence(source: str) -> str | None:
    """The reference: every occurrence of every place name, the longest, then the earliest."""
    found = [
        (-len(place), start, place)
        for place in CFG.areas
        for start in range(len(source))
        if source.startswith(place, start)
    ]
    return CFG.areas[min(found)[2]] if found else None


PLACES = sorted(CFG.areas)


@given(st.lists(st.one_of(st.sampled_from(PLACES), st.text("金山卫站朱泾枫村路街镇号", max_size=4)),
                max_size=6))
def test_the_longest_earliest_place_of_every_occurrence_overlapping_ones_included(
    parts: list[str],
) -> None:
    source = "".join(parts)
    assert match_place(source, CFG) == _every_occurrence(source)


def test_a_longer_place_starting_inside_a_shorter_one_is_found() -> None:
    # the scan goes on from the character after each start, not after each match
    extra = {"朱泾镇": "甲乙", "枫泾镇": "乙丙丁戊"}
    cfg = replace(CFG, units=tuple(
        u.model_copy(update={"places": (*u.places, extra[u.name])}) if u.name in extra else u
        for u in CFG.units
    ))
    assert match_place("在甲乙附近", cfg) == "朱泾镇"
    assert match_place("在甲乙丙丁戊附近", cfg) == "枫泾镇"
