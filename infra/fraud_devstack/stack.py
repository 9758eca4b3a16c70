"""The local system without Docker: redis-server, tansu (Kafka protocol) and moto_server (S3).

    python -m fraud_devstack.stack up      # start, create bucket + topics, publish a model if none
    python -m fraud_devstack.stack status
    python -m fraud_devstack.stack down    # stop exactly what `up` started

Endpoints go to .stack/stack.env, which `make api`, `make produce` and `make runner` source.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from pathlib import Path

from fraud_core.cli import cli_parser, run_cli
from fraud_devstack.services import ServiceError, start_moto_server, start_redis, start_tansu

STACK = Path(".stack")
PIDS = STACK / "pids.json"
ENV_FILE = STACK / "stack.env"
BUCKET = "fraud-models"
TOPICS = ("transactions", "fraud-scores", "fraud-alerts", "fraud-dlq", "fraud-labels")
CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "local",
    "AWS_SECRET_ACCESS_KEY": "local",
    "AWS_DEFAULT_REGION": "us-east-1",
}


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except OSError:
        return False
    return True


def up() -> int:
    if PIDS.exists() and any(_alive(p["pid"]) for p in json.loads(PIDS.read_text()).values()):
        print(f"stack already running (see {ENV_FILE}); `make stack-down` first", file=sys.stderr)
        return 1
    STACK.mkdir(exist_ok=True)
    logs = STACK / "logs"
    logs.mkdir(exist_ok=True)
    started = {}
    try:
        moto = start_moto_server(log_dir=logs)
        started["moto_server"] = moto
        redis_service = start_redis(log_dir=logs)
        started["redis"] = redis_service
        broker = start_tansu(log_dir=logs)
        started["tansu"] = broker
    except ServiceError:
        for s in started.values():
            s.stop()
        raise
    PIDS.write_text(
        json.dumps({n: {"pid": s.proc.pid, "port": s.port} for n, s in started.items()}, indent=2)
    )
    env = {
        "FRAUD_REDIS_URL": redis_service.url,
        "FRAUD_KAFKA_BOOTSTRAP_SERVERS": broker.url,
        "FRAUD_REGISTRY_URI": f"s3://{BUCKET}/models",
        "AWS_ENDPOINT_URL": moto.url,
        **CREDENTIALS,
    }
    ENV_FILE.write_text("".join(f"{k}={v}\n" for k, v in env.items()))
    os.environ.update(env)

    import boto3

    boto3.client("s3").create_bucket(Bucket=BUCKET)
    from fraud_devstack.topics import ensure_topics

    ensure_topics(broker.url, TOPICS)
    _ensure_model()
    print(
        f"stack up: redis {redis_service.url}, kafka {broker.url}, s3 {moto.url} (bucket {BUCKET}); env in {ENV_FILE}"
    )
    return 0


def _ensure_model() -> None:
    from fraud_core.errors import ModelUnavailableError
    from fraud_core.registry import open_registry
    from fraud_core.settings import Settings

    try:
        settings = Settings()
        open_registry(settings.registry_uri, settings.model_name).current_manifest()
        return
    except ModelUnavailableError:
        pass
    from fraud_training.datasets import kaggle_like
    from fraud_training.train import TrainConfig, train

    real = Path("data/creditcard.csv")
    data, synthetic = (real, False) if real.exists() else (Path("data/kaggle_like.csv"), True)
    if not data.exists():
        data.parent.mkdir(exist_ok=True)
        kaggle_like().to_csv(data, index=False)
    train(TrainConfig(data=data, registry=f"s3://{BUCKET}/models", synthetic=synthetic))


def down() -> int:
    if not PIDS.exists():
        print("no stack recorded", file=sys.stderr)
        return 0
    for name, info in json.loads(PIDS.read_text()).items():
        pid = info["pid"]
        if _alive(pid):
            os.kill(pid, signal.SIGTERM)
            deadline = time.monotonic() + 5
            while _alive(pid) and time.monotonic() < deadline:
                time.sleep(0.05)
            if _alive(pid):
                os.kill(pid, signal.SIGKILL)
            print(f"stopped {name} (pid {pid})")
    PIDS.unlink()
    ENV_FILE.unlink(missing_ok=True)
    return 0


def status() -> int:
    if not PIDS.exists():
        print("stack down")
        return 1
    for name, info in json.loads(PIDS.read_text()).items():
        print(
            f"{name:12} pid {info['pid']:>7} port {info['port']:>5} {'up' if _alive(info['pid']) else 'DEAD'}"
        )
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = cli_parser("fraud_devstack.stack", __doc__)
    parser.add_argument("command", choices=["up", "down", "status"])
    args = parser.parse_args(argv)
    return {"up": up, "down": down, "status": status}[args.command]()


if __name__ == "__main__":
    sys.exit(run_cli(main))
