"""`doctor`: check a deployment from where it runs, one line per check.

    python -m clinic_backups.edge.cli doctor

Each check prints `✓ <name>: <what was found>` or `✗ <name>: <what is wrong> — fix: <what to
do>`; the exit code is 1 when any check failed. The checks, in order:

  - database: DATABASE_URL answers (and the server's version);
  - privileges: the backup role (DATABASE_URL's) may use and create in every active clinic's
    schema and read its tables and sequences, and reads the tenants table; the restore role
    (RESTORE_DATABASE_URL, when set) is a member of each clinic schema's owner and may CREATE
    in the database. A gap prints the SQL that closes it (built with psycopg2.sql);
  - pg_dump / pg_restore: present in PG_BIN_DIR, and not older than the server (pg_dump refuses
    a newer server);
  - bucket: exists and is private; on Supabase also its file_size_limit and allowed MIME types
    (the product stores application/octet-stream archives and application/json manifests);
  - signed URL: a probe object under a prefix no clinic can have (`doctor-probe/`: a dash is
    never in a clinic's schema name) is stored, fetched through a signed download URL, compared
    and deleted. The URL is never printed;
  - JWKS and issuer: the JWKS answers with signing keys, and JWT_ISSUER is the issuer that
    serves it (Supabase: `https://<ref>.supabase.co/auth/v1`);
  - platform recipient: the first PLATFORM_AGE_RECIPIENTS key (every backup is encrypted to it)
    is the public key of one of PLATFORM_AGE_IDENTITIES (what restores decrypt with);
  - queues: the SQS job and restore queues answer (GetQueueAttributes).

A check never prints a secret: no connection string, password, key or signed URL.
"""

from __future__ import annotations

import secrets
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from clinic_backups.wiring.settings import OperatorSettings

PROBE_PREFIX = "doctor-probe/"
ARCHIVE_TYPES = ("application/octet-stream", "application/json")
JWKS_PATH = "/.well-known/jwks.json"


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    detail: str
    fix: str | None = None

    def line(self) -> str:
        if self.ok:
            return f"✓ {self.name}: {self.detail}"
        return f"✗ {self.name}: {self.detail}" + (f" — fix: {self.fix}" if self.fix else "")


def _failed(name: str, error: BaseException, fix: str) -> Check:
    # The exception's type only: its text may carry a host, a URL or a key.
    return Check(name, False, f"failed ({type(error).__name__})", fix)


class Doctor:
    def __init__(self, settings: OperatorSettings):
        self.settings = settings
        self.server_major: int | None = None
        self.clinics: list[str] = []

    # ------------------------------------------------------------------ database

    def _connect(self, url: Any) -> Any:
        import psycopg2

        return psycopg2.connect(
            url.get_secret_value(), connect_timeout=self.settings.database_connect_timeout
        )

    def database(self) -> Iterator[Check]:
        import psycopg2

        try:
            conn = self._connect(self.settings.database_url)
        except psycopg2.Error as error:
            yield _failed(
                "database",
                error,
                "check DATABASE_URL (or DATABASE_SECRET_ARN), the network path and the role's "
                "password; on Supabase use the session pooler (port 5432)",
            )
            return
        try:
            conn.autocommit = True
            with conn.cursor() as cur:
                cur.execute("SELECT current_setting('server_version_num')::int, current_user")
                version_num, role = cur.fetchone()
            self.server_major = version_num // 10000
            yield Check("database", True, f"reachable as {role}, PostgreSQL {self.server_major}")
            yield from self._privileges(conn, role)
        finally:
            conn.close()
        if self.settings.restore_database_url is not None:
            yield from self._restore_role()

    def _privileges(self, conn: Any, role: str) -> Iterator[Check]:
        from psycopg2 import sql

        from clinic_backups.wiring.factory import tenants

        table = self.settings.tenants_table
        with conn.cursor() as cur:
            cur.execute("SELECT has_table_privilege(%s, 'SELECT')", (table,))
            (reads_tenants,) = cur.fetchone()
        if not reads_tenants:
            schema_name, _, table_name = table.rpartition(".")
            target = (
                sql.Identifier(schema_name, table_name) if schema_name else sql.Identifier(table)
            )
            fix = sql.SQL("GRANT SELECT ON {} TO {};").format(target, sql.Identifier(role))
            yield Check(
                "privileges",
                False,
                f"{role} cannot read the tenants table",
                f"run: {fix.as_string(conn)}",
            )
            return
        self.clinics = [c.schema for c in tenants(self.settings).active_clinics()]
        with conn.cursor() as cur:
            cur.execute(
                """
                SELECT n.nspname, pg_get_userbyid(n.nspowner),
                       has_schema_privilege(n.oid, 'USAGE'),
                       has_schema_privilege(n.oid, 'CREATE'),
                       (SELECT count(*) FROM pg_class c
                         WHERE c.relnamespace = n.oid AND c.relkind IN ('r', 'p')
                           AND NOT has_table_privilege(c.oid, 'SELECT')),
                       (SELECT count(*) FROM pg_class c
                         WHERE c.relnamespace = n.oid AND c.relkind = 'S'
                           AND NOT has_table_privilege(c.oid, 'SELECT'))
                FROM pg_namespace n WHERE n.nspname = ANY(%s)
                """,
                (self.clinics,),
            )
            # (has_table_privilege covers sequences too; has_sequence_privilege would raise on
            # a table: the planner may test it before the relkind filter.)
            found = {row[0]: row[1:] for row in cur.fetchall()}
        gaps = 0
        for schema in self.clinics:
            if schema not in found:
                gaps += 1
                yield Check(
                    f"privileges {schema}",
                    False,
                    "the tenants table names this clinic but its schema does not exist",
                    "create the clinic's schema, or mark its tenants row inactive",
                )
                continue
            owner, usage, create, tables, sequences = found[schema]
            s, r = sql.Identifier(schema), sql.Identifier(role)
            statements, missing = [], []
            if not (usage and create):
                missing.append("USAGE/CREATE on the schema")
                statements.append(sql.SQL("GRANT USAGE, CREATE ON SCHEMA {} TO {};").format(s, r))
            if tables:
                missing.append(f"SELECT on {tables} table(s)")
                statements += [
                    sql.SQL("GRANT SELECT ON ALL TABLES IN SCHEMA {} TO {};").format(s, r),
                    sql.SQL(
                        "ALTER DEFAULT PRIVILEGES FOR ROLE {} IN SCHEMA {} "
                        "GRANT SELECT ON TABLES TO {};"
                    ).format(sql.Identifier(owner), s, r),
                ]
            if sequences:
                missing.append(f"SELECT on {sequences} sequence(s)")
                statements.append(
                    sql.SQL("GRANT SELECT ON ALL SEQUENCES IN SCHEMA {} TO {};").format(s, r)
                )
            if missing:
                gaps += 1
                fix = " ".join(statement.as_string(conn) for statement in statements)
                yield Check(
                    f"privileges {schema}",
                    False,
                    f"{role} lacks " + ", ".join(missing),
                    f"run: {fix}",
                )
        if not gaps:
            yield Check(
                "privileges",
                True,
                f"{role} may back up all {len(self.clinics)} active clinic(s)",
            )

    def _restore_role(self) -> Iterator[Check]:
        import psycopg2
        from psycopg2 import sql

        assert self.settings.restore_database_url is not None
        try:
            conn = self._connect(self.settings.restore_database_url)
        except psycopg2.Error as error:
            yield _failed(
                "restore role", error, "check RESTORE_DATABASE_URL (RESTORE_DATABASE_SECRET_ARN)"
            )
            return
        try:
            with conn.cursor() as cur:
                cur.execute(
                    "SELECT current_user, current_database(), "
                    "has_database_privilege(current_database(), 'CREATE')"
                )
                role, database, may_create = cur.fetchone()
                cur.execute(
                    "SELECT DISTINCT pg_get_userbyid(nspowner) FROM pg_namespace "
                    "WHERE nspname = ANY(%s) AND NOT pg_has_role(nspowner, 'MEMBER') "
                    "ORDER BY 1",
                    (self.clinics,),
                )
                owners = [row[0] for row in cur.fetchall()]
            statements = [
                sql.SQL("GRANT {} TO {};").format(sql.Identifier(o), sql.Identifier(role))
                for o in owners
            ]
            if not may_create:
                statements.append(
                    sql.SQL("GRANT CREATE ON DATABASE {} TO {};").format(
                        sql.Identifier(database), sql.Identifier(role)
                    )
                )
            if statements:
                yield Check(
                    "restore role",
                    False,
                    f"{role} cannot rename every clinic's schema",
                    "run: " + " ".join(s.as_string(conn) for s in statements),
                )
            else:
                yield Check("restore role", True, f"{role} may restore every clinic")
        finally:
            conn.close()

    # ------------------------------------------------------------------ pg tools

    def tools(self) -> Iterator[Check]:
        import re

        for tool in ("pg_dump", "pg_restore"):
            path = Path(self.settings.pg_bin_dir) / tool
            if not path.is_file():
                yield Check(
                    tool,
                    False,
                    f"not found in PG_BIN_DIR ({self.settings.pg_bin_dir})",
                    "attach the PgDumpLayer (it mounts /opt/bin) or set PG_BIN_DIR "
                    "(locally: make layer)",
                )
                continue
            try:
                out = subprocess.run(
                    [str(path), "--version"], capture_output=True, timeout=30, check=True
                ).stdout.decode("utf-8", "replace")
            except (OSError, subprocess.SubprocessError) as error:
                yield _failed(tool, error, "rebuild the layer (make layer): the binary cannot run")
                continue
            match = re.search(r"(\d+)(?:\.\d+)?", out)
            version = match.group(0) if match else "?"
            major = int(version.split(".")[0]) if match else 0
            if self.server_major is None:
                yield Check(tool, True, f"{version} (server not reached: not compared)")
            elif major < self.server_major:
                yield Check(
                    tool,
                    False,
                    f"{version} is older than the server (PostgreSQL {self.server_major}): "
                    "it refuses to read it",
                    f"build the layer with PostgreSQL ≥ {self.server_major} (make layer)",
                )
            else:
                yield Check(tool, True, f"{version}, server PostgreSQL {self.server_major}")

    # ------------------------------------------------------------------ storage

    def _storage(self) -> Any:
        from clinic_backups.wiring.factory import storage

        return storage(self.settings)

    def bucket(self) -> Iterator[Check]:
        if self.settings.storage_backend == "supabase":
            yield from self._supabase_bucket()
        else:
            yield from self._s3_bucket()

    def _supabase_bucket(self) -> Iterator[Check]:
        import httpx
        from storage3 import SyncStorageClient
        from storage3.utils import StorageException

        name = self.settings.storage_bucket
        assert self.settings.supabase_url and self.settings.supabase_service_key
        key = self.settings.supabase_service_key.get_secret_value()
        client = SyncStorageClient(
            url=f"{self.settings.supabase_url.rstrip('/')}/storage/v1/",
            headers={"apikey": key, "Authorization": f"Bearer {key}"},
        )
        try:
            bucket = client.get_bucket(name)
        except StorageException as error:
            status = str(getattr(error, "status", ""))
            fix = (
                f"create a private bucket {name!r} (Dashboard → Storage → New bucket, Public off)"
                if status in ("404", "400")
                else "check SUPABASE_URL and SUPABASE_SERVICE_KEY (the service role key)"
            )
            yield _failed("bucket", error, fix)
            return
        except httpx.HTTPError as error:
            yield _failed("bucket", error, "check SUPABASE_URL: the Storage API did not answer")
            return
        if bucket.public:
            yield Check(
                "bucket",
                False,
                f"{name!r} is public: anyone with a file's path can download it",
                f"make it private: Dashboard → Storage → {name} → Edit bucket → Public off "
                f'(or PUT /storage/v1/bucket/{name} {{"public": false}})',
            )
        else:
            yield Check("bucket", True, f"{name!r} exists and is private")
        limit = bucket.file_size_limit
        yield Check(
            "bucket file_size_limit",
            True,
            "none (the project's upload limit applies)"
            if not limit
            else f"{limit} bytes: a larger backup fails with EntityTooLarge (413)",
        )
        allowed = list(bucket.allowed_mime_types or [])
        missing = [t for t in ARCHIVE_TYPES if allowed and t not in allowed]
        if missing:
            yield Check(
                "bucket MIME types",
                False,
                f"{name!r} refuses {', '.join(missing)}",
                f"allow {', '.join(ARCHIVE_TYPES)} (Dashboard → Storage → {name} → Edit bucket → "
                "Allowed MIME types), or clear the list",
            )
        else:
            yield Check(
                "bucket MIME types",
                True,
                "any" if not allowed else ", ".join(allowed),
            )

    def _s3_bucket(self) -> Iterator[Check]:
        import httpx
        from botocore.exceptions import BotoCoreError, ClientError

        name = self.settings.storage_bucket
        storage = self._storage()
        try:
            storage.client.head_bucket(Bucket=name)
        except (BotoCoreError, ClientError) as error:
            yield _failed(
                "bucket",
                error,
                f"create the bucket {name!r} or check S3_ENDPOINT_URL and the access keys",
            )
            return
        endpoint = self.settings.s3_endpoint_url
        if endpoint is None:
            yield Check("bucket", True, f"{name!r} exists (AWS S3: Block Public Access applies)")
            return
        try:
            anonymous = httpx.get(f"{endpoint.rstrip('/')}/{name}?list-type=2", timeout=10)
        except httpx.HTTPError as error:
            yield _failed("bucket", error, "check S3_ENDPOINT_URL")
            return
        if anonymous.status_code == 200:
            yield Check(
                "bucket",
                False,
                f"{name!r} lists its objects to anyone (anonymous read allowed)",
                "remove the anonymous/public read policy from the bucket",
            )
        else:
            yield Check("bucket", True, f"{name!r} exists and refuses anonymous reads")

    def signed_url(self) -> Iterator[Check]:
        import hashlib

        import httpx

        from clinic_backups.domain.errors import StorageUnavailable

        storage = self._storage()
        key = f"{PROBE_PREFIX}{secrets.token_hex(8)}.bin"
        probe = secrets.token_bytes(1024)
        stage = "store the probe"
        try:
            storage.put_bytes(key, probe, "application/octet-stream")
            stage = "sign a download URL"
            url = storage.signed_download_url(key, 60, "doctor-probe.bin")
            stage = "download through the signed URL"
            answer = httpx.get(url, timeout=30)
            if answer.status_code != 200 or hashlib.sha256(answer.content).digest() != (
                hashlib.sha256(probe).digest()
            ):
                yield Check(
                    "signed URL",
                    False,
                    f"the signed URL answered {answer.status_code} or other bytes",
                    "check S3_PUBLIC_ENDPOINT_URL / SUPABASE_URL (the host browsers reach)",
                )
                return
            stage = "delete the probe"
            storage.delete([key])
            if storage.head(key) is not None:
                yield Check(
                    "signed URL", False, "the probe object survived its delete", "check deletes"
                )
                return
            yield Check("signed URL", True, "store, signed download, delete: round trip ok")
        except (StorageUnavailable, httpx.HTTPError) as error:
            yield _failed(
                "signed URL",
                error,
                f"could not {stage}: check the storage settings and keys (S3_*, SUPABASE_*)",
            )
            try:
                storage.delete([key])
            except StorageUnavailable:
                pass

    # ------------------------------------------------------------------ tokens, keys, queues

    def jwks(self) -> Iterator[Check]:
        import jwt

        issuer = self.settings.jwt_issuer.rstrip("/")
        url = self.settings.jwt_jwks_url
        if not url:
            yield Check("JWKS", True, f"none (HS* secret only); issuer {issuer}")
            return
        try:
            keys = jwt.PyJWKClient(url, timeout=5).get_signing_keys()
        except jwt.PyJWKClientConnectionError as error:
            yield _failed("JWKS", error, "check JWT_JWKS_URL: it did not answer")
            return
        except jwt.PyJWTError as error:
            yield _failed("JWKS", error, "JWT_JWKS_URL answers without signing keys")
            return
        algorithms = sorted({k.algorithm_name for k in keys})
        yield Check("JWKS", True, f"{len(keys)} signing key(s) ({', '.join(algorithms)})")
        if url.endswith(JWKS_PATH):
            serving = url[: -len(JWKS_PATH)]
            if serving.rstrip("/") != issuer:
                yield Check(
                    "issuer",
                    False,
                    f"JWT_ISSUER is {self.settings.jwt_issuer} but the keys are served by "
                    f"{serving}: every token would be refused",
                    f"set JWT_ISSUER={serving}",
                )
                return
        yield Check("issuer", True, issuer)

    def platform_recipient(self) -> Iterator[Check]:
        from pyrage import x25519

        recipients = self.settings.platform_age_recipients
        if not recipients:
            yield Check(
                "platform recipient",
                False,
                "PLATFORM_AGE_RECIPIENTS is empty: no backup can be made",
                "set PLATFORM_AGE_RECIPIENTS to the platform's age public key (age1…)",
            )
            return
        identities = self.settings.identities()
        if not identities:
            yield Check(
                "platform recipient",
                False,
                "no PLATFORM_AGE_IDENTITIES: restores and verifications cannot decrypt",
                "set PLATFORM_AGE_IDENTITIES (PLATFORM_IDENTITY_SECRET_ARN in AWS)",
            )
            return
        publics = []
        for identity in identities:
            try:
                publics.append(str(x25519.Identity.from_str(identity).to_public()))
            except Exception:  # a malformed identity is reported, not raised
                publics.append("")
        if recipients[0] in publics:
            yield Check(
                "platform recipient",
                True,
                f"{recipients[0][:12]}… is the public key of identity "
                f"#{publics.index(recipients[0]) + 1} of {len(identities)}",
            )
        else:
            yield Check(
                "platform recipient",
                False,
                f"{recipients[0][:12]}… (what backups are encrypted to) matches no identity: "
                "restores of new backups would fail",
                "put the identity of PLATFORM_AGE_RECIPIENTS' first key in "
                "PLATFORM_AGE_IDENTITIES, or its public key first in PLATFORM_AGE_RECIPIENTS",
            )

    def queues(self) -> Iterator[Check]:
        if self.settings.job_queue != "sqs":
            yield Check("queues", True, "local (in-process) queue")
            return
        import boto3
        from botocore.exceptions import BotoCoreError, ClientError

        client = boto3.client("sqs")
        for name, url in (
            ("backup queue", self.settings.job_queue_url),
            ("restore queue", self.settings.restore_queue_url),
        ):
            if not url:
                yield Check(
                    name,
                    False,
                    "not configured: restores and verifications cannot be queued",
                    "set RESTORE_QUEUE_URL",
                )
                continue
            try:
                client.get_queue_attributes(
                    QueueUrl=url, AttributeNames=["ApproximateNumberOfMessages"]
                )
            except (BotoCoreError, ClientError) as error:
                env = "JOB_QUEUE_URL" if name == "backup queue" else "RESTORE_QUEUE_URL"
                yield _failed(
                    name, error, f"check {env} and the role's sqs:GetQueueAttributes/SendMessage"
                )
                continue
            yield Check(name, True, "reachable")

    def checks(self) -> list[Callable[[], Iterator[Check]]]:
        return [
            self.database,
            self.tools,
            self.bucket,
            self.signed_url,
            self.jwks,
            self.platform_recipient,
            self.queues,
        ]


def run(settings: OperatorSettings, out: TextIO) -> int:
    """Print one line per check; 0 when every check passed, else 1."""
    failed = False
    for group in Doctor(settings).checks():
        try:
            for check in group():
                failed = failed or not check.ok
                print(check.line(), file=out, flush=True)
        except Exception as error:  # one broken check must not hide the others
            failed = True
            name = getattr(group, "__name__", "check")
            print(_failed(name, error, "rerun with the logs").line(), file=out, flush=True)
    return 1 if failed else 0


def command(args: Any) -> int:
    """The CLI's `doctor` subcommand (settings as for every CLI command: OperatorSettings)."""
    import sys

    from clinic_backups.wiring.settings import get_settings

    return run(get_settings(OperatorSettings), sys.stdout)
