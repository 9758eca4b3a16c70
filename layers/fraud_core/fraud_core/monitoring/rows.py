"""The scoring and label logs as arrays: one row per transaction (redeliveries and duplicates
counted, not doubled), the latest label of each, the shadow challenger's score where logged."""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

ALERTS = ("review", "decline")
ENTITY_FIELDS = ("card_id", "terminal_id")


@dataclass
class Scored:
    """The scoring log of the period, one row per transaction, as arrays."""

    ids: npt.NDArray[np.str_]
    event_time: npt.NDArray[np.float64]
    card: npt.NDArray[np.str_]
    score: npt.NDArray[np.float64]
    alert: npt.NDArray[np.bool_]
    decision: npt.NDArray[np.str_]
    features: npt.NDArray[np.float64]
    """Columns in the manifest's feature order; NaN where a row lacks one."""
    entities: dict[str, npt.NDArray[np.str_]] = field(default_factory=dict)
    """Entity ids per row (``card_id``, ``terminal_id``): the sample size of per-entity features."""
    challenger: npt.NDArray[np.float64] = field(default_factory=lambda: np.empty(0))
    """The shadow challenger's score per row (NaN where it was not scored)."""


def scored_rows(
    rows: Iterable[dict[str, Any]],
    names: list[str],
    version: str | None,
    counts: dict[str, int],
    *,
    challenger: str | None = None,
) -> Scored:
    by_id: dict[str, dict[str, Any]] = {}
    for row in rows:
        tid = row.get("transaction_id")
        numbers = (row.get("fraud_score"), row.get("event_time"))
        if not isinstance(tid, str) or not all(
            isinstance(v, int | float) and math.isfinite(v) for v in numbers
        ):
            counts["malformed_rows"] += 1
            continue
        if version is not None and row.get("model_version") != version:
            counts["other_model_versions"] += 1
            continue
        if tid in by_id:
            counts["duplicate_rows"] += 1
            if row.get("scored_at", math.inf) >= by_id[tid].get("scored_at", math.inf):
                continue
        by_id[tid] = row
    kept = list(by_id.values())
    nan = float("nan")

    def feature(row: dict[str, Any], name: str) -> float:
        value = (row.get("features") or {}).get(name, nan)
        return float(value) if isinstance(value, int | float) else nan

    return Scored(
        ids=np.array([r["transaction_id"] for r in kept], dtype=str),
        event_time=np.array([float(r["event_time"]) for r in kept]),
        card=np.array([str(r.get("card_id") or "") for r in kept], dtype=str),
        score=np.array([float(r["fraud_score"]) for r in kept]),
        alert=np.array([r.get("decision") in ALERTS for r in kept], dtype=bool),
        decision=np.array([str(r.get("decision")) for r in kept], dtype=str),
        # the log keeps each float32 input in its shortest decimal form: back onto the model's grid
        features=np.array([[feature(r, n) for n in names] for r in kept], dtype=np.float32)
        .astype(np.float64)
        .reshape(len(kept), len(names)),
        entities={key: np.array([str(r.get(key) or "") for r in kept], dtype=str) for key in ENTITY_FIELDS},
        challenger=np.array([_shadow_score(r, challenger) for r in kept], dtype=np.float64),
    )


def _shadow_score(row: dict[str, Any], version: str | None) -> float:
    shadow = row.get("challenger")
    if version is None or not isinstance(shadow, dict) or shadow.get("model_version") != version:
        return float("nan")
    value = shadow.get("fraud_score")
    return float(value) if isinstance(value, int | float) else float("nan")


def labels_by_id(rows: Iterable[dict[str, Any]], counts: dict[str, int]) -> dict[str, bool]:
    """The latest label of each transaction (by arrival); duplicates and malformed rows counted."""
    latest: dict[str, tuple[float, bool]] = {}
    for row in rows:
        tid, fraud = row.get("transaction_id"), row.get("is_fraud")
        if not isinstance(tid, str) or not isinstance(fraud, bool | int):
            counts["malformed_labels"] += 1
            continue
        at = float(row.get("received_at") or 0.0)
        if tid in latest:
            counts["duplicate_labels"] += 1
            if at < latest[tid][0]:
                continue
        latest[tid] = (at, bool(fraud))
    return {tid: fraud for tid, (_, fraud) in latest.items()}
