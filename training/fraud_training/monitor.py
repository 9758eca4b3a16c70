"""Monitoring from the command line: the monitor job (the scheduled Lambda's code) and daily
tables of the scoring and label logs queried with DuckDB.

    python -m fraud_training.monitor run    [--log-uri URI] [--windows N] [--window-hours H] [--write]
    python -m fraud_training.monitor daily  [--log-uri URI] [--days N]

``--log-uri`` is ``s3://bucket/prefix`` (FRAUD_S3_ENDPOINT_URL reaches moto or LocalStack) or a
directory; it defaults to FRAUD_LOG_URI. DuckDB reads a local copy of S3 logs (``--cache``; only
objects not cached yet are fetched) so no DuckDB extension has to be downloaded; in AWS the same
queries run in Athena over the Glue table the template declares.
"""

from __future__ import annotations

import argparse
import gzip
import json
import zlib
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console
from rich.table import Table

from fraud_core.artifact_stores import LocalModelStore, store_from_uri
from fraud_core.cli import cli_parser, run_cli
from fraud_core.event_log import LABELS, SCORING, Logs
from fraud_core.monitoring.job import DAY, MonitorConfig, run_monitor, write_report
from fraud_core.monitoring.metrics import K, average_precision, card_precision_at_k
from fraud_core.registry import open_registry
from fraud_core.settings import get_settings


def _fmt(value: Any, digits: int = 3) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def window_table(report: dict[str, Any]) -> Table:
    table = Table(title=f"drift per window (model {(report.get('model') or {}).get('version', '?')})")
    for column in (
        "window end",
        "transactions",
        "alerts/day",
        "score PSI / limit",
        "score KS / limit",
        "flags",
    ):
        table.add_column(column, justify="left" if column in ("window end", "flags") else "right")
    for w in report["windows"]:
        score = w.get("score")
        table.add_row(
            w["end"].replace("+00:00", "Z"),
            str(w["transactions"]),
            _fmt(w.get("alerts_per_day"), 0),
            f"{score['psi']:.4f} / {score['psi_threshold']:.4f}" if score else "-",
            f"{score['ks']:.4f} / {score['ks_threshold']:.4f}" if score else "-",
            (", ".join(w["flags"]) or "none") if w.get("tested") else f"not tested: {w.get('why_not')}",
        )
    return table


def realised_table(report: dict[str, Any]) -> Table:
    r = report["realised"]
    table = Table(title=f"realised on label-complete days (delay {r['label_delay_days']} days)")
    for column in ("days", "transactions", "label coverage", "frauds", "AP", f"CP@{K}", "alert precision"):
        table.add_column(column, justify="right")
    days = f"{r['days'][0]} .. {r['days'][-1]}" if r["days"] else "none yet"
    table.add_row(
        days,
        _fmt(r.get("transactions")),
        _fmt(r.get("label_coverage")),
        _fmt(r.get("frauds")),
        _fmt(r.get("average_precision")),
        _fmt(r.get(f"card_precision_at_{K}")),
        _fmt(r.get("alert_precision")),
    )
    return table


def print_report(console: Console, report: dict[str, Any]) -> None:
    console.print(window_table(report))
    console.print(realised_table(report))
    read = report["read"]
    skipped = {
        k: v
        for k, v in read.items()
        if v and k not in ("scoring_objects", "scoring_rows", "label_objects", "label_rows")
    }
    console.print(
        f"read {read['scoring_rows']:,} scoring rows ({read['scoring_objects']} objects), "
        f"{read['label_rows']:,} labels; skipped or counted: {skipped or 'nothing'}"
    )
    for problem in report["problems"]:
        console.print(f"[yellow]problem:[/] {problem}")
    for alarm in report["alarms"]:
        console.print(f"[bold red]ALARM:[/] {alarm}")
    if not report["alarms"]:
        console.print("no alarm")


def _run(args: argparse.Namespace) -> int:
    s = get_settings()
    logs = Logs.at(args.log_uri)
    _, manifest = open_registry(
        args.registry or s.registry_uri, args.model_name or s.model_name
    ).current_manifest()
    config = MonitorConfig(
        window_hours=args.window_hours,
        windows=args.windows,
        label_delay_days=args.label_delay_days,
        realised_days=args.realised_days,
        alpha=args.alpha,
        lookback_days=args.lookback_days,
        as_of=args.as_of.timestamp() if args.as_of else None,
    )
    report = run_monitor(logs, manifest, config)
    console = Console(width=None if Console().is_terminal else 140)
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print_report(console, report)
    if args.write:
        console.print(f"written {logs.scoring.store.uri}/{write_report(logs, report)}")
    return 0


def local_copy(uri: str, cache: Path) -> tuple[Path, list[str]]:
    """A directory holding the logs of ``uri`` (S3 objects fetched into ``cache`` unless already
    there), and the objects that are not readable gzip (DuckDB would stop on them)."""
    store = store_from_uri(uri)
    if isinstance(store, LocalModelStore):
        root = store.root
        keys = store.list_keys(SCORING) + store.list_keys(LABELS)
    else:
        root = cache / uri.removeprefix("s3://").replace("/", "_")
        keys = store.list_keys(SCORING) + store.list_keys(LABELS)
        for key in keys:
            target = root / key
            if not target.exists():
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(store.read(key))
    corrupt = []
    for key in keys:
        try:
            gzip.decompress((root / key).read_bytes())
        except (OSError, EOFError, zlib.error):
            corrupt.append(key)
    return root, corrupt


DEDUPED = """
CREATE VIEW scored AS
    SELECT transaction_id, event_time, card_id, fraud_score, decision FROM scoring_log
    QUALIFY row_number() OVER (PARTITION BY transaction_id ORDER BY scored_at) = 1;
CREATE VIEW latest_labels AS
    SELECT transaction_id, is_fraud FROM label_log
    QUALIFY row_number() OVER (PARTITION BY transaction_id ORDER BY received_at DESC) = 1;
CREATE VIEW joined AS
    SELECT s.*, CAST(floor(event_time / 86400) AS BIGINT) AS day, l.transaction_id IS NOT NULL AS labelled,
           CAST(coalesce(l.is_fraud, false) AS INTEGER) AS y
    FROM scored s LEFT JOIN latest_labels l USING (transaction_id);
"""

DAILY = """
SELECT day, count(*) AS transactions,
       avg(CAST(decision = 'review' AS DOUBLE)) AS review_rate,
       avg(CAST(decision = 'decline' AS DOUBLE)) AS decline_rate,
       avg(CAST(labelled AS DOUBLE)) AS label_coverage,
       sum(y) AS frauds
FROM joined GROUP BY day ORDER BY day
"""


def _read_json(files: list[str]) -> str:
    listed = ", ".join("'" + f.replace("'", "''") + "'" for f in files)
    return (
        f"read_json([{listed}], format = 'newline_delimited', hive_partitioning = true, union_by_name = true)"
    )


def daily(uri: str, cache: Path, *, label_delay_days: int) -> tuple[list[dict[str, Any]], list[str]]:
    """One row per event day: volume, decision rates, label coverage, frauds, and on
    label-complete days (ended ``label_delay_days`` before the newest event) AP and CP@100."""
    import duckdb

    root, corrupt = local_copy(uri, cache)
    bad = set(corrupt)
    files = {
        kind: [str(root / k) for k in store_keys(root, kind) if k not in bad] for kind in (SCORING, LABELS)
    }
    if not files[SCORING]:
        return [], corrupt
    con = duckdb.connect()
    con.execute(f"CREATE VIEW scoring_log AS SELECT * FROM {_read_json(files[SCORING])}")
    if files[LABELS]:
        con.execute(f"CREATE VIEW label_log AS SELECT * FROM {_read_json(files[LABELS])}")
    else:
        con.execute("CREATE TABLE label_log (transaction_id VARCHAR, is_fraud BOOLEAN, received_at DOUBLE)")
    con.execute(DEDUPED)
    table = con.execute(DAILY).fetchall()
    frame: dict[str, Any] = con.execute(
        "SELECT day, event_time, card_id, fraud_score, y FROM joined"
    ).fetchnumpy()
    day, score, y = frame["day"], frame["fraud_score"], frame["y"]
    complete_before = np.floor((float(frame["event_time"].max()) - label_delay_days * DAY) / DAY)
    complete = day < complete_before
    cards = frame["card_id"][complete]
    complete_days = sorted({int(d) for d in day[complete]})
    ap = {d: average_precision(y[day == d], score[day == d]) for d in complete_days}
    cp: dict[int, float] = {}
    if not any(c is None or c == "" for c in cards.tolist()):  # a shape without cards has no CP@100
        _, per_day = card_precision_at_k(
            day[complete], np.asarray(cards, dtype=str), y[complete], score[complete]
        )
        cp = dict(zip(complete_days, per_day, strict=True))
    rows = []
    for d, n, review, decline, coverage, frauds in table:
        rows.append(
            {
                "day": str(datetime.fromtimestamp(d * DAY, UTC).date()),
                "transactions": n,
                "review_rate": review,
                "decline_rate": decline,
                "label_coverage": coverage,
                "frauds": frauds,
                "average_precision": ap.get(d),
                f"card_precision_at_{K}": cp.get(d),
            }
        )
    return rows, corrupt


def store_keys(root: Path, kind: str) -> list[str]:
    return sorted(LocalModelStore(root).list_keys(kind))


def _daily(args: argparse.Namespace) -> int:
    rows, corrupt = daily(args.log_uri, args.cache, label_delay_days=args.label_delay_days)
    console = Console(width=None if Console().is_terminal else 140)
    if not rows:
        console.print(f"no scoring-log rows under {args.log_uri}")
        return 1
    rows = rows[-args.days :]
    table = Table(title=f"daily from {args.log_uri} (AP and CP@{K} on label-complete days only)")
    for column in rows[0]:
        table.add_column(column.replace("_", " "), justify="left" if column == "day" else "right")
    for row in rows:
        table.add_row(*(_fmt(v) for v in row.values()))
    console.print(table)
    for key in corrupt:
        console.print(f"[yellow]skipped corrupt object[/] {key}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = cli_parser("fraud_training.monitor", __doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    s = get_settings()
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--log-uri", default=s.log_uri, help="logs root (default: FRAUD_LOG_URI, %(default)s)"
    )
    common.add_argument("--label-delay-days", type=int, default=s.label_delay_days)
    run = sub.add_parser(
        "run", parents=[common], help="the monitor job: drift per window, realised metrics, alarms"
    )
    run.add_argument("--registry", default=None, help="model registry (default: FRAUD_REGISTRY_URI)")
    run.add_argument("--model-name", default=None, help="model (default: FRAUD_MODEL_NAME)")
    run.add_argument("--window-hours", type=float, default=s.monitor_window_hours)
    run.add_argument("--windows", type=int, default=1, help="consecutive windows, newest last (default: 1)")
    run.add_argument("--realised-days", type=int, default=7)
    run.add_argument("--alpha", type=float, default=s.monitor_alpha, help="false alarms per window")
    run.add_argument("--lookback-days", type=int, default=None, help="scoring dates read (default: all)")
    run.add_argument(
        "--as-of", type=datetime.fromisoformat, default=None, help="end of the newest window (ISO)"
    )
    run.add_argument("--write", action="store_true", help="store the JSON report under monitoring/")
    run.add_argument("--json", action="store_true", help="print the JSON report instead of tables")
    run.set_defaults(handler=_run)
    day = sub.add_parser("daily", parents=[common], help="per event day tables (DuckDB)")
    day.add_argument("--days", type=int, default=14, help="newest days shown (default: 14)")
    day.add_argument("--cache", type=Path, default=Path("artifacts/log-cache"), help="local copy of S3 logs")
    day.set_defaults(handler=_daily)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if not args.log_uri:
        raise SystemExit("no logs: set FRAUD_LOG_URI or pass --log-uri")
    code: int = args.handler(args)
    return code


if __name__ == "__main__":
    raise SystemExit(run_cli(main))
