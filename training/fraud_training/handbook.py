"""The evaluation protocol of the *Fraud Detection Handbook* (Le Borgne et al., ch. 3-5), exactly.

* A fold trains on ``DELTA_TRAIN`` days, leaves ``DELTA_DELAY`` days for labels to arrive, and tests
  on the next ``DELTA_TEST`` days.
* Its test set drops every card with a fraud in the training week and, on test day ``d``, also
  every card with a fraud on a delay day up to ``d - 1`` (the labels known by then): those cards
  are already known compromised, so flagging them again is no detection. AUC, AP and CP@k are all
  computed on that filtered test set.
* Card Precision@k, per test day: each remaining card's highest score and label, the ``k`` cards
  with the highest scores, the share of them truly compromised (frauds / k); cards *detected*
  (compromised and in the top k) on earlier test days leave the later days. The mean over days.
* Folds: the baseline fold trains from 2018-07-25 on the Handbook's default dataset; test folds
  go back one week at a time (4 in all); validation folds for model selection are the same
  folds ``DELTA_DELAY + DELTA_TEST`` days earlier, so validation ends where testing begins.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import pandas as pd

from fraud_core.errors import FraudCoreError

DELTA_TRAIN = DELTA_DELAY = DELTA_TEST = 7
FOLDS = 4
BASELINE_TRAIN_START = pd.Timestamp("2018-07-25")
"""The Handbook's baseline training start on its default dataset (which starts 2018-04-01)."""
K = 100


class ProtocolError(FraudCoreError, ValueError):
    """The data cannot be evaluated with the protocol (missing columns, too few days, no fraud)."""


@dataclass(frozen=True)
class FoldSplit:
    """Row masks of one fold, over the rows of the evaluated frame."""

    train_start_day: int
    train: npt.NDArray[np.bool_]
    test: npt.NDArray[np.bool_]


def fold_split(
    day: npt.NDArray[np.int64], card: npt.NDArray[np.int64], y: npt.NDArray[np.int64], *, train_start_day: int
) -> FoldSplit:
    """Training rows and the *filtered* test rows of the fold training from ``train_start_day``."""
    s = train_start_day
    train = (day >= s) & (day < s + DELTA_TRAIN)
    known = set(card[train & (y == 1)].tolist())
    test = np.zeros(len(day), dtype=bool)
    for d in range(DELTA_TEST):
        # labels of the delay period arrive one day at a time: on test day d, those of day s+7+d-1
        known |= set(card[(day == s + DELTA_TRAIN + d - 1) & (y == 1)].tolist())
        today = day == s + DELTA_TRAIN + DELTA_DELAY + d
        test |= today & ~np.isin(card, list(known))
    return FoldSplit(s, train, test)


def card_precision_at_k(
    day: npt.NDArray[np.int64],
    card: npt.NDArray[np.int64],
    y: npt.NDArray[np.int64],
    score: npt.NDArray[np.float64],
    *,
    k: int = K,
) -> tuple[float, list[float]]:
    """(mean over days, per-day values) of the Handbook's Card Precision@k on test rows."""
    frame = pd.DataFrame({"day": day, "card": card, "y": y, "score": score})
    detected: set[int] = set()
    per_day = []
    for d in sorted(frame["day"].unique()):
        today = frame[(frame["day"] == d) & ~frame["card"].isin(list(detected))]
        per_card = today.groupby("card").agg(score=("score", "max"), y=("y", "max"))
        top = per_card.sort_values("score", ascending=False, kind="stable").head(k)
        found = top.index[top["y"] == 1].tolist()
        per_day.append(len(found) / k)
        detected |= set(found)
    return float(np.mean(per_day)) if per_day else 0.0, per_day


def fold_starts(first_day: int, last_day: int, *, baseline_day: int | None) -> tuple[list[int], list[int]]:
    """(test fold training starts, validation fold training starts), newest first.

    ``baseline_day`` is the baseline fold's training start (the Handbook's 2018-07-25 on its
    dataset); None puts the newest test fold at the end of the data.
    """
    span = DELTA_TRAIN + DELTA_DELAY + DELTA_TEST
    newest = baseline_day if baseline_day is not None else last_day - span + 1
    test = [newest - f * DELTA_TEST for f in range(FOLDS)]
    validation = [t - (DELTA_DELAY + DELTA_TEST) for t in test]
    if validation[-1] < first_day or test[0] + span - 1 > last_day:
        need = span + (FOLDS - 1) * DELTA_TEST + DELTA_DELAY + DELTA_TEST
        raise ProtocolError(
            f"the protocol needs {need} days of data around the test folds (4 test weeks, 4 validation "
            f"weeks, training and delay); the data has days {first_day}..{last_day}"
        )
    return test, validation
