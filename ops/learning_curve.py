"""Learning curve (学习曲线) of the unit model on Haikou orders, test unread.

How much better does routing get with more history? A district deciding how many months of
orders to train on, or whether the accuracy goal of its model is reachable with the history it
has, needs the answer measured, not guessed. This tool runs K-fold cross-validation over the
*train + validation* part of `ops.bench_quality`'s seeded split (the test part is left out
before anything is fitted) and, inside every fold, trains the product's model on nested
fractions of the fold's training part (the first 12.5%, 25%, 50%, … of one seeded
permutation, so a larger fraction always contains a smaller one); the held-out fold is scored
in full each time.
Every order of train + validation is held out once per shuffle, so each point of the curve is
scored on all of them (units unseen in the fraction's training orders count as errors, as in
`ops.bench_quality`).

It prints, per fraction, the mean number of training orders, accuracy, top-3 accuracy and
coverage at precision 0.90 / 0.95 (means over the shuffles), and a least-squares fit of the
usual saturating learning curve, accuracy = c − k·n^(−α) (n training orders, c the accuracy
that unlimited history of the same kind would approach), likewise for coverage at precision
0.95, with the size at which each curve reaches the model's goal (accuracy 0.75, coverage
0.60). Beyond the measured range that size is an extrapolation, and the output says so; an
asymptote fitted at its bound (1.0) or with a standard error of 0.05 or more is not determined
by the points, and the output says that too; a fit that does not converge is left out. A
straight line in ln(n) was tried first and is not used: fitted over all the points it is
dominated by the steep start of the curve and promised 0.75 at 1,722 orders, while the curve
had already flattened to +0.013 from 980 to 1,307 orders.

Measured (shuffles 0-3, 1,634 orders, 5 folds; means):

=============  ========  =====  =============  =============
train orders   accuracy  top-3  coverage@0.90  coverage@0.95
=============  ========  =====  =============  =============
163            0.514     0.628  0.347          0.230
327            0.592     0.702  0.460          0.326
654            0.662     0.774  0.563          0.428
980            0.697     0.807  0.616          0.466
1,307          0.713     0.827  0.637          0.511
=============  ========  =====  =============  =============

From 980 to 1,307 orders accuracy still rose by 0.038 per doubling of the history and coverage
at 95% precision by 0.108. The fitted curves (asymptotes not determined by these points) reach
accuracy 0.75 at about 2,200 training orders and coverage 0.60 at about 3,600: more than the
1,634 orders of train + validation, and than the 2,042 labelled orders of the whole file.
The coverage curve is the less stable of the two: on one shuffle of 3 folds (fractions 0.2 to
1) its fit never reached 0.60, while accuracy again needed about 2,100 orders.

Run: ``python -m ops.learning_curve [--fractions 0.25,0.5,0.75,1] [--shuffles 0,1]``
(``make learning-curve``; a few minutes).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

import numpy as np
from scipy.optimize import curve_fit
from sklearn.model_selection import KFold

from classifier.datasets import LabeledText
from classifier.model import TrainOptions
from ops.cv_quality import (
    VARIANTS,
    add_split_arguments,
    held_out_proba,
    scores,
    train_val_records,
)

DEFAULT_FRACTIONS: tuple[float, ...] = (0.125, 0.25, 0.5, 0.75, 1.0)
#: The metrics whose curves are fitted, their names in the report, and the model's goals.
FITTED: dict[str, tuple[str, float]] = {
    "accuracy": ("准确率", 0.75),
    "coverage_at_0.95": ("精确率 0.95 时的覆盖率", 0.60),
}


def curve_out_of_fold(
    records: Sequence[LabeledText],
    options: TrainOptions,
    fractions: Sequence[float],
    folds: int,
    shuffle: int,
) -> tuple[np.ndarray, dict[float, np.ndarray], dict[float, float]]:
    """(labels, probabilities per fraction, mean training size per fraction): every record
    scored by models trained on nested ``fractions`` of the other folds (a unit absent from
    those training orders gets probability 0)."""
    if not fractions or any(not 0 < f <= 1 for f in fractions):
        raise ValueError("比例必须在 (0, 1] 之间")
    labels = np.unique([r.unit for r in records])
    proba = {f: np.zeros((len(records), len(labels))) for f in fractions}
    sizes: dict[float, list[int]] = {f: [] for f in fractions}
    rng = np.random.default_rng(shuffle)
    splitter = KFold(folds, shuffle=True, random_state=shuffle)
    for tr, te in splitter.split(np.arange(len(records))):
        order = rng.permutation(tr)
        held = [records[i] for i in te]
        for f in fractions:
            part = [records[i] for i in order[: max(2, round(f * len(order)))]]
            if len({r.unit for r in part}) < 2:
                raise ValueError(f"比例 {f} 的训练单不足两个单位")
            proba[f][te] = held_out_proba(part, held, options, labels)
            sizes[f].append(len(part))
    return labels, proba, {f: float(np.mean(s)) for f, s in sizes.items()}


def saturating(n: Any, c: float, k: float, alpha: float) -> Any:
    """The learning curve c − k·n^(−α)."""
    return c - k * np.power(n, -alpha)


def fit_curve(
    sizes: Sequence[float], values: Sequence[float]
) -> tuple[float, float, float, float]:
    """(c, k, α, standard error of c) of the least-squares `saturating` curve through the
    points (four or more). The error is inf when the fit cannot estimate it; a fit that does
    not converge raises RuntimeError (scipy's)."""
    if len(sizes) < 4:
        raise ValueError("拟合学习曲线至少需要四个训练比例")
    params, cov = curve_fit(
        saturating, np.asarray(sizes, dtype=float), np.asarray(values, dtype=float),
        p0=(min(max(values) + 0.1, 0.999), 1.0, 0.5), bounds=([0.0, 0.0, 0.01], [1.0, np.inf, 3.0]),
        maxfev=20000,
    )
    c, k, alpha = (float(v) for v in params)
    c_se = float(np.sqrt(cov[0, 0])) if np.isfinite(cov[0, 0]) else math.inf
    return c, k, alpha, c_se


def size_for(target: float, c: float, k: float, alpha: float) -> float | None:
    """The training size at which the curve reaches ``target`` (None if it never does)."""
    if target >= c or k <= 0:
        return None
    return float((k / (c - target)) ** (1.0 / alpha))


def run(
    records: Sequence[LabeledText],
    fractions: Sequence[float],
    shuffles: Sequence[int],
    folds: int,
    options: TrainOptions | None = None,
) -> dict[str, Any]:
    """Per-fraction scores (per shuffle and their mean) and, with four fractions or more, the
    fitted curve of each `FITTED` metric."""
    opts = replace(options or VARIANTS["current"], name="curve")
    y = [r.unit for r in records]
    per: dict[float, list[dict[str, float]]] = {f: [] for f in fractions}
    size: dict[float, list[float]] = {f: [] for f in fractions}
    for s in shuffles:
        labels, proba, sizes = curve_out_of_fold(records, opts, fractions, folds, s)
        for f in fractions:
            per[f].append(scores(proba[f], labels, y))
            size[f].append(sizes[f])
            print(f"第 {s} 次打乱，比例 {f:g}（训练 {sizes[f]:.0f} 单）："
                  f"准确率 {per[f][-1]['accuracy']:.3f}", flush=True)
    points = []
    for f in fractions:
        mean = {k: float(np.mean([p[k] for p in per[f]])) for k in per[f][0]}
        points.append({"fraction": f, "train_orders": float(np.mean(size[f])), **mean,
                       "shuffles": per[f]})
    fits: dict[str, dict[str, float]] = {}
    if len(points) >= 4:
        for metric in FITTED:
            try:
                c, k, alpha, c_se = fit_curve([p["train_orders"] for p in points],
                                              [p[metric] for p in points])
            except RuntimeError:  # no convergence: the points are reported without a curve
                print(f"{FITTED[metric][0]}：学习曲线拟合未收敛，不外推", flush=True)
                continue
            fits[metric] = {"c": c, "k": k, "alpha": alpha, "c_se": c_se}
    return {"points": points, "fits": fits}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="海口12345 单位模型的学习曲线（训练+验证集上交叉验证，不读测试集）"
    )
    add_split_arguments(parser, shuffles="0,1")
    parser.add_argument("--fractions", default=",".join(f"{f:g}" for f in DEFAULT_FRACTIONS),
                        help="训练部分的比例，逗号分隔")
    args = parser.parse_args(argv)
    records = train_val_records(args)
    if records is None:
        return 2
    try:
        fractions = sorted({float(f) for f in args.fractions.split(",") if f.strip()})
        shuffles = [int(s) for s in args.shuffles.split(",") if s.strip()]
    except ValueError:
        print("错误：--fractions 与 --shuffles 须为逗号分隔的数字", file=sys.stderr)
        return 2
    print(f"训练+验证集 {len(records)} 单（种子 {args.seed} 的划分，测试集不参与），"
          f"{args.folds} 折交叉验证，打乱种子 {shuffles}，训练比例 {fractions}。")
    try:
        result = run(records, fractions, shuffles, args.folds)
    except ValueError as exc:
        print(f"错误：{exc}", file=sys.stderr)
        return 2
    print("\n训练单数    准确率   前三命中率   覆盖率@0.90   覆盖率@0.95")
    for p in result["points"]:
        print(f"{p['train_orders']:8.0f}    {p['accuracy']:.3f}    {p['top3_accuracy']:.3f}"
              f"       {p['coverage_at_0.90']:.3f}         {p['coverage_at_0.95']:.3f}")
    points = result["points"]
    if len(points) < 4:
        print("\n（训练比例少于四个，不拟合学习曲线）")
    extrapolated: dict[str, float | None] = {}
    for metric, fit in result["fits"].items():
        name, goal = FITTED[metric]
        last, before = points[-1], points[-2]
        print(f"\n{name}：", end="")
        if last["train_orders"] > before["train_orders"]:
            gain = (last[metric] - before[metric]) / math.log2(
                last["train_orders"] / before["train_orders"])
            print(f"实测最后两点（{before['train_orders']:.0f} → "
                  f"{last['train_orders']:.0f} 单）之间，训练单数每翻一倍 {gain:+.3f}")
        else:
            print("最后两个比例的训练单数相同")
        c, k, alpha, c_se = fit["c"], fit["k"], fit["alpha"], fit["c_se"]
        limit = (f"数据无限多时趋近 {c:.3f}（标准误 {c_se:.3f}）" if c < 0.999 and c_se < 0.05
                 else "渐近值这些点定不出，外推只作参考")
        print(f"  拟合 ≈ {c:.3f} − {k:.2f} × 训练单数^(−{alpha:.2f})，{limit}")
        largest = last["train_orders"]
        print("  按此曲线（外推）："
              + "；".join(f"训练 {n:,.0f} 单时约 {saturating(n, c, k, alpha):.3f}"
                         for n in (2 * largest, 4 * largest)))
        need = extrapolated[metric] = size_for(goal, c, k, alpha)
        if need is None:
            print(f"  按此曲线，{name}达不到 {goal:g}")
        else:
            note = "实测范围内" if need <= largest else f"外推：实测最多 {largest:.0f} 单"
            print(f"  按此曲线，{name}达到 {goal:g} 约需 {need:,.0f} 单训练数据（{note}）")
    result["orders_for_goal"] = extrapolated
    print(json.dumps(result, ensure_ascii=False))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
