"""Rebuilding the catalogue from the manifests in storage, and migrating every clinic."""

from __future__ import annotations

import pytest
from clinic_backups.domain.names import OWNED_TABLES
from clinic_backups.usecases import backups as service
from clinic_backups.wiring.factory import build_services
from clinic_backups.wiring.settings import OperatorSettings, get_settings
from psycopg2 import sql

from tests.helpers import call, load_event, mint

pytestmark = pytest.mark.usefixtures("app_env")


def make_backup(schema: str, sqs) -> dict:
    reply = call(
        "create_backup",
        load_event("create_backup/post_backups.json", token=mint(schema), body={"note": "nota"}),
    )
    sqs.drain_into_worker()
    return call(
        "list_backups",
        load_event("list_backups/get_backup.json", token=mint(schema), backup_id=reply.body["id"]),
    ).body


def test_records_are_rebuilt_from_manifests_after_the_tables_are_lost(clinic_factory, sqs, db):
    # Given two completed backups, one of them soft-deleted
    schema = clinic_factory()
    first, second = make_backup(schema, sqs), make_backup(schema, sqs)
    assert (
        call(
            "delete_backup",
            load_event(
                "delete_backup/delete_backup.json", token=mint(schema), backup_id=first["id"]
            ),
        ).status
        == 204
    )

    # When the clinic's backup tables are dropped (a damaged schema)
    with db.cursor() as cur:
        for table in OWNED_TABLES:
            cur.execute(sql.SQL("DROP TABLE {}").format(sql.Identifier(schema, table)))
    svc = build_services(get_settings(OperatorSettings))
    report = service.rebuild_records(svc, schema)

    # Then both records come back with their checksums, the deleted one still deleted
    assert (report.manifests, report.inserted, report.missing_objects, report.invalid) == (
        2,
        2,
        [],
        [],
    )
    rebuilt = {
        r.id.hex: r
        for r in svc.records.list(schema, service.ListFilter(limit=10, include_deleted=True))[0]
    }
    assert rebuilt[first["id"].replace("-", "")].status.value == "deleted"
    again = rebuilt[second["id"].replace("-", "")]
    assert (again.status.value, again.sha256, again.size_bytes, again.note) == (
        "completed",
        second["sha256"],
        second["size_bytes"],
        "nota",
    )

    # And a second rebuild changes nothing
    assert service.rebuild_records(svc, schema).already_present == 2


def test_a_manifest_without_its_archive_is_reported_not_inserted(
    clinic_factory, sqs, db, s3_server, bucket
):
    schema = clinic_factory()
    done = make_backup(schema, sqs)
    s3 = s3_server.client()
    key = next(
        o["Key"]
        for o in s3.list_objects_v2(Bucket=bucket, Prefix=f"{schema}/")["Contents"]
        if o["Key"].endswith(".dump.age")
    )
    s3.delete_object(Bucket=bucket, Key=key)
    with db.cursor() as cur:
        cur.execute(sql.SQL("DELETE FROM {}").format(sql.Identifier(schema, "backup_records")))
    report = service.rebuild_records(build_services(get_settings(OperatorSettings)), schema)
    assert (report.inserted, report.missing_objects) == (0, [key])
    assert done["status"] == "completed"


def test_migrate_all_creates_the_tables_in_every_active_clinic(clinic_factory, db):
    active, inactive = clinic_factory(), clinic_factory(active=False)
    migrated = service.migrate_all(build_services(get_settings(OperatorSettings)))["migrated"]
    assert active in migrated and inactive not in migrated
    with db.cursor() as cur:
        cur.execute(
            "SELECT to_regclass(%s), to_regclass(%s)",
            (f'"{active}".backup_records', f'"{inactive}".backup_records'),
        )
        assert cur.fetchone()[0] is not None
