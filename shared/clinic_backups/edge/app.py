"""`function_app`: what every `functions/*/app.py` shares, so a handler is its routes (and its
worker, or its scheduled run) and nothing else.

One `FunctionApp` per function holds its validated settings (read through the cached getter),
its services (built once per container by `wiring.factory.build_services`, on first use:
never at import, which keeps cold starts small and tests free of import tricks), the
resolver with the tenant authentication middleware, and the instrumented `lambda_handler`
that sends each event where it belongs:

- an API Gateway HTTP event → the routes (never a job, never the scheduled run);
- with a `worker`: an SQS batch or a direct invocation `{"kind": …}` → the job runner
  (edge.jobs), which never sees an HTTP event;
- with `scheduled`: an EventBridge event (or a direct invoke) → the run; an HTTP event is
  refused before anything runs.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from functools import cache
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from aws_lambda_powertools.event_handler import APIGatewayHttpResolver
from pydantic import BaseModel

from clinic_backups.domain.models import Job, TenantContext
from clinic_backups.edge.api import (
    create_app,
    current_tenant,
    is_http_event,
    parse_body,
    parse_query,
    use_tenant_auth,
)
from clinic_backups.observability import instrument, logger
from clinic_backups.wiring.factory import build_services
from clinic_backups.wiring.settings import CommonSettings, get_settings

if TYPE_CHECKING:
    from clinic_backups.usecases.context import Services

S = TypeVar("S", bound=CommonSettings)
M = TypeVar("M", bound=BaseModel)

# A scheduled run stops optional work (the sweeper's listings) this long before the Lambda
# timeout.
SAFETY_SECONDS = 30

Worker = Callable[[Job], Any]
ScheduledRun = Callable[[float | None], Any]


class NotAScheduledEvent(Exception):
    """A scheduled function runs on EventBridge events (or a direct invoke), never over HTTP."""


class FunctionApp(Generic[S]):
    def __init__(self, model: type[S], *, http: bool = True) -> None:
        self.model = model
        self._app = create_app() if http else None
        self._worker: Worker | None = None
        self._scheduled: ScheduledRun | None = None
        # Cached per container; `services.cache_clear()` forgets it (tests change settings).
        self.services: Callable[[], Services] = cache(self._build_services)
        if self._app is not None:
            use_tenant_auth(self._app, self.settings, self.services)
        self.lambda_handler = instrument(self._handle)

    def settings(self) -> S:
        return get_settings(self.model)

    def _build_services(self) -> Services:
        return build_services(self.settings())

    @property
    def app(self) -> APIGatewayHttpResolver:
        """The resolver the routes register on (`@fn.app.get("/path")`)."""
        assert self._app is not None, "this function has no HTTP routes"
        return self._app

    # -- what a route reads -------------------------------------------------------------------

    def tenant(self) -> TenantContext:
        """The verified caller of the current request."""
        return current_tenant(self.app)

    def body(self, model: type[M]) -> M:
        return parse_body(self.app, model)

    def query(self, model: type[M]) -> M:
        return parse_query(self.app, model)

    # -- the non-HTTP entries ----------------------------------------------------------------

    def worker(self, run: Worker) -> Worker:
        """Decorator: `run` handles this function's job messages (SQS batches with partial
        failures, direct invocations)."""
        self._worker = run
        return run

    def scheduled(self, run: ScheduledRun) -> ScheduledRun:
        """Decorator: `run(deadline)` is this function's scheduled run; `deadline` is the
        `time.monotonic()` by which optional work stops (None without a Lambda context)."""
        self._scheduled = run
        return run

    def _handle(self, event: dict[str, Any], context: Any) -> Any:
        if self._scheduled is not None:
            return self._run_scheduled(self._scheduled, event, context)
        if self._worker is not None and not is_http_event(event):
            # Only worker functions need the batch utilities: not a cold start's import.
            from clinic_backups.edge.jobs import handle_job_event

            return handle_job_event(event, context, self._worker)
        return self.app.resolve(event, context)

    @staticmethod
    def _run_scheduled(run: ScheduledRun, event: dict[str, Any], context: Any) -> Any:
        if is_http_event(event):
            logger.error("the scheduler was invoked over HTTP; refused")
            raise NotAScheduledEvent("not a scheduled event")
        # The event's content is trusted for nothing: its `time` is only logged.
        if isinstance(event, dict) and event.get("time"):
            logger.append_keys(event_time=str(event["time"])[:40])
        remaining_ms = getattr(context, "get_remaining_time_in_millis", None)
        deadline = (
            (time.monotonic() + remaining_ms() / 1000 - SAFETY_SECONDS) if remaining_ms else None
        )
        return run(deadline)


def function_app(model: type[S], *, http: bool = True) -> FunctionApp[S]:
    """The function whose settings are `model`: `http=False` for one without routes (the
    scheduler)."""
    return FunctionApp(model, http=http)
