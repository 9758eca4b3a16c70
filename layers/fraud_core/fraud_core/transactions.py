"""Parse and validate incoming transactions (Kaggle raw or classic pre-scaled) into raw columns."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from operator import itemgetter
from typing import Any

import numpy as np
import numpy.typing as npt

from fraud_core.errors import FieldError, InvalidTransactionError
from fraud_core.features import PRESCALED_FIELDS, RAW_FIELDS

MAX_ID_LENGTH = 128
_NUMBER_TYPES = (int, float)


@dataclass(frozen=True, slots=True)
class ScalerParams:
    """Robust scaling of one raw field, ``scaled = (raw - center) / scale``, fit on training data."""

    center: float
    scale: float

    def unscale(self, scaled: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
        return scaled * self.scale + self.center


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
_NUMBER_TYPE_SET = frozenset(_NUMBER_TYPES)


def _fast_values(record: Mapping[str, Any], fields: tuple[str, ...]) -> tuple[float, ...] | None:
    """The fields' values when all are present and plain numbers, else None (then diagnose).

    This is the hot loop of batch scoring, so it stays in C: itemgetter, map, set inclusion.
    Types are compared exactly: bool is an int subclass and must be refused, and numpy would
    otherwise coerce a string like "1.5" silently.
    """
    try:
        values: tuple[float, ...] = _GETTERS[fields](record)
    except (KeyError, TypeError):
        return None
    return values if _NUMBER_TYPE_SET.issuperset(map(type, values)) else None


def _diagnose(record: Any, fields: Sequence[str]) -> list[FieldError]:
    """Field-level errors of a record that failed the fast path or the range checks."""
    if not isinstance(record, Mapping):
        return [FieldError("<record>", f"expected a JSON object, got {type(record).__name__}")]
    errors: list[FieldError] = []
    for f in fields:
        if f not in record:
            errors.append(FieldError(f, "field required"))
            continue
        v = record[f]
        if type(v) not in _NUMBER_TYPES:
            errors.append(FieldError(f, f"expected a number, got {type(v).__name__}"))
        elif not math.isfinite(v):
            errors.append(FieldError(f, "must be a finite number (no NaN or Infinity)"))
        elif f in ("Amount", "Time") and v < 0:
            errors.append(FieldError(f, f"must be >= 0, got {v}"))
    errors.extend(_id_errors(record))
    return errors


def _id_errors(record: Mapping[str, Any]) -> list[FieldError]:
    errors = []
    for key in ("transaction_id", "card_id"):
        v = record.get(key)
        if v is None:
            continue
        if isinstance(v, bool) or not isinstance(v, str | int):
            errors.append(FieldError(key, f"expected a string, got {type(v).__name__}"))
        elif not str(v) or len(str(v)) > MAX_ID_LENGTH:
            errors.append(FieldError(key, f"must be 1 to {MAX_ID_LENGTH} characters"))
    return errors


def _schema_of(record: Any) -> tuple[str, ...] | None:
    if not isinstance(record, Mapping):
        return None
    if "Amount" in record or "Time" in record:
        return RAW_FIELDS
    if "scaled_amount" in record or "scaled_time" in record:
        return PRESCALED_FIELDS
    return None


UNKNOWN_SCHEMA = FieldError(
    "<record>",
    "unknown schema: expected the Kaggle raw fields (Time, Amount, V1..V28) "
    "or the pre-scaled fields (V1..V28, scaled_amount, scaled_time)",
)


def parse_transactions(records: Sequence[Any], *, scaling: Mapping[str, ScalerParams]) -> ParsedBatch:
    """Validate ``records`` and return raw columns (``RAW_FIELDS``) for the valid ones.

    Pre-scaled records are mapped back to raw ``Time``/``Amount`` with the model's own
    training-time ``scaling``. Invalid records never raise here: they are collected per
    position in ``errors`` so a batch caller can route them (e.g. to a dead-letter topic).
    """
    raw_rows: list[tuple[float, ...]] = []
    raw_pos: list[int] = []
    pre_rows: list[tuple[float, ...]] = []
    pre_pos: list[int] = []
    ids: dict[int, tuple[str | None, str | None]] = {}
    errors: dict[int, InvalidTransactionError] = {}

    for i, record in enumerate(records):
        fields = _schema_of(record)
        if fields is None:
            detail = _diagnose(record, ()) or [UNKNOWN_SCHEMA]
            errors[i] = InvalidTransactionError(detail, index=i)
            continue
        values = _fast_values(record, fields)
        identity = _fast_ids(record)
        if values is None or identity is None:
            errors[i] = InvalidTransactionError(_diagnose(record, fields), index=i)
            continue
        ids[i] = identity
        if fields is RAW_FIELDS:
            raw_rows.append(values)
            raw_pos.append(i)
        else:
            pre_rows.append(values)
            pre_pos.append(i)

    blocks: list[tuple[list[int], npt.NDArray[np.float64]]] = []
    if raw_rows:
        raw = np.array(raw_rows, dtype=np.float64)
        ok = np.isfinite(raw).all(axis=1) & (raw[:, 0] >= 0) & (raw[:, 1] >= 0)
        blocks.append(_keep(raw, raw_pos, ok, records, RAW_FIELDS, errors))
    if pre_rows:
        pre = np.array(pre_rows, dtype=np.float64)
        ok = np.asarray(np.isfinite(pre).all(axis=1), dtype=bool)
        kept_pos, kept = _keep(pre, pre_pos, ok, records, PRESCALED_FIELDS, errors)
        blocks.append((kept_pos, _unscale(kept, scaling)))

    positions = [p for pos, _ in blocks for p in pos]
    if len(blocks) == 1:
        matrix = blocks[0][1]
    else:
        matrix = np.concatenate([m for _, m in blocks]) if blocks else np.empty((0, len(RAW_FIELDS)))
    return ParsedBatch(
        raw=matrix,
        positions=positions,
        transaction_ids=[ids[p][0] for p in positions],
        card_ids=[ids[p][1] for p in positions],
        errors=errors,
    )


def _keep(
    matrix: npt.NDArray[np.float64],
    positions: list[int],
    ok: npt.NDArray[np.bool_],
    records: Sequence[Any],
    fields: tuple[str, ...],
    errors: dict[int, InvalidTransactionError],
) -> tuple[list[int], npt.NDArray[np.float64]]:
    if ok.all():
        return positions, matrix
    for row in np.flatnonzero(~ok):
        p = positions[row]
        errors[p] = InvalidTransactionError(_diagnose(records[p], fields), index=p)
    return [p for p, good in zip(positions, ok, strict=True) if good], matrix[ok]


def _unscale(pre: npt.NDArray[np.float64], scaling: Mapping[str, ScalerParams]) -> npt.NDArray[np.float64]:
    """Map pre-scaled rows (V1..V28, scaled_amount, scaled_time) to raw order (Time, Amount, V...)."""
    out = np.empty_like(pre)
    out[:, 2:] = pre[:, :28]
    out[:, 0] = scaling["Time"].unscale(pre[:, 29])
    # Scaled amounts produced by another scaler can land a hair below zero once mapped back.
    out[:, 1] = np.maximum(scaling["Amount"].unscale(pre[:, 28]), 0.0)
    return out


def _fast_ids(record: Mapping[str, Any]) -> tuple[str | None, str | None] | None:
    """(transaction_id, card_id) as strings when both are absent or well-formed, else None."""
    out: list[str | None] = []
    for key in ("transaction_id", "card_id"):
        v = record.get(key)
        if v is None:
            out.append(None)
            continue
        if type(v) is int:
            v = str(v)
        if type(v) is not str or not 0 < len(v) <= MAX_ID_LENGTH:
            return None
        out.append(v)
    return out[0], out[1]
