"""The vocabulary of a data shape's constraint table: one table per shape, read by the pydantic
models of the HTTP API and by the numpy fast path of the stream alike."""

from __future__ import annotations

import hashlib
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated, Any

import numpy as np
import numpy.typing as npt
from pydantic import AfterValidator, Field, FiniteFloat, Strict

from fraud_core.errors import FieldError

MAX_ID_LENGTH = 128
ID_CHARACTERS = "A-Za-z0-9_.:@/+=-"
_ID = re.compile(f"[{ID_CHARACTERS}]{{1,{MAX_ID_LENGTH}}}")

Identifier = Annotated[str, Field(min_length=1, max_length=MAX_ID_LENGTH, pattern=f"^[{ID_CHARACTERS}]+$")]
"""An id as the API accepts it: a JSON string of 1..128 letters, digits and ``_.:@/+=-``."""

MAX_EPOCH_SECONDS = 10**11
"""Year 5138: later times are client bugs (and would overflow the model's float32 inputs' meaning)."""

AUTO_ID_PREFIX = "#"
"""Ids the stream gives records that carry none (``#topic-partition-offset``): ``#`` is outside the
client alphabet, so no client can send, and so pre-claim, an id the stream will generate."""


def fingerprint(*parts: bytes) -> str:
    """16 hex characters identifying a transaction's content: the same id arriving with another
    payload is an id conflict, not a duplicate."""
    return hashlib.blake2b(b"\x1f".join(parts), digest_size=8).hexdigest()


EpochSeconds = Annotated[int, Field(ge=0, le=MAX_EPOCH_SECONDS, strict=True)]


def _bounded(moment: datetime) -> datetime:
    epoch = _epoch_of(moment)
    if not 0 <= epoch <= MAX_EPOCH_SECONDS:
        raise ValueError(f"must lie between 1970 and year 5138, got {moment.isoformat()}")
    return moment


def _epoch_of(moment: datetime) -> int:
    """Epoch seconds; a time without a zone is UTC, whatever the machine's zone."""
    return int((moment if moment.tzinfo else moment.replace(tzinfo=UTC)).timestamp())


Moment = Annotated[datetime, AfterValidator(_bounded)]
"""An ISO-8601 time as the API accepts it, within the same bounds as :data:`EpochSeconds`."""


def id_error(value: Any) -> str | None:
    """Why ``value`` is not an id (None when it is one). Same rule as :data:`Identifier`."""
    if type(value) is not str:
        return f"expected a string id, got {type(value).__name__}"
    if not 0 < len(value) <= MAX_ID_LENGTH:
        return f"must be 1 to {MAX_ID_LENGTH} characters"
    if _ID.fullmatch(value) is None:
        return f"may only contain letters, digits and {ID_CHARACTERS[6:]!r}"
    return None


def is_id(value: Any) -> bool:
    """The fast check of the stream's hot loop (same rule as :func:`id_error`)."""
    return type(value) is str and _ID.fullmatch(value) is not None


@dataclass(frozen=True, slots=True)
class Bounds:
    """A finite number in ``[lo, hi]``."""

    lo: float
    hi: float

    def annotation(self, *, optional: bool = False) -> Any:
        """The pydantic type: strict (``"1.5"`` and ``true`` are refused), finite, bounded."""
        number = Annotated[FiniteFloat, Strict(), Field(ge=self.lo, le=self.hi)]
        return number | None if optional else number

    def error(self, value: Any) -> str | None:
        if type(value) not in (int, float):
            return f"expected a number, got {type(value).__name__}"
        if not math.isfinite(value):
            return "must be a finite number (no NaN or Infinity)"
        if not self.lo <= value <= self.hi:
            return f"must be between {_plain(self.lo)} and {_plain(self.hi)}, got {value:g}"
        return None


def _plain(x: float) -> str:
    return f"{int(x):,}" if float(x).is_integer() else f"{x:g}"


def bounds_arrays(
    table: Mapping[str, Bounds], fields: tuple[str, ...]
) -> tuple[npt.NDArray[np.float64], ...]:
    """(lo, hi) rows in ``fields`` order, for a vectorized range check of a whole batch."""
    return (
        np.array([table[f].lo for f in fields], dtype=np.float64),
        np.array([table[f].hi for f in fields], dtype=np.float64),
    )


def epoch_seconds(value: Any) -> int | str:
    """Epoch seconds from an integer or an ISO-8601 string within 1970..5138; a message otherwise."""
    epoch: int | None = value if type(value) is int else None
    if isinstance(value, str):
        try:
            epoch = _epoch_of(datetime.fromisoformat(value.replace("Z", "+00:00")))
        except (ValueError, OverflowError):
            epoch = None
    if epoch is not None and 0 <= epoch <= MAX_EPOCH_SECONDS:
        return epoch
    return (
        f"expected epoch seconds (integer) or an ISO-8601 time between 1970 and year 5138, got {value!r:.50}"
    )


def diagnose_ids(
    record: Mapping[str, Any], names: tuple[str, ...], *, required: tuple[str, ...] = ()
) -> list[FieldError]:
    """Field errors of the id fields ``names`` (absent is fine unless ``required``)."""
    errors = []
    for name in names:
        if record.get(name) is None:
            if name in required:
                errors.append(FieldError(name, "field required"))
            continue
        problem = id_error(record[name])
        if problem:
            errors.append(FieldError(name, problem))
    return errors
