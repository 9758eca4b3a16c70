"""HTTP scenarios: hostile input, model faults in a warm process, and sustained load with memory."""

from __future__ import annotations

import json
import shutil
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis

from fraud_core.manifest import ONNX_FILE
from fraud_core.registry import LocalModelStore, ModelRegistry
from fraud_devstack.load import run_wrk, start_api_server
from fraud_devstack.services import Service, start_redis
from fraud_devstack.uvicorn_thread import serve_in_thread
from tests.conftest import MODEL_NAME, TrainedModel, clear_caches
from tests.events import load_event
from tests.reliability.conftest import scale
from tests.reliability.harness import StreamRig, fuzz_openapi, rss_bytes, with_cards

PREDICT = json.loads(load_event("apigw-v2-predict.json")["body"])


@pytest.fixture
def api_env(model: TrainedModel, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> ModelRegistry:
    """A private copy of the registry, re-read on every request (refresh 0 s)."""
    shutil.copytree(model.registry_dir, tmp_path / "reg")
    for key, value in {
        "FRAUD_REGISTRY_URI": str(tmp_path / "reg"),
        "FRAUD_MODEL_NAME": MODEL_NAME,
        "FRAUD_MODEL_REFRESH_SECONDS": "0",
    }.items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("FRAUD_REDIS_URL", raising=False)
    clear_caches()
    yield ModelRegistry(LocalModelStore(tmp_path / "reg"), MODEL_NAME)  # type: ignore[misc]
    clear_caches()


HOSTILE: list[tuple[str, bytes, dict[str, str]]] = [
    ("oversized", b'{"V1": "' + b"x" * (3 * 1024 * 1024) + b'"}', {"content-type": "application/json"}),
    ("deep JSON", b"[" * 100_000 + b"]" * 100_000, {"content-type": "application/json"}),
    ("unicode", '{"V1": "\u00e9\u6f22\U0001f600\u202e"}'.encode(), {"content-type": "application/json"}),
    ("invalid UTF-8", b'{"V1": "\xff\xfe"}', {"content-type": "application/json"}),
    ("form", b"V1=1&V2=2", {"content-type": "application/x-www-form-urlencoded"}),
    ("xml", b"<V1>1</V1>", {"content-type": "application/xml"}),
    ("multipart", b"--x\r\n\r\n--x--", {"content-type": "multipart/form-data; boundary=x"}),
    ("NaN", json.dumps({**PREDICT, "V1": float("nan")}).encode(), {"content-type": "application/json"}),
    ("empty", b"", {"content-type": "application/json"}),
]


def test_bad_http_input_never_5xx(api_env: ModelRegistry, record: Any) -> None:
    from fraud_api.main import create_app

    with serve_in_thread(create_app()) as url:
        statuses, errors = fuzz_openapi(url, max_examples=scale(150, 1000))
        with httpx.Client(base_url=url, timeout=30) as http:
            hand = {
                name: http.post(path, content=body, headers=headers).status_code
                for name, body, headers in HOSTILE
                for path in ("/predict",)
            }
    fuzz_5xx = sum(c for s, c in statuses.items() if s >= 500)
    hand_5xx = [n for n, s in hand.items() if s >= 500]
    total = sum(statuses.values()) + len(hand)
    record(
        scenario="6 bad HTTP input",
        events_in=total,
        scored=statuses[200],
        dlq="-",
        lost="-",
        double_counted="-",
        http_5xx=fuzz_5xx + len(hand_5xx),
        peak_memory="-",
        passed=not errors and not hand_5xx,
    )
    assert not errors, errors[:5]
    assert not hand_5xx, hand
    assert all(400 <= s < 500 for s in hand.values()), hand
    assert sum(statuses.values()) >= scale(500, 5000)


def test_model_faults_keep_the_last_good_model(api_env: ModelRegistry, record: Any) -> None:
    from fraud_api.main import create_app

    registry = api_env
    _, good = registry.current_manifest()
    files = {name: registry.read_verified(good, name) for name in good.files}

    def publish(version: str, **changes: Any) -> None:
        registry.publish(good.model_copy(update={"version": version, **changes}), files)

    faults = {
        "tampered artifact": lambda: (
            publish("v-tampered"),
            registry.store.write(f"{MODEL_NAME}/v-tampered/{ONNX_FILE}", b"x"),
        ),
        "missing artifact": lambda: (
            publish("v-missing"),
            (Path(registry.store.uri) / MODEL_NAME / "v-missing" / ONNX_FILE).unlink(),
        ),
        "pointer to unknown version": lambda: registry.store.write(
            f"{MODEL_NAME}/current.json",
            json.dumps({"version": "v-nowhere", "manifest_sha256": "0" * 64}).encode(),
        ),
        "features the core cannot build": lambda: publish(
            "v-skew", features=[*good.features[:-1], "card_nb_tx_7d"]
        ),
    }
    outcomes: dict[str, tuple[int, str, str]] = {}
    with serve_in_thread(create_app()) as url, httpx.Client(base_url=url, timeout=10) as http:
        assert http.post("/predict", json=PREDICT).json()["model_version"] == good.version
        for name, inject in faults.items():
            inject()
            served = http.post("/predict", json=PREDICT)
            ready = http.get("/ready").json()
            outcomes[name] = (
                served.status_code,
                served.json().get("model_version", ""),
                ready["model"].get("warning", ""),
            )
            registry.promote(good.version)  # the operator's fix: back to the good version
        healed = http.get("/ready").json()["model"]
    expected_words = {
        "tampered artifact": "sha256",
        "missing artifact": "missing",
        "pointer to unknown version": "v-nowhere",
        "features the core cannot build": "cannot build",
    }
    passed = all(
        s == 200 and v == good.version and expected_words[n] in w for n, (s, v, w) in outcomes.items()
    )
    record(
        scenario="7 model faults",
        events_in=len(faults),
        scored=sum(1 for s, _, _ in outcomes.values() if s == 200),
        dlq="-",
        lost="-",
        double_counted="-",
        http_5xx=sum(1 for s, _, _ in outcomes.values() if s >= 500),
        peak_memory="-",
        passed=passed and "warning" not in healed,
    )
    for name, (status, version, warning) in outcomes.items():
        assert status == 200, name
        assert version == good.version, name
        assert expected_words[name] in warning, (name, warning)
    assert "warning" not in healed


def test_sustained_load_http_and_stream(
    model: TrainedModel, kafka_broker: Service, tmp_path: Path, record: Any
) -> None:
    if shutil.which("wrk") is None:
        pytest.skip("wrk not installed (make system-deps)")
    store = start_redis(log_dir=tmp_path)
    try:
        # HTTP: wrk at concurrency 32 against uvicorn in its own process, RSS sampled
        server = start_api_server(
            {
                "FRAUD_REGISTRY_URI": str(model.registry_dir),
                "FRAUD_MODEL_NAME": MODEL_NAME,
                "FRAUD_REDIS_URL": store.url,
            }
        )
        api_rss: list[int] = []
        try:
            sampling = threading.Event()

            def sample_api() -> None:
                while not sampling.is_set():
                    api_rss.append(rss_bytes(server.proc.pid))
                    time.sleep(0.2)

            api_sampler = threading.Thread(target=sample_api, daemon=True)
            api_sampler.start()
            wrk = run_wrk(f"{server.url}/predict", PREDICT, connections=32, duration=scale(8, 60))
            sampling.set()
            api_sampler.join(5)
        finally:
            server.stop()
        api_peak = max(api_rss, default=0)
        requests, non_2xx, socket_errors = wrk["requests"], wrk["non2xx"], wrk["errors"]

        # Stream: N events through the runner with its RSS and Redis memory sampled
        n = scale(20_000, 1_000_000)
        from fraud_training.datasets import kaggle_like

        frame = with_cards(kaggle_like(n, seed=21, fraud_rate=0.01))
        csv = tmp_path / "load.csv"
        frame.to_csv(csv, index=False)
        r = StreamRig(
            registry_dir=model.registry_dir,
            model_name=MODEL_NAME,
            broker_url=kafka_broker.url,
            redis_url=store.url,
            workdir=tmp_path,
            extra_env={"FRAUD_SCORES_TOPIC": ""},
        )
        r.produce_csv(csv)
        proc = r.start_runner(batch_size=1000, idle_exit=6)
        samples: list[tuple[int, int, int]] = []
        client = redis.Redis.from_url(store.url)

        def sample() -> None:
            while proc.poll() is None:
                samples.append(
                    (
                        r.seen_count() if len(samples) % 10 == 0 else -1,
                        rss_bytes(proc.pid),
                        int(client.info("memory")["used_memory"]),
                    )
                )
                time.sleep(0.5)

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        assert proc.wait(timeout=7200) == 0, r.logs_text()[-3000:]
        sampler.join(5)
        stored = r.seen_count()
    finally:
        store.stop()
    runner_peak = max((s[1] for s in samples), default=0)
    redis_peak = max((s[2] for s in samples), default=0)
    rss = [s[1] for s in samples if s[1] > 0]  # 0 once the process has exited
    half = rss[len(rss) // 2 :]
    growth = (max(half) - min(half)) / max(min(half), 1) if half else 0.0
    mib = 2**20
    passed = (
        requests > 0 and non_2xx == 0 and not socket_errors and stored == n and runner_peak < 2 * 1024 * mib
    )
    record(
        scenario=f"8 load: HTTP {scale(8, 60)}s c=32 + {n:,} events",
        events_in=requests + n,
        scored=stored,
        dlq=0,
        lost=n - stored,
        double_counted=0,
        http_5xx=non_2xx,
        peak_memory=f"api {api_peak / mib:.0f} MiB, runner {runner_peak / mib:.0f} MiB (2nd-half growth {growth:.0%}), redis {redis_peak / mib:.0f} MiB",
        passed=passed,
    )
    assert requests > 0 and non_2xx == 0 and not socket_errors, wrk
    assert stored == n
    assert runner_peak < 2 * 1024 * mib
