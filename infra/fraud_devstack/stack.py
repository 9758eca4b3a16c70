"""The local system without Docker: redis-server, tansu (Kafka protocol) and moto_server (S3).

    python -m fraud_devstack.stack up        # start on the usual ports; bucket, topics; a model if none
    python -m fraud_devstack.stack status    # what runs where (exit 1 when down)
    python -m fraud_devstack.stack down      # stop exactly what `up` started

Ports: Redis 6379, Kafka 9092, S3 4566 (LocalStack's, so the same AWS_ENDPOINT_URL works with
either) when free, another free port otherwise — `up` says which. The endpoints go to
.stack/stack.env: `make api` sources it, and the developer CLIs (producer, local runner, replay)
read it by themselves while the stack runs.

Models: the stack serves from the project's one local registry, artifacts/registry (where
`make demo` and `python -m fraud_training.train` publish). `up` trains a model there only when
none is published yet; restarting the stack or the API never retrains.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from fraud_core.cli import cli_parser, run_cli
from fraud_devstack.services import (
    Service,
    ServiceError,
    pid_alive,
    port_is_free,
    start_moto_server,
    start_redis,
    start_tansu,
)

STACK = Path(".stack")
PIDS = STACK / "pids.json"
ENV_FILE = STACK / "stack.env"
API_PID = STACK / "api.pid"
BUCKET = "fraud-models"
TOPICS = ("transactions", "fraud-scores", "fraud-alerts", "fraud-dlq", "fraud-labels")
CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "local",
    "AWS_SECRET_ACCESS_KEY": "local",
    "AWS_DEFAULT_REGION": "us-east-1",
}
USUAL_PORTS = {"redis": 6379, "kafka": 9092, "s3": 4566}


def _recorded() -> dict[str, dict[str, int | str]]:
    return dict(json.loads(PIDS.read_text())) if PIDS.exists() else {}


def is_running() -> bool:
    """Whether every process of a recorded stack is alive."""
    recorded = _recorded()
    return bool(recorded) and all(pid_alive(int(p["pid"])) for p in recorded.values())


def load_stack_env(*, quiet: bool = False) -> bool:
    """Put the running stack's endpoints into this process's environment (variables already set
    win). A developer CLI calls this first, so it finds the stack without anyone sourcing a file."""
    if not ENV_FILE.exists():
        return False
    if not is_running():
        print(f"note: {ENV_FILE} is stale (the stack is not running); ignoring it", file=sys.stderr)
        return False
    values = dict(line.split("=", 1) for line in ENV_FILE.read_text().splitlines() if "=" in line)
    for key, value in values.items():
        os.environ.setdefault(key, value)
    if not quiet:
        shown = ", ".join(f"{k} {v}" for k, v in _addresses().items())
        print(f"using the local stack ({ENV_FILE}): {shown}", file=sys.stderr)
    return True


def bootstrap_servers(given: str | None) -> str:
    """The Kafka brokers a developer CLI talks to: ``--bootstrap-servers``, else the running
    stack's (or FRAUD_KAFKA_BOOTSTRAP_SERVERS), else Kafka's usual 127.0.0.1:9092."""
    load_stack_env()
    from fraud_core.settings import Settings

    return given or Settings().kafka_bootstrap_servers or "127.0.0.1:9092"


def _addresses() -> dict[str, str]:
    return {name: f"127.0.0.1:{info['port']}" for name, info in _recorded().items()}


def _start(name: str, starter: Callable[..., Service], logs: Path) -> Service:
    port = USUAL_PORTS[name]
    if not port_is_free(port):
        service = starter(log_dir=logs, track=False)
        print(f"port {port} is taken: {name} runs on 127.0.0.1:{service.port} instead")
        return service
    return starter(port, log_dir=logs, track=False)


def up() -> int:
    if is_running():
        print(f"the stack is already running ({', '.join(f'{k} {v}' for k, v in _addresses().items())})")
        return 0
    STACK.mkdir(exist_ok=True)
    logs = STACK / "logs"
    logs.mkdir(exist_ok=True)
    started: dict[str, Service] = {}
    try:
        started["redis"] = _start("redis", start_redis, logs)
        started["kafka"] = _start("kafka", start_tansu, logs)
        started["s3"] = _start("s3", start_moto_server, logs)
    except ServiceError:
        for s in started.values():
            s.stop()
        raise
    PIDS.write_text(
        json.dumps({n: {"pid": s.proc.pid, "port": s.port} for n, s in started.items()}, indent=2)
    )
    env = {
        "FRAUD_REDIS_URL": started["redis"].url,
        "FRAUD_KAFKA_BOOTSTRAP_SERVERS": started["kafka"].url,
        "AWS_ENDPOINT_URL": started["s3"].url,
        **CREDENTIALS,
    }
    ENV_FILE.write_text("".join(f"{k}={v}\n" for k, v in env.items()))
    os.environ.update(env)

    import boto3

    from fraud_devstack.topics import ensure_topics

    boto3.client("s3").create_bucket(Bucket=BUCKET)
    ensure_topics(started["kafka"].url, TOPICS)
    model = _ensure_model()
    print(
        f"stack up: redis {started['redis'].url}, kafka {started['kafka'].url}, "
        f"s3 {started['s3'].url} (bucket {BUCKET}); model {model}\n"
        f"endpoints in {ENV_FILE}; next: `make produce`, `make runner`, `make api`; stop with `make stack-down`"
    )
    return 0


def _ensure_model() -> str:
    """The current model of the local registry, training one on synthetic data if there is none."""
    from fraud_core.errors import ModelUnavailableError
    from fraud_core.registry import open_registry
    from fraud_core.settings import Settings

    settings = Settings()
    registry = open_registry(settings.registry_uri, settings.model_name)
    try:
        pointer, _ = registry.current_manifest()
        return f"{settings.model_name} {pointer.version} from {settings.registry_uri}"
    except ModelUnavailableError:
        pass
    from fraud_training.datasets import write_kaggle_like
    from fraud_training.train import TrainConfig, train

    real = Path("data/creditcard.csv")
    data = real if real.exists() else Path("data/kaggle_like.csv")
    print(
        f"no model in {settings.registry_uri} yet: training one on {data} (once; `make demo` does the same)"
    )
    if not data.exists():
        write_kaggle_like(data)
    result = train(TrainConfig(data=data, registry=settings.registry_uri))
    return f"{settings.model_name} {result.manifest.version} from {settings.registry_uri}"


def stop_pid_file(path: Path) -> bool:
    """Stop the process group whose leader's pid is in ``path``; whether one was running."""
    if not path.exists():
        return False
    pid = int(path.read_text().strip() or 0)
    path.unlink()
    if pid and pid_alive(pid):
        _stop_group(pid)
        return True
    return False


def down() -> int:
    if stop_pid_file(API_PID):
        print("stopped the API")
    recorded = _recorded()
    if not recorded:
        print("no stack is running")
        return 0
    for name, info in recorded.items():
        pid = int(info["pid"])
        if pid_alive(pid):
            _stop_group(pid)
            print(f"stopped {name} (pid {pid})")
    PIDS.unlink()
    ENV_FILE.unlink(missing_ok=True)
    return 0


def _stop_group(pid: int, *, timeout: float = 5.0) -> None:
    """SIGTERM to the service's process group, SIGKILL after ``timeout`` seconds."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(pid, sig)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + timeout
        while pid_alive(pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        if not pid_alive(pid):
            return


def status() -> int:
    recorded = _recorded()
    if not recorded:
        print("the stack is down (`make stack` starts it)")
        return 1
    for name, info in recorded.items():
        state = "up" if pid_alive(int(info["pid"])) else "DEAD"
        print(f"{name:6} 127.0.0.1:{info['port']:<6} pid {info['pid']:>7}  {state}")
    print(f"endpoints: {ENV_FILE}")
    return 0 if is_running() else 1


def main(argv: Sequence[str] | None = None) -> int:
    parser = cli_parser("fraud_devstack.stack", __doc__)
    parser.add_argument("command", choices=["up", "down", "status"])
    args = parser.parse_args(argv)
    return {"up": up, "down": down, "status": status}[args.command]()


if __name__ == "__main__":
    sys.exit(run_cli(main))
