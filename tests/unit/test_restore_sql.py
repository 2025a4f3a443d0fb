"""The restore's pure pieces: the COPY-aware SQL filter, the swap script, kept schema names,
job messages and the restore queue's template contract."""

from __future__ import annotations

import re
import uuid

import pytest
from clinic_backups.adapters.migrations import MIGRATIONS
from clinic_backups.adapters.pgrestore import (
    SqlFilter,
    classify_psql_error,
    erasure_sql,
    same_server,
    swap_lock,
    swap_prefix,
    swap_suffix,
    undo_script,
)
from clinic_backups.domain.errors import (
    ClinicBusy,
    MissingDependency,
    OutsideDependents,
    RestoreFailed,
    RestoreInterrupted,
)
from clinic_backups.domain.models import BackupJob, LightVerifyJob, RestoreJob
from clinic_backups.domain.names import OWNED_TABLES, kept_schema_name
from clinic_backups.domain.ports import SwapPlan, UndoPlan
from clinic_backups.edge.jobs import InvalidJob, parse_job
from pydantic import ValidationError

from tests.unit.test_contracts import sam_template

ARCHIVE_SQL = b"""--
-- PostgreSQL database dump
--
\\restrict abc
SET statement_timeout = 0;
SET transaction_timeout = 0;
SELECT pg_catalog.set_config('search_path', '', false);
CREATE SCHEMA clinica_x;
CREATE TABLE clinica_x.notes (
    id integer NOT NULL,
    body text
);
ALTER TABLE ONLY clinica_x.notes ALTER COLUMN id SET (pg_attver=1);
COPY clinica_x.notes (id, body) FROM stdin;
1\tSET transaction_timeout = 0;
2\tCREATE SCHEMA clinica_x;
3\tlinea con \\\\. y \\n escapados
\\.
COPY clinica_x."Empty" (id) FROM stdin;
\\.
ALTER TABLE ONLY clinica_x.notes
    ADD CONSTRAINT notes_user_fkey FOREIGN KEY (user_id) REFERENCES public.users(id);
ALTER TABLE ONLY clinica_x.notes
    ADD CONSTRAINT notes_self_fkey FOREIGN KEY (parent) REFERENCES clinica_x.notes(id);
\\unrestrict abc
"""


def run_filter(chunk_size: int, **options: bool) -> tuple[bytes, SqlFilter]:
    out: list[bytes] = []
    filt = SqlFilter(out.append, "clinica_x", **options)
    for start in range(0, len(ARCHIVE_SQL), chunk_size):
        filt.feed(ARCHIVE_SQL[start : start + chunk_size])
    filt.close()
    return b"".join(out), filt


@pytest.mark.parametrize("chunk_size", [1, 3, 7, 64, 100_000])
def test_the_filter_drops_statements_but_never_copy_rows_whatever_the_reads(chunk_size):
    text, filt = run_filter(
        chunk_size,
        drop_transaction_timeout=True,
        drop_create_schema=True,
        drop_foreign_fks=True,
        drop_column_options=True,
    )
    assert b"SET transaction_timeout = 0;\nSELECT" not in text
    assert b"\nCREATE SCHEMA clinica_x;\n" not in text
    # rows that read like statements stay, byte for byte
    assert b"1\tSET transaction_timeout = 0;\n2\tCREATE SCHEMA clinica_x;\n" in text
    assert filt.counts == {"notes": 3, "Empty": 0}
    assert filt.skipped_foreign_keys == ["notes_user_fkey"]
    assert b"notes_self_fkey" in text
    assert filt.skipped_column_options == 1 and b"pg_attver" not in text
    assert filt.dropped_create_schema
    assert text.endswith(b"\\unrestrict abc\n")


def test_without_options_the_filter_passes_everything_through_and_counts():
    text, filt = run_filter(5)
    assert text == ARCHIVE_SQL
    assert filt.counts == {"notes": 3, "Empty": 0}


def test_a_stream_that_ends_inside_copy_data_is_refused():
    from clinic_backups.domain.errors import ArchiveInvalid

    filt = SqlFilter(None, "clinica_x")
    filt.feed(b"COPY clinica_x.notes (id) FROM stdin;\n1\n2\n")
    with pytest.raises(ArchiveInvalid):
        filt.close()


# A transaction statement of the script's own, not PL/pgSQL's `BEGIN`, `END LOOP;`, `END`.
ENDS_TRANSACTION = re.compile(
    r"^\s*(BEGIN|COMMIT|ROLLBACK|END|ABORT|START TRANSACTION)\s*;", re.MULTILINE | re.IGNORECASE
)


def plan() -> SwapPlan:
    return SwapPlan(
        schema="clinica_x",
        old_schema="clinica_x__rabcdef0123",
        owner="clinic_app",
        server_major=15,
        completion_sql="SELECT 'done';",
    )


def test_the_swap_locks_renames_and_leaves_the_transaction_to_the_session():
    prefix, suffix = swap_prefix(plan(), "30s"), swap_suffix(plan(), "30s")
    order = [
        prefix.index("LOCK TABLE %s IN EXCLUSIVE MODE NOWAIT"),
        prefix.index("EXCEPTION WHEN lock_not_available"),
        prefix.index("pg_sleep"),
        prefix.index("\\echo cb:locked"),
        prefix.index("pg_export_snapshot()"),
        prefix.index("\\echo cb:snapshot=:cb_snapshot"),
        # the views outside the clinic: described, then dropped, before the rename
        prefix.index("pg_get_viewdef(c.oid)"),
        prefix.index("EXECUTE pg_catalog.format('DROP %s %I.%I'"),
        prefix.index("\\echo cb:views=:cb_views"),
        prefix.index('ALTER SCHEMA "clinica_x" RENAME TO "clinica_x__rabcdef0123"'),
        prefix.index('CREATE SCHEMA "clinica_x" AUTHORIZATION "clinic_app"'),
        prefix.index("\\echo cb:swapped"),
        prefix.index("ALTER DEFAULT PRIVILEGES"),
        prefix.index('SET ROLE "clinic_app"'),
    ]
    assert order == sorted(order)
    # the session writes BEGIN first and COMMIT only once every check passed
    # (PsqlSession.end): the script itself never ends the transaction
    assert not ENDS_TRANSACTION.search(prefix) and not ENDS_TRANSACTION.search(suffix)
    order = [
        suffix.index("RESET ROLE"),
        suffix.index("REVOKE ALL ON"),
        suffix.index("GRANT %s (%s) ON TABLE"),
        suffix.index("SET SCHEMA %I"),
        # created again over the restored tables, then nothing outside may be left on the
        # kept schema
        suffix.index("EXECUTE pg_catalog.format('CREATE %s %s%s AS %s%s'"),
        suffix.index("'clinica_x__rabcdef0123'", suffix.index("CREATE %s %s%s AS")),
        suffix.index("SELECT 'done';"),
    ]
    assert order == sorted(order)
    # the lock phase locks those views too, each try, without waiting more than 50 ms
    assert prefix.index("ALTER %s %I.%I OWNER TO %I") < prefix.index("EXCEPTION WHEN")
    for table in OWNED_TABLES:
        assert f"'{table}'" in suffix and f"'{table}'" in prefix  # moved back, never locked


def test_the_dry_run_locks_nothing_and_rolls_back():
    prefix, suffix = (
        swap_prefix(plan(), "30s", dry_run=True),
        swap_suffix(plan(), "30s", dry_run=True),
    )
    assert "LOCK TABLE" not in prefix and "SELECT 'done';" not in suffix
    assert "COMMIT" not in suffix  # PsqlSession.end(commit=False) writes ROLLBACK


def test_the_undo_swaps_back_in_one_script():
    script = undo_script(
        UndoPlan("clinica_x", "clinica_x__rabcdef0123", "clinica_x__uabcdef0123", "SELECT 1;"),
        "5s",
    )
    order = [
        script.index("\\echo cb:locked"),
        script.index("EXECUTE pg_catalog.format('DROP %s %I.%I'"),
        script.index('RENAME TO "clinica_x__uabcdef0123"'),
        script.index('ALTER SCHEMA "clinica_x__rabcdef0123" RENAME TO "clinica_x"'),
        script.index("\\echo cb:swapped"),
        script.index("EXECUTE pg_catalog.format('CREATE %s %s%s AS %s%s'"),
        script.index("'clinica_x__uabcdef0123'", script.index("CREATE %s %s%s AS")),
        script.index("SELECT 1;"),
    ]
    assert order == sorted(order)
    assert not ENDS_TRANSACTION.search(script)


ERASURE = ("public", "reapply_erasures")


def test_the_erasure_hook_runs_after_the_tables_move_back_and_before_the_completion():
    call = """SELECT "public"."reapply_erasures"('clinica_x'::text);"""
    suffix = swap_suffix(plan(), "30s", erasure=ERASURE)
    assert suffix.index("SET SCHEMA %I") < suffix.index(call) < suffix.index("SELECT 'done';")
    assert not ENDS_TRANSACTION.search(suffix)
    # the dry run calls it too (a missing function fails the pre-check); unset: no call
    assert call in swap_suffix(plan(), "30s", dry_run=True, erasure=ERASURE)
    assert "reapply" not in swap_suffix(plan(), "30s")
    undo = undo_script(
        UndoPlan("clinica_x", "clinica_x__rabcdef0123", "clinica_x__uabcdef0123", "SELECT 1;"),
        "5s",
        ERASURE,
    )
    assert undo.index("SET SCHEMA %I") < undo.index(call) < undo.index("SELECT 1;")


def test_materialized_views_are_filled_after_the_erasure_hook():
    call = """SELECT "public"."reapply_erasures"('clinica_x'::text);"""
    suffix = swap_suffix(plan(), "30s", erasure=ERASURE)
    assert suffix.index(call) < suffix.index("CREATE %s %s%s AS %s%s")


def test_the_swap_session_sets_its_own_idle_timeout_before_it_locks():
    lock = swap_lock(plan(), "30s", idle_seconds=870.4)
    assert lock.startswith("SET idle_in_transaction_session_timeout = '870s';\n")
    assert lock.index("idle_in_transaction") < lock.index("LOCK TABLE")
    assert "idle_in_transaction" not in swap_lock(plan(), "30s")


def test_the_erasure_hook_quotes_its_names_and_checks_the_clinic():
    assert erasure_sql(('we"ird', "f"), "clinica-x") == (
        """SELECT "we""ird"."f"('clinica-x'::text);\n"""
    )
    with pytest.raises(ValueError):
        erasure_sql(ERASURE, "x'); DROP SCHEMA y; --")


@pytest.mark.parametrize(
    "value",
    [
        "reapply",
        "public.f\n",
        "public.f;drop",
        "a.b.c",
        '"public".f',
        "public.",
        ".f",
        "public.f()",
        "1x.f",
    ],
)
def test_the_erasure_setting_is_a_plain_qualified_name(value, monkeypatch):
    from clinic_backups.wiring.settings import RestoreSettings

    with pytest.raises(ValidationError) as refused:
        RestoreSettings.model_validate({**RESTORE_SETTINGS, "restore_erasure_function": value})
    assert [e["loc"] for e in refused.value.errors()] == [("restore_erasure_function",)]


def test_the_erasure_setting_reaches_the_swapper():
    from clinic_backups.wiring.settings import RestoreSettings

    settings = RestoreSettings.model_validate(
        {**RESTORE_SETTINGS, "restore_erasure_function": "host_app.Reapply_Erasures"}
    )
    assert settings.erasure_function == ("host_app", "Reapply_Erasures")
    unset = RestoreSettings.model_validate({**RESTORE_SETTINGS, "restore_erasure_function": ""})
    assert unset.erasure_function is None


RESTORE_SETTINGS = {
    "database_url": "postgresql://u@127.0.0.1/db",
    "jwt_secret": "s" * 32,
    "jwt_issuer": "i",
    "jwt_audience": "a",
    "storage_backend": "s3",
    "job_queue_url": "https://sqs.eu-west-1.amazonaws.com/1/q",
    "restore_queue_url": "https://sqs.eu-west-1.amazonaws.com/1/r",
    "platform_age_recipients": "age1zvkyg2lqzraa2lnjvqej32nkuu0ues2s82hzrye869xeexvn73equnujwj",
}


def test_names_going_into_the_script_are_checked():
    bad = SwapPlan('x"; DROP TABLE y; --', "old", "clinic_app", 15, "")
    with pytest.raises(ValueError):
        swap_prefix(bad, "30s")


def test_kept_schema_names_are_short_unique_and_never_the_clinic():
    long_name = "c" * 63
    restore_id = uuid.uuid4()
    kept = kept_schema_name(long_name, restore_id, "r")
    assert len(kept.encode()) <= 63 and kept != long_name
    assert kept_schema_name(long_name, uuid.uuid4(), "r") != kept
    assert kept_schema_name("clinica_x", restore_id, "u") != kept_schema_name(
        "clinica_x", restore_id, "r"
    )
    assert re.fullmatch(r"clinica_x__r[0-9a-f]{10}", kept_schema_name("clinica_x", restore_id, "r"))
    with pytest.raises(ValueError):
        kept_schema_name("pg_catalog", restore_id, "r")


@pytest.mark.parametrize(
    ("rc", "stderr", "kind"),
    [
        (-9, [], RestoreInterrupted),
        (
            2,
            ["psql: FATAL:  terminating connection due to administrator command"],
            RestoreInterrupted,
        ),
        (3, ["psql:<stdin>:9: ERROR:  canceling statement due to lock timeout"], ClinicBusy),
        (3, ['psql:<stdin>:9: ERROR:  type "shared.mood" does not exist'], MissingDependency),
        (3, ['ERROR:  relation "public.users" does not exist'], MissingDependency),
        (3, ["ERROR:  permission denied for schema x"], RestoreFailed),
        (
            3,
            [
                "psql:<stdin>:90: ERROR:  cb:outside_dependents 1 object(s) outside the clinic "
                "depend on its tables (made during the restore?)"
            ],
            OutsideDependents,
        ),
        (
            3,
            ['ERROR:  insert or update on table "notes" violates foreign key constraint "f"'],
            RestoreFailed,
        ),
    ],
)
def test_psql_failures_become_documented_codes(rc, stderr, kind):
    error = classify_psql_error(rc, stderr, check=False)
    assert isinstance(error, kind)
    assert "nothing changed" in error.message


def test_a_server_is_the_same_whatever_the_database_or_role():
    assert same_server("postgresql://a@127.0.0.1:5432/x", "postgresql://b@localhost:5432/y")
    assert not same_server("postgresql://a@127.0.0.1:5432/x", "postgresql://a@127.0.0.1:5433/x")


def test_job_messages_keep_the_backup_shape_and_add_the_restore_kinds():
    backup_id, restore_id = uuid.uuid4(), uuid.uuid4()
    backup = parse_job(
        {"kind": "backup", "schema": "c1", "backup_id": str(backup_id), "trigger": "manual"}
    )
    assert isinstance(backup, BackupJob)
    assert backup.to_message() == {
        "kind": "backup",
        "schema": "c1",
        "backup_id": str(backup_id),
        "trigger": "manual",
    }
    for kind in ("restore", "verify", "undo"):
        job = parse_job({"kind": kind, "schema": "c1", "restore_id": str(restore_id)})
        assert isinstance(job, RestoreJob) and job.to_message()["restore_id"] == str(restore_id)
    light = parse_job({"kind": "verify_light", "schema": "c1", "backup_id": str(backup_id)})
    assert isinstance(light, LightVerifyJob)
    for bad in (
        {"kind": "restore", "schema": "c1", "restore_id": str(restore_id), "token": "x"},
        {"kind": "drop", "schema": "c1"},
        {"kind": "undo", "schema": "public", "restore_id": str(restore_id)},
    ):
        with pytest.raises(InvalidJob):
            parse_job(bad)


def test_the_dispatcher_routes_by_kind(monkeypatch):
    from clinic_backups.adapters.queues import SqsDispatcher

    sent: list[tuple[str, str]] = []

    class Client:
        def send_message(self, QueueUrl: str, MessageBody: str) -> None:
            sent.append((QueueUrl, MessageBody))

    dispatcher = SqsDispatcher("backups-url", Client(), restore_queue_url="restores-url")
    dispatcher.enqueue(
        BackupJob(kind="backup", schema="c1", backup_id=uuid.uuid4(), trigger="manual")
    )
    dispatcher.enqueue(LightVerifyJob(kind="verify_light", schema="c1", backup_id=uuid.uuid4()))
    dispatcher.enqueue(RestoreJob(kind="restore", schema="c1", restore_id=uuid.uuid4()))
    assert [url for url, _ in sent] == ["backups-url", "restores-url", "restores-url"]


def test_owned_tables_have_no_sequences():
    statements = " ".join(s for _, batch in MIGRATIONS for s in batch).lower()
    assert "serial" not in statements and "identity" not in statements
    assert "nextval" not in statements


def test_the_restore_queue_outlives_its_worker_and_has_its_own_concurrency():
    resources = sam_template()["Resources"]
    worker = resources["RestoreBackupFunction"]["Properties"]
    queue = resources["RestoreJobQueue"]["Properties"]
    assert queue["VisibilityTimeout"] > worker["Timeout"] == 900
    assert queue["RedrivePolicy"]["deadLetterTargetArn"] == {
        "Fn::GetAtt": ["RestoreJobDeadLetterQueue", "Arn"]
    }
    event = worker["Events"]["RestoreJobs"]["Properties"]
    assert event["Queue"] == {"Fn::GetAtt": ["RestoreJobQueue", "Arn"]}
    assert event["BatchSize"] == 1
    assert event["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    assert event["ScalingConfig"]["MaximumConcurrency"] == {"Ref": "RestoreMaximumConcurrency"}
    assert sam_template()["Parameters"]["RestoreMaximumConcurrency"]["Default"] == 2
    # every function that queues restore-queue jobs knows the queue
    for name in ("CreateBackupFunction", "RestoreBackupFunction", "SchedulerFunction"):
        variables = resources[name]["Properties"]["Environment"]["Variables"]
        assert variables["RESTORE_QUEUE_URL"] == {"Ref": "RestoreJobQueue"}
    assert {"Ref": "PgDumpLayer"} in worker["Layers"]
