"""The dispatchers' batch path without a network: SQS entries SQS blames on the sender are not
sent again, whole-call failures are retried then reported, and the local queue (the local
stack's) takes a batch one job at a time."""

from __future__ import annotations

import threading
import uuid
from typing import Any

import pytest
from botocore.exceptions import EndpointConnectionError
from clinic_backups.adapters.queues import SqsDispatcher
from clinic_backups.domain.errors import QueueUnavailable
from clinic_backups.domain.models import BackupJob, Trigger

from devstack.local_queue import LocalDispatcher, LocalQueue


def jobs(count: int) -> list[BackupJob]:
    return [
        BackupJob(
            kind="backup", schema=f"clinica_{i}", backup_id=uuid.uuid4(), trigger=Trigger.SCHEDULED
        )
        for i in range(count)
    ]


class Client:
    def __init__(self, answers: list[Any]):
        self.answers = answers
        self.calls: list[list[str]] = []

    def send_message_batch(self, QueueUrl: str, Entries: list[dict[str, str]]) -> dict:
        self.calls.append([e["Id"] for e in Entries])
        answer = self.answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer(Entries)


def test_an_entry_sqs_blames_on_the_sender_is_reported_without_a_retry():
    client = Client(
        [
            lambda entries: {
                "Successful": [{"Id": e["Id"]} for e in entries[1:]],
                "Failed": [
                    {"Id": entries[0]["Id"], "SenderFault": True, "Code": "InvalidMessageContents"}
                ],
            }
        ]
    )
    batch = jobs(4)
    failures = SqsDispatcher("q", client, retry_pause=0).enqueue_batch(batch)
    assert [(f.job, f.code, f.sender_fault) for f in failures] == [
        (batch[0], "InvalidMessageContents", True)
    ]
    assert client.calls == [["0", "1", "2", "3"]]


def test_a_call_that_fails_whole_is_retried_then_every_entry_is_reported():
    down = EndpointConnectionError(endpoint_url="http://sqs")
    client = Client([down, down, down])
    batch = jobs(3)
    failures = SqsDispatcher("q", client, retry_pause=0).enqueue_batch(batch)
    assert [f.job for f in failures] == batch
    assert {f.code for f in failures} == {"EndpointConnectionError"}
    assert len(client.calls) == 3


def test_the_local_queue_takes_a_batch_and_reports_when_it_has_no_worker():
    local = LocalQueue(workers=1)
    batch = jobs(3)
    assert [f.code for f in LocalDispatcher(local).enqueue_batch(batch)] == [
        "service_unavailable"
    ] * 3

    seen: list[str] = []
    done = threading.Event()

    def consume(message: dict[str, Any]) -> None:
        seen.append(message["schema"])
        if len(seen) == 3:
            done.set()

    local.start(consume)
    try:
        assert LocalDispatcher(local).enqueue_batch(batch) == []
        assert done.wait(10)
        assert seen == [j.schema_name for j in batch]
    finally:
        local.stop()


def test_job_queue_local_enqueues_through_the_queue_the_local_stack_installed():
    from clinic_backups.wiring import factory
    from clinic_backups.wiring.settings import QueueSettings

    from devstack import local_queue

    settings = QueueSettings(job_queue="local")
    # Without the local stack (the deployed layer has no local queue): every job refused.
    with pytest.raises(QueueUnavailable):
        factory.dispatcher(settings).enqueue(jobs(1)[0])
    refusing: Any = factory.dispatcher(settings)
    assert [f.code for f in refusing.enqueue_batch(jobs(2))] == ["service_unavailable"] * 2
    local_queue.install()
    try:
        installed = factory.dispatcher(settings)
        assert isinstance(installed, LocalDispatcher)
    finally:
        factory.use_local_dispatcher(None)
