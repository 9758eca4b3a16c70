"""Lambda entry point of the scheduled monitor (EventBridge). Wiring only: the job is
``fraud_core.monitoring.job``; the same code runs as ``python -m fraud_training.monitor run``."""

from __future__ import annotations

import os
from typing import Any

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext

from fraud_core.event_log import Logs
from fraud_core.monitoring.job import (
    MonitorConfig,
    NothingToMonitorError,
    emf_values,
    run_monitor,
    write_report,
)
from fraud_core.registry import open_registry
from fraud_core.settings import get_settings

logger = Logger()
metrics = Metrics(namespace=os.getenv("POWERTOOLS_METRICS_NAMESPACE", "FraudDetection"))

_COUNTS = {"ScoredTransactions", "AlertsPerDay", "LogProblems"}


@logger.inject_lambda_context
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    s = get_settings()
    if not s.log_uri:
        raise RuntimeError("FRAUD_LOG_URI is not set: there is no scoring log to monitor")
    logs = Logs.at(s.log_uri)
    _, manifest = open_registry(s.registry_uri, s.model_name).current_manifest()
    config = MonitorConfig(
        window_hours=s.monitor_window_hours, label_delay_days=s.label_delay_days, alpha=s.monitor_alpha
    )
    metrics.add_dimension(name="ModelName", value=manifest.name)
    try:
        report = run_monitor(logs, manifest, config)
    except NothingToMonitorError as exc:
        # an idle hour, or a model promoted since the last traffic: nothing to test, not a failure
        metrics.add_metric(name="ScoredTransactions", unit=MetricUnit.Count, value=0)
        logger.info("nothing to monitor", reason=str(exc), model_version=manifest.version)
        return {"report": None, "alarms": [], "model_version": manifest.version}
    key = write_report(logs, report)
    for name, value in emf_values(report).items():
        unit = MetricUnit.Count if name in _COUNTS or name == "DriftDetected" else MetricUnit.NoUnit
        metrics.add_metric(name=name, unit=unit, value=value)
    for alarm in report["alarms"]:
        logger.warning("monitor alarm", alarm=alarm, model_version=manifest.version)
    logger.info("monitor report", key=key, alarms=len(report["alarms"]), as_of=report.get("as_of"))
    return {"report": key, "alarms": report["alarms"], "model_version": manifest.version}
