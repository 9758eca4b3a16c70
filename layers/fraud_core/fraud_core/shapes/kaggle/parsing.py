"""Validate incoming Kaggle-schema transactions (raw or classic pre-scaled) into raw columns.

This is the stream's hot loop (a thousand records per batch), so the common case stays in C —
itemgetter, a type-set inclusion, one vectorized range check against the constraint table —
and only a record that fails it is diagnosed field by field, with the same rules.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from operator import itemgetter
from typing import Any

import numpy as np
import numpy.typing as npt

from fraud_core.constraints import bounds_arrays, diagnose_ids, epoch_seconds, is_id
from fraud_core.errors import FieldError, InvalidTransactionError
from fraud_core.manifest import ScalingEntry
from fraud_core.shapes.kaggle.fields import (
    ID_FIELDS,
    NUMBERS,
    PCA_FIELDS,
    PRESCALED_FIELDS,
    RAW_FIELDS,
    TIMESTAMP_FIELD,
)


@dataclass(slots=True)
class ParsedBatch:
    """Raw rows of the valid transactions of a batch, and the problems of the others."""

    raw: npt.NDArray[np.float64]
    """``(n_valid, len(RAW_FIELDS))`` matrix in ``RAW_FIELDS`` order."""
    positions: list[int]
    """Position in the input of each valid row."""
    transaction_ids: list[str | None]
    card_ids: list[str | None]
    errors: dict[int, InvalidTransactionError] = field(default_factory=dict)

    def column(self, name: str) -> npt.NDArray[np.float64]:
        return self.raw[:, RAW_FIELDS.index(name)]


_GETTERS = {RAW_FIELDS: itemgetter(*RAW_FIELDS), PRESCALED_FIELDS: itemgetter(*PRESCALED_FIELDS)}
_BOUNDS = {fields: bounds_arrays(NUMBERS, fields) for fields in _GETTERS}
_NUMBER_TYPES = frozenset((int, float))


def _fast_values(record: Mapping[str, Any], fields: tuple[str, ...]) -> tuple[float, ...] | None:
    """The fields' values when all are present and plain numbers, else None (then diagnose).

    Types are compared exactly: bool is an int subclass and must be refused, and numpy would
    otherwise coerce a string like "1.5" silently.
    """
    try:
        values: tuple[float, ...] = _GETTERS[fields](record)
    except (KeyError, TypeError):
        return None
    return values if _NUMBER_TYPES.issuperset(map(type, values)) else None


def _fast_ids(record: Mapping[str, Any]) -> tuple[str | None, str | None] | None:
    """(transaction_id, card_id) when both are absent or well-formed, else None (then diagnose)."""
    tid, card = record.get("transaction_id"), record.get("card_id")
    if (tid is None or is_id(tid)) and (card is None or is_id(card)):
        return tid, card
    return None


def _diagnose(record: Any, fields: Sequence[str]) -> list[FieldError]:
    """Field-level errors of a record that failed the fast path, by the same constraint table."""
    if not isinstance(record, Mapping):
        return [FieldError("<record>", f"expected a JSON object, got {type(record).__name__}")]
    errors: list[FieldError] = []
    for f in fields:
        if f not in record:
            errors.append(FieldError(f, "field required"))
            continue
        problem = NUMBERS[f].error(record[f])
        if problem:
            errors.append(FieldError(f, problem))
    errors.extend(diagnose_ids(record, ID_FIELDS))
    return errors


UNKNOWN_SCHEMA = FieldError(
    "<record>",
    "unknown schema: expected the Kaggle raw fields (Time or timestamp, Amount, V1..V28) "
    "or the pre-scaled fields (V1..V28, scaled_amount, scaled_time)",
)


def _with_time(record: Mapping[str, Any]) -> Mapping[str, Any] | FieldError:
    """A record giving an ISO ``timestamp`` instead of ``Time``, with ``Time`` filled in."""
    if "Time" in record:
        return FieldError(TIMESTAMP_FIELD, "give exactly one of `Time` (seconds) or `timestamp` (ISO-8601)")
    epoch = epoch_seconds(record[TIMESTAMP_FIELD])
    if isinstance(epoch, str):
        return FieldError(TIMESTAMP_FIELD, epoch)
    return {**record, "Time": float(epoch)}


def _schema_of(record: Any) -> tuple[str, ...] | None:
    if not isinstance(record, Mapping):
        return None
    if "Amount" in record or "Time" in record or TIMESTAMP_FIELD in record:
        return RAW_FIELDS
    if "scaled_amount" in record or "scaled_time" in record:
        return PRESCALED_FIELDS
    return None


def parse_transactions(records: Sequence[Any], *, scaling: Mapping[str, ScalingEntry]) -> ParsedBatch:
    """Validate ``records`` and return raw columns (``RAW_FIELDS``) for the valid ones.

    Pre-scaled records are mapped back to raw ``Time``/``Amount`` with the model's own
    training-time ``scaling``. Invalid records never raise here: they are collected per
    position in ``errors`` so a batch caller can route them (e.g. to a dead-letter topic).
    """
    rows: dict[tuple[str, ...], tuple[list[tuple[float, ...]], list[int]]] = {
        RAW_FIELDS: ([], []),
        PRESCALED_FIELDS: ([], []),
    }
    ids: dict[int, tuple[str | None, str | None]] = {}
    errors: dict[int, InvalidTransactionError] = {}
    timed: dict[int, Mapping[str, Any]] = {}  # records whose `timestamp` became `Time`

    for i, record in enumerate(records):
        fields = _schema_of(record)
        if fields is None:
            errors[i] = InvalidTransactionError(_diagnose(record, ()) or [UNKNOWN_SCHEMA], index=i)
            continue
        if TIMESTAMP_FIELD in record:
            normalised = _with_time(record)
            if isinstance(normalised, FieldError):
                errors[i] = InvalidTransactionError([normalised], index=i)
                continue
            record = timed[i] = normalised
        values = _fast_values(record, fields)
        identity = _fast_ids(record)
        if values is None or identity is None:
            errors[i] = InvalidTransactionError(_diagnose(record, fields), index=i)
            continue
        ids[i] = identity
        rows[fields][0].append(values)
        rows[fields][1].append(i)

    blocks: list[tuple[list[int], npt.NDArray[np.float64]]] = []
    for fields, (values_list, positions) in rows.items():
        if not values_list:
            continue
        matrix = np.array(values_list, dtype=np.float64)
        lo, hi = _BOUNDS[fields]
        # One comparison covers NaN and ±Infinity too: they fail `lo <= v <= hi`.
        ok = np.asarray(((matrix >= lo) & (matrix <= hi)).all(axis=1), dtype=bool)
        kept_pos, kept = _keep(matrix, positions, ok, lambda p: timed.get(p, records[p]), fields, errors)
        blocks.append((kept_pos, kept if fields is RAW_FIELDS else _unscale(kept, scaling)))

    positions = [p for pos, _ in blocks for p in pos]
    if len(blocks) == 1:
        raw = blocks[0][1]
    else:
        raw = np.concatenate([m for _, m in blocks]) if blocks else np.empty((0, len(RAW_FIELDS)))
    return ParsedBatch(
        raw=raw,
        positions=positions,
        transaction_ids=[ids[p][0] for p in positions],
        card_ids=[ids[p][1] for p in positions],
        errors=errors,
    )


def _keep(
    matrix: npt.NDArray[np.float64],
    positions: list[int],
    ok: npt.NDArray[np.bool_],
    record_at: Callable[[int], Any],
    fields: tuple[str, ...],
    errors: dict[int, InvalidTransactionError],
) -> tuple[list[int], npt.NDArray[np.float64]]:
    """Drop the rows outside the constraint table, diagnosing each."""
    if ok.all():
        return positions, matrix
    for row in np.flatnonzero(~ok):
        p = positions[row]
        errors[p] = InvalidTransactionError(_diagnose(record_at(p), fields), index=p)
    return [p for p, good in zip(positions, ok, strict=True) if good], matrix[ok]


_PCA_COUNT = len(PCA_FIELDS)


def _unscale(pre: npt.NDArray[np.float64], scaling: Mapping[str, ScalingEntry]) -> npt.NDArray[np.float64]:
    """Map pre-scaled rows (V1..V28, scaled_amount, scaled_time) to raw order (Time, Amount, V...)."""
    out = np.empty_like(pre)
    out[:, 2:] = pre[:, :_PCA_COUNT]
    out[:, 0] = scaling["Time"].unscale(pre[:, _PCA_COUNT + 1])
    # Scaled amounts produced by another scaler can land a hair below zero once mapped back.
    out[:, 1] = np.maximum(scaling["Amount"].unscale(pre[:, _PCA_COUNT]), 0.0)
    return out
