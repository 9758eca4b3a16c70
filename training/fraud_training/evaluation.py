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


@dataclass(frozen=True)
class OperatingPoint:
    """Where one decision threshold puts the model: what it flags at or above ``threshold``."""

    name: str
    """``review`` or ``decline``."""
    threshold: float
    precision: float
    """Share of frauds among flagged rows (NaN when nothing is flagged)."""
    recall: float
    fpr: float
    """Share of legitimate rows flagged."""

    @property
    def label(self) -> str:
        return f"{self.name} ≥ {self.threshold:.4g}: precision {self.precision:.3f}, recall {self.recall:.3f}"


def operating_points(y: Labels, scores: Scores, thresholds: Thresholds) -> list[OperatingPoint]:
    """Precision, recall and false-positive rate at the review and decline thresholds."""
    y = np.asarray(y)
    positives, negatives = int((y == 1).sum()), int((y == 0).sum())
    points = []
    for name, t in (("review", thresholds.review), ("decline", thresholds.decline)):
        flagged = scores >= t
        tp, fp = int((flagged & (y == 1)).sum()), int((flagged & (y == 0)).sum())
        points.append(
            OperatingPoint(
                name,
                t,
                precision=tp / (tp + fp) if tp + fp else float("nan"),
                recall=tp / positives if positives else 0.0,
                fpr=fp / negatives if negatives else 0.0,
            )
        )
    return points


_POINT_STYLE = {"review": ("o", "tab:orange"), "decline": ("s", "tab:red")}


def pr_figure(y: Labels, scores: Scores, *, title: str, points: list[OperatingPoint]) -> Any:
    """Precision-recall curve with the operating points of the decision thresholds marked."""
    from matplotlib.figure import Figure

    precision, recall, _ = precision_recall_curve(y, scores)
    fig = Figure(figsize=(6, 4.8))
    ax = fig.subplots()
    ax.plot(recall, precision, lw=2, label=f"AP = {average_precision_score(y, scores):.4f}")
    ax.axhline(float(np.mean(y)), ls="--", c="grey", label=f"chance = {np.mean(y):.4f}")
    for point in points:
        if np.isnan(point.precision):
            continue
        marker, colour = _POINT_STYLE.get(point.name, ("D", "black"))
        ax.plot(point.recall, point.precision, marker, ms=8, c=colour, label=point.label, zorder=3)
    ax.set(
        xlabel="recall",
        ylabel="precision",
        title=f"Precision-recall — {title}",
        xlim=(0, 1),
        ylim=(0, 1.02),
    )
    ax.legend(loc="lower left", fontsize="small")
    fig.tight_layout()
    return fig


def roc_figure(
    y: Labels, scores: Scores, *, title: str, points: list[OperatingPoint], log_fpr: bool = False
) -> Any:
    """ROC curve; with ``log_fpr`` the false-positive axis is logarithmic, which shows the region
    below 1 % FPR where a fraud system operates (on a linear axis it is a sliver at the left)."""
    from matplotlib.figure import Figure

    fpr, tpr, _ = roc_curve(y, scores)
    fig = Figure(figsize=(6, 4.8))
    ax = fig.subplots()
    floor = 0.5 / max(int((np.asarray(y) == 0).sum()), 1)
    if log_fpr:
        # log(0) is undefined: rows at FPR 0 are drawn at half of the smallest possible FPR.
        fpr = np.maximum(fpr, floor)
        chance = np.logspace(np.log10(floor), 0, 50)
        ax.set_xscale("log")
    else:
        chance = np.array([0.0, 1.0])
    ax.plot(fpr, tpr, lw=2, label=f"ROC AUC = {roc_auc_score(y, scores):.4f}")
    ax.plot(chance, chance, ls="--", c="grey")
    for point in points:
        marker, colour = _POINT_STYLE.get(point.name, ("D", "black"))
        ax.plot(
            max(point.fpr, floor) if log_fpr else point.fpr,
            point.recall,
            marker,
            ms=8,
            c=colour,
            label=f"{point.name} ≥ {point.threshold:.4g}: FPR {point.fpr:.2e}, TPR {point.recall:.3f}",
            zorder=3,
        )
    ax.set(
        xlabel="false positive rate" + (" (log scale)" if log_fpr else ""),
        ylabel="true positive rate (recall)",
        title=f"ROC{' (log FPR)' if log_fpr else ''} — {title}",
        xlim=(floor, 1) if log_fpr else (0, 1),
        ylim=(0, 1.02),
    )
    for level in (1e-3, 1e-2) if log_fpr else ():
        if level > floor:
            ax.axvline(level, ls=":", c="grey", lw=1)
            # beside the guide, low: the curve is above it there and the legend sits to the right
            ax.text(level, 0.25, f"{level:.1%} FPR ", fontsize="small", c="grey", rotation=90, ha="right")
    ax.legend(loc="lower right", fontsize="small")
    fig.tight_layout()
    return fig


CURVE_FILES = ("pr_curve.png", "roc_curve.png", "roc_curve_log.png")


def save_curves(
    y: Labels, scores: Scores, out_dir: Path, *, title: str, thresholds: Thresholds | None = None
) -> list[Path]:
    """Write ``pr_curve.png``, ``roc_curve.png`` and ``roc_curve_log.png``, the operating points
    of ``thresholds`` marked on each."""
    points = operating_points(y, scores, thresholds) if thresholds is not None else []
    figures = (
        pr_figure(y, scores, title=title, points=points),
        roc_figure(y, scores, title=title, points=points),
        roc_figure(y, scores, title=title, points=points, log_fpr=True),
    )
    paths = []
    for name, fig in zip(CURVE_FILES, figures, strict=True):
        paths.append(out_dir / name)
        fig.savefig(paths[-1], dpi=110)
    return paths
