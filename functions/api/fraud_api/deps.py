"""Composition root of the HTTP function: adapters built once from settings, and the routes'
dependencies as `Annotated` aliases (tests replace them with `app.dependency_overrides`).

The dependencies are `async def` on purpose: FastAPI runs a plain `def` dependency in a worker
thread, and those hops cost more than scoring itself. None of them blocks, except the model
refresh (at most once per `FRAUD_MODEL_REFRESH_SECONDS`) and an API-key or secret lookup (at
most once per `FRAUD_PARAMETERS_MAX_AGE_SECONDS`).
"""

from __future__ import annotations

import hashlib
import hmac
import logging
from functools import cache
from typing import TYPE_CHECKING, Annotated, Any

from fastapi import Depends, Header, HTTPException, Request, status
from pydantic import SecretStr

from fraud_api.limits import RateLimiter
from fraud_api.observer import LoggingObserver, Observer
from fraud_core.errors import ModelUnavailableError
from fraud_core.event_log import Logs
from fraud_core.online.activity import InMemoryActivity, RedisActivity, activity_log
from fraud_core.online.client import connect
from fraud_core.online.labels import InMemoryLabelLedger, LabelLedger, RedisLabelLedger
from fraud_core.online.results import InMemoryResultStore, RedisResultStore, ResultStore
from fraud_core.provider import ModelProvider
from fraud_core.registry import open_registry
from fraud_core.scorer import Scorer
from fraud_core.settings import Settings, get_settings
from fraud_core.shapes import DataShape

if TYPE_CHECKING:
    from redis import Redis

logger = logging.getLogger(__name__)


# -- adapters, built once per process ---------------------------------------------------------


@cache
def get_redis() -> Redis | None:
    """The one Redis client of the process (None: embedded mode)."""
    s = get_settings()
    url = s.redis_url.get_secret_value() if s.redis_url else None
    return connect(
        url,
        secret_name=s.redis_url_secret_arn,
        timeout_seconds=s.redis_timeout_seconds,
        max_age_seconds=s.parameters_max_age_seconds,
    )


@cache
def get_model_provider() -> ModelProvider:
    s = get_settings()
    registry = open_registry(s.registry_uri, s.model_name)
    return ModelProvider(
        registry, refresh_seconds=s.model_refresh_seconds, threads=s.onnx_threads, top_k=s.explain_top_k
    )


@cache
def get_result_store() -> ResultStore:
    client = get_redis()
    if client is None:
        logger.info("no FRAUD_REDIS_URL configured, using an in-process store (results are not shared)")
        return InMemoryResultStore(result_ttl_seconds=get_settings().result_ttl_seconds)
    return RedisResultStore(client)


@cache
def get_online_state(shape: DataShape) -> Any:
    """The online state the data shape's features need, on the process's Redis client."""
    return shape.online_state(get_redis(), ttl_seconds=get_settings().online_ttl_seconds)


def _fetch_key(direct: SecretStr | None, parameter: str | None, *, max_age: float) -> str | None:
    """A key given directly, or read through Powertools Parameters (cached ``max_age`` seconds,
    so a rotated key is picked up without a redeploy)."""
    if direct is not None:
        return direct.get_secret_value()
    if not parameter:
        return None
    from aws_lambda_powertools.utilities import parameters

    if parameter.startswith("arn:aws:secretsmanager:"):
        value = parameters.get_secret(parameter, max_age=int(max_age))
    else:
        value = parameters.get_parameter(parameter, decrypt=True, max_age=int(max_age))
    return str(value).strip()


def fetch_api_key(settings: Settings) -> str | None:
    """The configured API key (None: no API-key auth)."""
    return _fetch_key(
        settings.api_key, settings.api_key_ssm_parameter, max_age=settings.parameters_max_age_seconds
    )


def fetch_labels_key(settings: Settings) -> str | None:
    """The key that opens `POST /v1/labels` when API-key auth is on."""
    return _fetch_key(
        settings.labels_api_key,
        settings.labels_api_key_ssm_parameter,
        max_age=settings.parameters_max_age_seconds,
    )


def auth_on(settings: Settings) -> bool:
    return settings.api_key is not None or bool(settings.api_key_ssm_parameter)


def principal(key: str) -> str:
    """Who sent a request, as logged: the fingerprint of the key it authenticated with."""
    return "key:" + hashlib.sha256(key.encode()).hexdigest()[:12]


def check_api_key_configured(settings: Settings) -> None:
    """Fail closed at start-up: a configured but empty key must never mean "no authentication"."""
    if settings.api_key_ssm_parameter and settings.api_key is None and not fetch_api_key(settings):
        raise RuntimeError(
            f"API key parameter {settings.api_key_ssm_parameter!r} is empty; refusing to start"
        )


@cache
def get_label_ledger() -> LabelLedger:
    client = get_redis()
    if client is None:
        return InMemoryLabelLedger()
    s = get_settings()
    return RedisLabelLedger(client, max_len=s.label_log_max_len, ttl_seconds=s.result_ttl_seconds)


@cache
def get_activity() -> RedisActivity | InMemoryActivity:
    """The console's window (recent alerts, dead letters, live counts); `/v1/score*` writes to it too."""
    return activity_log(get_redis(), get_settings())


@cache
def get_logs() -> Logs | None:
    """The scoring and label logs (the monitor's and retraining's input); None when disabled."""
    uri = get_settings().log_uri
    return Logs.at(uri) if uri else None


@cache
def get_label_limiter() -> RateLimiter:
    return RateLimiter(per_minute=get_settings().labels_per_minute)


FACTORIES = (
    get_settings,
    get_redis,
    get_model_provider,
    get_result_store,
    get_online_state,
    get_label_ledger,
    get_label_limiter,
    get_logs,
    get_activity,
)
"""Every cached factory of this function (tests reset them between configurations)."""


# -- dependencies of the routes ---------------------------------------------------------------


async def provider() -> ModelProvider:
    return get_model_provider()


ProviderDep = Annotated[ModelProvider, Depends(provider)]


async def scorer(models: ProviderDep) -> Scorer:
    try:
        return models.get()
    except ModelUnavailableError as exc:
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, detail=f"model unavailable: {exc}") from exc


ScorerDep = Annotated[Scorer, Depends(scorer)]


async def settings() -> Settings:
    return get_settings()


SettingsDep = Annotated[Settings, Depends(settings)]


async def result_store() -> ResultStore:
    return get_result_store()


ResultStoreDep = Annotated[ResultStore, Depends(result_store)]


async def online_state(model: ScorerDep) -> Any:
    """The online state of the current model's data shape (None for a shape that keeps none)."""
    return get_online_state(model.shape)


OnlineStateDep = Annotated[Any, Depends(online_state)]


async def observer(request: Request) -> Observer:
    found: Observer | None = getattr(request.app.state, "observer", None)
    return found if found is not None else LoggingObserver()


ObserverDep = Annotated[Observer, Depends(observer)]


async def label_ledger() -> LabelLedger:
    return get_label_ledger()


LabelLedgerDep = Annotated[LabelLedger, Depends(label_ledger)]


async def logs() -> Logs | None:
    return get_logs()


LogsDep = Annotated[Logs | None, Depends(logs)]


async def activity() -> RedisActivity | InMemoryActivity:
    return get_activity()


ActivityDep = Annotated[RedisActivity | InMemoryActivity, Depends(activity)]


async def label_limiter() -> RateLimiter:
    return get_label_limiter()


LabelLimiterDep = Annotated[RateLimiter, Depends(label_limiter)]


async def require_labels_key(
    request: Request,
    settings: SettingsDep,
    x_api_key: Annotated[str | None, Header(include_in_schema=False)] = None,
) -> str:
    """The labels route's principal. With API-key auth on, only the separate labels key opens it
    (labels steer a model's terminal risk: posting them is its own permission)."""
    if not auth_on(settings):
        return f"anonymous:{request.client.host if request.client else 'unknown'}"
    expected = fetch_labels_key(settings)
    if not expected:
        raise HTTPException(
            status.HTTP_403_FORBIDDEN,
            detail="labels need their own key: configure FRAUD_LABELS_API_KEY or FRAUD_LABELS_API_KEY_SSM_PARAMETER",
        )
    if x_api_key is None or not hmac.compare_digest(x_api_key.encode(), expected.encode()):
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED,
            detail="missing or invalid x-api-key header (POST /v1/labels takes the labels key)",
            headers={"WWW-Authenticate": "ApiKey"},
        )
    return principal(expected)


LabelsPrincipalDep = Annotated[str, Depends(require_labels_key)]


async def require_api_key(
    settings: SettingsDep,
    x_api_key: Annotated[str | None, Header(include_in_schema=False)] = None,
) -> None:
    """401 unless `x-api-key` matches the configured key (no key configured = open API)."""
    if settings.api_key is None and not settings.api_key_ssm_parameter:
        return
    expected = fetch_api_key(settings)
    if not expected:
        # Rotated to an empty value after start-up: stay closed.
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, detail="API key is misconfigured")
    if x_api_key is None or not hmac.compare_digest(x_api_key.encode(), expected.encode()):
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED,
            detail="missing or invalid x-api-key header",
            headers={"WWW-Authenticate": "ApiKey"},
        )
