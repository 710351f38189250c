"""The vectorised pieces of the classifier agree with their scikit-learn references."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.calibration import _sigmoid_calibration
from sklearn.feature_extraction.text import TfidfVectorizer

from classifier.chargrams import CharNgrams, IntTable
from classifier.features import industry_string, industry_tokens
from classifier.heads import CalibratedSVC, platt_fit

TEXTS = [
    "朱泾镇某路噪音扰民，夜间施工",
    "企业反映 用电 报装 进度慢",
    "夜间施工噪音，请核实",
    "亭林镇企业用电问题",
    "Road 施工 ROAD",
]


def test_char_ngrams_match_sklearn_tfidf() -> None:
    ours = CharNgrams((1, 3), min_df=1)
    X = ours.fit_transform(np.asarray(TEXTS, dtype=object)).toarray()
    ref = TfidfVectorizer(analyzer="char", ngram_range=(1, 3), sublinear_tf=True)
    R = ref.fit_transform([" ".join(t.lower().split()) for t in TEXTS]).toarray()
    names = list(ours.get_feature_names_out())
    ref_cols = [ref.vocabulary_[n] for n in names]
    assert sorted(names) == sorted(ref.vocabulary_)
    np.testing.assert_allclose(X, R[:, ref_cols], atol=1e-6)


def test_char_ngrams_ignore_unknown_characters_and_min_df() -> None:
    ours = CharNgrams((1, 2), min_df=2).fit(np.asarray(TEXTS, dtype=object))
    assert "噪音" in set(ours.get_feature_names_out())
    assert "朱泾" not in set(ours.get_feature_names_out())  # one text only
    X = ours.transform(np.asarray(["鑫鑫鑫", ""], dtype=object))
    assert X.shape == (2, len(ours.vocabulary_)) and X.nnz == 0


def test_int_table_finds_present_keys_only() -> None:
    keys = np.unique(np.random.RandomState(0).randint(0, 10**12, size=5000))
    table = IntTable(keys)
    np.testing.assert_array_equal(table.lookup(keys), np.arange(keys.size))
    assert (table.lookup(keys + 10**13) == -1).all()


def test_platt_fit_matches_sklearn() -> None:
    rng = np.random.RandomState(1)
    f = rng.randn(400, 3) * 4
    y = f + rng.randn(400, 3) * 2 > 1
    a, b = platt_fit(f, y)
    for j in range(3):
        ref_a, ref_b = _sigmoid_calibration(f[:, j], y[:, j].astype(int))
        assert a[j] == pytest.approx(ref_a, abs=1e-5)
        assert b[j] == pytest.approx(ref_b, abs=1e-5)


def test_calibrated_svc_accepts_singleton_classes_and_sums_to_one() -> None:
    X = TfidfVectorizer(analyzer="char").fit_transform(TEXTS * 3 + ["独一无二"])
    y = ["噪音", "用电", "噪音", "用电", "其他"] * 3 + ["稀有"]
    head = CalibratedSVC(C=1.0).fit(X, y)
    proba = head.predict_proba(X)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0)
    assert list(head.classes_) == sorted(set(y))
    assert head.predict(X[:2]).tolist() == ["噪音", "用电"]


def test_industry_tokens_keep_levels_and_paths_but_not_other() -> None:
    s = industry_string({"行业分类1级": "城管问题", "行业分类2级": "街面秩序", "行业分类3级": "其他"})
    assert s == "城管问题|街面秩序|其他|"
    tokens = industry_tokens(s)
    assert "1:城管问题" in tokens and "2:街面秩序" in tokens and "/城管问题/街面秩序" in tokens
    assert not any("其他" in t for t in tokens)
    assert industry_string({}) == "" and industry_tokens("") == [industry_tokens("")[0]]
