"""Versioned migrations of the tables the backup functions own in each clinic's schema.

Each entry runs once per clinic, in order, under an advisory lock (`PostgresRecords.
ensure_schema`); `backup_meta` records the version reached. `{records}`, `{audit}`, `{lock}`
and `{meta}` (and any table named in `TABLES`) are replaced by the clinic-qualified
identifiers. Never edit a released entry: append a new version. Every table created here must
be listed in `names.OWNED_TABLES`, so it is excluded from dumps and survives a restore.
"""

from __future__ import annotations

# placeholder name in the SQL → table name in the clinic's schema
TABLES = {
    "records": "backup_records",
    "audit": "backup_audit",
    "lock": "backup_operation_lock",
    "meta": "backup_meta",
}

MIGRATIONS: list[tuple[int, list[str]]] = [
    (
        1,
        [
            """
            CREATE TABLE {records} (
                id uuid PRIMARY KEY,
                status text NOT NULL
                    CHECK (status IN ('pending','running','completed','failed','deleted')),
                trigger text NOT NULL CHECK (trigger IN ('manual','scheduled','pre_restore')),
                file_name text NOT NULL,
                storage_key text NOT NULL UNIQUE,
                size_bytes bigint,
                sha256 text,
                encryption text NOT NULL DEFAULT 'none',
                format text NOT NULL DEFAULT 'custom',
                compression text NOT NULL,
                pg_dump_version text,
                server_version text,
                created_by text NOT NULL,
                created_by_name text,
                created_at timestamptz NOT NULL,
                started_at timestamptz,
                finished_at timestamptz,
                deleted_at timestamptz,
                deleted_by text,
                purged_at timestamptz,
                error text,
                error_code text,
                note text CHECK (char_length(note) <= 200)
            )
            """,
            "CREATE INDEX ON {records} (created_at DESC, id DESC)",
            "CREATE INDEX ON {records} (status)",
            """
            CREATE TABLE {audit} (
                id uuid PRIMARY KEY,
                at timestamptz NOT NULL,
                action text NOT NULL,
                outcome text NOT NULL,
                actor_id text,
                actor_name text,
                actor_role text,
                request_id text,
                backup_id uuid,
                details jsonb NOT NULL DEFAULT '{{}}'
            )
            """,
            "CREATE INDEX ON {audit} (at DESC)",
            """
            CREATE TABLE {lock} (
                singleton boolean PRIMARY KEY DEFAULT true CHECK (singleton),
                kind text NOT NULL,
                ref_id uuid NOT NULL,
                acquired_at timestamptz NOT NULL
            )
            """,
        ],
    ),
]

