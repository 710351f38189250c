"""ops.learning_curve: nested training fractions scored on held-out folds, and the fitted
saturating curve."""

from __future__ import annotations

import numpy as np
import pytest

import ops.cv_quality as cvq
import ops.learning_curve as lc
from classifier.model import TrainOptions
from tests.unit.test_cv_quality import _toy_records


def test_fit_recovers_a_known_curve_and_the_size_for_a_goal() -> None:
    sizes = [100.0, 200.0, 400.0, 800.0, 1600.0]
    values = [lc.saturating(n, 0.85, 3.0, 0.45) for n in sizes]
    c, k, alpha, c_se = lc.fit_curve(sizes, values)
    assert (c, k, alpha) == pytest.approx((0.85, 3.0, 0.45), rel=1e-3)
    assert c_se < 1e-3  # exact points: the asymptote is pinned down
    need = lc.size_for(0.75, c, k, alpha)
    assert need is not None and lc.saturating(need, 0.85, 3.0, 0.45) == pytest.approx(0.75)
    assert need > 1600  # beyond the measured range: the report calls it an extrapolation
    assert lc.size_for(0.9, c, k, alpha) is None  # above the asymptote: never reached


def test_fit_needs_four_points() -> None:
    with pytest.raises(ValueError):
        lc.fit_curve([100.0, 200.0, 400.0], [0.5, 0.6, 0.65])


def test_fractions_are_nested_and_never_score_an_order_with_a_model_that_saw_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    records = _toy_records()
    fitted: list[tuple[frozenset[str], frozenset[str]]] = []
    real = cvq.train_model

    def spy(train, **kwargs):  # type: ignore[no-untyped-def]
        fitted.append((frozenset(r.order_id for r in train),
                       frozenset(r.order_id for r in kwargs["validation"])))
        return real(train, **kwargs)

    monkeypatch.setattr(cvq, "train_model", spy)
    labels, proba, sizes = lc.curve_out_of_fold(
        records, TrainOptions(name="t", cv_folds=0), [0.5, 1.0], folds=3, shuffle=0
    )
    assert len(fitted) == 3 * 2
    held_all: set[str] = set()
    for fold in range(3):
        (half, held), (full, held_again) = fitted[2 * fold : 2 * fold + 2]
        assert held == held_again and not (full & held)
        assert half < full  # the half is part of the full training part
        assert full | held == {r.order_id for r in records}
        held_all |= held
    assert held_all == {r.order_id for r in records}  # every order scored once per fraction
    assert sizes[1.0] > sizes[0.5]
    for f in (0.5, 1.0):
        assert proba[f].shape == (len(records), len(labels))
        np.testing.assert_allclose(proba[f].sum(axis=1), 1.0, atol=1e-6)


def test_fractions_outside_zero_to_one_are_refused() -> None:
    with pytest.raises(ValueError):
        lc.curve_out_of_fold(_toy_records(), TrainOptions(name="t", cv_folds=0), [0.0, 1.0], 3, 0)
