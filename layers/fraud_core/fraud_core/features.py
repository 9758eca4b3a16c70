"""The one definition of the model's features, shared by training (pandas columns) and serving.

Training passes whole columns from a DataFrame, serving passes columns parsed from JSON
transactions; both go through :func:`build_feature_matrix`, so the two cannot drift apart.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

PCA_FIELDS: tuple[str, ...] = tuple(f"V{i}" for i in range(1, 29))
"""The anonymised PCA components of the Kaggle file."""

RAW_FIELDS: tuple[str, ...] = ("Time", "Amount", *PCA_FIELDS)
"""Fields of one transaction in the Kaggle raw schema (``Class`` is the label, never an input)."""

PRESCALED_FIELDS: tuple[str, ...] = (*PCA_FIELDS, "scaled_amount", "scaled_time")
"""Fields of the classic pre-scaled ``/predict`` payload."""

LABEL_FIELD = "Class"
SECONDS_PER_DAY = 86_400.0

FeatureMatrix = npt.NDArray[np.float32]


@dataclass(frozen=True, slots=True)
class FeatureDefinition:
    """A named model input and the raw fields it is computed from."""

    name: str
    sources: tuple[str, ...]
    description: str


# Raw `Time` (seconds since the first transaction of the file) is deliberately not a feature:
# under a time-ordered split every test value lies beyond the training range, so a model can
# only learn "late = different". The time of day is stable and carries the day/night signal.
FEATURES: tuple[FeatureDefinition, ...] = (
    *(FeatureDefinition(v, (v,), "anonymised PCA component") for v in PCA_FIELDS),
    FeatureDefinition("Amount", ("Amount",), "transaction amount"),
    FeatureDefinition("hour_of_day", ("Time",), "hour of day derived from Time, in [0, 24)"),
)
FEATURE_NAMES: tuple[str, ...] = tuple(f.name for f in FEATURES)


def build_feature_matrix(columns: Mapping[str, npt.ArrayLike]) -> FeatureMatrix:
    """Return the ``(n, len(FEATURE_NAMES))`` float32 model input built from raw columns.

    ``columns`` maps every name of :data:`RAW_FIELDS` to a 1-D array of equal length
    (a pandas DataFrame works as is). float32 is the model's input type in both sklearn and
    ONNX, so the two runtimes compare identical numbers.
    """
    time = np.asarray(columns["Time"], dtype=np.float64)
    out = np.empty((time.shape[0], len(FEATURE_NAMES)), dtype=np.float32)
    for j, name in enumerate(PCA_FIELDS):
        out[:, j] = np.asarray(columns[name], dtype=np.float64)
    out[:, len(PCA_FIELDS)] = np.asarray(columns["Amount"], dtype=np.float64)
    out[:, len(PCA_FIELDS) + 1] = np.mod(time, SECONDS_PER_DAY) / 3600.0
    return out


def missing_features(model_features: list[str] | tuple[str, ...]) -> list[str]:
    """Names a model expects that this definition cannot build (empty when compatible)."""
    order_ok = tuple(model_features) == FEATURE_NAMES
    if order_ok:
        return []
    unknown = [f for f in model_features if f not in FEATURE_NAMES]
    return unknown or ["<feature order differs from fraud_core.features.FEATURE_NAMES>"]
