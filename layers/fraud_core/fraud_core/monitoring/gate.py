"""The promotion gate: champion and shadow challenger compared on the same label-complete days of
the scoring log (both scored the same transactions), with a bootstrap over days.

The challenger is promoted only if, on the primary metric (Card Precision@100 by default, AP on
request or for a shape without cards), the lower end of the bootstrap interval of
(challenger - champion), averaged over days, is above ``margin``; on the other metric it is not
worse beyond ``tolerance`` (the same resampled days: the lower end is above ``-tolerance``); and
it fits the latency and artifact-size budgets. Otherwise it stays in shadow and the decision says
why. Why two metrics: CP@100 is the Handbook's business metric, but when a day has fewer
compromised cards than 100 it saturates (every such card is in the top 100 whatever the model),
and then only AP, which ranks every transaction, can tell two models apart.
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

CP = f"card_precision_at_{K}"
AP = "average_precision"
METRICS = {"cp": CP, "ap": AP}


@dataclass(frozen=True)
class GateConfig:
    margin: float = 0.0
    """How much better (mean per-day difference, lower bootstrap bound) the challenger must be."""
    metric: str = CP
    """The primary metric, :data:`CP` or :data:`AP`; the other one is the guardrail."""
    tolerance: float = 0.02
    """How much worse on the guardrail metric (lower bootstrap bound) is still acceptable."""
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
    """The primary metric's per-day difference: mean and bootstrap interval."""
    guardrail: dict[str, Any] = field(default_factory=dict)
    passed: list[str] = field(default_factory=list)
    """The checks it passed (the reasons when it is promoted)."""
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
    metric = config.metric if len(card) and card.astype(bool).all() else AP
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
    per_day = {AP: (np.array(champion_ap), np.array(challenger_ap))}
    if champion_cp:
        per_day[CP] = (np.array(champion_cp), np.array(challenger_cp))
    rng = np.random.default_rng(config.seed)
    resampled = rng.integers(0, len(days), size=(config.bootstrap, len(days)))
    level = f"{config.confidence:.0%}"
    for name in sorted(per_day, key=lambda n: n != metric):  # the primary metric first
        old, new = per_day[name]
        diff = new - old
        means = diff[resampled].mean(axis=1)
        low, high = np.quantile(means, [(1 - config.confidence) / 2, (1 + config.confidence) / 2])
        decision.champion[name], decision.challenger[name] = float(old.mean()), float(new.mean())
        interval = {"mean": float(diff.mean()), "low": float(low), "high": float(high)}
        said = f"{name}: challenger - champion {diff.mean():+.4f} per day, {level} interval [{low:+.4f}, {high:+.4f}]"
        if name == metric:
            decision.difference = interval
            passed = low > config.margin
            judged = (
                f"clears the margin {config.margin}"
                if passed
                else f"does not clear the margin {config.margin}"
            )
        else:
            decision.guardrail = {"metric": name, **interval}
            passed = low >= -config.tolerance
            judged = f"{'within' if passed else 'beyond'} the tolerance -{config.tolerance}"
        (decision.passed if passed else decision.reasons).append(f"{said} {judged}")
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
        decision.reasons = decision.passed
    return decision
