"""Export a fitted sklearn model to ONNX and prove the export scores like the original."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import onnx.helper

from fraud_core.errors import FraudCoreError
from fraud_core.manifest import Thresholds
from fraud_core.model import OnnxModel
from fraud_core.scorer import Decision, decide
from fraud_core.shapes import FeatureMatrix

PARITY_TOLERANCE = 1e-5
"""Largest |sklearn score − ONNX score| accepted on any row (the graph computes in float32)."""
REPORTED_FLIPS = 50
"""How many flipped rows the parity dict lists (the count is always complete)."""


class ParityError(FraudCoreError):
    """The ONNX export does not score like the sklearn model: refuse to publish it."""


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
class Flip:
    """One row whose decision differs between sklearn and ONNX."""

    row: int
    """The row's id: its position in the part, or the id the caller passed (e.g. the CSV row)."""
    sklearn: float
    onnx: float
    sklearn_decision: Decision
    onnx_decision: Decision
    threshold: float
    """The crossed threshold farthest from the sklearn score."""

    def to_dict(self) -> dict[str, Any]:
        return {
            "row": self.row,
            "sklearn": self.sklearn,
            "onnx": self.onnx,
            "sklearn_decision": self.sklearn_decision,
            "onnx_decision": self.onnx_decision,
            "threshold": self.threshold,
        }

    def __str__(self) -> str:
        return (
            f"row {self.row}: sklearn {self.sklearn:.8f} → {self.sklearn_decision}, "
            f"ONNX {self.onnx:.8f} → {self.onnx_decision} (threshold {self.threshold:.8f})"
        )


@dataclass(frozen=True)
class Parity:
    """sklearn vs ONNX on one part of the data.

    A decision may flip only for a *borderline* row: one whose sklearn score lies within
    :data:`PARITY_TOLERANCE` of every threshold the flip crosses. Such a row sits on the edge
    by float rounding alone (tree ensembles give many rows scores on a coarse lattice, and a
    threshold can land on it); serving decides it one way, training the other, and neither is
    wrong. Any other flip, or any |Δscore| over the tolerance, fails the check.
    """

    part: str
    rows: int
    max_abs_diff: float
    worst_row: int | None
    """Id of the row with the largest |Δscore| (None for an empty part)."""
    worst_scores: tuple[float, float] | None
    """(sklearn, ONNX) scores of that row."""
    borderline_flips: tuple[Flip, ...]
    other_flips: tuple[Flip, ...]

    @property
    def decision_mismatches(self) -> int:
        return len(self.borderline_flips) + len(self.other_flips)

    @property
    def ok(self) -> bool:
        return self.max_abs_diff <= PARITY_TOLERANCE and not self.other_flips

    def problems(self) -> str:
        """What differed and by how much, as one sentence (empty when ok)."""
        found = []
        if self.max_abs_diff > PARITY_TOLERANCE and self.worst_scores is not None:
            sk, ox = self.worst_scores
            found.append(
                f"max |Δscore| {self.max_abs_diff:.2e} exceeds the tolerance {PARITY_TOLERANCE:.0e} "
                f"(row {self.worst_row}: sklearn {sk:.8f}, ONNX {ox:.8f})"
            )
        if self.other_flips:
            found.append(
                f"{len(self.other_flips)} decision(s) flip on rows farther than {PARITY_TOLERANCE:.0e} "
                f"from the threshold they cross (e.g. {self.other_flips[0]})"
            )
        return "; ".join(found)

    def summary(self) -> str:
        """One line for people: max |Δ|, and the borderline flips if any."""
        text = f"{self.part}: max |Δscore| {self.max_abs_diff:.2e} over {self.rows:,} rows"
        if self.borderline_flips:
            text += (
                f", {len(self.borderline_flips)} borderline row(s) flip (sklearn score within "
                f"{PARITY_TOLERANCE:.0e} of a threshold)"
            )
        else:
            text += ", no decision flips"
        if self.other_flips:
            text += f", {len(self.other_flips)} other flip(s)"
        return text

    def require(self, *, model_type: str) -> None:
        """Raise :class:`ParityError` naming what differed unless the export passes."""
        if not self.ok:
            raise ParityError(
                f"the ONNX export of {model_type} does not score like sklearn on the {self.part} part "
                f"({self.rows:,} rows): {self.problems()}; nothing was published"
            )

    def to_dict(self) -> dict[str, Any]:
        return {
            "part": self.part,
            "rows": self.rows,
            "max_abs_diff": self.max_abs_diff,
            "worst_row": self.worst_row,
            "decision_mismatches": self.decision_mismatches,
            "borderline_flips": len(self.borderline_flips),
            "borderline_rows": [f.to_dict() for f in self.borderline_flips[:REPORTED_FLIPS]],
            "other_flips": len(self.other_flips),
            "other_rows": [f.to_dict() for f in self.other_flips[:REPORTED_FLIPS]],
            "tolerance": PARITY_TOLERANCE,
            "ok": self.ok,
        }


def compare_scores(
    reference: npt.NDArray[np.float64],
    onnx: npt.NDArray[np.float64],
    thresholds: Thresholds,
    *,
    part: str,
    row_ids: Sequence[int] | npt.NDArray[np.int64] | None = None,
) -> Parity:
    """Compare sklearn's (``reference``) and onnxruntime's scores and decisions on the same rows."""
    reference = np.asarray(reference, dtype=np.float64)
    onnx = np.asarray(onnx, dtype=np.float64)
    ids = np.arange(len(reference)) if row_ids is None else np.asarray(row_ids)
    if len(reference) == 0:
        return Parity(part, 0, 0.0, None, None, (), ())
    diff = np.abs(reference - onnx)
    worst = int(np.argmax(diff))
    sk_decisions, ox_decisions = decide(reference, thresholds), decide(onnx, thresholds)
    borderline: list[Flip] = []
    other: list[Flip] = []
    for k in np.flatnonzero(np.asarray(sk_decisions) != np.asarray(ox_decisions)).tolist():
        ref, fast = float(reference[k]), float(onnx[k])
        crossed = [t for t in (thresholds.review, thresholds.decline) if (ref >= t) != (fast >= t)]
        farthest = max(crossed, key=lambda t: abs(ref - t))
        flip = Flip(int(ids[k]), ref, fast, sk_decisions[k], ox_decisions[k], farthest)
        (borderline if abs(ref - farthest) <= PARITY_TOLERANCE else other).append(flip)
    return Parity(
        part,
        len(reference),
        float(diff[worst]),
        int(ids[worst]),
        (float(reference[worst]), float(onnx[worst])),
        tuple(borderline),
        tuple(other),
    )


def check_parity(
    model: Any,
    onnx_bytes: bytes,
    X: FeatureMatrix,
    thresholds: Thresholds,
    *,
    part: str = "test",
    row_ids: Sequence[int] | npt.NDArray[np.int64] | None = None,
) -> Parity:
    """Score ``X`` with sklearn and with the ONNX graph and compare (see :class:`Parity`)."""
    reference = model.predict_proba(X)[:, 1].astype(np.float64)
    fast = OnnxModel(onnx_bytes, n_features=X.shape[1]).predict(X)
    return compare_scores(reference, fast, thresholds, part=part, row_ids=row_ids)
