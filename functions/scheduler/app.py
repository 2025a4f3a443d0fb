"""scheduler: the hourly EventBridge run. Decides every active clinic's due backup slots,
enqueues their jobs on the backup queue, then runs the sweeper (see
clinic_backups.usecases.scheduler).

It has no HTTP route: an API Gateway event is refused before anything runs. The event's
content is not trusted for anything (its `time` is only logged); the run reads the clock.
"""

from __future__ import annotations

from typing import Any

from clinic_backups.edge.app import function_app
from clinic_backups.usecases.scheduler import run_scheduler
from clinic_backups.wiring.settings import SchedulerSettings

fn = function_app(SchedulerSettings, http=False)
lambda_handler = fn.lambda_handler


@fn.scheduled
def run(deadline: float | None) -> Any:
    return run_scheduler(fn.services(), deadline=deadline).to_dict()
