"""The clinic's activity log (`GET /audit`, `POST /audit/export`) on the real database and
the real S3 store: admins only, own clinic only, paginated, filtered, exported as CSV under the
clinic's prefix, never rolled back by a restore, never deleted by retention."""

from __future__ import annotations

import csv
import io
import json
import uuid
from datetime import UTC, datetime, timedelta

import httpx
import psycopg2
import pytest
from clinic_backups.domain.models import BackupStatus
from clinic_backups.usecases import backups as service
from clinic_backups.wiring.factory import build_services
from clinic_backups.wiring.settings import OperatorSettings, get_settings
from psycopg2 import sql

from tests.helpers import FixedClock, call, decrypt, load_event, mint, register_clinic_key
from tests.integration.conftest import RestoreDatabase
from tests.integration.restore_support import backup, restore
from tests.integration.test_retention import add_backup

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


def get_audit(schema: str, role: str = "admin", query: dict[str, str] | None = None):
    return call(
        "list_backups",
        load_event("list_backups/get_audit.json", token=mint(schema, role), query=query or {}),
    )


def export(schema: str, body: object = None, role: str = "admin", name: str = "Dra. Ana Pérez"):
    return call(
        "download_backup",
        load_event(
            "download_backup/post_audit_export.json",
            token=mint(schema, role, name=name),
            body=body,
        ),
    )


def seed(url: str, schema: str, entries: list[tuple[datetime, str, str]]) -> list[str]:
    """Audit entries at known moments (action, outcome); their ids, in insertion order."""
    ids = []
    with psycopg2.connect(url) as conn, conn.cursor() as cur:
        for at, action, outcome in entries:
            entry_id = uuid.uuid4()
            cur.execute(
                sql.SQL(
                    "INSERT INTO {} (id, at, action, outcome, actor_id, actor_name, actor_role, "
                    "details) VALUES (%s, %s, %s, %s, 'u-1', %s, 'admin', %s)"
                ).format(sql.Identifier(schema, "backup_audit")),
                (entry_id, at, action, outcome, '=HYPERLINK("x")', json.dumps({"n": 1})),
            )
            ids.append(str(entry_id))
    conn.close()
    return ids


def all_pages(schema: str, query: dict[str, str]) -> list[dict]:
    items: list[dict] = []
    cursor = None
    while True:
        page = get_audit(schema, query={**query, **({"cursor": cursor} if cursor else {})})
        assert page.status == 200, page.body
        items += page.body["items"]
        cursor = page.body["next_cursor"]
        if cursor is None:
            return items


def test_an_admin_reads_only_their_clinics_activity_page_by_page_and_filtered(
    app_env, clinic_factory, database_url
):
    clinic, other = clinic_factory(patients=5), clinic_factory(patients=5)
    # the tables exist once the clinic is first used
    assert get_audit(clinic).status == 200 and get_audit(other).status == 200
    actions = [
        "backup.create",
        "backup.download",
        "restore.run",
        "backup.delete",
        "settings.update",
    ]
    mine = seed(
        database_url,
        clinic,
        [(T0 + timedelta(days=i), a, "accepted") for i, a in enumerate(actions)],
    )
    theirs = seed(database_url, other, [(T0, "backup.download", "signed")])

    period = {"from": T0.isoformat(), "to": (T0 + timedelta(days=30)).isoformat()}
    listed = all_pages(clinic, {"limit": "2", **period})
    assert [e["id"] for e in listed] == mine[::-1]  # newest first, every one, once
    assert not set(theirs) & {e["id"] for e in listed}
    entry = listed[-1]
    assert entry["action"] == "backup.create" and entry["at"] == T0.isoformat()
    assert entry["actor_role"] == "admin" and entry["details"] == {"n": 1}

    # filters: one action, a family, a period
    only = all_pages(clinic, {"action": "backup.download", **period})
    assert [e["id"] for e in only] == [mine[1]]
    family = all_pages(clinic, {"action": "backup", **period})
    assert [e["id"] for e in family] == [mine[3], mine[1], mine[0]]
    window = all_pages(
        clinic,
        {"from": (T0 + timedelta(days=1)).isoformat(), "to": (T0 + timedelta(days=3)).isoformat()},
    )
    assert [e["id"] for e in window] == [mine[2], mine[1]]

    # the other clinic sees only its own
    assert [e["id"] for e in all_pages(other, period)] == theirs


def test_staff_may_not_read_or_export_the_activity_and_the_refusal_is_audited(
    app_env, clinic_factory
):
    clinic = clinic_factory(patients=5)
    for reply in (get_audit(clinic, "staff"), export(clinic, role="staff")):
        assert reply.status == 403, reply.body
        assert reply.error_code == "forbidden"
    denied = [e for e in all_pages(clinic, {}) if e["outcome"] == "denied"]
    assert sorted(e["action"] for e in denied) == ["audit.export", "audit.list"]


def test_an_id_that_is_not_the_clinics_is_never_echoed_back(app_env, clinic_factory, sqs):
    clinic, other = clinic_factory(patients=5), clinic_factory(patients=5)
    theirs = backup(other, sqs)["id"]
    # staff of the clinic try the other clinic's backup: refused, audited in their own clinic
    tried = call(
        "download_backup",
        load_event(
            "download_backup/get_download.json", token=mint(clinic, "staff"), backup_id=theirs
        ),
    )
    assert tried.status == 403
    page = get_audit(clinic)
    entry = next(e for e in page.body["items"] if e["action"] == "backup.download")
    assert entry["outcome"] == "denied" and entry["backup_id"] is None
    assert theirs not in json.dumps(page.body)
    assert theirs in json.dumps(get_audit(other).body)  # its own clinic sees it


@pytest.mark.parametrize(
    "query",
    [
        {"action": "backup.download;drop"},
        {"action": "BACKUP"},
        {"from": "ayer"},
        {"from": "2026-03-02T09:00:00"},  # no time zone
        {"from": "2026-03-03T00:00:00+00:00", "to": "2026-03-02T00:00:00+00:00"},
        {"limit": "0"},
        {"limit": "101"},
    ],
)
def test_bad_filters_are_a_422_in_the_standard_shape(app_env, clinic_factory, query):
    clinic = clinic_factory(patients=5)
    reply = get_audit(clinic, query=query)
    assert reply.status == 422, reply.body
    assert reply.error_code == "validation_error"
    assert set(reply.body["error"]) >= {"code", "message"}


def test_any_offset_iso_allows_is_read_as_its_instant_and_an_instant_before_year_1_is_a_422(
    app_env, clinic_factory
):
    # Found by the fuzzer: PostgreSQL refuses offsets past ±15:59 (a 500 before); ISO 8601
    # and Python allow them. The period goes to the database in UTC.
    clinic = clinic_factory(patients=5)
    odd = {"from": "0130-10-07T11:06:59.41829Z", "to": "1720-04-12T15:08:31.6-17:50"}
    reply = get_audit(clinic, query=odd)
    assert reply.status == 200 and reply.body["items"] == [], reply.body
    assert export(clinic, odd).error_code == "encryption_key_required"  # got past the filter
    early = get_audit(clinic, query={"from": "0001-01-01T00:00:00+01:00"})
    assert early.status == 422 and early.error_code == "validation_error", early.body


def test_a_bad_cursor_or_export_body_is_refused(app_env, clinic_factory):
    clinic = clinic_factory(patients=5)
    assert get_audit(clinic, query={"cursor": "not-ours"}).error_code == "invalid_cursor"
    for body in ({"action": "x y"}, {"from": "2026-01-01"}, {"since": "2026-01-01T00:00:00Z"}, [1]):
        reply = export(clinic, body)
        assert reply.status == 422 and reply.error_code == "validation_error", (body, reply.body)
    assert export(clinic, {"note": "AGE-SECRET-KEY-1QQQ"}).error_code == "private_key_refused"


def test_the_export_is_a_csv_under_the_clinics_prefix_behind_a_signed_url(
    app_env, clinic_factory, database_url, s3_server, bucket, logs
):
    clinic, other = clinic_factory(patients=5), clinic_factory(patients=5)
    assert get_audit(clinic).status == 200 and get_audit(other).status == 200
    seed(
        database_url,
        clinic,
        [(T0 + timedelta(minutes=i), "backup.download", "signed") for i in range(3)]
        + [(T0 + timedelta(minutes=9), "restore.run", "completed")],
    )
    seed(database_url, other, [(T0, "backup.download", "signed")])

    # without a key of its own the clinic could not open it: refused (and audited)
    refused = export(clinic)
    assert refused.status == 409 and refused.error_code == "encryption_key_required"
    identity = register_clinic_key(clinic, "Llave de auditoría")

    reply = export(clinic, {"action": "backup.download", "from": T0.isoformat()})
    assert reply.status == 200, reply.body
    answer = reply.body
    assert answer["rows"] == 3
    assert answer["file_name"].startswith(f"{clinic}-actividad-")
    assert answer["file_name"].endswith(".csv.age")
    # the object lies under the clinic's own prefix
    keys = [
        o["Key"]
        for o in s3_server.client()
        .list_objects_v2(Bucket=bucket, Prefix=f"{clinic}/")
        .get("Contents", [])
    ]
    assert f"{clinic}/audit-exports/{answer['file_name']}" in keys

    stored = httpx.get(answer["url"]).raise_for_status().content
    assert stored.startswith(b"age-encryption.org/v1")  # like every object stored
    text = decrypt(stored, identity).decode("utf-8-sig")
    rows = list(csv.DictReader(io.StringIO(text)))
    assert [r["at"] for r in rows] == [(T0 + timedelta(minutes=i)).isoformat() for i in (2, 1, 0)]
    assert {r["action"] for r in rows} == {"backup.download"}
    assert json.loads(rows[0]["details"]) == {"n": 1}
    # a name a spreadsheet would run as a formula is written as text
    assert rows[0]["actor_name"] == '\'=HYPERLINK("x")'

    # the URL is in the answer only: never in a log line; the export itself is audited
    assert answer["url"] not in logs.text and "X-Amz-Signature" not in logs.text
    exported = all_pages(clinic, {"action": "audit.export"})
    assert [e["outcome"] for e in exported] == ["signed", "rejected"]
    assert exported[0]["details"]["rows"] == 3 and set(exported[0]["details"]) == {
        "rows",
        "ttl_seconds",
    }


def test_activity_written_after_a_backup_survives_restoring_it(
    restore_env_pg15: RestoreDatabase, owned_clinic_pg15, sqs, restore_sqs
):
    schema = owned_clinic_pg15(patients=20)
    source = backup(schema, sqs)
    # after the backup: an entry the backup cannot hold
    marker = seed(
        restore_env_pg15.admin_url, schema, [(datetime.now(UTC), "settings.update", "updated")]
    )
    job = restore(schema, source["id"], restore_sqs)
    assert job["status"] == "completed", job

    listed = all_pages(schema, {})
    ids = {e["id"] for e in listed}
    assert marker[0] in ids
    actions = {(e["action"], e["outcome"]) for e in listed}
    assert ("backup.create", "accepted") in actions  # from before the backup, too
    assert ("restore.request", "accepted") in actions


def test_retention_and_the_purge_never_delete_activity(app_env, clinic_factory, database_url):
    schema = clinic_factory(patients=5)
    svc = build_services(get_settings(OperatorSettings))
    svc.clock = FixedClock(datetime(2026, 12, 31, 3, 30, tzinfo=UTC))
    # seven years of daily-ish backups' worth of history, one entry a month
    old = [(T0 - timedelta(days=30 * m), "backup.create", "accepted") for m in range(84)]
    svc.records.ensure_schema(schema)
    ids = seed(database_url, schema, old)
    for day in range(40):
        add_backup(svc, schema, datetime(2026, 11, 1, 3, tzinfo=UTC) + timedelta(days=day))
    plan = service.apply_retention(svc, schema)
    assert plan.delete  # retention did delete backups…
    svc.clock.at = svc.clock.at + timedelta(days=365)
    service.purge_deleted(svc, schema)  # …and the purge their records' files
    still = {e["id"] for e in all_pages(schema, {"action": "backup.create"})}
    assert set(ids) <= still
    with psycopg2.connect(database_url) as conn, conn.cursor() as cur:
        cur.execute(
            sql.SQL("SELECT count(*) FROM {} WHERE status = %s").format(
                sql.Identifier(schema, "backup_records")
            ),
            (BackupStatus.DELETED.value,),
        )
        assert cur.fetchone()[0] > 0
    conn.close()
