"""The job dispatcher: SQS.

It sends the internal job message (`job.to_message()`): backup jobs on the backup queue and
every other kind (restore, verify, verify_light, undo) on the restore queue. The local stack's
in-process queue is not part of the deployed layer: the local tooling hands its dispatcher to
the factory (`wiring.factory.use_local_dispatcher`) for `JOB_QUEUE=local`.

`enqueue_batch` (the scheduler's burst) sends SQS `SendMessageBatch` calls of up to 10 jobs;
entries SQS reports as failed are retried, and what still fails is returned to the caller —
never dropped — so it can fail the records and leave the slots to a later run.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from typing import Any

from clinic_backups.domain.errors import QueueUnavailable
from clinic_backups.domain.models import Job
from clinic_backups.domain.ports import EnqueueFailure
from clinic_backups.observability import logger

# SendMessageBatch takes at most 10 entries; a failed entry is sent again this many times in
# all (with a short pause) before it is reported.
BATCH_SIZE = 10
BATCH_ATTEMPTS = 3
BATCH_RETRY_PAUSE = 0.2


class SqsDispatcher:
    def __init__(
        self,
        queue_url: str,
        client: Any = None,
        restore_queue_url: str | None = None,
        retry_pause: float = BATCH_RETRY_PAUSE,
    ):
        self._queue_url = queue_url
        self._restore_queue_url = restore_queue_url
        self._client = client
        self._retry_pause = retry_pause

    @property
    def client(self) -> Any:
        if self._client is None:
            import boto3

            self._client = boto3.client("sqs")
        return self._client

    def enqueue(self, job: Job) -> None:
        from botocore.exceptions import BotoCoreError, ClientError

        queue_url = self._queue_for(job)
        if not queue_url:
            logger.warning("no queue for this job kind", extra={"job_kind": job.kind})
            raise QueueUnavailable("The restore job queue is not configured.")
        try:
            self.client.send_message(QueueUrl=queue_url, MessageBody=json.dumps(job.to_message()))
        except (BotoCoreError, ClientError) as error:
            logger.warning("could not enqueue job", extra={"queue_error": type(error).__name__})
            raise QueueUnavailable("The job queue is unavailable; try again later.") from None

    def _queue_for(self, job: Job) -> str | None:
        return self._queue_url if job.kind == "backup" else self._restore_queue_url

    def enqueue_batch(self, jobs: Sequence[Job]) -> list[EnqueueFailure]:
        """Send `jobs` in SendMessageBatch calls of up to 10 (one queue per call); return the
        jobs that were not accepted after `BATCH_ATTEMPTS` attempts (an entry SQS blames on
        the sender is not retried: it would fail again)."""
        failures: list[EnqueueFailure] = []
        by_queue: dict[str, list[Job]] = {}
        for job in jobs:
            queue_url = self._queue_for(job)
            if not queue_url:
                failures.append(EnqueueFailure(job, "QueueNotConfigured", sender_fault=True))
            else:
                by_queue.setdefault(queue_url, []).append(job)
        for queue_url, queued in by_queue.items():
            for start in range(0, len(queued), BATCH_SIZE):
                failures += self._send_batch(queue_url, queued[start : start + BATCH_SIZE])
        if failures:
            logger.warning(
                "jobs not enqueued after retries",
                extra={
                    "count": len(failures),
                    "queue_errors": sorted({f.code for f in failures}),
                },
            )
        return failures

    def _send_batch(self, queue_url: str, jobs: list[Job]) -> list[EnqueueFailure]:
        from botocore.exceptions import BotoCoreError, ClientError

        # Ids are the jobs' positions: unique within the call, and nothing of the job in them.
        pending = {str(index): job for index, job in enumerate(jobs)}
        refused: list[EnqueueFailure] = []  # blamed on the sender: not sent again
        failed: dict[str, EnqueueFailure] = {}
        for attempt in range(BATCH_ATTEMPTS):
            if attempt:
                time.sleep(self._retry_pause * attempt)
            entries = [
                {"Id": entry_id, "MessageBody": json.dumps(job.to_message())}
                for entry_id, job in pending.items()
            ]
            try:
                answer = self.client.send_message_batch(QueueUrl=queue_url, Entries=entries)
            except (BotoCoreError, ClientError) as error:
                # The whole call failed (botocore already retried throttling and 5xx): every
                # entry of it is tried again.
                code = (
                    error.response.get("Error", {}).get("Code", "ClientError")
                    if isinstance(error, ClientError)
                    else type(error).__name__
                )
                failed = {i: EnqueueFailure(job, str(code)) for i, job in pending.items()}
                continue
            failed = {}
            for entry in answer.get("Failed", []):
                job = pending.get(str(entry.get("Id", "")))
                if job is None:
                    continue
                failure = EnqueueFailure(
                    job, str(entry.get("Code", "Failed")), bool(entry.get("SenderFault"))
                )
                if failure.sender_fault:
                    refused.append(failure)
                else:
                    failed[str(entry["Id"])] = failure
            pending = {i: pending[i] for i in failed}
            if not pending:
                break
        return refused + list(failed.values())
