"""`GET/PUT /backup-settings`, `PATCH /backups/{id}` (keep) and the clinic's zone in `GET /me`:
handlers called in-process with the sample events, real PostgreSQL."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime

import pytest
from psycopg2 import sql

from tests.helpers import FixedClock, call, function_module, load_event, mint

pytestmark = pytest.mark.usefixtures("app_env")

VALID = {
    "enabled": True,
    "hour": 22,
    "weekdays": [5, 1, 3],
    "time_zone": "America/New_York",
    "locale": "en-US",
    "keep_daily": 10,
    "keep_weekly": 2,
    "keep_monthly": 12,
}


def get_settings(token: str):
    return call(
        "backup_settings", load_event("backup_settings/get_backup_settings.json", token=token)
    )


def put_settings(token: str, body):
    return call(
        "backup_settings",
        load_event("backup_settings/put_backup_settings.json", token=token, body=body),
    )


def test_a_clinic_without_settings_gets_the_platform_defaults(clinic_factory):
    schema = clinic_factory()
    # 2026-06-15 04:00 UTC: today's 03:00 Madrid (01:00 UTC) has passed; next is tomorrow's
    function_module("backup_settings").fn.services().clock = FixedClock(
        datetime(2026, 6, 15, 4, tzinfo=UTC)
    )
    reply = get_settings(mint(schema, "staff"))
    assert reply.status == 200, reply.body
    assert reply.body == {
        "enabled": True,
        "hour": 3,
        "weekdays": [1, 2, 3, 4, 5, 6, 7],
        "time_zone": "Europe/Madrid",
        "locale": "es-ES",
        "keep_daily": 7,
        "keep_weekly": 4,
        "keep_monthly": 6,
        "min_retention_days": 7,
        "is_default": True,
        "next_run_at": "2026-06-16T01:00:00+00:00",
        "updated_by": None,
        "updated_at": None,
    }


def test_an_admin_saves_settings_and_me_returns_the_clinics_zone_and_locale(clinic_factory, db):
    # Given a clinic on the defaults
    schema = clinic_factory()
    admin = mint(schema, "admin", sub="u-admin")
    me = call("list_backups", load_event("list_backups/get_me.json", token=admin)).body
    assert (me["locale"], me["time_zone"]) == ("es-ES", "Europe/Madrid")
    assert "manage_backup_settings" in me["permissions"]

    # When the admin saves a schedule in New York
    reply = put_settings(admin, VALID)

    # Then they are saved (weekdays sorted), read back, and /me follows the clinic
    assert reply.status == 200, reply.body
    saved = reply.body
    assert saved["weekdays"] == [1, 3, 5] and saved["hour"] == 22
    assert saved["is_default"] is False and saved["updated_by"] == "u-admin"
    assert saved["next_run_at"] is not None
    assert get_settings(mint(schema, "staff")).body == saved
    me = call("list_backups", load_event("list_backups/get_me.json", token=admin)).body
    assert (me["locale"], me["time_zone"]) == ("en-US", "America/New_York")
    # And the change is audited with what changed
    with db.cursor() as cur:
        cur.execute(
            sql.SQL("SELECT actor_id, outcome, details FROM {} WHERE action = %s").format(
                sql.Identifier(schema, "backup_audit")
            ),
            ("settings.update",),
        )
        actor, outcome, details = cur.fetchone()
    assert (actor, outcome) == ("u-admin", "saved")
    assert details["changed"]["hour"] == [3, 22]


def test_leaving_the_locale_out_keeps_the_current_one(clinic_factory):
    schema = clinic_factory()
    admin = mint(schema)
    put_settings(admin, VALID)
    body = {k: v for k, v in VALID.items() if k != "locale"} | {"hour": 5}
    assert put_settings(admin, body).body["locale"] == "en-US"


def test_staff_may_read_but_not_change_the_settings(clinic_factory):
    schema = clinic_factory()
    staff = mint(schema, "staff")
    assert get_settings(staff).status == 200
    reply = put_settings(staff, VALID)
    assert reply.status == 403 and reply.error_code == "forbidden"
    assert get_settings(staff).body["is_default"] is True


@pytest.mark.parametrize(
    "change,field",
    [
        ({"hour": 24}, "hour"),
        ({"hour": -1}, "hour"),
        ({"hour": "3"}, "hour"),
        ({"enabled": "yes"}, "enabled"),
        ({"weekdays": []}, "weekdays"),
        ({"weekdays": [0, 1]}, "weekdays"),
        ({"weekdays": [8]}, "weekdays"),
        ({"weekdays": [1, 1]}, "weekdays"),
        ({"time_zone": "Mars/Olympus_Mons"}, "time_zone"),
        ({"time_zone": "../../etc/passwd"}, "time_zone"),
        ({"locale": "spanish"}, "locale"),
        ({"keep_daily": 3}, "keep_daily"),  # below the platform floor (7)
        ({"keep_daily": 400}, "keep_daily"),
        ({"keep_weekly": -1}, "keep_weekly"),
        ({"keep_monthly": 121}, "keep_monthly"),
        ({"keep_monthly": 1.5}, "keep_monthly"),
        ({"schema": "clinica_otra"}, "schema"),
    ],
)
def test_invalid_settings_are_422_naming_the_field(clinic_factory, change, field):
    schema = clinic_factory()
    reply = put_settings(mint(schema), VALID | change)
    assert reply.status == 422, reply.body
    assert reply.error_code == "validation_error"
    details = reply.body["error"]["details"]
    assert [d["field"] for d in details] == [field], details
    assert details[0]["message"]
    assert get_settings(mint(schema)).body["is_default"] is True  # nothing was saved


def test_a_missing_field_is_422(clinic_factory):
    schema = clinic_factory()
    body = {k: v for k, v in VALID.items() if k != "keep_weekly"}
    reply = put_settings(mint(schema), body)
    assert reply.status == 422
    assert [d["field"] for d in reply.body["error"]["details"]] == ["keep_weekly"]


def test_the_floor_message_says_what_the_floor_is(clinic_factory, monkeypatch):
    from tests.helpers import reset_caches

    monkeypatch.setenv("MIN_RETENTION_DAYS", "14")
    reset_caches()
    schema = clinic_factory()
    reply = put_settings(mint(schema), VALID)  # keep_daily 10 < 14
    assert reply.status == 422
    assert "14" in reply.body["error"]["details"][0]["message"]
    assert get_settings(mint(schema)).body["min_retention_days"] == 14
    assert put_settings(mint(schema), VALID | {"keep_daily": 14}).status == 200


# --- PATCH /backups/{id} -------------------------------------------------------------------


def patch(token: str, backup_id: str, body):
    return call(
        "delete_backup",
        load_event("delete_backup/patch_backup.json", token=token, backup_id=backup_id, body=body),
    )


def completed_backup(schema: str, sqs) -> dict:
    reply = call(
        "create_backup",
        load_event("create_backup/post_backups.json", token=mint(schema), body=None),
    )
    assert reply.status == 202, reply.body
    sqs.drain_into_worker()
    return reply.body


def test_an_admin_marks_a_backup_to_keep_and_the_manifest_follows(
    clinic_factory, sqs, s3_server, bucket
):
    schema = clinic_factory()
    backup = completed_backup(schema, sqs)
    admin = mint(schema, "admin")
    reply = patch(admin, backup["id"], {"keep": True})
    assert reply.status == 200, reply.body
    assert reply.body["keep"] is True and reply.body["id"] == backup["id"]
    listed = call(
        "list_backups",
        load_event("list_backups/get_backup.json", token=admin, backup_id=backup["id"]),
    ).body
    assert listed["keep"] is True
    # the manifest carries the flag, so a rebuild from storage keeps it
    s3 = s3_server.client()
    key = next(
        o["Key"]
        for o in s3.list_objects_v2(Bucket=bucket, Prefix=f"{schema}/")["Contents"]
        if o["Key"].endswith(".manifest.json")
    )
    assert json.loads(s3.get_object(Bucket=bucket, Key=key)["Body"].read())["keep"] is True
    assert patch(admin, backup["id"], {"keep": False}).body["keep"] is False


def test_keep_is_for_admins_completed_backups_and_own_clinic(clinic_factory, sqs):
    schema, other = clinic_factory(), clinic_factory()
    backup = completed_backup(schema, sqs)
    assert patch(mint(schema, "staff"), backup["id"], {"keep": True}).status == 403
    reply = patch(mint(other, "admin"), backup["id"], {"keep": True})
    assert reply.error_code == "backup_not_found"
    assert patch(mint(schema), str(uuid.uuid4()), {"keep": True}).status == 404
    reply = patch(mint(schema), backup["id"], {"keep": "yes"})
    assert reply.status == 422 and reply.body["error"]["details"][0]["field"] == "keep"
    # a pending backup cannot be kept yet
    pending = call(
        "create_backup",
        load_event("create_backup/post_backups.json", token=mint(schema), body=None),
    ).body
    reply = patch(mint(schema), pending["id"], {"keep": True})
    assert reply.status == 409 and reply.error_code == "backup_not_completed"
