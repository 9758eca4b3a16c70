"""The interface of a data shape plug-in, and what it hands to the scorer.

A data shape is one kind of transaction the system can score (the Kaggle PCA schema, the
card/terminal simulated schema, ...). Its plug-in owns everything that differs between kinds:
field names and their constraint table, the request model of the HTTP API, the feature
builder, and the online state its features need. Everything else — scoring, deciding,
explaining, storing, publishing, deduplicating — is shared and never asks which shape it has.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
import numpy.typing as npt
from pydantic import BaseModel

from fraud_core.errors import FieldError, InvalidTransactionError
from fraud_core.labels import Label

if TYPE_CHECKING:
    from redis import Redis

    from fraud_core.manifest import ModelManifest

FeatureMatrix = npt.NDArray[np.float32]


@dataclass(slots=True)
class Prepared:
    """Feature rows of the valid transactions of a batch, and the problems of the others."""

    features: FeatureMatrix
    """``(n_valid, len(shape.feature_names))`` float32, the exact model input."""
    positions: list[int]
    """Position in the input of each valid row."""
    transaction_ids: list[str | None]
    card_ids: list[str | None]
    amounts: list[float]
    """Validated amount of each row (what the card counters add up)."""
    event_times: list[float] = field(default_factory=list)
    """When each transaction happened, in the shape's own clock (epoch seconds, or Kaggle's `Time`)."""
    fingerprints: list[str] = field(default_factory=list)
    """Per row, a hash of its validated content (`constraints.fingerprint`): dedupe compares it."""
    errors: dict[int, InvalidTransactionError] = field(default_factory=dict)
    conflicts: list[int] = field(default_factory=list)
    """Positions whose id the online state already holds with another payload (not scored)."""
    extras: list[dict[str, Any]] | None = None
    """Extra fields per row for the published result (e.g. the terminal id)."""

    @classmethod
    def empty(cls, width: int, errors: dict[int, InvalidTransactionError] | None = None) -> Prepared:
        return cls(np.empty((0, width), dtype=np.float32), [], [], [], [], errors=errors or {})


class DataShape(ABC):
    """One plug-in per data shape; instances are stateless singletons."""

    name: ClassVar[str]
    """The ``schema_name`` of the manifests this plug-in serves."""
    feature_names: ClassVar[tuple[str, ...]]
    """The model input, in order; the manifest must list exactly these."""
    request_model: ClassVar[type[BaseModel]]
    """Body of ``POST /v1/score`` for a model of this shape (built from the constraint table)."""
    shows_features: ClassVar[bool] = False
    """Whether ``/v1/score`` returns the feature vector (when it holds online features)."""
    feature_entities: ClassVar[dict[str, str]] = {}
    """Features aggregated per entity (name → the scoring-log field of the entity id, e.g.
    ``card_id``): one card's transactions are not independent draws, so the monitor counts
    distinct entities, not transactions, as such a feature's sample size."""
    clock_features: ClassVar[tuple[str, ...]] = ()
    """Features read off the clock (hour, weekend): a window shorter than their cycle always
    differs from the reference, so the monitor does not test them for drift."""

    def incompatibility(self, model_features: Sequence[str]) -> list[str]:
        """What a model's feature list asks that this shape cannot build (empty = compatible).
        A model may use any subset of the shape's features, in any order: the scorer selects
        its columns by name."""
        return [f for f in model_features if f not in self.feature_names]

    def online_state(self, client: Redis | None, *, ttl_seconds: int | None = None) -> Any:
        """This shape's online state (Redis when ``client`` is given, else process memory);
        None for a shape whose features need none."""
        return None

    @abstractmethod
    def prepare(
        self,
        payloads: Sequence[Any],
        *,
        manifest: ModelManifest,
        online: Any,
        observe: bool,
        auto_ids: Sequence[str] | None = None,
    ) -> Prepared:
        """Validate payloads and build their feature rows.

        ``observe=True`` (stream): each transaction enters the online state as it is read,
        atomically with its dedupe key, and sees only what came before it; an id the state holds
        with another payload is a conflict, not observed. ``observe=False`` (HTTP): features as
        if each transaction arrived now, changing nothing. ``auto_ids[i]`` is the id of a payload
        that carries none. Raises StoreUnavailableError when the online state cannot be reached.
        """

    def label_error(self, label: Label) -> FieldError | None:
        """Why this shape cannot use ``label`` (None when it can)."""
        return None

    def apply_labels(self, labels: Sequence[Label], *, online: Any) -> int:
        """Feed confirmed labels into the online state; how many changed it (0: labels are not features here)."""
        return 0
