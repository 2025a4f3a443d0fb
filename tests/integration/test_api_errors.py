"""Every documented error: its status, its stable code, a message, and nothing secret."""

from __future__ import annotations

import json
import uuid

import pytest

from tests.helpers import JWT_SECRET, call, load_event, mint

pytestmark = pytest.mark.usefixtures("app_env")


def post(token: str | None, body=..., **kwargs):
    return call(
        "create_backup",
        load_event("create_backup/post_backups.json", token=token, body=body, **kwargs),
    )


def assert_error(reply, status: int, code: str) -> None:
    assert reply.status == status, reply.body
    assert reply.error_code == code, reply.body
    assert reply.body["error"]["message"]
    assert reply.headers.get("Content-Type") == "application/json"


def test_malformed_json_is_400(clinic_factory):
    schema = clinic_factory()
    assert_error(post(mint(schema), body="{not json"), 400, "bad_request")


def test_garbage_cursor_is_400(clinic_factory):
    schema = clinic_factory()
    reply = call(
        "list_backups",
        load_event(
            "list_backups/get_backups.json",
            token=mint(schema),
            query={"cursor": "bm90LWEtY3Vyc29y"},
        ),
    )
    assert_error(reply, 400, "invalid_cursor")


def test_missing_token_is_401():
    assert_error(
        call("list_backups", load_event("list_backups/get_me.json", drop_auth=True)),
        401,
        "missing_token",
    )


def test_forged_token_is_401(clinic_factory):
    schema = clinic_factory()
    forged = mint(schema, secret="x" * 64)
    assert_error(
        call("list_backups", load_event("list_backups/get_me.json", token=forged)),
        401,
        "invalid_token",
    )


def test_expired_token_is_401(clinic_factory):
    schema = clinic_factory()
    assert_error(
        call("list_backups", load_event("list_backups/get_me.json", token=mint(schema, ttl=-300))),
        401,
        "token_expired",
    )


def test_staff_download_is_403(clinic_factory):
    schema = clinic_factory()
    reply = call(
        "download_backup",
        load_event(
            "download_backup/get_download.json",
            token=mint(schema, "staff"),
            backup_id=str(uuid.uuid4()),
        ),
    )
    assert_error(reply, 403, "forbidden")


def test_staff_delete_is_403(clinic_factory):
    schema = clinic_factory()
    reply = call(
        "delete_backup",
        load_event(
            "delete_backup/delete_backup.json",
            token=mint(schema, "staff"),
            backup_id=str(uuid.uuid4()),
        ),
    )
    assert_error(reply, 403, "forbidden")


def test_staff_cannot_see_deleted_backups(clinic_factory):
    schema = clinic_factory()
    reply = call(
        "list_backups",
        load_event(
            "list_backups/get_backups.json",
            token=mint(schema, "staff"),
            query={"include_deleted": "true"},
        ),
    )
    assert_error(reply, 403, "forbidden")


def test_unknown_and_inactive_clinics_are_403(clinic_factory):
    inactive = clinic_factory(active=False)
    for schema in (inactive, "clinica_que_no_existe"):
        reply = call("list_backups", load_event("list_backups/get_me.json", token=mint(schema)))
        assert_error(reply, 403, "clinic_not_available")


def test_unknown_route_is_404(clinic_factory):
    schema = clinic_factory()
    event = load_event("list_backups/get_me.json", token=mint(schema))
    event["rawPath"] = event["requestContext"]["http"]["path"] = "/nothing-here"
    assert_error(call("list_backups", event), 404, "not_found")


@pytest.mark.parametrize("backup_id", [str(uuid.uuid4()), "not-a-uuid", "..%2F..%2Fother"])
def test_unknown_backup_is_404(clinic_factory, backup_id):
    schema = clinic_factory()
    reply = call(
        "list_backups",
        load_event("list_backups/get_backup.json", token=mint(schema), backup_id=backup_id),
    )
    assert_error(reply, 404, "backup_not_found")


def test_second_backup_while_one_is_pending_is_409(clinic_factory, sqs):
    schema = clinic_factory()
    assert post(mint(schema)).status == 202
    assert_error(post(mint(schema)), 409, "operation_in_progress")
    assert len(sqs.receive()) == 1


def test_download_of_a_pending_backup_is_409(clinic_factory):
    schema = clinic_factory()
    record = post(mint(schema)).body
    reply = call(
        "download_backup",
        load_event("download_backup/get_download.json", token=mint(schema), backup_id=record["id"]),
    )
    assert_error(reply, 409, "backup_not_completed")


def test_delete_of_a_running_backup_is_409(clinic_factory):
    schema = clinic_factory()
    record = post(mint(schema)).body
    reply = call(
        "delete_backup",
        load_event("delete_backup/delete_backup.json", token=mint(schema), backup_id=record["id"]),
    )
    assert_error(reply, 409, "operation_in_progress")


def test_huge_body_is_413(clinic_factory):
    schema = clinic_factory()
    assert_error(
        post(mint(schema), body=json.dumps({"note": "x" * 20000})), 413, "payload_too_large"
    )


@pytest.mark.parametrize(
    "body,field",
    [
        ({"note": "x" * 201}, "note"),
        ({"note": 5}, "note"),
        (
            {
                "kind": "backup",
                "schema": "clinica_otra",
                "backup_id": str(uuid.uuid4()),
                "trigger": "manual",
            },
            "kind",
        ),
        ([1, 2], "body"),
    ],
)
def test_invalid_body_is_422_with_the_field(clinic_factory, sqs, body, field):
    schema = clinic_factory()
    reply = post(mint(schema), body=body)
    assert_error(reply, 422, "validation_error")
    assert field in [d["field"] for d in reply.body["error"]["details"]]
    assert sqs.receive() == []


def test_limit_above_100_is_422(clinic_factory):
    schema = clinic_factory()
    reply = call(
        "list_backups",
        load_event("list_backups/get_backups.json", token=mint(schema), query={"limit": "500"}),
    )
    assert_error(reply, 422, "validation_error")


def test_manual_backups_over_the_daily_quota_are_429(clinic_factory, sqs, monkeypatch):
    from tests.helpers import reset_caches

    monkeypatch.setenv("MANUAL_BACKUPS_PER_DAY", "1")
    reset_caches()
    schema = clinic_factory()
    assert post(mint(schema)).status == 202
    sqs.drain_into_worker()
    assert_error(post(mint(schema)), 429, "quota_exceeded")


def test_misconfiguration_is_500_without_details(clinic_factory, monkeypatch, logs):
    from tests.helpers import reset_caches

    schema = clinic_factory()
    monkeypatch.delenv("JWT_AUDIENCE")
    reset_caches()
    reply = call("list_backups", load_event("list_backups/get_me.json", token=mint(schema)))
    assert_error(reply, 500, "internal_error")
    out = logs.text
    assert "jwt_audience" in out  # the log names the field …
    assert JWT_SECRET not in out and JWT_SECRET not in json.dumps(reply.body)  # … never a value


def test_database_down_is_503(clinic_factory, monkeypatch, logs):
    from tests.helpers import reset_caches

    monkeypatch.setenv("DATABASE_URL", "postgresql://backup:s3cr3t-pw@127.0.0.1:1/clinics")
    reset_caches()
    reply = call("list_backups", load_event("list_backups/get_me.json", token=mint("clinica_x")))
    assert_error(reply, 503, "service_unavailable")
    out = logs.text + json.dumps(reply.body)
    assert "s3cr3t-pw" not in out and "postgresql://" not in out


def test_queue_down_is_503_and_leaves_no_pending_backup(clinic_factory, monkeypatch, sqs):
    from tests.helpers import reset_caches

    schema = clinic_factory()
    monkeypatch.setenv("JOB_QUEUE_URL", sqs.url + "-missing")
    reset_caches()
    assert_error(post(mint(schema)), 503, "service_unavailable")
    monkeypatch.setenv("JOB_QUEUE_URL", sqs.url)
    reset_caches()
    # the lock was released: the next request is accepted
    assert post(mint(schema)).status == 202
