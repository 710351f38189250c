"""Classifier heads (分类器) over the shared feature matrix, and their linear weights for
explanations.

A head is a scikit-learn classifier with ``predict_proba`` and ``classes_``. `linear_weights`
returns one weight row per class over the feature columns, used to say which words pushed an
order toward a unit.
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
from scipy.special import expit
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.calibration import CalibratedClassifierCV
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import KFold
from sklearn.svm import LinearSVC


class CalibratedSVC(ClassifierMixin, BaseEstimator):
    """LinearSVC with sigmoid (Platt) calibration over shuffled K folds: the baseline's head.

    The calibration follows ``CalibratedClassifierCV(method="sigmoid", ensemble=False)``:
    out-of-fold decision values from ``cv`` shuffled folds, one sigmoid per class fitted on
    them (Platt's smoothed targets), one LinearSVC refitted on all data. Unlike scikit-learn
    it accepts classes seen fewer than ``cv`` times (the long tail of units: a class missing
    from a fold's training part gets that fold's lowest decision value), and it fits all the
    sigmoids at once with a vectorised Newton method instead of one optimiser run per class.
    Prediction is one sparse × dense product and a vectorised sigmoid.
    """

    def __init__(
        self, C: float = 0.5, class_weight: str | None = None, cv: int = 3, random_state: int = 0
    ) -> None:
        self.C = C
        self.class_weight = class_weight
        self.cv = cv
        self.random_state = random_state

    def fit(self, X: Any, y: Any) -> CalibratedSVC:
        y = np.asarray(y)
        self.classes_ = np.unique(y)
        y_idx = np.searchsorted(self.classes_, y)
        oof = self._oof_decisions(X, y_idx)
        svc = self._svc().fit(X, y_idx)
        coef, intercept = _full_coef(svc, len(self.classes_))
        self.coef_t_ = np.ascontiguousarray(coef.T.astype(np.float32))
        self.intercept_ = intercept.astype(np.float32)
        targets = y_idx[:, None] == np.arange(len(self.classes_))[None, :]
        self.sig_a_, self.sig_b_ = platt_fit(oof, targets)
        return self

    def _svc(self) -> LinearSVC:
        return LinearSVC(C=self.C, class_weight=self.class_weight, random_state=self.random_state)

    def _oof_decisions(self, X: Any, y_idx: np.ndarray) -> np.ndarray:
        n_classes = len(self.classes_)
        out = np.zeros((len(y_idx), n_classes))
        folds = KFold(max(2, min(self.cv, len(y_idx))), shuffle=True, random_state=self.random_state)
        for tr, te in folds.split(y_idx):
            present = np.unique(y_idx[tr])
            if present.size < 2:
                continue
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", UserWarning)
                svc = self._svc().fit(X[tr], y_idx[tr])
            coef, intercept = _full_coef(svc, n_classes)
            dec = np.asarray(X[te] @ coef.T) + intercept
            missing = np.setdiff1d(np.arange(n_classes), present)
            dec[:, missing] = dec[:, present].min() - 1.0
            out[te] = dec
        return out

    def decision_function(self, X: Any) -> np.ndarray:
        return np.asarray(X @ self.coef_t_, dtype=np.float64) + self.intercept_

    def predict_proba(self, X: Any) -> np.ndarray:
        p = expit(-(self.sig_a_ * self.decision_function(X) + self.sig_b_))
        if len(self.classes_) == 2:
            return np.column_stack([1.0 - p[:, 1], p[:, 1]])
        total = p.sum(axis=1, keepdims=True)
        uniform = np.full_like(p, 1.0 / p.shape[1])
        return np.divide(p, total, out=uniform, where=total != 0)

    def predict(self, X: Any) -> np.ndarray:
        return self.classes_[self.predict_proba(X).argmax(axis=1)]

    def linear_weights(self, n_features: int) -> np.ndarray:
        out = np.zeros((len(self.classes_), n_features), dtype=np.float32)
        out[:, : self.coef_t_.shape[0]] = self.coef_t_.T
        return out


def _full_coef(svc: LinearSVC, n_classes: int) -> tuple[np.ndarray, np.ndarray]:
    """(n_classes × n_features) weights and intercepts of a LinearSVC trained on class
    indices, a class it never saw getting zero weights (and the lowest intercept)."""
    coef = np.asarray(svc.coef_, dtype=np.float64)
    intercept = np.asarray(svc.intercept_, dtype=np.float64)
    seen = np.asarray(svc.classes_)
    if coef.shape[0] == 1:  # binary: one row, positive for seen[1]
        coef = np.vstack([-coef[0], coef[0]])
        intercept = np.array([-intercept[0], intercept[0]])
    full = np.zeros((n_classes, coef.shape[1]))
    full_b = np.full(n_classes, intercept.min() - 1.0)
    full[seen] = coef
    full_b[seen] = intercept
    return full, full_b


def platt_fit(
    decisions: np.ndarray, targets: np.ndarray, iterations: int = 100
) -> tuple[np.ndarray, np.ndarray]:
    """Platt's sigmoid ``p = 1 / (1 + exp(a·f + b))`` per column, fitted jointly.

    ``decisions`` and the boolean ``targets`` are (n × k). Targets are smoothed as in Platt
    (2000): positives (N+ + 1) / (N+ + 2), negatives 1 / (N- + 2). Newton steps with a
    backtracking line search per column; large decision values are rescaled per column
    first, as scikit-learn does.
    """
    f = np.asarray(decisions, dtype=np.float64)
    pos = targets.sum(axis=0).astype(np.float64)
    neg = targets.shape[0] - pos
    t = np.where(targets, (pos + 1.0) / (pos + 2.0), 1.0 / (neg + 2.0))
    scale = np.maximum(np.abs(f).max(axis=0), 1.0)
    scale = np.where(scale >= 30.0, scale, 1.0)
    f = f / scale
    a = np.zeros(f.shape[1])
    b = np.log((neg + 1.0) / (pos + 1.0))
    loss = _platt_loss(f, t, a, b)
    for _ in range(iterations):
        p = expit(-(a * f + b))
        g = t - p  # d loss / d z for z = a·f + b
        ga, gb = (g * f).sum(axis=0), g.sum(axis=0)
        w = p * (1.0 - p)
        haa, hab, hbb = (w * f * f).sum(axis=0) + 1e-12, (w * f).sum(axis=0), w.sum(axis=0) + 1e-12
        det = haa * hbb - hab * hab
        det = np.where(np.abs(det) < 1e-18, 1e-18, det)
        da = -(hbb * ga - hab * gb) / det
        db = -(haa * gb - hab * ga) / det
        step = np.ones_like(a)
        for _ in range(20):  # halve the step of each column whose loss would rise
            ok = _platt_loss(f, t, a + step * da, b + step * db) <= loss + 1e-12
            if ok.all():
                break
            step = np.where(ok, step, step / 2.0)
        new_a, new_b = a + step * da, b + step * db
        new_loss = _platt_loss(f, t, new_a, new_b)
        accept = new_loss <= loss
        a, b = np.where(accept, new_a, a), np.where(accept, new_b, b)
        gain = loss - np.where(accept, new_loss, loss)
        loss = np.where(accept, new_loss, loss)
        if np.all(gain < 1e-10 * (1.0 + np.abs(loss))):
            break
    return a / scale, b


def _platt_loss(f: np.ndarray, t: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Cross-entropy of the smoothed targets per column, for ``p = expit(-(a·f + b))``."""
    z = a * f + b  # log-odds of the negative class
    # -[t·log p + (1 - t)·log(1 - p)] with log p = -log(1 + e^z), log(1 - p) = z - log(1 + e^z)
    return (np.logaddexp(0.0, z) - (1.0 - t) * z).sum(axis=0)


def logistic(*, C: float = 20.0, class_weight: str | None = None) -> BaseEstimator:
    """Multinomial logistic regression: probabilities from the model itself."""
    return LogisticRegression(C=C, class_weight=class_weight, max_iter=300, solver="lbfgs")


def linear_weights(head: BaseEstimator, n_features: int) -> np.ndarray:
    """Per-class weights (n_classes × n_features) of a linear head, as float32.

    For a calibrated head the weights of its fold estimators are averaged, each mapped onto
    the full class list (a fold may have missed a rare class).
    """
    if hasattr(head, "linear_weights"):
        return np.asarray(head.linear_weights(n_features), dtype=np.float32)
    classes = list(head.classes_)
    if isinstance(head, CalibratedClassifierCV):
        total = np.zeros((len(classes), n_features), dtype=np.float64)
        for cc in head.calibrated_classifiers_:
            total += _mapped_coef(cc.estimator, classes, n_features)
        return (total / len(head.calibrated_classifiers_)).astype(np.float32)
    return _mapped_coef(head, classes, n_features).astype(np.float32)


def _mapped_coef(est: BaseEstimator, classes: list[str], n_features: int) -> np.ndarray:
    coef = np.asarray(est.coef_)
    est_classes = list(est.classes_)
    out = np.zeros((len(classes), n_features), dtype=np.float64)
    if len(est_classes) == 2 and coef.shape[0] == 1:
        # binary linear models keep one row: positive for classes_[1]
        rows = {est_classes[1]: coef[0], est_classes[0]: -coef[0]}
    else:
        rows = dict(zip(est_classes, coef, strict=True))
    for i, c in enumerate(classes):
        if c in rows:
            out[i] = rows[c]
    return out
