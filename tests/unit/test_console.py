"""The analyst console without sockets: view logic, escaping, session cookie, CSRF, and the
Redis slow/down paths, through the app with its stores replaced by in-memory fakes."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from fraud_api import deps
from fraud_api.console import session as sess
from fraud_api.console import views
from fraud_api.main import create_app
from fraud_api.routes import console
from fraud_core.errors import StoreUnavailableError
from fraud_core.online.activity import (
    DeadLetterEntry,
    InMemoryActivity,
    MinuteBucket,
    ScoredEvent,
    minute_counts,
    score_bin,
)
from fraud_core.online.labels import InMemoryLabelLedger
from fraud_core.online.results import InMemoryResultStore
from fraud_core.provider import ModelProvider
from fraud_core.scorer import Scorer
from fraud_core.settings import Settings
from fraud_core.stream.processor import StreamProcessor
from fraud_core.stream.sinks import InMemorySink
from fraud_core.stream.state import InMemoryStreamState
from fraud_devstack.kafka_events import build_event
from fraud_training.data import to_records
from tests.conftest import TrainedModel

TX = "card:42/2026-11-30/tx-1"
"""An id with ':' and '/', as clients send them."""
API_KEY = "api-key-for-tests"
LABELS_KEY = "labels-key-for-tests"


def event(
    tid: str, score: float, decision: str, *, at: float | None = None, version: str = "v1"
) -> ScoredEvent:
    return ScoredEvent(
        transaction_id=tid,
        card_id="c_42",
        fraud_score=score,
        decision=decision,
        model_version=version,
        scored_at=time.time() if at is None else at,
        amount=99.5,
        reasons=[{"feature": "V14", "value": -9.1, "contribution": 0.42}],
        features={"V14": -9.1, "Amount": 99.5},
        challenger={"model_version": "v2", "fraud_score": 0.77},
    )


# -- view logic -------------------------------------------------------------------------------


def test_queue_filter_ignores_bad_values_and_says_why() -> None:
    flt = views.QueueFilter.parse({"decision": "approve", "min_score": "2", "model_version": "v1"})
    assert (flt.decision, flt.min_score, flt.model_version) == ("", None, "v1")
    assert len(flt.problems) == 2
    assert views.QueueFilter.parse({"min_score": "nan"}).min_score is None
    assert views.QueueFilter.parse({"min_score": "0.5"}).query() == "min_score=0.5"


def test_queue_is_newest_first_once_per_transaction_filtered_and_counted() -> None:
    # GIVEN alerts newest first, one of them redelivered (twice in the stream)
    alerts = [
        event("t3", 0.95, "decline", version="v2").summary(),
        event("t2", 0.40, "review").summary(),
        event("t3", 0.95, "decline", version="v2").summary(),
        event("t1", 0.70, "decline").summary(),
    ]
    labels = {"t1": {"is_fraud": True, "author": "key:abc", "at": 1.0}}
    everything = views.queue_view(alerts, labels, views.QueueFilter())
    assert [r.transaction_id for r in everything.rows] == ["t3", "t2", "t1"]
    assert everything.counts == {"total": 3, "shown": 3, "labelled": 1, "review": 1, "decline": 2}
    assert everything.model_versions == ["v1", "v2"]
    assert everything.rows[2].label_text == "fraud"
    # WHEN filtered by decision, min score and model version
    flt = views.QueueFilter.parse({"decision": "decline", "min_score": "0.8"})
    assert [r.transaction_id for r in views.queue_view(alerts, labels, flt).rows] == ["t3"]
    flt = views.QueueFilter.parse({"model_version": "v1"})
    assert [r.transaction_id for r in views.queue_view(alerts, labels, flt).rows] == ["t2", "t1"]


def test_case_links_escape_ids_with_colons_and_slashes() -> None:
    row = views.queue_view([event(TX, 0.9, "decline").summary()], {}, views.QueueFilter()).rows[0]
    assert row.case_query == "tx=card%3A42%2F2026-11-30%2Ftx-1"


def test_dead_letter_preview_never_passes_raw_bytes() -> None:
    entry = DeadLetterEntry("t-0-7", "invalid json", b"\xff", b"\x00<script>alert(1)</script>\n\xe9")
    row = views.dead_letter_rows([entry.to_fields()])[0]
    assert row["preview"] == "\\x00<script>alert(1)</script>\\x0a\\xe9"
    assert row["key"] == "\\xff"
    assert row["size"] == "28"
    assert views.preview("not base64!") == "(preview unavailable)"


def test_live_view_draws_per_minute_bars_mix_and_histogram() -> None:
    buckets = [
        MinuteBucket(1000, {}),
        MinuteBucket(1001, {"n": 4, "approve": 3, "decline": 1, "b0": 3, "b9": 1}),
        MinuteBucket(1002, {"n": 2, "approve": 1, "review": 1, "b0": 1, "b5": 1}),
    ]
    live = views.live_view(buckets)
    assert live.total == 6
    assert live.decisions == {"approve": 4, "review": 1, "decline": 1}
    heights = [b.height for b in live.per_minute.bars]
    assert heights == [0.0, views.PLOT_HEIGHT, views.PLOT_HEIGHT / 2]
    assert [round(b.width) for b in live.mix.bars] == [400, 100, 100]
    assert live.histogram.peak == 4
    assert (score_bin(1.0), score_bin(0.0), score_bin(0.55), score_bin(float("nan"))) == (9, 0, 5, 0)


@pytest.mark.parametrize(
    ("score", "expected"),
    [
        (0.0, 0),
        (0.0999, 0),
        (0.1, 1),
        (0.55, 5),
        (0.9999, 9),
        (1.0, 9),
        (1.5, 9),
        (-0.05, 0),
        (-3.0, 0),
        (float("nan"), 0),
        (float("inf"), 0),
        (float("-inf"), 0),
    ],
)
def test_score_bins_cover_every_float(score: float, expected: int) -> None:
    assert score_bin(score) == expected


def test_minute_counts_group_by_minute_decision_and_bin() -> None:
    events = [
        event("a", 0.05, "approve", at=60 * 1000 + 1),
        event("b", 0.07, "approve", at=60 * 1000 + 59),
        event("c", 0.95, "decline", at=60 * 1000 + 30),
        event("d", 0.55, "review", at=60 * 1001),
    ]
    assert minute_counts(events) == {
        1000: {"n": 3, "approve": 2, "b0": 2, "decline": 1, "b9": 1},
        1001: {"n": 1, "review": 1, "b5": 1},
    }
    assert minute_counts([]) == {}


def test_slow_redis_serves_the_last_snapshot_marked_stale_and_down_says_so() -> None:
    clock = [100.0]
    snapshots = views.Snapshots(max_age_seconds=60, clock=lambda: clock[0])
    assert snapshots.fetch("q", lambda: [1]).value == [1]

    def slow() -> list[int]:
        raise StoreUnavailableError("redis XREVRANGE failed: TimeoutError: Timeout reading from socket")

    def down() -> list[int]:
        raise StoreUnavailableError("redis XREVRANGE failed: ConnectionError: Connection refused")

    clock[0] = 130.0
    stale = snapshots.fetch("q", slow)
    assert (stale.value, stale.problem, stale.stale, stale.age(now=130.0)) == ([1], "slow", True, 30.0)
    nothing = snapshots.fetch("other", down)
    assert (nothing.value, nothing.problem, nothing.stale) == (None, "down", False)
    clock[0] = 500.0  # too old to show
    assert snapshots.fetch("q", slow).value is None


# -- the session cookie -----------------------------------------------------------------------


def test_session_cookie_is_signed_expires_and_binds_the_csrf_token() -> None:
    secret = b"s" * 32
    s = sess.Session.new(principal="key:abc", author="key:def", can_label=True, hours=1, now=1000.0)
    cookie = sess.sign(s, secret)
    assert sess.verify(cookie, secret, now=1001.0) == s
    assert sess.verify(cookie, secret, now=1000.0 + 3601) is None, "expired"
    assert sess.verify(cookie, b"t" * 32, now=1001.0) is None, "another secret"
    payload, mac = cookie.split(".")
    forged = sess._b64(sess._unb64(payload).replace(b'"can_label":true', b'"can_label":false'))
    assert sess.verify(f"{forged}.{mac}", secret, now=1001.0) is None, "tampered"
    assert sess.verify("garbage", secret) is None
    assert sess.csrf_ok(s, s.csrf) and not sess.csrf_ok(s, "x" + s.csrf) and not sess.csrf_ok(s, None)
    assert sess.derive_secret("a") != sess.derive_secret("b")


@pytest.mark.parametrize(
    ("target", "expected"),
    [
        ("/console/case?tx=a", "/console/case?tx=a"),
        ("https://evil.example/console", "/console"),
        ("//evil.example/console", "/console"),
        ("/docs", "/console"),
        (None, "/console"),
    ],
)
def test_login_only_returns_to_console_pages(target: str | None, expected: str) -> None:
    assert sess.safe_next(target) == expected


# -- through the app --------------------------------------------------------------------------


class FlakyActivity(InMemoryActivity):
    """Answers until told to fail like a slow or a dead Redis."""

    failure: str | None = None

    def _check(self) -> None:
        if self.failure == "slow":
            raise StoreUnavailableError(
                "redis XREVRANGE alerts failed: TimeoutError: Timeout reading from socket"
            )
        if self.failure == "down":
            raise StoreUnavailableError("redis XREVRANGE alerts failed: ConnectionError: Connection refused")

    def recent_alerts(self, count: int) -> list[dict[str, Any]]:
        self._check()
        return super().recent_alerts(count)

    def live(self, *, now: float, minutes: int = 60) -> list[MinuteBucket]:
        self._check()
        return super().live(now=now, minutes=minutes)


@pytest.fixture
def parts(trained: TrainedModel) -> dict[str, Any]:
    store = InMemoryResultStore()
    store.put_results(
        [{"transaction_id": TX, "fraud_score": 0.9, "decision": "decline", "model_version": "v1"}]
    )
    activity = FlakyActivity()
    activity.record([event(TX, 0.9, "decline"), event("t_ok", 0.01, "approve")])
    return {
        "store": store,
        "activity": activity,
        "ledger": InMemoryLabelLedger(),
        "provider": ModelProvider(trained.registry),
    }


def make_app(parts: dict[str, Any], settings: Settings) -> FastAPI:
    app = create_app()
    app.dependency_overrides[deps.provider] = lambda: parts["provider"]
    app.dependency_overrides[deps.result_store] = lambda: parts["store"]
    app.dependency_overrides[deps.activity] = lambda: parts["activity"]
    app.dependency_overrides[deps.label_ledger] = lambda: parts["ledger"]
    app.dependency_overrides[deps.settings] = lambda: settings
    console.snapshots._last.clear()
    return app


@pytest.fixture
def open_client(parts: dict[str, Any]) -> TestClient:
    return TestClient(make_app(parts, Settings()), base_url="http://127.0.0.1")


@pytest.fixture
def keyed_client(parts: dict[str, Any]) -> TestClient:
    settings = Settings(api_key=API_KEY, labels_api_key=LABELS_KEY)  # type: ignore[arg-type]
    return TestClient(make_app(parts, settings), base_url="http://127.0.0.1")


def csrf_of(page: str) -> str:
    marker = 'name="csrf" value="'
    start = page.index(marker) + len(marker)
    return page[start : page.index('"', start)]


def test_every_page_renders_with_strict_headers(open_client: TestClient) -> None:
    for path in (
        "/console",
        "/console/queue",
        "/console/live",
        "/console/live/charts",
        "/console/dead-letters",
    ):
        r = open_client.get(path)
        assert r.status_code == 200, path
        assert r.headers["x-content-type-options"] == "nosniff"
        assert r.headers["cache-control"] == "no-store"
        csp = r.headers["content-security-policy"]
        assert "script-src 'self';" in csp and "unsafe" not in csp and "default-src 'none'" in csp
        assert "<script>" not in r.text and " style=" not in r.text, "no inline script or style (CSP)"
    case = open_client.get("/console/case", params={"tx": TX})
    assert case.status_code == 200 and case.headers["cache-control"] == "no-store"
    assert "0.7700" in case.text, "the challenger's score is shown"
    assert open_client.get("/console/case", params={"tx": "<b>x</b>"}).status_code == 404
    assert open_client.get("/console/case", params={"tx": "unknown"}).status_code == 404


def test_ids_are_escaped_in_pages(open_client: TestClient, parts: dict[str, Any]) -> None:
    parts["activity"].record([event("a:b/c&d", 0.9, "review")])
    page = open_client.get("/console").text
    assert 'href="/console/case?tx=a%3Ab%2Fc%26d"' in page
    assert ">a:b/c&amp;d<" in page


def test_label_needs_the_csrf_token_and_is_idempotent(open_client: TestClient, parts: dict[str, Any]) -> None:
    page = open_client.get("/console/case", params={"tx": TX}).text
    token = csrf_of(page)
    ledger: InMemoryLabelLedger = parts["ledger"]
    # WHEN posted without the page's token: refused, nothing recorded
    refused = open_client.post("/console/label", data={"tx": TX, "verdict": "fraud", "csrf": "forged"})
    assert refused.status_code == 403 and ledger.entries == []
    # WHEN confirmed with it: recorded once, with its author and time
    done = open_client.post("/console/label", data={"tx": TX, "verdict": "fraud", "csrf": token})
    assert done.status_code == 200 and "labelled fraud" in done.text
    assert [(e["transaction_id"], e["is_fraud"]) for e in ledger.entries] == [(TX, "1")]
    assert ledger.entries[0]["author"].startswith("anonymous:") and float(ledger.entries[0]["at"]) > 0
    again = open_client.post("/console/label", data={"tx": TX, "verdict": "fraud", "csrf": token})
    assert "already labelled fraud" in again.text and len(ledger.entries) == 1
    # AND a crafted link cannot put words on the page
    crafted = open_client.get("/console/case", params={"tx": TX, "done": "call 555-0100 to unlock"}).text
    assert "555-0100" not in crafted
    # THEN the queue marks it
    assert "label-fraud" in open_client.get("/console/queue").text
    # AND a cross-site form post (another Origin) is refused even with the token
    cross = open_client.post(
        "/console/label",
        data={"tx": TX, "verdict": "legitimate", "csrf": token},
        headers={"origin": "https://evil.example"},
    )
    assert cross.status_code == 403 and len(ledger.entries) == 1


def test_a_key_requires_login_and_a_wrong_key_is_refused(keyed_client: TestClient) -> None:
    first = keyed_client.get("/console", follow_redirects=False)
    assert first.status_code == 303 and first.headers["location"].startswith("/console/login?next=%2Fconsole")
    polled = keyed_client.get("/console/queue", headers={"hx-request": "true"}, follow_redirects=False)
    assert polled.headers["hx-redirect"].startswith("/console/login")
    wrong = keyed_client.post("/console/login", data={"api_key": "nope", "next": "/console"})
    assert wrong.status_code == 401 and "wrong API key" in wrong.text
    assert "set-cookie" not in wrong.headers
    ok = keyed_client.post(
        "/console/login", data={"api_key": API_KEY, "next": "/console"}, follow_redirects=False
    )
    cookie = ok.headers["set-cookie"].lower()
    assert "httponly" in cookie and "samesite=strict" in cookie and "secure" not in cookie
    assert keyed_client.get("/console").status_code == 200
    # THEN an API-key session reads but may not label
    case = keyed_client.get("/console/case", params={"tx": TX}).text
    assert "Read-only session" in case
    denied = keyed_client.post("/console/label", data={"tx": TX, "verdict": "fraud", "csrf": csrf_of(case)})
    assert denied.status_code == 403


def test_login_with_the_labels_key_labels_as_its_principal(
    keyed_client: TestClient, parts: dict[str, Any]
) -> None:
    keyed_client.post(
        "/console/login",
        data={"api_key": API_KEY, "labels_key": LABELS_KEY},
        follow_redirects=False,
    )
    token = csrf_of(keyed_client.get("/console/case", params={"tx": TX}).text)
    keyed_client.post("/console/label", data={"tx": TX, "verdict": "legitimate", "csrf": token})
    assert parts["ledger"].entries[-1]["author"] == deps.principal(LABELS_KEY)
    assert parts["ledger"].entries[-1]["is_fraud"] == "0"


def test_secure_cookie_behind_https(keyed_client: TestClient) -> None:
    ok = keyed_client.post(
        "/console/login",
        data={"api_key": API_KEY},
        headers={"x-forwarded-proto": "https"},
        follow_redirects=False,
    )
    assert "secure" in ok.headers["set-cookie"].lower()


def test_redis_slow_shows_stale_and_down_shows_a_message_never_a_500(
    open_client: TestClient, parts: dict[str, Any]
) -> None:
    assert open_client.get("/console/queue").status_code == 200  # a snapshot to fall back on
    parts["activity"].failure = "slow"
    slow = open_client.get("/console/queue")
    assert slow.status_code == 200 and "Stale:" in slow.text and TX in slow.text
    parts["activity"].failure = "down"
    console.snapshots._last.clear()
    for path in ("/console", "/console/queue", "/console/live"):
        down = open_client.get(path)
        assert down.status_code == 200 and "Redis is unreachable" in down.text, path


def test_the_stream_records_alerts_dead_letters_and_live_counts(
    scorer: Scorer, trained: TrainedModel
) -> None:
    frame = trained.frame
    rows = [*to_records(frame[frame["Class"] == 1].head(5)), *to_records(frame[frame["Class"] == 0].head(5))]
    messages = [
        {
            "topic": "tx",
            "partition": 0,
            "offset": i,
            "key": b"k",
            "value": json.dumps({**r, "card_id": "c_1"}).encode(),
        }
        for i, r in enumerate(rows)
    ]
    messages.append({"topic": "tx", "partition": 0, "offset": 99, "key": b"k", "value": b"\x00not json"})
    activity = InMemoryActivity()
    processor = StreamProcessor(scorer, InMemoryStreamState(), InMemorySink(), activity=activity)
    report = processor.process(build_event(messages))
    assert report.dead_lettered == 1
    alerts = activity.recent_alerts(100)
    assert len(alerts) == report.alerts > 0
    detail = activity.alert(alerts[0]["transaction_id"])
    assert detail is not None and set(detail["features"]) == set(scorer.feature_names)
    assert sum(b.counts.get("n", 0) for b in activity.live(now=time.time(), minutes=5)) == 10
    assert len(activity.card_recent("c_1", 20)) == 10
    dead = activity.dead_letters(10)
    assert dead[0]["record_id"] == "tx-0-99" and "json" in dead[0]["reason"].lower()
    # WHEN the batch is redelivered THEN the console counts nothing twice (its view of a batch
    # holds only what the claim says is new or was never published)
    again = processor.process(build_event(messages))
    assert again.duplicates == 11 and again.scored == 0
    assert sum(b.counts.get("n", 0) for b in activity.live(now=time.time(), minutes=5)) == 10
    assert len(activity.card_recent("c_1", 20)) == 10 and len(activity.recent_alerts(100)) == len(alerts)


def test_drift_table_lists_flagged_inputs_first() -> None:
    report = {
        "windows": [
            {
                "flags": ["score_psi", "feature:V14"],
                "score": {"psi": 1.3, "psi_threshold": 0.6, "ks": 0.5},
                "features": {
                    "V1": {"psi": 0.1, "psi_threshold": 0.6},
                    "V14": {"psi": 0.9, "psi_threshold": 0.6},
                },
            }
        ],
        "realised": {"days": ["2026-11-01", "2026-11-02"], "card_precision_at_100_per_day": [0.2, 0.25]},
    }
    rows = views.drift_rows(report)
    assert [(r["name"], r["flagged"]) for r in rows] == [("V14", True), ("fraud score", True), ("V1", False)]
    assert views.realised_days(report) == [("2026-11-01", "0.200"), ("2026-11-02", "0.250")]
    assert views.headline({"test": {"roc_auc": 0.99, "odd": 1}}) == [("roc auc", "0.9900")]
