"""Honest evaluation: thresholds chosen on validation only, metrics on the untouched test part."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
from sklearn.metrics import (
    average_precision_score,
    classification_report,
    confusion_matrix,
    precision_recall_curve,
    precision_recall_fscore_support,
    roc_auc_score,
    roc_curve,
)

from fraud_core.manifest import Thresholds

Scores = npt.NDArray[np.float64]
Labels = npt.NDArray[np.int64]


@dataclass(frozen=True)
class ThresholdChoice:
    thresholds: Thresholds
    warning: str | None = None


def choose_thresholds(
    y: Labels, scores: Scores, *, target_precision: float | None = None, review_recall: float = 0.9
) -> ThresholdChoice:
    """Pick decision bands on validation data.

    decline: the threshold maximising F1, or the lowest threshold whose precision reaches
    ``target_precision``. review: the highest threshold still catching ``review_recall`` of the
    frauds, never above decline (the review band is then empty).
    """
    precision, recall, thresholds = precision_recall_curve(y, scores)
    # precision/recall have one more entry than thresholds (the "predict nothing" end point)
    precision, recall = precision[:-1], recall[:-1]
    warning = None
    if target_precision is not None:
        meets = np.flatnonzero(precision >= target_precision)
        if meets.size:
            idx = int(meets[0])
            rule = f"decline: lowest threshold with validation precision >= {target_precision}"
        else:
            warning = f"no threshold reaches precision {target_precision} on validation; using max F1"
            target_precision = None
    if target_precision is None:
        f1 = np.divide(
            2 * precision * recall,
            precision + recall,
            out=np.zeros_like(precision),
            where=(precision + recall) > 0,
        )
        idx = int(np.argmax(f1))
        rule = "decline: max F1 on validation"
    decline = _midpoint(thresholds, idx)
    reaches = np.flatnonzero(recall >= review_recall)
    review = min(_midpoint(thresholds, int(reaches[-1]) if reaches.size else 0), decline)
    rule += f"; review: highest threshold with validation recall >= {review_recall}"
    return ThresholdChoice(Thresholds(review=review, decline=decline, rule=rule), warning)


def _midpoint(thresholds: Scores, idx: int) -> float:
    """Halfway between the chosen score and the next lower one (or zero): the same decisions on
    validation, with a margin so float32-vs-float64 rounding cannot flip rows that share a score
    exactly on the threshold (tree models give thousands of rows the same score)."""
    lower = float(thresholds[idx - 1]) if idx > 0 else 0.0
    return (lower + float(thresholds[idx])) / 2


def evaluate(y: Labels, scores: Scores, thresholds: Thresholds) -> dict[str, Any]:
    """Metrics of one part at the chosen thresholds (fraud class = 1)."""
    declined = scores >= thresholds.decline
    flagged = scores >= thresholds.review
    p, r, f1, _ = precision_recall_fscore_support(y, declined.astype(int), average="binary", zero_division=0)
    tn, fp, fn, tp = confusion_matrix(y, declined.astype(int), labels=[0, 1]).ravel()
    return {
        "rows": len(y),
        "frauds": int(y.sum()),
        "average_precision": float(average_precision_score(y, scores)),
        "roc_auc": float(roc_auc_score(y, scores)),
        "precision": float(p),
        "recall": float(r),
        "f1": float(f1),
        "confusion_matrix": {"tn": int(tn), "fp": int(fp), "fn": int(fn), "tp": int(tp)},
        "flagged_rate": float(flagged.mean()),
        "flagged_recall": float(flagged[y == 1].mean()) if y.sum() else 0.0,
    }


def text_report(y: Labels, scores: Scores, thresholds: Thresholds) -> str:
    """sklearn's classification report at the decline threshold, as the classic notebook prints it."""
    return str(
        classification_report(y, (scores >= thresholds.decline).astype(int), digits=4, zero_division=0)
    )


def save_curves(y: Labels, scores: Scores, out_dir: Path, *, title: str) -> list[Path]:
    """Write ``pr_curve.png`` and ``roc_curve.png``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    precision, recall, _ = precision_recall_curve(y, scores)
    fpr, tpr, _ = roc_curve(y, scores)
    paths = []
    fig, ax = plt.subplots(figsize=(5.5, 4.5))
    ax.plot(recall, precision, lw=2, label=f"AP = {average_precision_score(y, scores):.4f}")
    ax.axhline(y.mean(), ls="--", c="grey", label=f"chance = {y.mean():.4f}")
    ax.set(
        xlabel="recall",
        ylabel="precision",
        title=f"Precision-recall — {title}",
        xlim=(0, 1),
        ylim=(0, 1.02),
    )
    ax.legend(loc="lower left")
    fig.tight_layout()
    paths.append(out_dir / "pr_curve.png")
    fig.savefig(paths[-1], dpi=110)
    plt.close(fig)
    fig, ax = plt.subplots(figsize=(5.5, 4.5))
    ax.plot(fpr, tpr, lw=2, label=f"ROC AUC = {roc_auc_score(y, scores):.4f}")
    ax.plot([0, 1], [0, 1], ls="--", c="grey")
    ax.set(xlabel="false positive rate", ylabel="true positive rate", title=f"ROC — {title}")
    ax.legend(loc="lower right")
    fig.tight_layout()
    paths.append(out_dir / "roc_curve.png")
    fig.savefig(paths[-1], dpi=110)
    plt.close(fig)
    return paths
