"""Export a fitted sklearn model to ONNX and prove the export scores like the original."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import onnx.helper

from fraud_core.manifest import Thresholds
from fraud_core.model import OnnxModel
from fraud_core.scorer import decide
from fraud_core.shapes import FeatureMatrix

PARITY_TOLERANCE = 1e-5


@contextlib.contextmanager
def _bool_attributes_as_ints() -> Iterator[None]:
    """skl2onnx 1.20 passes Python/numpy booleans in integer-list attributes of tree ensembles,
    which onnx >= 1.20 rejects ("Expected an int, got a boolean"). Cast them while converting."""
    original = onnx.helper.make_attribute

    def make_attribute(key: str, value: Any, *args: Any, **kwargs: Any) -> Any:
        if isinstance(value, list | tuple) and any(isinstance(v, bool | np.bool_) for v in value):
            value = [int(v) for v in value]
        return original(key, value, *args, **kwargs)

    onnx.helper.make_attribute = make_attribute
    try:
        yield
    finally:
        onnx.helper.make_attribute = original


def to_onnx_bytes(model: Any, sample: FeatureMatrix) -> bytes:
    """Serialized ONNX graph with one float32 input ``X`` and a ``probabilities`` output."""
    from skl2onnx import to_onnx

    estimator = model.steps[-1][1] if hasattr(model, "steps") else model
    with _bool_attributes_as_ints():
        graph = to_onnx(
            model,
            sample[:1],
            options={id(estimator): {"zipmap": False}},
            target_opset={"": 17, "ai.onnx.ml": 3},
        )
    return bytes(graph.SerializeToString())


@dataclass(frozen=True)
class Parity:
    rows: int
    max_abs_diff: float
    decision_mismatches: int

    @property
    def ok(self) -> bool:
        return self.max_abs_diff <= PARITY_TOLERANCE and self.decision_mismatches == 0

    def to_dict(self) -> dict[str, Any]:
        return {
            "rows": self.rows,
            "max_abs_diff": self.max_abs_diff,
            "decision_mismatches": self.decision_mismatches,
            "tolerance": PARITY_TOLERANCE,
            "ok": self.ok,
        }


def check_parity(model: Any, onnx_bytes: bytes, X: FeatureMatrix, thresholds: Thresholds) -> Parity:
    """Compare sklearn's and onnxruntime's scores and decisions on the same rows."""
    reference = model.predict_proba(X)[:, 1].astype(np.float64)
    fast = OnnxModel(onnx_bytes, n_features=X.shape[1]).predict(X)
    mismatches = sum(
        a != b for a, b in zip(decide(reference, thresholds), decide(fast, thresholds), strict=True)
    )
    return Parity(len(X), float(np.max(np.abs(reference - fast))) if len(X) else 0.0, mismatches)
