"""The stream's dedupe states on a real Redis: one published marker per batch, not one write per
transaction, and every redelivery case the processor relies on."""

from __future__ import annotations

import uuid

import pytest
import redis

from fraud_core.online import keys
from fraud_core.online.client import redis_client
from fraud_core.stream.ports import CONFLICT, NEW, CommitItem
from fraud_core.stream.state import RedisStreamState
from fraud_devstack.services import Service


@pytest.fixture
def client(redis_server: Service) -> redis.Redis:
    return redis_client(redis_server.url, timeout_seconds=5)


def batch() -> str:
    """A batch attempt's name: unique, as the processor's are (the server outlives each test)."""
    return uuid.uuid4().hex


def items(ids: list[str], fingerprint: str = "f1") -> list[CommitItem]:
    return [CommitItem(t, f'{{"transaction_id": "{t}"}}', "card-" + t, 1.5, fingerprint) for t in ids]


def test_a_published_batch_makes_its_transactions_done_with_one_write(client: redis.Redis) -> None:
    state = RedisStreamState(client)
    b1, b2 = batch(), batch()
    ids = [f"t-{uuid.uuid4().hex}" for _ in range(3)]
    # GIVEN a committed batch whose results were published
    assert state.commit(items(ids), b1) == [NEW] * 3
    assert state.dedupe_states(ids) == [keys.Dedupe.PENDING] * 3
    state.mark_published(b1)
    # THEN every transaction reads done, and a redelivery is a pure duplicate (nothing counted again)
    assert state.dedupe_states(ids) == [keys.Dedupe.DONE] * 3
    assert state.commit(items(ids), b2) == [keys.Dedupe.DONE] * 3
    assert [int(client.hget(keys.CARD("card-" + t), "tx_count") or 0) for t in ids] == [1, 1, 1]
    assert client.ttl(keys.PUBLISHED(b1)) > 0


def test_an_unpublished_batch_is_republished_once_under_the_next_attempt(client: redis.Redis) -> None:
    state = RedisStreamState(client)
    b1, b2, b3 = batch(), batch(), batch()
    ids = [f"t-{uuid.uuid4().hex}" for _ in range(2)]
    # GIVEN a batch committed but never marked published (its flush failed)
    assert state.commit(items(ids), b1) == [NEW, NEW]
    # WHEN it is redelivered THEN its transactions are pending (republish the stored result) ...
    assert state.commit(items(ids), b2) == [keys.Dedupe.PENDING] * 2
    # ... and the new attempt's marker covers them
    state.mark_published(b2)
    assert state.commit(items(ids), b3) == [keys.Dedupe.DONE] * 2
    assert [int(client.hget(keys.CARD("card-" + t), "tx_count") or 0) for t in ids] == [1, 1]


def test_values_written_before_batch_markers_keep_their_meaning(client: redis.Redis) -> None:
    state = RedisStreamState(client)
    b1 = batch()
    done, pending = f"t-{uuid.uuid4().hex}", f"t-{uuid.uuid4().hex}"
    client.set(keys.SEEN(done), "done:f1")
    client.set(keys.SEEN(pending), "pending:f1")
    assert state.commit(items([done, pending]), b1) == [keys.Dedupe.DONE, keys.Dedupe.PENDING]
    state.mark_published(b1)
    assert state.dedupe_states([done, pending]) == [keys.Dedupe.DONE, keys.Dedupe.DONE]


def test_another_payload_under_a_committed_id_is_a_conflict(client: redis.Redis) -> None:
    state = RedisStreamState(client)
    b1, b2, b3 = batch(), batch(), batch()
    tid = f"t-{uuid.uuid4().hex}"
    assert state.commit(items([tid], "a1"), b1) == [NEW]
    assert state.commit(items([tid], "e2"), b2) == [CONFLICT]
    state.mark_published(b1)
    assert state.commit(items([tid], "e2"), b3) == [CONFLICT]
