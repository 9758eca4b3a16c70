"""The fast ONNX scorer: parity with sklearn, decisions, reasons and bad input."""

from __future__ import annotations

import io
import math
from typing import Any

import joblib
import numpy as np
import pytest

from fraud_core.errors import IncompatibleModelError, InvalidTransactionError
from fraud_core.manifest import SKLEARN_FILE, Thresholds
from fraud_core.scorer import Scorer, decide
from fraud_core.shapes.kaggle import FEATURE_NAMES, LABEL_FIELD, PCA_FIELDS, build_feature_matrix
from fraud_training.data import to_records
from tests.conftest import TrainedModel


def records_of(frame: Any) -> list[dict[str, Any]]:
    return [
        {"transaction_id": f"t_{i}", **{k: float(v) for k, v in row.items() if k != LABEL_FIELD}}
        for i, row in frame.iterrows()
    ]


def test_fast_path_matches_sklearn_on_the_test_split(trained: TrainedModel, scorer: Scorer) -> None:
    # GIVEN the sklearn pipeline (verified, then unpickled) and the ONNX scorer of the same version
    manifest = scorer.manifest
    model = joblib.load(io.BytesIO(trained.registry.read_verified(manifest, SKLEARN_FILE)))
    test = trained.frame.sort_values("Time").iloc[int(len(trained.frame) * 0.8) :]
    # WHEN both score the test part, the ONNX one through the JSON-record path
    reference = model.predict_proba(build_feature_matrix(test))[:, 1]
    fast = np.array([r.fraud_score for r in scorer.score_batch(records_of(test), explain="none")])
    # THEN scores agree within 1e-5 and every decision is identical
    assert np.max(np.abs(reference - fast)) <= 1e-5
    assert decide(reference, manifest.thresholds) == decide(fast, manifest.thresholds)
    assert manifest.metrics["onnx_parity"]["ok"] is True


def test_single_and_batch_paths_agree(trained: TrainedModel, scorer: Scorer) -> None:
    records = records_of(trained.frame.head(20))
    batch = scorer.score_batch(records, explain="none")
    singles = [scorer.score_one(r, explain="none") for r in records]
    assert [r.fraud_score for r in batch] == [r.fraud_score for r in singles]
    assert [r.transaction_id for r in batch] == [f"t_{i}" for i in range(20)]


def test_prescaled_payload_scores_like_raw(trained: TrainedModel, scorer: Scorer) -> None:
    # GIVEN the classic payload built with the manifest's own scaler
    raw = records_of(trained.frame.iloc[[10]])[0]
    sc = scorer.manifest.raw_scaling
    classic = {
        **{v: raw[v] for v in PCA_FIELDS},
        "scaled_amount": (raw["Amount"] - sc["Amount"].center) / sc["Amount"].scale,
        "scaled_time": (raw["Time"] - sc["Time"].center) / sc["Time"].scale,
    }
    # THEN it scores the same transaction the same way
    assert scorer.score_one(classic).fraud_score == pytest.approx(scorer.score_one(raw).fraud_score, abs=1e-6)


def test_flagged_transactions_get_reasons_that_raise_the_score(trained: TrainedModel, scorer: Scorer) -> None:
    frauds = trained.frame[trained.frame[LABEL_FIELD] == 1].head(30)
    results = scorer.score_batch(records_of(frauds), explain="flagged")
    flagged = [r for r in results if r.decision != "approve"]
    assert flagged, "the model should flag some known frauds"
    for r in flagged:
        assert 1 <= len(r.reasons) <= scorer.top_k
        contributions = [reason.contribution for reason in r.reasons]
        assert contributions == sorted(contributions, reverse=True)
        assert all(0 < c <= r.fraud_score for c in contributions)
        assert {reason.feature for reason in r.reasons} <= set(FEATURE_NAMES)
    assert all(r.reasons == () for r in results if r.decision == "approve")


def test_reason_contribution_is_the_score_drop_when_the_feature_is_reset(
    scorer: Scorer, trained: TrainedModel
) -> None:
    fraud = records_of(trained.frame[trained.frame[LABEL_FIELD] == 1].head(1))[0]
    result = scorer.score_one(fraud, explain="all")
    top = result.reasons[0]
    X = build_feature_matrix({k: [v] for k, v in fraud.items() if k != "transaction_id"})
    X[0, FEATURE_NAMES.index(top.feature)] = scorer.manifest.explain_baseline[
        FEATURE_NAMES.index(top.feature)
    ]
    assert result.fraud_score - scorer.score_matrix(X)[0] == pytest.approx(top.contribution, abs=1e-6)


def test_lenient_batch_scores_neighbours_of_poison(trained: TrainedModel, scorer: Scorer) -> None:
    good = records_of(trained.frame.head(3))
    batch = [
        good[0],
        {**good[1], "V1": "oops"},
        "garbage",
        good[2],
        {**good[0], "Amount": math.nan},
    ]
    outcome = scorer.score_batch_lenient(batch)
    assert [r is not None for r in outcome.results] == [True, False, False, True, False]
    assert sorted(outcome.errors) == [1, 2, 4]
    with pytest.raises(InvalidTransactionError, match="transaction 1: V1: expected a number"):
        scorer.score_batch(batch)


def test_score_one_raises_field_errors(scorer: Scorer) -> None:
    with pytest.raises(InvalidTransactionError) as info:
        scorer.score_one({"Time": 1.0, "Amount": "12"})
    fields = {e.field for e in info.value.errors}
    assert "Amount" in fields and "V28" in fields


def test_empty_batch_returns_nothing(scorer: Scorer) -> None:
    assert scorer.score_batch([]) == []


def test_decisions_follow_bands() -> None:
    bands = Thresholds(review=0.2, decline=0.6)
    scores = np.array([0.1, 0.2, 0.59, 0.6, 1.0])
    assert decide(scores, bands) == ["approve", "review", "review", "decline", "decline"]


def test_model_with_unbuildable_features_is_refused(scorer: Scorer) -> None:
    odd = scorer.manifest.model_copy(
        update={"features": [*scorer.manifest.features[:-1], "card_tx_count_7d"]}
    )
    with pytest.raises(IncompatibleModelError, match="card_tx_count_7d"):
        Scorer(odd, scorer.model)


def test_a_model_of_a_feature_subset_reads_its_own_columns(trained: TrainedModel, scorer: Scorer) -> None:
    from fraud_core.model import OnnxModel

    # GIVEN the same model described with its features in reverse order, and a matching graph
    names = list(reversed(scorer.manifest.features))
    reordered = scorer.manifest.model_copy(
        update={"features": names, "explain_baseline": scorer.manifest.explain_baseline[::-1]}
    )

    class Reversed(OnnxModel):
        def __init__(self, inner: OnnxModel) -> None:
            self.inner, self.n_features = inner, inner.n_features

        def predict(self, features: Any) -> Any:
            return self.inner.predict(features[:, ::-1].copy())

    other = Scorer(reordered, Reversed(scorer.model))
    records = to_records(trained.frame.head(50))
    # THEN both score every transaction the same: the rows are built in the shape's order and
    # each model gets its own columns
    assert [r.fraud_score for r in other.score_batch(records)] == [
        r.fraud_score for r in scorer.score_batch(records)
    ]
