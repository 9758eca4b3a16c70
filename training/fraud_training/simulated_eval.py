"""Model selection and test on simulated card transactions, with the Handbook's protocol.

Candidates are chosen by their mean average precision over the validation folds only (an
average, which costs its members' sum to serve, only when it is better beyond the noise); the test
folds are touched once, for the baseline rows and the selected model. CP@100 is reported with its
two ceilings on the same test sets: a perfect ranking, and a ranking perfect only for the frauds
detectable from what is known at scoring time.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence, Set
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd
from sklearn.ensemble import (
    ExtraTreesClassifier,
    HistGradientBoostingClassifier,
    RandomForestClassifier,
    VotingClassifier,
)
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import average_precision_score, roc_auc_score
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

from fraud_core.shapes.simulated.features import (
    BASELINE_FEATURE_NAMES,
    NO_KNOWN_FRAUD_DAYS,
    SIMULATED_FEATURE_NAMES,
)
from fraud_training.entity_offline import entity_features
from fraud_training.handbook import (
    BASELINE_TRAIN_START,
    FoldSplit,
    K,
    ProtocolError,
    card_precision_at_k,
    fold_split,
    fold_starts,
)

REQUIRED_COLUMNS = ("transaction_id", "tx_datetime", "customer_id", "terminal_id", "amount", "is_fraud")
METRICS = ("roc_auc", "average_precision", "card_precision_at_100")


@dataclass(frozen=True)
class Candidate:
    """A model family, its parameters and the features it reads.

    Family ``average`` is the mean of its ``members``' probabilities (soft voting); the members read
    the average's features and the average has no parameters of its own.
    """

    name: str
    family: str
    params: dict[str, Any] = field(default_factory=dict)
    features: tuple[str, ...] = SIMULATED_FEATURE_NAMES
    baseline: bool = False
    members: tuple[Candidate, ...] = ()

    def __post_init__(self) -> None:
        if (self.family == "average") != bool(self.members):
            raise ValueError(f"{self.name}: members belong to (and only to) an average")
        if self.members and (self.params or any(m.features != self.features for m in self.members)):
            raise ValueError(f"{self.name}: an average takes no parameters; its members read its features")

    @property
    def model_type(self) -> str:
        """The manifest's model type: the family, and an average's member families."""
        if self.members:
            return f"average({', '.join(m.model_type for m in self.members)})"
        return self.family

    def describe(self) -> dict[str, Any]:
        """What the results record of the candidate."""
        entry: dict[str, Any] = {
            "family": self.family,
            "params": self.params,
            "features": list(self.features),
        }
        if self.members:
            entry["members"] = [
                {"name": m.name, "family": m.family, "params": m.params} for m in self.members
            ]
        return entry

    def make(self, seed: int) -> Any:
        if self.members:
            estimators = [(f"m{i}", m.make(seed)) for i, m in enumerate(self.members)]
            return VotingClassifier(estimators, voting="soft", flatten_transform=False)
        if self.family == "logreg":
            return Pipeline(
                [("scale", StandardScaler()), ("clf", LogisticRegression(max_iter=2000, **self.params))]
            )
        if self.family == "rf":
            forest = RandomForestClassifier(n_jobs=-1, random_state=seed, **self.params)
            # The Handbook scales every model's input; trees do not need it, so only its baseline does.
            return Pipeline([("scale", StandardScaler()), ("clf", forest)]) if self.baseline else forest
        if self.family == "et":
            return ExtraTreesClassifier(n_jobs=-1, random_state=seed, **self.params)
        if self.family == "hgb":
            return HistGradientBoostingClassifier(random_state=seed, **self.params)
        raise ValueError(f"unknown model family {self.family!r}")


BASELINES = (
    Candidate(
        "baseline logistic regression (C=1)", "logreg", {"C": 1.0}, BASELINE_FEATURE_NAMES, baseline=True
    ),
    Candidate("baseline random forest (sklearn defaults)", "rf", {}, BASELINE_FEATURE_NAMES, baseline=True),
)
_HALF_FEATURES = {"n_estimators": 300, "min_samples_leaf": 3, "max_features": 0.5}
_RF_HALF = Candidate("rf 300 trees, leaf 3, half the features", "rf", _HALF_FEATURES)
_ET_HALF = Candidate("extra trees 300, leaf 3, half the features", "et", dict(_HALF_FEATURES))
SEARCH = (
    Candidate("rf 300 trees, leaf 2", "rf", {"n_estimators": 300, "min_samples_leaf": 2}),
    _RF_HALF,
    _ET_HALF,
    Candidate(
        "hgb 300 rounds, 31 leaves",
        "hgb",
        {"max_iter": 300, "learning_rate": 0.05, "max_leaf_nodes": 31},
    ),
    Candidate("average of rf and extra trees (half the features)", "average", members=(_RF_HALF, _ET_HALF)),
)
"""The search space of model selection (features: all of the shape's)."""


@dataclass(frozen=True)
class Data:
    """The evaluated frame as arrays, with every feature computed once."""

    features: pd.DataFrame
    day: npt.NDArray[np.int64]
    card: npt.NDArray[np.int64]
    terminal: npt.NDArray[np.int64]
    y: npt.NDArray[np.int64]
    detectable: npt.NDArray[np.bool_] | None
    first_day: pd.Timestamp

    def matrix(self, names: Sequence[str]) -> npt.NDArray[np.float32]:
        return self.features[list(names)].to_numpy(np.float32)


def load(transactions: pd.DataFrame) -> Data:
    """Sorted transactions, their features, and (when the simulator's scenario column is there)
    which frauds were detectable from what is known at scoring time."""
    missing = [c for c in REQUIRED_COLUMNS if c not in transactions.columns]
    if missing:
        raise ProtocolError(
            f"the data lacks the columns {missing} (simulated transactions need {list(REQUIRED_COLUMNS)})"
        )
    frame = transactions.sort_values(["tx_datetime", "transaction_id"], kind="stable").reset_index(drop=True)
    stamps = pd.to_datetime(frame["tx_datetime"])
    first = stamps.min().normalize()
    features = entity_features(frame)
    y = frame["is_fraud"].to_numpy(np.int64)
    detectable = None
    if "fraud_scenario" in frame.columns:
        # A compromised terminal's frauds are indistinguishable until one of its frauds is known
        # (labels arrive after the delay): the rest of the frauds are detectable in principle.
        # The scenario column serves this diagnostic ceiling only, never a model.
        unknown_terminal = features["terminal_days_since_known_fraud"].to_numpy() >= NO_KNOWN_FRAUD_DAYS
        detectable = (y == 1) & ~((frame["fraud_scenario"].to_numpy() == 2) & unknown_terminal)
    return Data(
        features=features,
        day=np.asarray((stamps - first).dt.days, dtype=np.int64),
        card=frame["customer_id"].to_numpy(),
        terminal=frame["terminal_id"].to_numpy(),
        y=y,
        detectable=detectable,
        first_day=first,
    )


Fitted = dict[tuple[str, int], tuple[npt.NDArray[np.float64], float]]
"""Test-part scores and fit seconds of a candidate on a fold, by (name, train start day)."""


def _fit_scores(
    data: Data, candidate: Candidate, split: FoldSplit, fitted: Fitted, *, start: int, seed: int
) -> tuple[npt.NDArray[np.float64], float]:
    """The candidate's scores on the fold's test part and its fit time, fitted once per fold.

    An average's members are fitted as themselves (and reused when they are candidates too): the
    mean of their probabilities is what its soft-voting model predicts (pinned by a unit test)."""
    key = (candidate.name, start)
    if key not in fitted:
        if candidate.members:
            parts = [_fit_scores(data, m, split, fitted, start=start, seed=seed) for m in candidate.members]
            fitted[key] = (np.mean([p[0] for p in parts], axis=0), sum(p[1] for p in parts))
        else:
            X = data.matrix(candidate.features)
            model = candidate.make(seed)
            t0 = time.perf_counter()
            model.fit(X[split.train], data.y[split.train])
            fit = time.perf_counter() - t0
            fitted[key] = (model.predict_proba(X[split.test])[:, 1], fit)
    return fitted[key]


def _fold(data: Data, candidate: Candidate, fitted: Fitted, *, start: int, seed: int) -> dict[str, Any]:
    split = fold_split(data.day, data.card, data.y, train_start_day=start)
    y_train, y_test = data.y[split.train], data.y[split.test]
    if not y_train.any() or not y_test.any():
        raise ProtocolError(f"the fold training from day {start} has no fraud in its training or test part")
    scores, fit = _fit_scores(data, candidate, split, fitted, start=start, seed=seed)
    cp, per_day = card_precision_at_k(data.day[split.test], data.card[split.test], y_test, scores)
    return {
        "train_start": str((data.first_day + pd.Timedelta(days=start)).date()),
        "roc_auc": float(roc_auc_score(y_test, scores)),
        "average_precision": float(average_precision_score(y_test, scores)),
        "card_precision_at_100": cp,
        "card_precision_per_day": per_day,
        "fit_seconds": fit,
        "train_rows": int(split.train.sum()),
        "test_rows": int(split.test.sum()),
        "test_frauds": int(y_test.sum()),
    }


def _summary(folds: list[dict[str, Any]]) -> dict[str, Any]:
    return {m: (float(np.mean([f[m] for f in folds])), float(np.std([f[m] for f in folds]))) for m in METRICS}


def _ceilings(data: Data, starts: list[int]) -> dict[str, Any]:
    """CP@100 of a perfect ranking, and of one perfect only for the detectable frauds; the AP of
    the latter (the frauds a model could not tell apart are left at the bottom)."""
    if data.detectable is None:
        return {}
    perfect, detectable, ap = [], [], []
    for start in starts:
        split = fold_split(data.day, data.card, data.y, train_start_day=start)
        day, card, y = data.day[split.test], data.card[split.test], data.y[split.test]
        d = data.detectable[split.test].astype(np.float64)
        perfect.append(card_precision_at_k(day, card, y, y.astype(np.float64))[0])
        detectable.append(card_precision_at_k(day, card, y, d)[0])
        ap.append(float(average_precision_score(y, d)))
    return {
        "card_precision_at_100_perfect": (float(np.mean(perfect)), float(np.std(perfect))),
        "card_precision_at_100_detectable": (float(np.mean(detectable)), float(np.std(detectable))),
        "average_precision_detectable": (float(np.mean(ap)), float(np.std(ap))),
    }


def evaluate(
    transactions: pd.DataFrame,
    *,
    seed: int = 0,
    search: Sequence[Candidate] | None = None,
    baselines: Sequence[Candidate] = BASELINES,
    progress: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Baseline rows and model selection on validation folds (``search``, default :data:`SEARCH`),
    each tested on the 4 test folds."""
    search = SEARCH if search is None else search
    _require_unique_names([*search, *baselines])
    say = progress or (lambda _: None)
    t0 = time.perf_counter()
    data = load(transactions)
    feature_seconds = time.perf_counter() - t0
    baseline_day = (BASELINE_TRAIN_START - data.first_day).days
    last = int(data.day.max())
    covered = baseline_day >= 0 and baseline_day + 20 <= last
    tests, validations = fold_starts(0, last, baseline_day=baseline_day if covered else None)
    results: dict[str, Any] = {
        "protocol": "handbook",
        "folds": {"test": tests, "validation": validations},
        "test_train_starts": [str((data.first_day + pd.Timedelta(days=s)).date()) for s in tests],
        "feature_seconds": feature_seconds,
        "rows": len(data.y),
        "frauds": int(data.y.sum()),
        "ceilings": _ceilings(data, tests),
        "candidates": {},
    }
    fitted: Fitted = {}
    for candidate in search:
        say(f"validation: {candidate.name}")
        started = time.perf_counter()
        folds = [_fold(data, candidate, fitted, start=s, seed=seed) for s in validations]
        results["candidates"][candidate.name] = {
            **candidate.describe(),
            "validation": {**_summary(folds), "folds": folds, "seconds": time.perf_counter() - started},
        }
    selected, results["selection"] = select(
        {
            c.name: [f["average_precision"] for f in results["candidates"][c.name]["validation"]["folds"]]
            for c in search
        },
        averages={c.name for c in search if c.members},
    )
    results["selected"] = selected
    for candidate in [*baselines, *(c for c in search if c.name == selected)]:
        say(f"test: {candidate.name}")
        started = time.perf_counter()
        # A fold both validates and tests (the Handbook's folds overlap): its fit is reused.
        folds = [_fold(data, candidate, fitted, start=s, seed=seed) for s in tests]
        entry = results["candidates"].setdefault(candidate.name, candidate.describe())
        entry["baseline"] = candidate.baseline
        entry["test"] = {**_summary(folds), "folds": folds, "seconds": time.perf_counter() - started}
    return results


def select(validation: Mapping[str, Sequence[float]], *, averages: Set[str]) -> tuple[str, dict[str, Any]]:
    """The candidate to publish from its validation AP per fold (the same folds for every one).

    The best mean wins, except that an average costs the sum of its members to serve: it wins only
    when it beats the best single model by more than the standard error of their per-fold
    difference (paired, the same weeks); otherwise that single model does. Returns the name and
    what the choice rested on."""
    means = {name: float(np.mean(aps)) for name, aps in validation.items()}
    best = max(means, key=means.__getitem__)
    singles = [n for n in means if n not in averages]
    record: dict[str, Any] = {"best_validation_ap": best}
    if best not in averages or not singles:
        return best, record
    single = max(singles, key=means.__getitem__)
    diff = np.asarray(validation[best]) - np.asarray(validation[single])
    premium = float(diff.mean())
    error = float(diff.std(ddof=1) / np.sqrt(len(diff))) if len(diff) > 1 else 0.0
    record.update(best_single=single, average_premium=premium, premium_standard_error=error)
    return (best if premium > error else single), record


def _require_unique_names(candidates: Sequence[Candidate]) -> None:
    """Fits are shared by candidate name: one name must mean one candidate, members included."""
    seen: dict[str, Candidate] = {}
    pending = list(candidates)
    while pending:
        c = pending.pop()
        if seen.setdefault(c.name, c) != c:
            raise ValueError(f"two different candidates are named {c.name!r}")
        pending.extend(c.members)


def candidate_named(name: str) -> Candidate:
    return next(c for c in (*SEARCH, *BASELINES) if c.name == name)


def alert_budget_thresholds(
    day: npt.NDArray[np.int64],
    card: npt.NDArray[np.int64],
    y: npt.NDArray[np.int64],
    scores: npt.NDArray[np.float64],
    *,
    review_cards_per_day: int = K,
    decline_precision: float = 0.9,
) -> dict[str, Any]:
    """Decision bands a fraud team can work with, from validation scores of *all* transactions
    (the live traffic, not the filtered test set).

    review: the lowest threshold at which, on the average day, at most ``review_cards_per_day``
    cards have a transaction at or above it. decline: the lowest threshold whose validation
    precision reaches ``decline_precision`` (never below review); none (1.0) when unreachable.
    """
    frame = pd.DataFrame({"day": day, "card": card, "score": scores})
    per_day_cards = frame.groupby(["day", "card"])["score"].max().reset_index()
    days = per_day_cards["day"].nunique()
    card_max = np.sort(per_day_cards["score"].to_numpy())[::-1]
    # cards flagged per day at threshold t = (card-day maxima >= t) / days: just above the
    # (budget x days + 1)-th highest maximum, ties included, stays within the budget
    allowed = review_cards_per_day * days
    review = (
        float(card_max[-1]) if allowed >= len(card_max) else float(np.nextafter(card_max[allowed], np.inf))
    )
    # Scores live in [0, 1]: when more cards than the budget score 1.0, no threshold keeps within
    # it; 1.0 is the strictest band there is (training warns that it flags over the budget).
    review = min(review, 1.0)
    order = np.argsort(-scores, kind="stable")
    hits = np.cumsum(y[order])
    precision = hits / np.arange(1, len(y) + 1)
    meets = np.flatnonzero(precision >= decline_precision)
    warning = None
    if meets.size:
        decline = max(float(scores[order][meets[-1]]), review)
    else:
        decline = 1.0
        warning = f"no threshold reaches precision {decline_precision} on validation: nothing is declined"
    flagged = per_day_cards["score"] >= review
    return {
        "review": review,
        "decline": decline,
        "rule": f"review: at most {review_cards_per_day} cards a day on validation; "
        f"decline: validation precision >= {decline_precision}",
        "expected_review_cards_per_day": float(flagged.sum() / days),
        "expected_review_transactions_per_day": float((scores >= review).sum() / days),
        "expected_decline_transactions_per_day": float((scores >= decline).sum() / days),
        "warning": warning,
    }
