"""Score a Kafka batch exactly once: decode, route poison to the DLQ, score vectorized, commit
idempotently to the online store, publish results and alerts.

Delivery guarantees (Kafka and the event-source mapping deliver at least once):

* Online state (stored result, card counters) changes exactly once per transaction: a dedupe key
  ``fraud:seen:{id}`` is written in the same Lua script as the updates.
* Results and alerts are published at least once, and never twice in normal redelivery: the
  dedupe key moves ``pending`` → ``done`` only after the producer's flush succeeded, and a
  redelivered ``pending`` transaction republishes its *stored* result (no rescoring, no double
  count). A crash between flush and marking ``done`` is the one window for a duplicate alert;
  consumers can drop it by ``transaction_id``.
* Poison records are dead-lettered the same way, keyed by ``topic-partition-offset``.
* A transient failure (store or broker unreachable) reports every unfinished record in
  ``batchItemFailures``, so the event-source mapping redelivers them; nothing is lost.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np
import orjson

from fraud_core.entity_online import EntityEvent, EntityState, parse_entity_event, parse_label
from fraud_core.errors import FraudCoreError
from fraud_core.kafka_events import KafkaRecord, decode_json, iter_records
from fraud_core.scorer import Scorer, ScoreResult
from fraud_core.stores import KEY_PREFIX, StoreUnavailableError, txn_key

if TYPE_CHECKING:
    from redis import Redis

logger = logging.getLogger(__name__)

MAX_RECORD_BYTES = 64 * 1024


class SinkUnavailableError(FraudCoreError):
    """The broker did not acknowledge what we published."""


class ResultSink(Protocol):
    """Where results, alerts and dead letters are published."""

    def publish(self, topic: str, key: bytes | None, value: bytes) -> None: ...

    def flush(self) -> None:
        """Block until everything published is acknowledged; raise SinkUnavailableError otherwise."""
        ...


class InMemorySink:
    """Collects messages per topic: the embedded default and the unit-test fake."""

    def __init__(self) -> None:
        self.topics: dict[str, list[tuple[bytes | None, bytes]]] = {}
        self._pending: list[tuple[str, bytes | None, bytes]] = []

    def publish(self, topic: str, key: bytes | None, value: bytes) -> None:
        self._pending.append((topic, key, value))

    def flush(self) -> None:
        for topic, key, value in self._pending:
            self.topics.setdefault(topic, []).append((key, value))
        self._pending.clear()

    def values(self, topic: str) -> list[dict[str, Any]]:
        return [json.loads(v) for _, v in self.topics.get(topic, [])]


class StreamState(Protocol):
    """Idempotent commit of scored transactions."""

    def commit(self, items: Sequence[CommitItem]) -> list[str]:
        """Apply each new item once; return per item ``new``, ``pending`` (committed, not yet
        published) or ``done``."""
        ...

    def stored_result(self, transaction_id: str) -> str | None: ...

    def mark_published(self, transaction_ids: Sequence[str]) -> None: ...

    def dead_letters_done(self, record_ids: Sequence[str]) -> set[str]:
        """Which poison records (``topic-partition-offset``) were already dead-lettered."""
        ...

    def mark_dead_letters(self, record_ids: Sequence[str]) -> None: ...


@dataclass(frozen=True, slots=True)
class CommitItem:
    transaction_id: str
    result_json: str
    card_id: str | None
    amount: float


# One script call per batch: each transaction is checked and applied atomically with its dedupe
# key. (Keys are built inside the script, so this targets a non-cluster Redis / ElastiCache.)
_COMMIT_LUA = f"""
local seen_ttl, result_ttl, card_ttl = ARGV[1], ARGV[2], ARGV[3]
local items = cjson.decode(ARGV[4])
local out = {{}}
local touched = {{}}
for i, it in ipairs(items) do
  local id, result, card, amount = it[1], it[2], it[3], it[4]
  local seen = '{KEY_PREFIX}:seen:' .. id
  -- one command claims the dedupe key and returns any earlier delivery's state
  local state = redis.call('SET', seen, 'pending', 'NX', 'GET', 'EX', seen_ttl)
  if state == 'observed' then
    redis.call('SET', seen, 'pending', 'EX', seen_ttl)
    state = false
  end
  if not state then
    redis.call('SET', '{KEY_PREFIX}:txn:' .. id, result, 'EX', result_ttl)
    if card ~= '' then
      local key = '{KEY_PREFIX}:card:' .. card
      redis.call('HINCRBY', key, 'tx_count', 1)
      redis.call('HINCRBYFLOAT', key, 'amount_sum', amount)
      touched[key] = true
    end
    out[i] = 'new'
  else
    out[i] = state
  end
end
for key in pairs(touched) do
  redis.call('EXPIRE', key, card_ttl)  -- once per card per batch, not per transaction
end
return out
"""


_MARK_DONE_LUA = f"""
for i = 2, #ARGV do
  redis.call('SET', '{KEY_PREFIX}:seen:' .. ARGV[i], 'done', 'EX', ARGV[1], 'XX')
end
return #ARGV - 1
"""


def seen_key(transaction_id: str) -> str:
    return f"{KEY_PREFIX}:seen:{transaction_id}"


def dlq_key(record_id: str) -> str:
    return f"{KEY_PREFIX}:dlq:{record_id}"


class RedisStreamState:
    def __init__(
        self,
        client: Redis,
        *,
        seen_ttl: int = 7 * 86_400,
        result_ttl: int = 7 * 86_400,
        card_ttl: int = 30 * 86_400,
    ) -> None:
        self.client = client
        self.ttls = (seen_ttl, result_ttl, card_ttl)
        self._script = client.register_script(_COMMIT_LUA)
        self._mark_done = client.register_script(_MARK_DONE_LUA)

    def _guard(self, what: str, fn: Any) -> Any:
        from redis.exceptions import ConnectionError as RedisConnectionError
        from redis.exceptions import TimeoutError as RedisTimeoutError

        try:
            return fn()
        except (RedisConnectionError, RedisTimeoutError, OSError) as exc:
            raise StoreUnavailableError(f"redis {what} failed: {exc}") from exc

    def commit(self, items: Sequence[CommitItem]) -> list[str]:
        if not items:
            return []
        # One JSON argument (decoded by the script's cjson) instead of 4 arguments per item:
        # packing thousands of arguments costs more client CPU than the script itself.
        payload = orjson.dumps(
            [[it.transaction_id, it.result_json, it.card_id or "", repr(it.amount)] for it in items]
        )
        args: list[Any] = [*self.ttls, payload]
        states = self._guard("commit script", lambda: self._script(keys=[], args=args))
        return [s.decode() if isinstance(s, bytes) else str(s) for s in states]

    def stored_result(self, transaction_id: str) -> str | None:
        raw = self._guard("GET", lambda: self.client.get(txn_key(transaction_id)))
        return None if raw is None else bytes(raw).decode()

    def mark_published(self, transaction_ids: Sequence[str]) -> None:
        if transaction_ids:
            # One script call instead of a pipeline of SETs: redis-py's per-command client cost
            # dominates at 1,000 commands per batch.
            args: list[str | int] = [self.ttls[0], *transaction_ids]
            self._guard("mark published", lambda: self._mark_done(keys=[], args=args))

    def dead_letters_done(self, record_ids: Sequence[str]) -> set[str]:
        if not record_ids:
            return set()
        pipe = self.client.pipeline(transaction=False)
        for r in record_ids:
            pipe.exists(dlq_key(r))
        found = self._guard("dlq check", pipe.execute)
        return {r for r, hit in zip(record_ids, found, strict=True) if hit}

    def mark_dead_letters(self, record_ids: Sequence[str]) -> None:
        pipe = self.client.pipeline(transaction=False)
        for r in record_ids:
            pipe.set(dlq_key(r), "done", ex=self.ttls[0])
        self._guard("mark dead letters", pipe.execute)


class InMemoryStreamState:
    """Same semantics in process memory (embedded default, unit tests)."""

    def __init__(self) -> None:
        self.seen: dict[str, str] = {}
        self.results: dict[str, str] = {}
        self.cards: dict[str, dict[str, float]] = {}
        self.dead_letters: set[str] = set()

    def commit(self, items: Sequence[CommitItem]) -> list[str]:
        out = []
        for it in items:
            state = self.seen.get(it.transaction_id)
            if state is None or state == "observed":
                self.seen[it.transaction_id] = "pending"
                self.results[it.transaction_id] = it.result_json
                if it.card_id:
                    card = self.cards.setdefault(it.card_id, {"tx_count": 0.0, "amount_sum": 0.0})
                    card["tx_count"] += 1
                    card["amount_sum"] += it.amount
                out.append("new")
            else:
                out.append(state)
        return out

    def stored_result(self, transaction_id: str) -> str | None:
        return self.results.get(transaction_id)

    def mark_published(self, transaction_ids: Sequence[str]) -> None:
        for t in transaction_ids:
            if t in self.seen:
                self.seen[t] = "done"

    def dead_letters_done(self, record_ids: Sequence[str]) -> set[str]:
        return {r for r in record_ids if r in self.dead_letters}

    def mark_dead_letters(self, record_ids: Sequence[str]) -> None:
        self.dead_letters.update(record_ids)


@dataclass(frozen=True, slots=True)
class Topics:
    scores: str | None = "fraud-scores"
    alerts: str = "fraud-alerts"
    dlq: str = "fraud-dlq"


@dataclass
class BatchReport:
    """What happened to a batch; ``failures`` go back to Lambda as ``batchItemFailures``."""

    received: int = 0
    scored: int = 0
    duplicates: int = 0
    dead_lettered: int = 0
    alerts: int = 0
    labels: int = 0
    failures: list[dict[str, Any]] = field(default_factory=list)
    results: list[dict[str, Any]] = field(default_factory=list)
    error: str | None = None

    def response(self) -> dict[str, Any]:
        return {"batchItemFailures": [{"itemIdentifier": f} for f in self.failures]}


def _dead_letter(record: KafkaRecord, reason: str) -> bytes:
    return json.dumps(
        {
            "reason": reason,
            "topic": record.topic,
            "partition": record.partition,
            "offset": record.offset,
            "key": record.key.decode("utf-8", "replace") if record.key is not None else None,
            "value_base64": record.raw_value[: 2 * MAX_RECORD_BYTES],
        }
    ).encode()


class StreamProcessor:
    """Framework-free batch logic behind the stream Lambda handler."""

    def __init__(
        self,
        scorer: Scorer,
        state: StreamState,
        sink: ResultSink,
        *,
        topics: Topics = Topics(),
        entities: EntityState | None = None,
    ) -> None:
        self.scorer = scorer
        self.state = state
        self.sink = sink
        self.topics = topics
        self.entities = entities

    def process(self, event: Mapping[str, Any]) -> BatchReport:
        records = list(iter_records(event))
        report = BatchReport(received=len(records))
        decoded, poison = self._decode(records)
        try:
            if self.scorer.manifest.schema_name == "simulated":
                scored = self._score_entities(decoded, poison, report)
            else:
                scored = self._score_transactions(decoded, poison, report)
        except StoreUnavailableError as exc:
            return self._failed(report, records, exc)
        items = [item for _, _, item in scored]
        scored_bodies = [(body, encoded) for body, encoded, _ in scored]
        return self._commit_and_publish(records, report, items, scored_bodies, poison)

    def _decode(
        self, records: list[KafkaRecord]
    ) -> tuple[list[tuple[KafkaRecord, dict[str, Any]]], list[tuple[KafkaRecord, str]]]:
        decoded: list[tuple[KafkaRecord, dict[str, Any]]] = []
        poison: list[tuple[KafkaRecord, str]] = []
        for rec in records:
            try:
                if rec.value is not None and len(rec.value) > MAX_RECORD_BYTES:
                    raise ValueError(f"value is {len(rec.value)} bytes, over {MAX_RECORD_BYTES}")
                payload = decode_json(rec)
                if not isinstance(payload, dict):
                    raise ValueError(f"value is JSON {type(payload).__name__}, expected an object")
            except ValueError as exc:
                poison.append((rec, str(exc)))
                continue
            if payload.get("transaction_id") is None:
                # A record without an id gets one that is stable across redeliveries.
                payload = {**payload, "transaction_id": f"{rec.topic}-{rec.partition}-{rec.offset}"}
            decoded.append((rec, payload))
        return decoded, poison

    @staticmethod
    def _body(res: ScoreResult, rec: KafkaRecord, now: float, **extra: Any) -> dict[str, Any]:
        return {
            **res.to_dict(),
            "source": {"topic": rec.topic, "partition": rec.partition, "offset": rec.offset},
            "scored_at": now,
            **extra,
        }

    def _score_transactions(
        self,
        decoded: list[tuple[KafkaRecord, dict[str, Any]]],
        poison: list[tuple[KafkaRecord, str]],
        report: BatchReport,
    ) -> list[tuple[dict[str, Any], str, CommitItem]]:
        """Kaggle schema: validate and score the batch in one call; card counters in the commit."""
        origin = [rec for rec, _ in decoded]
        payloads = [payload for _, payload in decoded]
        outcome = self.scorer.score_batch_lenient(payloads, explain="flagged")
        for pos, err in outcome.errors.items():
            poison.append((origin[pos], f"invalid transaction: {err}"))
        now = time.time()
        batch_ids: set[str] = set()
        scored: list[tuple[dict[str, Any], str, CommitItem]] = []
        for rec, payload, res in zip(origin, payloads, outcome.results, strict=True):
            if res is None:
                continue
            if res.transaction_id in batch_ids:
                # The same valid transaction twice in one batch (an invalid record with the same
                # id went to the DLQ above and does not mask it).
                report.duplicates += 1
                continue
            batch_ids.add(str(res.transaction_id))
            body = self._body(res, rec, now)
            encoded = orjson.dumps(body).decode()  # once: stored in Redis and published as is
            amount = float(payload.get("Amount", 0.0))
            scored.append((body, encoded, CommitItem(str(res.transaction_id), encoded, res.card_id, amount)))
        return scored

    def _score_entities(
        self,
        decoded: list[tuple[KafkaRecord, dict[str, Any]]],
        poison: list[tuple[KafkaRecord, str]],
        report: BatchReport,
    ) -> list[tuple[dict[str, Any], str, CommitItem]]:
        """Simulated schema: labels and transactions update the online windows in stream order;
        each transaction is scored with the features computed as it was observed."""
        if self.entities is None:
            raise RuntimeError("a simulated-schema model needs an entity state")
        events: list[tuple[KafkaRecord, EntityEvent]] = []
        batch_ids: set[str] = set()
        run: list[tuple[KafkaRecord, EntityEvent]] = []
        observed: list[tuple[KafkaRecord, EntityEvent, list[float]]] = []

        def flush_run() -> None:
            for (rec, ev), (_, vector) in zip(run, self.entities.observe([ev for _, ev in run]), strict=True):  # type: ignore[union-attr]
                observed.append((rec, ev, vector))
            run.clear()

        for rec, payload in decoded:
            try:
                if payload.get("type") == "label":
                    label = parse_label(payload)
                    flush_run()  # transactions before this label must not see it
                    self.entities.add_labels([label])
                    report.labels += 1
                    continue
                ev = parse_entity_event(payload)
            except ValueError as exc:
                poison.append((rec, f"invalid transaction: {exc}"))
                continue
            if ev.transaction_id in batch_ids:
                report.duplicates += 1
                continue
            batch_ids.add(ev.transaction_id)
            run.append((rec, ev))
            events.append((rec, ev))
        flush_run()
        if not observed:
            return []
        matrix = np.asarray([vector for _, _, vector in observed], dtype=np.float32)
        results = self.scorer.score_features(
            matrix,
            transaction_ids=[ev.transaction_id for _, ev, _ in observed],
            card_ids=[ev.card for _, ev, _ in observed],
            explain="flagged",
        )
        now = time.time()
        names = self.scorer.feature_names
        scored: list[tuple[dict[str, Any], str, CommitItem]] = []
        for (rec, ev, vector), res in zip(observed, results, strict=True):
            body = self._body(
                res, rec, now, terminal_id=ev.terminal, features=dict(zip(names, vector, strict=True))
            )
            encoded = orjson.dumps(body).decode()
            scored.append((body, encoded, CommitItem(ev.transaction_id, encoded, None, ev.amount)))
        return scored

    @staticmethod
    def _failed(report: BatchReport, records: list[KafkaRecord], exc: Exception) -> BatchReport:
        # Nothing of this batch is confirmed: let the event-source mapping redeliver all of it.
        report.error = str(exc)
        report.failures = [rec.identifier for rec in records]
        report.scored = report.alerts = 0
        return report

    def _commit_and_publish(
        self,
        records: list[KafkaRecord],
        report: BatchReport,
        items: list[CommitItem],
        scored: list[tuple[dict[str, Any], str]],
        poison: list[tuple[KafkaRecord, str]],
    ) -> BatchReport:
        try:
            states = self.state.commit(items)
            to_publish: list[tuple[dict[str, Any], str]] = []
            for (body, encoded), state in zip(scored, states, strict=True):
                if state == "done":
                    report.duplicates += 1
                    continue
                if state == "pending":
                    # Committed by an earlier delivery whose publish was not confirmed:
                    # republish the stored result, never rescore or recount.
                    stored = self.state.stored_result(body["transaction_id"])
                    if stored:
                        body, encoded = orjson.loads(stored), stored
                    report.duplicates += 1
                else:
                    report.scored += 1
                to_publish.append((body, encoded))
            for body, encoded in to_publish:
                value = encoded.encode()
                key = (body.get("card_id") or body["transaction_id"]).encode()
                if self.topics.scores:
                    self.sink.publish(self.topics.scores, key, value)
                if body["decision"] != "approve":
                    self.sink.publish(self.topics.alerts, key, value)
                    report.alerts += 1
            poison_ids = [f"{rec.topic}-{rec.partition}-{rec.offset}" for rec, _ in poison]
            already = self.state.dead_letters_done(poison_ids)
            fresh = [
                (pid, rec, why)
                for pid, (rec, why) in zip(poison_ids, poison, strict=True)
                if pid not in already
            ]
            for _, rec, why in fresh:
                self.sink.publish(self.topics.dlq, rec.key, _dead_letter(rec, why))
            self.sink.flush()
            self.state.mark_published([body["transaction_id"] for body, _ in to_publish])
            self.state.mark_dead_letters([pid for pid, _, _ in fresh])
        except (StoreUnavailableError, SinkUnavailableError) as exc:
            return self._failed(report, records, exc)
        report.dead_lettered = len(fresh)
        report.duplicates += len(poison) - len(fresh)
        report.results = [body for body, _ in to_publish]
        return report
