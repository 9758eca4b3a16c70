"""The stream's dedupe states on a real Redis: one published marker per batch, not one write per
transaction, claims before results, and every redelivery case the processor relies on."""

from __future__ import annotations

import uuid

import pytest
import redis

from fraud_core.online import keys
from fraud_core.online.client import redis_client
from fraud_core.stream.ports import CONFLICT, NEW, Claim
from fraud_core.stream.state import RedisStreamState
from fraud_devstack.services import Service


@pytest.fixture
def client(redis_server: Service) -> redis.Redis:
    return redis_client(redis_server.url, timeout_seconds=5)


def batch() -> str:
    """A batch attempt's name: unique, as the processor's are (the server outlives each test)."""
    return uuid.uuid4().hex


def items(ids: list[str], fingerprint: str = "f1") -> list[Claim]:
    return [Claim(t, "card-" + t, 1.5, fingerprint) for t in ids]


def test_a_published_batch_makes_its_transactions_done_with_one_write(client: redis.Redis) -> None:
    state = RedisStreamState(client)
    b1, b2 = batch(), batch()
    ids = [f"t-{uuid.uuid4().hex}" for _ in range(3)]
    # GIVEN a claimed batch whose results were published
    assert state.claim(items(ids), b1) == [NEW] * 3
    assert state.dedupe_states(ids) == [keys.Dedupe.PENDING] * 3
    state.mark_published(b1)
    # THEN every transaction reads done, and a redelivery is a pure duplicate (nothing counted again)
    assert state.dedupe_states(ids) == [keys.Dedupe.DONE] * 3
    assert state.claim(items(ids), b2) == [keys.Dedupe.DONE] * 3
    assert [int(client.hget(keys.CARD("card-" + t), "tx_count") or 0) for t in ids] == [1, 1, 1]
    assert client.ttl(keys.PUBLISHED(b1)) > 0


def test_an_unpublished_batch_is_republished_once_under_the_next_attempt(client: redis.Redis) -> None:
    state = RedisStreamState(client)
    b1, b2, b3 = batch(), batch(), batch()
    ids = [f"t-{uuid.uuid4().hex}" for _ in range(2)]
    # GIVEN a batch claimed but never marked published (its flush failed)
    assert state.claim(items(ids), b1) == [NEW, NEW]
    # WHEN it is redelivered THEN its transactions are pending (republish the stored result) ...
    assert state.claim(items(ids), b2) == [keys.Dedupe.PENDING] * 2
    # ... and the new attempt's marker covers them
    state.mark_published(b2)
    assert state.claim(items(ids), b3) == [keys.Dedupe.DONE] * 2
    assert [int(client.hget(keys.CARD("card-" + t), "tx_count") or 0) for t in ids] == [1, 1]


def test_values_written_before_batch_markers_keep_their_meaning(client: redis.Redis) -> None:
    state = RedisStreamState(client)
    b1 = batch()
    done, pending = f"t-{uuid.uuid4().hex}", f"t-{uuid.uuid4().hex}"
    client.set(keys.SEEN(done), "done:f1")
    client.set(keys.SEEN(pending), "pending:f1")
    assert state.claim(items([done, pending]), b1) == [keys.Dedupe.DONE, keys.Dedupe.PENDING]
    state.mark_published(b1)
    assert state.dedupe_states([done, pending]) == [keys.Dedupe.DONE, keys.Dedupe.DONE]


def test_another_payload_under_a_claimed_id_is_a_conflict(client: redis.Redis) -> None:
    state = RedisStreamState(client)
    b1, b2, b3 = batch(), batch(), batch()
    tid = f"t-{uuid.uuid4().hex}"
    assert state.claim(items([tid], "a1"), b1) == [NEW]
    assert state.claim(items([tid], "e2"), b2) == [CONFLICT]
    state.mark_published(b1)
    assert state.claim(items([tid], "e2"), b3) == [CONFLICT]


def test_a_takeover_republishes_what_the_first_delivery_stored_and_stores_what_it_did_not(
    client: redis.Redis,
) -> None:
    state = RedisStreamState(client)
    b1, b2 = batch(), batch()
    stored, lost = f"t-{uuid.uuid4().hex}", f"t-{uuid.uuid4().hex}"

    def result(tid: str, attempt: str) -> str:
        return f'{{"transaction_id":"{tid}","attempt":"{attempt}"}}'

    # GIVEN a delivery that claimed two transactions and stopped after storing one result
    assert state.claim(items([stored, lost]), b1) == [NEW, NEW]
    assert state.store_results([(stored, result(stored, "first"))], []) == []
    assert client.get(keys.RESULT(lost)) is None
    # WHEN the next delivery claims them THEN both are pending, nothing is counted twice ...
    assert state.claim(items([stored, lost]), b2) == [keys.Dedupe.PENDING] * 2
    assert [int(client.hget(keys.CARD("card-" + t), "tx_count") or 0) for t in (stored, lost)] == [1, 1]
    # ... and storing keeps the first delivery's result (to republish) and stores its own for the other
    again = state.store_results([], [(stored, result(stored, "second")), (lost, result(lost, "second"))])
    assert again == [result(stored, "first"), result(lost, "second")]
    assert client.get(keys.RESULT(stored)) == result(stored, "first").encode()
    assert client.get(keys.RESULT(lost)) == result(lost, "second").encode()
    assert 0 < client.ttl(keys.RESULT(lost)) <= state.result_ttl
    # AND a result stored as new overwrites what is there (a claim answers new only once the
    # dedupe key has expired, and a result may outlive it)
    assert state.store_results([(stored, result(stored, "third"))], []) == []
    assert client.get(keys.RESULT(stored)) == result(stored, "third").encode()


def test_a_result_with_a_raw_newline_is_refused_before_it_reaches_redis(client: redis.Redis) -> None:
    state = RedisStreamState(client)
    tid = f"t-{uuid.uuid4().hex}"
    with pytest.raises(ValueError, match="newline"):
        state.store_results([(tid, '{"a":\n1}'), (f"{tid}-2", "{}")], [])
    assert client.get(keys.RESULT(tid)) is None
