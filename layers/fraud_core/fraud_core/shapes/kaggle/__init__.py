"""The Kaggle *Credit Card Fraud Detection* shape: PCA components, Amount, Time; stateless features."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

from pydantic import BaseModel

from fraud_core.constraints import fingerprint
from fraud_core.manifest import ModelManifest
from fraud_core.shapes.base import DataShape, Prepared
from fraud_core.shapes.kaggle.features import (
    AMOUNT,
    FEATURE_NAMES,
    SECONDS_PER_DAY,
    TIME,
    build_feature_matrix,
    features_from_raw,
)
from fraud_core.shapes.kaggle.fields import (
    LABEL_FIELD,
    PCA_FIELDS,
    PRESCALED_FIELDS,
    RAW_FIELDS,
    PredictRequest,
    ScoreRequest,
)
from fraud_core.shapes.kaggle.parsing import parse_transactions

__all__ = [
    "FEATURE_NAMES",
    "KAGGLE",
    "LABEL_FIELD",
    "PCA_FIELDS",
    "PRESCALED_FIELDS",
    "RAW_FIELDS",
    "SECONDS_PER_DAY",
    "KaggleShape",
    "PredictRequest",
    "ScoreRequest",
    "build_feature_matrix",
]


class KaggleShape(DataShape):
    """Features come from the transaction alone; the stream's card counters are context, not inputs."""

    name: ClassVar[str] = "kaggle"
    feature_names: ClassVar[tuple[str, ...]] = FEATURE_NAMES
    clock_features: ClassVar[tuple[str, ...]] = ("hour_of_day",)
    request_model: ClassVar[type[BaseModel]] = ScoreRequest

    def prepare(
        self,
        payloads: Sequence[Any],
        *,
        manifest: ModelManifest,
        online: Any,
        observe: bool,
        auto_ids: Sequence[str] | None = None,
    ) -> Prepared:
        parsed = parse_transactions(payloads, scaling=manifest.raw_scaling)
        ids = parsed.transaction_ids
        if auto_ids is not None:
            ids = [t if t is not None else auto_ids[p] for t, p in zip(ids, parsed.positions, strict=True)]
        return Prepared(
            features=features_from_raw(parsed.raw),
            positions=parsed.positions,
            transaction_ids=ids,
            card_ids=parsed.card_ids,
            amounts=parsed.raw[:, AMOUNT].tolist(),
            event_times=parsed.raw[:, TIME].tolist(),
            fingerprints=[
                fingerprint(row.tobytes(), (card or "").encode())
                for row, card in zip(parsed.raw, parsed.card_ids, strict=True)
            ],
            errors=parsed.errors,
        )


KAGGLE = KaggleShape()
