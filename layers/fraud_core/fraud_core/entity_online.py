"""Online computation of the simulated schema's features, in Redis (Lua) and in memory.

Key layout (TTL on every key; windows trimmed as they slide)::

    fraud:cw:{card}       ZSET  member "{txid}|{amount}", score = epoch seconds   (last 30 d + lateness)
    fraud:tw:{terminal}   ZSET  member "{txid}",          score = epoch seconds   (last 37 d + lateness)
    fraud:tf:{terminal}   ZSET  member "{txid}",          score = epoch seconds   (labelled frauds)
    fraud:feat:{txid}     STRING JSON feature vector the transaction was scored with

Observing a transaction adds it to its card's and terminal's windows and computes its features
in the same script, atomically with the dedupe key: a redelivered transaction gets back the
features it was first computed with and changes nothing. Labels add the transaction to its
terminal's fraud set (idempotent: ZADD of the same member). Events later than the newest seen by
more than ``LATENESS_SECONDS`` still count, but windows are trimmed with that margin, so memory
stays bounded.
"""

from __future__ import annotations

import bisect
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from functools import cache
from typing import TYPE_CHECKING, Any, Protocol

import orjson

from fraud_core.entity_features import (
    DAY,
    LABEL_DELAY_DAYS,
    SIMULATED_FEATURE_NAMES,
    WINDOW_DAYS,
    calendar,
    card_window,
    risk,
    terminal_window,
)
from fraud_core.stores import KEY_PREFIX, StoreUnavailableError

if TYPE_CHECKING:
    from redis import Redis

LATENESS_SECONDS = 3_600
MAX_CARD_WINDOW = max(WINDOW_DAYS) * DAY
MAX_TERMINAL_WINDOW = (LABEL_DELAY_DAYS + max(WINDOW_DAYS)) * DAY


@dataclass(frozen=True, slots=True)
class EntityEvent:
    transaction_id: str
    epoch: int
    card: str
    terminal: str
    amount: float


@dataclass(frozen=True, slots=True)
class Label:
    transaction_id: str
    epoch: int
    terminal: str
    is_fraud: bool


class EntityState(Protocol):
    """Online windows of cards and terminals."""

    def observe(self, events: Sequence[EntityEvent]) -> list[tuple[str, list[float]]]: ...

    def add_labels(self, labels: Sequence[Label]) -> None: ...

    def peek(self, events: Sequence[EntityEvent]) -> list[list[float]]:
        """Features as if each event were observed now, changing nothing (the HTTP API's view)."""
        ...


def _epoch(value: Any, field: str) -> int:
    if isinstance(value, bool):
        raise ValueError(f"{field}: expected epoch seconds or an ISO-8601 time")
    if isinstance(value, int | float) and math.isfinite(value):
        return int(value)
    if isinstance(value, str):
        try:
            return int(datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp())
        except ValueError:
            pass
    raise ValueError(f"{field}: expected epoch seconds or an ISO-8601 time, got {value!r:.50}")


def _identifier(value: Any, field: str) -> str:
    if (
        isinstance(value, bool)
        or not isinstance(value, str | int)
        or str(value) == ""
        or len(str(value)) > 128
    ):
        raise ValueError(f"{field}: expected a non-empty string or integer id")
    return str(value)


def parse_entity_event(payload: Mapping[str, Any]) -> EntityEvent:
    """A simulated-schema transaction: transaction_id, tx_datetime, customer_id, terminal_id, amount."""
    amount = payload.get("amount")
    if (
        isinstance(amount, bool)
        or not isinstance(amount, int | float)
        or not math.isfinite(amount)
        or amount < 0
    ):
        raise ValueError(f"amount: expected a finite number >= 0, got {amount!r:.50}")
    return EntityEvent(
        transaction_id=_identifier(payload.get("transaction_id"), "transaction_id"),
        epoch=_epoch(payload.get("tx_datetime"), "tx_datetime"),
        card=_identifier(payload.get("customer_id"), "customer_id"),
        terminal=_identifier(payload.get("terminal_id"), "terminal_id"),
        amount=float(amount),
    )


def parse_label(payload: Mapping[str, Any]) -> Label:
    """A label event: ``{"type": "label", transaction_id, tx_datetime, terminal_id, is_fraud}``."""
    fraud = payload.get("is_fraud")
    if fraud not in (0, 1, True, False):
        raise ValueError(f"is_fraud: expected 0 or 1, got {fraud!r:.50}")
    return Label(
        transaction_id=_identifier(payload.get("transaction_id"), "transaction_id"),
        epoch=_epoch(payload.get("tx_datetime"), "tx_datetime"),
        terminal=_identifier(payload.get("terminal_id"), "terminal_id"),
        is_fraud=bool(fraud),
    )


def _finish(
    event: EntityEvent, card: list[tuple[float, float]], terminal: list[tuple[float, float]]
) -> list[float]:
    """Feature vector from per-window (count, sum) for the card and (count, frauds) for the terminal."""
    weekend, night = calendar([event.epoch])
    out = [event.amount, float(weekend[0]), float(night[0])]
    for n, total in card:
        out += [n, total / n if n else 0.0]
    for n, frauds in terminal:
        out += [n, risk(frauds, n)]
    return out


_OBSERVE_LUA = f"""
local ttl, lateness = tonumber(ARGV[1]), tonumber(ARGV[2])
local windows = cjson.decode(ARGV[3])
local delay = tonumber(ARGV[4])
local items = cjson.decode(ARGV[5])
local out = {{}}
for i, it in ipairs(items) do
  local id, t, card, term, amount = it[1], tonumber(it[2]), it[3], it[4], it[5]
  local seen = '{KEY_PREFIX}:seen:' .. id
  local state = redis.call('GET', seen)
  if state then
    out[i] = {{state, redis.call('GET', '{KEY_PREFIX}:feat:' .. id) or ''}}
  else
    local ck, tw, tf = '{KEY_PREFIX}:cw:' .. card, '{KEY_PREFIX}:tw:' .. term, '{KEY_PREFIX}:tf:' .. term
    redis.call('ZADD', ck, t, id .. '|' .. amount)
    redis.call('ZADD', tw, t, id)
    local feats = {{}}
    for _, w in ipairs(windows) do
      local members = redis.call('ZRANGEBYSCORE', ck, '(' .. (t - w * 86400), t)
      local total = 0
      for _, m in ipairs(members) do
        total = total + tonumber(string.sub(m, string.find(m, '|', 1, true) + 1))
      end
      feats[#feats + 1] = {{#members, total}}
    end
    for _, w in ipairs(windows) do
      local hi = t - delay
      local lo = '(' .. (hi - w * 86400)
      feats[#feats + 1] = {{redis.call('ZCOUNT', tw, lo, hi), redis.call('ZCOUNT', tf, lo, hi)}}
    end
    local encoded = cjson.encode(feats)
    redis.call('SET', '{KEY_PREFIX}:feat:' .. id, encoded, 'EX', ttl)
    redis.call('SET', seen, 'observed', 'EX', ttl)
    redis.call('ZREMRANGEBYSCORE', ck, '-inf', '(' .. (t - {MAX_CARD_WINDOW} - lateness))
    redis.call('ZREMRANGEBYSCORE', tw, '-inf', '(' .. (t - {MAX_TERMINAL_WINDOW} - lateness))
    redis.call('ZREMRANGEBYSCORE', tf, '-inf', '(' .. (t - {MAX_TERMINAL_WINDOW} - lateness))
    redis.call('EXPIRE', ck, ttl)
    redis.call('EXPIRE', tw, ttl)
    redis.call('EXPIRE', tf, ttl)
    out[i] = {{'new', encoded}}
  end
end
return out
"""

# Read-only twin of the observe script: the current transaction counts in its card windows
# without being stored.
_PEEK_LUA = f"""
local windows = cjson.decode(ARGV[1])
local delay = tonumber(ARGV[2])
local items = cjson.decode(ARGV[3])
local out = {{}}
for i, it in ipairs(items) do
  local t, card, term, amount = tonumber(it[1]), it[2], it[3], tonumber(it[4])
  local ck, tw, tf = '{KEY_PREFIX}:cw:' .. card, '{KEY_PREFIX}:tw:' .. term, '{KEY_PREFIX}:tf:' .. term
  local feats = {{}}
  for _, w in ipairs(windows) do
    local members = redis.call('ZRANGEBYSCORE', ck, '(' .. (t - w * 86400), t)
    local total = amount
    for _, m in ipairs(members) do
      total = total + tonumber(string.sub(m, string.find(m, '|', 1, true) + 1))
    end
    feats[#feats + 1] = {{#members + 1, total}}
  end
  for _, w in ipairs(windows) do
    local hi = t - delay
    local lo = '(' .. (hi - w * 86400)
    feats[#feats + 1] = {{redis.call('ZCOUNT', tw, lo, hi), redis.call('ZCOUNT', tf, lo, hi)}}
  end
  out[i] = cjson.encode(feats)
end
return out
"""

_LABEL_LUA = f"""
local ttl = tonumber(ARGV[1])
local items = cjson.decode(ARGV[2])
for _, it in ipairs(items) do
  local key = '{KEY_PREFIX}:tf:' .. it[3]
  redis.call('ZADD', key, tonumber(it[2]), it[1])
  redis.call('EXPIRE', key, ttl)
end
return #items
"""


def _windows_to_features(event: EntityEvent, encoded: bytes | str) -> list[float]:
    parts = orjson.loads(encoded)
    n_windows = len(WINDOW_DAYS)
    card = [(float(c), float(s)) for c, s in parts[:n_windows]]
    term = [(float(c), float(f)) for c, f in parts[n_windows:]]
    return _finish(event, card, term)


class RedisEntityState:
    """Online windows in Redis; one script call observes a whole batch."""

    def __init__(self, client: Redis, *, ttl_seconds: int = MAX_TERMINAL_WINDOW + 7 * DAY) -> None:
        self.client = client
        self.ttl = ttl_seconds
        self._observe = client.register_script(_OBSERVE_LUA)
        self._label = client.register_script(_LABEL_LUA)
        self._peek = client.register_script(_PEEK_LUA)

    def _guard(self, what: str, fn: Any) -> Any:
        from redis.exceptions import ConnectionError as RedisConnectionError
        from redis.exceptions import TimeoutError as RedisTimeoutError

        try:
            return fn()
        except (RedisConnectionError, RedisTimeoutError, OSError) as exc:
            raise StoreUnavailableError(f"redis {what} failed: {exc}") from exc

    def observe(self, events: Sequence[EntityEvent]) -> list[tuple[str, list[float]]]:
        """(state, feature vector) per event; state is ``new`` or the earlier delivery's state."""
        if not events:
            return []
        payload = orjson.dumps(
            [[e.transaction_id, e.epoch, e.card, e.terminal, repr(e.amount)] for e in events]
        )
        args: list[str | int | bytes] = [
            self.ttl,
            LATENESS_SECONDS,
            json.dumps(list(WINDOW_DAYS)),
            LABEL_DELAY_DAYS * DAY,
            payload,
        ]
        rows = self._guard("observe script", lambda: self._observe(keys=[], args=args))
        out = []
        for event, (state, encoded) in zip(events, rows, strict=True):
            state = state.decode() if isinstance(state, bytes) else str(state)
            out.append((state, _windows_to_features(event, encoded) if encoded else []))
        return out

    def peek(self, events: Sequence[EntityEvent]) -> list[list[float]]:
        if not events:
            return []
        payload = orjson.dumps([[e.epoch, e.card, e.terminal, repr(e.amount)] for e in events])
        args: list[str | int | bytes] = [json.dumps(list(WINDOW_DAYS)), LABEL_DELAY_DAYS * DAY, payload]
        rows = self._guard("peek script", lambda: self._peek(keys=[], args=args))
        return [_windows_to_features(e, encoded) for e, encoded in zip(events, rows, strict=True)]

    def add_labels(self, labels: Sequence[Label]) -> None:
        frauds = [[lb.transaction_id, lb.epoch, lb.terminal] for lb in labels if lb.is_fraud]
        if frauds:
            payload = orjson.dumps(frauds)
            self._guard("label script", lambda: self._label(keys=[], args=[self.ttl, payload]))


@dataclass
class InMemoryEntityState:
    """The same semantics in plain Python: the reference for property tests and the embedded default."""

    cards: dict[str, list[tuple[int, int, str, float]]] = field(default_factory=dict)
    terminals: dict[str, list[tuple[int, int, str]]] = field(default_factory=dict)
    frauds: dict[str, set[tuple[int, str]]] = field(default_factory=dict)
    features: dict[str, list[float]] = field(default_factory=dict)
    _seq: int = 0

    def observe(self, events: Sequence[EntityEvent]) -> list[tuple[str, list[float]]]:
        out = []
        for e in events:
            if e.transaction_id in self.features:
                out.append(("observed", self.features[e.transaction_id]))
                continue
            self._seq += 1
            bisect.insort(self.cards.setdefault(e.card, []), (e.epoch, self._seq, e.transaction_id, e.amount))
            bisect.insort(self.terminals.setdefault(e.terminal, []), (e.epoch, self._seq, e.transaction_id))
            card_stats = []
            for w in WINDOW_DAYS:
                lo, hi = card_window(e.epoch, w)
                inside = [a for t, _, _, a in self.cards[e.card] if lo < t <= hi]
                card_stats.append((float(len(inside)), float(sum(inside))))
            term_stats = []
            fraud_set = self.frauds.get(e.terminal, set())
            for w in WINDOW_DAYS:
                lo, hi = terminal_window(e.epoch, w)
                n = sum(1 for t, _, _ in self.terminals[e.terminal] if lo < t <= hi)
                f = sum(1 for t, _ in fraud_set if lo < t <= hi)
                term_stats.append((float(n), float(f)))
            vector = _finish(e, card_stats, term_stats)
            self.features[e.transaction_id] = vector
            out.append(("new", vector))
        return out

    def peek(self, events: Sequence[EntityEvent]) -> list[list[float]]:
        out = []
        for e in events:
            card_stats = []
            for w in WINDOW_DAYS:
                lo, hi = card_window(e.epoch, w)
                inside = [a for t, _, _, a in self.cards.get(e.card, []) if lo < t <= hi]
                card_stats.append((float(len(inside) + 1), float(sum(inside) + e.amount)))
            term_stats = []
            fraud_set = self.frauds.get(e.terminal, set())
            for w in WINDOW_DAYS:
                lo, hi = terminal_window(e.epoch, w)
                n = sum(1 for t, _, _ in self.terminals.get(e.terminal, []) if lo < t <= hi)
                f = sum(1 for t, _ in fraud_set if lo < t <= hi)
                term_stats.append((float(n), float(f)))
            out.append(_finish(e, card_stats, term_stats))
        return out

    def add_labels(self, labels: Sequence[Label]) -> None:
        for lb in labels:
            if lb.is_fraud:
                self.frauds.setdefault(lb.terminal, set()).add((lb.epoch, lb.transaction_id))


assert len(SIMULATED_FEATURE_NAMES) == 3 + 4 * len(WINDOW_DAYS)


@cache
def get_entity_state() -> EntityState:
    """The process-wide online windows: Redis when configured, else process memory."""
    from fraud_core.settings import get_settings
    from fraud_core.stores import redis_client, redis_url_from_settings

    settings = get_settings()
    url = redis_url_from_settings(settings)
    if url is None:
        return InMemoryEntityState()
    return RedisEntityState(redis_client(url, timeout_seconds=settings.redis_timeout_seconds))
