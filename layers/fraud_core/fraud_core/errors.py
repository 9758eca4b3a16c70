"""Typed errors raised by the scoring core, each carrying a message a caller can act on."""

from __future__ import annotations

from dataclasses import dataclass


class FraudCoreError(Exception):
    """Base class for every error the core raises on purpose."""


@dataclass(frozen=True, slots=True)
class FieldError:
    """One problem with one field of one transaction."""

    field: str
    message: str

    def __str__(self) -> str:
        return f"{self.field}: {self.message}"


class InvalidTransactionError(FraudCoreError, ValueError):
    """A transaction cannot be scored as given (missing field, wrong type, NaN, unknown schema...)."""

    def __init__(self, errors: list[FieldError], *, index: int | None = None) -> None:
        self.errors = errors
        self.index = index
        where = f"transaction {index}: " if index is not None else ""
        super().__init__(where + "; ".join(str(e) for e in errors))


class ModelUnavailableError(FraudCoreError):
    """No usable model: nothing published yet, or the registry cannot be read."""


class ArtifactIntegrityError(ModelUnavailableError):
    """An artifact file is missing or its sha256 differs from the manifest: refused before loading."""


class IncompatibleModelError(ModelUnavailableError):
    """The model expects features this core cannot build (training/serving skew guard)."""


class StoreUnavailableError(FraudCoreError):
    """The online store failed: unreachable, timed out, or refused the command (OOM, script error)."""


class StoreRejectedError(StoreUnavailableError):
    """The store refused a command because of the data it touched (a script error, a key of the
    wrong type): retrying the same batch would fail again, so the stream isolates the record."""


class SinkUnavailableError(FraudCoreError):
    """The broker did not acknowledge what we published."""
