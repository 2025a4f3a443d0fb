"""The local stack's job queue: its stand-in for SQS, never part of the deployed layer.

`LocalQueue` is a process-wide FIFO served by worker threads; `LocalDispatcher` is the
`JobDispatcher` over it. `install()` hands the dispatcher to the layer's factory
(`wiring.factory.use_local_dispatcher`), so every function built with `JOB_QUEUE=local`
enqueues into `LocalQueue.shared()`; its consumer (``devstack.gateway.JobWorker``) routes each
message by `kind` to the function the template feeds from that queue, so the same worker code
runs here and in AWS.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Sequence
from typing import Any

from clinic_backups.domain.errors import ApiError, QueueUnavailable
from clinic_backups.domain.models import Job
from clinic_backups.domain.ports import EnqueueFailure
from clinic_backups.observability import logger
from clinic_backups.wiring import factory

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

    def enqueue_batch(self, jobs: Sequence[Job]) -> list[EnqueueFailure]:
        failures = []
        for job in jobs:
            try:
                self.enqueue(job)
            except ApiError as error:
                failures.append(EnqueueFailure(job, error.code))
        return failures


def install() -> None:
    """`JOB_QUEUE=local` functions of this process enqueue into `LocalQueue.shared()`."""
    factory.use_local_dispatcher(LocalDispatcher)
