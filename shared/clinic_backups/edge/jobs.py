"""Internal job events: SQS batches (partial-batch failures) and direct invocations.

Job messages carry no token: `{"kind": "backup", "schema", "backup_id", "trigger"}`, and the
restore queue's `{"kind": "restore" | "verify" | "undo", "schema", "restore_id"}` and
`{"kind": "verify_light" | "reencrypt" | "replicate", "schema", "backup_id"}` (`models.Job`,
told apart by `kind`). They
are accepted only from non-HTTP sources (an HTTP event never gets here: see `api.is_http_event`), and the
worker re-checks the schema against the tenants table before anything runs.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from aws_lambda_powertools.utilities.batch import (
    BatchProcessor,
    EventType,
    process_partial_response,
)
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
from pydantic import TypeAdapter, ValidationError

from clinic_backups.domain.models import Job
from clinic_backups.observability import logger

_JOBS: TypeAdapter[Job] = TypeAdapter(Job)


class JobCrashed(Exception):
    """A job raised something that is not an `Exception` (a native library's panic: pyo3's
    PanicException is a BaseException). Re-raised as this, so the batch processor fails that
    one message (SQS retries it, then dead-letters it) instead of the whole invocation."""


class InvalidJob(Exception):
    """A message that is not a valid job. It fails, so SQS retries it and then moves it to
    the dead-letter queue (whose alarm tells the operator)."""


def parse_job(raw: str | dict[str, Any]) -> Job:
    try:
        if isinstance(raw, str):
            return _JOBS.validate_json(raw)
        return _JOBS.validate_python(raw)
    except ValidationError:
        raise InvalidJob("not a valid job message") from None


def is_sqs_event(event: Any) -> bool:
    records = event.get("Records") if isinstance(event, dict) else None
    return (
        isinstance(records, list)
        and bool(records)
        and all(isinstance(r, dict) and r.get("eventSource") == "aws:sqs" for r in records)
    )


def handle_job_event(
    event: dict[str, Any], context: Any, run: Callable[[Job], Any]
) -> dict[str, Any]:
    if is_sqs_event(event):

        def record_handler(record: SQSRecord) -> None:
            logger.append_keys(message_id=record.message_id)
            job = parse_job(record.body)
            try:
                run(job)
            except (Exception, KeyboardInterrupt, SystemExit):
                raise
            except BaseException as error:
                raise JobCrashed(type(error).__name__) from error

        return process_partial_response(  # type: ignore[return-value]
            event=event,
            record_handler=record_handler,
            processor=BatchProcessor(event_type=EventType.SQS, raise_on_entire_batch_failure=False),
            context=context,
        )
    if isinstance(event, dict) and "kind" in event:
        job = parse_job(event)
        result = run(job)
        status = getattr(getattr(result, "status", None), "value", None)
        ids = {k: v for k, v in job.to_message().items() if k.endswith("_id")}
        return {**ids, "status": status or "skipped"}
    logger.error("unrecognised event; ignored")
    raise InvalidJob("unrecognised event")
