"""`hotline import` on small files: refused paths, plain CSV timelines, surges' exact test."""

from __future__ import annotations

import csv
from collections import Counter
from pathlib import Path

import pytest

from bulletin.importer import ImportRefused, import_file, read_data_file, repeat_of, reply_time
from bulletin.surges import benjamini_hochberg, compare_counts
from models.store import Store

FIELDS = ["工单编号", "诉求内容", "工单发起时间", "处置单位", "派件时间", "办结汇报", "回复时间",
          "工单状态", "企业名称", "回访联系", "回访解决", "满意度", "附件"]


def _write(path: Path, rows: list[dict[str, str]]) -> Path:
    with path.open("w", encoding="utf-8", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=FIELDS)
        writer.writeheader()
        writer.writerows(rows)
    return path


def _row(oid: str, **values: str) -> dict[str, str]:
    base = {"工单编号": oid, "诉求内容": "厂区门口道路破损，货车进出困难", "工单发起时间": "2024-03-04 09:00:00",
            "处置单位": "区建管委", "派件时间": "2024-03-04 09:30:00"}
    return base | values


@pytest.fixture()
def store(tmp_path: Path) -> Store:
    the_store = Store.from_url(f"sqlite:///{tmp_path / 'h.db'}")
    the_store.sync_units([("construction", "区建管委", "line", "建设管理", [])])
    return the_store


def test_symlinks_and_non_files_are_refused(tmp_path: Path, store: Store) -> None:
    real = _write(tmp_path / "real.csv", [_row("A1")])
    link = tmp_path / "link.csv"
    link.symlink_to(real)
    with pytest.raises(ImportRefused, match="符号链接"):
        import_file(store, link, "csv")
    with pytest.raises(ImportRefused, match="不是普通文件"):
        read_data_file(tmp_path)
    with pytest.raises(ImportRefused, match="不存在"):
        import_file(store, tmp_path / "nope.csv", "csv")


def test_paths_inside_the_data_are_text_never_opened(tmp_path: Path, store: Store) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_text("不应被读取的内容", encoding="utf-8")
    path = _write(tmp_path / "in.csv", [_row("A1", 附件=str(secret), 诉求内容=f"见附件 {secret}")])
    import_file(store, path, "csv")
    row = store.get_order("A1")
    assert row is not None and row.extra["附件"] == str(secret)
    assert "不应被读取" not in row.text and "不应被读取" not in str(row.extra)


def test_csv_timeline_with_revisit_closes_enterprise_order_and_reimport_is_a_no_op(
    tmp_path: Path, store: Store,
) -> None:
    path = _write(tmp_path / "in.csv", [
        _row("E1", 企业名称="金山某材料公司", 办结汇报="已修复路面", 回复时间="2024-03-05 10:00:00",
             工单状态="办结", 回访联系="已联系", 回访解决="已解决", 满意度="满意"),
        _row("E2", 企业名称="金山某材料公司", 办结汇报="已修复", 回复时间="2024-03-20 10:00:00",
             回访联系="已联系", 回访解决="未解决", 满意度="不满意"),
        _row("N1", 处置单位="新设单位X"),
    ])
    first = import_file(store, path, "csv")
    assert first.new_orders == 3 and first.new_units == ["新设单位X"]
    e1, e2 = store.get_order("E1"), store.get_order("E2")
    assert e1 is not None and e1.state == "已办结" and e1.is_enterprise
    assert e2 is not None and e2.reopen_count == 1 and e2.supervised  # 超期 → 督办
    kinds = [e.kind for e in store.history("E2")]
    assert "DeadlinePassed" in kinds  # replied after the 办结 deadline
    assert store.history("E1")[-1].actor == "revisit:import:csv"
    again = import_file(store, path, "csv")
    assert (again.new_orders, again.events, again.unchanged_orders) == (0, 0, 3)


def test_reply_time_and_repeat_notes_are_read_from_handling_text() -> None:
    from datetime import datetime

    after = datetime(2018, 1, 1, 9, 0)
    note = "于2018-01-01 10:11:22联系市民，18-1-3 0:04再次回复"
    assert reply_time([note], after) == datetime(2018, 1, 3, 0, 4)
    assert reply_time(["无时间"], after) is None
    assert repeat_of("此工单与（政府工单号：20180103141620）同一位市民，反映同一件问题") == "20180103141620"
    assert repeat_of("政府工单号：20180103141620") is None


def test_surges_use_an_exact_test_with_multiple_comparison_control() -> None:
    current = Counter({"噪音": 30, "停车": 12, "路灯": 6})
    previous = Counter({"噪音": 8, "停车": 10, "路灯": 2})
    surges = {s.value: s for s in compare_counts("问题分类", current, previous)}
    assert surges["噪音"].significant and surges["噪音"].p_value < 0.001
    assert not surges["停车"].significant
    assert benjamini_hochberg([0.01, 0.04, 0.03]) == pytest.approx([0.03, 0.04, 0.04])
