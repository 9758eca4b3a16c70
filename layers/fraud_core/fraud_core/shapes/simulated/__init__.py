"""The simulated card/terminal shape (Le Borgne et al.'s simulator): online card and terminal windows."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
from pydantic import BaseModel

from fraud_core.errors import FieldError, InvalidTransactionError
from fraud_core.labels import Label
from fraud_core.shapes.base import DataShape, Prepared
from fraud_core.shapes.simulated.features import SIMULATED_FEATURE_NAMES
from fraud_core.shapes.simulated.fields import CardEvent, EntityScoreRequest, parse_event
from fraud_core.shapes.simulated.online import DEFAULT_TTL_SECONDS, InMemoryWindows, RedisWindows, Windows

if TYPE_CHECKING:
    from redis import Redis

    from fraud_core.manifest import ModelManifest

__all__ = ["SIMULATED", "CardEvent", "InMemoryWindows", "RedisWindows", "SimulatedShape", "Windows"]


class SimulatedShape(DataShape):
    """Features from the card's and terminal's online windows, kept in Redis by the stream function."""

    name: ClassVar[str] = "simulated"
    feature_names: ClassVar[tuple[str, ...]] = SIMULATED_FEATURE_NAMES
    request_model: ClassVar[type[BaseModel]] = EntityScoreRequest
    shows_features: ClassVar[bool] = True

    def online_state(self, client: Redis | None, *, ttl_seconds: int | None = None) -> Windows:
        if client is None:
            return InMemoryWindows()
        return RedisWindows(client, ttl_seconds=ttl_seconds or DEFAULT_TTL_SECONDS)

    def prepare(
        self, payloads: Sequence[Any], *, manifest: ModelManifest, online: Any, observe: bool
    ) -> Prepared:
        events: list[CardEvent] = []
        positions: list[int] = []
        errors: dict[int, InvalidTransactionError] = {}
        for i, payload in enumerate(payloads):
            try:
                events.append(parse_event(payload))
            except InvalidTransactionError as exc:
                errors[i] = InvalidTransactionError(exc.errors, index=i)
                continue
            positions.append(i)
        if not events:
            return Prepared.empty(len(self.feature_names), errors)
        if online is None:
            raise ValueError(
                "the simulated shape reads online card and terminal windows: pass its online state"
            )
        windows: Windows = online
        vectors = windows.observe(events) if observe else windows.peek(events)
        names = self.feature_names
        return Prepared(
            features=np.asarray(vectors, dtype=np.float32),
            positions=positions,
            transaction_ids=[e.transaction_id for e in events],
            card_ids=[e.card for e in events],
            amounts=[e.amount for e in events],
            errors=errors,
            extras=[
                {"terminal_id": e.terminal, "features": dict(zip(names, v, strict=True))}
                for e, v in zip(events, vectors, strict=True)
            ],
        )

    def label_error(self, label: Label) -> FieldError | None:
        if label.terminal_id is None:
            return FieldError(
                "terminal_id", "field required: this model's terminal risk is built from labels"
            )
        return None

    def apply_labels(self, labels: Sequence[Label], *, online: Any) -> int:
        windows: Windows = online
        return windows.add_labels(labels)


SIMULATED = SimulatedShape()
