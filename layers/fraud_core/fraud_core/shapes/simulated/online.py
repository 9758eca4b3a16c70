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
from typing import TYPE_CHECKING, Protocol

import orjson

from fraud_core.labels import Label
from fraud_core.online import keys
from fraud_core.online.client import redis_call
from fraud_core.shapes.simulated.features import (
    DAY,
    LABEL_DELAY_DAYS,
    MAX_CARD_WINDOW,
    MAX_TERMINAL_WINDOW,
    WINDOW_DAYS,
    card_window,
    feature_vector,
    terminal_window,
)
from fraud_core.shapes.simulated.fields import CardEvent

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

    def observe(self, events: Sequence[CardEvent]) -> list[list[float]]:
        """Feature vector per event, each event entering the windows as it is read (idempotent)."""
        ...

    def peek(self, events: Sequence[CardEvent]) -> list[list[float]]:
        """Features as if each event were observed now, changing nothing (the HTTP API's view)."""
        ...

    def add_labels(self, labels: Sequence[Label]) -> int:
        """Add fraud labels to their terminals' fraud sets; how many were frauds."""
        ...


def _vector(event: CardEvent, encoded: bytes | str) -> list[float]:
    stats = orjson.loads(encoded)
    n = len(WINDOW_DAYS)
    return feature_vector(event.epoch, event.amount, stats[:n], stats[n:])


_LUA_COMMON = """
local windows = cjson.decode(ARGV[1])
local delay, max_card = tonumber(ARGV[2]), tonumber(ARGV[3])
local CHUNK = 1000  -- unpack() is bounded by the Lua stack: never unpack more at once

local function amounts(ca, ids)
  local out = {}
  for s = 1, #ids, CHUNK do
    local part = redis.call('HMGET', ca, unpack(ids, s, math.min(s + CHUNK - 1, #ids)))
    for j = 1, #part do out[#out + 1] = tonumber(part[j]) or 0 end
  end
  return out
end

-- (count, amount sum) per card window, then (count, frauds) per delayed terminal window;
-- `extra` is the amount of a transaction counted without being stored (peek).
local function stats(cw, ca, tw, tf, t, extra)
  local got = redis.call('ZRANGEBYSCORE', cw, '(' .. (t - max_card), t, 'WITHSCORES')
  local ids, times = {}, {}
  for j = 1, #got, 2 do
    ids[#ids + 1] = got[j]
    times[#times + 1] = tonumber(got[j + 1])
  end
  local amt = amounts(ca, ids)
  local out = {}
  for _, w in ipairs(windows) do
    local lo, n, total = t - w * 86400, 0, 0
    for j = 1, #ids do
      if times[j] > lo then n = n + 1; total = total + amt[j] end
    end
    if extra then n = n + 1; total = total + extra end
    out[#out + 1] = {n, total}
  end
  local hi = t - delay
  for _, w in ipairs(windows) do
    local lo = '(' .. (hi - w * 86400)
    out[#out + 1] = {redis.call('ZCOUNT', tw, lo, hi), redis.call('ZCOUNT', tf, lo, hi)}
  end
  return out
end
"""

# ARGV: windows, delay, max card window, ttl, lateness, max terminal window, observed state, items
# item: seen, feat, cw, ca, tw, tf keys, then transaction id, epoch, amount
_OBSERVE_LUA = (
    _LUA_COMMON
    + """
local ttl, lateness, max_term = tonumber(ARGV[4]), tonumber(ARGV[5]), tonumber(ARGV[6])
local observed = ARGV[7]
local items = cjson.decode(ARGV[8])
local out = {}
for i, it in ipairs(items) do
  local seen, feat, cw, ca, tw, tf = it[1], it[2], it[3], it[4], it[5], it[6]
  local id, t, amount = it[7], tonumber(it[8]), it[9]
  local state = redis.call('GET', seen)
  if state then
    out[i] = {state, redis.call('GET', feat) or ''}
  else
    redis.call('ZADD', cw, t, id)
    redis.call('HSET', ca, id, amount)
    redis.call('ZADD', tw, t, id)
    local encoded = cjson.encode(stats(cw, ca, tw, tf, t, nil))
    redis.call('SET', feat, encoded, 'EX', ttl)
    redis.call('SET', seen, observed, 'EX', ttl)
    local card_cut = '(' .. (t - max_card - lateness)
    local old = redis.call('ZRANGEBYSCORE', cw, '-inf', card_cut)
    for s = 1, #old, CHUNK do
      redis.call('HDEL', ca, unpack(old, s, math.min(s + CHUNK - 1, #old)))
    end
    redis.call('ZREMRANGEBYSCORE', cw, '-inf', card_cut)
    local term_cut = '(' .. (t - max_term - lateness)
    redis.call('ZREMRANGEBYSCORE', tw, '-inf', term_cut)
    redis.call('ZREMRANGEBYSCORE', tf, '-inf', term_cut)
    for _, key in ipairs({cw, ca, tw, tf}) do redis.call('EXPIRE', key, ttl) end
    out[i] = {'new', encoded}
  end
end
return out
"""
)

# Read-only twin of the observe script: the current transaction counts in its card windows
# without being stored. item: cw, ca, tw, tf keys, then epoch, amount
_PEEK_LUA = (
    _LUA_COMMON
    + """
local items = cjson.decode(ARGV[4])
local out = {}
for i, it in ipairs(items) do
  out[i] = cjson.encode(stats(it[1], it[2], it[3], it[4], tonumber(it[5]), tonumber(it[6])))
end
return out
"""
)

# item: terminal fraud set key, transaction id, epoch
_LABEL_LUA = """
local ttl = tonumber(ARGV[1])
local items = cjson.decode(ARGV[2])
for _, it in ipairs(items) do
  redis.call('ZADD', it[1], tonumber(it[3]), it[2])
  redis.call('EXPIRE', it[1], ttl)
end
return #items
"""

_WINDOW_ARGS: list[str | int] = [json.dumps(list(WINDOW_DAYS)), LABEL_DELAY_DAYS * DAY, MAX_CARD_WINDOW]


def _frauds(labels: Sequence[Label]) -> list[Label]:
    return [lb for lb in labels if lb.is_fraud and lb.terminal_id is not None]


class RedisWindows:
    """Online windows in Redis; one script call observes a whole batch."""

    def __init__(self, client: Redis, *, ttl_seconds: int = DEFAULT_TTL_SECONDS) -> None:
        self.client = client
        self.ttl = ttl_seconds
        self._observe = client.register_script(_OBSERVE_LUA)
        self._peek = client.register_script(_PEEK_LUA)
        self._label = client.register_script(_LABEL_LUA)

    def observe(self, events: Sequence[CardEvent]) -> list[list[float]]:
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
                ]
                for e in events
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
        return [_vector(e, encoded) for e, (_, encoded) in zip(events, rows, strict=True)]

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
        frauds = _frauds(labels)
        if frauds:
            items = orjson.dumps(
                [[TERMINAL_FRAUDS(lb.terminal_id or ""), lb.transaction_id, lb.epoch] for lb in frauds]
            )
            redis_call("label script", self._label, [], [self.ttl, items])
        return len(frauds)


@dataclass
class InMemoryWindows:
    """The same semantics in plain Python: the reference for property tests and the embedded default."""

    cards: dict[str, list[tuple[int, int, str, float]]] = field(default_factory=dict)
    terminals: dict[str, list[tuple[int, int, str]]] = field(default_factory=dict)
    frauds: dict[str, set[tuple[int, str]]] = field(default_factory=dict)
    features: dict[str, list[float]] = field(default_factory=dict)
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
        fraud_set = self.frauds.get(e.terminal, set())
        for w in WINDOW_DAYS:
            lo, hi = terminal_window(e.epoch, w)
            n = sum(1 for t, _, _ in self.terminals.get(e.terminal, []) if lo < t <= hi)
            f = sum(1 for t, _ in fraud_set if lo < t <= hi)
            term_stats.append((float(n), float(f)))
        return feature_vector(e.epoch, e.amount, card_stats, term_stats)

    def observe(self, events: Sequence[CardEvent]) -> list[list[float]]:
        out = []
        for e in events:
            if e.transaction_id not in self.features:
                self._seq += 1
                bisect.insort(
                    self.cards.setdefault(e.card, []), (e.epoch, self._seq, e.transaction_id, e.amount)
                )
                bisect.insort(
                    self.terminals.setdefault(e.terminal, []), (e.epoch, self._seq, e.transaction_id)
                )
                self.features[e.transaction_id] = self._vector(e, extra=None)
            out.append(self.features[e.transaction_id])
        return out

    def peek(self, events: Sequence[CardEvent]) -> list[list[float]]:
        return [self._vector(e, extra=e.amount) for e in events]

    def add_labels(self, labels: Sequence[Label]) -> int:
        frauds = _frauds(labels)
        for lb in frauds:
            self.frauds.setdefault(lb.terminal_id or "", set()).add((lb.epoch, lb.transaction_id))
        return len(frauds)
