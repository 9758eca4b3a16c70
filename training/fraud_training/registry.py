"""Inspect and operate the model registry.

python -m fraud_training.registry [--registry URI] {list,show [VERSION],verify [VERSION],promote VERSION,rollback}
"""

from __future__ import annotations

import argparse
import json
import sys

from rich.console import Console
from rich.table import Table

from fraud_core.cli import cli_parser, run_cli
from fraud_core.errors import ModelUnavailableError
from fraud_core.registry import ModelRegistry, store_from_uri
from fraud_core.settings import get_settings
from fraud_training.console import make_console


def build_parser() -> argparse.ArgumentParser:
    p = cli_parser("fraud_training.registry", __doc__)
    p.add_argument(
        "--registry",
        default=None,
        help="s3://bucket/prefix or a directory (default: FRAUD_REGISTRY_URI or artifacts/registry)",
    )
    p.add_argument(
        "--model-name",
        default=None,
        help="model name (default: FRAUD_MODEL_NAME or creditcard-fraud)",
    )
    sub = p.add_subparsers(dest="command", required=True)
    sub.add_parser("list", help="every published version, the current one marked")
    show = sub.add_parser("show", help="a version's manifest as JSON (default: current)")
    show.add_argument("version", nargs="?")
    verify = sub.add_parser(
        "verify", help="re-check every file's sha256; exit 1 on any mismatch or missing file"
    )
    verify.add_argument("version", nargs="?")
    promote = sub.add_parser("promote", help="point current.json at VERSION (verified first)")
    promote.add_argument("version")
    sub.add_parser("rollback", help="point current.json back at the previously promoted version")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    settings = get_settings()
    registry = ModelRegistry(
        store_from_uri(args.registry or settings.registry_uri),
        args.model_name or settings.model_name,
    )
    console = make_console()
    out = Console(width=None if sys.stdout.isatty() else 120)
    try:
        pointer = registry.pointer()
        current = pointer.version if pointer else None
        if args.command == "list":
            table = Table(title=f"{registry.model_name} @ {registry.store.uri}")
            for col in ("", "version", "model", "test AP", "test ROC AUC", "decline ≥", "data"):
                table.add_column(col)
            for listed in registry.versions():
                try:
                    m = registry.manifest(listed)
                except ModelUnavailableError as exc:
                    table.add_row("", listed, f"[red]{exc}[/]", "", "", "", "")
                    continue
                test = m.metrics.get("test", {})
                table.add_row(
                    "→" if listed == current else "",
                    listed,
                    m.model_type,
                    f"{test.get('average_precision', float('nan')):.4f}",
                    f"{test.get('roc_auc', float('nan')):.4f}",
                    f"{m.thresholds.decline:.4f}",
                    ("synthetic " if m.training.get("synthetic") else "")
                    + str(m.training.get("data_file", "")),
                )
            out.print(table)
            return 0
        version: str | None = getattr(args, "version", None) or current
        if version is None:
            console.print(f"[red]no current model in {registry.store.uri}[/]")
            return 1
        if args.command == "show":
            print(json.dumps(json.loads(registry.manifest(version).model_dump_json()), indent=2))
            return 0
        if args.command == "verify":
            checks = registry.verify(version)
            bad = [c for c in checks if c.status != "ok"]
            for c in checks:
                colour = "green" if c.status == "ok" else "red"
                console.print(f"[{colour}]{c.status:>8}[/] {version}/{c.file} {c.detail}")
            console.print(
                f"{version}: "
                + ("[green]all files verified[/]" if not bad else f"[red]{len(bad)} problem(s)[/]")
            )
            return 1 if bad else 0
        if args.command == "promote":
            registry.promote(version)
            console.print(f"current → {version}")
            return 0
        if args.command == "rollback":
            back = registry.rollback()
            console.print(f"rolled back: current → {back.version} (was {current})")
            return 0
    except ModelUnavailableError as exc:
        console.print(f"[red]error:[/] {exc}")
        return 1
    return 2


if __name__ == "__main__":
    sys.exit(run_cli(main))
