"""Stream benchmarks, one run, same data, real Redis (and a real tansu broker for publishing).

    python -m bench.bench_stream [--batches 20] [--e2e-rows 100000 [1000000]]

1. Stream handler logic (StreamProcessor) on 1,000-event batches: Redis commit + result store +
   alerts, with publishing (a) the full default contract: Kafka scores + alerts, the scoring log
   (gzip JSON lines, one object per batch, to a directory here; S3 in AWS) and the analyst
   console's activity in Redis, (b) the same with a shadow challenger scored in the same pass
   (the model itself, so the difference is the cost of shadow scoring alone), (c) to memory only,
   (d) to Kafka with scores + alerts, (e) alerts only.
   Then where the time of (a) goes, stage by stage (wall clock around each call, no profiler).
2. Seed-style baseline: one sklearn predict_proba on a one-row DataFrame + one Redis round trip
   per record.
3. End to end: producer CLI → broker → local runner → handler → Redis, for --e2e-rows rows,
   full contract.

Beside each number: the same benchmark recorded on the code before the throughput work
(``bench/baselines/stream-before-throughput.json``: commit e1993c5, kafka-python, gzip level 9,
no heap freeze), run on this machine the same day.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import defaultdict
from pathlib import Path
from typing import Any

import joblib
import pandas as pd
import redis
from rich.table import Table

from bench.common import stream_events, train_bench_model, write_results
from fraud_core.cli import cli_parser, run_cli
from fraud_core.event_log import Logs
from fraud_core.manifest import SKLEARN_FILE
from fraud_core.online.activity import RedisActivity
from fraud_core.online.client import redis_client
from fraud_core.provider import load_scorer
from fraud_core.scorer import Scorer, Shadow
from fraud_core.shapes.kaggle import LABEL_FIELD, build_feature_matrix
from fraud_core.stream.batch import ScoredBatch
from fraud_core.stream.ports import ResultSink, Topics
from fraud_core.stream.processor import StreamProcessor, io_threads
from fraud_core.stream.sinks import InMemorySink, KafkaSink
from fraud_core.stream.state import RedisStreamState
from fraud_devstack.services import start_redis, start_tansu
from fraud_devstack.streaming import producer_argv, runner_argv
from fraud_devstack.topics import ensure_topics
from fraud_stream.wiring import freeze_startup_heap
from fraud_training.console import make_console
from fraud_training.data import to_records


def handler_rate(processor: StreamProcessor, batches: list[dict[str, Any]]) -> float:
    processor.process(batches[0])  # warm-up (script load, connections)
    start = time.perf_counter()
    n = 0
    for ev in batches[1:]:
        report = processor.process(ev)
        assert not report.failures, report.error
        n += report.scored
    return n / (time.perf_counter() - start)


BEFORE = Path(__file__).parent / "baselines" / "stream-before-throughput.json"
"""This benchmark's results on the code before the throughput work (see the module docstring)."""

STAGES: tuple[tuple[str, str, str], ...] = (
    # (stage, object attribute path on the processor or "module", callable name), on the
    # processor's own thread: they and the glue add up to the batch's wall time
    ("event decode: base64 + JSON", "module", "kafka_records"),
    ("event decode: base64 + JSON", "module", "decode"),
    ("parse + validate + features", "scorer", "prepare"),
    ("scoring log: features JSON (during the model)", "module", "logged_features"),
    ("scoring log: rows + JSON lines", "batch", "log_rows"),
    ("scoring log: rows + JSON lines", "module", "lines"),
    ("Redis: mark published", "state", "mark_published"),
    ("Redis: mark published", "state", "dead_letters_done"),
    ("Redis: mark published", "state", "mark_dead_letters"),
    ("Kafka producer: publish + flush", "sink", "publish"),
    ("Kafka producer: publish + flush", "sink", "flush"),
    ("console activity: prepare", "activity", "prepare"),
    ("console activity: write (Redis)", "module", "write_quietly"),
)
OVERLAPPED: tuple[tuple[str, str, str], ...] = (
    # on the processor's I/O thread, while its own thread goes on (not part of the sum)
    ("model + decision + reasons (I/O thread)", "scorer", "score_features"),
    ("Redis: claim script (I/O thread, beside the model)", "state", "claim"),
    ("Redis: store script (I/O thread, beside the log lines and the console)", "state", "store_results"),
    ("scoring log: gzip + write (I/O thread)", "logs.scoring", "write_lines"),
)
GLUE = "processor glue: result bodies, JSON, waiting for the I/O threads"
BEFORE_STAGES = {
    # this table's stage -> the baseline's (its stages were cut differently: several of ours
    # share one of its figures, shown once, on the first of them)
    GLUE: "processor glue: result bodies, JSON, log rows",
    "scoring log: features JSON (during the model)": "scoring log: encode + write",
    "scoring log: rows + JSON lines": "scoring log: encode + write",
    "scoring log: gzip + write (I/O thread)": "scoring log: encode + write",
    "console activity: write (Redis)": "console activity (Redis)",
    "console activity: prepare": "console activity (Redis)",
    "model + decision + reasons (I/O thread)": "model + decision + reasons",
    "Redis: claim script (I/O thread, beside the model)": "Redis: commit script",
    "Redis: store script (I/O thread, beside the log lines and the console)": "Redis: commit script",
}


def stage_times(processor: StreamProcessor, batches: list[dict[str, Any]]) -> dict[str, float]:
    """Milliseconds per batch in each stage of ``processor.process`` (wall clock around each
    call; about 1 µs of wrapper per call), the rest of the batch as processor glue."""
    from unittest import mock

    import fraud_core.stream.processor as module

    spent: dict[str, float] = defaultdict(float)

    def timed(stage: str, fn: Any) -> Any:
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            t = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                spent[stage] += time.perf_counter() - t

        return wrapper

    with contextlib.ExitStack() as stack:
        for stage, owner, name in (*STAGES, *OVERLAPPED):
            if owner == "batch":  # a method of every batch: patch the class
                target: Any = ScoredBatch
            elif owner == "module":
                target = module
            else:
                target = processor
                for part in owner.split("."):
                    target = getattr(target, part)
            stack.enter_context(mock.patch.object(target, name, timed(stage, getattr(target, name))))
        start = time.perf_counter()
        for ev in batches:
            report = processor.process(ev)
            assert not report.failures, report.error
        total = time.perf_counter() - start
    per_batch = {stage: 1000 * t / len(batches) for stage, t in spent.items()}
    background = {stage for stage, _, _ in OVERLAPPED}
    per_batch[GLUE] = 1000 * total / len(batches) - sum(
        ms for stage, ms in per_batch.items() if stage not in background
    )
    return dict(sorted(per_batch.items(), key=lambda kv: (kv[0] in background, -kv[1])))


def io_waits(processor: StreamProcessor, batches: list[dict[str, Any]]) -> dict[str, float]:
    """Milliseconds per batch the processor's own thread waits for each kind of work it hands to
    the I/O threads (named by the callable), without the stage wrappers: what the glue holds."""
    from concurrent.futures import Future
    from unittest import mock

    executor = io_threads()
    submit, result = executor.submit, Future.result
    main = threading.current_thread()
    waited: dict[str, float] = defaultdict(float)
    names: dict[Future[Any], str] = {}

    def named_submit(fn: Any, /, *args: Any, **kwargs: Any) -> Future[Any]:
        future: Future[Any] = submit(fn, *args, **kwargs)
        names[future] = getattr(fn, "__qualname__", repr(fn))
        return future

    def timed_result(self: Future[Any], timeout: float | None = None) -> Any:
        t = time.perf_counter()
        try:
            return result(self, timeout)
        finally:
            name = names.pop(self, None)
            if name is not None and threading.current_thread() is main:
                waited[name] += time.perf_counter() - t

    processor.process(batches[0])  # warm-up
    with (
        mock.patch.object(executor, "submit", named_submit),
        mock.patch.object(Future, "result", timed_result),
    ):
        for ev in batches[1:]:
            report = processor.process(ev)
            assert not report.failures, report.error
    return {name: 1000 * t / (len(batches) - 1) for name, t in waited.items()}


def end_to_end(
    frame: pd.DataFrame, n: int, *, tmp: Path, env: dict[str, str], broker_url: str, r: redis.Redis
) -> dict[str, Any]:
    """Produce ``n`` rows (the frame repeated; ids ``t_<row>`` are unique) with the producer CLI,
    then let the local runner consume, score and store all of them."""
    csv = tmp / f"stream-{n}.csv"
    e2e = pd.concat([frame] * -(-n // len(frame)), ignore_index=True).head(n)
    e2e["card_id"] = [f"c_{i % 5000}" for i in range(n)]
    e2e.drop(columns=[LABEL_FIELD]).to_csv(csv, index=False)
    topic = f"tx-{uuid.uuid4().hex[:6]}"
    ensure_topics(broker_url, [topic])
    t0 = time.perf_counter()
    subprocess.run(
        producer_argv(csv, bootstrap_servers=broker_url, topic=topic), env=env, check=True, timeout=3600
    )
    produced = time.perf_counter() - t0
    stats = tmp / f"runner-stats-{n}.json"
    argv = runner_argv(
        bootstrap_servers=broker_url,
        topic=topic,
        group_id=f"g-{topic}",
        batch_size=1000,
        idle_exit=3,
        stats=stats,
    )
    with (tmp / f"runner-{n}.log").open("wb") as log:
        subprocess.run(argv, env=env, check=True, timeout=7200, stdout=log, stderr=subprocess.STDOUT)
    csv.unlink()
    # from the first record the runner received to the end of its last batch: without the
    # consumer-group join before and the idle wait after
    consumed = json.loads(stats.read_text())["busy_seconds"]
    return {
        "rows": n,
        "produce_seconds": produced,
        "produce_msg_per_s": n / produced,
        "consume_score_store_seconds": consumed,
        "consume_events_per_s": n / consumed,
        "stored_exactly": sum(1 for _ in r.scan_iter(match="fraud:seen:t_*", count=10_000)),
    }


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
        nargs="+",
        default=[100_000],
        help="rows of each end-to-end run, 0 to skip (default: %(default)s; the issue's pair: 100000 1000000)",
    )
    args = parser.parse_args(argv)
    console = make_console()
    tmp = Path(tempfile.mkdtemp())
    rows = max(args.batches * 1000 + 1000, 60_000)
    with console.status("generating SYNTHETIC data and training the model"):
        bench = train_bench_model(tmp, rows=max(rows, 284_807))
    frame, registry = bench.frame, bench.registry
    scorer = load_scorer(registry)
    records = [{**r, "card_id": f"c_{i % 5000}"} for i, r in enumerate(to_records(frame.head(rows)))]

    # What the stream function does once its first batch is set up (after this, collections
    # walk only what batches allocate).
    freeze_startup_heap()
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
        logs = Logs.at(str(tmp / "logs"))
        activity = RedisActivity(client)
        full = "full contract: redis + kafka scores & alerts + scoring log + console activity"
        variants: list[tuple[str, Scorer, ResultSink, Topics, bool]] = [
            (full, scorer, kafka, topics, True),
            ("full contract + shadow challenger", shadowed, kafka, topics, True),
            ("redis + in-memory sink (no broker)", scorer, InMemorySink(), topics, False),
            ("redis + kafka: scores and alerts", scorer, kafka, topics, False),
            (
                'redis + kafka: alerts only (FRAUD_SCORES_TOPIC="")',
                scorer,
                kafka,
                Topics(scores=None, alerts=topics.alerts, dlq=topics.dlq),
                False,
            ),
        ]
        handler: dict[str, float] = {}
        for i, (name, scoring, sink, tps, contract) in enumerate(variants):
            console.print(f"handler: {name} …")
            batches = stream_events(records[: (args.batches + 1) * 1000], 1000, run=f"v{i}")
            extras: dict[str, Any] = {"logs": logs, "activity": activity} if contract else {}
            handler[name] = handler_rate(StreamProcessor(scoring, state, sink, topics=tps, **extras), batches)
        console.print("where a batch's time goes (full contract) …")
        stages = stage_times(
            StreamProcessor(scorer, state, kafka, topics=topics, logs=logs, activity=activity),
            stream_events(records[: args.batches * 1000], 1000, run="stages"),
        )
        results["full_contract_stages_ms_per_batch"] = stages
        waits = io_waits(
            StreamProcessor(scorer, state, kafka, topics=topics, logs=logs, activity=activity),
            stream_events(records[: (args.batches + 1) * 1000], 1000, run="waits"),
        )
        results["full_contract_io_waits_ms_per_batch"] = waits
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

        env = {
            **os.environ,
            "FRAUD_REGISTRY_URI": str(tmp / "reg"),
            "FRAUD_MODEL_NAME": "bench",
            "FRAUD_REDIS_URL": redis_service.url,
            "FRAUD_KAFKA_BOOTSTRAP_SERVERS": broker.url,
            # the full default contract: scores, alerts, the scoring log, console activity
            "FRAUD_SCORES_TOPIC": topics.scores or "",
            "FRAUD_ALERTS_TOPIC": topics.alerts,
            "FRAUD_DLQ_TOPIC": topics.dlq,
            "FRAUD_LOG_URI": str(tmp / "e2e-logs"),
            "POWERTOOLS_LOG_LEVEL": "WARNING",
            "POWERTOOLS_METRICS_DISABLED": "true",
        }
        results["end_to_end"] = []
        for n in [n for n in args.e2e_rows if n > 0]:
            console.print(f"end to end: {n:,} rows through producer → tansu → local runner → Redis …")
            r.flushall()  # the CSV's ids restart at t_0: every run starts from an empty store
            results["end_to_end"].append(end_to_end(frame, n, tmp=tmp, env=env, broker_url=broker.url, r=r))
    finally:
        broker.stop()
        redis_service.stop()
    path = write_results("stream", results)
    before = json.loads(BEFORE.read_text()) if BEFORE.exists() else {}
    was = before.get("handler_events_per_s", {})
    table = Table(title="stream handler on 1,000-event batches (events/s, real Redis, one process)")
    table.add_column("variant")
    table.add_column("events/s", justify="right")
    table.add_column(f"before ({before.get('commit', '-')})", justify="right")
    table.add_column("vs seed-style", justify="right")
    for name, rate in handler.items():
        table.add_row(
            name, f"{rate:,.0f}", f"{was[name]:,.0f}" if name in was else "-", f"{rate / baseline:.0f}×"
        )
    table.add_row(
        "seed-style: sklearn + DataFrame + Redis round trips per record",
        f"{baseline:,.0f}",
        f"{before['seed_style_events_per_s']:,.0f}" if before else "-",
        "1×",
    )
    console.print(table)
    breakdown = Table(title="where a 1,000-event batch's time goes, full contract (ms per batch)")
    breakdown.add_column("stage")
    breakdown.add_column("ms", justify="right")
    breakdown.add_column("share", justify="right")
    breakdown.add_column(f"before ({before.get('commit', '-')})", justify="right")
    background = {stage for stage, _, _ in OVERLAPPED}
    whole = sum(ms for stage, ms in stages.items() if stage not in background)
    was_stages = before.get("full_contract_stages_ms_per_batch", {})
    shown: set[str] = set()
    for stage, ms in stages.items():
        was = BEFORE_STAGES.get(stage, stage)
        if was not in was_stages:
            before_cell = "-"
        elif was in shown:
            before_cell = "(above)"
        else:
            before_cell = f"{was_stages[was]:.1f}"
            shown.add(was)
        breakdown.add_row(
            stage, f"{ms:.1f}", "overlapped" if stage in background else f"{ms / whole:.0%}", before_cell
        )
    breakdown.add_row(
        "total", f"{whole:.1f}", "100%", f"{sum(was_stages.values()):.1f}" if was_stages else "-"
    )
    console.print(breakdown)
    console.print(
        "the batch thread waiting for its I/O threads (ms per batch, no wrappers): "
        + ", ".join(f"{name} {ms:.1f}" for name, ms in waits.items())
    )
    for e in [*results["end_to_end"], *({**e, "before": True} for e in before.get("end_to_end", []))]:
        console.print(
            f"end to end, {e['rows']:,} rows{' (before)' if e.get('before') else ''}: produce "
            f"{e['produce_msg_per_s']:,.0f} msg/s; consume+score+store {e['consume_events_per_s']:,.0f} "
            f"events/s; stored {e['stored_exactly']:,}"
        )
    console.print(f"results in {path}")
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
