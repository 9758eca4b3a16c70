"""The promotion gate: champion and shadow challenger compared on the same label-complete days of
the scoring log (both scored the same transactions), with a bootstrap over days.

The challenger is promoted only if, on Card Precision@100 (or AP for a shape without cards), the
lower end of the bootstrap interval of (challenger - champion), averaged over days, is above
``margin``, and it fits the latency and artifact-size budgets; otherwise it stays in shadow and
the decision says why.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from fraud_core.monitoring.job import DAY
from fraud_core.monitoring.metrics import K, average_precision, card_precision_at_k
from fraud_core.monitoring.rows import Scored


@dataclass(frozen=True)
class GateConfig:
    margin: float = 0.0
    """How much better (mean per-day difference, lower bootstrap bound) the challenger must be."""
    confidence: float = 0.9
    min_days: int = 7
    min_frauds: int = 20
    bootstrap: int = 2000
    seed: int = 0
    max_latency_ratio: float = 2.0
    """Challenger's scoring time over the champion's, on the same logged rows."""
    max_artifact_bytes: int = 50 * 1024 * 1024


@dataclass
class GateDecision:
    promote: bool
    reasons: list[str]
    metric: str
    days: list[str] = field(default_factory=list)
    champion: dict[str, float | None] = field(default_factory=dict)
    challenger: dict[str, float | None] = field(default_factory=dict)
    difference: dict[str, float] = field(default_factory=dict)
    budgets: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _per_day(
    day: npt.NDArray[np.int64],
    card: npt.NDArray[np.str_],
    y: npt.NDArray[np.int64],
    score: npt.NDArray[np.float64],
) -> tuple[list[float], list[float]]:
    """Per-day CP@100 (empty without cards) and AP (0 on a day without a fraud)."""
    cp = card_precision_at_k(day, card, y, score, k=K)[1] if card.astype(bool).all() else []
    ap = [average_precision(y[day == d], score[day == d]) or 0.0 for d in np.unique(day)]
    return cp, ap


def compare(
    data: Scored,
    labels: dict[str, bool],
    *,
    complete_before: float,
    config: GateConfig,
    latency_ratio: float | None = None,
    artifact_bytes: int | None = None,
) -> GateDecision:
    """The gate's decision from the logged rows both models scored, on event days that ended
    before ``complete_before`` (epoch seconds: the label delay has passed)."""
    both = np.isfinite(data.challenger) & (data.event_time < math.floor(complete_before / DAY) * DAY)
    day = np.floor(data.event_time[both] / DAY).astype(np.int64)
    y = np.array([labels.get(t, False) for t in data.ids[both]], dtype=np.int64)
    card = data.card[both]
    days = [str(np.datetime64(int(d), "D")) for d in np.unique(day)]
    metric = f"card_precision_at_{K}" if len(card) and card.astype(bool).all() else "average_precision"
    decision = GateDecision(promote=False, reasons=[], metric=metric, days=days)
    if len(days) < config.min_days:
        decision.reasons.append(
            f"{len(days)} label-complete days with shadow scores, fewer than the {config.min_days} required"
        )
    if int(y.sum()) < config.min_frauds:
        decision.reasons.append(
            f"{int(y.sum())} fraud labels on them, fewer than the {config.min_frauds} required"
        )
    if decision.reasons:
        return decision
    champion_cp, champion_ap = _per_day(day, card, y, data.score[both])
    challenger_cp, challenger_ap = _per_day(day, card, y, data.challenger[both])
    champion = np.array(champion_cp if metric != "average_precision" else champion_ap)
    challenger = np.array(challenger_cp if metric != "average_precision" else challenger_ap)
    diff = challenger - champion
    rng = np.random.default_rng(config.seed)
    means = diff[rng.integers(0, len(diff), size=(config.bootstrap, len(diff)))].mean(axis=1)
    low, high = np.quantile(means, [(1 - config.confidence) / 2, (1 + config.confidence) / 2])
    decision.champion = {metric: float(champion.mean()), "average_precision": float(np.mean(champion_ap))}
    decision.challenger = {
        metric: float(challenger.mean()),
        "average_precision": float(np.mean(challenger_ap)),
    }
    if champion_cp:
        decision.champion[f"card_precision_at_{K}"] = float(np.mean(champion_cp))
        decision.challenger[f"card_precision_at_{K}"] = float(np.mean(challenger_cp))
    decision.difference = {"mean": float(diff.mean()), "low": float(low), "high": float(high)}
    level = f"{config.confidence:.0%}"
    if low <= config.margin:
        decision.reasons.append(
            f"{metric}: challenger - champion {diff.mean():+.4f} per day, {level} interval "
            f"[{low:+.4f}, {high:+.4f}] does not clear the margin {config.margin}"
        )
    if latency_ratio is not None:
        decision.budgets["latency_ratio"] = latency_ratio
        if latency_ratio > config.max_latency_ratio:
            decision.reasons.append(
                f"scores {latency_ratio:.1f}x slower than the champion (budget {config.max_latency_ratio}x)"
            )
    if artifact_bytes is not None:
        decision.budgets["artifact_bytes"] = artifact_bytes
        if artifact_bytes > config.max_artifact_bytes:
            decision.reasons.append(
                f"model file {artifact_bytes / 1e6:.1f} MB over the {config.max_artifact_bytes / 1e6:.0f} MB budget"
            )
    decision.promote = not decision.reasons
    if decision.promote:
        decision.reasons.append(
            f"{metric}: challenger - champion {diff.mean():+.4f} per day, {level} interval "
            f"[{low:+.4f}, {high:+.4f}] clears the margin {config.margin}"
        )
    return decision
