"""The monitor job: read the scoring and label logs, test drift per window against the manifest's
reference profile, measure realised performance on label-complete days, write a JSON report.

The same code runs as the scheduled ``MonitorFunction`` and as ``python -m fraud_training.monitor
run``. Windows are in *event* time (when transactions happened), so a replay of old days is
monitored like live traffic. Nothing the logs hold can crash it: corrupt objects, duplicates,
labels of unknown transactions, empty windows and a manifest without a reference profile are
counted and reported; it fails only when there is nothing at all to monitor.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass
from datetime import UTC, date, datetime, timedelta
from statistics import NormalDist
from typing import Any

import numpy as np
import numpy.typing as npt
import orjson

from fraud_core.errors import FraudCoreError
from fraud_core.event_log import Logs, ReadStats
from fraud_core.manifest import ModelManifest
from fraud_core.monitoring.drift import ks_statistic, ks_threshold, psi, psi_threshold, reference_cdf
from fraud_core.monitoring.metrics import K, average_precision, card_precision_at_k
from fraud_core.monitoring.profile import SCORE
from fraud_core.monitoring.rows import Scored, labels_by_id, scored_rows
from fraud_core.shapes import shape_named

DAY = 86_400.0
MONITORING = "monitoring"


class NothingToMonitorError(FraudCoreError):
    """The logs hold no scored transaction in the period read."""


@dataclass(frozen=True)
class MonitorConfig:
    window_hours: float = 24.0
    windows: int = 1
    """How many consecutive windows, newest last, to test (the Lambda tests the newest)."""
    label_delay_days: int = 7
    realised_days: int = 7
    """Label-complete event days over which realised performance is measured."""
    alpha: float = 0.001
    """Designed false-alarm rate per window, shared by all of its drift tests (Bonferroni): hourly
    windows at 0.001 page falsely about once in six weeks."""
    min_window: int = 100
    """Windows with fewer transactions are reported but not tested."""
    cp_margin: float = 0.05
    """Alarm when realised CP@100 falls this far below the manifest's test value."""
    lookback_days: int | None = 45
    """Scoring-log partitions read, by scoring date back from now (None: all)."""
    as_of: float | None = None
    """End of the newest window, epoch seconds of event time (None: the newest event logged)."""


def _day_index(t: npt.NDArray[np.float64]) -> npt.NDArray[np.int64]:
    return np.floor(t / DAY).astype(np.int64)


def _iso(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).isoformat(timespec="seconds")


def _z(alpha: float) -> float:
    return NormalDist().inv_cdf(1.0 - alpha / 2.0)


def window_drift(
    manifest: ModelManifest, data: Scored, mask: npt.NDArray[np.bool_], config: MonitorConfig
) -> dict[str, Any]:
    """Drift tests of one window against the reference: PSI (score, features), KS (score), alert rate."""
    n = int(mask.sum())
    rates = {
        d: float(np.mean(data.decision[mask] == d)) if n else 0.0 for d in ("approve", "review", "decline")
    }
    out: dict[str, Any] = {"transactions": n, "decision_rates": rates, "alerts": int(data.alert[mask].sum())}
    out["alerts_per_day"] = out["alerts"] * 24.0 / config.window_hours
    expected_daily = manifest.metrics.get("alerts", {}).get("expected_review_transactions_per_day")
    if expected_daily is not None:
        out["expected_alerts_per_day"] = expected_daily
    reference = manifest.reference
    if not reference:
        out["tested"] = False
        out["why_not"] = "the manifest has no reference profile (trained before monitoring existed)"
        return out
    if n < config.min_window:
        out["tested"] = False
        out["why_not"] = f"{n} transactions, fewer than the {config.min_window} a test needs"
        return out
    shape = shape_named(manifest.schema_name)
    clock = set(shape.clock_features)
    names = [name for name in manifest.features if name in reference and name not in clock]
    out["not_tested"] = sorted(set(manifest.features) - set(names))
    tests = 3 + len(names)  # score PSI, score KS, alert rate, one PSI per feature
    alpha = config.alpha / tests
    flags: list[str] = []
    score_ref = reference[SCORE]
    scores = data.score[mask]
    s_psi = psi(np.asarray(score_ref.proportions), score_ref.counts(scores))
    s_limit = psi_threshold(len(score_ref.proportions), n, score_ref.count, alpha)
    ks = ks_statistic(score_ref, scores)
    ks_limit = ks_threshold(n, score_ref.count, alpha, resolution=1.0 / (len(score_ref.quantiles) - 1))
    out["score"] = {"psi": s_psi, "psi_threshold": s_limit, "ks": ks, "ks_threshold": ks_limit}
    if s_psi > s_limit:
        flags.append("score_psi")
    if ks > ks_limit:
        flags.append("score_ks")
    # alert rate: the share of the reference scores at or above the review threshold
    review = manifest.thresholds.review
    p0 = float(1.0 - reference_cdf(np.asarray(score_ref.quantiles), np.array([np.nextafter(review, -1)]))[0])
    observed = out["alerts"] / n
    margin = _z(alpha) * math.sqrt(max(p0 * (1 - p0), 1e-12) * (1 / n + 1 / score_ref.count)) + 1 / n
    out["alert_rate"] = {"observed": observed, "expected": p0, "margin": margin}
    if abs(observed - p0) > margin:
        flags.append("alert_rate")
    features: dict[str, Any] = {}
    for name in names:
        column = data.features[mask, manifest.features.index(name)]
        finite = column[np.isfinite(column)]
        ref = reference[name]
        if len(finite) == 0:
            features[name] = {"psi": None, "missing": len(column)}
            continue
        value = psi(np.asarray(ref.proportions), ref.counts(finite))
        n_eff, m_eff = len(finite), ref.count
        entity = shape.feature_entities.get(name)
        if entity in data.entities and ref.entities:
            # one card's (terminal's) transactions are not independent: count entities
            ids = data.entities[entity][mask][np.isfinite(column)]
            n_eff, m_eff = max(1, len(np.unique(ids))), ref.entities
        limit = psi_threshold(len(ref.proportions), n_eff, m_eff, alpha)
        features[name] = {"psi": value, "psi_threshold": limit, "sample_size": n_eff}
        if len(finite) < len(column):
            features[name]["missing"] = len(column) - len(finite)
        if value > limit:
            flags.append(f"feature:{name}")
    out["features"] = features
    out["tested"] = True
    out["alpha_per_test"] = alpha
    out["flags"] = flags
    out["drift"] = bool(flags)
    return out


def realised(data: Scored, labels: dict[str, bool], *, as_of: float, config: MonitorConfig) -> dict[str, Any]:
    """AP, the Handbook's CP@100, alert precision and label coverage on label-complete event days.

    A day is label-complete when it ended ``label_delay_days`` before ``as_of``; an unlabelled
    transaction of such a day counts as genuine (as in the Handbook: every fraud is reported
    within the delay).
    """
    complete_before = math.floor((as_of - config.label_delay_days * DAY) / DAY)  # day index, exclusive
    day = _day_index(data.event_time)
    days = sorted({int(d) for d in day[day < complete_before]})[-config.realised_days :]
    out: dict[str, Any] = {
        "label_delay_days": config.label_delay_days,
        "complete_before": _iso(complete_before * DAY),
        "days": [str(date(1970, 1, 1) + timedelta(days=d)) for d in days],
    }
    if not days:
        out["why_not"] = "no label-complete day in the logs yet"
        return out
    mask = np.isin(day, days)
    ids = data.ids[mask]
    known = np.array([tid in labels for tid in ids], dtype=bool)
    y = np.array([labels.get(tid, False) for tid in ids], dtype=np.int64)
    alert = data.alert[mask]
    cp, per_day = card_precision_at_k(day[mask], data.card[mask], y, data.score[mask], k=K)
    out.update(
        {
            "transactions": int(mask.sum()),
            "labelled": int(known.sum()),
            "label_coverage": float(known.mean()),
            "frauds": int(y.sum()),
            "average_precision": average_precision(y, data.score[mask]),
            f"card_precision_at_{K}": cp if data.card[mask].astype(bool).all() else None,
            f"card_precision_at_{K}_per_day": per_day if data.card[mask].astype(bool).all() else None,
            "alerts": int(alert.sum()),
            "alert_precision": float(y[alert].mean()) if alert.any() else None,
        }
    )
    return out


def run_monitor(
    logs: Logs, manifest: ModelManifest | None, config: MonitorConfig, *, now: float | None = None
) -> dict[str, Any]:
    """The monitoring report of the logs against ``manifest`` (the model being served)."""
    now = time.time() if now is None else now
    counts = dict.fromkeys(
        ("malformed_rows", "other_model_versions", "duplicate_rows", "malformed_labels", "duplicate_labels"),
        0,
    )
    scoring_stats, label_stats = ReadStats(), ReadStats()
    if config.lookback_days is None:
        first = last = None
    else:
        last = datetime.fromtimestamp(now, UTC).date()
        first = last - timedelta(days=config.lookback_days)
    names = list(manifest.features) if manifest is not None else []
    version = manifest.version if manifest is not None else None
    data = scored_rows(
        logs.scoring.read(logs.scoring.keys(first=first, last=last), scoring_stats), names, version, counts
    )
    labels = labels_by_id(logs.labels.read(logs.labels.keys(first=first, last=last), label_stats), counts)
    problems = [f"corrupt scoring-log object {k}" for k in scoring_stats.corrupt_objects]
    problems += [f"corrupt label-log object {k}" for k in label_stats.corrupt_objects]
    unknown = len(set(labels) - set(data.ids.tolist()))
    report: dict[str, Any] = {
        "generated_at": _iso(now),
        "model": {"name": manifest.name, "version": manifest.version} if manifest else None,
        "read": {
            "scoring_objects": scoring_stats.objects,
            "scoring_rows": scoring_stats.rows,
            "label_objects": label_stats.objects,
            "label_rows": label_stats.rows,
            "corrupt_objects": len(scoring_stats.corrupt_objects) + len(label_stats.corrupt_objects),
            "corrupt_rows": scoring_stats.corrupt_rows + label_stats.corrupt_rows,
            "labels_for_unknown_transactions": unknown,
            **counts,
        },
        "config": asdict(config),
        "problems": problems,
    }
    if manifest is None:
        problems.append("no model manifest: drift and alert volume are not tested")
    elif not manifest.reference:
        problems.append("the manifest has no reference profile: drift is not tested")
    if len(data.ids) == 0:
        raise NothingToMonitorError(
            f"no scored transaction of {version or 'any model'} in the scoring log "
            f"({scoring_stats.objects} objects read, lookback {config.lookback_days} days)"
        )
    as_of = config.as_of if config.as_of is not None else float(np.nanmax(data.event_time))
    report["as_of"] = _iso(as_of)
    width = config.window_hours * 3600.0
    windows = []
    for i in reversed(range(config.windows)):
        end = as_of - i * width
        mask = (data.event_time > end - width) & (data.event_time <= end)
        window: dict[str, Any] = {"start": _iso(end - width), "end": _iso(end)}
        if manifest is not None:
            window.update(window_drift(manifest, data, mask, config))
        else:
            window["transactions"] = int(mask.sum())
        windows.append(window)
    report["windows"] = windows
    report["realised"] = realised(data, labels, as_of=as_of, config=config)
    tested = None
    if manifest is not None:  # what the model reached when it was trained (test, else validation)
        for part in ("test", "validation"):
            tested = (
                tested
                if tested is not None
                else (manifest.metrics.get(part) or {}).get(f"card_precision_at_{K}")
            )
    report["realised"][f"test_card_precision_at_{K}"] = tested
    report["alarms"] = alarms(report, manifest, config)
    return report


def alarms(report: dict[str, Any], manifest: ModelManifest | None, config: MonitorConfig) -> list[str]:
    """What must page someone, from the newest window and the realised metrics."""
    found: list[str] = []
    newest = report["windows"][-1]
    if newest.get("drift"):
        found.append("drift: " + ", ".join(newest["flags"]))
    expected = newest.get("expected_alerts_per_day")
    if expected and newest["transactions"] >= config.min_window and newest["alerts_per_day"] > 2 * expected:
        found.append(
            f"alert volume {newest['alerts_per_day']:.0f}/day, over twice the expected {expected:.0f}"
        )
    cp = report["realised"].get(f"card_precision_at_{K}")
    tested = report["realised"].get(f"test_card_precision_at_{K}")
    if cp is not None and tested is not None and cp < tested - config.cp_margin:
        found.append(f"realised CP@{K} {cp:.3f} below the test value {tested:.3f} - {config.cp_margin}")
    return found


def write_report(logs: Logs, report: dict[str, Any]) -> str:
    """Store the report as ``monitoring/dt=YYYY-MM-DD/report-HHMMSS.json`` beside the logs."""
    at = datetime.fromisoformat(report["generated_at"])
    key = f"{MONITORING}/dt={at:%Y-%m-%d}/report-{at:%H%M%S}.json"
    logs.scoring.store.write(
        key, orjson.dumps(report, option=orjson.OPT_INDENT_2 | orjson.OPT_SERIALIZE_NUMPY)
    )
    return key


def latest_report(logs: Logs) -> tuple[str, dict[str, Any]] | None:
    """The newest report :func:`write_report` stored (key, body); None before the first run.
    Keys sort by time (``dt=YYYY-MM-DD/report-HHMMSS``), so the last one is the newest."""
    found = sorted(k for k in logs.scoring.store.list_keys(MONITORING) if k.endswith(".json"))
    if not found:
        return None
    return found[-1], dict(orjson.loads(logs.scoring.store.read(found[-1])))


def emf_values(report: dict[str, Any]) -> dict[str, float]:
    """The report's headline numbers, as CloudWatch metrics (name → value)."""
    newest = report["windows"][-1]
    values: dict[str, float] = {"ScoredTransactions": float(newest.get("transactions", 0))}
    if newest.get("tested"):
        values["DriftDetected"] = float(newest["drift"])
        values["ScorePSI"] = newest["score"]["psi"]
        values["ScorePSIRatio"] = newest["score"]["psi"] / newest["score"]["psi_threshold"]
        ratios = [
            f["psi"] / f["psi_threshold"] for f in newest["features"].values() if f.get("psi") is not None
        ]
        values["MaxFeaturePSIRatio"] = max(ratios, default=0.0)
        values["AlertRate"] = newest["alert_rate"]["observed"]
    values["AlertsPerDay"] = float(newest.get("alerts_per_day", 0.0))
    realised_ = report["realised"]
    for key, metric in (
        (f"card_precision_at_{K}", "RealisedCardPrecisionAt100"),
        ("average_precision", "RealisedAveragePrecision"),
        ("alert_precision", "RealisedAlertPrecision"),
        ("label_coverage", "LabelCoverage"),
    ):
        if realised_.get(key) is not None:
            values[metric] = float(realised_[key])
    tested = realised_.get(f"test_card_precision_at_{K}")
    if tested is not None and realised_.get(f"card_precision_at_{K}") is not None:
        values["RealisedCardPrecisionGap"] = float(tested - realised_[f"card_precision_at_{K}"])
    values["LogProblems"] = float(report["read"]["corrupt_objects"] + report["read"]["corrupt_rows"])
    return values
