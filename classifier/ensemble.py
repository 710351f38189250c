"""The product's unit head (承办单位集成模型): several views of an order, blended.

1. *direct*: a calibrated LinearSVC over all text/area features, one class per unit;
2. *composed*: units as function × territory (职能 × 属地). A function head (城管局, 镇政府,
   交通警察支队 …, pooled over districts) times a territory head (市 / 龙华区 / 美兰区 …), composed
   against the catalogue of known units; within a function, a unit whose name or town the
   order mentions is preferred. Rare district units borrow the evidence of their function;
3. *neighbours*: the nearest past orders (最相似历史工单), cosine over the same features;
4. a boost for units the order names (catalogue mentions, `classifier.catalogue`).

P(u) ∝ (w_d·P_direct + w_c·P_composed + w_k·P_neighbours)(u) · exp(β·mention(u)).
The blend weights were chosen on the validation part of the Haikou data (ops/bench_quality);
β = 1 on 5-fold cross-validation over its train + validation orders (accuracy 0.686 → 0.693,
coverage at 95% precision 0.474 → 0.480 against β = 0).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import scipy.sparse as sp
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.preprocessing import normalize
from sklearn.utils.sparsefuncs_fast import inplace_csr_row_normalize_l2

from classifier.catalogue import infer_territories, parse_unit
from classifier.heads import CalibratedSVC


class UnitEnsemble(ClassifierMixin, BaseEstimator):
    def __init__(
        self,
        C: float = 1.0,
        catalogue_cols: tuple[int, int] | None = None,
        catalogue_labels: tuple[str, ...] | None = None,
        knn_cols: tuple[int, int] | None = None,
        w_direct: float = 0.0,
        w_composed: float = 0.8,
        w_knn: float = 0.2,
        beta: float = 1.0,
        gamma: float = 3.0,
        knn_k: int = 10,
        knn_power: float = 4.0,
        random_state: int = 0,
    ) -> None:
        self.C = C
        self.catalogue_cols = catalogue_cols
        self.catalogue_labels = catalogue_labels
        self.knn_cols = knn_cols
        self.w_direct = w_direct
        self.w_composed = w_composed
        self.w_knn = w_knn
        self.beta = beta
        self.gamma = gamma
        self.knn_k = knn_k
        self.knn_power = knn_power
        self.random_state = random_state

    # --- fitting ------------------------------------------------------------------------------
    def fit(self, X: Any, y: Any) -> UnitEnsemble:
        X = sp.csr_matrix(X)
        y = np.asarray(y)
        self.classes_ = np.unique(y)
        self.n_features_ = X.shape[1]
        main = self._main(X)
        y_idx = np.searchsorted(self.classes_, y)
        # the direct view is only fitted when it is blended in
        self.direct_ = self._svc().fit(main, y) if self.w_direct > 0 else None
        self._fit_composition(main, y_idx)
        self.knn_X_ = normalize(self._knn_view(X)).astype(np.float32)
        self.knn_y_ = y_idx
        return self

    def _svc(self) -> CalibratedSVC:
        return CalibratedSVC(C=self.C, random_state=self.random_state)

    def _fit_composition(self, main: sp.csr_matrix, y_idx: np.ndarray) -> None:
        units = [str(u) for u in self.classes_]
        territories = infer_territories(units)
        parts = [parse_unit(u, territories) for u in units]
        functions = np.array([p.function for p in parts])
        terrs = np.array([p.territory for p in parts])
        self.func_names_, self.func_of_unit_ = np.unique(functions, return_inverse=True)
        self.terr_names_, self.terr_of_unit_ = np.unique(terrs, return_inverse=True)
        self.has_town_ = np.array([bool(p.town) for p in parts])
        self.func_head_ = _fit_or_none(self._svc(), main, functions[y_idx])
        self.terr_head_ = _fit_or_none(self._svc(), main, terrs[y_idx])

    def _main(self, X: sp.csr_matrix) -> sp.csr_matrix:
        if self.catalogue_cols is None:
            return X
        start, stop = self.catalogue_cols
        if stop == X.shape[1]:  # the mention block is last (as built): a slice, no index list
            return X[:, :start]
        keep = np.r_[0:start, stop : X.shape[1]]
        return X[:, keep]

    def _knn_view(self, X: sp.csr_matrix) -> sp.csr_matrix:
        """Columns the neighbour search compares (the word block when given: faster)."""
        if self.knn_cols is None:
            return self._main(X)
        start, stop = self.knn_cols
        return X[:, start:stop]

    def _mentions(self, X: sp.csr_matrix) -> np.ndarray:
        if self.catalogue_cols is None:
            return np.zeros((X.shape[0], len(self.classes_)), dtype=np.float32)
        start, stop = self.catalogue_cols
        block = X[:, start:stop]
        if self.catalogue_labels is not None:
            # the block has one column per catalogue unit; keep this head's units, in order
            cols = np.searchsorted(np.asarray(self.catalogue_labels), self.classes_)
            block = block[:, cols]
        return block.toarray()

    # --- prediction ---------------------------------------------------------------------------
    def components(self, X: Any) -> dict[str, np.ndarray]:
        """The per-view unit probabilities (n × n_units) and the mention matrix."""
        X = sp.csr_matrix(X)
        main = self._main(X)
        mentions = self._mentions(X)
        n = X.shape[0]
        direct = (
            np.zeros((n, len(self.classes_)))
            if self.direct_ is None
            else _aligned(self.direct_, main, self.classes_)
        )
        return {
            "direct": direct,
            "composed": self._composed(main, mentions),
            "knn": self._knn(self._knn_view(X)),
            "mentions": mentions,
        }

    def blend(self, comp: dict[str, np.ndarray]) -> np.ndarray:
        mix = (
            self.w_direct * comp["direct"]
            + self.w_composed * comp["composed"]
            + self.w_knn * comp["knn"]
        )
        mix = mix * np.exp(self.beta * comp["mentions"])
        return mix / np.maximum(mix.sum(axis=1, keepdims=True), 1e-12)

    def predict_proba(self, X: Any) -> np.ndarray:
        return self.blend(self.components(X))

    def predict(self, X: Any) -> np.ndarray:
        return self.classes_[self.predict_proba(X).argmax(axis=1)]

    def _composed(self, main: sp.csr_matrix, mentions: np.ndarray) -> np.ndarray:
        n = main.shape[0]
        p_func = _aligned(self.func_head_, main, self.func_names_, n)
        p_terr = _aligned(self.terr_head_, main, self.terr_names_, n)
        weight = p_terr[:, self.terr_of_unit_] * (1.0 + self.gamma * mentions)
        group = sp.csr_matrix(
            (np.ones(len(self.classes_)), (np.arange(len(self.classes_)), self.func_of_unit_)),
            shape=(len(self.classes_), len(self.func_names_)),
        )
        group_total = np.asarray(weight @ group)[:, self.func_of_unit_]
        share = weight / np.maximum(group_total, 1e-12)
        return p_func[:, self.func_of_unit_] * share

    def _knn(self, main: sp.csr_matrix) -> np.ndarray:
        n, n_units = main.shape[0], len(self.classes_)
        # `normalize(main).astype(np.float32)`'s arithmetic without its checks: unit rows in
        # the input's float type, then float32
        unit_rows = sp.csr_matrix(main, copy=True)
        if unit_rows.dtype not in (np.float32, np.float64):
            unit_rows = unit_rows.astype(np.float64)
        inplace_csr_row_normalize_l2(unit_rows)
        sims = (unit_rows.astype(np.float32, copy=False) @ self._knn_columns()).toarray()
        k = min(self.knn_k, sims.shape[1])
        top = np.argpartition(-sims, k - 1, axis=1)[:, :k]
        w = np.take_along_axis(sims, top, axis=1).clip(min=0) ** self.knn_power
        out = np.zeros((n, n_units))
        np.add.at(out, (np.repeat(np.arange(n), k), self.knn_y_[top].ravel()), w.ravel())
        return out / np.maximum(out.sum(axis=1, keepdims=True), 1e-12)

    def __getstate__(self) -> dict[str, Any]:
        state = dict(super().__getstate__())
        state.pop("_knn_T", None)  # derived; not saved with the model
        return state

    def _knn_columns(self) -> sp.csr_matrix:
        """The past orders as columns (features × orders, csr), made once per process: a
        product with ``knn_X_.T`` would convert it on every call."""
        cols = getattr(self, "_knn_T", None)
        if cols is None:
            cols = self._knn_T = sp.csr_matrix(self.knn_X_.T)
        return cols

    def linear_weights(self, n_features: int) -> np.ndarray:
        """Per-unit weights placed back at the full feature columns: the direct head's when
        fitted, else the function head's plus the territory head's (the composed view's
        linear part), which is what explanations (解释词) are read from."""
        main_w = self._main_weights(self.n_features_ - self._n_catalogue())
        out = np.zeros((len(self.classes_), n_features), dtype=np.float32)
        if self.catalogue_cols is None:
            out[:, : main_w.shape[1]] = main_w
            return out
        start, stop = self.catalogue_cols
        keep = np.r_[0:start, stop:n_features]
        out[:, keep] = main_w
        return out

    def _main_weights(self, n_main: int) -> np.ndarray:
        from classifier.heads import linear_weights

        if self.direct_ is not None:
            return linear_weights(self.direct_, n_main)
        out = np.zeros((len(self.classes_), n_main), dtype=np.float32)
        if self.func_head_ is not None:
            fw = linear_weights(self.func_head_, n_main)
            out += fw[np.searchsorted(self.func_head_.classes_, self.func_names_)][
                self.func_of_unit_
            ]
        if self.terr_head_ is not None:
            tw = linear_weights(self.terr_head_, n_main)
            out += tw[np.searchsorted(self.terr_head_.classes_, self.terr_names_)][
                self.terr_of_unit_
            ]
        return out

    def _n_catalogue(self) -> int:
        if self.catalogue_cols is None:
            return 0
        return self.catalogue_cols[1] - self.catalogue_cols[0]


def _fit_or_none(est: CalibratedSVC, X: sp.csr_matrix, y: np.ndarray) -> CalibratedSVC | None:
    return est.fit(X, y) if len(set(y.tolist())) >= 2 else None


def _aligned(
    est: CalibratedSVC | None, X: sp.csr_matrix, classes: np.ndarray, n: int | None = None
) -> np.ndarray:
    """``est``'s probabilities over ``classes`` (certainty when there was one class only)."""
    rows = X.shape[0] if n is None else n
    if est is None:
        return np.ones((rows, len(classes)))
    proba = est.predict_proba(X)
    if np.array_equal(est.classes_, classes):
        return proba
    out = np.zeros((rows, len(classes)))
    out[:, np.searchsorted(classes, est.classes_)] = proba
    return out
