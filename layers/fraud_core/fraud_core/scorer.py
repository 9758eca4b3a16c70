"""Score transactions of any data shape: build features (the shape's plug-in), run the ONNX
model, decide, explain."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, NamedTuple

import numpy as np
import numpy.typing as npt

from fraud_core.errors import IncompatibleModelError, InvalidTransactionError
from fraud_core.explain import Reason, occlusion_reasons
from fraud_core.manifest import ModelManifest, Thresholds
from fraud_core.model import OnnxModel
from fraud_core.scores import published_scores
from fraud_core.shapes import DataShape, FeatureMatrix, Prepared, shape_named

Decision = Literal["approve", "review", "decline"]
ExplainMode = Literal["flagged", "all", "none"]


class ScoreResult(NamedTuple):
    """The outcome for one transaction (a named tuple: one per scored row, built fast)."""

    transaction_id: str | None
    card_id: str | None
    fraud_score: float
    decision: Decision
    reasons: tuple[Reason, ...]
    model_version: str
    shadow_score: float | None = None
    """The challenger's score (scoring log only: it never decides and is not returned)."""
    shadow_version: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "transaction_id": self.transaction_id,
            "card_id": self.card_id,
            "fraud_score": self.fraud_score,
            "decision": self.decision,
            "reasons": [r.to_dict() for r in self.reasons],
            "model_version": self.model_version,
        }


@dataclass(frozen=True, slots=True)
class BatchOutcome:
    """Results in input order (``None`` where invalid) and the errors of the invalid ones."""

    results: list[ScoreResult | None]
    errors: dict[int, InvalidTransactionError]


def decide(scores: npt.NDArray[np.float64], thresholds: Thresholds) -> list[Decision]:
    """Map scores to decision bands."""
    codes = (scores >= thresholds.review).astype(np.int8) + (scores >= thresholds.decline)
    names: tuple[Decision, Decision, Decision] = ("approve", "review", "decline")
    return [names[c] for c in codes.tolist()]


def _columns(shape: DataShape, manifest: ModelManifest) -> npt.NDArray[np.intp] | None:
    """Where the model's features sit among the shape's (None: all of them, in order)."""
    missing = shape.incompatibility(manifest.features)
    if missing:
        raise IncompatibleModelError(
            f"model {manifest.version} expects features this core cannot build: {missing}"
        )
    full = shape.feature_names
    return None if tuple(manifest.features) == full else np.array([full.index(f) for f in manifest.features])


@dataclass(frozen=True, slots=True)
class Shadow:
    """A challenger scored in the same pass as the champion, on the same feature rows."""

    manifest: ModelManifest
    model: OnnxModel
    columns: npt.NDArray[np.intp] | None

    @classmethod
    def of(cls, manifest: ModelManifest, model: OnnxModel, shape: DataShape) -> Shadow:
        if manifest.schema_name != shape.name:
            raise IncompatibleModelError(
                f"challenger {manifest.version} is a {manifest.schema_name!r} model; the champion's data "
                f"shape is {shape.name!r}"
            )
        return cls(manifest, model, _columns(shape, manifest))

    def scores(self, features: FeatureMatrix) -> list[float]:
        rows = features if self.columns is None else np.ascontiguousarray(features[:, self.columns])
        published: list[float] = published_scores(self.model.predict(rows)).tolist()
        return published


class Scorer:
    """A loaded model version, ready to score. Immutable; share it across threads.

    The data shape is chosen here, once, from the manifest; a model whose features the shape
    cannot build is refused (the training/serving skew guard).
    """

    def __init__(
        self, manifest: ModelManifest, model: OnnxModel, *, top_k: int = 3, shadow: Shadow | None = None
    ) -> None:
        self.shape: DataShape = shape_named(manifest.schema_name)
        self.manifest = manifest
        self.model = model
        self.top_k = top_k
        self.shadow = shadow
        """The challenger scored beside this model (None: no challenger)."""
        self._baseline = np.asarray(manifest.explain_baseline, dtype=np.float32)
        # The shape builds all its features; the model reads its own columns, in its own order.
        self._columns = _columns(self.shape, manifest)

    @property
    def version(self) -> str:
        return self.manifest.version

    @property
    def feature_names(self) -> tuple[str, ...]:
        """The model's inputs, in its order (a subset of the shape's features)."""
        return tuple(self.manifest.features)

    def prepare(
        self,
        records: Sequence[Any],
        *,
        online: Any = None,
        observe: bool = False,
        auto_ids: Sequence[str] | None = None,
    ) -> Prepared:
        """Validate ``records`` and build their features with this model's data shape."""
        return self.shape.prepare(
            records, manifest=self.manifest, online=online, observe=observe, auto_ids=auto_ids
        )

    def score_matrix(self, features: FeatureMatrix) -> npt.NDArray[np.float64]:
        """Scores of ready-made rows of the model's own features (benchmarks, parity checks)."""
        return self.model.predict(features)

    def model_input(self, features: FeatureMatrix) -> FeatureMatrix:
        """The model's columns of rows built by the shape (all its features, in its order)."""
        return features if self._columns is None else np.ascontiguousarray(features[:, self._columns])

    def score_prepared(self, prepared: Prepared, *, explain: ExplainMode = "flagged") -> list[ScoreResult]:
        """Score the valid rows of a prepared batch, in order."""
        return self.score_features(
            prepared.features,
            transaction_ids=prepared.transaction_ids,
            card_ids=prepared.card_ids,
            explain=explain,
        )

    def score_batch_lenient(
        self, records: Sequence[Any], *, online: Any = None, explain: ExplainMode = "flagged"
    ) -> BatchOutcome:
        """Score every valid record in one vectorized call (read-only on online state); report
        invalid ones, never raise for them."""
        prepared = self.prepare(records, online=online)
        results: list[ScoreResult | None] = [None] * len(records)
        if prepared.positions:
            for pos, result in zip(
                prepared.positions, self.score_prepared(prepared, explain=explain), strict=True
            ):
                results[pos] = result
        return BatchOutcome(results, prepared.errors)

    def score_features(
        self,
        features: FeatureMatrix,
        *,
        transaction_ids: Sequence[str | None],
        card_ids: Sequence[str | None],
        explain: ExplainMode = "flagged",
    ) -> list[ScoreResult]:
        """Score rows built by the shape (``shape.feature_names`` order): decide and explain."""
        shadow = self.shadow.scores(features) if self.shadow is not None else None
        shadow_version = self.shadow.manifest.version if self.shadow is not None else None
        features = self.model_input(features)
        scores = self.model.predict(features)
        decisions = decide(scores, self.manifest.thresholds)
        reasons = self._reasons(features, scores, decisions, explain)
        rounded: list[float] = published_scores(scores).tolist()
        version = self.manifest.version
        return [
            ScoreResult(
                transaction_ids[k],
                card_ids[k],
                rounded[k],
                decisions[k],
                reasons[k],
                version,
                shadow[k] if shadow is not None else None,
                shadow_version,
            )
            for k in range(len(rounded))
        ]

    def score_batch(
        self, records: Sequence[Any], *, online: Any = None, explain: ExplainMode = "flagged"
    ) -> list[ScoreResult]:
        """Score a batch; raise InvalidTransactionError for the first invalid record."""
        outcome = self.score_batch_lenient(records, online=online, explain=explain)
        if outcome.errors:
            raise outcome.errors[min(outcome.errors)]
        return [r for r in outcome.results if r is not None]

    def score_one(
        self, record: Mapping[str, Any], *, online: Any = None, explain: ExplainMode = "all"
    ) -> ScoreResult:
        """Score one transaction (raises InvalidTransactionError with field-level details)."""
        outcome = self.score_batch_lenient([record], online=online, explain=explain)
        if outcome.errors:
            raise InvalidTransactionError(outcome.errors[0].errors)
        result = outcome.results[0]
        assert result is not None
        return result

    def _reasons(
        self,
        features: FeatureMatrix,
        scores: npt.NDArray[np.float64],
        decisions: list[Decision],
        explain: ExplainMode,
    ) -> list[tuple[Reason, ...]]:
        n = len(decisions)
        if explain == "none" or self.top_k == 0:
            return [() for _ in range(n)]
        if explain == "all":
            rows = np.arange(n)
        else:
            rows = np.flatnonzero(np.asarray([d != "approve" for d in decisions], dtype=bool))
        out: list[tuple[Reason, ...]] = [() for _ in range(n)]
        if rows.size:
            explained = occlusion_reasons(
                self.model.predict,
                features[rows],
                scores[rows],
                baseline=self._baseline,
                names=self.feature_names,
                top_k=self.top_k,
            )
            for row, reasons in zip(rows.tolist(), explained, strict=True):
                out[row] = reasons
        return out
