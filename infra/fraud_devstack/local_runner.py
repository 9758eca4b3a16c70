"""What the Lambda event-source mapping does, for machines without AWS.

    python -m fraud_devstack.local_runner [--topic transactions] [--idle-exit 10] [--quiet]

A consumer-group member polls batches, wraps them in the exact Kafka event shape (base64 key and
value, "topic-partition" groups, headers), invokes the stream Lambda handler in-process, and
commits offsets only after the handler succeeded. Records reported in ``batchItemFailures`` are
retried from the lowest failed offset of their partition, with backoff.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import os
import signal
import sys
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

from fraud_core.cli import cli_parser, run_cli
from fraud_core.stream.ports import BatchReport
from fraud_devstack.kafka_events import build_event
from fraud_devstack.lambda_context import LocalLambdaContext
from fraud_devstack.stack import bootstrap_servers

logger = logging.getLogger(__name__)


def run(
    *,
    bootstrap_servers: str,
    topic: str,
    group_id: str,
    batch_size: int,
    idle_exit: float | None,
    on_report: Callable[[BatchReport], None] | None = None,
    should_stop: Callable[[], bool] = lambda: False,
) -> dict[str, float]:
    """Consume until stopped (or idle); totals: batches, records, retried batches, and
    ``busy_seconds`` from the first record received to the end of the last batch."""
    from confluent_kafka import Consumer, KafkaException, TopicPartition

    from fraud_devstack.topics import ensure_topics
    from fraud_stream import handler

    if on_report is not None:
        handler.report_listeners.append(on_report)
    ensure_topics(bootstrap_servers, [topic])
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap_servers,
            "group.id": group_id,
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
            "session.timeout.ms": 6_000,
            "heartbeat.interval.ms": 1_000,
            "logger": logger,
        }
    )
    consumer.subscribe([topic])
    totals: dict[str, float] = {"batches": 0, "records": 0, "retries": 0, "busy_seconds": 0.0}
    first_record: float | None = None
    last_message = time.monotonic()
    backoff = 0.2
    try:
        while not should_stop():
            polled = consumer.consume(num_messages=batch_size, timeout=0.5)
            records = [m for m in polled if m.error() is None]
            for m in polled:
                error = m.error()
                if error is not None and not error.retriable():
                    print(f"consumer: {error}", file=sys.stderr, flush=True)
            if not records:
                if not consumer.assignment():
                    # Still joining the group (or waiting for a dead member's session to expire):
                    # that is not idleness.
                    last_message = time.monotonic()
                elif idle_exit is not None and time.monotonic() - last_message > idle_exit:
                    break
                continue
            last_message = time.monotonic()
            first_record = first_record or last_message
            event = build_event(
                [
                    {
                        "topic": m.topic(),
                        "partition": m.partition(),
                        "offset": m.offset(),
                        "timestamp": m.timestamp()[1],
                        "key": m.key(),
                        "value": m.value() or b"",
                        "headers": dict(m.headers() or []),
                    }
                    for m in records
                ],
                bootstrap_servers=bootstrap_servers,
            )
            with contextlib.redirect_stdout(io.StringIO()) as captured:
                context: Any = LocalLambdaContext(function_name="fraud-stream-local")
                response = handler.lambda_handler(event, context)
            # EMF metric documents are for CloudWatch; keep everything else the handler printed.
            for line in captured.getvalue().splitlines():
                if not line.startswith('{"_aws"'):
                    print(line, flush=True)
            failed: dict[str, int] = {}
            for item in response.get("batchItemFailures", []):
                ident = item["itemIdentifier"]
                failed[ident["partition"]] = min(
                    failed.get(ident["partition"], ident["offset"]), ident["offset"]
                )
            last: dict[tuple[str, int], int] = {}
            for m in records:
                where = (str(m.topic()), int(m.partition() or 0))  # set on every record without error
                last[where] = max(last.get(where, -1), int(m.offset() or 0))
            commits: list[TopicPartition] = []
            for (name, partition), offset in last.items():
                key = f"{name}-{partition}"
                if key in failed:
                    retry = TopicPartition(name, partition, failed[key])
                    consumer.seek(retry)  # redeliver from the first failed record
                    commits.append(retry)
                else:
                    commits.append(TopicPartition(name, partition, offset + 1))
            try:
                consumer.commit(offsets=commits, asynchronous=False)
            except KafkaException as exc:
                # Broker away or group rebalancing: the offsets stay uncommitted and the records
                # come back; the handler is idempotent, so that costs time, not correctness.
                print(f"commit failed, will be redelivered: {exc}", file=sys.stderr, flush=True)
                failed = failed or {"commit": 0}
            totals["batches"] += 1
            totals["records"] += len(records)
            totals["busy_seconds"] = time.monotonic() - first_record
            if failed:
                totals["retries"] += 1
                time.sleep(backoff)
                backoff = min(backoff * 2, 5.0)
            else:
                backoff = 0.2
    finally:
        consumer.close()
        if on_report is not None:
            handler.report_listeners.remove(on_report)
    return totals


def main(argv: list[str] | None = None) -> int:
    parser = cli_parser("fraud_devstack.local_runner", __doc__)
    parser.add_argument("--topic", default="transactions", help="topic to consume (default: %(default)s)")
    parser.add_argument(
        "--bootstrap-servers", default=None, help="default: FRAUD_KAFKA_BOOTSTRAP_SERVERS or 127.0.0.1:9092"
    )
    parser.add_argument("--group-id", default="fraud-stream", help="consumer group (default: %(default)s)")
    parser.add_argument(
        "--batch-size", type=int, default=500, help="records per handler invocation (default: %(default)s)"
    )
    parser.add_argument(
        "--idle-exit", type=float, default=None, help="stop after this many seconds without messages"
    )
    parser.add_argument(
        "--quiet", action="store_true", help="one summary line per batch instead of one line per transaction"
    )
    parser.add_argument("--stats", type=Path, default=None, help="write the run's totals to this JSON file")
    args = parser.parse_args(argv)
    # The handler's JSON logs are for CloudWatch; a person at a terminal wants the lines below.
    os.environ.setdefault("POWERTOOLS_LOG_LEVEL", "WARNING")
    servers = bootstrap_servers(args.bootstrap_servers)
    stop = {"now": False}

    def request_stop(signum: int, _: Any) -> None:
        stop["now"] = True

    signal.signal(signal.SIGINT, request_stop)
    signal.signal(signal.SIGTERM, request_stop)

    counts: Counter[str] = Counter()

    def show(report: BatchReport) -> None:
        counts.update(
            scored=report.scored,
            duplicates=report.duplicates,
            dead_lettered=report.dead_lettered,
            alerts=report.alerts,
            labels=report.labels,
        )
        summary = (
            f"batch of {report.received}: scored {report.scored}, duplicates {report.duplicates}, "
            f"dead-lettered {report.dead_lettered}, alerts {report.alerts}, failed {len(report.failures)}"
        )
        if args.quiet:
            print(summary, flush=True)
            return
        for r in report.results:
            line = {k: r[k] for k in ("transaction_id", "card_id", "fraud_score", "decision")}
            print(f"Processed: {line}", flush=True)
        if report.duplicates and not report.scored:
            print(
                f"{summary} — already processed (a redelivery, or rows produced again with the same "
                "transaction_id): nothing rescored or recounted",
                flush=True,
            )

    totals = run(
        bootstrap_servers=servers,
        topic=args.topic,
        group_id=args.group_id,
        batch_size=args.batch_size,
        idle_exit=args.idle_exit,
        on_report=show,
        should_stop=lambda: stop["now"],
    )
    print(
        f"stopped after {totals['batches']:.0f} batches ({totals['records']:.0f} records): scored {counts['scored']}, "
        f"duplicates {counts['duplicates']}, dead-lettered {counts['dead_lettered']}, alerts {counts['alerts']}, "
        f"labels {counts['labels']}; {totals['retries']:.0f} retried batches",
        file=sys.stderr,
    )
    if args.stats:
        args.stats.write_text(json.dumps({**totals, **counts}))
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
