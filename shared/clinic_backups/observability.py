"""Logging, metrics and tracing: one place, one decorator stack for every handler.

- Logger (powertools): JSON lines with the clinic schema, request id and backup id as keys.
  Events and responses are never logged (they carry tokens and signed URLs).
- Metrics (powertools EMF, namespace `ClinicBackups`): BackupCreated, BackupSucceeded,
  BackupFailed, BackupBytes, BackupSeconds, the replica's BackupReplicated, ReplicaRead,
  ReplicaCopyRefused and ReplicaLagging (its alarm), and the others. The clinic is metadata,
  not a dimension, so the metric count does not grow with the number of clinics.
- Tracer: creating powertools' `Tracer()` costs ~200 ms (it loads aws-xray-sdk even when
  tracing is off), so it is created on first use and only when `TRACING_ENABLED=true`.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from functools import wraps
from typing import Any

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import MetricUnit

SERVICE = "clinic-backups"

logger = Logger(service=os.environ.get("POWERTOOLS_SERVICE_NAME", SERVICE))
metrics = Metrics(namespace=os.environ.get("POWERTOOLS_METRICS_NAMESPACE", "ClinicBackups"))

# Libraries that log request URLs at INFO (httpx logs every storage3 call): keep them quiet so
# no signed URL or query string can reach a log line.
for _name in ("httpx", "httpcore", "botocore", "boto3", "s3transfer", "urllib3", "storage3"):
    logging.getLogger(_name).setLevel(logging.WARNING)

_tracer: Any = None


def _tracing_enabled() -> bool:
    return os.environ.get("TRACING_ENABLED", "false").lower() == "true"


def get_tracer() -> Any:
    global _tracer
    if _tracer is None:
        from aws_lambda_powertools import Tracer

        _tracer = Tracer(service=SERVICE)
    return _tracer


class PowertoolsMetrics:
    """The `Metrics` port over powertools EMF metrics."""

    def add(self, name: str, value: float, unit: str) -> None:
        metrics.add_metric(name=name, unit=MetricUnit(unit), value=value)


def instrument(
    handler: Callable[[dict[str, Any], Any], Any],
) -> Callable[[dict[str, Any], Any], Any]:
    """The decorator stack every `lambda_handler` gets."""
    logged = logger.inject_lambda_context(log_event=False, clear_state=True)(handler)
    measured = metrics.log_metrics(logged)

    @wraps(handler)
    def wrapper(event: dict[str, Any], context: Any) -> Any:
        if _tracing_enabled():
            return get_tracer().capture_lambda_handler(measured, capture_response=False)(
                event, context
            )
        return measured(event, context)

    return wrapper
