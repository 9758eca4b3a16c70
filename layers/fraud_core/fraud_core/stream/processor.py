"""Score a Kafka batch exactly once: decode, route poison to the DLQ, build features with the
model's data shape, claim and score side by side, store idempotently, publish results and alerts.

Delivery guarantees (Kafka and the event-source mapping deliver at least once):

* Online state (card counters, a shape's windows) changes exactly once per transaction: the
  dedupe key ``fraud:seen:{id}`` is claimed in the same script as the counters, before the
  model runs (the claim and the model overlap). A claimed transaction stays counted even if
  its batch never gets scored (the card's activity happened all the same).
* The results are stored before any of them is published: whoever sees a result on a topic can
  read it back (``GET /v1/transactions/{id}``).
* Results and alerts are published at least once, and never twice in normal redelivery: the
  dedupe key says ``pending`` and names the batch attempt that claimed it; that batch is
  marked published (one key) only after its results are stored and the producer's flush
  succeeded, and a redelivered ``pending`` transaction of an unpublished batch republishes the
  result an earlier delivery stored, or stores and publishes its own when none got that far
  (no double count either way). A duplicate goes out only after a delivery published but was
  not marked (a failed flush, a crash before marking), and it is the stored result byte for
  byte; consumers can drop it by ``transaction_id``.
* Poison records are dead-lettered the same way, keyed by ``topic-partition-offset``.
* A transient failure (store or broker unreachable) reports every unfinished record in
  ``batchItemFailures``, so the event-source mapping redelivers them; nothing is lost.
"""

from __future__ import annotations

import logging
import os
import sys
import time
from collections.abc import Mapping
from concurrent.futures import Future, ThreadPoolExecutor, wait
from functools import cache
from typing import Any

import numpy as np
import orjson

from fraud_core.constraints import AUTO_ID_PREFIX
from fraud_core.errors import (
    InvalidTransactionError,
    SinkUnavailableError,
    StoreRejectedError,
    StoreUnavailableError,
)
from fraud_core.event_log import Logs, lines, logged_features
from fraud_core.labels import LABEL_TYPE, Label, parse_label
from fraud_core.online.activity import (
    ActivityLog,
    ActivityWrite,
    DeadLetterEntry,
    event_from_row,
    write_quietly,
)
from fraud_core.online.keys import Dedupe
from fraud_core.online.labels import InMemoryLabelLedger, LabelLedger
from fraud_core.scorer import Scorer
from fraud_core.shapes import Prepared
from fraud_core.stream.batch import (
    NOTHING_SCORED,
    Decoded,
    Poison,
    Scored,
    ScoredBatch,
    conflict_reason,
    dead_letter,
    decode,
    merge,
)
from fraud_core.stream.events import KafkaRecord, kafka_records
from fraud_core.stream.labels import record_labels, trusted_labels
from fraud_core.stream.ports import (
    CONFLICT,
    DEFAULT_TOPICS,
    NEW,
    BatchReport,
    Claim,
    ResultSink,
    StreamState,
    Topics,
)

logger = logging.getLogger(__name__)

_AS_SCORED = ("fraud_score", "decision", "model_version", "scored_at")
"""What a redelivered transaction's log row takes from its stored result: how it was first scored."""


IO_SWITCH_INTERVAL = 0.0005
"""Seconds a busy thread keeps the GIL when another asks for it (Python's default is 0.005)."""


def settle(*futures: Future[Any] | None) -> None:
    """Wait for every future, then raise the first failure among them, in the order given."""
    failure: BaseException | None = None
    for future in futures:
        if future is not None:
            try:
                future.result()
            except BaseException as exc:  # re-raised below, once every one is over
                failure = failure or exc
    if failure is not None:
        raise failure


@cache
def io_threads() -> ThreadPoolExecutor:
    """The process's two threads for work that leaves the GIL and overlaps a batch's Python
    work: the claim script beside the model call, then the store script, the log write. Shared:
    the stream function builds a processor per invocation.

    Each time Redis answers, such a thread needs the GIL back from the batch's busy thread, which
    by default keeps it up to 5 ms: the batch then waited ~21 ms per 1,000 events for a ~18 ms
    script. Handing over every 0.5 ms cut that wait to ~11 ms (measured, bench/ab_stream.py);
    the interval is lowered for the process, never raised."""
    sys.setswitchinterval(min(sys.getswitchinterval(), IO_SWITCH_INTERVAL))
    return ThreadPoolExecutor(max_workers=2, thread_name_prefix="stream-io")


os.register_at_fork(after_in_child=io_threads.cache_clear)  # a forked child has no such threads


class StreamProcessor:
    """Framework-free batch logic behind the stream Lambda handler, for any data shape."""

    def __init__(
        self,
        scorer: Scorer,
        state: StreamState,
        sink: ResultSink,
        *,
        topics: Topics = DEFAULT_TOPICS,
        online: Any = None,
        ledger: LabelLedger | None = None,
        logs: Logs | None = None,
        activity: ActivityLog | None = None,
    ) -> None:
        self.scorer = scorer
        self.state = state
        self.sink = sink
        self.topics = topics
        self.online = online
        """The data shape's online state (None for a shape that keeps none)."""
        self.ledger: LabelLedger = ledger if ledger is not None else InMemoryLabelLedger()
        """Where accepted labels are recorded with their source."""
        self.logs = logs
        """The scoring and label logs (None: not kept)."""
        self.activity = activity
        """Where the analyst console's alerts, dead letters and live counts go (None: not kept)."""
        self._io = io_threads()
        """Work that overlaps the batch's Python work: the model, the Redis scripts, the log write."""

    def process(self, event: Mapping[str, Any]) -> BatchReport:
        return self._process(kafka_records(event))

    def _process(self, records: list[KafkaRecord]) -> BatchReport:
        report = BatchReport(received=len(records))
        decoded, poison = decode(records)
        attempt = os.urandom(8).hex()  # this delivery's batch: its marker covers what it publishes
        try:
            scored = self._score(decoded, poison, report, attempt)
            return self._store_and_publish(records, report, scored, poison, attempt, isolate=True)
        except StoreRejectedError as exc:
            return self._isolate(records, exc)
        except StoreUnavailableError as exc:
            return self._failed(report, records, exc)

    def _isolate(self, records: list[KafkaRecord], exc: StoreRejectedError) -> BatchReport:
        """The store refused something in this batch because of its data: process each half on
        its own until the record that causes it stands alone, then dead-letter that record.

        Safe to repeat: every write is idempotent (dedupe keys), so what an attempt applied
        before the refusal is recognised, not counted again."""
        if len(records) == 1:
            report = BatchReport(received=1)
            return self._store_and_publish(
                records, report, NOTHING_SCORED, [(records[0], f"store rejected: {exc}")], ""
            )
        middle = len(records) // 2
        return merge(self._process(records[:middle]), self._process(records[middle:]))

    def _score(self, decoded: Decoded, poison: Poison, report: BatchReport, attempt: str) -> ScoredBatch:
        """Features in stream order — a label counts for the transactions after it, never
        before — then the batch's claim and one model call for the whole batch, side by side."""
        shape = self.scorer.shape
        parts: list[tuple[list[KafkaRecord], Any]] = []
        run: Decoded = []
        labels: list[tuple[KafkaRecord, Label]] = []
        scored_here: dict[str, dict[str, Any]] = {}  # this batch's transactions, for its labels
        unindexed: list[Prepared] = []  # prepared runs not yet in scored_here (built only for labels)

        def flush_transactions() -> None:
            if run:
                # A record without an id gets one stable across redeliveries, in a namespace no
                # client can write (AUTO_ID_PREFIX is outside the id alphabet).
                auto_ids = [AUTO_ID_PREFIX + rec.record_id for rec, _ in run]
                prepared = self.scorer.prepare(
                    [p for _, p in run], online=self.online, observe=True, auto_ids=auto_ids
                )
                for pos, err in prepared.errors.items():
                    poison.append((run[pos][0], f"invalid transaction: {err}"))
                for pos in prepared.conflicts:
                    poison.append(
                        (run[pos][0], conflict_reason(run[pos][1].get("transaction_id") or auto_ids[pos]))
                    )
                    report.conflicts += 1
                parts.append(([run[p][0] for p in prepared.positions], prepared))
                unindexed.append(prepared)
                run.clear()

        def flush_labels() -> None:
            if labels:
                for prepared in unindexed:
                    for k, tid in enumerate(prepared.transaction_ids):
                        extra = prepared.extras[k] if prepared.extras else {}
                        scored_here[str(tid)] = {**extra, "card_id": prepared.card_ids[k]}
                unindexed.clear()
                accepted = trusted_labels(
                    labels, state=self.state, shape=shape, scored_here=scored_here, poison=poison
                )
                report.labels += record_labels(
                    accepted, ledger=self.ledger, logs=self.logs, shape=shape, online=self.online
                )
                labels.clear()

        for rec, payload in decoded:
            if payload.get("type") == LABEL_TYPE:
                flush_transactions()
                try:
                    labels.append((rec, parse_label(payload)))
                except InvalidTransactionError as exc:
                    poison.append((rec, f"invalid label: {exc}"))
            else:
                flush_labels()
                run.append((rec, payload))
        flush_transactions()
        flush_labels()
        return self._score_parts(parts, poison, report, attempt)

    def _score_parts(
        self, parts: list[tuple[list[KafkaRecord], Any]], poison: Poison, report: BatchReport, attempt: str
    ) -> ScoredBatch:
        origin = [rec for recs, _ in parts for rec in recs]
        if not origin:
            return NOTHING_SCORED
        prepared = [p for _, p in parts]
        features = (
            prepared[0].features if len(prepared) == 1 else np.concatenate([p.features for p in prepared])
        )
        # One row per scored transaction, in batch order: (record, id, card, amount, fingerprint,
        # event time, extra result fields).
        rows = list(
            zip(
                origin,
                [str(t) for p in prepared for t in p.transaction_ids],
                [c for p in prepared for c in p.card_ids],
                [a for p in prepared for a in p.amounts],
                [f for p in prepared for f in p.fingerprints],
                [t for p in prepared for t in p.event_times],
                [e for p in prepared for e in (p.extras or [{}] * len(p.positions))],
                strict=True,
            )
        )
        # The same transaction twice in one batch is scored and counted once; the same id with
        # another payload is a conflict (an invalid record with the same id went to the DLQ above
        # and does not mask either).
        keep: list[int] = []
        first: dict[str, str] = {}
        for index, (rec, tid, _, _, fp, _, _) in enumerate(rows):
            if tid not in first:
                first[tid] = fp
                keep.append(index)
            elif first[tid] == fp:
                report.duplicates += 1
            else:
                poison.append((rec, conflict_reason(tid)))
                report.conflicts += 1
        if len(keep) < len(rows):
            features = features[keep]
            rows = [rows[k] for k in keep]
        # Redis claims the transactions and the model scores them (onnxruntime releases the GIL),
        # each on an I/O thread, while this thread serialises the features for the scoring log.
        claims = [Claim(tid, card, amount, fp) for _, tid, card, amount, fp, _, _ in rows]
        claimed = self._io.submit(self.state.claim, claims, attempt)
        scoring = self._io.submit(
            self.scorer.score_features,
            features,
            transaction_ids=[r[1] for r in rows],
            card_ids=[r[2] for r in rows],
            explain="flagged",
        )
        try:
            logged = logged_features(features, self.scorer.shape.feature_names)
            results = scoring.result()
        except BaseException:
            running: list[Future[Any]] = [claimed, scoring]
            wait(running)  # neither may run on into the next attempt
            raise
        now = time.time()
        scored = []
        for (rec, _, _, _, _, event_time, extra), claim, res in zip(rows, claims, results, strict=True):
            body = res.to_dict()
            body["source"] = {"topic": rec.topic, "partition": rec.partition, "offset": rec.offset}
            body["scored_at"] = now
            if extra:
                body.update(extra)
            encoded = orjson.dumps(body).decode()  # once: stored in Redis and published as is
            scored.append(Scored(rec, body, encoded, claim, res, event_time, extra))
        return ScoredBatch(scored, features, now, logged, claimed)

    def _console(
        self, batch: ScoredBatch, rows: list[dict[str, Any]], bodies: list[dict[str, Any]], kept: list[int]
    ) -> ActivityWrite | None:
        """The console's view of the published transactions (log rows and bodies of ``kept``),
        prepared for writing (None: no console kept)."""
        if self.activity is None:
            return None
        names = self.scorer.shape.feature_names
        return self.activity.prepare(
            [
                event_from_row(
                    row,
                    reasons=body.get("reasons") or [],
                    amount=batch.rows[index].claim.amount,
                    features=batch.feature_dict(index, names) if body["decision"] != "approve" else None,
                    source="stream",
                )
                for row, body, index in zip(rows, bodies, kept, strict=True)
            ]
        )

    @staticmethod
    def _failed(report: BatchReport, records: list[KafkaRecord], exc: Exception) -> BatchReport:
        # Nothing of this batch is confirmed: let the event-source mapping redeliver all of it.
        report.error = str(exc)
        report.failures = [rec.identifier for rec in records]
        report.scored = report.alerts = 0
        return report

    def _store_and_publish(
        self,
        records: list[KafkaRecord],
        report: BatchReport,
        batch: ScoredBatch,
        poison: Poison,
        attempt: str,
        *,
        isolate: bool = False,
    ) -> BatchReport:
        """Store, publish, mark done. A StoreRejectedError propagates when ``isolate`` (the
        caller bisects the batch); any other store or broker failure reports the batch.

        The results are stored before any is published: a consumer that sees a result can read
        it back, and a redelivery republishes exactly what went out. Python works while the
        stores do: the scoring log's rows are built while Redis finishes the claim, its lines
        and the console's write while the results are stored, and the log is compressed and
        written (zlib releases the GIL) while the results are published. The console is written
        last, after the transactions are marked done, so a redelivery never shows a
        transaction there twice."""
        scored = batch.rows
        log_write: Future[str] | None = None
        storing: Future[list[str]] | None = None
        try:
            rows = batch.log_rows(self.scorer.shape.name)
            states = batch.claimed.result() if batch.claimed is not None else []
            to_publish: list[tuple[dict[str, Any], str]] = []
            logged: list[dict[str, Any]] = []
            kept: list[int] = []  # where each published transaction sits in the batch
            new: list[tuple[str, str]] = []
            pending: list[tuple[str, str]] = []
            for index, (s, state) in enumerate(zip(scored, states, strict=True)):
                if state == CONFLICT:
                    poison.append((s.record, conflict_reason(s.claim.transaction_id)))
                    report.conflicts += 1
                    continue
                if state == Dedupe.DONE:
                    report.duplicates += 1
                    continue
                (new if state == NEW else pending).append((s.claim.transaction_id, s.encoded))
                to_publish.append((s.body, s.encoded))
                logged.append(rows[index])
                kept.append(index)
            try:
                if new or pending:
                    storing = self._io.submit(self.state.store_results, new, pending)
                report.scored += len(new)
                if pending:
                    # Claimed by an earlier delivery whose publish was not confirmed: republish
                    # the result it stored (never rescore or recount), or store and publish this
                    # one when that delivery stopped before storing.
                    assert storing is not None
                    stored = iter(storing.result())
                    for at, index in enumerate(kept):
                        if states[index] == NEW:
                            continue
                        republished = next(stored)
                        if republished == to_publish[at][1]:
                            report.scored += 1
                            continue
                        report.duplicates += 1
                        body, encoded = orjson.loads(republished), republished
                        to_publish[at] = (body, encoded)
                        logged[at] = {**logged[at], **{k: body[k] for k in _AS_SCORED if k in body}}
                console = self._console(batch, logged, [body for body, _ in to_publish], kept)
                # Written while the results are published; the transactions are marked done only
                # after both: a batch whose log write fails is redelivered whole (its results may
                # be published twice then, as after a failed flush) and its rows are logged then —
                # nothing scored goes unlogged. The object is named after its first row's record
                # and filed under that row's first scoring time: a redelivery (done rows are not
                # logged again, pending ones are) overwrites it even when the batch boundaries
                # moved.
                if self.logs is not None and logged:
                    log_write = self._io.submit(
                        self.logs.scoring.write_lines,
                        lines(logged),
                        name=scored[kept[0]].record.record_id,
                        when=logged[0]["scored_at"],
                    )
                if storing is not None:
                    storing.result()
                for body, encoded in to_publish:
                    value = encoded.encode()
                    key = (body.get("card_id") or body["transaction_id"]).encode()
                    if self.topics.scores:
                        self.sink.publish(self.topics.scores, key, value)
                    if body["decision"] != "approve":
                        self.sink.publish(self.topics.alerts, key, value)
                        report.alerts += 1
                poison_ids = [rec.record_id for rec, _ in poison]
                already = self.state.dead_letters_done(poison_ids)
                fresh = [
                    (pid, rec, why)
                    for pid, (rec, why) in zip(poison_ids, poison, strict=True)
                    if pid not in already
                ]
                for _, rec, why in fresh:
                    self.sink.publish(self.topics.dlq, rec.key, dead_letter(rec, why))
                self.sink.flush()
            finally:
                # Their failures fail the batch, once the flush is over; never left running into
                # the next attempt (a redelivery's store must not race this one's).
                settle(storing, log_write)
            if to_publish:
                self.state.mark_published(attempt)
            self.state.mark_dead_letters([pid for pid, _, _ in fresh])
            if console is not None:
                dead = [
                    DeadLetterEntry(
                        pid, why, rec.key, rec.value if rec.value is not None else rec.raw_value.encode()
                    )
                    for pid, rec, why in fresh
                ]
                write_quietly(console, dead, logger=logger)
        except (StoreUnavailableError, SinkUnavailableError) as exc:
            if isolate and isinstance(exc, StoreRejectedError):
                raise
            return self._failed(report, records, exc)
        report.dead_lettered = len(fresh)
        report.duplicates += len(poison) - len(fresh)
        report.results = [body for body, _ in to_publish]
        return report
