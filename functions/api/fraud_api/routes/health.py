"""Liveness and readiness (open even when an API key is configured)."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from fraud_api.deps import ProviderDep, ResultStoreDep, SettingsDep
from fraud_api.schemas import Health, Readiness
from fraud_core.errors import ModelUnavailableError, StoreUnavailableError

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
def ready(models: ProviderDep, store: ResultStoreDep, settings: SettingsDep) -> JSONResponse:
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
    configured = settings.redis_url is not None or settings.redis_url_secret_arn is not None
    store_state: dict[str, object] = {"configured": configured}
    try:
        store.ping()
        store_state["ready"] = True
    except StoreUnavailableError as exc:
        store_state.update(ready=False, error=str(exc))
    ok = bool(model["ready"]) and bool(store_state["ready"])
    body = Readiness(ready=ok, model=model, store=store_state)
    return JSONResponse(body.model_dump(), status_code=200 if ok else 503)
