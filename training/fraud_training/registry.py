"""Inspect and operate the model registry, and decide whether a new version replaces the current one.

python -m fraud_training.registry [--registry URI] {list,show [VERSION],verify [VERSION],diff A [B],promote VERSION,rollback,challenge VERSION,unchallenge}

Options go before or after the verb (`registry list --registry DIR` works too).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any, Literal

import numpy as np
import numpy.typing as npt
from rich.console import Console
from rich.table import Table

from fraud_core.cli import cli_parser, run_cli
from fraud_core.errors import ModelUnavailableError
from fraud_core.manifest import ONNX_FILE, ModelManifest
from fraud_core.monitoring.gate import GateConfig
from fraud_core.registry import LocalModelStore, ModelRegistry, store_from_uri
from fraud_core.settings import get_settings
from fraud_core.shapes import FeatureMatrix
from fraud_training.console import make_console

PromotePolicy = Literal["auto", "always", "never"]
PROMOTE_POLICIES: tuple[PromotePolicy, ...] = ("auto", "always", "never")
PRIMARY_METRIC = "average_precision"
"""What "better" means when a candidate meets the serving model: test average precision."""


# -- promotion policy ----------------------------------------------------------------------


@dataclass(frozen=True)
class Promotion:
    """Whether a freshly published version became ``current``, and why."""

    promoted: bool
    reason: str
    """A clause for people, e.g. "the registry had no current version"."""
    policy: PromotePolicy
    serving_version: str | None = None
    """The version that was current when training finished (None: there was none)."""
    serving_average_precision: float | None = None
    """The serving model's AP on the candidate's own test rows, when compared."""
    candidate_average_precision: float | None = None
    compared_rows: int = 0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def decide_promotion(
    registry: ModelRegistry,
    policy: PromotePolicy,
    *,
    candidate: ModelManifest,
    candidate_average_precision: float,
    X_test: FeatureMatrix,
    y_test: npt.NDArray[np.int64],
) -> Promotion:
    """Apply ``policy`` to ``candidate``.

    ``always`` promotes, ``never`` does not; ``auto`` promotes when there is no current version,
    or when the candidate's test AP beats the serving model's AP on the *same* test rows (the
    serving model is loaded through the core and scores ``X_test``). A serving model of another
    schema or feature list cannot score these rows, so ``auto`` then leaves it in place.
    """
    if policy not in PROMOTE_POLICIES:
        raise ValueError(f"promotion policy must be one of {PROMOTE_POLICIES}, not {policy!r}")
    pointer = registry.pointer()
    serving = pointer.version if pointer else None
    candidate_ap = candidate_average_precision

    def decision(promoted: bool, reason: str, serving_ap: float | None = None) -> Promotion:
        rows = len(y_test) if serving_ap is not None else 0
        return Promotion(promoted, reason, policy, serving, serving_ap, candidate_ap, rows)

    if policy == "never":
        return decision(False, "--no-promote was given")
    if policy == "always":
        return decision(True, "--promote was given" + (f", replacing {serving}" if serving else ""))
    if pointer is None:
        return decision(True, "the registry had no current version")
    try:
        _, current = registry.current_manifest()
        if current.schema_name != candidate.schema_name or current.features != candidate.features:
            return decision(
                False,
                f"it is a {current.schema_name} model of {len(current.features)} features and the candidate "
                f"a {candidate.schema_name} model of {len(candidate.features)}: they cannot be compared on "
                "the same rows",
            )
        from fraud_core.provider import load_scorer

        scorer = load_scorer(registry)
    except ModelUnavailableError as exc:
        return decision(False, f"it cannot be loaded to compare: {exc}")
    from sklearn.metrics import average_precision_score

    serving_ap = float(average_precision_score(y_test, scorer.score_matrix(X_test)))
    caveat = _overlap_caveat(current, candidate)
    if candidate_ap > serving_ap:
        return decision(
            True,
            f"its AP {candidate_ap:.4f} beats current {serving}'s {serving_ap:.4f} on the same "
            f"{len(y_test):,} test rows{caveat}",
            serving_ap,
        )
    return decision(
        False,
        f"AP {serving_ap:.4f} on the same {len(y_test):,} test rows, candidate {candidate_ap:.4f}{caveat}",
        serving_ap,
    )


def _overlap_caveat(current: ModelManifest, candidate: ModelManifest) -> str:
    """A warning when the serving model may have trained on the candidate's test rows."""
    a, b = current.training, candidate.training
    split: dict[str, Any] = b["split"] if isinstance(b.get("split"), dict) else {}
    same_rows = (
        a.get("data_sha256") == b.get("data_sha256")
        and a.get("split") == b.get("split")
        and (split.get("kind") != "random" or a.get("seed") == b.get("seed"))
    )
    if same_rows:
        return ""
    source = (
        "other data" if a.get("data_sha256") != b.get("data_sha256") else "another split of the same data"
    )
    return f"; current was trained on {source} and may have seen some of these rows, which flatters its AP"


def registry_command(uri: str, model_name: str, *words: str) -> str:
    """The ``python -m fraud_training.registry`` command line for ``words`` on this registry."""
    settings = get_settings()
    parts = ["python -m fraud_training.registry"]
    if uri != settings.registry_uri:
        parts.append(f"--registry {uri}")
    if model_name != settings.model_name:
        parts.append(f"--model-name {model_name}")
    return " ".join([*parts, *words])


def promotion_message(promotion: Promotion, *, version: str, command: str) -> str:
    """What training says about the version it published (``command`` promotes it by hand)."""
    ap = promotion.candidate_average_precision
    published = f"published {version}" + (f" (AP {ap:.4f})" if ap is not None else "")
    if promotion.promoted:
        return f"{published}; it is now current: {promotion.reason}"
    if promotion.policy == "never" or promotion.serving_version is None:
        return f"{published}; not promoted ({promotion.reason}); promote it with `{command}`"
    return (
        f"{published}; current stays {promotion.serving_version} ({promotion.reason}); "
        f"promote it with `{command}`"
    )


# -- command line --------------------------------------------------------------------------


def _add_registry_options(p: argparse.ArgumentParser, *, default: Any) -> None:
    p.add_argument(
        "--registry",
        default=default,
        help="s3://bucket/prefix or a directory (default: FRAUD_REGISTRY_URI or artifacts/registry)",
    )
    p.add_argument(
        "--model-name",
        default=default,
        help="model name (default: FRAUD_MODEL_NAME or creditcard-fraud)",
    )


def build_parser() -> argparse.ArgumentParser:
    p = cli_parser("fraud_training.registry", __doc__)
    _add_registry_options(p, default=None)
    # The same options after the verb; SUPPRESS keeps a value given before the verb.
    after = argparse.ArgumentParser(add_help=False)
    _add_registry_options(after, default=argparse.SUPPRESS)
    after.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help="show tracebacks")
    sub = p.add_subparsers(dest="command", required=True)
    sub.add_parser(
        "list",
        parents=[after],
        help="every version: split, data (synthetic or real, sha256), test AP; current and rollback order marked",
    )
    show = sub.add_parser("show", parents=[after], help="a version's manifest as JSON (default: current)")
    show.add_argument("version", nargs="?")
    verify = sub.add_parser(
        "verify",
        parents=[after],
        help="re-check every file's sha256; exit 1 on any mismatch or missing file",
    )
    verify.add_argument("version", nargs="?")
    diff = sub.add_parser(
        "diff",
        parents=[after],
        help="compare two versions: metrics, thresholds, features, data, model, libraries",
    )
    diff.add_argument("a", metavar="A", help="the first version")
    diff.add_argument("b", metavar="B", nargs="?", help="the second version (default: current)")
    promote = sub.add_parser(
        "promote", parents=[after], help="point current.json at VERSION (verified first)"
    )
    promote.add_argument("version")
    sub.add_parser(
        "rollback",
        parents=[after],
        help="point current.json at the version promoted before it; again to go one further back",
    )
    challenge = sub.add_parser(
        "challenge",
        parents=[after],
        help="score VERSION in shadow beside the current model (logged, never deciding)",
    )
    challenge.add_argument("version")
    sub.add_parser("unchallenge", parents=[after], help="stop scoring the challenger in shadow")
    sub.add_parser(
        "history", parents=[after], help="the audit log: promotions, rollbacks, challenges, gate decisions"
    )
    gate = sub.add_parser(
        "gate",
        parents=[after],
        help="compare the challenger with the current model on label-complete days of the scoring log",
    )
    s = get_settings()
    gate.add_argument("--log-uri", default=s.log_uri, help="scoring and label logs (default: FRAUD_LOG_URI)")
    gate.add_argument("--label-delay-days", type=int, default=s.label_delay_days)
    gate.add_argument("--margin", type=float, default=0.0, help="required per-day improvement (default: 0)")
    gate.add_argument(
        "--metric",
        choices=("cp", "ap"),
        default="cp",
        help="primary metric, the other is a guardrail: cp = Card Precision@100, ap = average precision "
        "(default: %(default)s)",
    )
    gate.add_argument(
        "--tolerance",
        type=float,
        default=0.02,
        help="how much worse on the guardrail metric is acceptable (default: %(default)s)",
    )
    gate.add_argument("--min-days", type=int, default=7)
    gate.add_argument("--min-frauds", type=int, default=20)
    gate.add_argument(
        "--max-latency-ratio",
        type=float,
        default=GateConfig.max_latency_ratio,
        help="how many times slower than the champion the challenger may score (default: %(default)s)",
    )
    gate.add_argument("--apply", action="store_true", help="promote the challenger when it passes")
    return p


def open_checked(uri: str, model_name: str) -> ModelRegistry:
    """The registry at ``uri``; a local directory that does not exist is an error, not an empty list."""
    store = store_from_uri(uri)
    if isinstance(store, LocalModelStore) and not store.root.is_dir():
        raise ModelUnavailableError(
            f"registry directory {store.root} does not exist; pass --registry, or train a model into it "
            f"with `python -m fraud_training.train --registry {store.root}`"
        )
    return ModelRegistry(store, model_name)


def _require_versions(registry: ModelRegistry) -> list[str]:
    versions = registry.versions()
    if versions:
        return versions
    others = ""
    if isinstance(registry.store, LocalModelStore):
        names = registry.store.list_dirs("")
        others = f" (models there: {', '.join(names)})" if names else " (it holds no model)"
    raise ModelUnavailableError(
        f"no versions of model {registry.model_name} in {registry.store.uri}{others}; pass --model-name"
    )


def _fmt(value: Any, digits: int = 4) -> str:
    if value is None:
        return "—"
    if isinstance(value, float):
        return "—" if math.isnan(value) else f"{value:.{digits}f}"
    return str(value)


def _data_cell(m: ModelManifest) -> str:
    t = m.training
    kind = "synthetic" if t.get("synthetic") else "real"
    sha = str(t.get("data_sha256", ""))[:12] or "no sha256"
    return f"{kind} {sha} {t.get('data_file', '')}".strip()


def _split_cell(m: ModelManifest) -> str:
    split = m.training.get("split")
    return str(split.get("kind", "—")) if isinstance(split, dict) else "—"


def _list(registry: ModelRegistry, out: Console) -> int:
    versions = _require_versions(registry)
    pointer = registry.pointer()
    marks = {}
    if pointer is not None:
        for n, entry in reversed(list(enumerate(pointer.history, start=1))):
            marks[entry.get("version", "")] = f"rollback {n}"
        marks[pointer.version] = "→ current"
    challenger = registry.challenger()
    if challenger is not None:
        marks[challenger.version] = "shadow"
    table = Table(title=f"{registry.model_name} @ {registry.store.uri}")
    for col in ("", "version", "model", "split", "data", "test AP", "ROC AUC", "decline ≥"):
        numeric = col in ("test AP", "ROC AUC", "decline ≥")
        # versions are what people copy: never wrapped or cut, the data column wraps instead
        table.add_column(
            col, justify="right" if numeric else "left", no_wrap=col in ("", "version") or numeric
        )
    for version in versions:
        mark = marks.get(version, "")
        try:
            m = registry.manifest(version)
        except ModelUnavailableError as exc:
            table.add_row(mark, version, f"[red]{exc}[/]", "", "", "", "", "")
            continue
        test = m.metrics.get("test", {})
        table.add_row(
            f"[bold]{mark}[/]" if mark.startswith("→") else mark,
            version,
            m.model_type,
            _split_cell(m),
            _data_cell(m),
            _fmt(test.get(PRIMARY_METRIC)),
            _fmt(test.get("roc_auc")),
            _fmt(m.thresholds.decline),
        )
    out.print(table)
    if pointer is None:
        command = registry_command(registry.store.uri, registry.model_name, "promote", "VERSION")
        out.print(f"no current version: promote one with `{command}`")
    return 0


def _facts(m: ModelManifest) -> dict[str, Any]:
    """The comparable facts of one version, in display order."""
    t, test, val = m.training, m.metrics.get("test", {}), m.metrics.get("validation", {})
    parity = m.metrics.get("onnx_parity", {})
    raw_split = t.get("split")
    split: dict[str, Any] = raw_split if isinstance(raw_split, dict) else {}
    facts: dict[str, Any] = {
        "model type": m.model_type,
        "model": json.dumps(t.get("model")) if t.get("model") is not None else None,
        "schema": m.schema_name,
        "created": m.created_at,
        "data file": t.get("data_file"),
        "data": "synthetic" if t.get("synthetic") else "real",
        "data sha256": str(t.get("data_sha256", ""))[:16] or None,
        "rows": t.get("rows"),
        "split": split.get("kind"),
        **{f"{part} rows": split.get(part, {}).get("rows") for part in ("train", "validation", "test")},
        "seed": t.get("seed"),
        "fit seconds": t.get("fit_seconds"),
        "review ≥": m.thresholds.review,
        "decline ≥": m.thresholds.decline,
        **{f"test {label}": test.get(key) for key, label in _METRICS.items()},
        "validation AP": _scalar(val.get(PRIMARY_METRIC)),
        "ONNX max |Δscore|": parity.get("max_abs_diff"),
        "ONNX borderline flips": parity.get("borderline_flips"),
    }
    return facts


_METRICS = {
    "average_precision": "AP",
    "roc_auc": "ROC AUC",
    "precision": "precision",
    "recall": "recall",
    "f1": "F1",
    "flagged_recall": "flagged recall",
    "flagged_rate": "flagged rate",
}


def _scalar(value: Any) -> Any:
    # simulated manifests store validation metrics as (mean, std)
    return value[0] if isinstance(value, list | tuple) and value else value


def _feature_difference(a: Sequence[str], b: Sequence[str]) -> str:
    """How B's feature list differs from A's ("" when identical)."""
    if list(a) == list(b):
        return ""
    added, removed = [f for f in b if f not in a], [f for f in a if f not in b]
    return ", ".join([*(f"+{f}" for f in added), *(f"-{f}" for f in removed)]) or "same names, other order"


def _diff(registry: ModelRegistry, a: str, b: str | None, out: Console) -> int:
    if b is None:
        pointer = registry.pointer()
        if pointer is None:
            raise ModelUnavailableError(f"{registry.model_name} has no current version: name both versions")
        b = pointer.version
    ma, mb = registry.manifest(a), registry.manifest(b)
    fa, fb = _facts(ma), _facts(mb)
    table = Table(title=f"{registry.model_name}: {a} → {b}")
    for col, justify in (("", "left"), ("", "left"), (a, "right"), (b, "right"), ("B − A", "right")):
        table.add_column(col, justify=justify)  # type: ignore[arg-type]
    differing = 0
    rows: list[tuple[str, Any, Any]] = [*((k, fa[k], fb[k]) for k in fa)]
    changed = _feature_difference(ma.features, mb.features)
    rows.append(
        ("features", len(ma.features), f"{len(mb.features)} ({changed})" if changed else len(mb.features))
    )
    for lib in sorted(set(ma.libraries) | set(mb.libraries)):
        rows.append((lib, ma.libraries.get(lib), mb.libraries.get(lib)))
    for name, va, vb in rows:
        if va is None and vb is None:
            continue
        same = va == vb
        differing += not same
        delta = ""
        numbers = all(isinstance(v, int | float) and not isinstance(v, bool) for v in (va, vb))
        if numbers and not same:
            delta = f"{vb - va:+.4f}" if isinstance(va, float) or isinstance(vb, float) else f"{vb - va:+,}"
        digits = 2 if name == "fit seconds" else 6 if name.endswith("≥") else 4
        if name == "ONNX max |Δscore|":
            cells = [f"{v:.2e}" if isinstance(v, float) else _fmt(v) for v in (va, vb)]
        else:
            cells = [_fmt(va, digits), _fmt(vb, digits)]
        table.add_row("[yellow]≠[/]" if not same else "", name, *cells, delta)
    out.print(table)
    out.print(f"{differing} of {len(table.rows)} facts differ")
    return 0


def _version_or_current(registry: ModelRegistry, version: str | None) -> str:
    if version is not None:
        registry.require_version(version)
        return version
    pointer = registry.pointer()
    if pointer is None:
        raise ModelUnavailableError(
            f"{registry.model_name} has no current version in {registry.store.uri}; name a VERSION "
            f"(`{registry_command(registry.store.uri, registry.model_name, 'list')}` shows them)"
        )
    return pointer.version


def _history(registry: ModelRegistry, out: Console) -> int:
    table = Table(title=f"{registry.model_name} audit log @ {registry.store.uri}")
    for col in ("at", "action", "version", "by", "why / details"):
        table.add_column(col, no_wrap=col in ("at", "version"))
    for r in registry.history():
        details = {k: v for k, v in r.items() if k not in ("at", "action", "version", "by")}
        why = details.pop("why", None)
        table.add_row(
            r["at"],
            r["action"],
            str(r.get("version")),
            r["by"],
            "; ".join(why) if why else json.dumps(details),
        )
    out.print(table)
    return 0


def _gate(registry: ModelRegistry, args: argparse.Namespace, console: Console) -> int:
    """The promotion gate on the scoring log; its decision goes to the audit log either way."""
    from fraud_core.event_log import Logs
    from fraud_core.monitoring.gate import METRICS, compare
    from fraud_core.monitoring.job import DAY
    from fraud_core.monitoring.rows import labels_by_id, scored_rows

    _, champion = registry.current_manifest()
    pointer = registry.challenger()
    if pointer is None:
        raise ModelUnavailableError(
            f"{registry.model_name} has no challenger: `registry challenge VERSION` sets one"
        )
    challenger = registry.manifest(pointer.version, expected_sha256=pointer.manifest_sha256)
    config = GateConfig(
        margin=args.margin,
        metric=METRICS[args.metric],
        tolerance=args.tolerance,
        min_days=args.min_days,
        min_frauds=args.min_frauds,
        max_latency_ratio=args.max_latency_ratio,
    )
    why: list[str] = []
    if challenger.schema_name != champion.schema_name:
        why.append(
            f"the challenger is a {challenger.schema_name!r} model, the champion {champion.schema_name!r}"
        )
    if not args.log_uri:
        why.append("no scoring log (FRAUD_LOG_URI / --log-uri)")
    decision = None
    if not why:
        logs = Logs.at(args.log_uri)
        counts: dict[str, int] = dict.fromkeys(
            (
                "malformed_rows",
                "other_model_versions",
                "duplicate_rows",
                "malformed_labels",
                "duplicate_labels",
            ),
            0,
        )
        data = scored_rows(logs.scoring.read(), [], champion.version, counts, challenger=challenger.version)
        labels = labels_by_id(logs.labels.read(), counts)
        as_of = float(np.nanmax(data.event_time)) if len(data.ids) else 0.0
        latency = _latency_ratio(registry, champion, challenger)
        size = challenger.files[ONNX_FILE].bytes if ONNX_FILE in challenger.files else None
        decision = compare(
            data,
            labels,
            complete_before=as_of - args.label_delay_days * DAY,
            config=config,
            latency_ratio=latency,
            artifact_bytes=size,
        )
        why = decision.reasons
    passed = decision is not None and decision.promote
    metrics = decision.to_dict() if decision else {}
    registry.record(
        "gate", challenger.version, passed=passed, champion=champion.version, why=why, metrics=metrics
    )
    if decision is not None and decision.champion:
        console.print(
            f"{decision.metric} on {len(decision.days)} label-complete days: champion "
            f"{decision.champion[decision.metric]:.4f}, challenger {decision.challenger[decision.metric]:.4f}"
        )
    verdict = "passes" if passed else "stays in shadow"
    console.print(f"challenger {challenger.version} {verdict}: " + "; ".join(why))
    if passed and args.apply:
        registry.promote(challenger.version)
        registry.unchallenge()
        console.print(f"current → {challenger.version}")
    return 0 if passed else 1


def _latency_ratio(registry: ModelRegistry, champion: ModelManifest, challenger: ModelManifest) -> float:
    """Challenger's ONNX scoring time over the champion's, on the same 1,000 zero rows (shape only).

    The two take turns, and each keeps its fastest of 7 calls: a busy machine slows single calls,
    not the fastest one, so a noisy neighbour does not make a challenger look slow."""
    import time

    from fraud_core.model import OnnxModel

    models = []
    for manifest in (champion, challenger):
        model = OnnxModel(registry.read_verified(manifest, ONNX_FILE), n_features=len(manifest.features))
        rows = np.zeros((1000, len(manifest.features)), dtype=np.float32)
        model.predict(rows)
        models.append((model, rows))
    best = [float("inf"), float("inf")]
    for _ in range(7):
        for i, (model, rows) in enumerate(models):
            start = time.perf_counter()
            model.predict(rows)
            best[i] = min(best[i], time.perf_counter() - start)
    return best[1] / best[0]


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    settings = get_settings()
    registry = open_checked(args.registry or settings.registry_uri, args.model_name or settings.model_name)
    console = make_console()
    out = Console(width=None if sys.stdout.isatty() else 120)
    if args.command == "list":
        return _list(registry, out)
    if args.command == "diff":
        return _diff(registry, args.a, args.b, out)
    if args.command == "rollback":
        before = registry.pointer()
        back = registry.rollback()
        console.print(f"rolled back: current → {back.version} (was {before.version if before else None})")
        if back.history:
            console.print(f"a further rollback would go to {back.history[0]['version']}")
        return 0
    if args.command == "history":
        return _history(registry, out)
    if args.command == "gate":
        return _gate(registry, args, console)
    if args.command == "unchallenge":
        registry.unchallenge()
        console.print("challenger cleared: serving scores the current model only")
        return 0
    version = _version_or_current(registry, args.version)
    if args.command == "challenge":
        registry.challenge(version)
        console.print(f"challenger → {version} (scored in shadow within the services' refresh interval)")
        return 0
    if args.command == "show":
        print(json.dumps(json.loads(registry.manifest(version).model_dump_json()), indent=2))
        return 0
    if args.command == "promote":
        registry.promote(version)
        console.print(f"current → {version}")
        return 0
    checks = registry.verify(version)
    bad = [c for c in checks if c.status != "ok"]
    for c in checks:
        colour = "green" if c.status == "ok" else "red"
        console.print(f"[{colour}]{c.status:>8}[/] {version}/{c.file} {c.detail}")
    console.print(
        f"{version}: " + ("[green]all files verified[/]" if not bad else f"[red]{len(bad)} problem(s)[/]")
    )
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
