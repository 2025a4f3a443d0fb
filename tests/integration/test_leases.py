"""Leases, not timeouts: every running job renews its clinic's lease from a heartbeat.

- A worker killed outright (SIGKILL, in a child process: no clean-up of any kind) keeps its
  clinic busy only until its lease expires: the next request takes the clinic over and fails
  the dead job as `stale`; the parts its upload left are aborted by the sweeper.
- A live job is never failed by the sweeper, however long it runs (the operator CLI has no
  time limit): the old age threshold no longer applies to running jobs.
- A restore that lost its lease in the middle of its swap (taken over) does not commit.
- The store dying mid-upload: the record says the parts will be removed, and they are, by the
  sweeper, once the store is back.

The tests use leases of a few seconds (`LOCK_LEASE_SECONDS`); production's is minutes.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from dataclasses import replace
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import psycopg2
import pytest
from clinic_backups.edge.cli import main
from clinic_backups.usecases import sweeper
from clinic_backups.wiring.factory import build_services
from clinic_backups.wiring.settings import OperatorSettings, get_settings
from psycopg2 import sql

from tests.helpers import Reply, call, function_module, load_event, mint, reset_caches
from tests.integration.conftest import RestoreDatabase
from tests.integration.faults import (
    DUMP_THEN_STALL,
    SLOW_START,
    STALL_DUMP,
    STALL_SWAP_PSQL,
    JobChild,
    Source,
    TcpProxy,
    install_tool,
    wait_until,
)
from tests.integration.restore_support import (
    backup,
    checksums,
    get_backup,
    get_restore,
    lock_rows,
    request_restore,
    schemas_like,
)

LEASE = 3


@pytest.fixture
def tools(tmp_path: Path, pg_bin_dir: str, monkeypatch: pytest.MonkeyPatch):
    """Replace one of the layer's tools for this test; returns the flags directory."""

    def install(tool: str, body: str, **constants: Any) -> Path:
        bin_dir, flags = tmp_path / "bin", tmp_path / "flags"
        install_tool(bin_dir, flags, pg_bin_dir, tool, body, **constants)
        monkeypatch.setenv("PG_BIN_DIR", str(bin_dir))
        reset_caches()
        return flags

    return install


@pytest.fixture
def lease_env(app_env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    monkeypatch.setenv("LOCK_LEASE_SECONDS", str(LEASE))
    monkeypatch.setenv("RESTORE_LOCK_TIMEOUT", "2s")  # the lease must outlive it
    monkeypatch.setenv("S3_MULTIPART_CHUNK_MB", "5")
    reset_caches()
    return app_env


@pytest.fixture
def restore_lease_env(
    restore_env_pg15: RestoreDatabase, monkeypatch: pytest.MonkeyPatch
) -> RestoreDatabase:
    monkeypatch.setenv("LOCK_LEASE_SECONDS", str(LEASE))
    monkeypatch.setenv("RESTORE_LOCK_TIMEOUT", "2s")
    reset_caches()
    return restore_env_pg15


def post_backup(schema: str) -> Reply:
    return call("create_backup", load_event("create_backup/post_backups.json", token=mint(schema)))


def take(queue: Any) -> list[dict[str, Any]]:
    """Every message on the queue, removed from it (the test runs the job itself)."""
    found = []
    while batch := queue.receive():
        for message in batch:
            found.append(json.loads(message["Body"]))
            queue.client.delete_message(QueueUrl=queue.url, ReceiptHandle=message["ReceiptHandle"])
    return found


def open_uploads(s3_server: Any, bucket: str, schema: str) -> dict[str, int]:
    """Unfinished multipart uploads under the clinic's prefix → parts uploaded so far."""
    s3 = s3_server.client()
    found = {}
    for upload in s3.list_multipart_uploads(Bucket=bucket, Prefix=f"{schema}/").get("Uploads", []):
        parts = s3.list_parts(Bucket=bucket, Key=upload["Key"], UploadId=upload["UploadId"])
        found[upload["Key"]] = len(parts.get("Parts", []))
    return found


def record_row(url: str, schema: str, backup_id: str) -> dict[str, Any]:
    with psycopg2.connect(url) as conn, conn.cursor() as cur:
        cur.execute(
            sql.SQL("SELECT status, error_code, error FROM {} WHERE id = %s").format(
                sql.Identifier(schema, "backup_records")
            ),
            (backup_id,),
        )
        status, code, error = cur.fetchone()
    conn.close()
    return {"status": status, "error_code": code, "error": error}


def lease_left(url: str, schema: str) -> float:
    """Seconds left on the clinic's lease, by the database's clock (0 without one)."""
    with psycopg2.connect(url) as conn, conn.cursor() as cur:
        cur.execute(
            sql.SQL(
                "SELECT extract(epoch FROM renewed_at + lease_seconds * interval '1 second' "
                "- now()) FROM {} WHERE lease_id IS NOT NULL"
            ).format(sql.Identifier(schema, "backup_operation_lock"))
        )
        row = cur.fetchone()
    conn.close()
    return float(row[0]) if row else 0.0


def free_within_lease(url: str, schema: str, killed: float) -> Reply:
    """The clinic is busy while the dead worker's lease runs, and free as soon as it has
    expired and someone asks: the first POST /backups after that is accepted."""
    if lease_left(url, schema) > 1.5:  # (a machine that stalled past it proves nothing here)
        assert post_backup(schema).status == 409
    taken = wait_until(
        lambda: (reply := post_backup(schema)).status == 202 and reply,
        timeout=LEASE + 10,
        what="the clinic to be free again",
        every=0.2,
    )
    # within the lease (renewed at most a quarter of it before the kill) plus one request
    assert time.monotonic() - killed <= LEASE + 3
    return taken  # type: ignore[no-any-return]


def tiny_threshold_sweeper() -> Any:
    """The operator's sweeper with a stuck threshold of one second (the old rule would fail
    any job running longer than that)."""
    svc = build_services(get_settings(OperatorSettings))
    svc.config = replace(
        svc.config, policy=replace(svc.config.policy, stuck_after=timedelta(seconds=1))
    )
    return svc


def test_a_killed_backup_frees_its_clinic_within_the_lease_and_its_parts_are_aborted(
    lease_env, clinic_factory, sqs, tools, s3_server, bucket, database_url, tmp_path
):
    # Given a backup whose worker has uploaded part of its archive
    schema = clinic_factory(patients=50)
    tools("pg_dump", DUMP_THEN_STALL, JUNK_MB=6)
    first = post_backup(schema)
    assert first.status == 202
    child = JobChild("create_backup", take(sqs)[0], tmp_path / "worker.log")
    try:
        wait_until(lambda: any(open_uploads(s3_server, bucket, schema).values()), what="a part")
        # When the worker dies: SIGKILL, nothing runs after it
        child.kill()
        killed = time.monotonic()
    finally:
        child.close()

    # Then the clinic is free again within the lease, at the next request
    free_within_lease(database_url, schema, killed)
    dead = record_row(database_url, schema, first.body["id"])
    assert (dead["status"], dead["error_code"]) == ("failed", "stale"), dead
    assert "lease" in dead["error"]
    # And the parts the dead worker uploaded are aborted by the next sweep (no age threshold)
    scheduler = function_module("scheduler").fn.services()
    assert sweeper.sweep(scheduler, [schema], orphans=False).uploads_aborted == 1
    assert open_uploads(s3_server, bucket, schema) == {}


def test_a_killed_restore_frees_its_clinic_within_the_lease(
    restore_lease_env, owned_clinic_pg15, sqs, restore_sqs, tools, tmp_path
):
    # Given a restore whose worker is making the pre-restore backup
    db = restore_lease_env
    schema = owned_clinic_pg15(patients=100)
    source = backup(schema, sqs)
    before = checksums(db.admin_url, schema)
    flags = tools("pg_dump", STALL_DUMP)
    requested = request_restore(schema, source["id"])
    assert requested.status == 202
    message = next(m for m in take(restore_sqs) if m["kind"] == "restore")
    child = JobChild("restore_backup", message, tmp_path / "worker.log")
    try:
        wait_until(lambda: (flags / "dumping").exists(), what="the pre-restore backup")
        # When the worker dies
        child.kill()
        killed = time.monotonic()
    finally:
        child.close()

    # Then the clinic is free again within the lease, and nothing changed in it
    free_within_lease(db.admin_url, schema, killed)
    job = get_restore(schema, requested.body["id"])
    assert (job["status"], job["error_code"]) == ("failed", "stale"), job
    assert "lease" in job["error"] and "nothing changed" in job["error"]
    pre = get_backup(schema, job["pre_restore_backup_id"])
    assert (pre["status"], pre["error_code"]) == ("failed", "stale")
    assert checksums(db.admin_url, schema) == before
    assert schemas_like(db.admin_url, schema) == [schema]


def statuses(url: str, schema: str, table: str) -> list[str]:
    with psycopg2.connect(url) as conn, conn.cursor() as cur:
        cur.execute(
            sql.SQL("SELECT status FROM {} ORDER BY created_at").format(
                sql.Identifier(schema, table)
            )
        )
        found = [r[0] for r in cur.fetchall()]
    conn.close()
    return found


def lock_taken(url: str, schema: str) -> bool:
    try:
        return bool(lock_rows(url, schema))
    except psycopg2.Error:
        return False  # the tables are not there yet


def hold_against_sweeps_and_requests(
    worker: threading.Thread, url: str, schema: str, table: str
) -> Any:
    """While the job runs (the clinic's first row of `table`): sweep with a one-second stuck
    threshold and ask for a backup, again and again. Returns the jobs the sweeps failed and
    the answers the requests got while the job ran."""

    def running() -> bool:
        found = statuses(url, schema, table)
        return bool(found) and found[0] in ("pending", "running")

    wait_until(lambda: lock_taken(url, schema) or not worker.is_alive(), what="the lock")
    svc = tiny_threshold_sweeper()
    failed, answers = 0, set()
    while worker.is_alive() and running():
        report = sweeper.sweep(svc, [schema], orphans=False)
        failed += report.stale_failed + report.restores_failed
        answer = post_backup(schema).status
        if running():  # (an answer after the job ended says nothing about it)
            answers.add(answer)
        time.sleep(0.3)
    return failed, answers


def settled(url: str, schema: str, table: str) -> list[str]:
    """The statuses of the clinic's jobs, without a backup requested after the job ended."""
    return [s for s in statuses(url, schema, table) if s != "pending"]


def test_a_cli_backup_longer_than_the_old_threshold_completes_untouched(
    lease_env, clinic_factory, tools, database_url
):
    # Given an operator's backup that runs for longer than the stuck threshold and the lease
    schema = clinic_factory(patients=50)
    tools("pg_dump", SLOW_START, SECONDS=LEASE + 2, WHEN=Source("lambda args: True"))
    result: dict[str, int] = {}
    worker = threading.Thread(target=lambda: result.update(code=main(["backup", schema])))

    # When the sweeper runs and clinic users ask for backups all along
    worker.start()
    try:
        failed, answers = hold_against_sweeps_and_requests(
            worker, database_url, schema, "backup_records"
        )
    finally:
        worker.join()

    # Then the job completed untouched, and no second backup ran beside it
    assert result["code"] == 0
    assert settled(database_url, schema, "backup_records") == ["completed"]
    assert failed == 0 and answers == {409}


def test_a_cli_restore_longer_than_the_old_threshold_completes_untouched(
    restore_lease_env, owned_clinic_pg15, sqs, tools
):
    # Given an operator's restore whose swap runs longer than the stuck threshold and the
    # lease (the heartbeat renews it while the swap holds the clinic's tables)
    db = restore_lease_env
    schema = owned_clinic_pg15(patients=100)
    source = backup(schema, sqs)
    tools(
        "pg_restore",
        SLOW_START,
        SECONDS=LEASE + 2,
        WHEN=Source("lambda args: not {'--schema-only', '--data-only', '--list'} & set(args)"),
    )
    result: dict[str, int] = {}
    argv = ["restore", schema, source["id"], "--confirm", schema]
    worker = threading.Thread(target=lambda: result.update(code=main(argv)))

    worker.start()
    try:
        failed, answers = hold_against_sweeps_and_requests(
            worker, db.admin_url, schema, "backup_restores"
        )
    finally:
        worker.join()

    assert result["code"] == 0
    assert statuses(db.admin_url, schema, "backup_restores") == ["completed"]
    # (the source backup, and the pre-restore backup made under the restore's lease)
    assert settled(db.admin_url, schema, "backup_records") == ["completed", "completed"]
    assert failed == 0 and answers == {409}


def test_a_restore_that_lost_its_lease_mid_swap_does_not_commit(
    restore_lease_env, owned_clinic_pg15, sqs, restore_sqs, tools, monkeypatch
):
    # Given a restore in the middle of its swap (the archive loaded, the COMMIT not yet sent)
    db = restore_lease_env
    schema = owned_clinic_pg15(patients=100)
    flags = tools("psql", STALL_SWAP_PSQL)
    # (backed up through the API after the tools changed: the clinic's tables are known to
    # the backup function, whose requests then never wait for the swap's schema lock)
    source = backup(schema, sqs)
    before = checksums(db.admin_url, schema)
    requested = request_restore(schema, source["id"])
    assert requested.status == 202
    worker = threading.Thread(target=restore_sqs.drain_into_worker)
    worker.start()
    try:
        wait_until(lambda: (flags / "stalled").exists(), what="the swap")
        # When its heartbeat stops renewing (its own database connection is gone, say) and
        # its lease expires, a clinic user's backup request takes the clinic over
        records = function_module("restore_backup").fn.services().records
        monkeypatch.setattr(records, "renew_lease", lambda *a, **k: True, raising=False)
        time.sleep(LEASE + 0.5)
        taken = post_backup(schema)
        assert taken.status == 202, taken.body
    finally:
        (flags / "go").touch()
        worker.join()

    # Then the swap rolled back: the lease was checked in its own transaction before COMMIT
    job = get_restore(schema, requested.body["id"])
    assert (job["status"], job["error_code"]) == ("failed", "stale"), job
    assert checksums(db.admin_url, schema) == before
    assert schemas_like(db.admin_url, schema) == [schema]
    assert lock_rows(db.admin_url, schema) == [("backup", taken.body["id"])]


def test_the_store_dying_mid_upload_leaves_parts_the_sweeper_removes_once_it_is_back(
    lease_env, clinic_factory, sqs, tools, s3_server, bucket, database_url, monkeypatch
):
    # Given the functions reaching the store through a connection that can die
    endpoint = urlparse(s3_server.endpoint_url)
    proxy = TcpProxy((endpoint.hostname or "127.0.0.1", endpoint.port or 80))
    monkeypatch.setenv("S3_ENDPOINT_URL", proxy.url)
    schema = clinic_factory(patients=50)
    flags = tools("pg_dump", DUMP_THEN_STALL, JUNK_MB=6)
    first = post_backup(schema)
    assert first.status == 202
    worker = threading.Thread(target=sqs.drain_into_worker)
    worker.start()
    try:
        # When the store dies after the first part was uploaded
        wait_until(lambda: any(open_uploads(s3_server, bucket, schema).values()), what="a part")
        proxy.kill()
        (flags / "go").touch()
    finally:
        worker.join()

    # Then the backup failed, saying its parts are still there and will be removed
    failed = record_row(database_url, schema, first.body["id"])
    assert (failed["status"], failed["error_code"]) == ("failed", "storage_failed"), failed
    assert "will be removed" in failed["error"]
    assert list(open_uploads(s3_server, bucket, schema)) != []
    reset_caches()
    svc = build_services(get_settings(OperatorSettings))
    # And a sweep while the store is still down removes nothing (and says so)...
    report = sweeper.sweep(svc, [schema], orphans=False)
    assert report.uploads_aborted == 0 and report.errors >= 1
    # ...and the first sweep once it is back removes them, and the record says so
    proxy.revive()
    assert sweeper.sweep(svc, [schema], orphans=False).uploads_aborted == 1
    assert open_uploads(s3_server, bucket, schema) == {}
    assert "removed" in record_row(database_url, schema, first.body["id"])["error"]
    assert "will be removed" not in record_row(database_url, schema, first.body["id"])["error"]
    proxy.kill()


def test_a_renewal_never_waits_long_for_the_swap_holding_the_lock_table(
    lease_env, clinic_factory, database_url
):
    # Given a backup's lease, and a session holding the clinic's lock table the way a swap
    # does while it moves the service's tables back (ACCESS EXCLUSIVE until its COMMIT)
    from clinic_backups.domain.models import Lease, Trigger
    from clinic_backups.usecases import backups as service

    schema = clinic_factory(patients=10)
    svc = build_services(get_settings(OperatorSettings))
    record = service.start_backup(
        svc, schema, trigger=Trigger.MANUAL, actor_id="u", actor_name=None
    )
    lease = Lease.new(LEASE)
    assert svc.records.claim(schema, record.id, svc.clock.now(), lease) is not None
    swap = psycopg2.connect(database_url)
    with swap.cursor() as cur:
        cur.execute(
            sql.SQL("LOCK TABLE {} IN ACCESS EXCLUSIVE MODE").format(
                sql.Identifier(schema, "backup_operation_lock")
            )
        )
        # When the heartbeat renews: it gives up within its lock_timeout (next beat)
        started = time.monotonic()
        assert svc.records.renew_lease(schema, lease) is None
        assert time.monotonic() - started < 1.5
        # and a request for the clinic gives up too (409), taking nothing over
        assert post_backup(schema).status == 409
    swap.rollback()
    swap.close()
    # Then, the table free again, the lease renews as before
    assert svc.records.renew_lease(schema, lease) is True


def test_the_sweeper_never_fails_a_live_verification_only_a_dead_one(
    restore_lease_env, owned_clinic_pg15
):
    # Given a full verification running under its lease (on its own job row: it takes no lock)
    from clinic_backups.domain.models import Lease, RestoreKind, RestoreRecord, RestoreStatus

    from tests.integration.test_retention import add_backup

    db = restore_lease_env
    schema = owned_clinic_pg15(patients=10)
    svc = tiny_threshold_sweeper()
    assert svc.restores is not None
    source = add_backup(svc, schema, svc.clock.now())
    job = svc.restores.create(
        schema,
        RestoreRecord(
            id=uuid.uuid4(),
            kind=RestoreKind.VERIFY,
            status=RestoreStatus.PENDING,
            backup_id=source.id,
            requested_by="u",
            created_at=svc.clock.now(),
        ),
        take_lock=False,
    )
    assert svc.restores.claim(schema, job.id, "verifying", svc.clock.now(), Lease.new(60))
    time.sleep(1.2)  # longer than the one-second stuck threshold
    # When the sweeper runs, it is left alone
    assert sweeper.sweep(svc, [schema], orphans=False).restores_failed == 0
    # Once its lease has expired (its worker died), it fails as stale
    with psycopg2.connect(db.admin_url) as conn, conn.cursor() as cur:
        cur.execute(
            sql.SQL("UPDATE {} SET renewed_at = now() - interval '2 minutes'").format(
                sql.Identifier(schema, "backup_restores")
            )
        )
    conn.close()
    assert sweeper.sweep(svc, [schema], orphans=False).restores_failed == 1
    failed = svc.restores.get(schema, job.id)
    assert (failed.status, failed.error_code) == (RestoreStatus.FAILED, "stale")
