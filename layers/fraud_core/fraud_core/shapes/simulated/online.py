"""Online windows of the simulated shape's cards and terminals, in Redis (Lua) and in memory.

Key layout (every key from `fraud_core.online.keys`; TTL on every key; windows trimmed as they slide)::

    fraud:cw:{card}       ZSET  transaction ids, score = epoch seconds   (last 30 d + lateness)
    fraud:ca:{card}       HASH  transaction id → amount, same members as fraud:cw
    fraud:tw:{terminal}   ZSET  transaction ids, score = epoch seconds   (last 37 d + lateness)
    fraud:tf:{terminal}   ZSET  labelled-fraud transaction ids, score = epoch seconds
    fraud:feat:{txid}     STRING  JSON window statistics the transaction was scored with

Observing a transaction adds it to its card's and terminal's windows and computes its features
in the same script, atomically with its dedupe key: a redelivered transaction gets back the
features it was first computed with and changes nothing. Labels add the transaction to its
terminal's fraud set (idempotent: ZADD of the same member). Events later than the newest seen
by more than ``LATENESS_SECONDS`` still count, but windows are trimmed with that margin, so
memory stays bounded.

Every key is built in Python and handed to the scripts inside their one JSON argument (not as
``KEYS``: with ~6 keys per transaction, redis-py's per-argument packing made a 1,000-event batch
~8-12 ms slower, measured). No id is parsed inside Lua: amounts live in their own hash.
"""

from __future__ import annotations

import bisect
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from statistics import median
from typing import TYPE_CHECKING, Protocol

import orjson

from fraud_core.labels import Label
from fraud_core.online import keys
from fraud_core.online.client import redis_call
from fraud_core.shapes.simulated.features import (
    DAY,
    LABEL_DELAY_DAYS,
    LAST_K,
    MAX_CARD_WINDOW,
    MAX_TERMINAL_WINDOW,
    NO_KNOWN_FRAUD_DAYS,
    OUTLIER_RULES,
    WINDOW_DAYS,
    card_window,
    feature_vector,
    over,
    terminal_window,
)
from fraud_core.shapes.simulated.fields import CardEvent
from fraud_core.shapes.simulated.lua import LABEL_LUA, OBSERVE_LUA, PEEK_LUA

if TYPE_CHECKING:
    from redis import Redis

LATENESS_SECONDS = 3_600
DEFAULT_TTL_SECONDS = MAX_TERMINAL_WINDOW + 7 * DAY

CARD_WINDOW = keys.template("cw", "card window: transaction ids by time")
CARD_AMOUNTS = keys.template("ca", "card window amounts: transaction id -> amount")
TERMINAL_WINDOW = keys.template("tw", "terminal window: transaction ids by time")
TERMINAL_FRAUDS = keys.template("tf", "terminal's labelled frauds: transaction ids by time")
WINDOW_STATS = keys.template("feat", "window statistics a transaction was scored with")


class Windows(Protocol):
    """Online windows of cards and terminals."""

    def observe(self, events: Sequence[CardEvent], fingerprints: Sequence[str]) -> list[list[float] | None]:
        """Feature vector per event, each event entering the windows as it is read (idempotent);
        None for an id already observed with another fingerprint (a conflict: nothing changes)."""
        ...

    def peek(self, events: Sequence[CardEvent]) -> list[list[float]]:
        """Features as if each event were observed now, changing nothing (the HTTP API's view)."""
        ...

    def add_labels(self, labels: Sequence[Label]) -> int:
        """Fraud labels join their terminal's fraud set, legitimate ones leave it (a correction);
        how many labels changed a set."""
        ...


def terminal_labels(epoch: int, known: Sequence[tuple[int, str]], frauds: set[str]) -> list[float]:
    """The terminal's label features from its known transactions, newest first (the Lua twin)."""
    flags = [tid in frauds for _, tid in known]
    out: list[float] = [over(sum(flags[:k]), min(k, len(flags))) for k in LAST_K]
    latest = next((t for (t, _), f in zip(known, flags, strict=True) if f), None)
    out.append(NO_KNOWN_FRAUD_DAYS if latest is None else (epoch - latest) / DAY)
    streak = next((j for j, f in enumerate(flags) if not f), len(flags))
    before = known[streak][0] if streak < len(known) else epoch - MAX_TERMINAL_WINDOW
    out += [float(streak), (epoch - known[streak - 1][0]) / DAY if streak else 0.0]
    out.append((epoch - before) / DAY if streak else 0.0)
    return out


def _vector(event: CardEvent, encoded: bytes | str) -> list[float]:
    stats = orjson.loads(encoded)
    n = len(WINDOW_DAYS)
    return feature_vector(event.epoch, event.amount, stats[:n], stats[n : 2 * n], stats[2 * n])


_WINDOW_ARGS: list[str | int] = [json.dumps(list(WINDOW_DAYS)), LABEL_DELAY_DAYS * DAY, MAX_CARD_WINDOW]


def _placed(labels: Sequence[Label]) -> list[tuple[str, str, int, bool]]:
    """(terminal, transaction id, epoch, is fraud) of the labels that name their terminal and time."""
    return [
        (lb.terminal_id, lb.transaction_id, lb.epoch, lb.is_fraud)
        for lb in labels
        if lb.terminal_id is not None and lb.epoch is not None
    ]


class RedisWindows:
    """Online windows in Redis; one script call observes a whole batch."""

    def __init__(self, client: Redis, *, ttl_seconds: int = DEFAULT_TTL_SECONDS) -> None:
        self.client = client
        self.ttl = ttl_seconds
        self._observe = client.register_script(OBSERVE_LUA)
        self._peek = client.register_script(PEEK_LUA)
        self._label = client.register_script(LABEL_LUA)

    def observe(self, events: Sequence[CardEvent], fingerprints: Sequence[str]) -> list[list[float] | None]:
        if not events:
            return []
        items = orjson.dumps(
            [
                [
                    keys.SEEN(e.transaction_id),
                    WINDOW_STATS(e.transaction_id),
                    CARD_WINDOW(e.card),
                    CARD_AMOUNTS(e.card),
                    TERMINAL_WINDOW(e.terminal),
                    TERMINAL_FRAUDS(e.terminal),
                    e.transaction_id,
                    e.epoch,
                    repr(e.amount),
                    fp,
                ]
                for e, fp in zip(events, fingerprints, strict=True)
            ]
        )
        args = [
            *_WINDOW_ARGS,
            self.ttl,
            LATENESS_SECONDS,
            MAX_TERMINAL_WINDOW,
            keys.Dedupe.OBSERVED.value,
            items,
        ]
        rows = redis_call("observe script", self._observe, [], args)
        return [
            None if state == b"conflict" else _vector(e, encoded)
            for e, (state, encoded) in zip(events, rows, strict=True)
        ]

    def peek(self, events: Sequence[CardEvent]) -> list[list[float]]:
        if not events:
            return []
        items = orjson.dumps(
            [
                [
                    CARD_WINDOW(e.card),
                    CARD_AMOUNTS(e.card),
                    TERMINAL_WINDOW(e.terminal),
                    TERMINAL_FRAUDS(e.terminal),
                    e.epoch,
                    repr(e.amount),
                ]
                for e in events
            ]
        )
        rows = redis_call("peek script", self._peek, [], [*_WINDOW_ARGS, items])
        return [_vector(e, encoded) for e, encoded in zip(events, rows, strict=True)]

    def add_labels(self, labels: Sequence[Label]) -> int:
        placed = _placed(labels)
        if not placed:
            return 0
        items = orjson.dumps([[TERMINAL_FRAUDS(term), tid, t, int(fraud)] for term, tid, t, fraud in placed])
        return int(redis_call("label script", self._label, [], [self.ttl, items]))


@dataclass
class InMemoryWindows:
    """The same semantics in plain Python: the reference for property tests and the embedded default."""

    cards: dict[str, list[tuple[int, int, str, float]]] = field(default_factory=dict)
    terminals: dict[str, list[tuple[int, int, str]]] = field(default_factory=dict)
    frauds: dict[str, set[tuple[int, str]]] = field(default_factory=dict)
    features: dict[str, list[float]] = field(default_factory=dict)
    fingerprints: dict[str, str] = field(default_factory=dict)
    _seq: int = 0

    def _vector(self, e: CardEvent, *, extra: float | None) -> list[float]:
        card_stats = []
        for w in WINDOW_DAYS:
            lo, hi = card_window(e.epoch, w)
            inside = [a for t, _, _, a in self.cards.get(e.card, []) if lo < t <= hi]
            if extra is not None:
                inside.append(extra)
            card_stats.append((float(len(inside)), float(sum(inside))))
        term_stats = []
        fraud_ids = {tid for _, tid in self.frauds.get(e.terminal, set())}
        for w in WINDOW_DAYS:
            lo, hi = terminal_window(e.epoch, w)
            n = sum(1 for t, _, _ in self.terminals.get(e.terminal, []) if lo < t <= hi)
            f = sum(1 for t, _ in self.frauds.get(e.terminal, set()) if lo < t <= hi)
            term_stats.append((float(n), float(f)))
        lo, hi = card_window(e.epoch, max(WINDOW_DAYS))
        month = [a for t, _, _, a in self.cards.get(e.card, []) if lo < t <= hi]
        if extra is not None:
            month.append(extra)
        mid = median(month) if month else 0.0
        me = e.transaction_id if extra is None else None  # observed: itself is in the window
        rules = [(factor * mid, card_window(e.epoch, days)[0]) for factor, days in OUTLIER_RULES]
        outliers = [
            float(
                sum(
                    1
                    for t, _, tid, a in self.cards.get(e.card, [])
                    if start < t <= hi and a > limit and tid != me
                )
            )
            for limit, start in rules
        ]
        known = sorted(
            (
                (t, tid)
                for t, _, tid in self.terminals.get(e.terminal, [])
                if lo - LABEL_DELAY_DAYS * DAY < t <= hi - LABEL_DELAY_DAYS * DAY
            ),
            reverse=True,
        )
        extended = [
            mid,
            max(month, default=0.0),
            *outliers,
            *terminal_labels(e.epoch, known, fraud_ids),
        ]
        return feature_vector(e.epoch, e.amount, card_stats, term_stats, extended)

    def observe(self, events: Sequence[CardEvent], fingerprints: Sequence[str]) -> list[list[float] | None]:
        out: list[list[float] | None] = []
        for e, fp in zip(events, fingerprints, strict=True):
            if e.transaction_id not in self.features:
                self._seq += 1
                bisect.insort(
                    self.cards.setdefault(e.card, []), (e.epoch, self._seq, e.transaction_id, e.amount)
                )
                bisect.insort(
                    self.terminals.setdefault(e.terminal, []), (e.epoch, self._seq, e.transaction_id)
                )
                self.features[e.transaction_id] = self._vector(e, extra=None)
                self.fingerprints[e.transaction_id] = fp
            elif self.fingerprints.get(e.transaction_id, fp) != fp:
                out.append(None)
                continue
            out.append(self.features[e.transaction_id])
        return out

    def peek(self, events: Sequence[CardEvent]) -> list[list[float]]:
        return [self._vector(e, extra=e.amount) for e in events]

    def add_labels(self, labels: Sequence[Label]) -> int:
        changed = 0
        for term, tid, t, fraud in _placed(labels):
            members = self.frauds.setdefault(term, set())
            before = len(members)
            if fraud:
                members.add((t, tid))
            else:
                members.difference_update({m for m in members if m[1] == tid})
            changed += len(members) != before
        return changed
