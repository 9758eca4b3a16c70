"""`/console`: the analyst console, server-rendered (Jinja2) and refreshed by htmx polling, so it
works through API Gateway and Mangum like every other route. Wiring only: what each page shows
is computed in `fraud_api.console.views`; labels take the same path as `POST /v1/labels`."""

from __future__ import annotations

import hmac
import logging
import secrets
import time
from functools import cache
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import parse_qs, urlencode

from fastapi import APIRouter, Depends, Request
from fastapi.responses import RedirectResponse, Response

from fraud_api.console import views
from fraud_api.console.session import COOKIE, Session, csrf_ok, derive_secret, safe_next, sign, verify
from fraud_api.deps import (
    ActivityDep,
    LabelLedgerDep,
    LabelLimiterDep,
    LogsDep,
    ProviderDep,
    ResultStoreDep,
    SettingsDep,
    _fetch_key,
    auth_on,
    fetch_api_key,
    fetch_labels_key,
    get_online_state,
    principal,
)
from fraud_api.labelling import accept_labels
from fraud_api.limits import RateLimiter
from fraud_core.constraints import id_error
from fraud_core.errors import ModelUnavailableError, StoreUnavailableError
from fraud_core.labels import Label
from fraud_core.settings import Settings

logger = logging.getLogger(__name__)

router = APIRouter(prefix="/console", include_in_schema=False)


@cache
def templates() -> Any:
    """Jinja2 (imported on the first console page, not at cold start: the API's scoring routes
    never pay for it). Autoescaping is on for every template."""
    from starlette.templating import Jinja2Templates

    found = Jinja2Templates(directory=Path(__file__).parent.parent / "templates")
    found.env.filters["when"] = views.when
    return found


QUEUE_FETCH = 1000
"""Recent alerts read per queue refresh (one XREVRANGE); filters apply to these."""
MODEL_PANEL_SECONDS = 30.0
"""The model panel reads S3 (registry, audit, report): at most this often per process."""
snapshots = views.Snapshots()


@cache
def _process_secret() -> bytes:
    # No API key and no configured secret: the console is open anyway; this secret only binds
    # CSRF tokens, per process (set FRAUD_CONSOLE_SESSION_SECRET when several instances serve).
    return secrets.token_bytes(32)


def session_secret(settings: Settings) -> bytes:
    configured = _fetch_key(
        settings.console_session_secret,
        settings.console_session_secret_ssm_parameter,
        max_age=settings.parameters_max_age_seconds,
    )
    if configured:
        return configured.encode()
    key = fetch_api_key(settings) if auth_on(settings) else None
    return derive_secret(key) if key else _process_secret()


@cache
def login_limiter() -> RateLimiter:
    return RateLimiter(per_minute=20)


class LoginRequired(Exception):  # noqa: N818 - a control-flow signal, handled in fraud_api.main
    def __init__(self, target: str) -> None:
        self.target = target


def _https(request: Request) -> bool:
    return request.url.scheme == "https" or request.headers.get("x-forwarded-proto") == "https"


def _set_cookie(response: Response, request: Request, value: str, *, max_age: int) -> None:
    response.set_cookie(
        COOKIE,
        value,
        max_age=max_age,
        path="/console",
        httponly=True,
        secure=_https(request),
        samesite="strict",
    )


async def console_session(request: Request, settings: SettingsDep) -> Session:
    """The signed session; with API-key auth on, none means the login page. Without auth an
    anonymous session is made on the fly (it carries the CSRF token)."""
    secret = session_secret(settings)
    found = verify(request.cookies.get(COOKIE), secret)
    if found is not None:
        return found
    if auth_on(settings):
        target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        raise LoginRequired(target)
    host = request.client.host if request.client else "unknown"
    fresh = Session.new(
        principal="anonymous",
        author=f"anonymous:{host}",
        can_label=True,
        hours=settings.console_session_hours,
    )
    request.state.new_session = fresh
    return fresh


SessionDep = Annotated[Session, Depends(console_session)]


def render(
    request: Request, name: str, context: dict[str, Any], *, session: Session | None, status_code: int = 200
) -> Response:
    settings: Settings = context.pop("settings")
    response: Response = templates().TemplateResponse(
        request,
        name,
        {
            "session": session,
            "auth_on": auth_on(settings),
            "poll_seconds": f"{settings.console_poll_seconds:g}",
            "path": request.url.path,
            **context,
        },
        status_code=status_code,
    )
    new: Session | None = getattr(request.state, "new_session", None)
    if new is not None:
        _set_cookie(
            response, request, sign(new, session_secret(settings)), max_age=int(new.expires - time.time())
        )
    return response


async def _form(request: Request) -> dict[str, str]:
    """An urlencoded form (BodyGuard has bounded its size): first value of each field."""
    body = (await request.body()).decode("utf-8", "replace")
    return {k: v[0] for k, v in parse_qs(body, keep_blank_values=True).items()}


def _same_origin(request: Request) -> bool:
    """A form post must come from this site's pages (SameSite=Strict already stops most)."""
    origin = request.headers.get("origin")
    if origin is None or origin == "null":
        return origin is None
    host = request.headers.get("host", "")
    return origin.split("://", 1)[-1] == host


# -- login ------------------------------------------------------------------------------------


@router.get("/login")
async def login_page(request: Request, settings: SettingsDep, next: str = "/console") -> Response:
    if not auth_on(settings):
        return RedirectResponse("/console", status_code=303)
    return render(
        request, "console/login.html", {"settings": settings, "next": safe_next(next)}, session=None
    )


@router.post("/login")
async def login(request: Request, settings: SettingsDep) -> Response:
    form = await _form(request)
    target = safe_next(form.get("next"))
    if not auth_on(settings):
        return RedirectResponse("/console", status_code=303)
    host = request.client.host if request.client else "unknown"
    wait = login_limiter().take(host)
    expected = fetch_api_key(settings)
    given = form.get("api_key", "")
    ok = bool(not wait and expected and hmac.compare_digest(given.encode(), expected.encode()))
    labels_given = form.get("labels_key", "")
    labels_expected = fetch_labels_key(settings)
    labels_ok = bool(labels_expected and hmac.compare_digest(labels_given.encode(), labels_expected.encode()))
    if not ok or (labels_given and not labels_ok):
        error = (
            f"too many attempts: retry in {wait:.0f} s"
            if wait
            else ("wrong labels key" if ok else "wrong API key")
        )
        logger.warning("console login refused", extra={"client": host, "why": error})
        return render(
            request,
            "console/login.html",
            {"settings": settings, "next": target, "error": error},
            session=None,
            status_code=429 if wait else 401,
        )
    assert expected is not None
    author = principal(labels_expected) if labels_ok and labels_expected else principal(expected)
    session = Session.new(
        principal=principal(expected),
        author=author,
        can_label=labels_ok,
        hours=settings.console_session_hours,
    )
    response = RedirectResponse(target, status_code=303)
    _set_cookie(
        response,
        request,
        sign(session, session_secret(settings)),
        max_age=int(settings.console_session_hours * 3600),
    )
    return response


@router.post("/logout")
async def logout(request: Request, session: SessionDep) -> Response:
    form = await _form(request)
    if not csrf_ok(session, form.get("csrf")) or not _same_origin(request):
        return Response("invalid CSRF token", status_code=403, media_type="text/plain")
    response = RedirectResponse("/console/login", status_code=303)
    response.delete_cookie(COOKIE, path="/console", httponly=True, secure=_https(request), samesite="strict")
    return response


# -- the alert queue --------------------------------------------------------------------------


def _queue(
    request: Request, activity: Any, ledger: Any
) -> tuple[views.QueueFilter, views.Fetched[views.QueueView]]:
    flt = views.QueueFilter.parse(dict(request.query_params))

    def read() -> views.QueueView:
        alerts = activity.recent_alerts(QUEUE_FETCH)
        unique = views.unique_newest_first(alerts)
        candidates = [a for a in unique if flt.keeps(a)][:200]
        ids = [str(a["transaction_id"]) for a in candidates]
        labels = dict(zip(ids, ledger.latest(ids), strict=True))
        return views.queue_view(unique, labels, flt)

    return flt, snapshots.fetch(f"queue?{flt.query()}", read)


@router.get("")
async def queue_page(
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
    activity: ActivityDep,
    ledger: LabelLedgerDep,
) -> Response:
    return _render_queue(request, session, settings, activity, ledger, "console/queue.html")


@router.get("/queue")
async def queue_fragment(
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
    activity: ActivityDep,
    ledger: LabelLedgerDep,
) -> Response:
    """The queue alone: what the page's poll swaps in."""
    return _render_queue(request, session, settings, activity, ledger, "console/_queue.html")


def _render_queue(
    request: Request, session: Any, settings: Any, activity: Any, ledger: Any, template: str
) -> Response:
    flt, fetched = _queue(request, activity, ledger)
    return render(request, template, {"settings": settings, "flt": flt, "q": fetched}, session=session)


# -- a case -----------------------------------------------------------------------------------


@router.get("/case")
async def case_page(
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
    activity: ActivityDep,
    ledger: LabelLedgerDep,
    store: ResultStoreDep,
    tx: str = "",
    done: str = "",
) -> Response:
    return _case(request, session, settings, activity, ledger, store, tx, done=done)


def _case(
    request: Request,
    session: Session,
    settings: Settings,
    activity: Any,
    ledger: Any,
    store: Any,
    tx: str,
    *,
    done: str = "",
    error: str = "",
    status_code: int = 200,
) -> Response:
    context: dict[str, Any] = {"settings": settings, "tx": tx, "notice": "", "error": error}
    if id_error(tx) is not None:
        context["error"] = error or "not a transaction id"
        return render(request, "console/case.html", context, session=session, status_code=404)

    def read() -> dict[str, Any]:
        case = activity.alert(tx) or store.get_result(tx)
        label = ledger.latest([tx])[0]
        recent = activity.card_recent(str(case["card_id"]), 10) if case and case.get("card_id") else []
        return {"case": case, "label": label, "recent": recent}

    fetched = views.Snapshots(max_age_seconds=0).fetch("case", read)  # a case is never shown stale
    context["f"] = fetched
    if fetched.value is not None:
        context.update(fetched.value)
        for row in context["recent"]:
            row["case_query"] = urlencode({"tx": row["transaction_id"]})
        context["notice"] = _notice(done, context["label"])
    found = fetched.value is None or fetched.value["case"] is not None
    return render(
        request, "console/case.html", context, session=session, status_code=status_code if found else 404
    )


def _notice(done: str, label: dict[str, Any] | None) -> str:
    """What the redirect after a label post says, from the stored label itself (the query string
    only names which message: a crafted link cannot put words on the page)."""
    if done not in ("labelled", "already") or label is None:
        return ""
    verdict = "fraud" if label.get("is_fraud") else "legitimate"
    lead = "labelled" if done == "labelled" else "already labelled"
    return f"{lead} {verdict} by {label.get('author')} at {views.when(label.get('at'))} UTC"


@router.post("/label")
async def label(
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
    models: ProviderDep,
    activity: ActivityDep,
    store: ResultStoreDep,
    ledger: LabelLedgerDep,
    limiter: LabelLimiterDep,
    logs: LogsDep,
) -> Response:
    form = await _form(request)
    tx = form.get("tx", "")
    verdict = form.get("verdict", "")

    def refuse(message: str, code: int) -> Response:
        return _case(request, session, settings, activity, ledger, store, tx, error=message, status_code=code)

    if not csrf_ok(session, form.get("csrf")) or not _same_origin(request):
        return refuse("the form expired or did not come from this console: reload the page and retry", 403)
    if not session.can_label:
        return refuse("this session may not label: log in with the labels key too", 403)
    if verdict not in ("fraud", "legitimate") or id_error(tx) is not None:
        return refuse("choose confirm fraud or legitimate", 422)
    is_fraud = verdict == "fraud"
    try:
        current = ledger.latest([tx])[0]
        if current is not None and bool(current.get("is_fraud")) == is_fraud:
            # Idempotent: the same verdict again records nothing new.
            return RedirectResponse(
                "/console/case?" + urlencode({"tx": tx, "done": "already"}), status_code=303
            )
        wait = limiter.take(session.author, 1)
        if wait:
            return refuse(f"too many labels: retry in {wait:.0f} s", 429)
        scorer = models.get()
        outcome = accept_labels(
            [Label(tx, None, is_fraud, None)],
            author=session.author,
            scorer=scorer,
            online=get_online_state(scorer.shape),
            store=store,
            ledger=ledger,
            logs=logs,
        )
    except ModelUnavailableError as exc:
        return refuse(f"model unavailable: {exc}", 503)
    except StoreUnavailableError as exc:
        return refuse(f"label not stored, the store is unavailable: {exc}", 503)
    if outcome.errors:
        return refuse("; ".join(str(e["msg"]) for e in outcome.errors), 422)
    logger.info("console label", extra={"transaction_id": tx, "is_fraud": is_fraud, "author": session.author})
    return RedirectResponse("/console/case?" + urlencode({"tx": tx, "done": "labelled"}), status_code=303)


# -- the model panel --------------------------------------------------------------------------

_model_cache: dict[str, tuple[float, dict[str, Any]]] = {}


def _model_panel(models: Any, logs: Any) -> dict[str, Any]:
    cached = _model_cache.get("panel")
    if cached is not None and time.monotonic() - cached[0] < MODEL_PANEL_SECONDS:
        return cached[1]
    registry = models.registry
    panel: dict[str, Any] = {"registry": registry.store.uri, "status": models.status(), "problems": []}
    try:
        pointer = registry.pointer()
        panel["champion"] = (
            {"pointer": pointer, "manifest": registry.manifest(pointer.version)}
            if pointer is not None
            else None
        )
        challenger = registry.challenger()
        panel["challenger"] = (
            {"pointer": challenger, "manifest": registry.manifest(challenger.version)} if challenger else None
        )
        panel["history"] = list(reversed(registry.history(limit=20)))
    except Exception as exc:  # the registry's own errors vary by store; the panel says what failed
        panel["problems"].append(f"registry: {type(exc).__name__}: {exc}")
    panel["report"] = None
    if logs is None:
        panel["problems"].append("no scoring log configured (FRAUD_LOG_URI): no monitoring report")
    else:
        from fraud_core.monitoring.job import latest_report

        try:
            panel["report"] = latest_report(logs)
        except Exception as exc:
            panel["problems"].append(f"monitoring report: {type(exc).__name__}: {exc}")
    _model_cache["panel"] = (time.monotonic(), panel)
    return panel


@router.get("/model")
async def model_page(
    request: Request, session: SessionDep, settings: SettingsDep, models: ProviderDep, logs: LogsDep
) -> Response:
    panel = _model_panel(models, logs)
    report = panel["report"][1] if panel["report"] else None
    context = {
        "settings": settings,
        "p": panel,
        "report": report,
        "report_key": panel["report"][0] if panel["report"] else None,
        "drift": views.drift_rows(report) if report else [],
        "days": views.realised_days(report) if report else [],
        "headline": views.headline,
    }
    return render(request, "console/model.html", context, session=session)


# -- dead letters and the live panel ----------------------------------------------------------


@router.get("/dead-letters")
async def dead_letters_page(
    request: Request, session: SessionDep, settings: SettingsDep, activity: ActivityDep
) -> Response:
    fetched = snapshots.fetch("dead-letters", lambda: views.dead_letter_rows(activity.dead_letters(200)))
    return render(request, "console/dead_letters.html", {"settings": settings, "f": fetched}, session=session)


def _live(activity: Any) -> views.Fetched[views.LiveView]:
    return snapshots.fetch("live", lambda: views.live_view(activity.live(now=time.time(), minutes=60)))


@router.get("/live")
async def live_page(
    request: Request, session: SessionDep, settings: SettingsDep, activity: ActivityDep
) -> Response:
    return render(request, "console/live.html", {"settings": settings, "f": _live(activity)}, session=session)


@router.get("/live/charts")
async def live_fragment(
    request: Request, session: SessionDep, settings: SettingsDep, activity: ActivityDep
) -> Response:
    return render(
        request, "console/_live.html", {"settings": settings, "f": _live(activity)}, session=session
    )
