"""The Lambda handler (Powertools + Mangum) invoked with the API Gateway events of `events/`."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest

from tests.conftest import TrainedModel
from tests.events import EVENTS, lambda_context, load_event, with_headers, with_json_body


def invoke(event: dict[str, Any]) -> dict[str, Any]:
    from fraud_api.handler import lambda_handler

    return lambda_handler(event, lambda_context())


def body_of(response: dict[str, Any]) -> Any:
    raw = response["body"]
    if response.get("isBase64Encoded"):
        raw = base64.b64decode(raw).decode()
    return json.loads(raw)


@pytest.mark.parametrize(
    "event_file",
    ["apigw-v2-predict.json", "apigw-v1-predict.json", "apigw-v2-predict-base64-no-content-type.json"],
)
def test_classic_payload_scores_through_mangum(service_env: TrainedModel, event_file: str) -> None:
    response = invoke(load_event(event_file))
    assert response["statusCode"] == 200, response
    body = body_of(response)
    assert 0.0 <= body["fraud_score"] <= 1.0
    assert body["model_version"] == service_env.result.manifest.version


def test_score_event_and_health(service_env: TrainedModel) -> None:
    scored = body_of(invoke(load_event("apigw-v2-score.json")))
    assert scored["transaction_id"] == "t_0"
    assert invoke(load_event("apigw-v2-health.json"))["statusCode"] == 200
    assert body_of(invoke(load_event("apigw-v2-ready.json")))["ready"] is True


def test_bad_body_through_mangum_is_422(service_env: TrainedModel) -> None:
    response = invoke(with_json_body(load_event("apigw-v2-predict.json"), {"V1": "x"}, base64_encode=True))
    assert response["statusCode"] == 422
    assert "V1" in response["body"] or "V1" in json.dumps(body_of(response))


def test_api_key_through_mangum(service_env: TrainedModel, monkeypatch: pytest.MonkeyPatch) -> None:
    from tests.conftest import clear_caches

    monkeypatch.setenv("FRAUD_API_KEY", "k-123")
    clear_caches()
    event = load_event("apigw-v2-predict.json")
    assert invoke(event)["statusCode"] == 401
    assert invoke(with_headers(event, x_api_key="k-123"))["statusCode"] == 200


def test_handler_emits_emf_metrics_and_correlation_id(
    service_env: TrainedModel, capsys: pytest.CaptureFixture[str]
) -> None:
    invoke(load_event("apigw-v2-predict.json"))
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith("{")]
    emf = [line for line in lines if "_aws" in line]
    assert emf, "expected an EMF metrics document"
    names = {m["Name"] for m in emf[-1]["_aws"]["CloudWatchMetrics"][0]["Metrics"]}
    assert {"Requests", "Status2xx", "LatencyMs"} <= names
    assert any(name.startswith("Decision_") for name in names)
    from fraud_api.handler import logger

    assert logger.get_correlation_id() == "JKJaXmPLvHcESHA="


def test_request_bodies_for_curl_are_the_events_bodies() -> None:
    # The README's curl examples send events/requests/*.json; the Lambda events carry the same bodies.
    requests = EVENTS / "requests"
    assert json.loads((requests / "predict.json").read_text()) == json.loads(
        load_event("apigw-v2-predict.json")["body"]
    )
    assert json.loads((requests / "score.json").read_text()) == json.loads(
        load_event("apigw-v2-score.json")["body"]
    )
    batch = json.loads((requests / "score-batch.json").read_text())
    assert batch["transactions"][0] == json.loads((requests / "score.json").read_text())


def test_console_through_mangum_logs_in_and_labels(
    service_env: TrainedModel, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The console's pages and form posts through API Gateway events (HTTPS: a Secure cookie)."""
    import copy
    from urllib.parse import urlencode

    from tests.conftest import clear_caches

    monkeypatch.setenv("FRAUD_API_KEY", "k-123")
    monkeypatch.setenv("FRAUD_LABELS_API_KEY", "l-456")
    clear_caches()
    base = load_event("apigw-v2-health.json")

    def request(
        method: str, path: str, *, query: str = "", form: dict[str, str] | None = None, cookie: str = ""
    ) -> dict[str, Any]:
        event = copy.deepcopy(base)
        event["routeKey"] = event["requestContext"]["routeKey"] = f"{method} {path}"
        event["rawPath"] = event["requestContext"]["http"]["path"] = path
        event["requestContext"]["http"]["method"] = method
        event["rawQueryString"] = query
        event["headers"]["accept"] = "text/html"
        if cookie:
            event["cookies"] = [cookie]
        if form is not None:
            event["headers"]["content-type"] = "application/x-www-form-urlencoded"
            event["headers"]["origin"] = "https://" + event["headers"]["host"]
            event["body"] = base64.b64encode(urlencode(form).encode()).decode()
            event["isBase64Encoded"] = True
        return invoke(event)

    first = request("GET", "/console")
    assert first["statusCode"] == 303 and first["headers"]["location"].startswith("/console/login")
    login = request("POST", "/console/login", form={"api_key": "k-123", "labels_key": "l-456"})
    assert login["statusCode"] == 303
    (cookie,) = [c for c in login["cookies"] if c.startswith("fraud_console=")]
    assert "Secure" in cookie and "HttpOnly" in cookie and "SameSite=strict" in cookie
    page = request("GET", "/console", cookie=cookie.split(";")[0])
    assert page["statusCode"] == 200 and page["headers"]["content-type"].startswith("text/html")
    assert "Alert queue" in page["body"]
    assert "script-src 'self';" in page["headers"]["content-security-policy"]
    case = request("GET", "/console/case", query="tx=t%3A1%2Fx", cookie=cookie.split(";")[0])
    assert case["statusCode"] == 404 and "t:1/x" in case["body"], "an unknown case says so, escaped"
