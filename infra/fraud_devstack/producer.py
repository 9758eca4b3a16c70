"""Send transactions from a Kaggle-schema CSV to Kafka, one JSON message per row.

python -m fraud_devstack.producer --csv data/creditcard.csv --limit 20
"""

from __future__ import annotations

import csv
import json
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from fraud_core.cli import cli_parser, run_cli
from fraud_core.shapes.kaggle import LABEL_FIELD, RAW_FIELDS
from fraud_devstack.stack import bootstrap_servers


def rows(path: Path, *, include_label: bool, limit: int | None) -> Iterator[tuple[bytes, dict[str, Any]]]:
    """(key, message) per CSV row: ``transaction_id`` = ``t_<row>``, keyed by card id when present."""
    with path.open(newline="") as fh:
        for i, row in enumerate(csv.DictReader(fh)):
            if limit is not None and i >= limit:
                return
            msg: dict[str, Any] = {"transaction_id": row.get("transaction_id") or f"t_{i}"}
            msg.update({f: float(row[f]) for f in RAW_FIELDS})
            if row.get("card_id"):
                msg["card_id"] = row["card_id"]
            if include_label and row.get(LABEL_FIELD) not in (None, ""):
                msg[LABEL_FIELD] = int(float(row[LABEL_FIELD]))
            yield (msg.get("card_id") or msg["transaction_id"]).encode(), msg


def main(argv: list[str] | None = None) -> int:
    parser = cli_parser("fraud_devstack.producer", __doc__)
    parser.add_argument(
        "--csv", type=Path, required=True, help="Kaggle-schema CSV (Time, V1..V28, Amount[, Class, card_id])"
    )
    parser.add_argument("--limit", type=int, default=None, help="send at most this many rows (default: all)")
    parser.add_argument("--topic", default="transactions", help="topic (default: %(default)s)")
    parser.add_argument(
        "--bootstrap-servers", default=None, help="default: FRAUD_KAFKA_BOOTSTRAP_SERVERS or 127.0.0.1:9092"
    )
    parser.add_argument("--rate", type=float, default=None, help="messages per second (default: unthrottled)")
    parser.add_argument(
        "--include-label",
        action="store_true",
        help="also send Class (off: the label must not ride into scoring)",
    )
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    args = parser.parse_args(argv)
    if not args.csv.exists():
        raise FileNotFoundError(
            f"{args.csv} (`make demo` generates data/kaggle_like.csv; the real Kaggle file goes to data/creditcard.csv)"
        )
    servers = bootstrap_servers(args.bootstrap_servers)

    from rich.console import Console
    from rich.progress import Progress

    from fraud_core.errors import SinkUnavailableError
    from fraud_core.stream.sinks import KafkaSink
    from fraud_devstack.topics import ensure_topics

    console = Console(stderr=True)
    ensure_topics(servers, [args.topic])
    producer = KafkaSink(servers, timeout_seconds=60, linger_ms=20)
    sent = failed = 0
    start = time.perf_counter()
    with Progress(console=console, disable=args.quiet, transient=True) as progress:
        task = progress.add_task(f"producing to {args.topic}", total=args.limit)
        for n, (key, msg) in enumerate(rows(args.csv, include_label=args.include_label, limit=args.limit)):
            if args.rate:
                delay = start + n / args.rate - time.perf_counter()
                if delay > 0:
                    time.sleep(delay)
            producer.publish(args.topic, key, json.dumps(msg).encode())
            sent += 1
            progress.advance(task)
        try:
            producer.flush()
        except SinkUnavailableError as exc:
            console.print(f"[red]{exc}[/red]")
            failed = sent - producer.delivered
            sent = producer.delivered
    seconds = time.perf_counter() - start
    console.print(
        f"sent {sent:,}, failed {failed:,} to {args.topic}@{servers} in {seconds:.1f} s ({sent / max(seconds, 1e-9):,.0f} msg/s)"
    )
    return 0 if failed == 0 else 1


if __name__ == "__main__":
    sys.exit(run_cli(main))
