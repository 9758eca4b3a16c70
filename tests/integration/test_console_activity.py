"""The console's Redis window on a real Redis: capped, TTL'd, one round trip, read back as written."""

from __future__ import annotations

import time
from pathlib import Path

import redis

from fraud_core.online import keys
from fraud_core.online.activity import ActivityLimits, DeadLetterEntry, RedisActivity, ScoredEvent
from fraud_devstack.services import start_redis


def scored(i: int, *, at: float, card: str = "card:1/x") -> ScoredEvent:
    alert = i % 2 == 0
    return ScoredEvent(
        transaction_id=f"t:{i}/z",
        card_id=card,
        fraud_score=0.9 if alert else 0.05,
        decision="decline" if alert else "approve",
        model_version="v1",
        scored_at=at,
        amount=float(i),
        features={"V1": float(i)} if alert else None,
    )


def test_window_is_capped_ttld_and_read_back(tmp_path: Path) -> None:
    own = start_redis(log_dir=tmp_path)  # its keys are global (fraud:alerts): a private server
    try:
        check(redis.Redis.from_url(own.url))
    finally:
        own.stop()


def check(client: redis.Redis) -> None:
    limits = ActivityLimits(
        alerts=100, dead_letters=10, card_recent=3, detail_ttl_seconds=3600, card_ttl_seconds=7200
    )
    activity = RedisActivity(client, limits)
    now = time.time()
    # WHEN 1,000 transactions (500 alerts) and 50 dead letters are recorded in batches of 100
    for start in range(0, 1000, 100):
        dead = [DeadLetterEntry(f"tx-0-{start + k}", "invalid json", None, b"\x00x") for k in range(5)]
        activity.record([scored(i, at=now) for i in range(start, start + 100)], dead)
    # THEN the streams are capped near their limits (MAXLEN ~ trims by whole nodes)
    assert 100 <= client.xlen(keys.ALERTS) < 300
    assert 10 <= client.xlen(keys.DEAD_LETTERS) < 150
    newest = activity.recent_alerts(5)
    assert [a["transaction_id"] for a in newest] == ["t:998/z", "t:996/z", "t:994/z", "t:992/z", "t:990/z"]
    detail = activity.alert("t:998/z")
    assert detail is not None and detail["features"] == {"V1": 998.0}
    assert 0 < client.ttl(keys.ALERT("t:998/z")) <= 3600
    # AND the card keeps its newest three, newest first, with a TTL
    assert [r["transaction_id"] for r in activity.card_recent("card:1/x", 10)] == [
        "t:999/z",
        "t:998/z",
        "t:997/z",
    ]
    assert 0 < client.ttl(keys.RECENT("card:1/x")) <= 7200
    # AND the live counters hold every score of the minute, by decision and score bin
    (bucket,) = [b for b in activity.live(now=now, minutes=2) if b.counts]
    assert bucket.counts["n"] == 1000 and bucket.counts["decline"] == 500 and bucket.counts["b9"] == 500
    assert 0 < client.ttl(keys.LIVE(str(bucket.minute))) <= keys.LIVE_TTL_SECONDS
    assert activity.dead_letters(1)[0]["record_id"] == "tx-0-904"
    # AND a card seen less often than its three keeps what it has, over two batches
    activity.record([scored(2000, at=now, card="card:2/y")])
    activity.record([scored(2001, at=now, card="card:2/y")])
    assert [r["transaction_id"] for r in activity.card_recent("card:2/y", 10)] == ["t:2001/z", "t:2000/z"]
    assert 0 < client.ttl(keys.RECENT("card:2/y")) <= 7200
