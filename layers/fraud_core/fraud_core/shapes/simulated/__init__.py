"""The simulated card/terminal shape (Le Borgne et al.'s simulator): online card and terminal windows."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
from pydantic import BaseModel

from fraud_core.constraints import fingerprint
from fraud_core.errors import FieldError, InvalidTransactionError
from fraud_core.labels import Label
from fraud_core.shapes.base import DataShape, Prepared
from fraud_core.shapes.simulated.features import CALENDAR_FEATURES, SIMULATED_FEATURE_NAMES
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
    clock_features: ClassVar[tuple[str, ...]] = CALENDAR_FEATURES
    feature_entities: ClassVar[dict[str, str]] = {
        **{f: "card_id" for f in SIMULATED_FEATURE_NAMES if f.startswith("card_")},
        **{f: "terminal_id" for f in SIMULATED_FEATURE_NAMES if f.startswith("terminal_")},
    }
    request_model: ClassVar[type[BaseModel]] = EntityScoreRequest
    shows_features: ClassVar[bool] = True

    def online_state(self, client: Redis | None, *, ttl_seconds: int | None = None) -> Windows:
        if client is None:
            return InMemoryWindows()
        return RedisWindows(client, ttl_seconds=ttl_seconds or DEFAULT_TTL_SECONDS)

    def prepare(
        self,
        payloads: Sequence[Any],
        *,
        manifest: ModelManifest,
        online: Any,
        observe: bool,
        auto_ids: Sequence[str] | None = None,
    ) -> Prepared:
        events: list[CardEvent] = []
        positions: list[int] = []
        errors: dict[int, InvalidTransactionError] = {}
        for i, payload in enumerate(payloads):
            try:
                events.append(parse_event(payload, default_id=auto_ids[i] if auto_ids else None))
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
        prints = [
            fingerprint(str(e.epoch).encode(), e.card.encode(), e.terminal.encode(), repr(e.amount).encode())
            for e in events
        ]
        found: Sequence[list[float] | None] = (
            windows.observe(events, prints) if observe else windows.peek(events)
        )
        kept = [k for k, v in enumerate(found) if v is not None]
        vectors = [found[k] or [] for k in kept]
        names = self.feature_names
        return Prepared(
            features=np.asarray(vectors, dtype=np.float32).reshape(len(vectors), len(names)),
            positions=[positions[k] for k in kept],
            transaction_ids=[events[k].transaction_id for k in kept],
            card_ids=[events[k].card for k in kept],
            amounts=[events[k].amount for k in kept],
            event_times=[float(events[k].epoch) for k in kept],
            fingerprints=[prints[k] for k in kept],
            errors=errors,
            conflicts=[positions[k] for k, v in enumerate(found) if v is None],
            extras=[
                {
                    "terminal_id": events[k].terminal,
                    "tx_datetime": events[k].epoch,
                    "features": dict(zip(names, v, strict=True)),
                }
                for k, v in zip(kept, vectors, strict=True)
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
