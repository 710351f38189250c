"""Quality report (质量评估) of a unit model on labelled orders.

All figures count every order given, including those whose unit the model never saw (they
are simply wrong), so rare units are not hidden. The report also splits the orders by how many
training orders their unit had (按训练量分层, `by_history`): where the errors are, and how much
more history of a unit would help.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any, Protocol

import numpy as np
from sklearn.metrics import f1_score

from classifier.datasets import LabeledText
from classifier.thresholds import coverage_threshold

PRECISION_LEVELS: tuple[float, ...] = (0.90, 0.95, 0.97)
N_CONFUSED = 10
N_BINS = 15
#: Bands of a unit's training orders (inclusive; None: no upper bound) for `by_history`.
HISTORY_BANDS: tuple[tuple[int, int | None], ...] = ((0, 0), (1, 2), (3, 9), (10, 29), (30, None))


class _Model(Protocol):
    @property
    def labels(self) -> list[str]: ...

    @property
    def thresholds(self) -> dict[str, float]: ...

    def proba_records(self, records: Sequence[LabeledText]) -> np.ndarray: ...

    @property
    def train_counts(self) -> dict[str, int]: ...

    def appeal_records(self, records: Sequence[LabeledText]) -> tuple[list[str], np.ndarray]: ...


def evaluate(model: _Model, records: Sequence[LabeledText]) -> dict[str, Any]:
    """Accuracy, macro-F1, coverage at precision, per-unit figures, confusions, calibration,
    auto-dispatch under the model's thresholds, and the 诉求类型 report."""
    labels = np.asarray(model.labels)
    y = np.asarray([r.unit for r in records])
    proba = model.proba_records(records)
    report = unit_report(proba, y, labels, model.thresholds, model.train_counts or None)
    report["appeal_type"] = appeal_report(model, records)
    return report


def unit_report(
    proba: np.ndarray,
    y: np.ndarray,
    labels: np.ndarray,
    thresholds: dict[str, float],
    train_counts: Mapping[str, int] | None = None,
) -> dict[str, Any]:
    """The unit figures from a probability matrix over ``labels`` and the true units ``y``;
    with ``train_counts`` (training orders per unit) also `by_history`."""
    n = len(y)
    if n == 0:
        raise ValueError("评估数据为空")
    top_idx = np.argsort(-proba, axis=1, kind="stable")[:, :3]
    pred = labels[top_idx[:, 0]]
    conf = proba[np.arange(n), top_idx[:, 0]]
    correct = (pred == y).astype(float)
    in_top3 = (labels[top_idx] == y[:, None]).any(axis=1)
    known = set(labels.tolist())
    unit_t = np.array([thresholds.get(u, 1.01) for u in pred])
    auto = conf >= unit_t
    report = {
        "n": n,
        "n_labels": len(set(y.tolist())),
        "unseen_labels": sorted(set(y.tolist()) - known),
        "n_unseen": int(sum(1 for u in y if u not in known)),
        "accuracy": float(correct.mean()),
        "top3_accuracy": float(in_top3.mean()),
        "macro_f1": float(f1_score(y, pred, average="macro", zero_division=0)),
        "coverage": {f"{p:.2f}": _coverage(conf, correct, p) for p in PRECISION_LEVELS},
        "ece": expected_calibration_error(conf, correct),
        "auto_rate": float(auto.mean()),
        "auto_precision": float(correct[auto].mean()) if auto.any() else 0.0,
        "manual_top3_accuracy": float(in_top3[~auto].mean()) if (~auto).any() else 0.0,
        "per_unit": per_unit(y, pred),
        "confused": most_confused(y, pred),
    }
    if train_counts is not None:
        report["by_history"] = by_history(y, correct.astype(bool), in_top3, train_counts)
    return report


def by_history(
    y: np.ndarray, correct: np.ndarray, in_top3: np.ndarray, train_counts: Mapping[str, int]
) -> list[dict[str, Any]]:
    """Orders, accuracy, top-3 accuracy and share of all errors per band of their unit's
    training orders (`HISTORY_BANDS`; a unit the model never saw is in the band 0)."""
    history = np.array([train_counts.get(u, 0) for u in y.tolist()])
    errors = max(int((~correct).sum()), 1)
    out = []
    for low, high in HISTORY_BANDS:
        mask = history >= low
        if high is not None:
            mask &= history <= high
        k = int(mask.sum())
        out.append(
            {
                "band": f"{low}+" if high is None else f"{low}" if high == low else f"{low}-{high}",
                "n": k,
                "share": k / len(y),
                "accuracy": float(correct[mask].mean()) if k else 0.0,
                "top3_accuracy": float(in_top3[mask].mean()) if k else 0.0,
                "error_share": float((~correct[mask]).sum()) / errors,
            }
        )
    return out


def _coverage(conf: np.ndarray, correct: np.ndarray, precision: float) -> float:
    t = coverage_threshold(conf, correct, precision)
    return float((conf >= t).mean())


def expected_calibration_error(conf: np.ndarray, correct: np.ndarray, bins: int = N_BINS) -> float:
    """ECE of the top-candidate confidence over equal-width bins."""
    edges = np.linspace(0.0, 1.0, bins + 1)
    which = np.clip(np.digitize(conf, edges[1:-1], right=True), 0, bins - 1)
    total = 0.0
    for b in range(bins):
        mask = which == b
        if mask.any():
            total += mask.mean() * abs(conf[mask].mean() - correct[mask].mean())
    return float(total)


def per_unit(y: np.ndarray, pred: np.ndarray) -> dict[str, dict[str, float]]:
    """Precision, recall and support per true or predicted unit, by support descending."""
    support = Counter(y.tolist())
    predicted = Counter(pred.tolist())
    hits = Counter(u for u, p in zip(y.tolist(), pred.tolist(), strict=True) if u == p)
    units = sorted(set(support) | set(predicted), key=lambda u: (-support[u], u))
    return {
        u: {
            "precision": hits[u] / predicted[u] if predicted[u] else 0.0,
            "recall": hits[u] / support[u] if support[u] else 0.0,
            "support": support[u],
            "predicted": predicted[u],
        }
        for u in units
    }


def most_confused(y: np.ndarray, pred: np.ndarray, n: int = N_CONFUSED) -> list[dict[str, Any]]:
    pairs = Counter((u, p) for u, p in zip(y.tolist(), pred.tolist(), strict=True) if u != p)
    return [{"true": u, "predicted": p, "count": c} for (u, p), c in pairs.most_common(n)]


def appeal_report(model: _Model, records: Sequence[LabeledText]) -> dict[str, Any]:
    """Accuracy and macro-F1 of the 诉求类型 head on records that carry a type."""
    keep = [r for r in records if r.appeal_type]
    classes, proba = model.appeal_records(keep)
    if not keep or not classes:
        return {"n": len(keep), "available": False}
    y = np.asarray([r.appeal_type for r in keep])
    pred = np.asarray(classes)[proba.argmax(axis=1)]
    return {
        "n": len(keep),
        "available": True,
        "accuracy": float((pred == y).mean()),
        "macro_f1": float(f1_score(y, pred, average="macro", zero_division=0)),
        "per_type": per_unit(y, pred),
        "confused": most_confused(y, pred, 5),
    }


def format_report(report: dict[str, Any], title: str = "承办单位模型评估") -> str:
    """A Chinese text table of a report, for people."""
    lines = [
        f"== {title} ==",
        f"工单数 {report['n']}，单位数 {report['n_labels']}，"
        f"模型未见过的单位 {len(report['unseen_labels'])} 个（{report['n_unseen']} 单）",
        f"准确率 {report['accuracy']:.3f}    前三命中率 {report['top3_accuracy']:.3f}    "
        f"宏平均F1 {report['macro_f1']:.3f}    校准误差ECE {report['ece']:.3f}",
        "按置信度从高到低，精确率不低于 p 时可覆盖的工单比例：  "
        + "    ".join(f"p={p} → {v:.1%}" for p, v in report["coverage"].items()),
        f"按模型各单位阈值自动派单：比例 {report['auto_rate']:.1%}，精确率 {report['auto_precision']:.3f}；"
        f"转人工工单的前三建议命中率 {report['manual_top3_accuracy']:.1%}",
        "",
        f"{'承办单位':<22}{'精确率':>8}{'召回率':>8}{'样本数':>8}{'预测数':>8}",
    ]
    for unit, m in list(report["per_unit"].items())[:25]:
        lines.append(
            f"{unit:<22}{m['precision']:>9.2f}{m['recall']:>9.2f}"
            f"{m['support']:>9}{m['predicted']:>9}"
        )
    if len(report["per_unit"]) > 25:
        lines.append(f"……其余 {len(report['per_unit']) - 25} 个单位略（--json 可看全部）")
    if report.get("by_history"):
        lines.append("")
        lines.append("按承办单位的训练工单数分层：")
        for b in report["by_history"]:
            head = f"  训练 {b['band']:>5} 单的单位：{b['n']:>5} 单"
            if not b["n"]:
                lines.append(head)
                continue
            lines.append(
                f"{head}（{b['share']:>5.1%}），准确率 {b['accuracy']:.3f}，"
                f"前三命中率 {b['top3_accuracy']:.3f}，占全部错误 {b['error_share']:>5.1%}"
            )
    lines.append("")
    lines.append("最易混淆（实际 → 预测：次数）：")
    for c in report["confused"]:
        lines.append(f"  {c['true']} → {c['predicted']}：{c['count']}")
    appeal = report.get("appeal_type")
    if appeal and appeal.get("available"):
        lines.append("")
        lines.append(
            f"诉求类型：{appeal['n']} 单，准确率 {appeal['accuracy']:.3f}，宏平均F1 {appeal['macro_f1']:.3f}"
        )
        for t, m in appeal["per_type"].items():
            lines.append(
                f"  {t}：精确率 {m['precision']:.2f} 召回率 {m['recall']:.2f} 样本 {m['support']}"
            )
    return "\n".join(lines)
