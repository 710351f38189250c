"""The 热点快报 on the real Haikou 12345 January 2018 orders: import, concentrations, masking."""

from __future__ import annotations

import os
import re
from datetime import date
from pathlib import Path

import pytest

from bulletin.history import ImportCounts
from bulletin.importer import import_file
from bulletin.render import to_html, write_bulletin
from bulletin.report import Bulletin, build_bulletin
from models.store import Store

HAIKOU = Path("/work/shared/data/haikou12345/workorders.csv")
MOBILE_RE = re.compile(r"(?<!\d)1[3-9]\d{9}(?!\d)")
ID_RE = re.compile(r"(?<!\d)\d{17}[\dXx](?![\dA-Za-z])")


def _need_data() -> None:
    if HAIKOU.is_file():
        return
    message = f"Haikou data missing at {HAIKOU}"
    if os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no"):
        pytest.fail(f"[CI] {message}", pytrace=False)
    pytest.skip(message)


@pytest.fixture(scope="module")
def imported(tmp_path_factory: pytest.TempPathFactory) -> tuple[Store, ImportCounts, ImportCounts]:
    _need_data()
    db = tmp_path_factory.mktemp("haikou") / "haikou.db"
    store = Store.from_url(f"sqlite:///{db}")
    first = import_file(store, HAIKOU, "haikou12345")
    again = import_file(store, HAIKOU, "haikou12345")
    return store, first, again


@pytest.fixture(scope="module")
def bulletin(imported: tuple[Store, ImportCounts, ImportCounts]) -> Bulletin:
    return build_bulletin(imported[0], date(2018, 1, 1), date(2018, 1, 31))


def test_import_records_units_and_timelines_and_is_idempotent(
    imported: tuple[Store, ImportCounts, ImportCounts],
) -> None:
    store, first, again = imported
    assert first.new_orders > 2500 and not first.conflicts and first.rejected_events == 0
    assert "市公安局交通警察支队" in first.new_units
    kinds = {u.name: u.kind for u in store.units(active_only=False)}
    assert kinds["市公安局交通警察支队"] == "historical"
    history = store.history("20180101115513")  # 驾驶证过期换证, archived
    assert [e.kind for e in history] == [
        "OrderReceived", "OrderDispatched", "OrderAccepted", "OrderReplied", "OrderClosed"]
    assert all(e.event_id.startswith("20180101115513:") for e in history)
    assert history[1].data["unit"] == "市公安局交通警察支队"
    assert history[1].actor == "import:haikou12345"
    assert (again.new_orders, again.events, again.rejected_events) == (0, 0, 0)
    assert again.unchanged_orders == first.new_orders


def test_bulletin_finds_the_real_near_duplicate_concentrations(bulletin: Bulletin) -> None:
    top = bulletin.near_duplicates[:8]
    shared_bikes = [c for c in top if "共享单车" in c.label]
    assert shared_bikes and shared_bikes[0].size >= 25  # 共享单车乱停放 grid reports
    assert any("网格巡" in c.label and c.size >= 20 for c in top)
    dmv = [c for c in top if "车管所" in c.label]
    assert dmv and dmv[0].dominant_unit == "市公安局交通警察支队"
    assert all(len(c.representatives) >= 1 for c in bulletin.near_duplicates)


def test_bulletin_top_issues_topics_repeats_and_rates(bulletin: Bulletin) -> None:
    assert bulletin.total > 2500
    categories = [c for c, _ in bulletin.top_categories[:5]]
    assert "公安（治安、交通）" in categories and "司法行政" in categories
    taxi = [t for t in bulletin.topics if "出租车" in t.terms]
    assert taxi and taxi[0].dominant_unit == "市交通运输和港航管理局"
    marked = [g for g in bulletin.repeats if g.basis == "来源标注同一诉求"]
    assert any("20180101114875" in g.order_ids for g in marked)
    police = next(r for r in bulletin.rates if r.unit == "市公安局交通警察支队")
    assert police.close_rate is not None and police.close_rate > 0.95
    assert police.satisfaction_rate is None  # the export has no revisit results
    assert bulletin.surges == [] and bulletin.notes  # December 2017 is not in the file


def test_bulletin_html_has_charts_and_no_phone_or_id(bulletin: Bulletin, tmp_path: Path) -> None:
    page = to_html(bulletin)
    assert page.count("data:image/png;base64,") >= 4
    assert "热点快报" in page and "共享单车" in page
    assert not MOBILE_RE.search(page) and not ID_RE.search(page)
    written = write_bulletin(bulletin, tmp_path / "kb.md")
    assert written[0].read_text(encoding="utf-8").count("](kb-") >= 4
    assert all(p.stat().st_size > 1000 for p in written[1:])


def test_charts_without_a_chinese_font_draw_no_missing_glyphs(
    bulletin: Bulletin, monkeypatch: pytest.MonkeyPatch
) -> None:
    """On a machine with no CJK font the charts number their labels and write their legends in
    English rather than drawing boxes for Chinese characters (matplotlib warns of each)."""
    import warnings

    import matplotlib

    from bulletin import render

    monkeypatch.setattr(render, "cjk_font", lambda: None)
    with matplotlib.rc_context({"font.family": ["sans-serif"], "font.sans-serif": ["DejaVu Sans"]}):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            drawn = render.charts(bulletin)
    assert len(drawn) >= 4 and all(png.startswith(b"\x89PNG") for png in drawn.values())
    missing = sorted({str(w.message) for w in caught if "missing from font" in str(w.message)})
    assert not missing, missing
