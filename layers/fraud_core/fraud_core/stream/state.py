"""Exactly-once online state of the stream: dedupe keys, stored results, card counters, DLQ ledger.

One script call per batch checks and applies every transaction atomically with its dedupe key
(``fraud:seen:{id}``), so a redelivered transaction never double-counts or double-stores.
Every key is built in Python (`fraud_core.online.keys`) and handed to the script inside its one
JSON argument: thousands of separate ``KEYS`` cost more client CPU than the script itself
(measured: 23-28 ms against 15 ms for a 1,000-item batch), and the target is a non-cluster
Redis (ElastiCache, Redis >= 7.0 for ``SET ... NX GET``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import orjson

from fraud_core.online import keys
from fraud_core.online.client import redis_call
from fraud_core.online.keys import Dedupe
from fraud_core.stream.ports import CONFLICT, NEW, CommitItem

if TYPE_CHECKING:
    from redis import Redis

# item: seen key, result key, card key ('' = no card), result JSON, amount, payload fingerprint.
# A `fraud:seen` value is "<state>:<fingerprint>", written only by our scripts (values from before
# fingerprints existed have no ':' and count as the same payload).
_COMMIT_LUA = """
local seen_ttl, result_ttl, card_ttl = ARGV[1], ARGV[2], ARGV[3]
local observed, pending, new, conflict = ARGV[4], ARGV[5], ARGV[6], ARGV[10]
local count_field, amount_field = ARGV[7], ARGV[8]
local items = cjson.decode(ARGV[9])
local out, touched = {}, {}
for i, it in ipairs(items) do
  local seen, result_key, card, fp = it[1], it[2], it[3], it[6]
  local value = pending .. ':' .. fp
  -- one command claims the dedupe key and returns any earlier delivery's state
  local prev = redis.call('SET', seen, value, 'NX', 'GET', 'EX', seen_ttl)
  local state, pfp = false, nil
  if prev then
    state, pfp = string.match(prev, '^(%a+):(%x+)$')
    state = state or prev
  end
  if pfp and pfp ~= fp then
    state = conflict  -- SET NX wrote nothing: the key held another payload's claim
  elseif state == observed then  -- features computed by this or an earlier delivery, nothing stored yet
    redis.call('SET', seen, value, 'EX', seen_ttl)
    state = false
  end
  if not state then
    redis.call('SET', result_key, it[4], 'EX', result_ttl)
    if card ~= '' then
      redis.call('HINCRBY', card, count_field, 1)
      redis.call('HINCRBYFLOAT', card, amount_field, it[5])
      touched[card] = true
    end
    out[i] = new
  else
    out[i] = state
  end
end
for key in pairs(touched) do
  redis.call('EXPIRE', key, card_ttl)  -- once per card per batch, not per transaction
end
return out
"""

_MARK_DONE_LUA = """
local ttl, done = ARGV[1], ARGV[2]
local seen = cjson.decode(ARGV[3])
for _, it in ipairs(seen) do
  redis.call('SET', it[1], done .. ':' .. it[2], 'EX', ttl, 'XX')
end
return #seen
"""


def _text(state: Any) -> str:
    return state.decode() if isinstance(state, bytes) else str(state)


class RedisStreamState:
    def __init__(
        self,
        client: Redis,
        *,
        dedupe_ttl_seconds: int = 7 * 86_400,
        result_ttl_seconds: int = 7 * 86_400,
        card_counters_ttl_seconds: int = 30 * 86_400,
    ) -> None:
        self.client = client
        self.dedupe_ttl = dedupe_ttl_seconds
        self._commit_args: list[str | int] = [
            dedupe_ttl_seconds,
            result_ttl_seconds,
            card_counters_ttl_seconds,
            Dedupe.OBSERVED.value,
            Dedupe.PENDING.value,
            NEW,
            keys.CARD_COUNT_FIELD,
            keys.CARD_AMOUNT_FIELD,
        ]
        self._conflict = CONFLICT
        self._commit = client.register_script(_COMMIT_LUA)
        self._mark_done = client.register_script(_MARK_DONE_LUA)

    def commit(self, items: Sequence[CommitItem]) -> list[str]:
        if not items:
            return []
        payload = orjson.dumps(
            [
                [
                    keys.SEEN(it.transaction_id),
                    keys.RESULT(it.transaction_id),
                    keys.CARD(it.card_id) if it.card_id else "",
                    it.result_json,
                    repr(it.amount),
                    it.fingerprint,
                ]
                for it in items
            ]
        )
        states = redis_call("commit script", self._commit, [], [*self._commit_args, payload, self._conflict])
        return [_text(s) for s in states]

    def stored_result(self, transaction_id: str) -> str | None:
        raw = redis_call("GET", self.client.get, keys.RESULT(transaction_id))
        return None if raw is None else _text(raw)

    def stored_results(self, transaction_ids: Sequence[str]) -> list[str | None]:
        if not transaction_ids:
            return []
        raw = redis_call("MGET", self.client.mget, [keys.RESULT(t) for t in transaction_ids])
        return [None if r is None else _text(r) for r in raw]

    def mark_published(self, items: Sequence[tuple[str, str]]) -> None:
        if items:
            seen = orjson.dumps([[keys.SEEN(t), fp] for t, fp in items])
            args = [self.dedupe_ttl, Dedupe.DONE.value, seen]
            redis_call("mark published", self._mark_done, [], args)

    def dead_letters_done(self, record_ids: Sequence[str]) -> set[str]:
        if not record_ids:
            return set()
        pipe = self.client.pipeline(transaction=False)
        for r in record_ids:
            pipe.exists(keys.DEAD_LETTER(r))
        found = redis_call("dlq check", pipe.execute)
        return {r for r, hit in zip(record_ids, found, strict=True) if hit}

    def mark_dead_letters(self, record_ids: Sequence[str]) -> None:
        pipe = self.client.pipeline(transaction=False)
        for r in record_ids:
            pipe.set(keys.DEAD_LETTER(r), Dedupe.DONE.value, ex=self.dedupe_ttl)
        redis_call("mark dead letters", pipe.execute)


class InMemoryStreamState:
    """Same semantics in process memory (embedded default, unit tests)."""

    def __init__(self) -> None:
        self.seen: dict[str, str] = {}
        self.fingerprints: dict[str, str] = {}
        self.results: dict[str, str] = {}
        self.cards: dict[str, dict[str, float]] = {}
        self.dead_letters: set[str] = set()

    def commit(self, items: Sequence[CommitItem]) -> list[str]:
        out = []
        for it in items:
            state = self.seen.get(it.transaction_id)
            if self.fingerprints.setdefault(it.transaction_id, it.fingerprint) != it.fingerprint:
                out.append(CONFLICT)
            elif state is None or state == Dedupe.OBSERVED:
                self.seen[it.transaction_id] = Dedupe.PENDING
                self.results[it.transaction_id] = it.result_json
                if it.card_id:
                    card = self.cards.setdefault(
                        it.card_id, {keys.CARD_COUNT_FIELD: 0.0, keys.CARD_AMOUNT_FIELD: 0.0}
                    )
                    card[keys.CARD_COUNT_FIELD] += 1
                    card[keys.CARD_AMOUNT_FIELD] += it.amount
                out.append(NEW)
            else:
                out.append(state)
        return out

    def stored_result(self, transaction_id: str) -> str | None:
        return self.results.get(transaction_id)

    def stored_results(self, transaction_ids: Sequence[str]) -> list[str | None]:
        return [self.results.get(t) for t in transaction_ids]

    def mark_published(self, items: Sequence[tuple[str, str]]) -> None:
        for t, _ in items:
            if t in self.seen:
                self.seen[t] = Dedupe.DONE

    def dead_letters_done(self, record_ids: Sequence[str]) -> set[str]:
        return {r for r in record_ids if r in self.dead_letters}

    def mark_dead_letters(self, record_ids: Sequence[str]) -> None:
        self.dead_letters.update(record_ids)
