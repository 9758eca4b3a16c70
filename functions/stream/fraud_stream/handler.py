"""Lambda entry point for Kafka event-source mappings (MSK and self-managed). Wiring only."""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import TYPE_CHECKING

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext

from fraud_core.stream.ports import BatchReport
from fraud_stream.wiring import get_processor

if TYPE_CHECKING:
    from aws_lambda_powertools.utilities.batch.types import PartialItemFailureResponse

logger = Logger()
metrics = Metrics(namespace=os.getenv("POWERTOOLS_METRICS_NAMESPACE", "FraudDetection"))

report_listeners: list[Callable[[BatchReport], None]] = []
"""Called with every batch report (the local runner prints results through this)."""


@logger.inject_lambda_context
@metrics.log_metrics(capture_cold_start_metric=True)
def lambda_handler(event: dict[str, object], context: LambdaContext) -> PartialItemFailureResponse:
    report = get_processor().process(event)
    for name, value in (
        ("Received", report.received),
        ("Scored", report.scored),
        ("Duplicates", report.duplicates),
        ("DeadLettered", report.dead_lettered),
        ("Alerts", report.alerts),
        ("Labels", report.labels),
        ("FailedRecords", len(report.failures)),
    ):
        metrics.add_metric(name=name, unit=MetricUnit.Count, value=value)
    if report.error:
        logger.warning(
            "batch not confirmed, reporting for redelivery", error=report.error, failed=len(report.failures)
        )
    logger.info(
        "batch",
        received=report.received,
        scored=report.scored,
        duplicates=report.duplicates,
        dead_lettered=report.dead_lettered,
        alerts=report.alerts,
        labels=report.labels,
    )
    for listener in report_listeners:
        listener(report)
    return report.response()
