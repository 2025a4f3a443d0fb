"""Hostile and malformed input gets a clear 4xx with a code from the contract, never a 500,
and a private key is refused wherever and however it is written.

Each case here was a 500 (or an accepted secret) before: a 5,000-digit integer, bodies and
cursors nested thousands deep, invalid UTF-8 and UTF-16 bodies, NUL characters and lone
surrogates, a whitespace-only label, hostile token claims, and `AGE-SECRET-KEY-` written with
JSON escapes, full-width letters or in a field other than the key's.
"""

from __future__ import annotations

import base64
import json
import uuid
from typing import Any

import pytest
from psycopg2 import sql

from tests.helpers import Reply, call, load_event, mint

pytestmark = pytest.mark.usefixtures("app_env")

# A real-looking age identity: the text a clinic might paste by mistake.
SECRET = "AGE-SECRET-KEY-1QYQSZQGPQYQSZQGPQYQSZQGPQYQSZQGPQYQSZQGPQYQSZQGPQYQS3290GG"

# (function, sample event, needs an id, a valid body the route accepts)
BODY_ROUTES: dict[str, tuple[str, bool, dict[str, Any]]] = {
    "create_backup": ("create_backup/post_backups.json", False, {"note": "ok"}),
    "patch_backup": ("delete_backup/patch_backup.json", True, {"keep": True}),
    "put_settings": (
        "backup_settings/put_backup_settings.json",
        False,
        {
            "enabled": True,
            "hour": 3,
            "weekdays": [1, 2],
            "time_zone": "Europe/Madrid",
            "keep_daily": 7,
            "keep_weekly": 4,
            "keep_monthly": 6,
        },
    ),
    "register_key": (
        "encryption_keys/post_key.json",
        False,
        {"label": "Dirección", "public_key": "age1notakey"},
    ),
    "restore": ("restore_backup/post_restore.json", True, {"confirm": "x"}),
}
FUNCTION = {
    "create_backup": "create_backup",
    "patch_backup": "delete_backup",
    "put_settings": "backup_settings",
    "register_key": "encryption_keys",
    "restore": "restore_backup",
}


def send(route: str, schema: str, body: Any, *, base64_body: bytes | None = None) -> Reply:
    sample, needs_id, _ = BODY_ROUTES[route]
    event = load_event(
        sample,
        token=mint(schema),
        backup_id=str(uuid.uuid4()) if needs_id else None,
        body=body,
    )
    if base64_body is not None:
        event["body"] = base64.b64encode(base64_body).decode()
        event["isBase64Encoded"] = True
    return call(FUNCTION[route], event)


def assert_refused(reply: Reply, status: int, code: str) -> None:
    assert (reply.status, reply.error_code) == (status, code), reply.body
    assert reply.body["error"]["message"]
    assert reply.headers.get("Content-Type") == "application/json"
    assert reply.headers.get("X-Content-Type-Options") == "nosniff"
    assert reply.headers.get("Cache-Control") == "no-store"


def fields(reply: Reply) -> list[str]:
    return [d["field"] for d in reply.body["error"].get("details", [])]


def clinic_text(db: Any, schema: str) -> str:
    """Everything the clinic's own tables hold, as text."""
    out = []
    with db.cursor() as cur:
        cur.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = %s "
            "AND table_name LIKE 'backup\\_%%'",
            (schema,),
        )
        for (table,) in cur.fetchall():
            cur.execute(
                sql.SQL("SELECT coalesce(string_agg(t::text, ' '), '') FROM {} t").format(
                    sql.Identifier(schema, table)
                )
            )
            out.append(cur.fetchone()[0])
    return " ".join(out)


# --- private keys, however written -----------------------------------------------------------


def _escaped(text: str) -> str:
    return text.replace("-", "\\u002d")


SECRET_SPELLINGS = {
    "plain": json.dumps(SECRET),
    "json_escapes": '"' + _escaped(SECRET) + '"',
    "lower_case": json.dumps(SECRET.lower()),
    "full_width": json.dumps("ＡＧＥ－ＳＥＣＲＥＴ－ＫＥＹ－" + SECRET[15:]),
    "zero_width_inside": json.dumps("AGE-\u200bSECRET-KEY-" + SECRET[15:]),
}


@pytest.mark.parametrize("route", sorted(BODY_ROUTES))
@pytest.mark.parametrize("spelling", sorted(SECRET_SPELLINGS))
def test_a_private_key_in_any_body_field_is_refused(clinic_factory, db, logs, route, spelling):
    schema = clinic_factory()
    _, _, valid = BODY_ROUTES[route]
    # the key pasted into the route's first string field, or an unknown one
    target = next((k for k, v in valid.items() if isinstance(v, str)), "anything")
    raw = json.dumps({**valid, target: "PLACEHOLDER"}).replace(
        '"PLACEHOLDER"', SECRET_SPELLINGS[spelling]
    )
    reply = send(route, schema, raw)
    assert_refused(reply, 422, "private_key_refused")
    assert SECRET[15:45] not in json.dumps(reply.body) and SECRET[15:45] not in logs.text
    assert SECRET[15:45].lower() not in clinic_text(db, schema).lower()


@pytest.mark.parametrize(
    "body",
    [
        {"note": "ok", "extra": {"deep": [{"deeper": SECRET}]}},
        {"note": "ok", SECRET: 1},
        {"note": f"mi llave es {SECRET[:20]}", "x": [1, 2, "age-secret-key-1abc"]},
    ],
    ids=["nested_value", "as_a_key", "lower_case_in_a_list"],
)
def test_a_backup_note_or_any_nested_string_with_a_private_key_is_refused(
    clinic_factory, db, sqs, body
):
    schema = clinic_factory()
    reply = send("create_backup", schema, body)
    assert_refused(reply, 422, "private_key_refused")
    assert sqs.receive() == []
    assert "SECRET-KEY" not in clinic_text(db, schema).upper()


def test_a_note_that_only_mentions_keys_is_accepted(clinic_factory, sqs):
    schema = clinic_factory()
    reply = send("create_backup", schema, {"note": "antes de cambiar la llave age1… (secret)"})
    assert reply.status == 202, reply.body


# --- malformed bodies --------------------------------------------------------------------------

HUGE_INT = "1" * 5000


@pytest.mark.parametrize(
    "route,raw",
    [
        ("create_backup", '{"note": "x", "n": ' + HUGE_INT + "}"),
        ("put_settings", '{"hour": ' + HUGE_INT + "}"),
        ("patch_backup", '{"keep": -' + HUGE_INT + "}"),
        ("create_backup", "[" * 5000 + "]" * 5000),
        ("put_settings", '{"a":' * 2000 + "1" + "}" * 2000),
        ("register_key", '{"label": "x", "public_key": ' + "[" * 1200 + "]" * 1200 + "}"),
        ("put_settings", '{"hour": NaN}'),
        ("create_backup", '{"note": Infinity}'),
    ],
    ids=[
        "5000_digit_int",
        "5000_digit_hour",
        "5000_digit_negative",
        "nested_arrays",
        "nested_objects",
        "nested_value",
        "nan",
        "infinity",
    ],
)
def test_numbers_and_nesting_beyond_the_limits_are_400(clinic_factory, route, raw):
    schema = clinic_factory()
    assert_refused(send(route, schema, raw), 400, "bad_request")


@pytest.mark.parametrize(
    "payload",
    [
        b'{"note": "\xff\xfe caf\xe9"}',
        '{"note": "hola"}'.encode("utf-16"),
        '{"note": "hola"}'.encode("utf-16-be"),
        b"\xef\xbb\xbf" + b'{"note": "bom"}',
        b'{"note": "\xed\xa0\x80"}',  # a surrogate encoded as if it were UTF-8
    ],
    ids=["latin1", "utf16_bom", "utf16_be", "utf8_bom", "encoded_surrogate"],
)
def test_bodies_that_are_not_utf8_json_are_400(clinic_factory, payload):
    schema = clinic_factory()
    assert_refused(send("create_backup", schema, None, base64_body=payload), 400, "bad_request")


@pytest.mark.parametrize(
    "route,raw,field",
    [
        ("create_backup", '{"note": "a\\u0000b"}', "note"),
        ("create_backup", '{"note": "\\ud800"}', "note"),
        ("create_backup", '{"note": "ok \\udfff"}', "note"),
        ("register_key", '{"label": "mi\\u0000llave", "public_key": "age1x"}', "label"),
        ("register_key", '{"label": "\\udc00", "public_key": "age1x"}', "label"),
        ("put_settings", '{"time_zone": "Europe/Madrid\\u0000"}', "time_zone"),
        ("restore", '{"confirm": "\\ud83d"}', "confirm"),
        ("create_backup", '{"note": "x", "extra": ["ok", "b\\u0000d"]}', "extra.1"),
    ],
    ids=[
        "nul_note",
        "lone_high_surrogate",
        "lone_low_surrogate",
        "nul_label",
        "surrogate_label",
        "nul_time_zone",
        "half_an_emoji",
        "nul_nested",
    ],
)
def test_nul_and_lone_surrogates_are_422_naming_the_field(clinic_factory, sqs, route, raw, field):
    schema = clinic_factory()
    reply = send(route, schema, raw)
    assert_refused(reply, 422, "validation_error")
    assert field in fields(reply), reply.body
    assert sqs.receive() == []


@pytest.mark.parametrize("label", ["   ", "\t\n", "\u3000"])
def test_a_blank_label_is_422(clinic_factory, label):
    from pyrage import x25519

    schema = clinic_factory()
    public = str(x25519.Identity.generate().to_public())
    reply = send("register_key", schema, {"label": label, "public_key": public})
    assert_refused(reply, 422, "validation_error")
    assert fields(reply) == ["label"]


def test_an_emoji_and_accents_are_fine_everywhere(clinic_factory, sqs):
    schema = clinic_factory()
    reply = send("create_backup", schema, {"note": "Copia antes de la auditoría 🦷 ñ"})
    assert reply.status == 202, reply.body
    assert reply.body["note"] == "Copia antes de la auditoría 🦷 ñ"


# --- cursors and query strings -----------------------------------------------------------------


def _cursor(text: str) -> str:
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


@pytest.mark.parametrize(
    "cursor",
    [
        _cursor("[" * 3000 + "]" * 3000),
        _cursor('["' + "2026-01-01T00:00:00+00:00" + '", ' + HUGE_INT + "]"),
        _cursor('["\\u0000", "\\ud800"]'),
        "A" * 20000,
        "%00",
        "\u00e9\u00e9",
    ],
    ids=["nested", "huge_int", "nul_and_surrogate", "huge", "nul", "not_base64"],
)
@pytest.mark.parametrize(
    "sample,function",
    [
        ("list_backups/get_backups.json", "list_backups"),
        ("restore_backup/get_restores.json", "restore_backup"),
    ],
)
def test_hostile_cursors_are_400_invalid_cursor(clinic_factory, cursor, sample, function):
    schema = clinic_factory()
    reply = call(function, load_event(sample, token=mint(schema), query={"cursor": cursor}))
    assert_refused(reply, 400, "invalid_cursor")


@pytest.mark.parametrize("limit", [HUGE_INT, "1e3", "\u0000", "-" + HUGE_INT])
def test_a_hostile_limit_is_422(clinic_factory, limit):
    schema = clinic_factory()
    reply = call(
        "list_backups",
        load_event("list_backups/get_backups.json", token=mint(schema), query={"limit": limit}),
    )
    assert_refused(reply, 422, "validation_error")


# --- hostile token claims ----------------------------------------------------------------------

HOSTILE_CLAIMS: dict[str, dict[str, Any]] = {
    "nul_in_sub": {"sub": "user\u0000-1"},
    "surrogate_in_sub": {"sub": "user-\ud800"},
    "nul_in_name": {"name": "Ana\u0000"},
    "surrogate_in_name": {"name": "\udfffAna"},
    "huge_sub": {"sub": "u" * 100_000},
    "huge_name": {"name": "n" * 100_000},
    "sub_is_a_number": {"sub": 12345},
    "sub_is_a_list": {"sub": ["user-1"]},
    "sub_is_an_object": {"sub": {"id": "user-1"}},
    "name_is_a_list": {"name": ["Ana"]},
    "name_is_an_object": {"name": {"first": "Ana"}},
    "control_chars_in_sub": {"sub": "user\r\nX-Injected: 1"},
}


@pytest.mark.parametrize("hostile", sorted(HOSTILE_CLAIMS))
def test_hostile_token_claims_are_401_and_audited_in_the_clinic(clinic_factory, db, hostile):
    schema = clinic_factory()
    claims = HOSTILE_CLAIMS[hostile]
    token = mint(schema, **{k: v for k, v in claims.items() if k in ("sub", "name")})
    reply = call("list_backups", load_event("list_backups/get_me.json", token=token))
    assert_refused(reply, 401, "invalid_token")
    with db.cursor() as cur:
        cur.execute(
            sql.SQL("SELECT action, outcome, actor_id, details FROM {}").format(
                sql.Identifier(schema, "backup_audit")
            )
        )
        rows = cur.fetchall()
    assert [(a, o, actor) for a, o, actor, _ in rows] == [("auth.token", "refused", None)]
    assert rows[0][3]["claims"] == sorted(claims)
    assert "Ana" not in json.dumps(rows[0][3]) and "user" not in json.dumps(rows[0][3])


def test_a_hostile_claim_for_an_unknown_clinic_is_401_and_audited_nowhere(clinic_factory):
    token = mint("clinica_que_no_existe", sub="x\u0000")
    reply = call("list_backups", load_event("list_backups/get_me.json", token=token))
    assert_refused(reply, 401, "invalid_token")


def test_an_ordinary_name_and_email_still_sign_in(clinic_factory):
    schema = clinic_factory()
    token = mint(schema, name=None, email="ana@clinica.test")
    reply = call("list_backups", load_event("list_backups/get_me.json", token=token))
    assert reply.status == 200 and reply.body["user"]["name"] == "ana@clinica.test"
