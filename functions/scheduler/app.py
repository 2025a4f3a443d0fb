"""scheduler: the hourly EventBridge run. Decides every active clinic's due backup slots,
enqueues their jobs on the backup queue, then runs the sweeper (see clinic_backups.usecases.scheduler).

It has no HTTP route: an API Gateway event is refused before anything runs. The event's
content is not trusted for anything (its `time` is only logged); the run reads the clock.
"""

from __future__ import annotations

import time
from functools import cache
from typing import Any

from clinic_backups.edge.api import is_http_event
from clinic_backups.observability import instrument, logger
from clinic_backups.usecases.context import Services
from clinic_backups.usecases.scheduler import run_scheduler
from clinic_backups.wiring.factory import build_services
from clinic_backups.wiring.settings import SchedulerSettings, get_settings

# Stop optional work (the sweeper's listings) this long before the Lambda timeout.
SAFETY_SECONDS = 30


class NotAScheduledEvent(Exception):
    """The scheduler runs on EventBridge events (or a direct invoke), never over HTTP."""


def settings() -> SchedulerSettings:
    return get_settings(SchedulerSettings)


@cache
def services() -> Services:
    return build_services(settings())


@instrument
def lambda_handler(event: dict[str, Any], context: Any) -> Any:
    if is_http_event(event):
        logger.error("the scheduler was invoked over HTTP; refused")
        raise NotAScheduledEvent("not a scheduled event")
    if isinstance(event, dict) and event.get("time"):
        logger.append_keys(event_time=str(event["time"])[:40])
    remaining_ms = getattr(context, "get_remaining_time_in_millis", None)
    deadline = (time.monotonic() + remaining_ms() / 1000 - SAFETY_SECONDS) if remaining_ms else None
    return run_scheduler(services(), deadline=deadline).to_dict()
