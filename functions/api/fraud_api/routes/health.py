"""Liveness and readiness (open even when an API key is configured)."""

from __future__ import annotations

import hmac
from typing import Annotated

from fastapi import APIRouter, Header
from fastapi.responses import JSONResponse

from fraud_api.deps import ProviderDep, ResultStoreDep, SettingsDep, auth_on, fetch_api_key
from fraud_api.schemas import Health, Readiness
from fraud_core.errors import ModelUnavailableError, StoreUnavailableError
from fraud_core.settings import Settings

router = APIRouter(tags=["health"])


@router.get("/health", response_model=Health, summary="Liveness: the process answers")
async def health() -> Health:
    return Health(status="ok")


@router.get(
    "/ready",
    response_model=Readiness,
    summary="Readiness: model loaded; online store reachable when configured",
    responses={503: {"model": Readiness, "description": "Not ready; the body says what is missing"}},
)
def ready(
    models: ProviderDep,
    store: ResultStoreDep,
    settings: SettingsDep,
    x_api_key: Annotated[str | None, Header(include_in_schema=False)] = None,
) -> JSONResponse:
    model: dict[str, object]
    try:
        scorer = models.get()
        model = {"ready": True, "version": scorer.version}
    except ModelUnavailableError as exc:
        model = {"ready": False, "error": str(exc)}
    status = models.status()
    if status.last_error and model["ready"]:
        # Serving the last good model, but the newest promotion could not be loaded.
        model["warning"] = f"serving {status.version}; newer model refused: {status.last_error}"
    model["registry"] = status.registry
    if status.challenger or status.challenger_error:
        model["challenger"] = status.challenger
        if status.challenger_error:
            model["challenger_error"] = f"not scored in shadow: {status.challenger_error}"
    configured = settings.redis_url is not None or settings.redis_url_secret_arn is not None
    store_state: dict[str, object] = {"configured": configured}
    try:
        store.ping()
        store_state["ready"] = True
    except StoreUnavailableError as exc:
        store_state.update(ready=False, error=str(exc))
    ok = bool(model["ready"]) and bool(store_state["ready"])
    code = 200 if ok else 503
    if auth_on(settings) and not _authenticated(settings, x_api_key):
        # Anonymous callers (a load balancer, a scanner) learn ready or not; the registry URI
        # and the stores' error texts are for the API's own clients.
        return JSONResponse({"ready": ok}, status_code=code)
    return JSONResponse(Readiness(ready=ok, model=model, store=store_state).model_dump(), status_code=code)


def _authenticated(settings: Settings, x_api_key: str | None) -> bool:
    expected = fetch_api_key(settings)
    return bool(expected and x_api_key and hmac.compare_digest(x_api_key.encode(), expected.encode()))
