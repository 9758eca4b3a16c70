"""The one definition of the Kaggle schema's model features, shared by training and serving.

Training passes whole columns from a DataFrame, serving passes columns parsed from JSON
transactions; both go through :func:`features_from_raw`, so the two cannot drift apart.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt

from fraud_core.shapes.base import FeatureMatrix
from fraud_core.shapes.kaggle.fields import PCA_FIELDS, RAW_FIELDS

SECONDS_PER_DAY = 86_400.0


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


class Columns(Protocol):
    """Anything indexable by field name: a dict of arrays or lists, a pandas DataFrame."""

    def __getitem__(self, key: str, /) -> Any: ...


def build_feature_matrix(columns: Columns) -> FeatureMatrix:
    """Features from raw columns: ``columns`` maps every name of :data:`RAW_FIELDS` to a 1-D
    array of equal length (a pandas DataFrame works as is). Training enters here."""
    raw = np.column_stack([np.asarray(columns[f], dtype=np.float64) for f in RAW_FIELDS])
    return features_from_raw(raw)


PCA_SLICE = slice(RAW_FIELDS.index("V1"), RAW_FIELDS.index("V28") + 1)
AMOUNT = RAW_FIELDS.index("Amount")
TIME = RAW_FIELDS.index("Time")


def features_from_raw(raw: npt.NDArray[np.float64]) -> FeatureMatrix:
    """The ``(n, len(FEATURE_NAMES))`` float32 model input from an ``(n, len(RAW_FIELDS))`` matrix.

    The single implementation of :data:`FEATURES`: serving calls it on parsed JSON, training
    through :func:`build_feature_matrix`. float32 is the model's input type in both sklearn and
    ONNX, so the two runtimes compare identical numbers.
    """
    out = np.empty((raw.shape[0], len(FEATURE_NAMES)), dtype=np.float32)
    out[:, : len(PCA_FIELDS)] = raw[:, PCA_SLICE]
    out[:, len(PCA_FIELDS)] = raw[:, AMOUNT]
    out[:, len(PCA_FIELDS) + 1] = np.mod(raw[:, TIME], SECONDS_PER_DAY) / 3600.0
    return out
