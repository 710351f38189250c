"""The compiled feature transform and the unit head's neighbour view give exactly what
scikit-learn's calls give (`classifier.compiled`, `classifier.ensemble`)."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import scipy.sparse as sp
from sklearn.compose import ColumnTransformer
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.preprocessing import normalize

from classifier.bundled import corpus_files, load_corpus
from classifier.compiled import CompiledFeatures, _Block
from classifier.datasets import LabeledText
from classifier.ensemble import UnitEnsemble
from classifier.features import (
    TEXT,
    inputs_from_records,
    inputs_from_texts,
    text_catalogue_features,
)

ODD = [
    LabeledText("odd-1", "", ""),  # nothing at all
    LabeledText("odd-2", "ⓐⓑⓒ ☃☃ 𠀀𠀁", ""),  # characters never seen in training
    LabeledText("odd-3", "城管", "", area="金山区 朱泾镇", address="朱泾镇健康路 1 号"),
    LabeledText(
        "odd-4", "企业反映欠薪，欠薪，欠薪！！ 请区人社局核实", "",
        extra={"行业分类1级": "劳动保障", "行业分类2级": "欠薪"},
    ),
    LabeledText("odd-5", "a\tb\nc \\N 夜间施工噪音" * 30, ""),
]


@pytest.fixture(scope="module")
def corpus() -> list[LabeledText]:
    return load_corpus(corpus_files())


@pytest.fixture(scope="module")
def fitted(corpus: list[LabeledText]) -> ColumnTransformer:
    features = text_catalogue_features()  # words, characters, 行业分类 (weight 0.7), callers,
    return features.fit(inputs_from_records(corpus), [r.unit for r in corpus])  # mentions


def _same(a: sp.spmatrix, b: sp.spmatrix) -> None:
    a, b = sp.csr_matrix(a), sp.csr_matrix(b)
    assert a.shape == b.shape and a.dtype == b.dtype
    a.sort_indices()
    np.testing.assert_array_equal(a.indptr, b.indptr)
    np.testing.assert_array_equal(a.indices, b.indices)
    np.testing.assert_array_equal(a.data, b.data)  # the same arithmetic: equal, not close


def test_compiled_features_equal_column_transformer(
    fitted: ColumnTransformer, corpus: list[LabeledText]
) -> None:
    compiled = CompiledFeatures.compile(fitted)
    assert compiled is not None
    assert fitted.transformer_weights == {"industry": 0.7}  # the weighted path is covered
    records = corpus[:300] + ODD
    inputs = inputs_from_records(records)
    out = compiled.transform(inputs)
    assert out.has_canonical_format
    _same(fitted.transform(inputs), out)
    for i in (0, 7, len(records) - 1):  # one order at a time is the same row
        _same(fitted.transform(inputs[i : i + 1]), compiled.transform(inputs[i : i + 1]))
    assert compiled.transform(inputs[:0]).shape == (0, out.shape[1])  # sklearn refuses none


@pytest.mark.parametrize(
    "options",
    [
        {"sublinear_tf": False},
        {"binary": True},
        {"use_idf": False},
        {"smooth_idf": False, "dtype": np.float64},
    ],
)
def test_compiled_tfidf_options(options: dict, corpus: list[LabeledText]) -> None:
    features = ColumnTransformer(
        [("chars", TfidfVectorizer(analyzer="char", ngram_range=(1, 2), **options), TEXT)],
        sparse_threshold=1.0,
    )
    inputs = inputs_from_records(corpus[:200] + ODD)
    features.fit(inputs)
    compiled = CompiledFeatures.compile(features)
    assert compiled is not None
    _same(features.transform(inputs), compiled.transform(inputs))


def test_what_is_not_compiled_stays_with_scikit_learn() -> None:
    texts = inputs_from_texts(["夜间施工噪音", "欠薪"])
    passthrough = ColumnTransformer(
        [("words", TfidfVectorizer(analyzer="char"), TEXT)], remainder="passthrough"
    ).fit(texts)
    assert CompiledFeatures.compile(passthrough) is None
    dense = ColumnTransformer(
        [("words", TfidfVectorizer(analyzer="char"), TEXT)], sparse_threshold=0.0
    ).fit(texts)
    assert CompiledFeatures.compile(dense) is None
    other_norm = ColumnTransformer(
        [("words", TfidfVectorizer(analyzer="char", norm="l1"), TEXT)], sparse_threshold=1.0
    ).fit(texts)
    assert CompiledFeatures.compile(other_norm) is None
    assert CompiledFeatures.compile(ColumnTransformer([("w", TfidfVectorizer(), TEXT)])) is None


def test_unit_head_neighbours_equal_the_reference(
    fitted: ColumnTransformer, corpus: list[LabeledText]
) -> None:
    X = fitted.transform(inputs_from_records(corpus))
    cat = fitted.output_indices_["catalogue"]
    head = UnitEnsemble(catalogue_cols=(cat.start, cat.stop), knn_cols=(0, 300))
    head.fit(X, [r.unit for r in corpus])
    held = sp.csr_matrix(fitted.transform(inputs_from_records(corpus[:50] + ODD)))
    for rows in (held, held.astype(np.float64)):  # the model's float32, and a float64 input
        view = head._knn_view(rows)
        before = view.copy()
        np.testing.assert_array_equal(head._knn(view), _reference_knn(head, view))
        _same(before, view)  # the caller's matrix is left as it was
    # the main view is the columns outside the mention block, as an index list gives them
    keep = np.r_[0 : cat.start, cat.stop : held.shape[1]]
    _same(held[:, keep], head._main(held))
    # the transposed copy made for the neighbour product is not saved with the model
    assert getattr(head, "_knn_T", None) is not None
    restored = pickle.loads(pickle.dumps(head))
    assert not hasattr(restored, "_knn_T")
    np.testing.assert_array_equal(restored.predict_proba(held), head.predict_proba(held))


def _reference_knn(head: UnitEnsemble, view: sp.csr_matrix) -> np.ndarray:
    """The neighbour view as written before: scikit-learn's normalize, the stored past orders
    transposed on every call."""
    sims = (normalize(view).astype(np.float32) @ head.knn_X_.T).toarray()
    k = head.knn_k
    top = np.argpartition(-sims, k - 1, axis=1)[:, :k]
    w = np.take_along_axis(sims, top, axis=1).clip(min=0) ** head.knn_power
    ref = np.zeros((view.shape[0], len(head.classes_)))
    np.add.at(ref, (np.repeat(np.arange(len(ref)), k), head.knn_y_[top].ravel()), w.ravel())
    return ref / np.maximum(ref.sum(axis=1, keepdims=True), 1e-12)


def test_blocks_with_unsorted_rows_are_placed_in_column_order() -> None:
    class Unsorted:
        def transform(self, docs: np.ndarray) -> sp.csr_matrix:  # row 0: columns 2, 0
            return sp.csr_matrix((np.array([3.0, 1.0], dtype=np.float32), np.array([2, 0]),
                                  np.array([0, 2, 2])), shape=(len(docs), 3))

    first = _Block(TEXT, 0, 3, 1.0, Unsorted().transform)
    second = _Block(TEXT, 3, 3, 2.0, Unsorted().transform)
    out = CompiledFeatures([first, second], 6).transform(inputs_from_texts(["甲", "乙"]))
    assert out.has_canonical_format
    np.testing.assert_array_equal(out.toarray(), [[1, 0, 3, 2, 0, 6], [0] * 6])
