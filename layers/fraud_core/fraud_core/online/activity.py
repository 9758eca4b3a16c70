"""What the analyst console reads: recent alerts, dead letters, per-minute scoring activity and
each card's latest transactions, kept capped in Redis by whoever scores (stream and HTTP).

Writes are one pipelined round trip per batch (never per event) and best-effort: the Kafka
topics and the scoring log stay the record of truth; this is a window onto the last hour.
Keys are declared in :mod:`fraud_core.online.keys`.
"""

from __future__ import annotations

import base64
import math
import threading
import time
from collections import Counter, defaultdict, deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, NamedTuple, Protocol, cast

import orjson

from fraud_core.online import keys
from fraud_core.online.client import redis_call

if TYPE_CHECKING:
    from redis import Redis

    from fraud_core.settings import Settings

DECISIONS = ("approve", "review", "decline")
SCORE_BINS = 10
"""The live histogram's bins: [0, 0.1), [0.1, 0.2), …, [0.9, 1.0]."""
RECENT_FIELDS = ("transaction_id", "fraud_score", "decision", "scored_at", "amount")
"""A card's recent list holds arrays, not objects: a third of the bytes, written per transaction."""
PREVIEW_BYTES = 512
"""How much of a dead letter's original bytes the console keeps to show."""


class ScoredEvent(NamedTuple):
    """One scored transaction as the console needs it (a named tuple: one per scored row)."""

    transaction_id: str
    card_id: str | None
    fraud_score: float
    decision: str
    model_version: str
    scored_at: float
    event_time: float | None = None
    amount: float | None = None
    reasons: Sequence[dict[str, Any]] = ()
    features: dict[str, float] | None = None
    """The feature vector scored (kept for alerts only)."""
    challenger: dict[str, Any] | None = None
    """``{"model_version", "fraud_score"}`` of the shadow challenger, when one is set."""
    source: str = "stream"

    @property
    def alert(self) -> bool:
        return self.decision != "approve"

    def summary(self) -> dict[str, Any]:
        """The compact entry of the alert stream and of a card's recent list."""
        return {
            "transaction_id": self.transaction_id,
            "card_id": self.card_id,
            "fraud_score": self.fraud_score,
            "decision": self.decision,
            "model_version": self.model_version,
            "scored_at": self.scored_at,
            "amount": self.amount,
        }

    def recent(self) -> list[Any]:
        """The compact entry of a card's recent list (:data:`RECENT_FIELDS`, in order)."""
        return [self.transaction_id, self.fraud_score, self.decision, self.scored_at, self.amount]

    def detail(self) -> dict[str, Any]:
        """Everything the case view shows."""
        return {
            **self.summary(),
            "event_time": self.event_time,
            "reasons": self.reasons,
            "features": self.features,
            "challenger": self.challenger,
            "source": self.source,
        }


@dataclass(frozen=True, slots=True)
class DeadLetterEntry:
    record_id: str
    """``topic-partition-offset``."""
    reason: str
    key: bytes | None
    value: bytes
    """The original bytes (the base64 text itself when it was not valid base64)."""
    at: float = field(default_factory=time.time)

    def to_fields(self) -> dict[str, str]:
        return {
            "record_id": self.record_id,
            "reason": self.reason[:1000],
            "key_b64": base64.b64encode((self.key or b"")[:PREVIEW_BYTES]).decode(),
            "size": str(len(self.value)),
            "preview_b64": base64.b64encode(self.value[:PREVIEW_BYTES]).decode(),
            "at": f"{self.at:.3f}",
        }


def score_bin(score: float) -> int:
    """The bin of a score; a score above 1 goes to the last, below 0 or not finite to the first."""
    if 0.0 <= score < 1.0:
        return int(score * SCORE_BINS)
    return SCORE_BINS - 1 if score >= 1.0 and math.isfinite(score) else 0


def minute_counts(events: Iterable[ScoredEvent]) -> dict[int, dict[str, int]]:
    """Per epoch minute: ``n``, one count per decision and per score bin (``b0``…``b9``).

    Events are tallied by (minute, decision, bin) first: a batch has a few dozen such groups
    for a thousand events, and a tuple count per event costs a third of three dict updates."""
    tally = Counter((int(e.scored_at // 60), e.decision, score_bin(e.fraud_score)) for e in events)
    out: dict[int, dict[str, int]] = {}
    for (minute, decision, b), n in tally.items():
        bucket = out.setdefault(minute, {})
        for name in ("n", decision, f"b{b}"):
            bucket[name] = bucket.get(name, 0) + n
    return out


@dataclass(frozen=True, slots=True)
class MinuteBucket:
    minute: int
    """Epoch minute (seconds // 60)."""
    counts: dict[str, int]


ActivityWrite = Callable[[Sequence[DeadLetterEntry]], None]
"""Writes what :meth:`ActivityLog.prepare` prepared, with the given dead letters (one round trip)."""


class ActivityLog(Protocol):
    """Where scoring paths leave what the console shows (one round trip per call)."""

    def record(self, scored: Sequence[ScoredEvent], dead_letters: Sequence[DeadLetterEntry] = ()) -> None:
        """Raise StoreUnavailableError when the store cannot take it (callers log and go on)."""
        ...

    def prepare(self, scored: Sequence[ScoredEvent]) -> ActivityWrite:
        """Everything :meth:`record` does for ``scored`` except the write, done now (the stream
        prepares while Redis finishes its claim script, and writes once the batch is published)."""
        ...


class ActivityView(Protocol):
    """What the console reads back (every call is one round trip)."""

    def recent_alerts(self, count: int) -> list[dict[str, Any]]:
        """Newest first."""
        ...

    def alert(self, transaction_id: str) -> dict[str, Any] | None: ...

    def dead_letters(self, count: int) -> list[dict[str, str]]:
        """Newest first."""
        ...

    def live(self, *, now: float, minutes: int = 60) -> list[MinuteBucket]:
        """The last ``minutes`` minute buckets, oldest first (empty minutes included)."""
        ...

    def card_recent(self, card_id: str, count: int) -> list[dict[str, Any]]:
        """The card's latest scored transactions, newest first."""
        ...


@dataclass(frozen=True, slots=True)
class ActivityLimits:
    alerts: int = 10_000
    dead_letters: int = 1_000
    card_recent: int = 10
    """0: keep no per-card list (saves one pipelined command per transaction)."""
    detail_ttl_seconds: int = 7 * 86_400
    card_ttl_seconds: int = 30 * 86_400


_RECENT_LUA = """
local keep, ttl = tonumber(ARGV[1]), ARGV[2]
for _, card in ipairs(cjson.decode(ARGV[3])) do
  if redis.call('LPUSH', card[1], unpack(card[2])) > keep then
    redis.call('LTRIM', card[1], 0, keep - 1)
  end
  redis.call('EXPIRE', card[1], ttl)
end
return 0
"""
"""Push each card's newest summaries (at most ``keep``, oldest first) onto its list, trim it when
it outgrew ``keep`` (most cards are seen less often than that), TTL."""

_Entries = list[tuple[bytes, dict[bytes, bytes]]]
"""Stream entries as redis-py returns them (the client does not decode responses)."""


class RedisActivity:
    """Both sides on Redis: capped streams (XADD MAXLEN ~), TTL'd keys, one pipeline per call."""

    def __init__(self, client: Redis, limits: ActivityLimits = ActivityLimits()) -> None:
        self.client = client
        self.limits = limits

    def record(self, scored: Sequence[ScoredEvent], dead_letters: Sequence[DeadLetterEntry] = ()) -> None:
        self.prepare(scored)(dead_letters)

    def prepare(self, scored: Sequence[ScoredEvent]) -> ActivityWrite:
        lim = self.limits
        pipe = self.client.pipeline(transaction=False)
        for e in scored:
            if e.alert:
                summary = orjson.dumps(e.summary())
                pipe.xadd(keys.ALERTS, {"e": summary}, maxlen=lim.alerts, approximate=True)
                pipe.set(keys.ALERT(e.transaction_id), orjson.dumps(e.detail()), ex=lim.detail_ttl_seconds)
        if lim.card_recent:
            cards: dict[str, list[ScoredEvent]] = defaultdict(list)
            for e in scored:
                if e.card_id:
                    cards[e.card_id].append(e)
            if cards:
                # One EVAL in the pipeline instead of LPUSH + LTRIM + EXPIRE per card: three
                # commands per card cost ~31 ms of client time per 1,000-event batch, the script
                # ~3 ms (measured). Keys ride in the JSON argument, as in the stream's claim
                # script (`fraud_core.stream.state`); the script parses only that structure.
                payload = orjson.dumps(
                    [
                        [
                            keys.RECENT(card),
                            [orjson.dumps(e.recent()).decode() for e in events[-lim.card_recent :]],
                        ]
                        for card, events in cards.items()
                    ]
                )
                pipe.eval(_RECENT_LUA, 0, lim.card_recent, lim.card_ttl_seconds, payload)
        for minute, counts in minute_counts(scored).items():
            key = keys.LIVE(str(minute))
            for name, n in counts.items():
                pipe.hincrby(key, name, n)
            pipe.expire(key, keys.LIVE_TTL_SECONDS)

        def write(dead_letters: Sequence[DeadLetterEntry]) -> None:
            for d in dead_letters:
                pipe.xadd(keys.DEAD_LETTERS, d.to_fields(), maxlen=lim.dead_letters, approximate=True)  # type: ignore[arg-type]
            if len(pipe):
                redis_call("console activity", pipe.execute)

        return write

    def recent_alerts(self, count: int) -> list[dict[str, Any]]:
        rows = cast(
            _Entries, redis_call("XREVRANGE alerts", self.client.xrevrange, keys.ALERTS, "+", "-", count)
        )
        return [dict(orjson.loads(fields[b"e"])) for _, fields in rows]

    def alert(self, transaction_id: str) -> dict[str, Any] | None:
        raw = redis_call("GET alert", self.client.get, keys.ALERT(transaction_id))
        return None if raw is None else dict(orjson.loads(raw))

    def dead_letters(self, count: int) -> list[dict[str, str]]:
        rows = cast(
            _Entries,
            redis_call("XREVRANGE dead letters", self.client.xrevrange, keys.DEAD_LETTERS, "+", "-", count),
        )
        return [{k.decode(): v.decode() for k, v in fields.items()} for _, fields in rows]

    def live(self, *, now: float, minutes: int = 60) -> list[MinuteBucket]:
        last = int(now // 60)
        span = range(last - minutes + 1, last + 1)
        pipe = self.client.pipeline(transaction=False)
        for m in span:
            pipe.hgetall(keys.LIVE(str(m)))
        rows = redis_call("live buckets", pipe.execute)
        return [
            MinuteBucket(m, {k.decode(): int(v) for k, v in row.items()})
            for m, row in zip(span, rows, strict=True)
        ]

    def card_recent(self, card_id: str, count: int) -> list[dict[str, Any]]:
        rows = redis_call("LRANGE recent", self.client.lrange, keys.RECENT(card_id), 0, count - 1)
        return [dict(zip(RECENT_FIELDS, orjson.loads(r), strict=True)) for r in rows]


class InMemoryActivity:
    """Process memory (embedded mode without Redis) and the unit-test fake."""

    def __init__(self, limits: ActivityLimits = ActivityLimits()) -> None:
        self.limits = limits
        self._alerts: deque[dict[str, Any]] = deque(maxlen=limits.alerts)
        self._details: dict[str, dict[str, Any]] = {}
        self._dead: deque[dict[str, str]] = deque(maxlen=limits.dead_letters)
        self._live: dict[int, dict[str, int]] = defaultdict(lambda: defaultdict(int))
        self._recent: dict[str, deque[dict[str, Any]]] = {}
        self._lock = threading.Lock()

    def record(self, scored: Sequence[ScoredEvent], dead_letters: Sequence[DeadLetterEntry] = ()) -> None:
        with self._lock:
            for e in scored:
                if e.alert:
                    self._alerts.append(e.summary())
                    self._details[e.transaction_id] = e.detail()
                if e.card_id and self.limits.card_recent:
                    recent = self._recent.setdefault(e.card_id, deque(maxlen=self.limits.card_recent))
                    recent.appendleft(dict(zip(RECENT_FIELDS, e.recent(), strict=True)))
            for minute, counts in minute_counts(scored).items():
                for name, n in counts.items():
                    self._live[minute][name] += n
            self._dead.extend(d.to_fields() for d in dead_letters)

    def prepare(self, scored: Sequence[ScoredEvent]) -> ActivityWrite:
        return lambda dead_letters: self.record(scored, dead_letters)

    def recent_alerts(self, count: int) -> list[dict[str, Any]]:
        with self._lock:
            return list(reversed(self._alerts))[:count]

    def alert(self, transaction_id: str) -> dict[str, Any] | None:
        return self._details.get(transaction_id)

    def dead_letters(self, count: int) -> list[dict[str, str]]:
        with self._lock:
            return list(reversed(self._dead))[:count]

    def live(self, *, now: float, minutes: int = 60) -> list[MinuteBucket]:
        last = int(now // 60)
        with self._lock:
            return [MinuteBucket(m, dict(self._live.get(m, {}))) for m in range(last - minutes + 1, last + 1)]

    def card_recent(self, card_id: str, count: int) -> list[dict[str, Any]]:
        with self._lock:
            return list(self._recent.get(card_id, ()))[:count]


def activity_log(client: Redis | None, settings: Settings) -> RedisActivity | InMemoryActivity:
    """The console's window with the limits of ``settings``: in Redis, or in memory without it."""
    limits = ActivityLimits(
        alerts=settings.console_alerts_max_len,
        dead_letters=settings.console_dead_letters_max_len,
        card_recent=settings.console_card_recent,
        detail_ttl_seconds=settings.result_ttl_seconds,
        card_ttl_seconds=settings.card_counters_ttl_seconds,
    )
    return InMemoryActivity(limits) if client is None else RedisActivity(client, limits)


def event_from_row(
    row: dict[str, Any],
    *,
    reasons: list[dict[str, Any]],
    amount: float | None,
    features: dict[str, float] | None,
    source: str,
) -> ScoredEvent:
    """The console's view of a scoring-log row (:func:`fraud_core.event_log.scoring_row`); an
    alert keeps its ``features`` by name."""
    decision = row["decision"]
    alert = decision != "approve"
    return ScoredEvent(  # positional: one per scored transaction, in field order
        row["transaction_id"],
        row["card_id"],
        row["fraud_score"],
        decision,
        row["model_version"],
        row["scored_at"],
        row["event_time"],
        amount,
        reasons if alert else (),
        features if alert else None,
        row.get("challenger"),
        source,
    )


def record_quietly(
    activity: ActivityLog | None,
    scored: Sequence[ScoredEvent],
    dead_letters: Sequence[DeadLetterEntry] = (),
    *,
    logger: Any,
) -> None:
    """``activity.record(scored, dead_letters)``; a store failure is logged, never raised: the
    console's window must not fail (or redeliver) the scoring it watches."""
    if activity is not None:
        write_quietly(activity.prepare(scored), dead_letters, logger=logger)


def write_quietly(write: ActivityWrite, dead_letters: Sequence[DeadLetterEntry], *, logger: Any) -> None:
    """``write(dead_letters)`` of a prepared write, a failure logged as by :func:`record_quietly`."""
    from fraud_core.errors import StoreUnavailableError

    try:
        write(dead_letters)
    except StoreUnavailableError as exc:
        logger.warning("console activity not recorded", extra={"error": str(exc)})
