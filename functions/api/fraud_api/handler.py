"""Lambda entry point: Powertools logging/metrics/tracing around Mangum. Wiring only."""

from __future__ import annotations

import os
from collections.abc import Iterable
from typing import Any

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext
from mangum import Mangum

from fraud_api.main import create_app

logger = Logger()
metrics = Metrics(namespace=os.getenv("POWERTOOLS_METRICS_NAMESPACE", "FraudDetection"))
tracer = Tracer()


class PowertoolsObserver:
    """Requests, latency, decisions and degradations as CloudWatch EMF metrics."""

    def request(self, *, route: str, status: int, latency_ms: float) -> None:
        metrics.add_metric(name="Requests", unit=MetricUnit.Count, value=1)
        metrics.add_metric(name=f"Status{status // 100}xx", unit=MetricUnit.Count, value=1)
        metrics.add_metric(name="LatencyMs", unit=MetricUnit.Milliseconds, value=latency_ms)
        logger.info("request", route=route, status=status, latency_ms=round(latency_ms, 3))

    def decisions(self, decisions: Iterable[str]) -> None:
        for d in decisions:
            metrics.add_metric(name=f"Decision_{d}", unit=MetricUnit.Count, value=1)

    def degraded(self, reason: str) -> None:
        metrics.add_metric(name="Degraded", unit=MetricUnit.Count, value=1)
        logger.warning("degraded", reason=reason)


app = create_app(observer=PowertoolsObserver())
asgi_handler = Mangum(app, lifespan="off")


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_HTTP)
@tracer.capture_lambda_handler
@metrics.log_metrics(capture_cold_start_metric=True)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    # Powertools' and Mangum's LambdaContext types describe the same runtime object.
    return dict(asgi_handler(event, context))  # type: ignore[arg-type]
