"""A real django-tenants 4.0.1 application (tests/django_fixture) backed up and restored:
tenants with a dashed name, an inactive one, one created after deployment and one cloned from
a base schema (TENANT_BASE_SCHEMA, clone_schema). One session, one story, in order: the steps
share the tenants (creating a django-tenants tenant migrates it: seconds each)."""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
from datetime import UTC, date, datetime, timedelta
from typing import Any

import psycopg2
import pytest
from clinic_backups.edge import cli
from psycopg2 import sql

from devstack import demo
from tests.helpers import FixedClock, function_module, invoke, load_event
from tests.integration.django_host.conftest import DjangoHost, create_tenant
from tests.integration.restore_support import (
    backup,
    checksums,
    privileges,
    restore,
    structure,
    undo,
)

BACKUP_TABLES = ("backup_meta", "backup_records", "backup_operation_lock")


def populate(schema: str, patients: int, seed: int) -> None:
    """Data through the ORM: FKs, M2M, a generic relation, auth users and groups."""
    from django.contrib.auth.models import Group, User
    from django_tenants.utils import schema_context

    from tests.django_fixture.clinic.models import Appointment, Invoice, Note, Patient, Tag

    with schema_context(schema):
        tags = [Tag.objects.create(name=f"tag-{i}") for i in range(3)]
        group = Group.objects.create(name="recepción")
        user = User.objects.create_user(f"recepcion-{seed}", password=None)
        user.groups.add(group)
        for i in range(patients):
            p = Patient.objects.create(
                name=f"Paciente {seed}-{i}", birth_date=date(1950 + i % 60, 1 + i % 12, 1)
            )
            p.tags.set(tags[: i % 4])
            a = Appointment.objects.create(
                patient=p,
                at=datetime(2026, 1, 1, tzinfo=UTC) + timedelta(hours=i),
                status="scheduled" if i % 3 else "done",
            )
            Invoice.objects.create(appointment=a, amount_cents=1000 + i)
            if i % 5 == 0:
                Note.objects.create(target=p, text=f"nota {i}")


def mutate(schema: str) -> None:
    """What a clinic does after its backup, through the ORM."""
    from django_tenants.utils import schema_context

    from tests.django_fixture.clinic.models import Appointment, Invoice, Note, Patient

    with schema_context(schema):
        Invoice.objects.filter(pk__in=Invoice.objects.values("pk")[:5]).delete()
        Appointment.objects.filter(status="scheduled").update(status="cancelled")
        for p in Patient.objects.order_by("pk")[:10]:
            p.name = p.name + " (editado)"
            p.save()
            p.tags.clear()
        Note.objects.all().delete()
        Patient.objects.create(name="Nuevo", birth_date=date(2000, 1, 1))


def orm_checksum(schema: str) -> str:
    """Every row of the clinic's models and M2M tables, in primary key order, as the ORM reads
    them."""
    from django.contrib.auth.models import Group, User
    from django_tenants.utils import schema_context

    from tests.django_fixture.clinic.models import Appointment, Invoice, Note, Patient, Tag

    digest = hashlib.sha256()
    with schema_context(schema):
        for model in (Tag, Patient, Patient.tags.through, Appointment, Invoice, Note, User, Group):
            for row in model.objects.order_by("pk").values():
                digest.update(repr(sorted(row.items())).encode())
    return digest.hexdigest()


def catalog(url: str, schema: str) -> dict[str, Any]:
    """Triggers and django_migrations beside restore_support's structure and privileges."""
    with psycopg2.connect(url) as conn, conn.cursor() as cur:
        cur.execute(
            "SELECT c.relname, t.tgname, pg_get_triggerdef(t.oid) FROM pg_trigger t "
            "JOIN pg_class c ON c.oid = t.tgrelid JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE n.nspname = %s AND NOT t.tgisinternal ORDER BY 1, 2",
            (schema,),
        )
        triggers = cur.fetchall()
        cur.execute(
            sql.SQL("SELECT app, name FROM {} ORDER BY app, name").format(
                sql.Identifier(schema, "django_migrations")
            )
        )
        migrations = cur.fetchall()
    conn.close()
    return {
        "triggers": [
            (t, n, d.replace(f'"{schema}".', "").replace(f"{schema}.", "")) for t, n, d in triggers
        ],
        "migrations": migrations,
        "structure": structure(url, schema, owned=False),
        "privileges": privileges(url, schema),
    }


def run_cli(*argv: str) -> tuple[int, Any, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        rc = cli.main(list(argv))
    return rc, json.loads(out.getvalue()) if out.getvalue().strip() else None, err.getvalue()


def table_owners(url: str, schema: str) -> dict[str, str]:
    with psycopg2.connect(url) as conn, conn.cursor() as cur:
        cur.execute(
            "SELECT c.relname, pg_get_userbyid(c.relowner) FROM pg_class c "
            "JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE n.nspname = %s AND c.relname LIKE 'backup\\_%%' AND c.relkind = 'r'",
            (schema,),
        )
        owners = dict(cur.fetchall())
    conn.close()
    return owners


def records(url: str, schema: str) -> list[str]:
    with psycopg2.connect(url) as conn, conn.cursor() as cur:
        cur.execute(
            sql.SQL("SELECT storage_key FROM {}").format(sql.Identifier(schema, "backup_records"))
        )
        keys = [r[0] for r in cur.fetchall()]
    conn.close()
    return keys


def give_tables(host: DjangoHost, schema: str, role: str) -> None:
    with psycopg2.connect(host.admin_url) as conn, conn.cursor() as cur:
        for table in table_owners(host.admin_url, schema):
            cur.execute(
                sql.SQL("ALTER TABLE {} OWNER TO {}").format(
                    sql.Identifier(schema, table), sql.Identifier(role)
                )
            )
    conn.close()


def scheduled(host: DjangoHost, schema: str) -> bool:
    """Whether the clinic has a completed backup of the scheduler."""
    with psycopg2.connect(host.admin_url) as conn, conn.cursor() as cur:
        cur.execute("SELECT to_regclass(%s)", (f'"{schema}".backup_records',))
        if cur.fetchone()[0] is None:
            return False
        cur.execute(
            sql.SQL(
                "SELECT count(*) FROM {} WHERE trigger = 'scheduled' AND status = 'completed'"
            ).format(sql.Identifier(schema, "backup_records"))
        )
        found = bool(cur.fetchone()[0])
    conn.close()
    return found


def test_django_tenants_host_round_trip(
    host_env: DjangoHost, monkeypatch: pytest.MonkeyPatch, sqs, restore_sqs, s3_server, bucket
):
    host = host_env
    sfx = host.suffix
    clinic = f"clinica_{sfx}"
    dashed = f"dunder-mifflin-{sfx}"
    inactive = f"inactiva_{sfx}"
    base = f"base_{sfx}"
    unsupported = f"clinica/norte-{sfx}"

    # Given a django-tenants host with several tenants of different sizes
    for i, (schema, active) in enumerate(
        [(clinic, True), (dashed, True), (inactive, False), (base, True)]
    ):
        create_tenant(schema, f"Clínica {schema}", active=active)
        populate(schema, patients=20 + 7 * i, seed=i)
    # and one that django-tenants accepts but the product cannot store under its own prefix
    create_tenant(unsupported, "Clínica con barra")

    # When the operator deploys: `grant` once, then `migrate` as the restore role
    rc, granted, _ = run_cli("grant")
    assert rc == 0, granted
    assert {clinic, dashed, inactive, base} <= set(granted["clinics"])
    assert any(
        "ALTER DEFAULT PRIVILEGES FOR ROLE" in s and "ON SCHEMAS" in s for s in granted["sql"]
    )
    assert any(f'GRANT USAGE, CREATE ON SCHEMA "{dashed}"' in s for s in granted["sql"])
    rc_again, again, _ = run_cli("grant")
    assert rc_again == 0 and again["sql"] == granted["sql"]  # idempotent, same SQL

    monkeypatch.setenv("DATABASE_URL", host.restore_url)
    rc, migrated, err = run_cli("migrate")
    monkeypatch.setenv("DATABASE_URL", host.backup_url)
    function_module("scheduler")  # the functions' caches start from DATABASE_URL again
    from tests import helpers

    helpers.reset_caches()
    # Then the dashed clinic is migrated; the unsupported one is named, not skipped silently
    assert dashed in migrated["migrated"] and unsupported in migrated["unsupported"], migrated
    assert rc == 1 and "cannot be backed up" in err
    # and the backup tables belong to the backup role, although the restore role made them
    assert set(table_owners(host.admin_url, dashed).values()) == {demo.BACKUP_ROLE}

    # Given the base schema has its own backup history
    backup(base, sqs, note="base")

    # (clone_schema keeps each table's owner: as the host's role it can clone a base whose
    # backup tables the backup role owns only if it is a member of that role. Here they are
    # the host's, as when the host's own role first touched the base: the copy case.)
    give_tables(host, base, demo.APP_ROLE)

    # When tenants are created after deployment: a new one and one cloned from the base
    newer = f"nuevo_{sfx}"
    clone = f"clon-{sfx}"
    create_tenant(newer, "Clínica Nueva")
    populate(newer, patients=11, seed=9)
    create_tenant(clone, "Clínica Clonada", base=base)

    give_tables(host, base, demo.BACKUP_ROLE)
    # Then the clone's copy of the base's backup tables is gone (post_schema_sync → grant)
    assert table_owners(host.admin_url, clone) == {}

    # When the scheduler's hourly run comes (03:10 in Madrid: everyone's default slot)
    svc = function_module("scheduler").fn.services()
    svc.clock = FixedClock(datetime(2027, 1, 12, 2, 10, tzinfo=UTC))
    summary = invoke("scheduler", load_event("scheduler/scheduled_event.json"))
    # Then the dashed, new and cloned tenants are backed up; the unsupported one is an error
    sqs.drain_into_worker()
    backed_up = {s for s in (clinic, dashed, newer, clone, base, inactive) if scheduled(host, s)}
    assert backed_up == {clinic, dashed, newer, clone, base}, summary
    assert summary["failed_clinics"].get(unsupported) == "unsupported_name", summary
    assert summary["unsupported"] == 1
    # and the clone's history holds only its own backups, under its own prefix
    assert records(host.admin_url, clone) and all(
        k.startswith(f"{clone}/") for k in records(host.admin_url, clone)
    )

    # Round trip for the dashed clinic: backup, mutate through the ORM, restore, compare
    from django.db import connections

    source = backup(dashed, sqs, note="antes")
    restore_sqs.drain_into_worker()
    at_backup = (
        orm_checksum(dashed),
        checksums(host.admin_url, dashed),
        catalog(host.admin_url, dashed),
    )
    others = {s: checksums(host.admin_url, s) for s in (clinic, newer, "public")}
    mutate(dashed)
    mutated = (
        orm_checksum(dashed),
        checksums(host.admin_url, dashed),
        catalog(host.admin_url, dashed),
    )
    assert mutated[0] != at_backup[0]
    connections.close_all()
    job = restore(dashed, source["id"], restore_sqs)
    assert job["status"] == "completed", job
    assert (
        orm_checksum(dashed),
        checksums(host.admin_url, dashed),
        catalog(host.admin_url, dashed),
    ) == at_backup
    assert {s: checksums(host.admin_url, s) for s in (clinic, newer, "public")} == others

    # Sequences continue where the backup left them; the trigger and constraints still work
    from django.db import IntegrityError, transaction
    from django_tenants.utils import schema_context

    from tests.django_fixture.clinic.models import Invoice, Patient

    with schema_context(dashed):
        highest = Patient.objects.order_by("-pk").values_list("pk", flat=True).first()
        fresh = Patient.objects.create(name="Tras RESTAURAR", birth_date=date(1999, 9, 9))
        assert fresh.pk == highest + 1
        fresh.refresh_from_db()
        assert fresh.name_search == "tras restaurar"
        with pytest.raises(IntegrityError), transaction.atomic():
            Invoice.objects.create(appointment_id=1, amount_cents=-1)
        fresh.delete()

    # Undo brings back the mutated state
    connections.close_all()
    reply = undo(dashed, job["id"])
    assert reply.status == 202, reply.body
    restore_sqs.drain_into_worker()
    after_undo = (
        orm_checksum(dashed),
        checksums(host.admin_url, dashed),
        catalog(host.admin_url, dashed),
    )
    # (the fresh row's sequence step is not undone: sequences never roll back)
    assert after_undo[0] == mutated[0] and after_undo[2] == mutated[2]

    # And migrate_schemas has nothing to apply afterwards, in any tenant
    from django.core.management import call_command

    out = io.StringIO()
    connections.close_all()
    call_command("migrate_schemas", stdout=out, verbosity=1)
    assert "Applying" not in out.getvalue()
    assert out.getvalue().count("No migrations to apply") >= 6, out.getvalue()


def list_backups(schema: str) -> Any:
    from tests.helpers import call, mint

    return call("list_backups", load_event("list_backups/get_backups.json", token=mint(schema)))


def test_a_clone_without_the_receiver_never_shows_the_base_history_and_grant_cleans_it(
    host_env: DjangoHost, monkeypatch: pytest.MonkeyPatch, sqs, s3_server, bucket
):
    from django_tenants.models import TenantMixin
    from django_tenants.signals import post_schema_sync

    from contrib.django_clinic_backups.signals import grant_backup_role

    host = host_env
    base = f"plantilla_{host.suffix}"
    clone = f"copia-{host.suffix}"
    # Given a base schema with a backup history, its tables the host's (the copy case)
    create_tenant(base, "Plantilla")
    populate(base, patients=5, seed=3)
    assert run_cli("grant", base)[0] == 0
    base_backup = backup(base, sqs, note="de la plantilla")
    give_tables(host, base, demo.APP_ROLE)

    # When a tenant is cloned from it by a host without the receiver
    post_schema_sync.disconnect(grant_backup_role, sender=TenantMixin)
    try:
        create_tenant(clone, "Copia", base=base)
    finally:
        post_schema_sync.connect(grant_backup_role, sender=TenantMixin)
        give_tables(host, base, demo.BACKUP_ROLE)
    # clone_schema copied the base's history, storage keys of the base included
    assert records(host.admin_url, clone) and all(
        k.startswith(f"{base}/") for k in records(host.admin_url, clone)
    )

    # Then the clone's API never lists them (the copy is refused before use)
    reply = list_backups(clone)
    assert reply.status != 200 or reply.body["items"] == [], reply.body
    # and the scheduler names the clone as a failing clinic (the alarm), with the fix logged
    svc = function_module("scheduler").fn.services()
    svc.clock = FixedClock(datetime(2027, 2, 9, 2, 10, tzinfo=UTC))
    summary = invoke("scheduler", load_event("scheduler/scheduled_event.json"))
    assert summary["failed_clinics"].get(clone) == "migrate", summary

    # When the operator runs grant
    rc, granted, _ = run_cli("grant", clone)
    # Then the copies are dropped (never the base's objects) and the clone starts afresh
    assert rc == 0 and granted["copies_dropped"] == [clone], granted
    helpers_reset()
    reply = list_backups(clone)
    assert reply.status == 200 and reply.body["items"] == [], reply.body
    own = backup(clone, sqs)
    assert own["file_name"].startswith(f"{clone}-")
    assert records(host.admin_url, clone) and all(
        k.startswith(f"{clone}/") for k in records(host.admin_url, clone)
    )
    reply = list_backups(base)
    assert base_backup["id"] in [b["id"] for b in reply.body["items"]]
    keys = [
        o["Key"]
        for o in s3_server.client().list_objects_v2(Bucket=bucket, Prefix=f"{base}/")["Contents"]
    ]
    assert any(k.endswith(base_backup["file_name"]) for k in keys)


def helpers_reset() -> None:
    from tests import helpers

    helpers.reset_caches()


def test_operator_cli_lists_and_restores_an_inactive_clinic_with_its_flag_result_alone_on_stdout(
    host_env: DjangoHost, monkeypatch: pytest.MonkeyPatch, sqs, restore_sqs
):
    import os
    import shutil
    import subprocess
    import sys
    from pathlib import Path

    from tests.django_fixture.customers.models import Client

    host = host_env
    schema = f"cerrada-{host.suffix}"
    create_tenant(schema, "Clínica Cerrada")
    populate(schema, patients=6, seed=4)
    assert run_cli("grant", schema)[0] == 0
    before = orm_checksum(schema)
    rc, made, _ = run_cli("backup", schema)
    assert rc == 0 and made["status"] == "completed"
    Client.objects.filter(schema_name=schema).update(is_active=False)
    mutate(schema)

    # Without the flag: one clear line naming it, no traceback
    rc, out, err = run_cli("list", schema)
    assert rc == 2 and out is None and "--inactive" in err and "Traceback" not in err

    # With it, the console script prints the result alone on stdout (logs on stderr): `| jq`
    script = shutil.which("clinic-backups", path=str(Path(sys.executable).parent))
    assert script is not None
    env = {k: v for k, v in os.environ.items() if not k.startswith("JWT_")}
    done = subprocess.run(
        [script, "list", schema, "--inactive"], capture_output=True, text=True, env=env, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert [b["id"] for b in json.loads(done.stdout)] == [made["id"]]

    # and restores it
    from django.db import connections

    connections.close_all()
    rc, job, err = run_cli("restore", schema, made["id"], "--confirm", schema, "--inactive")
    assert rc == 0 and job["status"] == "completed", (job, err)
    assert orm_checksum(schema) == before


def test_a_missing_grant_is_one_line_with_the_fix_then_grant_fixes_it(host_env: DjangoHost):
    host = host_env
    schema = f"sin-permisos-{host.suffix}"
    create_tenant(schema, "Clínica sin permisos")
    # Given a tenant the backup role may not use (no default privileges, no grant)
    with psycopg2.connect(host.admin_url) as conn, conn.cursor() as cur:
        cur.execute(
            sql.SQL("REVOKE ALL ON SCHEMA {} FROM {}").format(
                sql.Identifier(schema), sql.Identifier(demo.BACKUP_ROLE)
            )
        )
    conn.close()
    # When an operator command touches it: one line naming the fix, no traceback, no stdout
    rc, out, err = run_cli("list", schema)
    assert rc == 2 and out is None
    # (stderr also carries the log lines, JSON; the error is the one plain line)
    plain = [line for line in err.splitlines() if not line.startswith("{")]
    assert len(plain) == 1 and "clinic-backups grant" in plain[0] and "Traceback" not in err
    # Then `grant` fixes it
    assert run_cli("grant", schema)[0] == 0
    rc, out, _ = run_cli("list", schema)
    assert rc == 0 and out == []


def test_verify_ephemeral_without_its_server_is_one_line_with_the_fix(
    host_env: DjangoHost, monkeypatch: pytest.MonkeyPatch, sqs
):
    import devstack.postgres
    from devstack.postgres import EmbeddedPostgresError

    schema = f"sin-servidor-{host_env.suffix}"
    create_tenant(schema, "Clínica sin servidor")
    assert run_cli("grant", schema)[0] == 0
    rc, made, _ = run_cli("backup", schema)
    assert rc == 0

    def no_server() -> Any:
        # what devstack.postgres says on a machine without `make pg-server`
        raise EmbeddedPostgresError(
            "no PostgreSQL server in .build/postgresql/bin; build it with "
            "`make -C layers/pgdump pg-server`"
        )

    monkeypatch.setattr(devstack.postgres, "ephemeral_server", no_server)
    rc, out, err = run_cli("verify", schema, made["id"], "--ephemeral")
    plain = [line for line in err.splitlines() if not line.startswith("{")]
    assert rc == 2 and out is None and "Traceback" not in err
    assert len(plain) == 1 and "make -C layers/pgdump pg-server" in plain[0], err


def test_an_excluded_base_schema_is_never_backed_up_and_its_clones_are(
    host_env: DjangoHost, monkeypatch: pytest.MonkeyPatch, sqs
):
    from tests import helpers

    host = host_env
    base, clone = f"molde_{host.suffix}", f"hija-{host.suffix}"
    # Given TENANT_BASE_SCHEMA's tenant listed in EXCLUDED_SCHEMAS
    monkeypatch.setenv("EXCLUDED_SCHEMAS", base)
    helpers.reset_caches()
    create_tenant(base, "Molde")
    populate(base, patients=3, seed=5)
    # When the scheduler runs, then a tenant is cloned from the base, and the scheduler runs again
    svc = function_module("scheduler").fn.services()
    svc.clock = FixedClock(datetime(2027, 3, 9, 2, 10, tzinfo=UTC))
    first = invoke("scheduler", load_event("scheduler/scheduled_event.json"))
    sqs.drain_into_worker()
    create_tenant(clone, "Hija", base=base)  # clone_schema: it works, nothing of ours to copy
    svc = function_module("scheduler").fn.services()
    svc.clock = FixedClock(datetime(2027, 3, 10, 2, 10, tzinfo=UTC))
    second = invoke("scheduler", load_event("scheduler/scheduled_event.json"))
    sqs.drain_into_worker()
    # Then the base has no backup tables at all, is counted as excluded, and the clone is backed up
    assert table_owners(host.admin_url, base) == {}
    assert first["excluded"] == 1 and second["excluded"] == 1
    assert base not in second["failed_clinics"]
    assert scheduled(host, clone)


def test_a_copy_the_backup_role_owns_is_emptied_before_use(host_env: DjangoHost, sqs):
    host = host_env
    source, copy = f"origen-{host.suffix}", f"destino-{host.suffix}"
    for schema in (source, copy):
        create_tenant(schema, f"Clínica {schema}")
        assert run_cli("grant", schema)[0] == 0
    made = backup(source, sqs)
    assert list_backups(copy).body["items"] == []  # creates the copy's own tables
    # Given the copy's tables hold another clinic's history and stamp (what clone_schema
    # leaves when it could copy them; here the backup role owns them)
    with psycopg2.connect(host.admin_url) as conn, conn.cursor() as cur:
        for table in ("backup_records", "backup_audit"):
            cur.execute(
                sql.SQL("INSERT INTO {} SELECT * FROM {}").format(
                    sql.Identifier(copy, table), sql.Identifier(source, table)
                )
            )
        cur.execute(
            sql.SQL("COMMENT ON TABLE {} IS {}").format(
                sql.Identifier(copy, "backup_meta"), sql.Literal(f"clinic_backups:{source}")
            )
        )
    conn.close()
    # When the copy's clinic lists its backups (a new process: nothing cached)
    helpers_reset()
    reply = list_backups(copy)
    # Then it sees none of the other clinic's, and the copy is gone for good
    assert reply.status == 200 and reply.body["items"] == [], reply.body
    assert records(host.admin_url, copy) == []
    assert [b["id"] for b in list_backups(source).body["items"]] == [made["id"]]
