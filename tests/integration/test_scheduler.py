"""The scheduler function with a fixed clock: real PostgreSQL, moto SQS, SeaweedFS. Clinics in
several time zones, both DST changes, duplicated, concurrent and late events, busy clinics."""

from __future__ import annotations

import json
import threading
import uuid
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from clinic_backups.domain.ports import NullMetrics, SchemaCheck, SnapshotWindow
from clinic_backups.edge.app import NotAScheduledEvent
from clinic_backups.usecases.scheduler import run_scheduler
from psycopg2 import sql

from tests.helpers import FixedClock, call, function_module, invoke, load_event, mint

pytestmark = pytest.mark.usefixtures("app_env")

SAVED_LONG_AGO = datetime(2026, 1, 1, tzinfo=UTC)


def utc(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=UTC)


def scheduler():
    return function_module("scheduler").fn.services()


def run_at(at: datetime) -> dict:
    """One EventBridge delivery (the sample event) at `at`."""
    scheduler().clock = FixedClock(at)
    return invoke("scheduler", load_event("scheduler/scheduled_event.json"))


def configure(schema: str, **fields) -> None:
    svc = scheduler()
    svc.records.ensure_schema(schema)
    svc.schedules.save_settings(
        schema,
        replace(svc.config.policy.defaults, updated_by="test", updated_at=SAVED_LONG_AGO, **fields),
    )


def messages(sqs) -> list[dict]:
    found = []
    while batch := sqs.receive():
        for message in batch:
            found.append(json.loads(message["Body"]))
            sqs.client.delete_message(QueueUrl=sqs.url, ReceiptHandle=message["ReceiptHandle"])
    return found


def slots(db, schema: str) -> list[tuple]:
    with db.cursor() as cur:
        cur.execute(
            sql.SQL(
                "SELECT local_date::text, local_hour, status, attempts FROM {} "
                "ORDER BY local_date, local_hour"
            ).format(sql.Identifier(schema, "backup_slots"))
        )
        return cur.fetchall()


def test_clinics_in_different_time_zones_run_at_their_own_local_hour(clinic_factory, sqs, db):
    # Given five clinics backing up at 03:00 local (Madrid on the platform defaults)
    madrid = clinic_factory()
    zones = {
        "America/New_York": clinic_factory(),
        "Asia/Kolkata": clinic_factory(),
        "Asia/Kathmandu": clinic_factory(),
        "Australia/Adelaide": clinic_factory(),
    }
    for zone, schema in zones.items():
        configure(schema, time_zone=zone)

    # When the hourly event arrives at 02:05 UTC on 2026-06-15
    report = run_at(utc(2026, 6, 15, 2, 5))

    # Then Madrid (01:00 UTC, 65 min ago), Kolkata (21:30 UTC, 4 h 35 ago) and Kathmandu
    # (21:15 UTC) are due; New York's 03:00 is still ahead and Adelaide's (17:30 UTC) is 8 h 35
    # late, beyond the 6 h catch-up window
    jobs = messages(sqs)
    assert sorted(j["schema"] for j in jobs) == sorted(
        [madrid, zones["Asia/Kolkata"], zones["Asia/Kathmandu"]]
    )
    assert {j["trigger"] for j in jobs} == {"scheduled"}
    assert report["enqueued"] == 3
    assert slots(db, madrid)[-1] == ("2026-06-15", 3, "enqueued", 1)
    assert slots(db, zones["Asia/Kolkata"])[-1] == ("2026-06-15", 3, "enqueued", 1)
    assert ("2026-06-15", 3, "missed", 0) in slots(db, zones["Australia/Adelaide"])
    assert ("2026-06-15", 3, "enqueued", 1) not in slots(db, zones["America/New_York"])
    # And each job names the pending record the slot recorded, created by the scheduler
    for job in jobs:
        record = scheduler().records.get(job["schema"], uuid.UUID(job["backup_id"]))
        assert (record.status.value, record.trigger.value, record.created_by) == (
            "pending",
            "scheduled",
            "scheduler",
        )
        with db.cursor() as cur:
            cur.execute(
                sql.SQL("SELECT backup_id::text FROM {} WHERE status = 'enqueued'").format(
                    sql.Identifier(job["schema"], "backup_slots")
                )
            )
            assert cur.fetchone()[0] == job["backup_id"]


def test_a_duplicated_event_enqueues_one_backup(clinic_factory, sqs):
    schema = clinic_factory()
    first = run_at(utc(2026, 6, 15, 1, 5))
    again = run_at(utc(2026, 6, 15, 1, 6))  # EventBridge delivered the event twice
    later = run_at(utc(2026, 6, 15, 2, 5))  # and the next hour's run
    assert (first["enqueued"], again["enqueued"], later["enqueued"]) == (1, 0, 0)
    assert [j["schema"] for j in messages(sqs)] == [schema]


def test_concurrent_duplicate_events_claim_the_slot_once_in_the_database(
    clinic_factory, sqs, monkeypatch
):
    # Given two runs that reach the slot claim at the same moment
    schema = clinic_factory()
    svc = scheduler()
    svc.clock = FixedClock(utc(2026, 6, 15, 1, 5))
    svc.metrics = NullMetrics()
    barrier = threading.Barrier(2)
    claim = svc.schedules.claim_slot

    def racing_claim(*args, **kwargs):
        barrier.wait(timeout=10)
        return claim(*args, **kwargs)

    monkeypatch.setattr(svc.schedules, "claim_slot", racing_claim)
    reports = []
    threads = [
        threading.Thread(target=lambda: reports.append(run_scheduler(svc, orphans=False)))
        for _ in range(2)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)

    # Then the primary key let exactly one of them enqueue
    assert sorted(r.enqueued for r in reports) == [0, 1]
    assert sorted(r.already_claimed for r in reports) == [0, 1]
    assert [j["schema"] for j in messages(sqs)] == [schema]


@pytest.mark.parametrize(
    "late,status,queued",
    [
        (timedelta(hours=5, minutes=55), "enqueued", 1),
        (timedelta(hours=6, minutes=5), "missed", 0),
    ],
)
def test_a_late_event_runs_within_the_catch_up_window_and_is_missed_after(
    clinic_factory, sqs, db, late, status, queued
):
    schema = clinic_factory()
    slot = utc(2026, 6, 15, 1)  # 03:00 in Madrid
    report = run_at(slot + late)
    assert slots(db, schema)[-1][:3] == ("2026-06-15", 3, status)
    assert len(messages(sqs)) == queued
    assert report["missed"] >= 1 - queued


def manual_backup(schema: str, at: datetime) -> dict:
    function_module("create_backup").fn.services().clock = FixedClock(at)
    reply = call(
        "create_backup",
        load_event("create_backup/post_backups.json", token=mint(schema), body=None),
    )
    assert reply.status == 202, reply.body
    return reply.body


def test_a_busy_clinic_is_skipped_then_retried_within_the_window(clinic_factory, sqs, db):
    # Given a manual backup still pending when the 03:00 slot comes
    schema = clinic_factory()
    slot = utc(2026, 6, 15, 1)
    manual_backup(schema, slot - timedelta(minutes=10))
    report = run_at(slot + timedelta(minutes=5))
    assert (report["skipped_busy"], report["enqueued"]) == (1, 0)
    assert slots(db, schema)[-1] == ("2026-06-15", 3, "skipped_busy", 1)

    # When the manual backup has finished (the worker ran it), the next run retries the slot
    sqs.drain_into_worker()
    report = run_at(slot + timedelta(hours=1, minutes=5))

    # Then the slot runs on its second attempt
    assert report["enqueued"] == 1
    assert slots(db, schema)[-1] == ("2026-06-15", 3, "enqueued", 2)
    assert [j["trigger"] for j in messages(sqs)] == ["scheduled"]


def test_a_clinic_busy_all_through_the_window_misses_its_slot(clinic_factory, sqs, db):
    schema = clinic_factory()
    slot = utc(2026, 6, 15, 1)
    manual_backup(schema, slot - timedelta(minutes=10))
    assert run_at(slot + timedelta(minutes=5))["skipped_busy"] == 1
    # the first backup ends, another starts just before the window closes
    sqs.drain_into_worker()
    manual_backup(schema, slot + timedelta(hours=5, minutes=50))
    report = run_at(slot + timedelta(hours=6, minutes=5))
    assert report["missed"] == 1 and report["enqueued"] == 0
    assert slots(db, schema)[-1] == ("2026-06-15", 3, "missed", 1)


def test_a_stuck_lock_holder_is_failed_before_the_clinic_is_scheduled(clinic_factory, sqs, db):
    # Given a manual backup whose job was lost two hours before the slot
    schema = clinic_factory()
    slot = utc(2026, 6, 15, 1)
    stuck = manual_backup(schema, slot - timedelta(hours=2))
    # When the hourly run comes
    report = run_at(slot + timedelta(minutes=5))
    # Then the stuck record is failed as stale and the slot runs in the same run
    assert report["sweep"]["stale_failed"] == 1 and report["enqueued"] == 1
    record = scheduler().records.get(schema, uuid.UUID(stuck["id"]))
    assert (record.status.value, record.error_code) == ("failed", "stale")


@pytest.mark.parametrize(
    "start,expected_run",
    [
        # spring forward: 02:00 does not exist; the 01:05 UTC run (03:05 CEST) takes the slot
        (utc(2026, 3, 28, 22, 5), utc(2026, 3, 29, 1, 5)),
        # fall back: 02:00-02:59 happens twice; the first (00:05 UTC, CEST) runs, 01:05 UTC does not
        (utc(2026, 10, 24, 22, 5), utc(2026, 10, 25, 0, 5)),
    ],
)
def test_dst_changes_in_madrid_run_the_02_00_slot_once(
    clinic_factory, sqs, db, start, expected_run
):
    schema = clinic_factory()
    configure(schema, hour=2)
    runs = {}
    for hour in range(6):
        at = start + timedelta(hours=hour)
        run_at(at)
        runs[at] = [j for j in messages(sqs) if j["schema"] == schema]
    assert {at: len(jobs) for at, jobs in runs.items() if jobs} == {expected_run: 1}
    day = expected_run.astimezone(ZoneInfo("Europe/Madrid")).date()
    assert (day.isoformat(), 2, "enqueued", 1) in slots(db, schema)


def test_disabled_schedules_and_other_weekdays_enqueue_nothing(clinic_factory, sqs):
    off, weekends = clinic_factory(), clinic_factory()
    configure(off, enabled=False)
    configure(weekends, weekdays=(6, 7))
    report = run_at(utc(2026, 6, 15, 1, 5))  # a Monday
    assert report["enqueued"] == 0 and report["disabled"] == 1
    assert messages(sqs) == []


def test_stale_clinics_are_counted_for_the_alarm(clinic_factory, sqs):
    from tests.integration.test_retention import add_backup

    now = utc(2026, 6, 15, 12, 5)
    fresh, stale = clinic_factory(), clinic_factory()
    add_backup(scheduler(), fresh, now - timedelta(hours=11))
    add_backup(scheduler(), stale, now - timedelta(days=3))
    report = run_at(now)
    assert report["stale_clinics"] == 1
    assert report["oldest_last_good_hours"] == pytest.approx(72, abs=0.05)  # finished 1 min in


def test_the_scheduler_refuses_an_http_event(clinic_factory, sqs):
    schema = clinic_factory()
    with pytest.raises(NotAScheduledEvent):
        invoke("scheduler", load_event("list_backups/get_me.json", token=mint(schema)))
    assert messages(sqs) == []


def test_the_fleet_read_in_small_batches_sees_every_clinic(clinic_factory):
    # Each batch is its own transaction (its table locks end with it): the result must not
    # depend on where the batches split.
    from clinic_backups.adapters.schedules import PostgresSchedules

    schemas = [clinic_factory() for _ in range(5)]
    svc = scheduler()
    assert svc.records.ensure_schemas(schemas) == SchemaCheck()
    configure(schemas[2], hour=5, time_zone="Asia/Kolkata")
    window = SnapshotWindow(
        slots_since=utc(2026, 6, 1),
        stuck_before=utc(2026, 6, 15),
        deleted_before=utc(2026, 6, 8),
    )
    small = PostgresSchedules(svc.schedules._db, batch_size=2).snapshot(schemas, window)
    whole = svc.schedules.snapshot(schemas, window)
    assert small == whole and sorted(small) == sorted(schemas)
    third = small[schemas[2]].settings
    assert third is not None and third.hour == 5 and small[schemas[0]].settings is None


class FlakyQueue:
    """moto's SQS client, with entries of SendMessageBatch failing as SQS reports them
    (`Failed`, SenderFault false): `fail_once` entries fail on their first send, entries naming
    a clinic in `always` on every send. The other entries reach moto. Counts the calls."""

    def __init__(self, client, fail_once: int = 0, always: frozenset[str] = frozenset()):
        self.client = client
        self.fail_once = fail_once
        self.always = always
        self.calls: list[int] = []

    def send_message_batch(self, QueueUrl: str, Entries: list[dict]) -> dict:
        self.calls.append(len(Entries))
        failed, passed = [], []
        for entry in Entries:
            clinic = json.loads(entry["MessageBody"])["schema"]
            if clinic in self.always or self.fail_once > 0:
                self.fail_once -= clinic not in self.always
                failed.append(
                    {
                        "Id": entry["Id"],
                        "SenderFault": False,
                        "Code": "InternalError",
                        "Message": "x",
                    }
                )
            else:
                passed.append(entry)
        answer = self.client.send_message_batch(QueueUrl=QueueUrl, Entries=passed) if passed else {}
        return {"Successful": answer.get("Successful", []), "Failed": failed}


def flaky_scheduler(sqs, at: datetime, queue: FlakyQueue):
    from clinic_backups.adapters.queues import SqsDispatcher

    svc = scheduler()
    svc.clock = FixedClock(at)
    svc.metrics = NullMetrics()
    svc.dispatcher = SqsDispatcher(sqs.url, queue, retry_pause=0)
    return svc


def test_25_due_clinics_are_enqueued_in_3_send_message_batch_calls(clinic_factory, sqs, db):
    # Given 25 clinics due at 03:00 Madrid, and the calls the real SQS client makes counted
    schemas = {clinic_factory(patients=5) for _ in range(25)}
    client = scheduler().dispatcher.client
    calls: list[str] = []
    client.meta.events.register("before-call.sqs.*", lambda model, **_: calls.append(model.name))

    # When the scheduler runs
    report = run_at(utc(2026, 6, 15, 1, 5))

    # Then 25 jobs went out in 10 + 10 + 5, one message per clinic, every slot enqueued
    assert report["enqueued"] == 25 and report["clinics_failed"] == 0
    assert calls == ["SendMessageBatch"] * 3
    sent = messages(sqs)
    assert sorted(j["schema"] for j in sent) == sorted(schemas)
    assert all(slots(db, s)[-1][2] == "enqueued" for s in schemas)


def test_an_entry_sqs_fails_once_is_sent_again_and_nothing_is_lost(clinic_factory, sqs, db):
    # Given 12 due clinics and a queue that fails 3 entries of the first call
    schemas = {clinic_factory(patients=5) for _ in range(12)}
    queue = FlakyQueue(sqs.client, fail_once=3)
    svc = flaky_scheduler(sqs, utc(2026, 6, 15, 1, 5), queue)

    # When the scheduler runs
    report = run_scheduler(svc, orphans=False)

    # Then the failed entries went again in a call of their own: 10 (3 failed), 3, then 2
    assert queue.calls == [10, 3, 2]
    assert report.enqueued == 12 and report.errors == 0
    assert sorted(j["schema"] for j in messages(sqs)) == sorted(schemas)


def test_a_job_the_queue_keeps_refusing_is_reported_and_its_slot_stays_open(
    clinic_factory, sqs, db
):
    # Given 3 due clinics, and a queue that refuses one clinic's job on every attempt
    schemas = [clinic_factory(patients=5) for _ in range(3)]
    refused = schemas[1]
    queue = FlakyQueue(sqs.client, always=frozenset({refused}))
    slot = utc(2026, 6, 15, 1)
    svc = flaky_scheduler(sqs, slot + timedelta(minutes=5), queue)

    # When the scheduler runs
    report = run_scheduler(svc, orphans=False)

    # Then it tried three times, then named the clinic as failing; the others were enqueued
    assert queue.calls == [3, 1, 1]
    assert report.enqueued == 2 and report.errors == 1
    assert report.to_dict()["failed_clinics"] == {refused: "enqueue"}
    assert sorted(j["schema"] for j in messages(sqs)) == sorted(set(schemas) - {refused})
    # and the refused clinic is not done: no slot kept, its record failed, its lock free
    assert [row for row in slots(db, refused) if row[:2] == ("2026-06-15", 3)] == []
    with db.cursor() as cur:
        cur.execute(
            sql.SQL("SELECT status, error_code FROM {}").format(
                sql.Identifier(refused, "backup_records")
            )
        )
        assert cur.fetchall() == [("failed", "internal_error")]
        cur.execute(
            sql.SQL("SELECT count(*) FROM {}").format(
                sql.Identifier(refused, "backup_operation_lock")
            )
        )
        assert cur.fetchone()[0] == 0

    # When the queue takes it again, the next hourly run enqueues it within the window
    queue.always = frozenset()
    svc.clock = FixedClock(slot + timedelta(hours=1, minutes=5))
    again = run_scheduler(svc, orphans=False)
    assert again.enqueued == 1 and again.errors == 0
    assert [j["schema"] for j in messages(sqs)] == [refused]
    assert slots(db, refused)[-1][:3] == ("2026-06-15", 3, "enqueued")


def test_a_pending_backup_of_a_run_that_died_before_sending_is_sent_again(clinic_factory, sqs, db):
    # Given a run that claimed the slot and created the record, then died before its batch
    # went out (the outbox is in memory)
    schema = clinic_factory(patients=5)
    slot = utc(2026, 6, 15, 1)
    queue = FlakyQueue(sqs.client)

    def died(*_args, **_kwargs):
        raise SystemExit("the Lambda timed out")

    svc = flaky_scheduler(sqs, slot + timedelta(minutes=5), queue)
    svc.dispatcher.enqueue_batch = died  # type: ignore[union-attr]
    with pytest.raises(SystemExit):
        run_scheduler(svc, orphans=False)
    assert messages(sqs) == [] and slots(db, schema)[-1][2] == "due"

    # When a later run finds the abandoned claim (older than the claim timeout)
    svc = flaky_scheduler(sqs, slot + timedelta(minutes=50), queue)
    report = run_scheduler(svc, orphans=False)

    # Then the pending record's job is sent (once) and the slot becomes enqueued
    assert report.recovered == 1 and report.enqueued == 0
    jobs = messages(sqs)
    assert [j["schema"] for j in jobs] == [schema]
    assert slots(db, schema)[-1][2] == "enqueued"
