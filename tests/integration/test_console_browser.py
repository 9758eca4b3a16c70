"""The analyst console in a real browser: Debian's Chromium driven by Playwright, against the API
on a loopback port, fed through the stream path (tansu → local runner → stream handler → real Redis).

Screenshots go to ``test-output/console/`` (or ``$FRAUD_TEST_OUTPUT/console``); page weights and
times to first render are printed (``pytest -s`` shows them)."""

from __future__ import annotations

import json
import os
import shutil
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis
from kafka import KafkaProducer

from fraud_core.event_log import Logs
from fraud_core.monitoring.job import MonitorConfig, run_monitor, write_report
from fraud_core.online import keys
from fraud_core.online.activity import RedisActivity
from fraud_core.online.labels import LEDGER
from fraud_devstack.services import Service, start_process, start_redis, stop_process
from fraud_devstack.streaming import runner_argv
from fraud_devstack.topics import ensure_topics
from fraud_devstack.uvicorn_thread import serve_in_thread
from fraud_training.data import to_records
from tests.conftest import MODEL_NAME, TrainedModel, clear_caches

playwright_api = pytest.importorskip("playwright.sync_api")
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (make system-deps installs it)"),
]
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
API_KEY = "browser-test-api-key"
LABELS_KEY = "browser-test-labels-key"
POLL_SECONDS = 1.0
FRAUD_ID = "card:7/2026-11-30/fraud-1"
"""The known fraud, with the ':' and '/' that ids may carry."""
OUT = (
    Path(os.environ.get("FRAUD_TEST_OUTPUT", Path(__file__).resolve().parents[2] / "test-output")) / "console"
)


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with playwright_api.sync_playwright() as p:
        launched = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS, headless=True)
        yield launched
        launched.close()


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[Service]:
    """A private Redis this test is free to stop."""
    service = start_redis(log_dir=tmp_path)
    yield service
    service.stop()


class Watched:
    """A page whose console errors, uncaught exceptions and 5xx answers are collected."""

    def __init__(self, page: Any) -> None:
        self.page = page
        self.errors: list[str] = []
        self.server_errors: list[str] = []
        page.on(
            "console",
            lambda m: self.errors.append(f"console.{m.type}: {m.text}") if m.type == "error" else None,
        )
        page.on("pageerror", lambda e: self.errors.append(f"pageerror: {e}"))
        page.on(
            "response",
            lambda r: self.server_errors.append(f"{r.status} {r.url}") if r.status >= 500 else None,
        )

    def weigh(self, name: str) -> dict[str, Any]:
        """Bytes of the page and everything it loaded, and its first contentful paint."""
        self.page.wait_for_load_state("load")
        metrics: dict[str, Any] = self.page.evaluate(
            """() => {
              const nav = performance.getEntriesByType('navigation')[0];
              const res = performance.getEntriesByType('resource');
              const paint = performance.getEntriesByName('first-contentful-paint')[0];
              return {
                document: nav.encodedBodySize,
                total: nav.encodedBodySize + res.reduce((s, r) => s + r.encodedBodySize, 0),
                requests: 1 + res.length,
                first_paint_ms: paint ? Math.round(paint.startTime) : null,
                dom_ready_ms: Math.round(nav.domContentLoadedEventEnd),
              };
            }"""
        )
        return {"page": name, **metrics}

    def shot(self, name: str) -> Path:
        OUT.mkdir(parents=True, exist_ok=True)
        path = OUT / f"{name}.png"
        self.page.screenshot(path=str(path), full_page=True)
        return path


@contextmanager
def console_api(trained: TrainedModel, store: Service, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    monkeypatch.setenv("FRAUD_REGISTRY_URI", str(trained.registry_dir))
    monkeypatch.setenv("FRAUD_MODEL_NAME", MODEL_NAME)
    monkeypatch.setenv("FRAUD_REDIS_URL", store.url)
    monkeypatch.setenv("FRAUD_REDIS_TIMEOUT_SECONDS", "0.3")
    monkeypatch.setenv("FRAUD_API_KEY", API_KEY)
    monkeypatch.setenv("FRAUD_LABELS_API_KEY", LABELS_KEY)
    monkeypatch.setenv("FRAUD_CONSOLE_POLL_SECONDS", str(POLL_SECONDS))
    clear_caches()
    from fraud_api.main import create_app
    from fraud_api.routes import console

    console.snapshots._last.clear()
    console._model_cache.clear()
    try:
        with serve_in_thread(create_app()) as url:
            yield url
    finally:
        clear_caches()


def flagged_frauds(trained: TrainedModel, n: int) -> list[dict[str, Any]]:
    """Frauds of the data that the model flags, the highest score first: the first is the known
    fraud the analyst works (its id carries ':' and '/'), the others fill the queue around it."""
    frauds = to_records(trained.frame[trained.frame["Class"] == 1])
    scored = trained.scorer().score_batch(frauds, explain="none")
    order = sorted(range(len(frauds)), key=lambda i: -scored[i].fraud_score)[:n]
    assert scored[order[0]].decision != "approve", "the tiny model flags at least one fraud"
    picked = [{**frauds[i], "card_id": f"c_{k % 5}"} for k, i in enumerate(order)]
    picked[0] = {**picked[0], "transaction_id": FRAUD_ID, "card_id": "card:7"}
    return picked


def produce(broker: Service, topic: str, messages: list[bytes]) -> None:
    producer = KafkaProducer(bootstrap_servers=[broker.url])
    for value in messages:
        producer.send(topic, key=b"card:7", value=value)
    producer.flush(30)
    producer.close()


def test_analyst_works_an_alert_from_the_stream_in_a_real_browser(
    browser: Any,
    trained: TrainedModel,
    own_redis: Service,
    kafka_broker: Service,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    started = time.monotonic()
    suffix = uuid.uuid4().hex[:8]
    topics = {k: f"{k}-{suffix}" for k in ("transactions", "scores", "alerts", "dlq")}
    ensure_topics(kafka_broker.url, topics.values())
    env = {
        **os.environ,
        "FRAUD_REGISTRY_URI": str(trained.registry_dir),
        "FRAUD_MODEL_NAME": MODEL_NAME,
        "FRAUD_REDIS_URL": own_redis.url,
        "FRAUD_KAFKA_BOOTSTRAP_SERVERS": kafka_broker.url,
        "FRAUD_SCORES_TOPIC": topics["scores"],
        "FRAUD_ALERTS_TOPIC": topics["alerts"],
        "FRAUD_DLQ_TOPIC": topics["dlq"],
        "POWERTOOLS_LOG_LEVEL": "WARNING",
        "POWERTOOLS_METRICS_DISABLED": "true",
    }
    argv = runner_argv(
        bootstrap_servers=kafka_broker.url,
        topic=topics["transactions"],
        group_id=f"g-{suffix}",
        batch_size=50,
        idle_exit=60,
    )
    with (tmp_path / "runner.log").open("ab") as log:
        runner = start_process(argv, env=env, stdout=log)
    weights: list[dict[str, Any]] = []
    r = redis.Redis.from_url(own_redis.url)
    try:
        with console_api(trained, own_redis, monkeypatch) as base:
            context = browser.new_context(base_url=base, viewport={"width": 1280, "height": 860})
            page = Watched(context.new_page())

            # GIVEN an API key: the console asks for it, and refuses a wrong one
            page.page.goto("/console")
            assert page.page.url.startswith(f"{base}/console/login")
            page.page.fill("input[name=api_key]", "not-the-key")
            page.page.click("button[type=submit]")
            assert page.page.locator("[data-test=login-error]").inner_text() == "wrong API key"
            page.errors.clear()  # the refused login answers 401, which Chromium logs as an error
            page.shot("login")
            page.page.fill("input[name=api_key]", API_KEY)
            page.page.fill("input[name=labels_key]", LABELS_KEY)
            page.page.click("button[type=submit]")
            assert page.page.url == f"{base}/console"
            weights.append(page.weigh("queue (empty)"))

            # WHEN transactions with a known fraud (and poison) go through the stream path
            fraud, *others = flagged_frauds(trained, 6)
            genuine = to_records(trained.frame[trained.frame["Class"] == 0].head(60))
            cards = ["card:7", "c_1", "c_2", "c_3", "c_4"]
            messages = [json.dumps({**g, "card_id": cards[i % 5]}).encode() for i, g in enumerate(genuine)]
            for k, other in enumerate(others):
                messages.insert(5 + 4 * k, json.dumps(other).encode())
            messages.insert(40, json.dumps(fraud).encode())
            messages += [b"not json \x00\xff", b'{"transaction_id": "p:1", "Amount": "lots"}']
            scored_count = len(messages) - 2
            produce(kafka_broker, topics["transactions"], messages)

            # THEN the alert reaches the queue within one polling interval of being stored
            deadline = time.monotonic() + 90
            while r.get(keys.ALERT(FRAUD_ID)) is None:
                assert runner.poll() is None, (tmp_path / "runner.log").read_text()[-3000:]
                assert time.monotonic() < deadline, "the stream did not score the fraud"
                time.sleep(0.05)
            stored_at = time.monotonic()
            row = page.page.locator(f'tr[data-tx="{FRAUD_ID}"]')
            row.wait_for(timeout=(POLL_SECONDS + 3) * 1000)
            seen_after = time.monotonic() - stored_at
            assert seen_after <= POLL_SECONDS + 2.0, f"shown {seen_after:.1f} s after it was stored"
            deadline = time.monotonic() + 30
            while (
                sum(b.counts.get("n", 0) for b in RedisActivity(r).live(now=time.time(), minutes=5))
                < scored_count
            ):
                assert time.monotonic() < deadline, "the stream did not score every transaction"
                time.sleep(0.1)
            page.page.wait_for_timeout(int(POLL_SECONDS * 1000) + 300)
            page.shot("queue-new")
            # (the monitoring job's report over what was just scored, for the model panel)
            manifest = trained.registry.current_manifest()[1]
            logs = Logs.at(os.environ["FRAUD_LOG_URI"])
            write_report(logs, run_monitor(logs, manifest, MonitorConfig(min_window=20, window_hours=24 * 7)))

            # WHEN the analyst opens the case and confirms fraud
            page.page.click(f'tr[data-tx="{FRAUD_ID}"] a')
            assert page.page.locator("[data-test=case-id]").inner_text() == FRAUD_ID
            assert page.page.locator("[data-test=label-state]").inner_text() == "not labelled"
            weights.append(page.weigh("case"))
            page.shot("case")
            page.page.click("[data-test=label-fraud]")
            error = page.page.locator("[data-test=case-error]")
            assert error.count() == 0, error.inner_text()
            assert "labelled fraud" in page.page.locator("[data-test=notice]").inner_text()
            assert "fraud" in page.page.locator("[data-test=label-state]").inner_text()

            # THEN the label is stored with its author, in Redis and through the API
            latest = json.loads(r.get(keys.LABEL(FRAUD_ID)) or b"null")
            assert latest["is_fraud"] is True
            from fraud_api.deps import principal

            assert latest["author"] == principal(LABELS_KEY)
            ledger = [f for _, f in r.xrange(LEDGER)]
            assert [f[b"transaction_id"].decode() for f in ledger] == [FRAUD_ID]
            api = httpx.get(
                f"{base}/v1/labels", params={"transaction_id": FRAUD_ID}, headers={"x-api-key": API_KEY}
            ).json()
            assert api == [
                {"transaction_id": FRAUD_ID, "is_fraud": True, "author": latest["author"], "at": latest["at"]}
            ]
            # AND a second click records nothing new (idempotent)
            page.page.click("[data-test=label-fraud]")
            assert "already labelled fraud" in page.page.locator("[data-test=notice]").inner_text()
            assert r.xlen(LEDGER) == 1

            # AND the queue marks it
            page.page.goto("/console")
            assert page.page.locator(f'tr[data-tx="{FRAUD_ID}"] .badge.label-fraud').inner_text() == "fraud"
            weights.append(page.weigh("queue"))
            page.shot("queue")

            # The other pages: model panel, dead letters, live panel
            page.page.goto("/console/model")
            pointer = trained.registry.pointer()
            assert pointer is not None
            assert page.page.locator("[data-test=champion] dd.mono").first.inner_text() == pointer.version
            assert page.page.locator("[data-test=audit] tbody tr").count() >= 1, (
                "the registry's audit history"
            )
            assert page.page.locator("[data-test=drift] tbody tr").count() >= 2, "the report's drift table"
            weights.append(page.weigh("model"))
            page.shot("model")
            page.page.goto("/console/dead-letters")
            assert page.page.locator("code.preview").count() == 2
            assert "not json \\x00\\xff" in page.page.content()
            weights.append(page.weigh("dead letters"))
            page.shot("dead-letters")
            page.page.goto("/console/live")
            assert f"{scored_count} scored" in page.page.locator("[data-test=live-total]").inner_text()
            assert page.page.locator("svg.chart rect.bar-score").count() == 60
            weights.append(page.weigh("live"))
            page.shot("live")

            # WHEN Redis stops: the open queue turns stale, a fresh view says Redis is unreachable
            page.page.goto("/console")
            own_redis.stop()
            page.page.locator("[data-test=stale]").wait_for(timeout=(POLL_SECONDS + 3) * 1000)
            page.shot("queue-stale")
            response = page.page.goto("/console?decision=review&min_score=0.99")
            assert response is not None and response.status == 200
            assert "Redis is unreachable" in page.page.locator("[data-test=redis-down]").inner_text()
            page.shot("queue-redis-down")

            assert page.server_errors == [], page.server_errors
            assert page.errors == [], page.errors
            context.close()
    finally:
        stop_process(runner)
    print("\nconsole page weights (bytes, uncompressed) and first contentful paint:")
    print(f"{'page':<14} {'document':>9} {'total':>8} {'requests':>8} {'FCP ms':>7} {'DOM ms':>7}")
    for w in weights:
        print(
            f"{w['page']:<14} {w['document']:>9,} {w['total']:>8,} {w['requests']:>8} "
            f"{w['first_paint_ms'] if w['first_paint_ms'] is not None else '-':>7} {w['dom_ready_ms']:>7}"
        )
    print(f"screenshots in {OUT}; test took {time.monotonic() - started:.1f} s")
    (OUT / "weights.json").write_text(json.dumps(weights, indent=2))
