"""Decision bands chosen on validation data."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from pydantic import ValidationError

from fraud_core.manifest import Thresholds
from fraud_core.scorer import decide
from fraud_training.evaluation import (
    choose_thresholds,
    evaluate,
    operating_points,
    pr_figure,
    roc_figure,
    save_curves,
)

# 10 rows, scores descending; frauds at the 1st, 2nd, 4th and 7th highest scores.
Y = np.array([1, 1, 0, 1, 0, 0, 1, 0, 0, 0])
S = np.array([0.95, 0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3, 0.2, 0.1])


def test_max_f1_threshold_sits_between_the_chosen_score_and_the_next_lower() -> None:
    # F1 by cut: top2 0.667, top4 (3 of 4) 0.75, top7 (4 of 7) 0.727 → decline covers the top 4
    choice = choose_thresholds(Y, S).thresholds
    assert 0.6 < choice.decline <= 0.7
    assert [d for d in decide(S, choice)].count("decline") == 4


def test_target_precision_picks_lowest_threshold_reaching_it() -> None:
    choice = choose_thresholds(Y, S, target_precision=1.0).thresholds
    assert decide(S, choice).count("decline") == 2


def test_review_band_reaches_requested_recall_and_never_exceeds_decline() -> None:
    choice = choose_thresholds(Y, S, review_recall=1.0).thresholds
    flagged = choice.review <= S
    assert flagged[Y == 1].all()
    assert choice.review <= choice.decline
    assert decide(S, choice).count("review") == 3


def test_unreachable_precision_falls_back_to_f1_with_warning() -> None:
    choice = choose_thresholds(np.array([0, 1, 0, 1]), np.array([0.9, 0.8, 0.7, 0.6]), target_precision=0.99)
    assert choice.warning is not None and "max F1" in choice.warning


def test_review_above_decline_is_refused() -> None:
    with pytest.raises(ValidationError, match="review threshold must not exceed"):
        Thresholds(review=0.9, decline=0.5)


def test_evaluate_confusion_matrix() -> None:
    m = evaluate(Y, S, Thresholds(review=0.35, decline=0.65))
    assert m["confusion_matrix"] == {"tn": 5, "fp": 1, "fn": 1, "tp": 3}
    assert m["flagged_recall"] == 1.0
    assert m["precision"] == pytest.approx(0.75)


def test_lowest_threshold_keeps_a_margin_below_tied_scores() -> None:
    # GIVEN thousands of rows sharing the lowest score (trees do that) and a recall only the lowest cut reaches
    y = np.array([0] * 5000 + [1] * 3)
    scores = np.concatenate([np.full(5000, 0.001), [0.001, 0.4, 0.9]])
    choice = choose_thresholds(y, scores, review_recall=1.0).thresholds
    # THEN the review threshold sits strictly between 0 and the tied score, not on it
    assert 0.0 < choice.review < 0.001
    assert (scores >= choice.review).all()
    assert (np.float32(0.001) >= choice.review) and (np.float64(0.001) >= choice.review)


def test_operating_points_are_precision_recall_and_fpr_at_each_threshold() -> None:
    review, decline = operating_points(Y, S, Thresholds(review=0.35, decline=0.65))
    # decline flags the top 4 (3 frauds, 1 legit); review the top 7 (all 4 frauds, 3 legit)
    assert (decline.name, decline.precision, decline.recall) == ("decline", 0.75, 0.75)
    assert decline.fpr == pytest.approx(1 / 6)
    assert (review.name, review.precision, review.recall) == ("review", pytest.approx(4 / 7), 1.0)
    assert review.fpr == pytest.approx(3 / 6)
    empty = operating_points(Y, S, Thresholds(review=0.99, decline=0.99))[1]
    assert np.isnan(empty.precision) and empty.recall == 0.0


def _marked(ax: Any) -> dict[str, tuple[float, float]]:
    """Legend label → (x, y) of each single-point line (the operating-point markers)."""
    return {
        str(line.get_label()): (float(line.get_xdata()[0]), float(line.get_ydata()[0]))
        for line in ax.get_lines()
        if len(line.get_xdata()) == 1
    }


def test_pr_curve_marks_review_and_decline_operating_points() -> None:
    points = operating_points(Y, S, Thresholds(review=0.35, decline=0.65))
    marked = _marked(pr_figure(Y, S, title="t", points=points).axes[0])
    assert marked == {p.label: (p.recall, p.precision) for p in points}
    assert any(label.startswith("decline ≥ 0.65: precision 0.750, recall 0.750") for label in marked)


def test_roc_has_a_log_fpr_version_with_the_operating_points() -> None:
    points = operating_points(Y, S, Thresholds(review=0.35, decline=0.65))
    linear = roc_figure(Y, S, title="t", points=points).axes[0]
    log = roc_figure(Y, S, title="t", points=points, log_fpr=True).axes[0]
    assert linear.get_xscale() == "linear" and log.get_xscale() == "log"
    assert 0 < log.get_xlim()[0] < 1 / 6  # shows FPRs below the smallest non-zero one
    assert sorted(_marked(log).values()) == sorted((p.fpr, p.recall) for p in points)


def test_save_curves_writes_three_pngs(tmp_path: Path) -> None:
    paths = save_curves(Y, S, tmp_path, title="t", thresholds=Thresholds(review=0.35, decline=0.65))
    assert [p.name for p in paths] == ["pr_curve.png", "roc_curve.png", "roc_curve_log.png"]
    assert all(p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" for p in paths)
