"""Stream benchmarks, one run, same data, real Redis (and a real tansu broker for publishing).

    python -m bench.bench_stream [--batches 20] [--e2e-rows 100000]

1. Stream handler logic (StreamProcessor) on 1,000-event batches: Redis commit + result store +
   alerts, with publishing (a) to memory, (b) to Kafka with scores + alerts, (c) alerts only,
   (d) to memory with a shadow challenger scored in the same pass (the model itself, so the
   difference to (a) is the cost of shadow scoring alone).
2. Seed-style baseline: one sklearn predict_proba on a one-row DataFrame + one Redis round trip
   per record.
3. End to end: producer CLI → broker → local runner → handler → Redis, for --e2e-rows rows.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import joblib
import pandas as pd
import redis
from rich.table import Table

from bench.common import train_bench_model, write_results
from fraud_core.cli import cli_parser, run_cli
from fraud_core.manifest import SKLEARN_FILE
from fraud_core.online.client import redis_client
from fraud_core.provider import load_scorer
from fraud_core.scorer import Scorer, Shadow
from fraud_core.shapes.kaggle import LABEL_FIELD, build_feature_matrix
from fraud_core.stream.ports import ResultSink, Topics
from fraud_core.stream.processor import StreamProcessor
from fraud_core.stream.sinks import InMemorySink, KafkaSink
from fraud_core.stream.state import RedisStreamState
from fraud_devstack.kafka_events import build_event
from fraud_devstack.services import start_redis, start_tansu
from fraud_devstack.streaming import producer_argv, runner_argv
from fraud_devstack.topics import ensure_topics
from fraud_training.console import make_console
from fraud_training.data import to_records


def events(records: list[dict[str, Any]], batch: int, run: str) -> list[dict[str, Any]]:
    out = []
    for start in range(0, len(records), batch):
        msgs = [
            {
                "topic": "transactions",
                "partition": 0,
                "offset": start + i,
                "key": str(r["card_id"]).encode(),
                "value": json.dumps({**r, "transaction_id": f"{run}-{r['transaction_id']}"}).encode(),
            }
            for i, r in enumerate(records[start : start + batch])
        ]
        out.append(build_event(msgs))
    return out


def handler_rate(processor: StreamProcessor, batches: list[dict[str, Any]]) -> float:
    processor.process(batches[0])  # warm-up (script load, connections)
    start = time.perf_counter()
    n = 0
    for ev in batches[1:]:
        report = processor.process(ev)
        assert not report.failures, report.error
        n += report.scored
    return n / (time.perf_counter() - start)


def main(argv: list[str] | None = None) -> int:
    parser = cli_parser("bench.bench_stream", __doc__)
    parser.add_argument(
        "--batches",
        type=int,
        default=20,
        help="1,000-event batches per handler measurement (default: %(default)s)",
    )
    parser.add_argument(
        "--baseline-records",
        type=int,
        default=2000,
        help="records for the seed-style baseline (default: %(default)s)",
    )
    parser.add_argument(
        "--e2e-rows",
        type=int,
        default=100_000,
        help="rows for the end-to-end run, 0 to skip (default: %(default)s)",
    )
    args = parser.parse_args(argv)
    console = make_console()
    tmp = Path(tempfile.mkdtemp())
    rows = max(args.batches * 1000 + 1000, args.e2e_rows, 60_000)
    with console.status("generating SYNTHETIC data and training the model"):
        bench = train_bench_model(tmp, rows=max(rows, 284_807))
    frame, registry = bench.frame, bench.registry
    scorer = load_scorer(registry)
    records = [{**r, "card_id": f"c_{i % 5000}"} for i, r in enumerate(to_records(frame.head(rows)))]

    redis_service = start_redis(log_dir=tmp)
    broker = start_tansu(log_dir=tmp)
    results: dict[str, Any] = {"data": "SYNTHETIC kaggle-like", "batch_size": 1000}
    try:
        client = redis_client(redis_service.url, timeout_seconds=5)
        state = RedisStreamState(client)
        suffix = uuid.uuid4().hex[:6]
        topics = Topics(scores=f"scores-{suffix}", alerts=f"alerts-{suffix}", dlq=f"dlq-{suffix}")
        ensure_topics(broker.url, [topics.scores or "", topics.alerts, topics.dlq])
        kafka = KafkaSink(broker.url)
        shadowed = Scorer(
            scorer.manifest, scorer.model, shadow=Shadow.of(scorer.manifest, scorer.model, scorer.shape)
        )
        variants: list[tuple[str, Scorer, ResultSink, Topics]] = [
            ("redis + in-memory sink (no broker)", scorer, InMemorySink(), topics),
            ("redis + kafka: scores and alerts", scorer, kafka, topics),
            (
                'redis + kafka: alerts only (FRAUD_SCORES_TOPIC="")',
                scorer,
                kafka,
                Topics(scores=None, alerts=topics.alerts, dlq=topics.dlq),
            ),
            ("redis + in-memory sink + shadow challenger", shadowed, InMemorySink(), topics),
        ]
        handler: dict[str, float] = {}
        for i, (name, scoring, sink, tps) in enumerate(variants):
            console.print(f"handler: {name} …")
            batches = events(records[: (args.batches + 1) * 1000], 1000, run=f"v{i}")
            handler[name] = handler_rate(StreamProcessor(scoring, state, sink, topics=tps), batches)
        results["handler_events_per_s"] = handler
        kafka.close()

        console.print("seed-style baseline …")
        sk = joblib.load(io.BytesIO(registry.read_verified(scorer.manifest, SKLEARN_FILE)))
        r = redis.Redis.from_url(redis_service.url)
        cols = [c for c in frame.columns if c != LABEL_FIELD]
        start = time.perf_counter()
        for rec in records[: args.baseline_records]:
            one = pd.DataFrame([{c: rec[c] for c in cols}])
            score = float(sk.predict_proba(build_feature_matrix(one))[0, 1])
            r.get(f"user:{rec['card_id']}")  # the classic per-record feature lookup
            r.set(f"result:{rec['transaction_id']}", score)
        baseline = args.baseline_records / (time.perf_counter() - start)
        results["seed_style_events_per_s"] = baseline

        if args.e2e_rows:
            console.print(
                f"end to end: {args.e2e_rows:,} rows through producer → tansu → local runner → Redis …"
            )
            csv = tmp / "stream.csv"
            e2e = frame.head(args.e2e_rows).copy()
            e2e["card_id"] = [f"c_{i % 5000}" for i in range(len(e2e))]
            e2e.to_csv(csv, index=False)
            topic = f"tx-{suffix}"
            ensure_topics(broker.url, [topic])
            env = {
                **os.environ,
                "FRAUD_REGISTRY_URI": str(tmp / "reg"),
                "FRAUD_MODEL_NAME": "bench",
                "FRAUD_REDIS_URL": redis_service.url,
                "FRAUD_KAFKA_BOOTSTRAP_SERVERS": broker.url,
                "FRAUD_SCORES_TOPIC": "",
                "FRAUD_ALERTS_TOPIC": topics.alerts,
                "FRAUD_DLQ_TOPIC": topics.dlq,
                "POWERTOOLS_LOG_LEVEL": "WARNING",
                "POWERTOOLS_METRICS_DISABLED": "true",
            }
            t0 = time.perf_counter()
            argv = producer_argv(csv, bootstrap_servers=broker.url, topic=topic)
            subprocess.run(argv, env=env, check=True, timeout=900)
            produced = time.perf_counter() - t0
            t1 = time.perf_counter()
            argv = runner_argv(
                bootstrap_servers=broker.url,
                topic=topic,
                group_id=f"g-{suffix}",
                batch_size=1000,
                idle_exit=3,
            )
            with (tmp / "runner.log").open("wb") as log:
                subprocess.run(argv, env=env, check=True, timeout=1800, stdout=log, stderr=subprocess.STDOUT)
            consumed = time.perf_counter() - t1 - 3  # minus the idle wait before exiting
            stored = sum(1 for _ in r.scan_iter(match="fraud:seen:t_*", count=10_000))
            results["end_to_end"] = {
                "rows": args.e2e_rows,
                "produce_seconds": produced,
                "produce_msg_per_s": args.e2e_rows / produced,
                "consume_score_store_seconds": consumed,
                "consume_events_per_s": args.e2e_rows / consumed,
                "stored_exactly": stored,
            }
    finally:
        broker.stop()
        redis_service.stop()
    path = write_results("stream", results)
    table = Table(title="stream handler on 1,000-event batches (events/s, real Redis, one process)")
    table.add_column("variant")
    table.add_column("events/s", justify="right")
    table.add_column("vs seed-style", justify="right")
    for name, rate in handler.items():
        table.add_row(name, f"{rate:,.0f}", f"{rate / baseline:.0f}×")
    table.add_row("seed-style: sklearn + DataFrame + Redis round trips per record", f"{baseline:,.0f}", "1×")
    console.print(table)
    if "end_to_end" in results:
        e = results["end_to_end"]
        console.print(
            f"end to end, {e['rows']:,} rows: produce {e['produce_msg_per_s']:,.0f} msg/s; "
            f"consume+score+store {e['consume_events_per_s']:,.0f} events/s; stored {e['stored_exactly']:,}"
        )
    console.print(f"results in {path}")
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
