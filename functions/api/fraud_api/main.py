"""Build the FastAPI app. No model or client is created here: they come from cached factories."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles

from fraud_api.deps import check_api_key_configured, require_api_key
from fraud_api.middleware import BodyGuard, SecurityHeaders, Timing
from fraud_api.observer import LoggingObserver, Observer
from fraud_api.routes import console, health, labels, model, predict, scoring, transactions
from fraud_core.errors import InvalidTransactionError, ModelUnavailableError
from fraud_core.settings import get_settings
from fraud_core.shapes import SHAPES

logger = logging.getLogger(__name__)

STATIC = Path(__file__).parent / "static"


def _safe_error(error: Any) -> dict[str, Any]:
    out = {k: error[k] for k in ("type", "loc", "msg") if k in error}
    for key in ("input", "ctx"):
        if key in error:
            try:
                json.dumps(error[key], allow_nan=False)
            except (TypeError, ValueError):
                out[key] = repr(error[key])[:200]
            else:
                out[key] = error[key]
    return out


def _document_request_bodies(app: FastAPI, *, max_batch: int) -> None:
    """Describe the `/v1/score*` bodies in OpenAPI as any data shape's request model (the routes
    validate by hand against the current model's shape), with the batch limit actually enforced."""
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema:
            return app.openapi_schema
        schema = generate()
        components = schema.setdefault("components", {}).setdefault("schemas", {})
        refs = []
        for shape in SHAPES.values():
            model = shape.request_model
            body = model.model_json_schema(ref_template="#/components/schemas/{model}")
            components.update(body.pop("$defs", {}))
            components[model.__name__] = body
            refs.append({"$ref": f"#/components/schemas/{model.__name__}"})
        one = {"oneOf": refs}
        batch = {
            "type": "object",
            "additionalProperties": False,
            "required": ["transactions"],
            "properties": {
                "transactions": {"type": "array", "minItems": 1, "maxItems": max_batch, "items": one}
            },
        }
        for path, body_schema in (("/v1/score", one), ("/v1/score/batch", batch)):
            schema["paths"][path]["post"]["requestBody"] = {
                "required": True,
                "content": {"application/json": {"schema": body_schema}},
            }
        return schema

    app.openapi = openapi  # type: ignore[method-assign]


def create_app(*, observer: Observer | None = None, max_body_bytes: int | None = None) -> FastAPI:
    settings = get_settings()
    check_api_key_configured(settings)
    app = FastAPI(
        title="Card fraud scoring API",
        version="1.0.0",
        description="Real-time fraud scores for card transactions: the classic `/predict` contract and `/v1` API.",
        redoc_url=None,
        docs_url=None,  # served below from vendored assets: nothing from a CDN at run time
    )
    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    @app.get("/docs", include_in_schema=False)
    async def docs() -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url="/openapi.json",
            title="Card fraud scoring API",
            swagger_js_url="/static/swagger-ui/swagger-ui-bundle.js",
            swagger_css_url="/static/swagger-ui/swagger-ui.css",
            swagger_favicon_url="/static/swagger-ui/favicon-32x32.png",
        )

    app.state.observer = observer or LoggingObserver()
    protected = [Depends(require_api_key)]
    app.include_router(health.router)
    for router in (predict.router, scoring.router, transactions.router, model.router):
        app.include_router(router, dependencies=protected)
    app.include_router(labels.router)  # its own key (deps.require_labels_key) and rate limit
    app.include_router(console.router)  # its own login (a signed session cookie) when a key is set

    @app.exception_handler(console.LoginRequired)
    async def login_required(request: Request, exc: console.LoginRequired) -> Response:
        target = "/console/login?" + urlencode({"next": exc.target})
        if request.headers.get("hx-request"):
            # A polled fragment after the session expired: htmx loads the login page itself.
            return Response(status_code=200, headers={"HX-Redirect": target})
        return RedirectResponse(target, status_code=303)

    @app.exception_handler(RequestValidationError)
    async def request_invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        # FastAPI echoes the offending input back; NaN/Infinity (accepted by Python's JSON parser)
        # would then crash the JSON encoder and turn a 422 into a 500.
        return JSONResponse({"detail": [_safe_error(e) for e in exc.errors()]}, status_code=422)

    @app.exception_handler(InvalidTransactionError)
    async def invalid_transaction(_: Request, exc: InvalidTransactionError) -> JSONResponse:
        # The schemas catch nearly everything; this is the core's second line of defence.
        detail = [{"loc": ["body", e.field], "msg": e.message, "type": "value_error"} for e in exc.errors]
        return JSONResponse({"detail": detail}, status_code=422)

    @app.exception_handler(ModelUnavailableError)
    async def model_unavailable(_: Request, exc: ModelUnavailableError) -> JSONResponse:
        return JSONResponse({"detail": f"model unavailable: {exc}"}, status_code=503)

    _document_request_bodies(app, max_batch=settings.api_max_batch)
    limit = max_body_bytes if max_body_bytes is not None else settings.api_max_body_bytes
    app.add_middleware(BodyGuard, max_bytes=limit)
    app.add_middleware(SecurityHeaders)
    app.add_middleware(Timing, state=app.state)
    return app


app = create_app()
