"""ops.cv_quality: the scores, the (nested) out-of-fold predictions, the learned confidence and
the near-duplicate ceiling."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression

import ops.cv_quality as cvq
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


def _toy_records() -> list[LabeledText]:
    records = [
        _record(i, text, unit)
        for i, (unit, text) in enumerate((u, t) for u, texts in _TEXTS.items() for t in texts)
    ]
    records.append(_record(99, "海关报关单填写错误", "金山海关"))  # a unit seen once
    return records


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
    records = _toy_records()
    labels, proba = out_of_fold(records, TrainOptions(name="t", cv_folds=0), folds=3, shuffle=0)
    assert list(labels) == sorted({r.unit for r in records})
    assert proba.shape == (len(records), len(labels))
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, atol=1e-6)
    # the singleton's own unit is unknown to the model that scores it
    assert proba[-1, list(labels).index("金山海关")] == 0.0



def test_scores_rank_by_the_given_confidence_and_count_auto_dispatch() -> None:
    labels = np.array(["a", "b"])
    proba = np.array([[0.9, 0.1], [0.8, 0.2], [0.3, 0.7]])
    # the top probability ranks the wrong order (0.9) first; the confidence ranks it last
    s = scores(proba, labels, ["b", "a", "b"], conf=np.array([0.2, 0.9, 0.8]),
               auto=np.array([False, True, True]))  # fmt: skip
    assert s["coverage_at_0.95"] == pytest.approx(2 / 3)
    assert s["auto_rate"] == pytest.approx(2 / 3)
    assert s["auto_precision"] == pytest.approx(1.0)
    assert scores(proba, labels, ["b", "a", "b"])["coverage_at_0.95"] == 0.0


def test_nested_confidence_is_fitted_on_inner_out_of_fold_signals_only(monkeypatch) -> None:
    records = _toy_records()
    calls: list[tuple[frozenset[str], int]] = []
    real = cvq.confidence_signals

    def spy(head, X, recs):  # type: ignore[no-untyped-def]
        calls.append((frozenset(r.order_id for r in recs), len(head.knn_y_)))
        return real(head, X, recs)

    fitted: list[int] = []

    def confidence() -> LogisticRegression:
        class Spy(LogisticRegression):
            def fit(self, X, y, sample_weight=None):  # type: ignore[no-untyped-def]
                fitted.append(len(y))
                return super().fit(X, y, sample_weight)

        return Spy()

    monkeypatch.setattr(cvq, "confidence_signals", spy)
    labels, proba, conf, auto = cvq.nested_out_of_fold(
        records, TrainOptions(name="t", cv_folds=0), confidence, folds=3, shuffle=0, inner_folds=3
    )
    all_ids = {r.order_id for r in records}
    assert len(calls) == 3 * (3 + 1)  # per outer fold: three inner folds, then the held-out one
    for fold in range(3):
        *inner, held = calls[4 * fold : 4 * fold + 4]
        train_ids = all_ids - held[0]
        # the inner folds partition the training part, each scored by a head that never saw it
        assert frozenset().union(*(ids for ids, _ in inner)) == train_ids
        assert sum(len(ids) for ids, _ in inner) == len(train_ids)
        for ids, n_fit in inner:
            assert n_fit == len(train_ids) - len(ids)
        assert held[1] == len(train_ids)  # the held-out fold: the model trained on the rest
    # every confidence model saw inner signals only: at most the training part's size
    assert fitted and max(fitted) <= max(len(all_ids - held_ids) for held_ids, _ in calls[3::4])
    assert conf.shape == auto.shape == (len(records),)
    assert ((conf >= 0) & (conf <= 1)).all()
    assert proba.shape == (len(records), len(labels))


def test_nested_without_a_confidence_model_ranks_by_the_top_probability() -> None:
    records = _toy_records()
    _labels, proba, conf, auto = cvq.nested_out_of_fold(
        records, TrainOptions(name="t", cv_folds=0), None, folds=3, shuffle=0, inner_folds=3
    )
    np.testing.assert_allclose(conf, proba.max(axis=1), atol=1e-9)
    assert auto.dtype == bool


def test_learned_confidence_rises_with_the_top_probability_and_survives_one_outcome() -> None:
    rng = np.random.RandomState(0)
    p1 = rng.uniform(0.2, 1.0, 400)
    signals = np.column_stack([np.log(p1 / (1.001 - p1)), rng.normal(size=400)])
    right = (rng.uniform(size=400) < p1).astype(int)
    grid = np.column_stack([np.log(np.linspace(0.2, 0.99, 9) / (1.001 - np.linspace(0.2, 0.99, 9))),
                            np.zeros(9)])  # fmt: skip
    for factory in (cvq._lr_confidence, cvq._hgb_confidence):
        p = cvq._p_correct(factory, signals, right, grid)
        assert ((p >= 0) & (p <= 1)).all()
        assert p[-1] - p[0] > 0.3  # far more often right at 0.99 than at 0.2
        assert (np.diff(p) > -0.05).all()  # no large dips
    # a training part where the top-1 was always right: certainty, no fitting error
    np.testing.assert_array_equal(
        cvq._p_correct(cvq._lr_confidence, signals[:5], np.ones(5, dtype=int), grid), 1.0
    )
