"""A clinic, a completed backup, tokens, the local Supabase Storage API and an SQS queue:
what the cold-start and latency benchmarks call the functions with."""

from __future__ import annotations

import copy
import importlib.util
import json
import os
import secrets
import statistics
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import jwt
import psycopg2
from psycopg2 import sql

from bench import common

SCHEMA = "bench_api"
ISSUER, AUDIENCE = "bench", "bench"
REPO = common.REPO


class ApiFixture:
    def __init__(self, env: Any):
        self.bench = env
        self.secret = "bench-secret-bench-secret-bench-secret-0123456789"
        self.env: dict[str, str] = {}
        self.backup_id = ""

    # --- lifecycle ------------------------------------------------------------------------

    def __enter__(self) -> ApiFixture:
        import boto3
        from moto.server import ThreadedMotoServer

        from devstack.postgres import find_free_port
        from devstack.supabase_storage import SupabaseStorageFake

        self.supabase = SupabaseStorageFake(
            self.bench.s3.client(), jwt_secret=secrets.token_urlsafe(32)
        )
        self.supabase.start()
        port = find_free_port()
        self.moto = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
        self.moto.start()
        sqs = boto3.client(
            "sqs",
            endpoint_url=f"http://127.0.0.1:{port}",
            region_name="eu-west-1",
            aws_access_key_id="bench",
            aws_secret_access_key="bench",
        )
        queue_url = sqs.create_queue(QueueName="bench-jobs")["QueueUrl"]
        self.env = {
            **self.bench.settings_env("s3"),
            "JWT_SECRET": self.secret,
            "JWT_ISSUER": ISSUER,
            "JWT_AUDIENCE": AUDIENCE,
            "STORAGE_BACKEND": "supabase",
            "SUPABASE_URL": self.supabase.url,
            "SUPABASE_SERVICE_KEY": self.supabase.service_key,
            "JOB_QUEUE": "sqs",
            "JOB_QUEUE_URL": queue_url,
            "AWS_ENDPOINT_URL_SQS": f"http://127.0.0.1:{port}",
            "AWS_ACCESS_KEY_ID": "bench",
            "AWS_SECRET_ACCESS_KEY": "bench",
            "AWS_DEFAULT_REGION": "eu-west-1",
        }
        common.ensure_clinic(self.bench.url, SCHEMA, patients=300, note_bytes=100)
        self.register_clinic_key()
        self.release_lock()
        done = common.run_child(
            "bench.backup_child", {"schema": SCHEMA, "sink": "s3"}, env=self.env
        )
        self.backup_id = done["backup_id"]
        return self

    def __exit__(self, *exc: object) -> None:
        self.supabase.stop()
        self.moto.stop()

    # --- events ---------------------------------------------------------------------------

    def token(self, role: str = "admin") -> str:
        now = int(time.time())
        return jwt.encode(
            {
                "sub": "bench-user",
                "name": "Bench",
                "tenant": SCHEMA,
                "clinic_role": role,
                "iss": ISSUER,
                "aud": AUDIENCE,
                "iat": now,
                "exp": now + 3600,
            },
            self.secret,
            algorithm="HS256",
        )

    def event(self, function: str, sample: str | None = None) -> dict[str, Any]:
        sample = (
            sample
            or {
                "list_backups": "list_backups/get_backups.json",
                "download_backup": "download_backup/get_download.json",
                "create_backup": "create_backup/post_backups.json",
                "delete_backup": "delete_backup/delete_backup.json",
            }[function]
        )
        event = json.loads((REPO / "events" / sample).read_text())
        event = copy.deepcopy(event)
        event["headers"]["authorization"] = f"Bearer {self.token()}"
        event["requestContext"]["requestId"] = uuid.uuid4().hex
        if "pathParameters" in event:
            old = event["pathParameters"]["id"]
            event["pathParameters"]["id"] = self.backup_id
            event["rawPath"] = event["rawPath"].replace(old, self.backup_id)
            event["requestContext"]["http"]["path"] = event["rawPath"]
        return event

    def naive_payload(self) -> dict[str, str]:
        return {"supabase_url": self.supabase.url, "supabase_key": self.supabase.service_key}

    def before_cold_start(self, function: str) -> None:
        """POST /backups takes the clinic's lock: release it so each cold start does the same
        work; DELETE of an already deleted backup is a no-op (still a full request)."""
        if function == "create_backup":
            self.release_lock()

    def register_clinic_key(self) -> None:
        """A clinic key, so downloads are of backups the clinic can open (else 409)."""
        from clinic_backups.adapters.keys import PostgresKeys
        from clinic_backups.adapters.postgres import Database, PostgresRecords
        from clinic_backups.domain.models import EncryptionKey
        from clinic_backups.usecases import keys
        from pyrage import x25519

        db = Database(self.bench.url)
        PostgresRecords(db).ensure_schema(SCHEMA)
        repo = PostgresKeys(db)
        if not repo.list(SCHEMA):
            public = str(x25519.Identity.generate().to_public())
            repo.add(
                SCHEMA,
                EncryptionKey(
                    id=uuid.uuid4(),
                    label="bench",
                    public_key=public,
                    fingerprint=keys.fingerprint(public),
                    created_by="bench",
                    created_at=datetime.now(UTC),
                ),
            )
        db.close()

    def release_lock(self) -> None:
        with psycopg2.connect(self.bench.url) as conn, conn.cursor() as cur:
            cur.execute(
                sql.SQL(
                    "UPDATE {} SET status = 'failed' WHERE status IN ('pending','running')"
                ).format(sql.Identifier(SCHEMA, "backup_records"))
            )
            cur.execute(
                sql.SQL("DELETE FROM {}").format(sql.Identifier(SCHEMA, "backup_operation_lock"))
            )

    def seed_records(self, count: int) -> None:
        """Completed records (metadata only) so the clinic's history has `count` rows."""
        with psycopg2.connect(self.bench.url) as conn, conn.cursor() as cur:
            table = sql.Identifier(SCHEMA, "backup_records")
            cur.execute(sql.SQL("SELECT count(*) FROM {}").format(table))
            have = cur.fetchone()[0]
            if have >= count:
                return
            cur.execute(
                sql.SQL(
                    "INSERT INTO {t} (id, status, trigger, file_name, storage_key, size_bytes, sha256, "
                    "compression, created_by, created_by_name, created_at, started_at, finished_at) "
                    "SELECT gen_random_uuid(), 'completed', 'scheduled', 'f' || i || '.dump', "
                    "%s || '/seed/' || i || '.dump', 1000 + i, md5(i::text) || md5(i::text), 'zstd:3', "
                    "'scheduler', 'Sistema', now() - i * interval '1 day', "
                    "now() - i * interval '1 day', now() - i * interval '1 day' "
                    "FROM generate_series(1, %s) i"
                ).format(t=table),
                (SCHEMA, count - have),
            )

    # --- in-process latency ----------------------------------------------------------------

    def warm_latency(self, calls: int) -> dict[str, tuple[float, float]]:
        os.environ.update(self.env)
        modules = {name: _load(name) for name in ("list_backups", "download_backup")}
        context = type(
            "Ctx",
            (),
            {
                "function_name": "bench",
                "memory_limit_in_mb": 256,
                "invoked_function_arn": "arn:aws:lambda:eu-west-1:1:function:f",
                "aws_request_id": "warm",
            },
        )()
        self.release_lock()
        cases = {
            "GET /backups (page of 20)": (modules["list_backups"], self.event("list_backups")),
            "GET /backups/{id}": (
                modules["list_backups"],
                self.event("list_backups", "list_backups/get_backup.json"),
            ),
            "GET /backups/{id}/download (Supabase signed URL, HTTP to the local Storage API)": (
                modules["download_backup"],
                self.event("download_backup"),
            ),
        }
        results = {}
        for name, (module, event) in cases.items():
            assert module.lambda_handler(event, context)["statusCode"] == 200
            times = []
            for _ in range(calls):
                start = time.perf_counter()
                module.lambda_handler(event, context)
                times.append((time.perf_counter() - start) * 1000)
            times.sort()
            results[name] = (statistics.median(times), times[int(len(times) * 0.99) - 1])
        return results


def _load(function: str) -> Any:
    spec = importlib.util.spec_from_file_location(
        f"bench_{function}", Path(REPO) / "functions" / function / "app.py"
    )
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
