"""`routing_rules.engine.KeywordScan`: the rules' keywords found in a text in one pass."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from routing_rules import load_default
from routing_rules.engine import KeywordScan

CFG = load_default()
# a small alphabet, so that keywords overlap, nest and share prefixes often
WORDS = st.text("油烟机噪声扰民", min_size=1, max_size=4)


@given(st.lists(WORDS, max_size=12), st.text("油烟机噪声扰民，的", max_size=40))
def test_found_is_every_keyword_that_occurs_in_the_text(keywords: list[str], text: str) -> None:
    assert KeywordScan(keywords).found(text) == {k for k in keywords if k in text}


@given(st.lists(st.sampled_from(sorted({
    k for r in CFG.keyword_rules for k in (*r.any, *r.all, *r.none)
} | set(CFG.line_keywords) | set(CFG.legacy_keywords))), max_size=5), st.text(max_size=10))
def test_the_district_keywords_in_any_surroundings(parts: list[str], filler: str) -> None:
    keywords = [k for r in CFG.keyword_rules for k in (*r.any, *r.all, *r.none)]
    text = filler.join(parts) + filler
    assert KeywordScan(keywords).found(text) == {k for k in keywords if k in text}


def test_a_prefix_and_a_keyword_inside_a_longer_one_are_found() -> None:
    scan = KeywordScan(["油烟", "油烟机", "烟机", "噪声"])
    assert scan.found("厨房油烟机太吵") == {"油烟", "油烟机", "烟机"}
    assert scan.found("没有相关的词") == set()
    assert KeywordScan([]).found("油烟机") == set()
