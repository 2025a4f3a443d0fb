"""Issue 18's done-when, with the real django-tenants host: the app commits a Patient →
Appointment → Invoice `transaction.atomic()` through the ORM every 50 ms (100 ms between its
inserts) while the clinic is restored 20 times in a row. Every restore completes, the app
never meets a deadlock (or any error), and every write the app saw committed is in the live
clinic afterwards or in the pre-restore backup of a restore that followed it. A `public`
view over the clinic (granted to the reporting role) reads the restored data afterwards.

How long the app's writes waited for the restores (their lock wait) and how long the run took
are printed (`-s`): docs/restore.md quotes them. RESTORES_WHILE_DJANGO_WRITES sets how many
restores (default 20, the issue's number).
"""

from __future__ import annotations

import os
import re
import secrets
import statistics
import threading
import time
from datetime import UTC, date, datetime
from typing import Any

import psycopg2
from psycopg2 import sql

from devstack import demo
from tests.integration.django_host.conftest import REPORTING_ROLE, DjangoHost, create_tenant
from tests.integration.django_host.test_round_trip import populate, run_cli
from tests.integration.restore_support import archived_table_data, backup, restore

RESTORES = int(os.environ.get("RESTORES_WHILE_DJANGO_WRITES", "20"))
# The app sleeps this long inside each transaction (two pauses of 100 ms between its inserts):
# what a transaction takes beyond it is time spent waiting (for the restore's locks).
SLEEPS_PER_TRANSACTION = 0.2
WRITER_NAME = re.compile(r"Escritor W[0-9]{8}")


class DjangoWriter(threading.Thread):
    """The app: Patient → Appointment → Invoice in one `atomic()`, 100 ms between the inserts,
    a new transaction 50 ms after each COMMIT. Remembers every committed patient's name, every
    error by its SQLSTATE, and how long each transaction waited beyond its own pauses."""

    def __init__(self, schema: str):
        super().__init__(daemon=True, name="django-writer")
        self.schema = schema
        self.stop = threading.Event()
        self.committed: list[str] = []
        self.errors: dict[str, int] = {}
        self.messages: list[str] = []
        self.waits: list[float] = []

    def run(self) -> None:
        from django.db import DatabaseError, connection, transaction
        from django_tenants.utils import schema_context

        from tests.django_fixture.clinic.models import Appointment, Invoice, Patient

        n = 0
        try:
            with schema_context(self.schema):
                while not self.stop.is_set():
                    n += 1
                    name = f"Escritor W{n:08d}"
                    started = time.monotonic()
                    try:
                        with transaction.atomic():
                            patient = Patient.objects.create(name=name, birth_date=date(1990, 1, 1))
                            time.sleep(0.1)
                            appointment = Appointment.objects.create(
                                patient=patient, at=datetime.now(UTC), status="scheduled"
                            )
                            time.sleep(0.1)
                            Invoice.objects.create(appointment=appointment, amount_cents=1000)
                        self.committed.append(name)
                        self.waits.append(
                            max(0.0, time.monotonic() - started - SLEEPS_PER_TRANSACTION)
                        )
                    except DatabaseError as error:
                        cause = error.__cause__
                        code = getattr(cause, "pgcode", None) or type(error).__name__
                        self.errors[code] = self.errors.get(code, 0) + 1
                        self.messages.append(str(error).splitlines()[0] if str(error) else code)
                    time.sleep(0.05)
        finally:
            connection.close()


def live_names(url: str, schema: str) -> set[str]:
    with psycopg2.connect(url) as conn, conn.cursor() as cur:
        cur.execute(
            sql.SQL("SELECT name FROM {} WHERE name LIKE 'Escritor W%%'").format(
                sql.Identifier(schema, "clinic_patient")
            )
        )
        found = {row[0] for row in cur.fetchall()}
    conn.close()
    return found


def archived_names(schema: str, backup_id: str) -> set[str]:
    """The app's patients in a stored backup: the archive read back (sha256 checked) and its
    clinic_patient COPY data written out by pg_restore."""
    out = archived_table_data(schema, backup_id, "clinic_patient")
    return set(WRITER_NAME.findall(out))


def create_report_view(url: str, schema: str, view: str) -> None:
    """A host's report in `public` over the clinic, the app's own, granted to the reporting
    role."""
    with psycopg2.connect(url) as conn, conn.cursor() as cur:
        cur.execute(sql.SQL("SET ROLE {}").format(sql.Identifier(demo.APP_ROLE)))
        cur.execute(
            sql.SQL(
                "CREATE VIEW {} AS SELECT count(*) AS invoices, sum(amount_cents) AS cents FROM {}"
            ).format(sql.Identifier("public", view), sql.Identifier(schema, "clinic_invoice"))
        )
        cur.execute(
            sql.SQL("GRANT SELECT ON {} TO {}").format(
                sql.Identifier("public", view), sql.Identifier(REPORTING_ROLE)
            )
        )
    conn.close()


def one_row(url: str, query: sql.Composable) -> tuple[Any, ...]:
    with psycopg2.connect(url) as conn, conn.cursor() as cur:
        cur.execute(query)
        row = tuple(cur.fetchone())
    conn.close()
    return row


def test_twenty_restores_while_the_django_app_writes(host_env: DjangoHost, sqs, restore_sqs):
    host = host_env
    schema = f"escritura-{host.suffix}-{secrets.token_hex(3)}"
    create_tenant(schema, "Clínica que escribe durante la restauración")
    assert run_cli("grant", schema)[0] == 0
    populate(schema, patients=20, seed=18)
    view = f"facturas_{schema.replace('-', '_')}"
    create_report_view(host.admin_url, schema, view)
    try:
        # Given a backup of the clinic, and the app writing into it throughout
        source = backup(schema, sqs)
        assert source["status"] == "completed", source
        writer = DjangoWriter(schema)
        writer.start()
        jobs: list[dict[str, Any]] = []
        started = time.monotonic()
        try:
            time.sleep(0.5)
            # When the backup is restored again and again
            for _ in range(RESTORES):
                jobs.append(restore(schema, source["id"], restore_sqs))
            time.sleep(0.5)
        finally:
            writer.stop.set()
            writer.join(timeout=60)
        run_seconds = time.monotonic() - started

        # Then every restore completed, and the app met no deadlock and no error at all
        statuses = [(job["status"], job.get("error_code")) for job in jobs]
        waited = [w for w in writer.waits if w > 0.05]
        locks = [float(job.get("lock_seconds") or 0) for job in jobs]
        dumps = [float(job["timings"].get("pre_restore_backup_seconds", 0)) for job in jobs]
        print(
            f"\n{RESTORES} restores in {run_seconds:.1f}s while the django app wrote: "
            f"{statuses.count(('completed', None))} completed; app: "
            f"{len(writer.committed)} transactions committed, errors {writer.errors}\n"
            f"app's lock wait per transaction: max {max(writer.waits):.2f}s, median "
            f"{statistics.median(writer.waits):.3f}s; of the {len(waited)} that waited "
            f"(> 50 ms): median {statistics.median(waited) if waited else 0:.2f}s\n"
            f"writes paused per restore (lock_seconds): max {max(locks):.2f}s, median "
            f"{statistics.median(locks):.2f}s; pre-restore backup under the lock: max "
            f"{max(dumps):.2f}s, median {statistics.median(dumps):.2f}s"
        )
        assert statuses == [("completed", None)] * RESTORES, jobs
        assert "40P01" not in writer.errors, writer.messages
        assert writer.errors == {}, writer.messages
        assert len(writer.committed) > RESTORES

        # And every write the app saw committed is in the live clinic (after the last
        # restore) or in the pre-restore backup of a restore that replaced it
        live = live_names(host.admin_url, schema)
        assert live <= set(writer.committed)
        backed_up: set[str] = set()
        for job in jobs:
            backed_up |= archived_names(schema, job["pre_restore_backup_id"])
        lost = set(writer.committed) - live - backed_up
        print(
            f"app's writes: {len(writer.committed)} acknowledged, {len(live)} live, "
            f"{len(backed_up)} in pre-restore backups, {len(lost)} lost"
        )
        assert lost == set(), sorted(lost)

        # And the public report reads the clinic as restored, still granted
        invoices = one_row(
            host.admin_url,
            sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(schema, "clinic_invoice")),
        )[0]
        assert one_row(
            host.admin_url,
            sql.SQL("SELECT invoices FROM {}").format(sql.Identifier("public", view)),
        ) == (invoices,)
        assert one_row(
            host.admin_url,
            sql.SQL("SELECT has_table_privilege({}, {}, 'SELECT')").format(
                sql.Literal(REPORTING_ROLE), sql.Literal(f"public.{view}")
            ),
        ) == (True,)
    finally:
        with psycopg2.connect(host.admin_url) as conn, conn.cursor() as cur:
            cur.execute(sql.SQL("DROP VIEW IF EXISTS {}").format(sql.Identifier("public", view)))
        conn.close()
