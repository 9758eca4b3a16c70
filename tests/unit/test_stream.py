"""The stream batch logic and the Kafka Lambda handler, with in-memory state and sink."""

from __future__ import annotations

import base64
import copy
import json
from typing import Any

import orjson
import pytest

from fraud_core.errors import SinkUnavailableError, StoreRejectedError, StoreUnavailableError
from fraud_core.scorer import Scorer
from fraud_core.shapes.kaggle import PCA_FIELDS
from fraud_core.stream.events import InvalidEventError, kafka_records
from fraud_core.stream.ports import Claim
from fraud_core.stream.processor import StreamProcessor
from fraud_core.stream.sinks import InMemorySink
from fraud_core.stream.state import InMemoryStreamState
from fraud_devstack.kafka_events import build_event
from fraud_training.data import to_records
from tests.conftest import TrainedModel
from tests.events import lambda_context, load_event


def message(payload: Any, *, offset: int, partition: int = 0, raw: bytes | None = None) -> dict[str, Any]:
    value = raw if raw is not None else json.dumps(payload).encode()
    return {"topic": "transactions", "partition": partition, "offset": offset, "key": b"k", "value": value}


@pytest.fixture
def transactions(trained: TrainedModel) -> list[dict[str, Any]]:
    frame = trained.frame
    picked = [
        *to_records(frame[frame["Class"] == 0].head(20)),
        *to_records(frame[frame["Class"] == 1].head(10)),
    ]
    return [{**r, "card_id": f"c_{i % 4}"} for i, r in enumerate(picked)]


def make(scorer: Scorer) -> tuple[StreamProcessor, InMemoryStreamState, InMemorySink]:
    state, sink = InMemoryStreamState(), InMemorySink()
    return StreamProcessor(scorer, state, sink), state, sink


@pytest.mark.parametrize("event_file", ["kafka-msk.json", "kafka-self-managed.json"])
def test_both_event_shapes_decode(event_file: str) -> None:
    records = kafka_records(load_event(event_file))
    assert [(r.partition, r.offset) for r in records] == [(0, 100), (0, 102), (1, 101)]
    assert records[0].headers == {"source": b"producer"}
    assert json.loads(records[0].value or b"")["transaction_id"] == "t_1"


def test_unknown_event_source_is_refused() -> None:
    with pytest.raises(InvalidEventError, match="eventSource"):
        kafka_records({"eventSource": "aws:sqs", "records": {}})


@pytest.mark.parametrize(
    ("value", "decoded"),
    [
        ("eyJhIjogMX0=", b'{"a": 1}'),
        ("", b""),
        ("eyJhIjog MX0=", None),  # a stray space: lenient decoders drop it and score the rest
        ("eyJhIjogMX0=\n", None),
        ("eyJh-IjogMX0=", None),  # the URL-safe alphabet is another encoding
        ("eyJhIjogMX0", None),  # padding missing
        ("eyJhIjogMX0==", None),  # padding in excess
        ("eyJhIjo=gMX0=", None),  # padding in the middle
        ("ZXlK=", None),  # padding after a complete group
        ("é", None),
        (None, None),
        (42, None),
    ],
)
def test_record_values_are_decoded_strictly(value: Any, decoded: bytes | None) -> None:
    event = build_event([message({}, offset=0)])
    event["records"]["transactions-0"][0]["value"] = value
    assert kafka_records(event)[0].value == decoded


def test_batch_is_scored_stored_and_alerted_once(scorer: Scorer, transactions: list[dict[str, Any]]) -> None:
    processor, state, sink = make(scorer)
    event = build_event([message(t, offset=i) for i, t in enumerate(transactions)])
    report = processor.process(event)
    assert report.failures == []
    assert report.scored == len(transactions)
    assert len(sink.values("fraud-scores")) == len(transactions)
    alerts = sink.values("fraud-alerts")
    assert {a["transaction_id"] for a in alerts} == {
        r["transaction_id"] for r in report.results if r["decision"] != "approve"
    }
    assert alerts, "known frauds should raise alerts"
    assert sum(c["tx_count"] for c in state.cards.values()) == len(transactions)
    assert all(s == "done" for s in state.seen.values())

    # WHEN the same batch is delivered again THEN nothing changes and nothing is republished
    again = processor.process(copy.deepcopy(event))
    assert again.scored == 0
    assert again.duplicates == len(transactions)
    assert len(sink.values("fraud-alerts")) == len(alerts)
    assert sum(c["tx_count"] for c in state.cards.values()) == len(transactions)


def test_poison_records_go_to_dlq_and_neighbours_are_scored(
    scorer: Scorer, transactions: list[dict[str, Any]]
) -> None:
    processor, _, sink = make(scorer)
    good = transactions[:3]
    msgs = [
        message(good[0], offset=0),
        message(None, offset=1, raw=b"\xff\xfe not utf8"),
        message(None, offset=2, raw=b"{not json"),
        message([1, 2], offset=3),
        message({**good[1], "V3": "abc"}, offset=4),
        message({k: v for k, v in good[1].items() if k != "Amount"}, offset=5),
        message(None, offset=6, raw=b"{" + b" " * 70_000 + b"}"),
        message(good[1], offset=7),
        message(good[2], offset=8),
    ]
    event = build_event(msgs)
    event["records"]["transactions-0"][2]["value"] = "%%% not base64 %%%"
    report = processor.process(event)
    dlq = sink.values("fraud-dlq")
    assert report.scored == 3
    assert report.dead_lettered == len(dlq) == 6
    reasons = " | ".join(d["reason"] for d in dlq)
    for expected in (
        "not valid UTF-8 JSON",
        "not valid base64",
        "expected an object",
        "V3: expected a number",
        "Amount: field required",
        "over 65536",
    ):
        assert expected in reasons
    # THEN each dead letter carries exactly the bytes that were sent, and where they came from
    sent = {m["offset"]: m["value"] for m in msgs}
    for d in dlq:
        assert (d["topic"], d["partition"], d["key"]) == ("transactions", 0, "k")
        if d["offset"] == 2:  # its value was replaced by corrupt base64 above: kept as received
            assert d["value_base64"] == "%%% not base64 %%%"
        else:
            assert base64.b64decode(d["value_base64"]) == sent[d["offset"]]
    # WHEN the batch is redelivered THEN no poison record is dead-lettered twice
    again = processor.process(copy.deepcopy(event))
    assert again.dead_lettered == 0
    assert len(sink.values("fraud-dlq")) == 6


def test_store_outage_reports_every_record_for_redelivery(
    scorer: Scorer, transactions: list[dict[str, Any]]
) -> None:
    class DownState(InMemoryStreamState):
        def claim(self, items: Any, batch: str) -> list[str]:
            raise StoreUnavailableError("redis claim script failed: Connection refused")

    processor = StreamProcessor(scorer, DownState(), InMemorySink())
    event = build_event([message(t, offset=i, partition=i % 2) for i, t in enumerate(transactions[:4])])
    response = processor.process(event).response()
    assert sorted(
        (f["itemIdentifier"]["partition"], f["itemIdentifier"]["offset"])
        for f in response["batchItemFailures"]
    ) == [("transactions-0", 0), ("transactions-0", 2), ("transactions-1", 1), ("transactions-1", 3)]


def test_broker_outage_then_redelivery_publishes_once_without_recounting(
    scorer: Scorer, transactions: list[dict[str, Any]]
) -> None:
    class FlakySink(InMemorySink):
        down = True

        def flush(self) -> None:
            if self.down:
                self._pending.clear()
                raise SinkUnavailableError("kafka flush failed: timed out")
            super().flush()

    state, sink = InMemoryStreamState(), FlakySink()
    processor = StreamProcessor(scorer, state, sink)
    event = build_event([message(t, offset=i) for i, t in enumerate(transactions)])
    assert len(processor.process(event).failures) == len(transactions)
    assert all(s == "pending" for s in state.seen.values())
    first = dict(state.results)
    sink.down = False
    report = processor.process(copy.deepcopy(event))
    assert report.failures == [] and (report.scored, report.duplicates) == (0, len(transactions))
    # the redelivery republishes the results the first delivery stored, byte for byte
    assert sorted(sink.values("fraud-scores"), key=lambda r: r["transaction_id"]) == [
        orjson.loads(first[t]) for t in sorted(first)
    ]
    assert sum(c["tx_count"] for c in state.cards.values()) == len(transactions)
    # a third delivery is a pure duplicate: the second attempt's publishing covers every row
    report = processor.process(copy.deepcopy(event))
    assert (report.scored, report.duplicates) == (0, len(transactions))
    assert len(sink.values("fraud-scores")) == len(transactions)


def test_a_delivery_that_stopped_between_claim_and_store_is_taken_over_once(
    scorer: Scorer, transactions: list[dict[str, Any]]
) -> None:
    # GIVEN a store whose result writes fail once: the delivery claimed and counted its
    # transactions, scored them, then could not store their results
    class LosesResults(InMemoryStreamState):
        down = True

        def store_results(self, new: Any, pending: Any) -> list[str]:
            if self.down:
                raise StoreUnavailableError("redis store script failed: Connection reset by peer")
            return super().store_results(new, pending)

    state, sink = LosesResults(), InMemorySink()
    processor = StreamProcessor(scorer, state, sink)
    event = build_event([message(t, offset=i) for i, t in enumerate(transactions)])
    first = processor.process(event)
    assert len(first.failures) == len(transactions) and state.results == {}
    # WHEN the batch is redelivered
    state.down = False
    report = processor.process(copy.deepcopy(event))
    # THEN every result is stored, as published by this delivery (its own scoring, not a
    # duplicate: nothing went out before), and nothing is counted twice
    assert report.failures == [] and (report.scored, report.duplicates) == (len(transactions), 0)
    ids = sorted(t["transaction_id"] for t in transactions)
    assert sorted(state.results) == ids
    assert {r["transaction_id"]: r for r in report.results} == {
        t: orjson.loads(state.results[t]) for t in ids
    }
    assert sum(c["tx_count"] for c in state.cards.values()) == len(transactions)
    # AND a third delivery is a pure duplicate
    assert processor.process(copy.deepcopy(event)).duplicates == len(transactions)
    assert len(sink.values("fraud-scores")) == len(transactions), "nothing is published before it is stored"


def test_the_stream_publishes_what_the_scorer_scores_with_the_alerts_reasons(
    scorer: Scorer, transactions: list[dict[str, Any]]
) -> None:
    # GIVEN a batch with alerts (the stream explains them with occlusion reasons)
    processor, _, sink = make(scorer)
    report = processor.process(build_event([message(t, offset=i) for i, t in enumerate(transactions)]))
    expected = {r.transaction_id: r.to_dict() for r in scorer.score_batch(transactions, explain="flagged")}
    assert report.alerts > 0 and any(e["reasons"] for e in expected.values())
    # THEN every published result is the scorer's own, reasons included, in the batch's order
    published = sink.values("fraud-scores")
    assert [p["transaction_id"] for p in published] == [t["transaction_id"] for t in transactions]
    assert {
        p["transaction_id"]: {k: p[k] for k in expected[p["transaction_id"]]} for p in published
    } == expected
    assert [a["transaction_id"] for a in sink.values("fraud-alerts")] == [
        t for t, e in expected.items() if e["decision"] != "approve"
    ]


def test_in_batch_duplicate_counts_once(scorer: Scorer, transactions: list[dict[str, Any]]) -> None:
    processor, state, _ = make(scorer)
    t = transactions[0]
    report = processor.process(build_event([message(t, offset=0), message(t, offset=1)]))
    assert report.scored == 1
    assert report.duplicates == 1
    assert state.cards[t["card_id"]]["tx_count"] == 1


def test_records_without_id_get_a_stable_one(scorer: Scorer, transactions: list[dict[str, Any]]) -> None:
    processor, state, _ = make(scorer)
    t = {k: v for k, v in transactions[0].items() if k != "transaction_id"}
    processor.process(build_event([message(t, offset=42)]))
    processor.process(build_event([message(t, offset=42)]))
    assert list(state.seen) == ["#transactions-0-42"]


def test_auto_ids_cannot_be_claimed_by_a_client(scorer: Scorer, transactions: list[dict[str, Any]]) -> None:
    # GIVEN a client that sends the id the stream would generate for offset 7
    processor, state, sink = make(scorer)
    claim = {**transactions[0], "transaction_id": "#transactions-0-7"}
    report = processor.process(build_event([message(claim, offset=0)]))
    # THEN it is refused (outside the id alphabet), and the record at offset 7 keeps its own id
    assert report.dead_lettered == 1 and "may only contain" in sink.values("fraud-dlq")[0]["reason"]
    anonymous = {k: v for k, v in transactions[1].items() if k != "transaction_id"}
    assert processor.process(build_event([message(anonymous, offset=7)])).scored == 1
    assert "#transactions-0-7" in state.seen


def test_same_id_with_another_payload_is_a_conflict_not_a_duplicate(
    scorer: Scorer, transactions: list[dict[str, Any]]
) -> None:
    processor, state, sink = make(scorer)
    original, rogue = transactions[0], {**transactions[0], "Amount": transactions[0]["Amount"] + 500}
    # WHEN the same id arrives twice in one batch with different payloads, then again later
    first = processor.process(build_event([message(original, offset=0), message(rogue, offset=1)]))
    later = processor.process(build_event([message(rogue, offset=2)]))
    same = processor.process(build_event([message(original, offset=3)]))
    # THEN each rogue copy is dead-lettered as id_conflict, the original is scored once
    assert (first.scored, first.conflicts, first.dead_lettered) == (1, 1, 1)
    assert (later.scored, later.conflicts, later.dead_lettered) == (0, 1, 1)
    assert (same.scored, same.duplicates, same.conflicts) == (0, 1, 0)
    reasons = [d["reason"] for d in sink.values("fraud-dlq")]
    assert all(r.startswith("id_conflict: transaction_id 't_0'") for r in reasons)
    assert [d["offset"] for d in sink.values("fraud-dlq")] == [1, 2]
    assert state.cards[original["card_id"]]["amount_sum"] == pytest.approx(original["Amount"])


def test_empty_batch(scorer: Scorer) -> None:
    processor, _, _ = make(scorer)
    assert processor.process({"eventSource": "aws:kafka", "records": {}}).response() == {
        "batchItemFailures": []
    }


def test_card_counters_take_the_amount_of_the_validated_row(
    scorer: Scorer, transactions: list[dict[str, Any]]
) -> None:
    # GIVEN the same transaction as a raw record and as a classic pre-scaled record on two cards
    raw = transactions[0]
    scaling = scorer.manifest.raw_scaling
    prescaled = {
        **{v: raw[v] for v in PCA_FIELDS},
        "scaled_amount": (raw["Amount"] - scaling["Amount"].center) / scaling["Amount"].scale,
        "scaled_time": (raw["Time"] - scaling["Time"].center) / scaling["Time"].scale,
        "transaction_id": "pre-1",
        "card_id": "c_pre",
    }
    processor, state, _ = make(scorer)
    report = processor.process(
        build_event([message({**raw, "card_id": "c_raw"}, offset=0), message(prescaled, offset=1)])
    )
    assert report.scored == 2
    # THEN both cards count the transaction's real amount (the pre-scaled one mapped back to raw)
    assert state.cards["c_raw"]["amount_sum"] == pytest.approx(raw["Amount"])
    assert state.cards["c_pre"]["amount_sum"] == pytest.approx(raw["Amount"], abs=1e-6)


def test_ids_follow_the_same_rules_as_the_api(scorer: Scorer, transactions: list[dict[str, Any]]) -> None:
    processor, _, sink = make(scorer)
    bad = [
        {**transactions[0], "transaction_id": 777},
        {**transactions[1], "transaction_id": "a|b"},
        {**transactions[2], "card_id": "x" * 129},
    ]
    report = processor.process(build_event([message(b, offset=i) for i, b in enumerate(bad)]))
    reasons = [d["reason"] for d in sink.values("fraud-dlq")]
    assert report.scored == 0
    assert len(reasons) == 3
    assert "expected a string id, got int" in reasons[0]
    assert "may only contain" in reasons[1]
    assert "1 to 128 characters" in reasons[2]


def test_out_of_range_values_are_refused_like_the_api(
    scorer: Scorer, transactions: list[dict[str, Any]]
) -> None:
    processor, _, sink = make(scorer)
    report = processor.process(
        build_event([message({**transactions[0], "V4": 1e300}, offset=0), message(transactions[1], offset=1)])
    )
    assert report.scored == 1
    assert "V4: must be between -10,000 and 10,000" in sink.values("fraud-dlq")[0]["reason"]


def test_a_claimed_amount_is_counted_once(scorer: Scorer) -> None:
    state = InMemoryStreamState()
    assert state.claim([Claim("a", "c", 2.5, "f1"), Claim("a", "c", 2.5, "f1")], "b1") == [
        "new",
        "pending",
    ]
    assert state.cards["c"] == {"tx_count": 1.0, "amount_sum": 2.5}


@pytest.mark.parametrize("event_file", ["kafka-msk.json", "kafka-self-managed.json"])
def test_lambda_handler_on_sample_events(service_env: TrainedModel, event_file: str) -> None:
    from fraud_stream import wiring
    from fraud_stream.handler import lambda_handler

    wiring.reset()
    response = lambda_handler(load_event(event_file), lambda_context())  # type: ignore[arg-type]
    assert response == {"batchItemFailures": []}
    sink = wiring.get_sink()
    assert isinstance(sink, InMemorySink)
    scores = sink.values("fraud-scores")
    assert sorted(s["transaction_id"] for s in scores) == ["t_1", "t_3", "t_9"]
    assert any(a["transaction_id"] == "t_9" for a in sink.values("fraud-alerts")), (
        "the sample's fraud (t_9) alerts"
    )
    wiring.reset()


def test_a_record_the_store_rejects_is_isolated_and_dead_lettered(
    scorer: Scorer, transactions: list[dict[str, Any]]
) -> None:
    # GIVEN a store that refuses, because of its data, any claim that contains transaction t_3
    class Picky(InMemoryStreamState):
        def claim(self, items: Any, batch: str) -> list[str]:
            if any(it.transaction_id == "t_3" for it in items):
                raise StoreRejectedError("redis claim script failed: ResponseError: WRONGTYPE")
            return super().claim(items, batch)

    state, sink = Picky(), InMemorySink()
    processor = StreamProcessor(scorer, state, sink)
    batch = build_event([message(t, offset=i) for i, t in enumerate(transactions[:8])])
    report = processor.process(batch)
    # THEN its seven neighbours are scored and the batch is not failed; t_3 alone is dead-lettered
    assert report.failures == []
    assert (report.received, report.scored, report.dead_lettered) == (8, 7, 1)
    (dead,) = sink.values("fraud-dlq")
    assert dead["offset"] == 3 and dead["reason"].startswith("store rejected: redis claim script failed")
    assert "t_3" not in state.seen and len(state.seen) == 7

    # AND a transient refusal (Redis at maxmemory) still fails the batch for redelivery
    class Full(InMemoryStreamState):
        def claim(self, items: Any, batch: str) -> list[str]:
            raise StoreUnavailableError("redis claim script failed: ResponseError: OOM command not allowed")

    full = StreamProcessor(scorer, Full(), InMemorySink()).process(batch)
    assert len(full.failures) == 8 and full.scored == 0
