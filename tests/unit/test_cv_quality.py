"""ops.cv_quality: the scores, the out-of-fold predictions and the near-duplicate ceiling."""

from __future__ import annotations

import numpy as np
import pytest

from classifier.datasets import LabeledText
from classifier.model import TrainOptions
from ops.cv_quality import duplicate_agreement, out_of_fold, scores

_TEXTS = {
    "区税务局": ["增值税发票开具失败", "留抵退税一直没有到账", "企业所得税汇算清缴", "纳税申报逾期",
                 "发票领用数量不够", "税务注销需要哪些材料"],
    "区人社局": ["公司拖欠工资三个月", "欠薪老板跑路", "劳动合同到期不续签", "工伤认定申请材料",
                 "稳岗补贴什么时候发放", "职业技能培训补贴申请"],
    "区绿化市容局": ["生活垃圾堆放多日无人清运", "建筑垃圾乱倒在路边", "行道树枝叶遮挡路灯",
                     "商铺违规设置户外广告", "沿街店铺占用人行道", "垃圾箱房异味严重"],
}  # fmt: skip


def _record(i: int, text: str, unit: str) -> LabeledText:
    return LabeledText(order_id=str(i), text=text, unit=unit)


def test_scores_count_top_three_and_coverage() -> None:
    labels = np.array(["a", "b", "c"])
    proba = np.array(
        [[0.9, 0.05, 0.05], [0.8, 0.1, 0.1], [0.2, 0.7, 0.1], [0.5, 0.3, 0.2]]
    )
    s = scores(proba, labels, ["a", "a", "b", "c"])
    assert s["accuracy"] == pytest.approx(0.75)
    assert s["top3_accuracy"] == pytest.approx(1.0)
    # the three most confident orders are right, the fourth (0.5) is wrong
    assert s["coverage_at_0.95"] == pytest.approx(0.75)


def test_duplicate_agreement_reports_units_of_identical_texts() -> None:
    records = [
        _record(0, "路灯不亮影响夜间通行", "区绿化市容局"),
        _record(1, "路灯不亮影响夜间通行", "区绿化市容局"),
        _record(2, "公司拖欠工资三个月", "区人社局"),
        _record(3, "公司拖欠工资三个月", "区税务局"),
        _record(4, "增值税发票开具失败", "区税务局"),
    ]
    out = duplicate_agreement(records, levels=(0.95,))
    assert out["0.95"] == {"orders": 4, "same_unit": 0.5}


def test_out_of_fold_never_scores_an_order_with_a_model_that_saw_it() -> None:
    records = [
        _record(i, text, unit)
        for i, (unit, text) in enumerate(
            (u, t) for u, texts in _TEXTS.items() for t in texts
        )
    ]
    records.append(_record(99, "海关报关单填写错误", "金山海关"))  # a unit seen once
    labels, proba = out_of_fold(records, TrainOptions(name="t", cv_folds=0), folds=3, shuffle=0)
    assert list(labels) == sorted({r.unit for r in records})
    assert proba.shape == (len(records), len(labels))
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, atol=1e-6)
    # the singleton's own unit is unknown to the model that scores it
    assert proba[-1, list(labels).index("金山海关")] == 0.0

