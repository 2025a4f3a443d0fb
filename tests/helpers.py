"""Test helpers: sample events, token minting, calling handlers in-process."""

from __future__ import annotations

import copy
import importlib.util
import json
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import jwt

REPO = Path(__file__).resolve().parent.parent
EVENTS = REPO / "events"
FUNCTIONS = REPO / "functions"

JWT_SECRET = "test-secret-" + uuid.uuid4().hex + uuid.uuid4().hex
JWT_ISSUER = "https://auth.clinic.test/"
JWT_AUDIENCE = "clinic-backups"

SAMPLE_ID = "00000000-0000-4000-8000-000000000000"


def _platform_identity() -> tuple[str, str]:
    from pyrage import x25519

    identity = x25519.Identity.generate()
    return str(identity), str(identity.to_public())


# The platform's restore identity for this test session (the local stack makes its own).
PLATFORM_IDENTITY, PLATFORM_RECIPIENT = _platform_identity()


def mint(
    schema: str | None,
    clinic_role: str | None = "admin",
    *,
    sub: str | None = "user-1",
    name: str | None = "Dra. Ana Pérez",
    secret: Any = JWT_SECRET,
    algorithm: str = "HS256",
    ttl: int = 300,
    headers: dict[str, Any] | None = None,
    **claims: Any,
) -> str:
    now = int(time.time())
    payload: dict[str, Any] = {
        "sub": sub,
        "iss": JWT_ISSUER,
        "aud": JWT_AUDIENCE,
        "iat": now,
        "exp": now + ttl,
    }
    if schema is not None:
        payload["tenant"] = schema
    if clinic_role is not None:
        payload["clinic_role"] = clinic_role
    if name is not None:
        payload["name"] = name
    payload.update(claims)
    payload = {k: v for k, v in payload.items() if v is not None}
    return jwt.encode(payload, secret, algorithm=algorithm, headers=headers)


def load_event(
    relative: str,
    *,
    token: str | None = None,
    backup_id: str | None = None,
    body: Any = ...,
    query: dict[str, str] | None = None,
    headers: dict[str, str] | None = None,
    drop_auth: bool = False,
) -> dict[str, Any]:
    """One of the sample events in `events/` (the same files `sam local invoke` uses), with
    the token, id, body and query of this test."""
    event = json.loads((EVENTS / relative).read_text())
    if "requestContext" not in event:
        return event
    event = copy.deepcopy(event)
    event["requestContext"]["requestId"] = "req-" + uuid.uuid4().hex[:12]
    if drop_auth:
        event["headers"].pop("authorization", None)
    elif token is not None:
        event["headers"]["authorization"] = f"Bearer {token}"
    if headers:
        event["headers"].update(headers)
    if backup_id is not None:
        for holder, key in ((event, "rawPath"), (event["requestContext"]["http"], "path")):
            holder[key] = holder[key].replace(SAMPLE_ID, backup_id)
        event["pathParameters"] = {"id": backup_id}
    if body is not ...:
        event["body"] = body if isinstance(body, str) or body is None else json.dumps(body)
    if query is not None:
        event["queryStringParameters"] = query
        event["rawQueryString"] = "&".join(f"{k}={v}" for k, v in query.items())
    return event


def sqs_event(messages: list[tuple[str, str]]) -> dict[str, Any]:
    """An SQS batch event built from the sample, one record per (message id, body)."""
    template = json.loads((EVENTS / "create_backup/sqs_job.json").read_text())["Records"][0]
    records = []
    for message_id, body in messages:
        record = copy.deepcopy(template)
        record["messageId"] = message_id
        record["body"] = body
        records.append(record)
    return {"Records": records}


@dataclass
class LambdaContext:
    function_name: str = "test-function"
    memory_limit_in_mb: int = 512
    invoked_function_arn: str = "arn:aws:lambda:eu-west-1:123456789012:function:test-function"
    aws_request_id: str = "test-request"

    def get_remaining_time_in_millis(self) -> int:
        return 600_000


_modules: dict[str, ModuleType] = {}


def function_module(name: str) -> ModuleType:
    """`functions/<name>/app.py`, imported once per test session under a unique name."""
    if name not in _modules:
        spec = importlib.util.spec_from_file_location(f"fn_{name}", FUNCTIONS / name / "app.py")
        assert spec and spec.loader
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        _modules[name] = module
    return _modules[name]


def reset_caches() -> None:
    """Forget settings and adapters built from an earlier test's environment."""
    from clinic_backups.edge import auth
    from clinic_backups.wiring import factory, settings

    settings.get_settings.cache_clear()
    auth._jwks_client.cache_clear()
    for module in _modules.values():
        module.fn.services.cache_clear()
    for db in factory._databases.values():
        db.close()
    factory._databases.clear()


@dataclass
class Reply:
    status: int
    body: Any
    headers: dict[str, str]

    @property
    def error_code(self) -> str | None:
        if isinstance(self.body, dict) and isinstance(self.body.get("error"), dict):
            return self.body["error"].get("code")
        return None


def invoke(function: str, event: dict[str, Any]) -> Any:
    return function_module(function).lambda_handler(event, LambdaContext(function_name=function))


def call(function: str, event: dict[str, Any]) -> Reply:
    raw = invoke(function, event)
    body = raw.get("body")
    parsed = json.loads(body) if body else None
    return Reply(status=raw["statusCode"], body=parsed, headers=raw.get("headers") or {})


class FixedClock:
    """A clock that says what the test says (`Services.clock`); `advance` moves it on."""

    def __init__(self, at: Any):
        self.at = at

    def now(self) -> Any:
        return self.at

    def advance(self, **delta: float) -> Any:
        from datetime import timedelta

        self.at = self.at + timedelta(**delta)
        return self.at


def register_clinic_key(schema: str, label: str = "Llave de dirección") -> str:
    """Register a new age key for the clinic through the API; returns its identity (the
    private key a clinic keeps on its side)."""
    from pyrage import x25519

    identity = x25519.Identity.generate()
    reply = call(
        "encryption_keys",
        load_event(
            "encryption_keys/post_key.json",
            token=mint(schema, "admin"),
            body={"label": label, "public_key": str(identity.to_public())},
        ),
    )
    assert reply.status == 201, reply.body
    return str(identity)


def encrypted(data: bytes) -> bytes:
    """`data` as age ciphertext to the session's platform key: what a test that stores an
    object by hand must store, like the product (the session's scan refuses plaintext)."""
    import pyrage
    from pyrage import x25519

    return pyrage.encrypt(data, [x25519.Recipient.from_str(PLATFORM_RECIPIENT)])


def decrypt(data: bytes, identity: str) -> bytes:
    import pyrage
    from pyrage import x25519

    return pyrage.decrypt(data, [x25519.Identity.from_str(identity)])


def drop_clinics(conn: Any, schemas: list[str]) -> None:
    """Test clean-up: each clinic schema, whatever its restores set aside (`<clinic>__…`), and
    its tenant row. First, every row of the clinics' `backup_*` tables is scanned for secrets
    (tests/invariants.py); a finding fails the test once the clinics are dropped."""
    from psycopg2 import sql

    from devstack import clinic_data
    from tests import invariants

    with conn, conn.cursor() as cur:
        report = invariants.scan_rows(cur, schemas)
    invariants.record(report)
    with conn, conn.cursor() as cur:
        for schema in schemas:
            cur.execute(
                "SELECT nspname FROM pg_namespace WHERE nspname = %s OR nspname LIKE %s",
                (schema, schema.replace("_", r"\_") + r"\_\_%"),
            )
            for (name,) in cur.fetchall():
                cur.execute(sql.SQL("DROP SCHEMA {} CASCADE").format(sql.Identifier(name)))
            cur.execute(
                sql.SQL("DELETE FROM {} WHERE schema_name = %s").format(
                    sql.Identifier(*clinic_data.TENANTS_TABLE)
                ),
                (schema,),
            )
    report.check()


class JsonServer:
    """A real HTTP server on loopback answering GET with JSON (a JWKS endpoint in the auth
    and doctor tests). `answer(path)` gives the document, or None for a 404; `fetches` counts
    the documents served."""

    def __init__(self, answer: Any) -> None:
        import threading
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        owner = self
        self.fetches = 0

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                document = answer(self.path)
                if document is None:
                    self.send_error(404)
                    return
                owner.fetches += 1
                body = json.dumps(document).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.base_url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        ).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@contextmanager
def seaweed(data_dir: Path) -> Iterator[Any]:
    """A running SeaweedFS (devstack.seaweed) for a test scope; its secret key registered with
    the invariant scan (never stored in an object), stopped afterwards."""
    from devstack.seaweed import SeaweedS3
    from tests import invariants

    server = SeaweedS3(data_dir)
    invariants.register_secret(server.secret_key)
    server.start()
    try:
        yield server
    finally:
        server.stop()


def check_every_object(client: Any, where: str) -> None:
    """The invariant scan of every object of every bucket of a server (tests/invariants.py),
    recorded for the session's summary; a finding fails the caller."""
    from tests import invariants

    report = invariants.scan_server(client, where)
    invariants.record(report)
    report.check()
