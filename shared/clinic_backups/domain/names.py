r"""Clinic schema names, storage keys and file names.

A clinic's schema name must pass two rules (documented in docs/security.md):
1. django-tenants' own validator, copied from the version the project supports (4.0.1,
   `django_tenants/postgresql_backend/base.py`, `PGSQL_VALID_SCHEMA_NAME`):
   `^(?!pg_)[^"'\\;\x00\r\n]{1,63}\Z`, case-insensitive — any character but quotes,
   backslash, semicolon, NUL and line breaks, 1 to 63 characters, not starting with `pg_`.
   Dashes and leading digits are valid (since 3.4.1: `dunder-mifflin`, `1clinica`).
2. The storage-safe subset: ASCII letters, digits, `_` and `-` only, and not `public` or
   `information_schema`. The name is the first segment of every storage key and of every file
   name; a `/` (`clinica/norte`) would put one clinic's objects under another's prefix, and `.`,
   spaces or non-ASCII letters are refused by Supabase Storage's key rules or cut by
   PostgreSQL's 63-byte limit.
A clinic that passes 1 but not 2 exists for django-tenants yet cannot be backed up: the
scheduler and `migrate` report it as a failing clinic (`unsupported_name`), never skip it
silently. Case is significant: `Clinica_Norte` and `clinica_norte` are different clinics; every
SQL use goes through `psycopg2.sql.Identifier` and every pg_dump pattern is double-quoted
(inside quotes a pattern's `*`, `?` and `.` are literal), so neither can reach the other.
"""

from __future__ import annotations

import re
import uuid
from datetime import UTC, datetime
from typing import TypedDict, Unpack

from clinic_backups.domain.errors import ForeignKeyPrefix

# django-tenants 4.0.1, postgresql_backend/base.py, verbatim.
DJANGO_TENANTS_SCHEMA_RE = re.compile(r'^(?!pg_)[^"\'\\;\x00\r\n]{1,63}\Z', re.IGNORECASE)
SCHEMA_NAME_RE = re.compile(r"^[A-Za-z0-9_-]{1,63}\Z")
RESERVED_SCHEMAS = frozenset({"public", "information_schema"})

# Tables the backup functions own inside each clinic's schema. They are never dumped and a
# restore moves them back into the live schema, so history and audit never roll back.
OWNED_TABLES = (
    "backup_meta",
    "backup_records",
    "backup_audit",
    "backup_operation_lock",
    "backup_settings",
    "backup_slots",
    "backup_restores",
    "backup_keys",
    "backup_replica_superseded",
)


def meta_stamp(schema: str) -> str:
    """The comment on a clinic's `backup_meta`: whose tables these are. django-tenants'
    `clone_schema` copies tables with their comments, so a clone's copy names the base schema
    and is recognised (and cleaned) before anything in it is used; a restore moves the table
    back into the clinic's schema and keeps it."""
    return f"clinic_backups:{schema}"


DUMP_SUFFIX = ".dump"
ENCRYPTED_SUFFIX = ".age"
MANIFEST_SUFFIX = ".manifest.json"


def is_tenant_schema_name(name: object) -> bool:
    """django-tenants' own rule (the version in use): a schema it may have created."""
    return isinstance(name, str) and DJANGO_TENANTS_SCHEMA_RE.match(name) is not None


def is_valid_schema_name(name: object) -> bool:
    """A clinic the product can back up: django-tenants' rule and the storage-safe subset."""
    return (
        is_tenant_schema_name(name)
        and isinstance(name, str)
        and SCHEMA_NAME_RE.match(name) is not None
        and name not in RESERVED_SCHEMAS
    )


UNSUPPORTED_NAME = (
    "the clinic's schema name has characters other than letters, digits, _ and -: "
    "it cannot be backed up (rename the tenant's schema)"
)


def clinic_prefix(schema: str) -> str:
    if not is_valid_schema_name(schema):
        raise ValueError("not a valid clinic schema name")
    return f"{schema}/"


def audit_export_prefix(schema: str) -> str:
    """Where the clinic's activity-log CSV exports go (`POST /audit/export`): objects with no
    backup record, never reported as orphans."""
    return f"{clinic_prefix(schema)}audit-exports/"


def check_key_in_prefix(key: str, schema: str) -> str:
    """Return `key` when it lies under the clinic's prefix; refuse anything else.

    Keys are built from the verified clinic only, so a refusal here means a bug or a tampered
    record: it is never signed, read or deleted.
    """
    prefix = clinic_prefix(schema)
    if not key.startswith(prefix) or ".." in key or "//" in key or "\\" in key:
        raise ForeignKeyPrefix("storage key outside the clinic prefix")
    return key


def utc_stamp(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")


def backup_file_name(
    schema: str,
    backup_id: uuid.UUID,
    created_at: datetime,
    *,
    encrypted: bool = True,
    generation: int = 0,
) -> str:
    """`<schema>-<UTC timestamp>-<short id>[-g<n>].dump[.age]`. A re-encrypted backup gets a
    new generation: a key is never reused for a different file (signed URLs are bound to the
    key, not to the object version)."""
    suffix = f"-g{generation}" if generation else ""
    extension = DUMP_SUFFIX + (ENCRYPTED_SUFFIX if encrypted else "")
    return f"{schema}-{utc_stamp(created_at)}-{backup_id.hex[:8]}{suffix}{extension}"


class Naming(TypedDict, total=False):
    """How a backup's file is named beyond its clinic, id and time (defaults: encrypted, the
    first generation)."""

    encrypted: bool
    generation: int


def backup_storage_key(
    schema: str, backup_id: uuid.UUID, created_at: datetime, **naming: Unpack[Naming]
) -> str:
    """`<schema>/<yyyy>/<mm>/<file name>`, the prefix from the verified clinic only."""
    at = created_at.astimezone(UTC)
    name = backup_file_name(schema, backup_id, at, **naming)
    return f"{clinic_prefix(schema)}{at:%Y}/{at:%m}/{name}"


_GENERATION_AND_SUFFIX = re.compile(r"(-g\d+)?\.dump(\.age)?(\.part\d+)?$")


def key_stem(storage_key: str) -> str:
    """A backup's key without its generation, extension and part number: every object a
    backup ever had (the original, each re-encryption's new generation, their parts) shares
    it."""
    return _GENERATION_AND_SUFFIX.sub("", storage_key)


_PART_SUFFIX = re.compile(r"\.part\d+$")


def archive_key(key: str) -> str:
    """The backup's own key for one of its parts (`….dump.age.part002` → `….dump.age`)."""
    return _PART_SUFFIX.sub("", key)


def manifest_key(storage_key: str) -> str:
    return storage_key + MANIFEST_SUFFIX


def kept_schema_name(schema: str, job_id: uuid.UUID, tag: str) -> str:
    """The name a restore gives the schema it replaces (`tag` "r": the live schema kept for
    undo; "u": the restored schema an undo sets aside): the clinic's name cut to 40 bytes, then
    `__<tag>` and 10 hex digits of the job id. At most 53 bytes (PostgreSQL cuts identifiers
    at 63), unique per job, and stored in the job before the swap: the sweeper drops only
    names stored there, never by pattern."""
    if not is_valid_schema_name(schema) or tag not in ("r", "u"):
        raise ValueError("not a valid clinic schema name")
    return f"{schema[:40]}__{tag}{job_id.hex[:10]}"
