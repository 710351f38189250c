"""Units as function × territory, catalogue name mentions, and the ensemble head."""

from __future__ import annotations

import numpy as np

from classifier.catalogue import CatalogueMatcher, infer_territories, parse_unit
from classifier.datasets import LabeledText
from classifier.features import inputs_from_records, inputs_from_texts
from classifier.model import TrainOptions, train_model

UNITS = ["龙华区城管局", "美兰区城管局", "琼山区城市管理行政执法局", "市公安局交通警察支队",
         "美兰区三江镇人民政府", "龙华区金宇街道办", "市政工程维修公司", "海口市美兰区物价监督检查局"]


def test_parse_unit_function_territory_town() -> None:
    territories = infer_territories(UNITS)
    assert territories == frozenset({"龙华区", "美兰区"})  # 琼山区 starts only one unit here
    t = territories | {"琼山区"}
    assert parse_unit("龙华区城管局", t).function == parse_unit("美兰区城管局", t).function == "城管局"
    assert parse_unit("琼山区城市管理行政执法局", t).function == "城管局"
    assert parse_unit("美兰区城管局", t).territory == "美兰区"
    assert parse_unit("市公安局交通警察支队", t).territory == "市"
    assert parse_unit("美兰区三江镇人民政府", t).town == "三江镇"
    assert parse_unit("龙华区金宇街道办", t).function == "街道办"
    assert parse_unit("市政工程维修公司", t).function == "市政工程维修公司"  # 市政 is a word
    assert parse_unit("海口市美兰区物价监督检查局", t).function == "物价局"
    city_civil = parse_unit("市民政局", t)
    assert (city_civil.territory, city_civil.function) == ("市", "民政局")
    assert parse_unit("市民云支撑组", t).function == "市民云支撑组"  # 市民 is a word
    # Jinshan units have no territory prefix: one function each, all city-wide
    assert parse_unit("区市场监管局", frozenset()).territory == "市"
    assert infer_territories(["区市场监管局", "区税务局", "金山工业区", "朱泾镇"]) == frozenset()


def test_catalogue_matcher_marks_mentioned_units() -> None:
    m = CatalogueMatcher().fit(inputs_from_texts(UNITS), UNITS)
    X = m.transform(inputs_from_texts(["三江镇江源村低保问题", "美兰区城管来电反馈", "路灯不亮"]))
    names = list(m.classes_)
    row0 = {names[j] for j in X[0].indices}
    row1 = {names[j] for j in X[1].indices}
    assert row0 == {"美兰区三江镇人民政府"}
    assert row1 == {"美兰区城管局"}
    assert X[2].nnz == 0


def _rec(i: int, unit: str, text: str, area: str = "") -> LabeledText:
    return LabeledText(order_id=str(i), text=text, unit=unit, area=area)


def test_ensemble_composes_rare_district_unit_from_function_and_territory() -> None:
    recs = []
    i = 0
    for district in ("龙华区", "美兰区"):
        for text in ("占道经营摊贩", "违章搭建铁皮房", "夜市占道经营", "小广告乱贴", "流动摊贩占道"):
            recs.append(_rec(i, f"{district}城管局", f"{district}某路{text}", district))
            i += 1
    for text in ("路口闯红灯", "违停占用车道", "信号灯故障", "酒驾", "交通拥堵"):
        recs.append(_rec(i, "市公安局交通警察支队", f"某路口{text}"))
        i += 1
    recs.append(_rec(i, "秀英区城管局", "秀英区海秀路占道经营", "秀英区"))
    recs.append(_rec(i + 1, "秀英区教育局", "秀英区学校招生问题", "秀英区"))
    recs.append(_rec(i + 2, "龙华区教育局", "龙华区学校收费问题", "龙华区"))
    model = train_model(recs, out_dir=None, options=TrainOptions(name="t", cv_folds=2))
    proba = model.unit_head.predict_proba(
        model.features.transform(inputs_from_records([_rec(0, "", "秀英区长流路占道经营摊贩", "秀英区")]))
    )[0]
    labels = np.asarray(model.labels)
    assert labels[proba.argmax()] == "秀英区城管局"
    assert abs(proba.sum() - 1.0) < 1e-6


CALLER_UNITS = ["市公安局交通警察支队", "市公安局", "市排水管道养护所", "市教育局", "美兰区教育局",
                "龙华区教育局", "秀英区发改委", "秀英区城管局", "龙华区城管局", "海口电信局",
                "市安全生产监督管理局", "龙华区安全生产监督管理局"]  # fmt: skip


def test_catalogue_matcher_reads_callers_and_abbreviations() -> None:
    m = CatalogueMatcher().fit(inputs_from_texts(CALLER_UNITS), CALLER_UNITS)
    names = list(m.classes_)

    def callers(who: str) -> set[str]:
        return {names[j] for j in m.caller_units(who)}

    assert callers("交警") == {"市公安局交通警察支队"}
    assert callers("市排水") == {"市排水管道养护所"}
    assert callers("教育局") == {"市教育局"}  # no district named: the city unit
    assert callers("秀英发改委") == {"秀英区发改委"}
    assert callers("市公安局") == {"市公安局"}  # an exact name wins over abbreviations
    assert len(callers("城管")) == 2  # two units at most
    assert callers("局") == set()  # more than two: no mention
    texts = ["交警来电反馈：工单号123", "市民来电咨询：龙华区安监局的地址", "市民来电反映：电信信号差"]
    X = m.transform(inputs_from_texts(texts))
    assert {names[j] for j in X[0].indices} == {"市公安局交通警察支队"}
    assert {names[j] for j in X[1].indices} == {"龙华区安全生产监督管理局"}
    assert X[2].nnz == 0  # a citizen's words are not a caller
    plain = CatalogueMatcher(abbreviations=False, callers=False).fit(
        inputs_from_texts(CALLER_UNITS), CALLER_UNITS
    )
    assert plain.transform(inputs_from_texts(texts)).nnz == 0
