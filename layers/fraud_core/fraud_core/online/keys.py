"""Every Redis key name and dedupe state, declared once.

Python builds every key; Lua scripts receive them through ``KEYS`` and never concatenate ids
themselves, so the two sides cannot drift apart and no id is ever parsed inside a script. One
exception: the stream's claim script appends the batch name it finds in a ``fraud:seen`` value
(hex it wrote itself) to the ``fraud:published:`` prefix that Python hands it.

    fraud:seen:{transaction_id}   STRING  "<Dedupe state>:<payload fingerprint>[:<batch>]"  TTL dedupe_ttl_seconds
    fraud:published:{batch}       STRING  the batch's results were published: its "pending" transactions are done  TTL dedupe_ttl_seconds
    fraud:txn:{transaction_id}    STRING  JSON result as published            TTL result_ttl_seconds
    fraud:card:{card_id}          HASH    tx_count, amount_sum (card counters) TTL card_counters_ttl_seconds
    fraud:dlq:{topic-partition-offset}  STRING  poison record already dead-lettered  TTL dedupe_ttl_seconds
    fraud:label:{transaction_id}  STRING  JSON latest label: is_fraud, author, at  TTL result_ttl_seconds
    fraud:alert:{transaction_id}  STRING  JSON alert for the console (features, reasons)  TTL result_ttl_seconds
    fraud:recent:{card_id}        LIST    the card's latest scored transactions (compact JSON)  TTL card_counters_ttl_seconds
    fraud:live:{epoch minute}     HASH    scores, decisions and score bins of that minute  TTL LIVE_TTL_SECONDS
    fraud:alerts                  STREAM  recent alerts, newest last (XADD MAXLEN ~ console_alerts_max_len)
    fraud:dead-letters            STREAM  recent dead letters with a preview (XADD MAXLEN ~ console_dead_letters_max_len)
    fraud:labels                  STREAM  the label ledger (fraud_core.online.labels)

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
    """Claimed and counted by the batch the value names, its result stored once scored;
    publishing not yet acknowledged (republish the stored result, or store and publish one when
    that batch stopped before storing) unless that batch's ``fraud:published`` key exists."""
    DONE = "done"
    """Published and acknowledged: a redelivery is a pure duplicate (written as ``pending`` plus a
    published batch; ``done`` values are from before batch markers)."""


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
PUBLISHED = template("published", "a stream batch's results were published")
RESULT = template("txn", "stored score result of a transaction")
CARD = template("card", "card counters: tx_count, amount_sum")
DEAD_LETTER = template("dlq", "poison record already dead-lettered")
PROBE = template("probe", "readiness write probe (the store takes writes)")
LABEL = template("label", "latest label of a transaction, with its author and time")
ALERT = template("alert", "an alert as the console shows it: result, features, challenger")
RECENT = template("recent", "a card's latest scored transactions (console case view)")
LIVE = template("live", "per-minute counts of scores, decisions and score bins (console live panel)")

ALERTS = PREFIX + ":alerts"
"""Stream of recent alerts (one key, capped with an approximate MAXLEN)."""
DEAD_LETTERS = PREFIX + ":dead-letters"
"""Stream of recent dead letters with a preview of their bytes (capped like ALERTS)."""
LIVE_TTL_SECONDS = 2 * 3600
"""A minute bucket outlives the live panel's hour, then expires."""


def seen_parts(value: bytes | str | None) -> tuple[str | None, str | None]:
    """(dedupe state, batch) of a ``fraud:seen`` value as written (a ``pending`` one is done once
    its batch is published: `fraud_core.stream.state.RedisStreamState.dedupe_states` resolves it)."""
    if value is None:
        return None, None
    text = value.decode() if isinstance(value, bytes) else value
    parts = text.split(":")
    return parts[0], parts[2] if len(parts) > 2 else None


CARD_COUNT_FIELD = "tx_count"
CARD_AMOUNT_FIELD = "amount_sum"
