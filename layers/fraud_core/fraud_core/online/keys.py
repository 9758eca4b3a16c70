"""Every Redis key name and dedupe state, declared once.

Python builds every key; Lua scripts receive them through ``KEYS`` and never concatenate ids
themselves, so the two sides cannot drift apart and no id is ever parsed inside a script.

    fraud:seen:{transaction_id}   STRING  "<Dedupe state>:<payload fingerprint>"  TTL dedupe_ttl_seconds
    fraud:txn:{transaction_id}    STRING  JSON result as published            TTL result_ttl_seconds
    fraud:card:{card_id}          HASH    tx_count, amount_sum (card counters) TTL card_counters_ttl_seconds
    fraud:dlq:{topic-partition-offset}  STRING  poison record already dead-lettered  TTL dedupe_ttl_seconds

A data shape with online features declares its own templates here through :func:`template`
(the simulated shape's windows, for instance), so two shapes can never claim the same name.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

PREFIX = "fraud"
_KINDS: dict[str, str] = {}


class Dedupe(StrEnum):
    """States of ``fraud:seen:{id}``: how far an earlier delivery of a transaction got."""

    OBSERVED = "observed"
    """Its online features were computed (windows updated); not yet scored and stored."""
    PENDING = "pending"
    """Scored, stored and counted; publishing not yet acknowledged (republish the stored result)."""
    DONE = "done"
    """Published and acknowledged: a redelivery is a pure duplicate."""


@dataclass(frozen=True, slots=True)
class KeyTemplate:
    """``fraud:<kind>:<id>``; call it with the id."""

    kind: str
    prefix: str

    def __call__(self, ident: str) -> str:
        return self.prefix + ident


def template(kind: str, meaning: str) -> KeyTemplate:
    """Declare a key family once; a second declaration of the same kind is a bug."""
    if kind in _KINDS:
        raise ValueError(f"redis key kind {kind!r} already declared for {_KINDS[kind]!r}")
    _KINDS[kind] = meaning
    return KeyTemplate(kind, f"{PREFIX}:{kind}:")


SEEN = template("seen", "dedupe state of a transaction")
RESULT = template("txn", "stored score result of a transaction")
CARD = template("card", "card counters: tx_count, amount_sum")
DEAD_LETTER = template("dlq", "poison record already dead-lettered")
PROBE = template("probe", "readiness write probe (the store takes writes)")


def seen_state(value: bytes | str | None) -> str | None:
    """The dedupe state part of a ``fraud:seen`` value (values written before fingerprints had none)."""
    if value is None:
        return None
    text = value.decode() if isinstance(value, bytes) else value
    return text.split(":", 1)[0]


CARD_COUNT_FIELD = "tx_count"
CARD_AMOUNT_FIELD = "amount_sum"
