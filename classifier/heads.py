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
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.calibration import CalibratedClassifierCV
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import KFold
from sklearn.svm import LinearSVC


class CalibratedSVC(ClassifierMixin, BaseEstimator):
    """LinearSVC with sigmoid (Platt) calibration over shuffled K folds: the baseline's head.

    Unlike ``CalibratedClassifierCV(cv=3)`` it accepts classes seen fewer than ``cv`` times
    (the long tail of units): folds are plain shuffled K-fold splits and a class missing from
    a fold's training part gets probability 0 from that fold.
    """

    def __init__(
        self, C: float = 0.5, class_weight: str | None = None, cv: int = 3, random_state: int = 0
    ) -> None:
        self.C = C
        self.class_weight = class_weight
        self.cv = cv
        self.random_state = random_state

    def fit(self, X: Any, y: Any) -> CalibratedSVC:
        splits = list(KFold(self.cv, shuffle=True, random_state=self.random_state).split(X))
        svc = LinearSVC(C=self.C, class_weight=self.class_weight, random_state=self.random_state)
        # ensemble=False: calibrators from out-of-fold decisions, one SVC refitted on all data
        # (one estimator to run at prediction time instead of one per fold)
        with warnings.catch_warnings():
            # a rare unit missing from a fold's training part is expected, not a problem
            warnings.simplefilter("ignore", RuntimeWarning)
            warnings.simplefilter("ignore", UserWarning)
            self.calibrated_ = CalibratedClassifierCV(
                svc, method="sigmoid", cv=splits, ensemble=False
            ).fit(X, y)
        self.classes_ = self.calibrated_.classes_
        return self

    def predict_proba(self, X: Any) -> np.ndarray:
        return self.calibrated_.predict_proba(X)

    def predict(self, X: Any) -> np.ndarray:
        return self.classes_[self.predict_proba(X).argmax(axis=1)]

    def linear_weights(self, n_features: int) -> np.ndarray:
        return linear_weights(self.calibrated_, n_features)


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
