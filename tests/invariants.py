"""The invariant every test session must leave true, checked where the data is: every backup
the session stored is encrypted, and nothing stored holds a secret.

A scan lists EVERY object of every bucket of a server (not the objects a test knows about);
in a versioned bucket (the replica's, object-locked) every version, non-current ones and
those behind a delete marker included — a locked old version is kept for years:

- a manifest (`*.manifest.json`) must be a JSON object — the only plaintext allowed;
- every other object must begin with the age header `age-encryption.org/v1`;
- an archive split into parts (a manifest may list them: `"parts": ["<key>", …]` or
  `[{"key": "<key>"}, …]`) is read through its manifest: the first part begins with the
  header, later parts are the same ciphertext going on (they are only checked not to be a
  plaintext pg_dump archive);
- no manifest, and no row of a clinic's `backup_*` tables, holds a secret: an age private key
  (`AGE-SECRET-KEY-`, any case), a connection URL with credentials, or any of the session's
  own secrets (the JWT secret, S3 secret keys, database passwords) registered with
  `register_secret`.

Where each scan runs (tests/conftest.py, tests/e2e/conftest.py): the integration suite's
SeaweedFS at the end of the session (the `bucket` fixture's teardown, after every test of the
process, e2e included); a local stack's SeaweedFS and database before the stack stops (its
state folder goes with it); a clinic's rows as the test that made it drops it. A finding fails
the run (an error in that teardown), it is never a warning. `tests/unit/test_invariants.py`
proves the scanner fails on a plaintext object, a plaintext manifest, a part that is not
ciphertext and a secret.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

AGE_HEADER = b"age-encryption.org/v1"
PG_ARCHIVE_MAGIC = b"PGDMP"
MANIFEST_SUFFIX = ".manifest.json"

# Always secrets, whoever the session is.
_PATTERNS = (
    re.compile(r"AGE-SECRET-KEY-", re.IGNORECASE),
    re.compile(r"postgres(?:ql)?://[^/\s\"'@]*:[^/\s\"'@]+@", re.IGNORECASE),
)
_session_secrets: set[str] = set()


def register_secret(value: str | None) -> None:
    """A secret of this session (JWT secret, S3 secret key, a password) no scan may find."""
    if value and len(value) >= 8:
        _session_secrets.add(value)


def register_url_password(url: str | None) -> None:
    """The password of a libpq URL or key=value string, when it has one."""
    if not url:
        return
    import psycopg2.extensions

    try:
        password = psycopg2.extensions.parse_dsn(url).get("password")
    except psycopg2.ProgrammingError:
        return
    register_secret(password)


def secrets_in(text: str, extra: Iterable[str] = ()) -> list[str]:
    """Which kinds of secret `text` holds (named, never quoted)."""
    found = [f"pattern {p.pattern!r}" for p in _PATTERNS if p.search(text)]
    found += [
        f"a session secret ({value[:3]}…)" for value in (*_session_secrets, *extra) if value in text
    ]
    return found


@dataclass
class Report:
    where: str
    objects: int = 0
    archives: int = 0
    parts: int = 0
    manifests: int = 0
    rows: int = 0
    findings: list[str] = field(default_factory=list)

    def add(self, other: Report) -> None:
        self.objects += other.objects
        self.archives += other.archives
        self.parts += other.parts
        self.manifests += other.manifests
        self.rows += other.rows
        self.findings += other.findings

    def summary(self) -> str:
        return (
            f"{self.where}: {self.objects} objects ({self.archives} age archives, "
            f"{self.parts} later parts, {self.manifests} manifests), {self.rows} record rows"
        )

    def check(self) -> None:
        """Fail (AssertionError) when the scan found anything."""
        if self.findings:
            listed = "\n  ".join(self.findings[:50])
            raise AssertionError(
                f"invariant broken in {self.where} ({len(self.findings)} findings):\n  {listed}"
            )


# (key) -> the object's first `limit` bytes (None: all of it)
Reader = Callable[[str, int | None], bytes]


def _part_keys(manifest: dict[str, Any]) -> list[str]:
    parts = manifest.get("parts")
    if not isinstance(parts, list):
        return []
    keys = []
    for part in parts:
        key = part.get("key") if isinstance(part, dict) else part
        if isinstance(key, str):
            keys.append(key)
    return keys


def scan_objects(
    where: str,
    keys: list[str],
    read: Reader,
    extra_secrets: Iterable[str] = (),
    key_of: Callable[[str], str] | None = None,
) -> Report:
    """The scan itself, over any store: `keys` is everything it holds, `read` reads one.
    With `key_of`, `keys` are labels of versions (`key_of(label)` their object key): each
    version is scanned as an object of its own, manifests and parts recognised by key."""
    name = key_of or (lambda label: label)
    report = Report(where, objects=len(keys))
    present = {name(k) for k in keys}
    later_parts: set[str] = set()
    extra = list(extra_secrets)
    for key in sorted(k for k in keys if name(k).endswith(MANIFEST_SUFFIX)):
        report.manifests += 1
        raw = read(key, None)
        try:
            text = raw.decode("utf-8")
            manifest = json.loads(text)
        except (UnicodeDecodeError, ValueError):
            report.findings.append(f"{where}/{key}: a manifest that is not JSON")
            continue
        if not isinstance(manifest, dict):
            report.findings.append(f"{where}/{key}: a manifest that is not a JSON object")
            continue
        for kind in secrets_in(text, extra):
            report.findings.append(f"{where}/{key}: a manifest holding {kind}")
        parts = _part_keys(manifest)
        for part in parts:
            if part not in present:
                report.findings.append(f"{where}/{key}: lists a part that is missing: {part}")
        later_parts.update(parts[1:])
    for key in sorted(k for k in keys if not name(k).endswith(MANIFEST_SUFFIX)):
        head = read(key, len(AGE_HEADER))
        if name(key) in later_parts:
            report.parts += 1
            if head.startswith(PG_ARCHIVE_MAGIC):
                report.findings.append(f"{where}/{key}: a part that is a plaintext pg_dump archive")
            continue
        if head.startswith(AGE_HEADER):
            report.archives += 1
            continue
        what = "a plaintext pg_dump archive" if head.startswith(PG_ARCHIVE_MAGIC) else "plaintext"
        report.findings.append(f"{where}/{key}: {what}, not age (begins with {head[:8]!r})")
    return report


def _versioned(client: Any, bucket: str) -> bool:
    status = client.get_bucket_versioning(Bucket=bucket).get("Status")
    return status in ("Enabled", "Suspended")


def scan_versions(client: Any, bucket: str, extra_secrets: Iterable[str] = ()) -> Report:
    """Every version of every object of a versioned bucket, not only the current ones: an
    old version under a compliance lock outlives any overwrite or delete marker, so a
    plaintext archive there would be kept (and readable by id) for years. One listing call
    per 1,000 versions and one ranged read per version."""
    versions: dict[str, tuple[str, str]] = {}
    for page in client.get_paginator("list_object_versions").paginate(Bucket=bucket):
        for item in page.get("Versions", []):  # delete markers hold no bytes
            key, version = item["Key"], item["VersionId"]
            label = key if item.get("IsLatest") else f"{key} (older version {version})"
            versions[label] = (key, version)

    def read(label: str, limit: int | None) -> bytes:
        key, version = versions[label]
        extra = {"Range": f"bytes=0-{limit - 1}"} if limit else {}
        body: bytes = client.get_object(Bucket=bucket, Key=key, VersionId=version, **extra)[
            "Body"
        ].read()
        return body

    return scan_objects(
        f"s3://{bucket}",
        list(versions),
        read,
        extra_secrets,
        key_of=lambda label: versions[label][0],
    )


def scan_bucket(client: Any, bucket: str, extra_secrets: Iterable[str] = ()) -> Report:
    """Every object of one bucket, through a boto3 S3 client (every version of each, when
    the bucket is versioned)."""
    if _versioned(client, bucket):
        return scan_versions(client, bucket, extra_secrets)
    keys: list[str] = []
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket):
        keys += [item["Key"] for item in page.get("Contents", [])]

    def read(key: str, limit: int | None) -> bytes:
        extra = {"Range": f"bytes=0-{limit - 1}"} if limit else {}
        body: bytes = client.get_object(Bucket=bucket, Key=key, **extra)["Body"].read()
        return body

    return scan_objects(f"s3://{bucket}", keys, read, extra_secrets)


def scan_server(client: Any, where: str, extra_secrets: Iterable[str] = ()) -> Report:
    """Every bucket a server holds."""
    report = Report(where)
    for bucket in client.list_buckets().get("Buckets", []):
        report.add(scan_bucket(client, bucket["Name"], extra_secrets))
    return report


def scan_rows(
    cur: Any, schemas: Iterable[str] | None = None, extra_secrets: Iterable[str] = ()
) -> Report:
    """Every row of the `backup_*` tables of the given clinic schemas (all that have them
    when None), as text, for secrets."""
    from psycopg2 import sql

    cur.execute(
        "SELECT table_schema, table_name FROM information_schema.tables "
        "WHERE table_name LIKE 'backup\\_%%' AND table_type = 'BASE TABLE' "
        "AND (%s::text[] IS NULL OR table_schema = ANY(%s::text[])) ORDER BY 1, 2",
        (list(schemas) if schemas is not None else None,) * 2,
    )
    tables = cur.fetchall()
    report = Report("records")
    extra = list(extra_secrets)
    for schema, table in tables:
        cur.execute(sql.SQL("SELECT t::text FROM {} t").format(sql.Identifier(schema, table)))
        for (text,) in cur.fetchall():
            report.rows += 1
            for kind in secrets_in(text, extra):
                report.findings.append(f"{schema}.{table}: a row holding {kind}")
    return report


# What the session scanned, for the closing summary (tests/conftest.py).
session_total = Report("this session")


def record(report: Report) -> None:
    session_total.add(report)
