"""Clinic schema names, storage keys and file names.

The safe schema-name pattern (documented in docs/security.md):
  `^[A-Za-z_][A-Za-z0-9_]{0,62}$`, not starting with `pg_` (any case), and not one of the
  schemas every database has (`public`, `information_schema`).
This is django-tenants' own identifier rule minus the reserved names. Case is significant:
`Clinica_Norte` and `clinica_norte` are different clinics; every SQL use goes through
`psycopg2.sql.Identifier` and every pg_dump use is quoted, so neither can reach the other.
"""

from __future__ import annotations

import re
import uuid
from datetime import UTC, datetime

from .errors import ForeignKeyPrefix

SCHEMA_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")
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
)

DUMP_SUFFIX = ".dump"
ENCRYPTED_SUFFIX = ".age"
MANIFEST_SUFFIX = ".manifest.json"


def is_valid_schema_name(name: object) -> bool:
    return (
        isinstance(name, str)
        and SCHEMA_NAME_RE.fullmatch(name) is not None
        and not name.lower().startswith("pg_")
        and name not in RESERVED_SCHEMAS
    )


def clinic_prefix(schema: str) -> str:
    if not is_valid_schema_name(schema):
        raise ValueError("not a valid clinic schema name")
    return f"{schema}/"


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


def backup_storage_key(
    schema: str,
    backup_id: uuid.UUID,
    created_at: datetime,
    *,
    encrypted: bool = True,
    generation: int = 0,
) -> str:
    """`<schema>/<yyyy>/<mm>/<file name>`, the prefix from the verified clinic only."""
    at = created_at.astimezone(UTC)
    name = backup_file_name(schema, backup_id, at, encrypted=encrypted, generation=generation)
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
