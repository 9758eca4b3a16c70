"""Evaluation on simulated (entity-keyed) data with the literature's protocol.

Train on 7 days, leave a 7-day gap for the label delay, test on the next 7 days; on each test day
drop cards already known compromised earlier in the test period; report ROC AUC, average
precision and Card Precision@100. Model selection: prequential validation, 4 folds shifted back
by one week.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from sklearn.metrics import average_precision_score, roc_auc_score

from fraud_core.shapes.simulated.features import SIMULATED_FEATURE_NAMES
from fraud_training.entity_offline import entity_features
from fraud_training.models import MODEL_NAMES, make_model

TRAIN_DAYS, DELAY_DAYS, TEST_DAYS, FOLDS = 7, 7, 7, 4


@dataclass(frozen=True)
class Prepared:
    X: np.ndarray
    y: np.ndarray
    day: np.ndarray
    customer: np.ndarray


def prepare(transactions: pd.DataFrame) -> Prepared:
    transactions = transactions.sort_values(["tx_datetime", "transaction_id"], kind="stable").reset_index(
        drop=True
    )
    features = entity_features(transactions)
    start = pd.to_datetime(transactions["tx_datetime"]).min().normalize()
    day = ((pd.to_datetime(transactions["tx_datetime"]) - start).dt.days).to_numpy()
    return Prepared(
        features.to_numpy(np.float32),
        transactions["is_fraud"].to_numpy(np.int64),
        day,
        transactions["customer_id"].to_numpy(),
    )


def card_precision_at_k(
    day: np.ndarray, customer: np.ndarray, y: np.ndarray, score: np.ndarray, *, k: int = 100
) -> float:
    """Mean over test days of the fraction of truly compromised cards among the top-k cards,
    after removing cards found compromised on earlier test days."""
    frame = pd.DataFrame({"day": day, "card": customer, "y": y, "score": score})
    known: set[Any] = set()
    precisions = []
    for d in sorted(frame["day"].unique()):
        today = frame[(frame["day"] == d) & ~frame["card"].isin(known)]
        per_card = today.groupby("card").agg(score=("score", "max"), fraud=("y", "max"))
        top = per_card.sort_values("score", ascending=False, kind="stable").head(k)
        precisions.append(float(top["fraud"].mean()) if len(top) else 0.0)
        known |= set(today.loc[today["y"] == 1, "card"])
    return float(np.mean(precisions))


def _period(p: Prepared, start: int) -> tuple[np.ndarray, np.ndarray]:
    train = (p.day >= start) & (p.day < start + TRAIN_DAYS)
    test = (p.day >= start + TRAIN_DAYS + DELAY_DAYS) & (p.day < start + TRAIN_DAYS + DELAY_DAYS + TEST_DAYS)
    return train, test


def _fit_score(name: str, p: Prepared, start: int, seed: int) -> dict[str, float]:
    train, test = _period(p, start)
    model = make_model(name, seed=seed)  # type: ignore[arg-type]
    t0 = time.perf_counter()
    model.fit(p.X[train], p.y[train])
    fit_s = time.perf_counter() - t0
    score = model.predict_proba(p.X[test])[:, 1]
    return {
        "roc_auc": float(roc_auc_score(p.y[test], score)),
        "average_precision": float(average_precision_score(p.y[test], score)),
        "card_precision_at_100": card_precision_at_k(p.day[test], p.customer[test], p.y[test], score),
        "fit_seconds": fit_s,
        "train_rows": int(train.sum()),
        "test_rows": int(test.sum()),
    }


def evaluate_models(
    transactions: pd.DataFrame,
    *,
    test_start_day: int | None = None,
    seed: int = 42,
    models: tuple[str, ...] = MODEL_NAMES,
) -> dict[str, Any]:
    """Prequential validation and the final test for each model type."""
    p = prepare(transactions)
    last_day = int(p.day.max())
    start = (
        test_start_day if test_start_day is not None else last_day - (TRAIN_DAYS + DELAY_DAYS + TEST_DAYS) + 1
    )
    if start - FOLDS * TEST_DAYS < 0:
        raise ValueError(
            f"need at least {FOLDS * TEST_DAYS + TRAIN_DAYS + DELAY_DAYS + TEST_DAYS} days of data"
        )
    results: dict[str, Any] = {
        "features": list(SIMULATED_FEATURE_NAMES),
        "train_start_day": start,
        "models": {},
    }
    for name in models:
        folds = [_fit_score(name, p, start - TEST_DAYS * (f + 1), seed) for f in range(FOLDS)]
        final = _fit_score(name, p, start, seed)
        results["models"][name] = {
            "validation": {
                m: (float(np.mean([f[m] for f in folds])), float(np.std([f[m] for f in folds])))
                for m in ("roc_auc", "average_precision", "card_precision_at_100")
            },
            "test": final,
        }
    best = max(results["models"], key=lambda m: results["models"][m]["validation"]["average_precision"][0])
    results["selected"] = best
    return results


def markdown_table(results: dict[str, Any], *, command: str, data: str) -> str:
    lines = [
        "# Evaluation on simulated card transactions",
        "",
        f"Data: {data} (SYNTHETIC: the transaction simulator of `fraud_training.simulator`).",
        f"Reproduce: `{command}`",
        "",
        f"Protocol: train {TRAIN_DAYS} days (from day {results['train_start_day']}), {DELAY_DAYS}-day gap, test {TEST_DAYS} days; "
        f"cards known compromised on earlier test days removed; model selection by prequential validation "
        f"({FOLDS} folds shifted by one week, mean ± std). Features: {', '.join(results['features'])}.",
        "",
        "| model | validation AUC | validation AP | validation CP@100 | test AUC | test AP | test CP@100 | fit s |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, r in results["models"].items():
        v, t = r["validation"], r["test"]
        mark = " (selected)" if name == results["selected"] else ""
        lines.append(
            f"| {name}{mark} | {v['roc_auc'][0]:.3f} ± {v['roc_auc'][1]:.3f} | {v['average_precision'][0]:.3f} ± {v['average_precision'][1]:.3f} "
            f"| {v['card_precision_at_100'][0]:.3f} ± {v['card_precision_at_100'][1]:.3f} | {t['roc_auc']:.3f} | "
            f"{t['average_precision']:.3f} | {t['card_precision_at_100']:.3f} | {t['fit_seconds']:.1f} |"
        )
    return "\n".join(lines) + "\n"


@dataclass(frozen=True)
class FinalModel:
    """The selected model fit on the final training window, with what publishing needs."""

    name: str
    model: Any
    X_train: np.ndarray
    X_test: np.ndarray
    validation_scores: np.ndarray
    validation_labels: np.ndarray


def fit_final(transactions: pd.DataFrame, name: str, *, start: int, seed: int) -> FinalModel:
    """Fit ``name`` on the final training window; validation = the fold just before (for thresholds)."""
    p = prepare(transactions)
    val_train, val_test = _period(p, start - TEST_DAYS)
    probe = make_model(name, seed=seed)  # type: ignore[arg-type]
    probe.fit(p.X[val_train], p.y[val_train])
    train, test = _period(p, start)
    model = make_model(name, seed=seed)  # type: ignore[arg-type]
    model.fit(p.X[train], p.y[train])
    return FinalModel(
        name, model, p.X[train], p.X[test], probe.predict_proba(p.X[val_test])[:, 1], p.y[val_test]
    )
