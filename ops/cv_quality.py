"""Repeated cross-validation of unit-model variants (交叉验证) on Haikou orders, test unread.

`ops.bench_quality` scores one seeded split; its validation part has 306 orders, where one
order is 0.3 points, and coverage at 95% precision of one model moves by up to five points
between fold shuffles of the same orders. Choosing between model variants needs more orders
than that: this tool runs K-fold cross-validation over the *train + validation* part of the
same seeded split (the test part is left out before anything is fitted) for several fold
shuffles, and prints, per variant, accuracy, top-3 accuracy and coverage at precision 0.90 /
0.95 for each shuffle, their mean and the mean difference to the first variant.

It also prints a ceiling read off the data itself: for each order, its most similar other
order (cosine of jieba-word TF-IDF) and how often the two have the same unit, by similarity.
Near-identical texts handled by different units bound what any text model can reach.

Variants (``--variant``, repeatable; the first is the reference):

- ``current``: the product's model (`classifier.model.TrainOptions()` defaults);
- ``previous``: the model before the 行业分类 weight and the short-form / caller mentions
  (行业分类 rows of length 1, name mentions by full names only);
- ``industry-1.0`` / ``industry-0.5``: the 行业分类 block's rows scaled to length 1.0 / 0.5
  (the product's have length 0.7, `classifier.features.INDUSTRY_WEIGHT`);
- ``plain-mentions``: name mentions by full names only (no official short forms, no callers'
  abbreviations, `classifier.catalogue.CatalogueMatcher`);
- ``knn-0.1``: the nearest past orders weighed 0.1 in the blend instead of 0.2;
- ``direct-0.2``: the direct unit head blended in (0.2 direct, 0.6 composed, 0.2 neighbours);
- ``current-nested``: ``current`` with 5 inner folds inside every training fold, whose
  out-of-fold top probabilities choose the per-unit thresholds as ``hotline train`` does
  without validation data (target 0.95 + 0.01); the thresholds are applied to the held-out
  fold, which adds the auto-dispatch rate and precision (自动派单) to the figures;
- ``confidence-lr`` / ``confidence-hgb``: as ``current-nested``, but coverage and thresholds
  rank by a learned confidence, P(top-1 right), instead of the top probability: a logistic
  regression (standardised, C 0.1) or a small gradient-boosted tree model over
  `confidence_signals` (24 signals: top-two probabilities, margin, entropy, agreement of the
  composed and neighbour views with the top-1, neighbour cosines and votes, name mentions,
  the function and territory heads' probabilities, the unit's training count, text length,
  行业分类, city-level unit, caller, follow-up of an earlier order), fitted on the inner folds'
  out-of-fold signals only (for the thresholds: cross-fitted over the inner folds). The
  top-1 unit is the same as ``current``'s.

Run: ``python -m ops.cv_quality [--variant NAME ...] [--shuffles 0,1,2,3] [--folds 5]``
(``make cv-quality`` runs the single-level variants; the nested ones fit six heads per fold
and take about ten minutes for four shuffles each).

Measured (shuffles 0-3, 1,634 orders; means, differences to ``current``):

==============  ========  =====  =============  =============
variant         accuracy  top-3  coverage@0.90  coverage@0.95
==============  ========  =====  =============  =============
current         0.716     0.826  0.635          0.507
previous        -0.011    -0.006 -0.007         -0.006
industry-1.0    -0.010    -0.005 -0.002         +0.001
plain-mentions  -0.002    -0.002 -0.007         -0.006
confidence-lr   +0.000    +0.000 +0.009         -0.014
confidence-hgb  +0.000    +0.000 -0.001         -0.006
==============  ========  =====  =============  =============

A learned confidence (``confidence-lr`` / ``-hgb`` against ``current-nested``, whose accuracy
and coverage are ``current``'s) does not help and is not in the product: coverage@0.95 per
shuffle 0.490 / 0.536 / 0.521 / 0.483 from the top probability, 0.487 / 0.497 / 0.520 / 0.471
(logistic) and 0.504 / 0.493 / 0.515 / 0.496 (trees); auto-dispatch under thresholds chosen on
the inner folds 45.9% of the orders at precision 0.957 from the top probability, 44.6% at 0.958
(logistic), 45.2% at 0.954 (trees). The blended top probability alone already separates right
from wrong well (ROC AUC 0.87 on shuffle 0; the best other signals: margin 0.86, the composed
view's probability 0.86, the function head's 0.84, neighbour votes 0.77), and the confident
errors are mostly orders whose unit is ambiguous in the data itself (follow-up calls about an
earlier order, 市数字城管专席 against the district 城管局, 市公安局 against its 交通警察支队).
Also tried on the same signals, read off outer and inner out-of-fold predictions without
refitting the heads (shuffles 0-3, coverage@0.95 against 0.507): the model fitted on orders
with top probability ≥ 0.4 only 0.507 (coverage@0.90 +0.014, auto-dispatch 44.0%), the mean
of the top probability and the learned one 0.510 / 0.512 (logistic / trees; auto-dispatch
45.7% / 45.8%), trees constrained to rise with the top probability 0.503; with thresholds aimed
at 0.95 instead of 0.96 the learned confidences auto-dispatched 47.9% to 49.4% of the orders at
precision 0.949 to 0.952, the top probability 49.2% at 0.949. On shuffles 0-2, a fixed penalty
on follow-up orders (top probability × 0.98 to × 0.8) -0.000 to -0.009, a share of 0.1 to 0.3
of the neighbour votes mixed into the top probability -0.006 to -0.056. Re-ranking the top
three candidates instead (a logistic model over per-candidate signals: probability, rank,
composed and neighbour probabilities, votes, best cosine, mention, function / territory
probabilities, training count, city-level; fitted on the inner folds) left coverage as it was
and lowered accuracy by 0.002 (shuffles 0-3), so the top-1 stays the blend's.

Earlier, against ``previous`` as it then was: industry 0.5 +0.009 accuracy / -0.013
coverage@0.95, industry 0.7 +0.008 / +0.001, ``knn-0.1`` -0.004 / +0.005, ``direct-0.2``
-0.003 / -0.000. Tried on shuffles 0-1 only and not kept (accuracy / coverage@0.95 against the
model of the time): mention weight β 0.5 -0.002 / -0.005, β 2 +0.005 / -0.044 (β 1.5 with
the 0.7 行业分类 weight +0.003 / -0.033); γ 1 or 6 ±0.000 / -0.005; SVC C 0.5 +0.003 /
+0.001 (with the 0.7 weight +0.002 / -0.011), C 2 -0.002 / +0.001; neighbours weighed 0.3
-0.000 / -0.016, power 2 -0.004 / -0.010, k 20 -0.001 / -0.003; a title (工单标题) word block
-0.008 / -0.003; word bigrams -0.006 / -0.005; character 2-5-grams -0.006 / +0.000; caller
block weight 2 +0.001 / +0.003; character block weight 0.7 -0.001 / -0.002; a unit-centroid
view (softmax of cosine to each unit's mean order, weight 0.15) +0.002 / -0.020; a
class-balanced function head -0.003 / +0.003; 5-fold Platt calibration -0.002 / -0.003;
行业分类 weight 0.6 -0.000 / -0.010, 0.8 -0.004 / -0.001 (against 0.7). Read off one
shuffle's out-of-fold predictions without refitting: dividing by the unit's training count
to a power τ (favouring rare units) gave +0.003 / +0.002 at τ 0.1 and destroyed coverage
from τ 0.2; ranking by a logistic model of correctness over the top probability, the margin
to the second, neighbour and head agreement and the unit's training count gave lower
coverage@0.95 (0.444 against 0.476 from the top probability).

Also tried on shuffles 0-1 (stop 14) and not kept: the function and territory heads each
blended with a multinomial logistic regression over the same features (LogisticRegression C 10,
weight 0.3 / 0.5; C 30 at 0.5), against ``current``'s 0.713 / 0.717 accuracy and 0.490 / 0.536
coverage@0.95: 0.715 / 0.721 and 0.495 / 0.528 (0.3), 0.718 / 0.718 and 0.483 / 0.506 (0.5),
0.718 and 0.496 (C 30, shuffle 0): a few orders either way, and the logistic heads double the
training time.

Also tried at stop 20 and not kept: the operator's raw 诉求类型 (咨询类 / 投诉类 / 紧急类 /
反馈类, recorded at intake) as a token of the 行业分类 block, alone or crossed with 行业分类1级
(shuffles 0-3: accuracy 0.716 / 0.716 against 0.716, coverage@0.95 0.503 / 0.490 against
0.507); each training order's reply (市民答复要点) or latest handling note (工单最新处理描述)
added as a second training document of its unit, the title kept (shuffles 0-1, against 0.709
and 0.513: 0.712 / 0.705 accuracy, 0.511 / 0.488 coverage@0.95). How accuracy grows with the
history: `ops.learning_curve`.

Also tried at stop 27 and not kept (prototypes outside the tool; shuffles 0-1, against
``current``'s 0.713 / 0.717 accuracy and 0.490 / 0.536 coverage@0.95): a unit catalogue wider
than the training fold (every unit of train + validation, so that a unit with no training
order can still be composed from its function and territory and found by its name) 0.715 /
0.719 and 0.491 / 0.535, top-3 +0.009; of the 62 orders of shuffle 0 whose unit had no order
in the training fold it routed 6 right, and it lost 3 orders of units that had. Neighbours
learnt prequentially (each held-out order's earlier held-out orders, by order number, join the
neighbour memory, as confirmed dispatches would in service): +0.001 / +0.001 accuracy,
+0.006 / +0.002 coverage@0.95. Follow-up calls citing an earlier order's number: 404 of the
2,042 orders cite one, but only 67 cite an order in the file (59 of them have its unit); on
``ops.bench_quality``'s test part 12 cite a train + validation order, and the retrained model
routes 8 of them right where the cited order's unit would route 9. Cleaning the training
labels (dropping each training fold's orders whose own unit got probability below τ while
another got p or more on 5 inner folds; shuffle 0): τ 0.02 / p 0.8 dropped 24 orders and
gave 0.704 accuracy and 0.457 coverage@0.95 (against 0.713 and 0.490), τ 0.05 / p 0.7 (98
orders) 0.705 and 0.445, τ 0.1 / p 0.5 (406) 0.702 and 0.436: the odd-looking labels are
shared by near-duplicate held-out orders, so they are information, not noise.
Where the errors are (shuffle 0, 469 errors): 424 choose the wrong function (259 of them in
the right territory), 39 the right function in the wrong territory. By the unit's orders in
train + validation: units with 30 or more orders 0.887 accuracy (972 orders), 10-29 0.568
(310), 3-9 0.486 (216), 1-2 0.162 (136). The four district 政府服务中心 (70 orders, the
district government's general desk, on any topic) are recalled 0.05 to 0.26 and 市数字城管专席
0.22 (its orders read like the district 城管局's). The baseline on the same folds (shuffles
0-3): accuracy 0.628, coverage@0.95 0.370 (``current`` 0.716 and 0.507).

Coverage at 95% precision moves by up to 0.05 between shuffles of the same model (0.483 to
0.536 for ``current``). The nearest other order has the same unit for 89-91% of the orders
whose nearest order is near-identical (cosine ≥ 0.8: 248 orders, 88.7%; ≥ 0.95: 145, 91.0%).
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import warnings
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp
from sklearn.base import BaseEstimator, clone
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import KFold
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler, normalize

from classifier import features as feat
from classifier.catalogue import CITY
from classifier.datasets import LabeledText, load_dataset
from classifier.ensemble import UnitEnsemble, _aligned
from classifier.model import TrainOptions, train_model
from classifier.thresholds import choose_thresholds, coverage_threshold
from classifier.tokenize import tokenize
from ops.bench_quality import DEFAULT_DATA, split

SIMILARITY_LEVELS: tuple[float, ...] = (0.8, 0.9, 0.95)


def _features(name: str, **params: Any) -> Callable[[], ColumnTransformer]:
    """The product's features with some of `feat.text_catalogue_features`'s options changed."""

    def variant_features() -> ColumnTransformer:
        return feat.text_catalogue_features(**params)

    variant_features.__name__ = name
    return variant_features


def _ensemble(**params: float) -> Callable[[], UnitEnsemble]:
    def ensemble_head() -> UnitEnsemble:
        return UnitEnsemble(**params)  # type: ignore[arg-type]

    return ensemble_head


VARIANTS: dict[str, TrainOptions] = {
    "current": TrainOptions(name="cv", cv_folds=0),
    "previous": TrainOptions(
        name="cv",
        cv_folds=0,
        features=_features("previous", industry_weight=1.0, abbreviations=False, callers=False),
    ),
    "industry-1.0": TrainOptions(
        name="cv", cv_folds=0, features=_features("industry_1.0", industry_weight=1.0)
    ),
    "industry-0.5": TrainOptions(
        name="cv", cv_folds=0, features=_features("industry_0.5", industry_weight=0.5)
    ),
    "plain-mentions": TrainOptions(
        name="cv",
        cv_folds=0,
        features=_features("plain_mentions", abbreviations=False, callers=False),
    ),
    "knn-0.1": TrainOptions(
        name="cv", cv_folds=0, unit_head=_ensemble(w_composed=0.9, w_knn=0.1)
    ),
    "direct-0.2": TrainOptions(
        name="cv", cv_folds=0, unit_head=_ensemble(w_direct=0.2, w_composed=0.6, w_knn=0.2)
    ),
}


def _lr_confidence() -> BaseEstimator:
    return make_pipeline(StandardScaler(), LogisticRegression(C=0.1, max_iter=1000))


def _hgb_confidence() -> BaseEstimator:
    return HistGradientBoostingClassifier(
        max_iter=100, learning_rate=0.05, max_depth=3, min_samples_leaf=40,
        l2_regularization=1.0, random_state=0,
    )  # fmt: skip


#: Variants scored with inner folds inside every training fold (`nested_out_of_fold`): the
#: product's model, its confidence either the top probability (``current-nested``) or a
#: learned P(top-1 correct) from `confidence_signals` (``confidence-lr`` / ``-hgb``).
CONFIDENCE_VARIANTS: dict[str, Callable[[], BaseEstimator] | None] = {
    "current-nested": None,
    "confidence-lr": _lr_confidence,
    "confidence-hgb": _hgb_confidence,
}
INNER_FOLDS = 5
#: An order that refers to an earlier one (工单号 …, 《关于…》): a follow-up call.
_FOLLOW_UP_RE = re.compile(r"工单(?:编)?号|《关于|\d{14}")


def scores(
    proba: np.ndarray,
    labels: np.ndarray,
    y: Sequence[str],
    conf: np.ndarray | None = None,
    auto: np.ndarray | None = None,
) -> dict[str, float]:
    """Accuracy, top-3 accuracy and coverage at precision 0.90 / 0.95 (all orders counted),
    ranking by ``conf`` when given (else the top probability); with ``auto`` (which orders
    the thresholds would auto-dispatch) also the auto-dispatch rate and precision."""
    y_arr = np.asarray(y)
    top = np.argsort(-proba, axis=1, kind="stable")[:, :3]
    if conf is None:
        conf = proba[np.arange(len(y_arr)), top[:, 0]]
    correct = (labels[top[:, 0]] == y_arr).astype(float)
    out = {
        "accuracy": float(correct.mean()),
        "top3_accuracy": float((labels[top] == y_arr[:, None]).any(axis=1).mean()),
    }
    for p in (0.90, 0.95):
        out[f"coverage_at_{p:.2f}"] = float((conf >= coverage_threshold(conf, correct, p)).mean())
    if auto is not None:
        out["auto_rate"] = float(auto.mean())
        out["auto_precision"] = float(correct[auto].mean()) if auto.any() else 0.0
    return out


def out_of_fold(
    records: Sequence[LabeledText], options: TrainOptions, folds: int, shuffle: int
) -> tuple[np.ndarray, np.ndarray]:
    """(labels, probabilities) for every record from a model trained on the other folds
    (a unit absent from those folds gets probability 0)."""
    labels = np.unique([r.unit for r in records])
    proba = np.zeros((len(records), len(labels)))
    splitter = KFold(folds, shuffle=True, random_state=shuffle)
    for tr, te in splitter.split(np.arange(len(records))):
        proba[te] = held_out_proba(
            [records[i] for i in tr], [records[i] for i in te], options, labels
        )
    return labels, proba


def held_out_proba(
    train: Sequence[LabeledText],
    held: Sequence[LabeledText],
    options: TrainOptions,
    labels: np.ndarray,
) -> np.ndarray:
    """Probabilities over ``labels`` (sorted) for the ``held`` records from a model trained on
    ``train``; a unit ``train`` lacks gets probability 0."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        model = train_model(train, out_dir=None, options=options, validation=held)
    out = np.zeros((len(held), len(labels)))
    out[:, np.searchsorted(labels, model.labels)] = model.proba_records(held)
    return out


def confidence_signals(
    head: UnitEnsemble, X: Any, records: Sequence[LabeledText]
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(signals, top-1 units, top-1 probabilities) of ``head`` for ``records`` (rows of
    ``X``): what a confidence model reads. Per order: the top two blended probabilities (as
    log-odds), their margin and the entropy; whether the composed view and the neighbours
    agree on the top-1 unit and their probability of it; the best neighbour's cosine, the
    best one of the top-1 unit and how many of the k neighbours are the top-1 unit's; whether
    the order names the top-1 unit and how many units it names; the function and territory
    heads' top probabilities and those of the top-1 unit's function / territory; the top-1
    unit's training count; text length and word count; whether 行业分类 says more than 其他;
    whether the top-1 unit is city-level, a caller is named, the order refers to an earlier one."""
    X = sp.csr_matrix(X)
    comp = head.components(X)
    P = head.blend(comp)
    n, rows = X.shape[0], np.arange(X.shape[0])
    top = P.argmax(axis=1)
    srt = np.sort(P, axis=1)
    p1 = srt[:, -1]
    p2 = srt[:, -2] if P.shape[1] > 1 else np.zeros(n)
    main = head._main(X)
    pf = _aligned(head.func_head_, main, head.func_names_, n)
    pt = _aligned(head.terr_head_, main, head.terr_names_, n)
    words = head._knn_view(X)
    sims = (normalize(words).astype(np.float32) @ head.knn_X_.T).toarray()
    k = min(head.knn_k, sims.shape[1])
    near = np.argpartition(-sims, k - 1, axis=1)[:, :k]
    near_sim = np.take_along_axis(sims, near, axis=1)
    near_top = head.knn_y_[near] == top[:, None]
    mentions = comp["mentions"]
    counts = np.bincount(head.knn_y_, minlength=len(head.classes_))
    texts = [r.text for r in records]

    def logit(p: np.ndarray) -> np.ndarray:
        p = np.clip(p, 1e-4, 1 - 1e-4)
        return np.log(p / (1 - p))

    columns = [
        logit(p1), logit(p2), p1 - p2, -(P * np.log(np.clip(P, 1e-12, 1.0))).sum(axis=1),
        comp["composed"].argmax(axis=1) == top, comp["composed"][rows, top],
        comp["knn"].argmax(axis=1) == top, comp["knn"][rows, top],
        near_sim.max(axis=1), np.where(near_top, near_sim, 0.0).max(axis=1), near_top.sum(axis=1),
        mentions[rows, top] > 0, (mentions > 0).sum(axis=1),
        pf.max(axis=1), pt.max(axis=1),
        pf[rows, head.func_of_unit_[top]], pt[rows, head.terr_of_unit_[top]],
        np.log1p(counts[top]), np.log1p([len(t) for t in texts]), np.log1p(np.diff(words.indptr)),
        [any(v not in ("", "其他") for v in feat.industry_string(r.extra).split("|"))
         for r in records],
        head.terr_names_[head.terr_of_unit_[top]] == CITY,
        [feat.caller_name(t) is not None for t in texts],
        [_FOLLOW_UP_RE.search(t) is not None for t in texts],
    ]  # fmt: skip
    signals = np.column_stack([np.asarray(c, dtype=np.float64) for c in columns])
    return signals, head.classes_[top], p1


def nested_out_of_fold(
    records: Sequence[LabeledText],
    options: TrainOptions,
    confidence: Callable[[], BaseEstimator] | None,
    folds: int,
    shuffle: int,
    inner_folds: int = INNER_FOLDS,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(labels, probabilities, confidence, auto-dispatched) for every record, from a model
    trained on the other folds, whose confidence and thresholds come from ``inner_folds``
    folds *inside* those training folds (the held-out fold is never read by either).

    With ``confidence`` None the confidence is the top probability; else a model made by
    ``confidence`` predicts whether the top-1 unit is right from `confidence_signals`,
    fitted on the inner folds' out-of-fold signals. Per-unit thresholds are chosen, as
    `classifier.model.train_model` does without validation data, on the inner out-of-fold
    confidence (cross-fitted over the inner folds for a learned one) for the target precision
    plus the cross-validation margin, and applied to the held-out fold."""
    labels = np.unique([r.unit for r in records])
    proba = np.zeros((len(records), len(labels)))
    conf = np.zeros(len(records))
    auto = np.zeros(len(records), dtype=bool)
    target = min(options.target_precision + options.cv_threshold_margin, 1.0)
    for tr, te in KFold(folds, shuffle=True, random_state=shuffle).split(np.arange(len(records))):
        train = [records[i] for i in tr]
        held = [records[i] for i in te]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            model = train_model(train, out_dir=None, options=options, validation=held)
            X = sp.csr_matrix(model.features.transform(feat.inputs_from_records(train)))
            y = np.asarray([r.unit for r in train])
            inner = []
            for itr, ite in KFold(inner_folds, shuffle=True, random_state=shuffle).split(y):
                head = clone(model.unit_head).fit(X[itr], y[itr])
                inner.append((*confidence_signals(head, X[ite], [train[i] for i in ite]), ite))
        signals = np.vstack([s for s, _, _, _ in inner])
        pred = np.concatenate([p for _, p, _, _ in inner])
        truth = y[np.concatenate([i for _, _, _, i in inner])]
        group = np.concatenate([np.full(len(i), g) for g, (_, _, _, i) in enumerate(inner)])
        held_signals, held_pred, held_conf = confidence_signals(
            model.unit_head, model.features.transform(feat.inputs_from_records(held)), held
        )
        if confidence is None:
            inner_conf = np.concatenate([p1 for _, _, p1, _ in inner])
        else:
            right = (pred == truth).astype(int)
            held_conf = _p_correct(confidence, signals, right, held_signals)
            inner_conf = np.zeros(len(right))
            for g in np.unique(group):
                inner_conf[group == g] = _p_correct(
                    confidence, signals[group != g], right[group != g], signals[group == g]
                )
        unit_labels = np.asarray(model.labels)
        at_pred = np.zeros((len(pred), len(unit_labels)))
        at_pred[np.arange(len(pred)), np.searchsorted(unit_labels, pred)] = inner_conf
        thresholds, global_t = choose_thresholds(at_pred, truth, unit_labels, precision=target)
        cols = np.searchsorted(labels, model.labels)
        proba[np.ix_(te, cols)] = model.proba_records(held)
        conf[te] = held_conf
        auto[te] = held_conf >= np.array([thresholds.get(u, global_t) for u in held_pred])
    return labels, proba, conf, auto


def _p_correct(
    factory: Callable[[], BaseEstimator], signals: np.ndarray, right: np.ndarray, new: np.ndarray
) -> np.ndarray:
    """P(top-1 right) for the ``new`` signals from a model made by ``factory`` and fitted on
    (``signals``, ``right``); the one outcome seen when the top-1 was always right or wrong."""
    if len(np.unique(right)) < 2:
        return np.full(len(new), float(right[0]) if len(right) else 0.0)
    return factory().fit(signals, right).predict_proba(new)[:, 1]


def duplicate_agreement(
    records: Sequence[LabeledText], levels: Sequence[float] = SIMILARITY_LEVELS
) -> dict[str, dict[str, float]]:
    """For orders whose most similar other order (jieba-word TF-IDF cosine) reaches each
    level: how many there are, and the share whose nearest order has the same unit."""
    vec = TfidfVectorizer(tokenizer=tokenize, token_pattern=None, lowercase=False,
                          sublinear_tf=True)  # fmt: skip
    X = normalize(vec.fit_transform([r.text for r in records]))
    sims = (X @ X.T).toarray()
    np.fill_diagonal(sims, -1.0)
    nearest = sims.argmax(axis=1)
    best = sims[np.arange(len(records)), nearest]
    units = np.asarray([r.unit for r in records])
    same = units[nearest] == units
    out = {}
    for level in levels:
        mask = best >= level
        out[f"{level:.2f}"] = {
            "orders": int(mask.sum()),
            "same_unit": float(same[mask].mean()) if mask.any() else 0.0,
        }
    return out


def run(
    records: Sequence[LabeledText], variants: Sequence[str], shuffles: Sequence[int], folds: int
) -> dict[str, Any]:
    """Per-variant, per-shuffle scores, their means and the mean differences to the first."""
    results: dict[str, Any] = {}
    y = [r.unit for r in records]
    for name in variants:
        nested = name in CONFIDENCE_VARIANTS
        opts = replace(VARIANTS["current" if nested else name], name=f"cv-{name}")
        per = []
        for s in shuffles:
            if nested:
                labels, proba, conf, auto = nested_out_of_fold(
                    records, opts, CONFIDENCE_VARIANTS[name], folds, s
                )
                per.append(scores(proba, labels, y, conf, auto))
            else:
                labels, proba = out_of_fold(records, opts, folds, s)
                per.append(scores(proba, labels, y))
            print(f"{name} 第 {s} 次打乱：{_line(per[-1])}", flush=True)
        mean = {k: float(np.mean([p[k] for p in per])) for k in per[0]}
        results[name] = {"shuffles": per, "mean": mean}
    ref = results[variants[0]]["mean"]
    for name in variants:
        m = results[name]["mean"]
        results[name]["delta"] = {k: m[k] - ref[k] for k in m if k in ref}
    return results


def _line(s: dict[str, float]) -> str:
    auto = (
        f"，自动派单 {s['auto_rate']:.1%}（精确率 {s['auto_precision']:.3f}）"
        if "auto_rate" in s
        else ""
    )
    return (
        f"准确率 {s['accuracy']:.3f}，前三命中率 {s['top3_accuracy']:.3f}，"
        f"覆盖率@0.90 {s['coverage_at_0.90']:.3f}，覆盖率@0.95 {s['coverage_at_0.95']:.3f}"
        + auto
    )


def add_split_arguments(parser: argparse.ArgumentParser, *, shuffles: str) -> None:
    """The options of a cross-validation over `ops.bench_quality`'s train + validation part:
    ``--data``, ``--seed`` (of the split), ``--shuffles`` (of the folds), ``--folds``."""
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument(
        "--seed", type=int, default=20180101, help="与 bench_quality 相同的划分种子"
    )
    parser.add_argument("--shuffles", default=shuffles, help="折划分的随机种子，逗号分隔")
    parser.add_argument("--folds", type=int, default=5)


def train_val_records(args: argparse.Namespace) -> list[LabeledText] | None:
    """The train + validation orders of the seeded split (the test part is dropped before
    anything else reads it); None, with the error printed, when the data file is missing."""
    if not args.data.exists():
        print(f"错误：找不到数据文件 {args.data}", file=sys.stderr)
        return None
    train, val, _test = split(load_dataset(args.data, "haikou12345"), args.seed)
    return [*train, *val]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="海口12345 训练+验证集上的重复交叉验证（不读测试集）"
    )
    add_split_arguments(parser, shuffles="0,1,2,3")
    parser.add_argument(
        "--variant", action="append", choices=sorted([*VARIANTS, *CONFIDENCE_VARIANTS])
    )
    args = parser.parse_args(argv)
    records = train_val_records(args)
    if records is None:
        return 2
    variants = args.variant or ["current"]
    shuffles = [int(s) for s in args.shuffles.split(",") if s.strip()]
    print(
        f"训练+验证集 {len(records)} 单（种子 {args.seed} 的划分，测试集不参与），"
        f"{args.folds} 折交叉验证，打乱种子 {shuffles}。"
    )
    results = run(records, variants, shuffles, args.folds)
    print()
    for name in variants:
        d = results[name]["delta"]
        auto = f"，自动派单 {d['auto_rate']:+.1%}" if "auto_rate" in d else ""
        print(
            f"{name} 平均：{_line(results[name]['mean'])}；与 {variants[0]} 相比："
            f"准确率 {d['accuracy']:+.3f}，覆盖率@0.95 {d['coverage_at_0.95']:+.3f}{auto}"
        )
    dup = duplicate_agreement(records)
    print("\n最相似的另一单（词 TF-IDF 余弦）与本单承办单位相同的比例：")
    for level, v in dup.items():
        print(f"  相似度 ≥ {level}：{v['orders']} 单，同单位 {v['same_unit']:.1%}")
    print(json.dumps({"variants": results, "duplicates": dup}, ensure_ascii=False))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
