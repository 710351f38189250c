"""The learning loop: retrain on history + corrections, promote only when not worse, rollback."""

from __future__ import annotations

from pathlib import Path

import pytest

from classifier.datasets import LabeledText
from classifier.registry import ModelRegistry, RegistryError, retrain

TAX = ["发票开具失败无法申报", "留抵退税一直没有到账", "纳税申报系统报错", "税务注销办理很慢",
       "增值税专用发票作废", "个税汇算退税未到", "税费优惠政策咨询", "纳税信用等级被降低"]
HR = ["老板拖欠三个月工资", "公司不签劳动合同", "工伤认定迟迟不办", "社保待遇没有发放",
      "稳岗补贴没有到账", "辞退员工不给补偿", "加班费一直不发", "职业技能培训补贴"]


def history(n: int = 6) -> list[LabeledText]:
    out = []
    for i in range(n):
        for j, t in enumerate(TAX):
            out.append(LabeledText(order_id=f"t{i}-{j}", text=f"{t}，第{i}次", unit="区税务局"))
        for j, t in enumerate(HR):
            out.append(LabeledText(order_id=f"h{i}-{j}", text=f"{t}，第{i}次", unit="区人社局"))
    return out


def test_first_retrain_promotes_then_a_worse_candidate_is_refused(tmp_path: Path) -> None:
    reg = ModelRegistry(tmp_path / "models")
    first = retrain(reg, history(), [], current_path=None, name="t")
    assert first.promoted and reg.current_version() == first.candidate
    assert first.candidate_scores["accuracy"] >= 0.9
    # corrections that flip every training label make the candidate worse: it is not promoted
    flipped = [
        LabeledText(order_id=r.order_id, text=r.text,
                    unit="区人社局" if r.unit == "区税务局" else "区税务局")
        for r in history()
    ]
    second = retrain(reg, history(), flipped, current_path=reg.current_path(), name="t", seed=0)
    assert not second.promoted
    assert reg.current_version() == first.candidate
    assert second.candidate_scores["accuracy"] < second.current_scores["accuracy"]
    assert {e.version for e in reg.entries()} == {first.candidate, second.candidate}


def test_promote_and_rollback(tmp_path: Path) -> None:
    reg = ModelRegistry(tmp_path / "models")
    a = retrain(reg, history(5), [], current_path=None, name="a").candidate
    b = retrain(reg, history(6), [], current_path=None, name="b").candidate
    assert reg.current_version() == b
    assert reg.rollback() == a
    assert reg.current_version() == a
    reg.promote(b, reason="人工启用")
    assert reg.current_version() == b
    with pytest.raises(RegistryError):
        reg.promote("no-such-version", reason="x")


def test_rollback_without_history_is_refused(tmp_path: Path) -> None:
    with pytest.raises(RegistryError):
        ModelRegistry(tmp_path / "empty").rollback()
