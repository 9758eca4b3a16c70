"""HTTP benchmarks: `/predict` through uvicorn on loopback (wrk), and the Mangum handler in-process.

    python -m bench.bench_api [--duration 10] [--connections 1,8,32]

Needs a model in the configured registry (`make demo` makes one; otherwise this trains one on
synthetic data). uvicorn runs as its own process with OMP_NUM_THREADS=1; wrk (apt) generates the
load from the same 2-core machine, so the numbers include the load generator's cost.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from rich.table import Table

from bench.common import latencies_us, write_results
from fraud_core.cli import cli_parser, run_cli
from fraud_core.errors import ModelUnavailableError
from fraud_core.registry import open_registry
from fraud_core.settings import get_settings
from fraud_devstack.load import run_wrk, start_api_server
from fraud_training.console import make_console

ROOT = Path(__file__).resolve().parent.parent


def ensure_model() -> str:
    """Registry URI holding a current model, training one on synthetic data if needed."""
    settings = get_settings()
    try:
        open_registry(settings.registry_uri, settings.model_name).current_manifest()
        return settings.registry_uri
    except ModelUnavailableError:
        pass
    from fraud_training.datasets import write_kaggle_like
    from fraud_training.train import TrainConfig, train

    tmp = Path(tempfile.mkdtemp())
    write_kaggle_like(tmp / "kaggle_like.csv")
    train(TrainConfig(data=tmp / "kaggle_like.csv", registry=settings.registry_uri))
    return settings.registry_uri


def mangum_in_process(repeat: int) -> dict[str, float]:
    os.environ.setdefault("POWERTOOLS_LOG_LEVEL", "WARNING")
    from fraud_api.handler import lambda_handler

    event = json.loads((ROOT / "events" / "apigw-v2-predict.json").read_text())

    class Context:
        function_name = "bench"
        memory_limit_in_mb = 1024
        invoked_function_arn = "arn:aws:lambda:local:000000000000:function:bench"
        aws_request_id = "bench"

    def call() -> None:
        with contextlib.redirect_stdout(io.StringIO()):
            response = lambda_handler(event, Context())
        assert response["statusCode"] == 200

    result = latencies_us(call, repeat=repeat, warmup=20)
    result["calls_per_s"] = 1e6 / result["mean_us"]
    return result


def main(argv: list[str] | None = None) -> int:
    parser = cli_parser("bench.bench_api", __doc__)
    parser.add_argument("--duration", type=int, default=10, help="seconds per wrk run (default: %(default)s)")
    parser.add_argument(
        "--connections", default="1,8,32", help="wrk concurrency levels (default: %(default)s)"
    )
    parser.add_argument(
        "--repeat", type=int, default=2000, help="in-process Mangum calls (default: %(default)s)"
    )
    args = parser.parse_args(argv)
    console = make_console()
    if shutil.which("wrk") is None:
        console.print("[red]wrk not found: apt-get install -y wrk[/]")
        return 1
    registry = ensure_model()
    body = json.loads((ROOT / "events" / "apigw-v2-predict.json").read_text())["body"]

    server = start_api_server({"FRAUD_REGISTRY_URI": registry})
    http: dict[str, dict[str, Any]] = {}
    try:
        url = f"{server.url}/predict"
        run_wrk(url, body, connections=4, duration=2)  # warm-up: model load, first requests
        for c in [int(x) for x in args.connections.split(",")]:
            console.print(f"wrk: {c} connections for {args.duration} s …")
            http[str(c)] = run_wrk(url, body, connections=c, duration=args.duration)
    finally:
        server.stop()
    console.print("in-process Mangum handler …")
    started = time.perf_counter()
    mangum = mangum_in_process(args.repeat)
    payload = {
        "endpoint": "POST /predict",
        "registry": registry,
        "uvicorn_workers": 1,
        "http": http,
        "mangum_in_process": mangum,
        "mangum_seconds": time.perf_counter() - started,
    }
    path = write_results("api", payload)

    table = Table(title="POST /predict through uvicorn (1 worker) on loopback, wrk on the same 2 cores")
    for col in ("connections", "req/s", "p50 ms", "p90 ms", "p99 ms", "errors", "non-2xx"):
        table.add_column(col, justify="right")
    for level, r in http.items():
        table.add_row(
            level,
            f"{r['requests_per_s']:,.0f}",
            f"{r['p50_us'] / 1000:.2f}",
            f"{r['p90_us'] / 1000:.2f}",
            f"{r['p99_us'] / 1000:.2f}",
            str(r["errors"]),
            str(r["non2xx"]),
        )
    console.print(table)
    console.print(
        f"Mangum handler in-process (API Gateway v2 event → Powertools → FastAPI): "
        f"{mangum['calls_per_s']:,.0f} calls/s, p50 {mangum['p50_us']:.0f} µs, p99 {mangum['p99_us']:.0f} µs"
    )
    console.print(f"results in {path}")
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
