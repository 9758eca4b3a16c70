"""What each console page shows, computed from plain data (no FastAPI, no Redis): the queue's
filters and counts, the live panel's chart geometry, a safe preview of dead-letter bytes, and
the last good snapshot to fall back on when Redis is slow."""

from __future__ import annotations

import base64
import math
import threading
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Generic, TypeVar
from urllib.parse import urlencode

from fraud_core.constraints import MAX_ID_LENGTH
from fraud_core.errors import StoreUnavailableError
from fraud_core.online.activity import DECISIONS, SCORE_BINS, MinuteBucket

T = TypeVar("T")

ALERT_DECISIONS = ("review", "decline")


def when(epoch: float | None) -> str:
    """UTC time of day and date, as analysts read it."""
    if epoch is None or not math.isfinite(epoch):
        return "—"
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%d %H:%M:%S")


# -- the alert queue --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class QueueFilter:
    decision: str = ""
    """``review``, ``decline`` or empty (both)."""
    min_score: float | None = None
    model_version: str = ""
    problems: tuple[str, ...] = ()
    """Query values that were ignored, and why (shown above the queue)."""

    @classmethod
    def parse(cls, query: Mapping[str, str]) -> QueueFilter:
        problems = []
        decision = query.get("decision", "")
        if decision not in ("", *ALERT_DECISIONS):
            problems.append("decision must be review or decline")
            decision = ""
        min_score: float | None = None
        raw = query.get("min_score", "").strip()
        if raw:
            try:
                min_score = float(raw)
            except ValueError:
                min_score = None
            if min_score is None or not 0.0 <= min_score <= 1.0:
                problems.append("min score must be a number from 0 to 1")
                min_score = None
        version = query.get("model_version", "")[:MAX_ID_LENGTH]
        return cls(decision, min_score, version, tuple(problems))

    def keeps(self, alert: Mapping[str, Any]) -> bool:
        return (
            (not self.decision or alert.get("decision") == self.decision)
            and (self.min_score is None or float(alert.get("fraud_score", 0.0)) >= self.min_score)
            and (not self.model_version or alert.get("model_version") == self.model_version)
        )

    def query(self) -> str:
        """The filter as a query string (what the polling fragment asks for)."""
        values = {
            "decision": self.decision,
            "min_score": "" if self.min_score is None else f"{self.min_score:g}",
            "model_version": self.model_version,
        }
        return urlencode({k: v for k, v in values.items() if v})


@dataclass(frozen=True, slots=True)
class QueueRow:
    transaction_id: str
    card_id: str | None
    fraud_score: float
    decision: str
    model_version: str
    scored_at: str
    amount: float | None
    label: dict[str, Any] | None
    case_query: str

    @property
    def label_text(self) -> str:
        if self.label is None:
            return ""
        return "fraud" if self.label.get("is_fraud") else "legitimate"


@dataclass(frozen=True, slots=True)
class QueueView:
    rows: list[QueueRow]
    counts: dict[str, int]
    """``shown``, ``total``, one per decision, ``labelled`` (of those shown)."""
    model_versions: list[str]
    """Every model version in the recent alerts (the filter's choices)."""


def unique_newest_first(alerts: Sequence[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """Alerts newest first, each transaction once (a redelivered batch can repeat an alert)."""
    seen: set[str] = set()
    out = []
    for a in alerts:
        tid = str(a.get("transaction_id"))
        if tid not in seen:
            seen.add(tid)
            out.append(a)
    return out


def queue_view(
    alerts: Sequence[Mapping[str, Any]],
    labels: Mapping[str, dict[str, Any] | None],
    flt: QueueFilter,
    *,
    limit: int = 200,
) -> QueueView:
    """``alerts`` newest first, filtered, with counts of the whole recent window and of what is shown."""
    unique = unique_newest_first(alerts)
    kept = [a for a in unique if flt.keeps(a)][:limit]
    by_decision = Counter(str(a.get("decision")) for a in unique)
    rows = [
        QueueRow(
            transaction_id=str(a["transaction_id"]),
            card_id=a.get("card_id"),
            fraud_score=float(a.get("fraud_score", 0.0)),
            decision=str(a.get("decision")),
            model_version=str(a.get("model_version", "")),
            scored_at=when(a.get("scored_at")),
            amount=a.get("amount"),
            label=labels.get(str(a["transaction_id"])),
            case_query=urlencode({"tx": str(a["transaction_id"])}),
        )
        for a in kept
    ]
    counts = {
        "total": len(unique),
        "shown": len(rows),
        "labelled": sum(1 for r in rows if r.label is not None),
        **{d: by_decision.get(d, 0) for d in ALERT_DECISIONS},
    }
    versions = sorted({str(a.get("model_version", "")) for a in unique} - {""})
    return QueueView(rows, counts, versions)


# -- Redis slow or down -----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Fetched(Generic[T]):
    """What a page shows: fresh data, an older snapshot (``stale_since``), or nothing and why."""

    value: T | None
    problem: str | None = None
    """``slow`` (timeouts: a snapshot may be shown) or ``down`` (unreachable)."""
    detail: str = ""
    fetched_at: float | None = None

    @property
    def stale(self) -> bool:
        return self.problem is not None and self.value is not None

    def age(self, now: float | None = None) -> float:
        return 0.0 if self.fetched_at is None else (time.time() if now is None else now) - self.fetched_at


def classify(exc: StoreUnavailableError) -> str:
    """``slow`` when Redis answered too late, ``down`` when it could not be reached at all."""
    text = str(exc).lower()
    return "slow" if "timeout" in text or "timed out" in text else "down"


@dataclass
class Snapshots:
    """The last good value of each console query, per process: shown (marked stale) when Redis is
    slow, so an analyst keeps a queue to work from; never shown as fresh."""

    max_age_seconds: float = 600.0
    clock: Callable[[], float] = time.time
    _last: dict[str, tuple[float, Any]] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def fetch(self, key: str, read: Callable[[], T]) -> Fetched[T]:
        try:
            value = read()
        except StoreUnavailableError as exc:
            kind = classify(exc)
            with self._lock:
                last = self._last.get(key)
            if last is not None and self.clock() - last[0] <= self.max_age_seconds:
                return Fetched(last[1], kind, str(exc), last[0])
            return Fetched(None, kind, str(exc))
        now = self.clock()
        with self._lock:
            self._last[key] = (now, value)
            if len(self._last) > 256:  # filters are user input: keep the memory bounded
                oldest = min(self._last, key=lambda k: self._last[k][0])
                del self._last[oldest]
        return Fetched(value, None, "", now)


# -- dead letters -----------------------------------------------------------------------------


def preview(b64: str, *, limit: int = 240) -> str:
    """Printable ASCII as is, every other byte as ``\\xNN``: bytes from the wire never reach the
    page raw (and the template escapes the result again)."""
    try:
        data = base64.b64decode(b64, validate=True)
    except ValueError:
        return "(preview unavailable)"
    out = []
    for byte in data[:limit]:
        out.append(chr(byte) if 0x20 <= byte < 0x7F else f"\\x{byte:02x}")
    return "".join(out) + ("…" if len(data) > limit else "")


def dead_letter_rows(entries: Sequence[Mapping[str, str]]) -> list[dict[str, str]]:
    rows = []
    for e in entries:
        rows.append(
            {
                "record_id": e.get("record_id", ""),
                "reason": e.get("reason", ""),
                "at": when(float(e["at"])) if e.get("at") else "—",
                "size": e.get("size", "?"),
                "key": preview(e.get("key_b64", ""), limit=64),
                "preview": preview(e.get("preview_b64", "")),
            }
        )
    return rows


# -- the live panel: server-rendered SVG ------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Bar:
    x: float
    y: float
    width: float
    height: float
    css: str
    title: str


@dataclass(frozen=True, slots=True)
class Chart:
    width: int
    height: int
    bars: list[Bar]
    peak: int
    """The largest value drawn (the y axis's top)."""
    labels: list[tuple[float, str]]
    """(x, text) under the axis."""


@dataclass(frozen=True, slots=True)
class LiveView:
    total: int
    per_minute: Chart
    mix: Chart
    histogram: Chart
    decisions: dict[str, int]
    shares: dict[str, float]
    busiest_minute: int
    minutes: int


PLOT_HEIGHT = 120
PLOT_WIDTH = 600


def _column_chart(
    values: Sequence[int],
    *,
    css: str,
    titles: Sequence[str],
    labels: list[tuple[int, str]],
    log: bool = False,
) -> Chart:
    """Columns scaled to the peak; ``log``: heights by log(1 + n), so a bin of 3 frauds stays
    visible beside 10,000 genuine scores."""
    peak = max(values, default=0)
    slot = PLOT_WIDTH / max(1, len(values))
    bars = []
    scale = math.log1p if log else float
    for i, (v, t) in enumerate(zip(values, titles, strict=True)):
        h = 0.0 if peak == 0 else PLOT_HEIGHT * scale(v) / scale(peak)
        bars.append(
            Bar(
                round(i * slot + 1, 2),
                round(PLOT_HEIGHT - h, 2),
                round(max(1.0, slot - 2), 2),
                round(h, 2),
                css,
                t,
            )
        )
    return Chart(
        PLOT_WIDTH, PLOT_HEIGHT, bars, peak, [(round(i * slot + slot / 2, 2), text) for i, text in labels]
    )


def live_view(buckets: Sequence[MinuteBucket]) -> LiveView:
    """Scores per minute, the decision mix and a score histogram over ``buckets`` (oldest first)."""
    per_minute = [b.counts.get("n", 0) for b in buckets]
    total = sum(per_minute)
    stamps = [datetime.fromtimestamp(b.minute * 60, UTC).strftime("%H:%M") for b in buckets]
    every = max(1, len(buckets) // 6)
    minute_chart = _column_chart(
        per_minute,
        css="bar-score",
        titles=[f"{s}: {n} scored" for s, n in zip(stamps, per_minute, strict=True)],
        labels=[(i, stamps[i]) for i in range(0, len(buckets), every)],
    )
    decisions = {d: sum(b.counts.get(d, 0) for b in buckets) for d in DECISIONS}
    shares = {d: (n / total if total else 0.0) for d, n in decisions.items()}
    x = 0.0
    mix_bars = []
    for d in DECISIONS:
        w = PLOT_WIDTH * shares[d]
        if w > 0:
            mix_bars.append(
                Bar(round(x, 2), 0, round(w, 2), 24, f"bar-{d}", f"{d}: {decisions[d]} ({shares[d]:.1%})")
            )
        x += w
    mix = Chart(PLOT_WIDTH, 24, mix_bars, total, [])
    bins = [sum(b.counts.get(f"b{i}", 0) for b in buckets) for i in range(SCORE_BINS)]
    edges = [f"{i / SCORE_BINS:.1f}–{(i + 1) / SCORE_BINS:.1f}" for i in range(SCORE_BINS)]
    histogram = _column_chart(
        bins,
        css="bar-hist",
        titles=[f"score {e}: {n}" for e, n in zip(edges, bins, strict=True)],
        labels=[(i, f"{i / SCORE_BINS:.1f}") for i in range(SCORE_BINS)],
        log=True,
    )
    return LiveView(
        total, minute_chart, mix, histogram, decisions, shares, max(per_minute, default=0), len(buckets)
    )


# -- the model panel --------------------------------------------------------------------------


HEADLINE_METRICS = (
    "average_precision",
    "roc_auc",
    "card_precision_at_100",
    "precision",
    "recall",
    "f1",
)


def headline(metrics: Mapping[str, Any]) -> list[tuple[str, str]]:
    """The training metrics an analyst compares, formatted (others stay in the registry CLI)."""
    test = metrics.get("test", metrics)
    out = []
    for name in HEADLINE_METRICS:
        value = test.get(name) if isinstance(test, Mapping) else None
        if isinstance(value, int | float) and math.isfinite(value):
            out.append((name.replace("_", " "), f"{value:.4f}"))
    return out


def drift_rows(report: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The newest window's drift tests, flagged first."""
    windows = report.get("windows") or []
    newest = windows[-1] if windows else {}
    rows = []
    score = newest.get("score")
    if isinstance(score, Mapping) and score.get("psi") is not None:
        rows.append({"name": "fraud score", **score})
    for name, values in (newest.get("features") or {}).items():
        if isinstance(values, Mapping):
            rows.append({"name": name, **values})
    flags = set(newest.get("flags") or [])
    for r in rows:
        if r["name"] == "fraud score":  # the score's tests flag as score_psi / score_ks
            r["flagged"] = any(f.startswith("score") for f in flags)
        else:
            r["flagged"] = f"feature:{r['name']}" in flags
    return sorted(rows, key=lambda r: (not r["flagged"], r["name"]))


def realised_days(report: Mapping[str, Any]) -> list[tuple[str, str]]:
    realised = report.get("realised") or {}
    days = realised.get("days") or []
    per_day = realised.get("card_precision_at_100_per_day") or []
    return [(d, f"{v:.3f}") for d, v in zip(days, per_day, strict=False)]
