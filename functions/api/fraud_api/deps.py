"""Dependencies of the routes, as `Annotated` aliases. Tests replace them with `app.dependency_overrides`.

They are `async def` on purpose: FastAPI runs a plain `def` dependency in a worker thread, and
those hops cost more than scoring itself. None of them blocks, except the model refresh (at most
once per `FRAUD_MODEL_REFRESH_SECONDS`) and the one-off API-key lookup.
"""

from __future__ import annotations

import hmac
import logging
from functools import cache
from typing import Annotated

from fastapi import Depends, Header, HTTPException, Request, status

from fraud_api.observer import LoggingObserver, Observer
from fraud_core.entity_online import EntityState, get_entity_state
from fraud_core.errors import ModelUnavailableError
from fraud_core.provider import ModelProvider, get_model_provider
from fraud_core.scorer import Scorer
from fraud_core.settings import Settings, get_settings
from fraud_core.stores import OnlineStore, get_online_store

logger = logging.getLogger(__name__)


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


async def online_store() -> OnlineStore:
    return get_online_store()


StoreDep = Annotated[OnlineStore, Depends(online_store)]


async def entity_state() -> EntityState:
    return get_entity_state()


EntityStateDep = Annotated[EntityState, Depends(entity_state)]


async def observer(request: Request) -> Observer:
    found: Observer | None = getattr(request.app.state, "observer", None)
    return found if found is not None else LoggingObserver()


ObserverDep = Annotated[Observer, Depends(observer)]


@cache
def _resolve_api_key(direct: str | None, parameter: str | None) -> str | None:
    """The configured key: given directly, or read once from SSM / Secrets Manager."""
    if direct:
        return direct
    if not parameter:
        return None
    import boto3

    if parameter.startswith("arn:aws:secretsmanager:"):
        return str(boto3.client("secretsmanager").get_secret_value(SecretId=parameter)["SecretString"])
    value = boto3.client("ssm").get_parameter(Name=parameter, WithDecryption=True)["Parameter"]["Value"]
    return str(value)


async def require_api_key(
    settings: SettingsDep,
    x_api_key: Annotated[str | None, Header(include_in_schema=False)] = None,
) -> None:
    """401 unless `x-api-key` matches the configured key (no key configured = open API)."""
    direct = settings.api_key.get_secret_value() if settings.api_key else None
    expected = _resolve_api_key(direct, settings.api_key_ssm_parameter)
    if expected is None:
        return
    if x_api_key is None or not hmac.compare_digest(x_api_key.encode(), expected.encode()):
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED,
            detail="missing or invalid x-api-key header",
            headers={"WWW-Authenticate": "ApiKey"},
        )
