"""The vectorised pieces of the classifier agree with their scikit-learn (or jieba) references."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
from sklearn.calibration import _sigmoid_calibration
from sklearn.feature_extraction.text import TfidfVectorizer

from classifier.chargrams import CharNgrams, IntTable
from classifier.features import caller_tokens, industry_string, industry_tokens
from classifier.heads import CalibratedSVC, platt_fit
from classifier.thresholds import NEVER, choose_thresholds
from classifier.tokenize import Segmenter, get_tokenizer, tokenize

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


@pytest.mark.parametrize(
    "text, caller",
    [
        ("关于反馈工单的问题\n交警来电反馈: 工单号20180103147537", "交警"),
        ("关于撤销工单的问题\n龙华区环保局来电撤销：（工单编号：1）", "龙华区环保局"),
        ("港务公安局来电咨询：工单号20180101121976", "港务公安局"),
    ],
)
def test_caller_tokens_name_the_calling_unit(text: str, caller: str) -> None:
    tokens = caller_tokens(text)
    assert f"来电方:{caller}" in tokens
    assert f"来电方~{caller[:2]}" in tokens


@pytest.mark.parametrize(
    "text",
    [
        "关于路灯不亮的问题\n市民来电反映: 路灯不亮",
        "关于噪音的问题\n群众来电投诉：夜间施工",
        "关于交警来电反馈的问题",  # a title, not a caller
        "市民公众号反映：交警来电反馈过",
    ],
)
def test_caller_tokens_ignore_citizens_and_later_mentions(text: str) -> None:
    assert caller_tokens(text) == caller_tokens("")


def test_unit_threshold_borrows_the_global_precision_when_a_unit_has_few_orders() -> None:
    """Five right answers at confidence 0.5 are not enough to auto-dispatch a unit at 0.5
    when, over all units, orders at that confidence are right only 60% of the time; a unit
    with many right answers at 0.5 earns the low threshold."""
    labels = ["A", "B", "C"]
    rows, truth = [], []
    for i in range(40):  # unit B: confident and right; low-confidence B orders often wrong
        rows.append([0.05, 0.9, 0.05]); truth.append("B")
        rows.append([0.25, 0.5, 0.25]); truth.append("B" if i % 5 < 2 else "C")
    for _ in range(5):  # unit A: five right answers, all at 0.5
        rows.append([0.5, 0.25, 0.25]); truth.append("A")
    for _ in range(200):  # unit C: many right answers at 0.5
        rows.append([0.25, 0.25, 0.5]); truth.append("C")
    thresholds, _ = choose_thresholds(np.array(rows), truth, labels, precision=0.95)
    assert thresholds["B"] == pytest.approx(0.9)
    assert thresholds["A"] == NEVER
    assert thresholds["C"] == pytest.approx(0.5)


HAIKOU = Path("/work/shared/data/haikou12345/workorders.csv")
_SEGMENT_CASES = [
    "金山工业区企业反映：欠薪三个月！随申办办理留抵退税，统一社会信用代码有误。",
    "ABC def 123 ａｂｃ１２３ Ⅲ  x-y 3.5% C++ #tag iPhone12手机",
    "关于咨询驾驶证过期换证的问题\n市民来电咨询：驾驶证过期换证的问题",
    "",
    " \r\n\t。。",
    "a",
]


def _jieba_words(text: str) -> list[str]:
    return [t.lower() for t in get_tokenizer().lcut(text, HMM=False) if t.strip() and tokenize(t)]


def test_tokenize_equals_jieba_accurate_mode_without_hmm() -> None:
    texts = list(_SEGMENT_CASES)
    if HAIKOU.exists():
        with HAIKOU.open(encoding="utf-8") as fh:
            texts += [r["诉求内容"] for r, _ in zip(csv.DictReader(fh), range(300), strict=False)]
    for text in texts:
        assert tokenize(text) == _jieba_words(text), text


def test_segmenter_equals_jieba_on_a_small_dictionary(tmp_path: Path) -> None:
    """Random strings over five characters, with a dictionary full of ties and of prefixes
    that are not words: the same words as jieba's own search."""
    import jieba

    words = {"甲": 4, "乙": 4, "甲乙": 2, "乙甲": 2, "乙丙": 2, "甲乙丙丁": 1, "丙": 1, "丁戊": 3, "戊": 2, "a1": 1}
    path = tmp_path / "dict.txt"
    path.write_text("".join(f"{w} {c}\n" for w, c in words.items()), encoding="utf-8")
    tk = jieba.Tokenizer(str(path))
    tk.tmp_dir = str(tmp_path)
    tk.initialize()
    seg = Segmenter(tk.FREQ, tk.total)
    # 甲乙|甲 and 甲|乙甲 score exactly the same: jieba takes the longer first word
    assert seg.words("甲乙甲") == tk.lcut("甲乙甲", HMM=False) == ["甲乙", "甲"]
    rng = np.random.RandomState(0)
    alphabet = list("甲乙丙丁戊a1，")
    for _ in range(500):
        text = "".join(rng.choice(alphabet, size=rng.randint(1, 12)))
        expected = [t for t in tk.lcut(text, HMM=False) if t != "，"]
        assert seg.words(text) == expected, text
        assert seg.words(text) == expected, text  # again, from the block cache


def test_segmenter_block_cache_is_not_shared_with_callers() -> None:
    seg = Segmenter({"甲": 1, "乙": 1, "甲乙": 5}, 7)
    first = seg.words("甲乙，甲乙")
    first.append("改")
    assert seg.words("甲乙，甲乙") == ["甲乙", "甲乙"]
