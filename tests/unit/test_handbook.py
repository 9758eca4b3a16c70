"""The Handbook's evaluation protocol, pinned rule by rule on tiny hand-made data."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from fraud_training.handbook import ProtocolError, card_precision_at_k, fold_split, fold_starts
from fraud_training.simulated_eval import alert_budget_thresholds, load

# A fold training from day 0: training days 0-6, delay days 7-13, test days 14-20.


def rows(*spec: tuple[int, str, int]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    day, card, y = zip(*spec, strict=True)
    return np.array(day), np.array(card), np.array(y)


def test_a_card_compromised_in_training_is_absent_from_every_test_day() -> None:
    day, card, y = rows((3, "A", 1), (14, "A", 0), (20, "A", 0), (14, "B", 0))
    split = fold_split(day, card, y, train_start_day=0)
    assert card[split.test].tolist() == ["B"]


def test_delay_labels_arrive_one_day_at_a_time() -> None:
    # GIVEN card C defrauded on delay day 9: its label is known from test day 14 + (9 - 6) = 17
    day, card, y = rows((9, "C", 1), (15, "C", 0), (16, "C", 0), (17, "C", 0), (19, "C", 0))
    split = fold_split(day, card, y, train_start_day=0)
    # THEN it stays in the test days before, and leaves from then on
    assert day[split.test].tolist() == [15, 16]


def test_card_precision_removes_detected_cards_and_divides_by_k() -> None:
    # day 14: A (fraud) and B (fraud) ranked first and third with k=2 → A detected, B not
    # day 15: A is gone (detected), B (still compromised, not detected) stays and is found
    day = np.array([14, 14, 14, 15, 15, 15])
    card = np.array(["A", "X", "B", "A", "B", "X"])
    y = np.array([1, 0, 1, 1, 1, 0])
    score = np.array([0.9, 0.8, 0.1, 0.95, 0.7, 0.2])
    mean, per_day = card_precision_at_k(day, card, y, score, k=2)
    assert per_day == [0.5, 0.5]  # day 15's top 2 = B, X (A removed): 1 fraud / k
    assert mean == 0.5
    # precision is frauds / k even when fewer than k cards remain
    assert card_precision_at_k(np.array([14]), np.array(["A"]), np.array([1]), np.array([0.5]), k=100)[1] == [
        0.01
    ]


def test_folds_go_back_a_week_and_validation_ends_where_testing_begins() -> None:
    tests, validations = fold_starts(0, 182, baseline_day=115)
    assert tests == [115, 108, 101, 94]
    assert validations == [101, 94, 87, 80]
    with pytest.raises(ProtocolError, match="days of data"):
        fold_starts(0, 40, baseline_day=None)


def test_data_without_the_needed_columns_is_refused_by_name() -> None:
    with pytest.raises(ProtocolError, match=r"lacks the columns \['terminal_id'\]"):
        load(
            pd.DataFrame(
                {
                    "transaction_id": [1],
                    "tx_datetime": ["2018-04-01"],
                    "customer_id": [1],
                    "amount": [1.0],
                    "is_fraud": [0],
                }
            )
        )


def test_review_band_stays_within_the_daily_budget() -> None:
    rng = np.random.default_rng(0)
    day = np.repeat(np.arange(7), 1000)
    card = rng.integers(0, 500, size=day.size)
    scores = rng.random(day.size)
    y = (scores > 0.995).astype(np.int64)
    bands = alert_budget_thresholds(day, card, y, scores, review_cards_per_day=20, decline_precision=0.9)
    flagged = pd.DataFrame({"day": day, "card": card, "s": scores}).groupby(["day", "card"])["s"].max()
    assert (flagged >= bands["review"]).sum() / 7 <= 20
    assert bands["expected_review_cards_per_day"] <= 20
    assert bands["review"] <= bands["decline"] <= 1.0


def test_review_band_is_a_valid_threshold_when_more_cards_than_the_budget_score_one() -> None:
    # GIVEN a validation week where 30 cards a day score exactly 1.0 and the budget is 20
    day = np.repeat(np.arange(7), 100)
    card = np.tile(np.arange(100), 7)
    scores = np.where(card < 30, 1.0, 0.1)
    y = (card < 30).astype(np.int64)
    bands = alert_budget_thresholds(day, card, y, scores, review_cards_per_day=20, decline_precision=0.9)
    # THEN the bands stay scores (1.0 at most: the strictest there is), and the expected volume
    # says the budget is exceeded, so training can warn
    assert bands["review"] == bands["decline"] == 1.0
    assert bands["expected_review_cards_per_day"] == 30
