"""Validation of incoming transactions: every bad input gets a typed, actionable error."""

from __future__ import annotations

import math
from typing import Any

import pytest

from fraud_core.errors import InvalidTransactionError
from fraud_core.manifest import ScalingEntry
from fraud_core.shapes.kaggle import PCA_FIELDS
from fraud_core.shapes.kaggle.parsing import parse_transactions

SCALING = {
    "Time": ScalingEntry(center=80_000.0, scale=50_000.0),
    "Amount": ScalingEntry(center=20.0, scale=70.0),
}


def raw(**overrides: Any) -> dict[str, Any]:
    record: dict[str, Any] = {
        "Time": 1000.0,
        "Amount": 42.0,
        **{v: 0.1 * i for i, v in enumerate(PCA_FIELDS)},
    }
    record.update(overrides)
    return record


def errors_of(record: Any) -> list[str]:
    parsed = parse_transactions([record], scaling=SCALING)
    assert parsed.positions == []
    return [str(e) for e in parsed.errors[0].errors]


def test_valid_raw_record_parses() -> None:
    parsed = parse_transactions([raw(transaction_id="t_1", card_id="77")], scaling=SCALING)
    assert parsed.positions == [0]
    assert parsed.column("Amount").tolist() == [42.0]
    assert parsed.transaction_ids == ["t_1"]
    assert parsed.card_ids == ["77"]


def test_prescaled_record_maps_back_to_raw() -> None:
    # GIVEN the classic payload, scaled with the model's own scaler
    record = {**{v: 0.0 for v in PCA_FIELDS}, "scaled_amount": 1.0, "scaled_time": -0.5}
    parsed = parse_transactions([record], scaling=SCALING)
    # THEN Time and Amount are recovered from the manifest's scaler parameters
    assert parsed.column("Amount").tolist() == [90.0]
    assert parsed.column("Time").tolist() == [55_000.0]


def test_prescaled_amount_below_zero_is_clamped() -> None:
    record = {**{v: 0.0 for v in PCA_FIELDS}, "scaled_amount": -0.2858, "scaled_time": 0.0}
    assert parse_transactions([record], scaling=SCALING).column("Amount").tolist() == [0.0]


@pytest.mark.parametrize(
    ("record", "expected"),
    [
        ({k: v for k, v in raw().items() if k != "V7"}, "V7: field required"),
        (raw(V3="1.5"), "V3: expected a number, got str"),
        (raw(Amount=True), "Amount: expected a number, got bool"),
        (raw(V1=None), "V1: expected a number, got NoneType"),
        (raw(V2=[1.0]), "V2: expected a number, got list"),
        (raw(V4=math.nan), "V4: must be a finite number"),
        (raw(Time=math.inf), "Time: must be a finite number"),
        (raw(Amount=-0.01), "Amount: must be between 0 and 10,000,000, got -0.01"),
        (raw(V9=10_000.5), "V9: must be between -10,000 and 10,000"),
        (raw(Time=2e11), "Time: must be between 0 and 100,000,000,000"),
        (raw(transaction_id=""), "transaction_id: must be 1 to 128 characters"),
        (raw(card_id={"x": 1}), "card_id: expected a string id, got dict"),
        (raw(card_id=77), "card_id: expected a string id, got int"),
        (raw(transaction_id="t|1"), "transaction_id: may only contain letters, digits"),
        (raw(timestamp="2026-01-01T00:00:00Z"), "give exactly one of `Time`"),
        (
            {k: v for k, v in raw().items() if k != "Time"} | {"timestamp": "noon"},
            "timestamp: expected epoch",
        ),
        ({"foo": 1}, "unknown schema"),
        ([1, 2, 3], "expected a JSON object, got list"),
        ("not a record", "expected a JSON object, got str"),
    ],
)
def test_bad_input_is_rejected_with_field_message(record: Any, expected: str) -> None:
    assert any(expected in e for e in errors_of(record)), errors_of(record)


def test_every_problem_of_a_record_is_reported() -> None:
    msgs = errors_of(raw(V1="x", V2=math.nan, Amount=-1.0))
    assert len(msgs) == 3


def test_batch_keeps_positions_of_valid_neighbours() -> None:
    # GIVEN a batch with poison records between good ones
    batch = [
        raw(transaction_id="a"),
        raw(V9="bad"),
        {"nope": 1},
        raw(transaction_id="d", V5=math.nan),
        raw(transaction_id="e"),
    ]
    parsed = parse_transactions(batch, scaling=SCALING)
    # THEN the good ones keep their identity and input positions, the bad ones are indexed errors
    assert parsed.positions == [0, 4]
    assert parsed.transaction_ids == ["a", "e"]
    assert sorted(parsed.errors) == [1, 2, 3]
    assert all(isinstance(e, InvalidTransactionError) and e.index == i for i, e in parsed.errors.items())


def test_empty_batch() -> None:
    parsed = parse_transactions([], scaling=SCALING)
    assert parsed.positions == [] and parsed.errors == {}
