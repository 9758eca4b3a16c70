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

from fraud_core.errors import FraudCoreError
from fraud_core.kafka_events import KafkaRecord, decode_json, iter_records
from fraud_core.scorer import Scorer
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
local out = {{}}
for i = 4, #ARGV, 4 do
  local id = ARGV[i]
  local seen = '{KEY_PREFIX}:seen:' .. id
  local state = redis.call('GET', seen)
  if not state then
    redis.call('SET', seen, 'pending', 'EX', seen_ttl)
    redis.call('SET', '{KEY_PREFIX}:txn:' .. id, ARGV[i + 1], 'EX', result_ttl)
    local card = ARGV[i + 2]
    if card ~= '' then
      local key = '{KEY_PREFIX}:card:' .. card
      redis.call('HINCRBY', key, 'tx_count', 1)
      redis.call('HINCRBYFLOAT', key, 'amount_sum', ARGV[i + 3])
      redis.call('EXPIRE', key, card_ttl)
    end
    out[#out + 1] = 'new'
  else
    out[#out + 1] = state
  end
end
return out
"""


def seen_key(transaction_id: str) -> str:
    return f"{KEY_PREFIX}:seen:{transaction_id}"


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
        args: list[Any] = list(self.ttls)
        for it in items:
            args += [it.transaction_id, it.result_json, it.card_id or "", repr(it.amount)]
        states = self._guard("commit script", lambda: self._script(keys=[], args=args))
        return [s.decode() if isinstance(s, bytes) else str(s) for s in states]

    def stored_result(self, transaction_id: str) -> str | None:
        raw = self._guard("GET", lambda: self.client.get(txn_key(transaction_id)))
        return None if raw is None else bytes(raw).decode()

    def mark_published(self, transaction_ids: Sequence[str]) -> None:
        pipe = self.client.pipeline(transaction=False)
        for t in transaction_ids:
            pipe.set(seen_key(t), "done", ex=self.ttls[0], xx=True)
        self._guard("mark published", pipe.execute)


class InMemoryStreamState:
    """Same semantics in process memory (embedded default, unit tests)."""

    def __init__(self) -> None:
        self.seen: dict[str, str] = {}
        self.results: dict[str, str] = {}
        self.cards: dict[str, dict[str, float]] = {}

    def commit(self, items: Sequence[CommitItem]) -> list[str]:
        out = []
        for it in items:
            state = self.seen.get(it.transaction_id)
            if state is None:
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
        self, scorer: Scorer, state: StreamState, sink: ResultSink, *, topics: Topics = Topics()
    ) -> None:
        self.scorer = scorer
        self.state = state
        self.sink = sink
        self.topics = topics

    def process(self, event: Mapping[str, Any]) -> BatchReport:
        records = list(iter_records(event))
        report = BatchReport(received=len(records))
        payloads: list[Any] = []
        origin: list[KafkaRecord] = []
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
            payloads.append(payload)
            origin.append(rec)

        outcome = self.scorer.score_batch_lenient(payloads, explain="flagged")
        for pos, err in outcome.errors.items():
            poison.append((origin[pos], f"invalid transaction: {err}"))

        items: list[CommitItem] = []
        scored: list[tuple[KafkaRecord, dict[str, Any]]] = []
        now = time.time()
        batch_ids: set[str] = set()
        for rec, payload, res in zip(origin, payloads, outcome.results, strict=True):
            if res is None:
                continue
            if res.transaction_id in batch_ids:
                # The same valid transaction twice in one batch (an invalid record with the same
                # id went to the DLQ above and does not mask it).
                report.duplicates += 1
                continue
            batch_ids.add(str(res.transaction_id))
            body = {
                **res.to_dict(),
                "source": {"topic": rec.topic, "partition": rec.partition, "offset": rec.offset},
                "scored_at": now,
            }
            amount = payload.get("Amount", 0.0)
            items.append(CommitItem(str(res.transaction_id), json.dumps(body), res.card_id, float(amount)))
            scored.append((rec, body))

        try:
            states = self.state.commit(items)
            to_publish: list[tuple[KafkaRecord, dict[str, Any]]] = []
            for (rec, body), state in zip(scored, states, strict=True):
                if state == "done":
                    report.duplicates += 1
                    continue
                if (
                    state == "pending"
                ):  # committed earlier, publish not confirmed: republish the stored result
                    stored = self.state.stored_result(body["transaction_id"])
                    body = json.loads(stored) if stored else body
                    report.duplicates += 1
                else:
                    report.scored += 1
                to_publish.append((rec, body))
            for _, body in to_publish:
                value = json.dumps(body).encode()
                key = (body.get("card_id") or body["transaction_id"]).encode()
                if self.topics.scores:
                    self.sink.publish(self.topics.scores, key, value)
                if body["decision"] != "approve":
                    self.sink.publish(self.topics.alerts, key, value)
                    report.alerts += 1
            for rec, reason in poison:
                self.sink.publish(self.topics.dlq, rec.key, _dead_letter(rec, reason))
            self.sink.flush()
            self.state.mark_published([body["transaction_id"] for _, body in to_publish])
        except (StoreUnavailableError, SinkUnavailableError) as exc:
            # Nothing of this batch is confirmed: let the event-source mapping redeliver all of it.
            report.error = str(exc)
            report.failures = [rec.identifier for rec in records]
            report.scored = report.alerts = 0
            return report
        report.dead_lettered = len(poison)
        report.results = [body for _, body in to_publish]
        return report
