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
    "settings": "backup_settings",
    "slots": "backup_slots",
    "restores": "backup_restores",
    "keys": "backup_keys",
    "superseded": "backup_replica_superseded",
}


def _give_to_records_owner(placeholder: str) -> str:
    """Whichever role migrates first creates a table; this gives it to the owner of the
    records, so every role that reads the records reads it too (skipped when the migrating
    role may not act as that owner)."""
    return f"""
            DO $cb$
            DECLARE
                records_owner name;
            BEGIN
                SELECT pg_get_userbyid(c.relowner) INTO records_owner
                FROM pg_class c WHERE c.oid = '{{records}}'::regclass;
                IF pg_has_role(records_owner, 'USAGE') THEN
                    EXECUTE format('ALTER TABLE {{{placeholder}}} OWNER TO %I', records_owner);
                END IF;
            END
            $cb$
            """


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
    (
        2,
        [
            # One row per clinic; no row = the platform's defaults (enabled, daily at 03:00
            # in DEFAULT_TIME_ZONE, the RETENTION_KEEP_* settings). The CHECKs repeat the API's
            # validation so that a hand-edited row cannot confuse the scheduler.
            """
            CREATE TABLE {settings} (
                singleton boolean PRIMARY KEY DEFAULT true CHECK (singleton),
                enabled boolean NOT NULL,
                hour smallint NOT NULL CHECK (hour BETWEEN 0 AND 23),
                weekdays smallint[] NOT NULL
                    CHECK (cardinality(weekdays) BETWEEN 1 AND 7
                           AND weekdays <@ ARRAY[1, 2, 3, 4, 5, 6, 7]::smallint[]),
                time_zone text NOT NULL,
                locale text NOT NULL,
                keep_daily integer NOT NULL CHECK (keep_daily >= 0),
                keep_weekly integer NOT NULL CHECK (keep_weekly >= 0),
                keep_monthly integer NOT NULL CHECK (keep_monthly >= 0),
                updated_by text NOT NULL,
                updated_at timestamptz NOT NULL
            )
            """,
            # A slot is (local date, scheduled local hour): the primary key is what makes a
            # duplicated or concurrent scheduler event enqueue at most one backup per slot
            # (INSERT ... ON CONFLICT DO NOTHING).
            """
            CREATE TABLE {slots} (
                local_date date NOT NULL,
                local_hour smallint NOT NULL CHECK (local_hour BETWEEN 0 AND 23),
                scheduled_at timestamptz NOT NULL,
                status text NOT NULL
                    CHECK (status IN ('due', 'enqueued', 'skipped_busy', 'missed')),
                backup_id uuid,
                decided_at timestamptz NOT NULL,
                attempts integer NOT NULL DEFAULT 0,
                PRIMARY KEY (local_date, local_hour)
            )
            """,
            "ALTER TABLE {records} ADD COLUMN keep boolean NOT NULL DEFAULT false",
            # Retention and the last-good-backup metric read completed backups by time.
            "CREATE INDEX ON {records} (status, finished_at DESC)",
        ],
    ),
    (
        3,
        [
            # Restores and full verifications of the clinic's backups (issue 6). A restore's
            # `old_schema` (the live schema it set aside, kept for undo) and an undo's
            # `undo_schema` are stored here before their swap: the sweeper drops only names
            # found here, never by pattern. No serial column: an owned table must have no
            # sequence (a moved table's sequence would collide, BRIEF).
            """
            CREATE TABLE {restores} (
                id uuid PRIMARY KEY,
                kind text NOT NULL CHECK (kind IN ('restore', 'verify')),
                status text NOT NULL
                    CHECK (status IN ('pending', 'running', 'completed', 'failed', 'undone')),
                step text,
                backup_id uuid NOT NULL,
                pre_restore_backup_id uuid,
                old_schema text UNIQUE,
                undo_schema text UNIQUE,
                undo_until timestamptz,
                requested_by text NOT NULL,
                requested_by_name text,
                request_id text,
                created_at timestamptz NOT NULL,
                started_at timestamptz,
                finished_at timestamptz,
                lock_seconds double precision,
                error_code text,
                error text,
                details jsonb NOT NULL DEFAULT '{{}}',
                undo_status text CHECK (undo_status IN ('pending', 'running', 'failed')),
                undo_requested_by text,
                undo_requested_at timestamptz,
                undone_at timestamptz,
                undo_error_code text,
                undo_error text,
                dropped_at timestamptz
            )
            """,
            "CREATE INDEX ON {restores} (created_at DESC, id DESC)",
            # What the light check (after every backup) and the full drill found.
            """
            ALTER TABLE {records}
                ADD COLUMN table_counts jsonb,
                ADD COLUMN checked_at timestamptz,
                ADD COLUMN check_outcome text CHECK (check_outcome IN ('passed', 'failed')),
                ADD COLUMN check_error text,
                ADD COLUMN verified_at timestamptz,
                ADD COLUMN verify_outcome text CHECK (verify_outcome IN ('passed', 'failed')),
                ADD COLUMN verify_details jsonb
            """,
            # Whichever role migrates first creates the table; give it to the owner of the
            # records, so every role that reads the records (retention's `backups_in_use`, the
            # sweeper) reads it too. Skipped when the migrating role may not act as that owner.
            _give_to_records_owner("restores"),
        ],
    ),
    # Encryption (age): every backup is encrypted to the platform's restore recipient and to
    # every public key the clinic registered. Only public keys are ever stored here.
    (
        4,
        [
            "ALTER TABLE {records} ADD COLUMN plaintext_sha256 text",
            "ALTER TABLE {records} ADD COLUMN recipients jsonb NOT NULL DEFAULT '[]'",
            # true while a re-encryption job for the backup is queued or running
            "ALTER TABLE {records} ADD COLUMN reencrypting boolean NOT NULL DEFAULT false",
            """
            CREATE TABLE {keys} (
                id uuid PRIMARY KEY,
                label text NOT NULL CHECK (char_length(label) BETWEEN 1 AND 80),
                public_key text NOT NULL UNIQUE CHECK (public_key LIKE 'age1%'),
                fingerprint text NOT NULL,
                created_by text NOT NULL,
                created_by_name text,
                created_at timestamptz NOT NULL
            )
            """,
            # As for {restores}: give the table to the records' owner, so every role that
            # reads the records (the worker encrypting to these keys) reads it too.
            _give_to_records_owner("keys"),
        ],
    ),
    # Leases (issue 15): the job that runs under the clinic's lock renews it. `lease_id` is
    # the run's token (set when the job is claimed: a pending job has no lease yet, and keeps
    # the sweeper's age threshold), `renewed_at` the database's now() at the last renewal.
    # A lease is dead `lease_seconds` after `renewed_at`; whoever asks for the lock then takes
    # it over. Verifications take no lock: their lease lives on their own job row.
    (
        5,
        [
            """
            ALTER TABLE {lock}
                ADD COLUMN lease_id uuid UNIQUE,
                ADD COLUMN renewed_at timestamptz,
                ADD COLUMN lease_seconds integer CHECK (lease_seconds > 0),
                ADD CONSTRAINT backup_operation_lock_lease CHECK (
                    (lease_id IS NULL) = (renewed_at IS NULL)
                    AND (lease_id IS NULL) = (lease_seconds IS NULL))
            """,
            """
            ALTER TABLE {restores}
                ADD COLUMN lease_id uuid,
                ADD COLUMN renewed_at timestamptz,
                ADD COLUMN lease_seconds integer CHECK (lease_seconds > 0)
            """,
        ],
    ),
    # Cancel and undelete (issue 21): `cancelled` is a status (a pending backup cancelled at
    # once; a running one once its worker heard of it through its heartbeat, which reads
    # `cancel_requested_at`). PostgreSQL named the column CHECK of version 1
    # `<table>_status_check`.
    (
        6,
        [
            """
            ALTER TABLE {records}
                DROP CONSTRAINT IF EXISTS backup_records_status_check,
                ADD CONSTRAINT backup_records_status_check CHECK (status IN
                    ('pending', 'running', 'completed', 'failed', 'deleted', 'cancelled')),
                ADD COLUMN cancel_requested_at timestamptz
            """,
        ],
    ),
    # A read that found a backup's file gone from storage marks its record (410
    # backup_file_missing); the backup stays listed, and says so.
    (7, ["ALTER TABLE {records} ADD COLUMN file_missing_at timestamptz"]),
    # Split archives (issue 19): an archive above the store's object size limit is stored as
    # numbered objects, listed here in order with the size and sha256 of each; NULL: one object.
    (
        8,
        ["ALTER TABLE {records} ADD COLUMN parts jsonb"],
    ),
    # Whose tables these are (issue 17): django-tenants' clone_schema copies every table of
    # the base schema, comments included, so a clone's copy still names the base and is
    # cleaned before use (PostgresRecords.ensure_schema). `{stamp}` is the clinic's literal.
    (9, ["COMMENT ON TABLE {meta} IS {stamp}"]),
    # The independent replica (issue 24): when the copy in the replica store was checked
    # (sha256 of every object read back), and the Object Lock retain-until it carries (later
    # promotions extend it: the record says how far, so nothing asks the store again); and
    # when a read found the primary's object not matching its sha256 (reads use the replica
    # from then on).
    (
        10,
        [
            "ALTER TABLE {records} ADD COLUMN replicated_at timestamptz, "
            "ADD COLUMN replica_retain_until timestamptz, "
            "ADD COLUMN primary_damaged_at timestamptz"
        ],
    ),
    # Copies in the replica that no record points at any more (issue 24 follow-up): a
    # re-encryption replaces a replicated backup's objects with a new generation, and the old
    # generation's copies stay locked in the replica until their retain-until. Each row names
    # those keys (the objects and the manifest) and the lock they carry (NULL: no lock); the
    # purge step deletes them once the lock allows, then the row. Owned (survives a restore).
    (
        11,
        [
            """
            CREATE TABLE {superseded} (
                id uuid PRIMARY KEY,
                backup_id uuid NOT NULL,
                keys jsonb NOT NULL CHECK (jsonb_typeof(keys) = 'array'),
                retain_until timestamptz,
                superseded_at timestamptz NOT NULL
            )
            """,
            _give_to_records_owner("superseded"),
        ],
    ),
]
