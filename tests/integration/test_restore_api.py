"""The restore routes' contract: confirmation, roles, the operation lock, listing and errors."""

from __future__ import annotations

import json
import uuid

import psycopg2
import pytest
from psycopg2 import sql

from tests.helpers import call, load_event, mint, reset_caches
from tests.integration.conftest import RestoreDatabase
from tests.integration.restore_support import backup, lock_rows, request_restore


def get_restores(schema: str, role: str = "admin", query: dict[str, str] | None = None):
    return call(
        "restore_backup",
        load_event("restore_backup/get_restores.json", token=mint(schema, role), query=query or {}),
    )


@pytest.mark.parametrize(
    "body",
    [
        None,
        {},
        {"confirm": "otra_clinica"},
        {"confirm": "CLINIC"},  # replaced by the upper-cased schema below
        {"confirm": "SCHEMA", "extra": 1},
        {"kind": "restore", "schema": "SCHEMA", "restore_id": str(uuid.UUID(int=1))},
    ],
)
def test_the_confirmation_must_be_the_clinics_name_exactly(
    restore_env_pg15: RestoreDatabase, owned_clinic_pg15, sqs, body
):
    schema = owned_clinic_pg15(patients=30)
    source = backup(schema, sqs)
    if isinstance(body, dict):
        body = json.loads(
            json.dumps(body)
            .replace('"CLINIC"', json.dumps(schema.upper()))
            .replace('"SCHEMA"', json.dumps(schema))
        )
    reply = request_restore(schema, source["id"], confirm=body)
    assert reply.status == 422, reply.body
    assert reply.error_code == "validation_error"
    assert lock_rows(restore_env_pg15.admin_url, schema) == []


def test_staff_may_follow_restores_but_not_start_them(
    restore_env_pg15: RestoreDatabase, owned_clinic_pg15, sqs, restore_sqs
):
    schema = owned_clinic_pg15(patients=30)
    source = backup(schema, sqs)
    denied = request_restore(schema, source["id"], role="staff")
    assert denied.status == 403 and denied.error_code == "forbidden"
    verify = call(
        "restore_backup",
        load_event(
            "restore_backup/post_verify.json", token=mint(schema, "staff"), backup_id=source["id"]
        ),
    )
    assert verify.status == 403
    accepted = request_restore(schema, source["id"])
    assert accepted.status == 202 and accepted.body["status"] == "pending"
    assert accepted.body["step"] == "queued" and accepted.body["backup_id"] == source["id"]
    undo = call(
        "restore_backup",
        load_event(
            "restore_backup/post_undo.json",
            token=mint(schema, "staff"),
            backup_id=accepted.body["id"],
        ),
    )
    assert undo.status == 403
    # staff see it running (their app should show maintenance meanwhile)
    page = get_restores(schema, "staff")
    assert page.status == 200
    assert [j["id"] for j in page.body["items"]] == [accepted.body["id"]]
    me = call("list_backups", load_event("list_backups/get_me.json", token=mint(schema, "staff")))
    assert "restore_backup" not in me.body["permissions"]
    me = call("list_backups", load_event("list_backups/get_me.json", token=mint(schema)))
    assert "restore_backup" in me.body["permissions"]
    restore_sqs.drain_into_worker()


def test_one_operation_at_a_time_a_restore_and_a_backup_exclude_each_other(
    restore_env_pg15: RestoreDatabase, owned_clinic_pg15, sqs, restore_sqs
):
    schema = owned_clinic_pg15(patients=30)
    source = backup(schema, sqs)
    # a backup pending → no restore
    pending = call(
        "create_backup",
        load_event("create_backup/post_backups.json", token=mint(schema), body=None),
    )
    assert pending.status == 202
    busy = request_restore(schema, source["id"])
    assert busy.status == 409 and busy.error_code == "operation_in_progress"
    sqs.drain_into_worker()
    # a restore pending → no backup, no other restore
    accepted = request_restore(schema, source["id"])
    assert accepted.status == 202
    assert lock_rows(restore_env_pg15.admin_url, schema) == [("restore", accepted.body["id"])]
    busy = call(
        "create_backup",
        load_event("create_backup/post_backups.json", token=mint(schema), body=None),
    )
    assert busy.status == 409 and busy.error_code == "operation_in_progress"
    assert request_restore(schema, source["id"]).status == 409
    restore_sqs.drain_into_worker()
    assert lock_rows(restore_env_pg15.admin_url, schema) == []


def test_only_completed_backups_of_the_clinic_can_be_restored(
    restore_env_pg15: RestoreDatabase, owned_clinic_pg15, sqs
):
    schema = owned_clinic_pg15(patients=30)
    other = owned_clinic_pg15(patients=30)
    mine = backup(schema, sqs)
    theirs = backup(other, sqs)
    assert request_restore(schema, theirs["id"]).error_code == "backup_not_found"
    assert request_restore(schema, "not-a-uuid").error_code == "backup_not_found"
    with psycopg2.connect(restore_env_pg15.admin_url) as conn, conn.cursor() as cur:
        cur.execute(
            sql.SQL("UPDATE {} SET status = 'failed' WHERE id = %s").format(
                sql.Identifier(schema, "backup_records")
            ),
            (mine["id"],),
        )
    conn.close()
    refused = request_restore(schema, mine["id"])
    assert refused.status == 409 and refused.error_code == "backup_not_completed"
    with psycopg2.connect(restore_env_pg15.admin_url) as conn, conn.cursor() as cur:
        cur.execute(
            sql.SQL("SELECT action, outcome FROM {} WHERE action = 'restore.request'").format(
                sql.Identifier(schema, "backup_audit")
            )
        )
        assert cur.fetchall() == [("restore.request", "rejected")]


def test_restores_are_listed_newest_first_with_a_cursor_and_unknown_ids_are_404(
    restore_env_pg15: RestoreDatabase,
    owned_clinic_pg15,
    sqs,
    restore_sqs,
    pg18_server,
    monkeypatch,
):
    monkeypatch.setenv("VERIFY_DATABASE_URL", pg18_server)
    reset_caches()
    schema = owned_clinic_pg15(patients=30)
    other = owned_clinic_pg15(patients=30)
    source = backup(schema, sqs)
    ids = []
    for _ in range(3):
        reply = call(
            "restore_backup",
            load_event(
                "restore_backup/post_verify.json", token=mint(schema), backup_id=source["id"]
            ),
        )
        assert reply.status == 202
        ids.append(reply.body["id"])
    first = get_restores(schema, query={"limit": "2"})
    assert first.status == 200
    assert [j["id"] for j in first.body["items"]] == ids[::-1][:2]
    assert first.body["next_cursor"]
    second = get_restores(schema, query={"limit": "2", "cursor": first.body["next_cursor"]})
    assert [j["id"] for j in second.body["items"]] == [ids[0]]
    assert second.body["next_cursor"] is None
    assert get_restores(schema, query={"kind": "restore"}).body["items"] == []
    assert get_restores(schema, query={"cursor": "nope"}).error_code == "invalid_cursor"
    assert get_restores(other).body["items"] == []
    for raw, who in ((ids[0], other), ("nope", schema), (str(uuid.uuid4()), schema)):
        reply = call(
            "restore_backup",
            load_event("restore_backup/get_restore.json", token=mint(who), backup_id=raw),
        )
        assert reply.status == 404 and reply.error_code == "restore_not_found"
    restore_sqs.drain_into_worker()


def test_a_job_message_is_never_accepted_over_http(
    restore_env_pg15: RestoreDatabase, owned_clinic_pg15, sqs
):
    schema = owned_clinic_pg15(patients=30)
    event = load_event("restore_backup/post_undo.json", token=mint(schema))
    event["body"] = json.dumps({"kind": "undo", "schema": schema, "restore_id": str(uuid.uuid4())})
    reply = call("restore_backup", event)
    assert reply.status == 404 and reply.error_code == "restore_not_found"


def test_retention_never_deletes_a_backup_a_restore_is_about_to_read(
    restore_env_pg15: RestoreDatabase, owned_clinic_pg15, sqs, restore_sqs
):
    from clinic_backups.wiring.factory import build_services
    from clinic_backups.wiring.settings import SchedulerSettings, get_settings

    schema = owned_clinic_pg15(patients=30)
    source = backup(schema, sqs)
    accepted = request_restore(schema, source["id"])
    assert accepted.status == 202
    svc = build_services(get_settings(SchedulerSettings))
    assert svc.records.backups_in_use(schema) == {uuid.UUID(source["id"])}
    restore_sqs.drain_into_worker()
    assert svc.records.backups_in_use(schema) == set()


def test_undo_of_a_verification_is_409_undo_not_available(
    restore_env_pg15: RestoreDatabase, owned_clinic_pg15, sqs, restore_sqs, pg18_server, monkeypatch
):
    # Given a verification of a backup (GET /restores/{id} finds it)
    monkeypatch.setenv("VERIFY_DATABASE_URL", pg18_server)
    reset_caches()
    schema = owned_clinic_pg15(patients=30)
    source = backup(schema, sqs)
    verification = call(
        "restore_backup",
        load_event("restore_backup/post_verify.json", token=mint(schema), backup_id=source["id"]),
    )
    assert verification.status == 202
    found = call(
        "restore_backup",
        load_event(
            "restore_backup/get_restore.json", token=mint(schema), backup_id=verification.body["id"]
        ),
    )
    assert found.status == 200 and found.body["kind"] == "verify"

    # When an admin asks to undo it
    undo = call(
        "restore_backup",
        load_event(
            "restore_backup/post_undo.json", token=mint(schema), backup_id=verification.body["id"]
        ),
    )

    # Then the contract's answer: it exists, but it cannot be undone
    assert (undo.status, undo.error_code) == (409, "undo_not_available"), undo.body
    assert lock_rows(restore_env_pg15.admin_url, schema) == []
    restore_sqs.drain_into_worker()
