"""Job dispatchers: SQS in AWS, an in-process queue for the local stack.

Both deliver the same internal job message (`job.to_message()`). On SQS, backup jobs go on the
backup queue and every other kind (restore, verify, verify_light, undo) on the restore queue;
the local queue hands every message to one consumer the local stack registers, which routes
it by `kind` to the function the template feeds from that queue, so the same worker code runs
in both places.
"""

from __future__ import annotations

import json
import queue
import threading
from collections.abc import Callable
from typing import Any

from ..errors import QueueUnavailable
from ..models import Job
from ..observability import logger


class SqsDispatcher:
    def __init__(self, queue_url: str, client: Any = None, restore_queue_url: str | None = None):
        self._queue_url = queue_url
        self._restore_queue_url = restore_queue_url
        self._client = client

    @property
    def client(self) -> Any:
        if self._client is None:
            import boto3

            self._client = boto3.client("sqs")
        return self._client

    def enqueue(self, job: Job) -> None:
        from botocore.exceptions import BotoCoreError, ClientError

        queue_url = self._queue_url if job.kind == "backup" else self._restore_queue_url
        if not queue_url:
            logger.warning("no queue for this job kind", extra={"job_kind": job.kind})
            raise QueueUnavailable("The restore job queue is not configured.")
        try:
            self.client.send_message(QueueUrl=queue_url, MessageBody=json.dumps(job.to_message()))
        except (BotoCoreError, ClientError) as error:
            logger.warning("could not enqueue job", extra={"queue_error": type(error).__name__})
            raise QueueUnavailable("The job queue is unavailable; try again later.") from None


Consumer = Callable[[dict[str, Any]], None]


class LocalQueue:
    """A process-wide FIFO served by worker threads (the local stack's stand-in for SQS)."""

    _instance: LocalQueue | None = None
    _lock = threading.Lock()

    def __init__(self, workers: int = 2):
        self._queue: queue.Queue[dict[str, Any] | None] = queue.Queue()
        self._consumer: Consumer | None = None
        self._workers = workers
        self._threads: list[threading.Thread] = []
        self._busy = 0
        self._idle = threading.Condition()

    @classmethod
    def shared(cls) -> LocalQueue:
        with cls._lock:
            if cls._instance is None:
                cls._instance = LocalQueue()
            return cls._instance

    def start(self, consumer: Consumer) -> None:
        self._consumer = consumer
        for index in range(self._workers):
            thread = threading.Thread(target=self._work, name=f"local-queue-{index}", daemon=True)
            thread.start()
            self._threads.append(thread)

    def put(self, message: dict[str, Any]) -> None:
        if self._consumer is None:
            raise QueueUnavailable("The local job queue has no worker.")
        with self._idle:
            self._busy += 1
        self._queue.put(message)

    def _work(self) -> None:
        while (message := self._queue.get()) is not None:
            try:
                assert self._consumer is not None
                self._consumer(message)
            except (KeyboardInterrupt, SystemExit):
                raise
            except BaseException:
                # BaseException: a native panic (pyo3's PanicException) in one job must not
                # end the thread that serves every later one.
                logger.exception("local job failed")
            finally:
                with self._idle:
                    self._busy -= 1
                    self._idle.notify_all()

    def join(self, timeout: float | None = None) -> bool:
        """Wait until every queued job ran (for tests and the scheduler command)."""
        with self._idle:
            return self._idle.wait_for(lambda: self._busy == 0, timeout=timeout)

    def stop(self) -> None:
        for _ in self._threads:
            self._queue.put(None)
        for thread in self._threads:
            thread.join(timeout=5)
        self._threads.clear()
        self._consumer = None


class LocalDispatcher:
    def __init__(self, local_queue: LocalQueue | None = None):
        self._queue = local_queue or LocalQueue.shared()

    def enqueue(self, job: Job) -> None:
        self._queue.put(job.to_message())
