"""Cold init of the built Lambda handlers (isolated interpreter: imports + model load), next to the
classic stack (sklearn + pandas + joblib.load of the pickled model), and the artifact sizes.

    python -m bench.bench_cold_start [--repeat 3]      (after `make build`)
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from rich.table import Table

from bench.common import train_bench_model, write_results
from fraud_core.cli import cli_parser, run_cli
from fraud_core.manifest import SKLEARN_FILE
from fraud_devstack.built import BUILD, ROOT, dir_size, run_built_handler
from fraud_devstack.services import start_moto_server, start_redis, start_tansu
from fraud_devstack.topics import ensure_topics
from fraud_training.console import make_console

CLASSIC = r"""
import sys, time
t = time.perf_counter()
import sklearn.ensemble, pandas, joblib
model = joblib.load(sys.argv[1])
print(time.perf_counter() - t)
"""


def main(argv: list[str] | None = None) -> int:
    parser = cli_parser("bench.bench_cold_start", __doc__)
    parser.add_argument(
        "--repeat", type=int, default=3, help="cold starts per handler (default: %(default)s)"
    )
    args = parser.parse_args(argv)
    console = make_console()
    if not (BUILD / "FraudCoreLayer").exists():
        console.print("[red]no .aws-sam/build: run `make build` first[/]")
        return 1
    tmp = Path(tempfile.mkdtemp())
    with console.status("training the benchmark model on SYNTHETIC data"):
        registry = train_bench_model(tmp).registry
    manifest = registry.current_manifest()[1]
    (tmp / "model.joblib").write_bytes(registry.read_verified(manifest, SKLEARN_FILE))

    moto, redis_service, broker = (
        start_moto_server(log_dir=tmp),
        start_redis(log_dir=tmp),
        start_tansu(log_dir=tmp),
    )
    try:
        import boto3

        s3 = boto3.client(
            "s3",
            endpoint_url=moto.url,
            aws_access_key_id="x",
            aws_secret_access_key="x",
            region_name="us-east-1",
        )
        s3.create_bucket(Bucket="models")
        for name in [*manifest.files, "manifest.json", "../current.json"]:
            key = f"bench/{manifest.version}/{name}" if not name.startswith("..") else "bench/current.json"
            src = tmp / "reg" / key
            s3.put_object(Bucket="models", Key=f"m/{key}", Body=src.read_bytes())
        ensure_topics(broker.url, ["fraud-scores", "fraud-alerts", "fraud-dlq"])
        env = {
            "FRAUD_REGISTRY_URI": "s3://models/m",
            "FRAUD_MODEL_NAME": "bench",
            "FRAUD_REDIS_URL": redis_service.url,
            "FRAUD_KAFKA_BOOTSTRAP_SERVERS": broker.url,
            "AWS_ENDPOINT_URL": moto.url,
            "AWS_ACCESS_KEY_ID": "x",
            "AWS_SECRET_ACCESS_KEY": "x",
            "AWS_DEFAULT_REGION": "us-east-1",
            "POWERTOOLS_LOG_LEVEL": "WARNING",
            "POWERTOOLS_TRACE_DISABLED": "true",
        }
        timings: dict[str, list[dict[str, float]]] = {"ApiFunction": [], "StreamFunction": [], "classic": []}
        events = {
            "ApiFunction": ("fraud_api.handler.lambda_handler", ROOT / "events" / "apigw-v2-predict.json"),
            "StreamFunction": ("fraud_stream.handler.lambda_handler", ROOT / "events" / "kafka-msk.json"),
        }
        for i in range(args.repeat):
            console.print(f"cold start {i + 1}/{args.repeat} …")
            for function, (handler, event) in events.items():
                r = run_built_handler(function, handler, [event], env=env)
                timings[function].append({k: r[k] for k in ("import_s", "model_load_s", "cold_init_s")})
            out = subprocess.run(
                [sys.executable, "-c", CLASSIC, str(tmp / "model.joblib")],
                capture_output=True,
                text=True,
                check=True,
            )
            timings["classic"].append({"cold_init_s": float(out.stdout.strip())})
    finally:
        for service in (moto, redis_service, broker):
            service.stop()

    sizes = {name: dir_size(BUILD / name) for name in ("ApiFunction", "StreamFunction", "FraudCoreLayer")}
    median: dict[str, dict[str, float]] = {
        name: {k: statistics.median(t[k] for t in runs) for k in runs[0]} for name, runs in timings.items()
    }
    payload: dict[str, Any] = {
        "cold_init_median": median,
        "runs": timings,
        "unzipped_bytes": sizes,
        "lambda_limit_bytes": 250 * 1024 * 1024,
    }
    path = write_results("cold_start", payload)
    table = Table(title=f"cold init, median of {args.repeat} (isolated python3.13, built artifacts only)")
    for col in ("what", "imports s", "model load s", "total s"):
        table.add_column(col, justify="right" if col != "what" else "left")
    for name in ("ApiFunction", "StreamFunction"):
        m = median[name]
        table.add_row(name, f"{m['import_s']:.2f}", f"{m['model_load_s']:.2f}", f"{m['cold_init_s']:.2f}")
    table.add_row(
        "classic: import sklearn+pandas+joblib, joblib.load (dev venv)",
        "",
        "",
        f"{median['classic']['cold_init_s']:.2f}",
    )
    console.print(table)
    layer = sizes["FraudCoreLayer"]
    for name in ("ApiFunction", "StreamFunction"):
        console.print(
            f"{name}: function {sizes[name] / 2**20:.1f} MiB + layer {layer / 2**20:.1f} MiB = "
            f"{(sizes[name] + layer) / 2**20:.1f} MiB unzipped (limit 250 MiB)"
        )
    console.print(f"results in {path}")
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
