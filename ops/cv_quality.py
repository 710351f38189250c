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
- ``direct-0.2``: the direct unit head blended in (0.2 direct, 0.6 composed, 0.2 neighbours).

Run: ``python -m ops.cv_quality [--variant NAME ...] [--shuffles 0,1,2,3] [--folds 5]``
(``make cv-quality`` runs every variant).

Measured (shuffles 0-3, 1,634 orders; means, differences to ``current``):

==============  ========  =====  =============  =============
variant         accuracy  top-3  coverage@0.90  coverage@0.95
==============  ========  =====  =============  =============
current         0.716     0.826  0.635          0.507
previous        -0.011    -0.006 -0.007         -0.006
industry-1.0    -0.010    -0.005 -0.002         +0.001
plain-mentions  -0.002    -0.002 -0.007         -0.006
==============  ========  =====  =============  =============

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

Coverage at 95% precision moves by up to 0.05 between shuffles of the same model (0.483 to
0.536 for ``current``). The nearest other order has the same unit for 89-91% of the orders
whose nearest order is near-identical (cosine ≥ 0.8: 248 orders, 88.7%; ≥ 0.95: 145, 91.0%).
"""

from __future__ import annotations

import argparse
import json
import sys
import warnings
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.compose import ColumnTransformer
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.model_selection import KFold
from sklearn.preprocessing import normalize

from classifier import features as feat
from classifier.datasets import LabeledText, load_dataset
from classifier.ensemble import UnitEnsemble
from classifier.model import TrainOptions, train_model
from classifier.thresholds import coverage_threshold
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


def scores(proba: np.ndarray, labels: np.ndarray, y: Sequence[str]) -> dict[str, float]:
    """Accuracy, top-3 accuracy and coverage at precision 0.90 / 0.95 (all orders counted)."""
    y_arr = np.asarray(y)
    top = np.argsort(-proba, axis=1, kind="stable")[:, :3]
    conf = proba[np.arange(len(y_arr)), top[:, 0]]
    correct = (labels[top[:, 0]] == y_arr).astype(float)
    out = {
        "accuracy": float(correct.mean()),
        "top3_accuracy": float((labels[top] == y_arr[:, None]).any(axis=1).mean()),
    }
    for p in (0.90, 0.95):
        out[f"coverage_at_{p:.2f}"] = float((conf >= coverage_threshold(conf, correct, p)).mean())
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
        train = [records[i] for i in tr]
        held = [records[i] for i in te]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            model = train_model(train, out_dir=None, options=options, validation=held)
        cols = np.searchsorted(labels, model.labels)
        proba[np.ix_(te, cols)] = model.proba_records(held)
    return labels, proba


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
    for name in variants:
        opts = replace(VARIANTS[name], name=f"cv-{name}")
        per = []
        for s in shuffles:
            labels, proba = out_of_fold(records, opts, folds, s)
            per.append(scores(proba, labels, [r.unit for r in records]))
            print(f"{name} 第 {s} 次打乱：{_line(per[-1])}", flush=True)
        mean = {k: float(np.mean([p[k] for p in per])) for k in per[0]}
        results[name] = {"shuffles": per, "mean": mean}
    ref = results[variants[0]]["mean"]
    for name in variants:
        m = results[name]["mean"]
        results[name]["delta"] = {k: m[k] - ref[k] for k in m}
    return results


def _line(s: dict[str, float]) -> str:
    return (
        f"准确率 {s['accuracy']:.3f}，前三命中率 {s['top3_accuracy']:.3f}，"
        f"覆盖率@0.90 {s['coverage_at_0.90']:.3f}，覆盖率@0.95 {s['coverage_at_0.95']:.3f}"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="海口12345 训练+验证集上的重复交叉验证（不读测试集）"
    )
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument(
        "--seed", type=int, default=20180101, help="与 bench_quality 相同的划分种子"
    )
    parser.add_argument("--variant", action="append", choices=sorted(VARIANTS))
    parser.add_argument("--shuffles", default="0,1,2,3", help="折划分的随机种子，逗号分隔")
    parser.add_argument("--folds", type=int, default=5)
    args = parser.parse_args(argv)
    if not args.data.exists():
        print(f"错误：找不到数据文件 {args.data}", file=sys.stderr)
        return 2
    variants = args.variant or ["current"]
    shuffles = [int(s) for s in args.shuffles.split(",") if s.strip()]
    train, val, _test = split(load_dataset(args.data, "haikou12345"), args.seed)
    records = [*train, *val]
    print(
        f"训练+验证集 {len(records)} 单（种子 {args.seed} 的划分，测试集不参与），"
        f"{args.folds} 折交叉验证，打乱种子 {shuffles}。"
    )
    results = run(records, variants, shuffles, args.folds)
    print()
    for name in variants:
        d = results[name]["delta"]
        print(
            f"{name} 平均：{_line(results[name]['mean'])}；与 {variants[0]} 相比："
            f"准确率 {d['accuracy']:+.3f}，覆盖率@0.95 {d['coverage_at_0.95']:+.3f}"
        )
    dup = duplicate_agreement(records)
    print("\n最相似的另一单（词 TF-IDF 余弦）与本单承办单位相同的比例：")
    for level, v in dup.items():
        print(f"  相似度 ≥ {level}：{v['orders']} 单，同单位 {v['same_unit']:.1%}")
    print(json.dumps({"variants": results, "duplicates": dup}, ensure_ascii=False))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
