"""pg_restore and psql for restores and verifications: what consumes the streaming read path.

    archive (archive.open_archive: stored bytes → sha256 → [decrypt]) ─► pg_restore -f - ─►
    SqlFilter (COPY-aware) ─► psql -X -v ON_ERROR_STOP=1 -f -   (BEGIN … COMMIT of our own)

Nothing touches disk. The archive is fed to pg_restore's stdin by a thread; pg_restore's SQL
passes through `SqlFilter` (which drops `SET transaction_timeout` for servers older than 17 —
pg_restore 18 writes it, older servers refuse it, BRIEF — drops the archive's own
`CREATE SCHEMA`, counts each table's COPY rows, and for a drill drops foreign keys into
other schemas) and is written to psql's stdin between statements of our own.

**Commit only by an explicit word.** Every script — the swap, its dry run, the undo, a drill,
`restore-file` — opens its transaction itself (`BEGIN`), and only `PsqlSession.end` writes
the `COMMIT`, once every check has passed. Never `psql --single-transaction`: it COMMITs when
its input ends, even in the middle of a COPY, which is what a dying driver looks like. Here
the end of input without the word is a disconnect, and the server rolls back. The pg tools
die with their driver too (adapters/processes.py).

**The swap** (one psql session, one transaction, `SchemaSwapper.swap`):

    BEGIN
    SET lock_timeout; LOCK every clinic table IN EXCLUSIVE MODE   -- writers wait, readers read
    ALTER SCHEMA <clinic> RENAME TO <old>; CREATE SCHEMA <clinic> AUTHORIZATION <owner>
    the old schema's default privileges, for the new one
    SET ROLE <owner>; <the archive's SQL>; RESET ROLE
    owners and grants of every object as they were on its namesake in <old>
    ALTER TABLE <old>.<owned table> SET SCHEMA <clinic>     -- history and audit never roll back
    SELECT <RESTORE_ERASURE_FUNCTION>('<clinic>')          -- if set: the host re-applies erasures
    the job's completion (status, lock release, audit)
    \\echo cb:commit      -- psql ran every statement above
    COMMIT               -- written only after that, after the archive's last byte matched its
                            sha256 and pg_restore exited 0; on any failure psql is killed, or
                            simply never gets the word, and the server rolls everything back
    \\echo cb:committed   -- the COMMIT went through, whatever happens to psql afterwards

The old schema keeps its OID, owner, grants and default privileges, so an undo simply renames
it back. `SchemaSwapper.check` runs the same script, schema only, in a transaction that is
rolled back: PostgreSQL itself checks every extension, type, function and foreign-key target
the archive needs in other schemas, and the restore role's rights, before anything changes.
"""

from __future__ import annotations

import collections
import os
import re
import subprocess
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any, BinaryIO

import psycopg2
import psycopg2.extensions
from psycopg2 import sql

from clinic_backups.adapters.database import translate_connect_error
from clinic_backups.adapters.pgdump import READ_BUFFER, PgTools, libpq_environment, redact
from clinic_backups.adapters.processes import (
    Guardian,
    describe_exit,
    kill_group,
    reap,
    spawn,
    widen_pipe,
)
from clinic_backups.domain.errors import (
    ArchiveInvalid,
    BackupRunError,
    ChecksumMismatch,
    ClinicBusy,
    MissingDependency,
    OutsideDependents,
    RestoreFailed,
    RestoreInterrupted,
    VerificationFailed,
    VerificationNotConfigured,
)
from clinic_backups.domain.names import OWNED_TABLES, is_valid_schema_name
from clinic_backups.domain.ports import (
    DrillResult,
    LiveSchema,
    Locked,
    SwapPlan,
    SwapResult,
    UndoPlan,
)
from clinic_backups.observability import logger

STDERR_LINES_KEPT = 60
SCHEMA_SQL_LIMIT = 64 * 1024 * 1024
# psql prints these (\echo) as it reaches them: when the tables were locked, when the schemas
# were renamed, when the archive was loaded, when every statement before the COMMIT succeeded
# (only then is the COMMIT written), and when the COMMIT went through.
MARK_LOCKED = "cb:locked"
MARK_SWAPPED = "cb:swapped"
MARK_LOADED = "cb:loaded"
MARK_COMMIT = "cb:commit"
MARK_COMMITTED = "cb:committed"
MARK_LOCK_TRIES = "cb:lock-tries="
MARK_SNAPSHOT = "cb:snapshot="
MARK_VIEWS = "cb:views="
# The error of a swap that found something outside the clinic depending on the kept schema.
OUTSIDE_ERROR = "cb:outside_dependents"
# The swap's session waits idle in its transaction for the pre-restore backup: it allows
# itself the swap's time limit plus this (then the server ends it, should the driver vanish).
IDLE_MARGIN_SECONDS = 30
# How long the lock phase waits for each view outside the clinic it recreates (NOWAIT is not
# available for the no-op ALTER … OWNER that locks a view alone).
VIEW_LOCK_WAIT = "50ms"
SNAPSHOT_ID = re.compile(r"[0-9A-F]{8}-[0-9A-F]{8}-[0-9]{1,10}")
APPLICATION_NAME = "clinic-backups-restore"
VERIFY_APPLICATION_NAME = "clinic-backups-verify"
# A drill's scratch database: the verification server's clock when it was created, and a tag.
SCRATCH_NAME = re.compile(r"verify_([0-9]{10})_[0-9a-f]{8}")
# How much longer than a drill may last a leftover scratch database is left alone.
LEFTOVER_MARGIN_SECONDS = 900
# Every script opens its transaction itself, and only our explicit COMMIT ends it: psql's end of
# input (a driver that died) is a disconnect, and the server rolls back. Never psql's
# --single-transaction, which COMMITs whatever it has when its input ends, even mid-COPY.
BEGIN = "BEGIN;\n"


# --- SQL text ----------------------------------------------------------------------------------


def ident(name: str) -> str:
    """A quoted identifier. Only clinic and kept-schema names (checked) and role names from
    the catalog reach here."""
    return '"' + name.replace('"', '""') + '"'


def literal(text: str) -> str:
    """A string literal (standard_conforming_strings is on in every session we open)."""
    return "'" + text.replace("'", "''") + "'"


def _checked(*names: str) -> None:
    for name in names:
        if not is_valid_schema_name(name):
            raise ValueError("not a valid schema name")


def _owned_array() -> str:
    return "ARRAY[" + ", ".join(literal(t) for t in OWNED_TABLES) + "]::text[]"


def lock_tables_sql(schema: str) -> str:
    """Lock every table of the clinic (not the service's own) against writes: EXCLUSIVE mode
    lets plain reads go on and makes every INSERT/UPDATE/DELETE wait until the COMMIT.

    It never waits for a lock, so it cannot deadlock with the app (a transaction writing
    Patient → Appointment → Invoice holds one table and wants the next, which a lock phase
    that waits in name order may already hold): every table is locked `NOWAIT` inside a
    subtransaction; if one is busy the subtransaction is rolled back — every lock of that
    try released, so the writer goes on — and the whole phase is tried again after a short
    jittered pause (growing to 200 ms), until the session's `lock_timeout` (RESTORE_LOCK_TIMEOUT)
    has passed: then it fails as a lock timeout (`clinic_busy`). The number of tries is
    echoed to psql's output (`cb:lock-tries=N`).

    In the same try, the views outside the clinic that the swap drops and recreates
    (`outside_views_query`) are locked ACCESS EXCLUSIVE: a reader of such a view that then
    writes a clinic table would otherwise deadlock with the DROP VIEW later in the swap."""
    return f"""SELECT pg_catalog.set_config('cb.lock_tries', '0', true);
DO $cb$
DECLARE
    t regclass;
    v record;
    tries integer := 0;
    limit_text text := pg_catalog.current_setting('lock_timeout');
    limit_ms bigint := (EXTRACT(EPOCH FROM pg_catalog.current_setting('lock_timeout')::interval) * 1000)::bigint;
    give_up timestamptz;
BEGIN
    give_up := pg_catalog.clock_timestamp()
        + CASE WHEN limit_ms > 0 THEN limit_ms * interval '1 ms' ELSE interval '1 hour' END;
    LOOP
        tries := tries + 1;
        <<one_try>>
        BEGIN
            FOR t IN
                SELECT c.oid::regclass FROM pg_catalog.pg_class c
                JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
                WHERE n.nspname = {literal(schema)} AND c.relkind IN ('r', 'p')
                  AND NOT c.relispartition AND c.relname <> ALL ({_owned_array()})
                ORDER BY c.relname
            LOOP
                EXECUTE pg_catalog.format('LOCK TABLE %s IN EXCLUSIVE MODE NOWAIT', t);
            END LOOP;
            -- The views outside the clinic that the swap recreates, ACCESS EXCLUSIVE: a no-op
            -- ALTER … OWNER locks the view alone (LOCK TABLE on a view would lock the tables
            -- under it too), and it waits at most {VIEW_LOCK_WAIT} (NOWAIT's stand-in).
            PERFORM pg_catalog.set_config('lock_timeout', {literal(VIEW_LOCK_WAIT)}, true);
            FOR v IN
                SELECT pg_catalog.format('ALTER %s %I.%I OWNER TO %I',
                           CASE c.relkind WHEN 'm' THEN 'MATERIALIZED VIEW' ELSE 'VIEW' END,
                           n.nspname, c.relname, pg_catalog.pg_get_userbyid(c.relowner)) AS stmt
                FROM ({outside_views_query(schema)}) w
                JOIN pg_catalog.pg_class c ON c.oid = w.oid
                JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
                ORDER BY w.level, c.oid
            LOOP
                EXECUTE v.stmt;
            END LOOP;
            PERFORM pg_catalog.set_config('lock_timeout', limit_text, true);
            EXIT;
        EXCEPTION WHEN lock_not_available THEN
            -- this try's locks are released with its subtransaction
            IF pg_catalog.clock_timestamp() >= give_up THEN
                RAISE EXCEPTION 'canceling statement due to lock timeout (clinic tables busy '
                    'after % tries)', tries USING ERRCODE = 'lock_not_available';
            END IF;
        END one_try;
        PERFORM pg_catalog.pg_sleep(
            LEAST(0.2, 0.005 * power(1.6, LEAST(tries, 12))) * (0.5 + pg_catalog.random()));
    END LOOP;
    PERFORM pg_catalog.set_config('cb.lock_tries', tries::text, true);
END
$cb$;
SELECT pg_catalog.current_setting('cb.lock_tries') AS cb_lock_tries \\gset
\\echo cb:lock-tries=:cb_lock_tries
"""


def move_owned_tables_sql(source: str, target: str) -> str:
    """The tables the service owns (records, audit, settings, slots, restores…) back into the
    live schema. They have no sequences, so nothing of theirs stays behind or collides."""
    return f"""DO $cb$
DECLARE
    t text;
BEGIN
    FOREACH t IN ARRAY {_owned_array()} LOOP
        IF pg_catalog.to_regclass(pg_catalog.format('%I.%I', {literal(source)}, t)) IS NOT NULL THEN
            EXECUTE pg_catalog.format('ALTER TABLE %I.%I SET SCHEMA %I', {literal(source)}, t, {literal(target)});
        END IF;
    END LOOP;
END
$cb$;
"""


def default_privileges_sql(old: str, new: str) -> str:
    """The old schema's default privileges (`ALTER DEFAULT PRIVILEGES … IN SCHEMA`), again for
    the new one, before the archive creates anything: a table the live schema did not have
    gets what the app's tables get (e.g. SELECT for the backup role)."""
    return f"""DO $cb$
DECLARE
    r record;
BEGIN
    FOR r IN
        SELECT pg_catalog.pg_get_userbyid(d.defaclrole) AS role, d.defaclobjtype AS kind,
               a.privilege_type, a.grantee, a.is_grantable
        FROM pg_catalog.pg_default_acl d
        CROSS JOIN LATERAL pg_catalog.aclexplode(d.defaclacl) a
        WHERE d.defaclnamespace = (SELECT oid FROM pg_catalog.pg_namespace WHERE nspname = {literal(old)})
          AND d.defaclobjtype IN ('r', 'S', 'f', 'T')
    LOOP
        EXECUTE pg_catalog.format(
            'ALTER DEFAULT PRIVILEGES FOR ROLE %I IN SCHEMA %I GRANT %s ON %s TO %s%s',
            r.role, {literal(new)}, r.privilege_type,
            CASE r.kind WHEN 'r' THEN 'TABLES' WHEN 'S' THEN 'SEQUENCES'
                        WHEN 'f' THEN 'FUNCTIONS' ELSE 'TYPES' END,
            CASE WHEN r.grantee = 0 THEN 'PUBLIC'
                 ELSE pg_catalog.quote_ident(pg_catalog.pg_get_userbyid(r.grantee)) END,
            CASE WHEN r.is_grantable THEN ' WITH GRANT OPTION' ELSE '' END);
    END LOOP;
END
$cb$;
"""


# An `aclexplode` row `g` as GRANT and REVOKE spell its grantee (0 is PUBLIC) and its grant
# option: SQL text of this module's own, put into the DO blocks below.
GRANTEE = (
    "CASE WHEN g.grantee = 0 THEN 'PUBLIC' "
    "ELSE pg_catalog.quote_ident(pg_catalog.pg_get_userbyid(g.grantee)) END"
)
GRANT_OPTION = "CASE WHEN g.is_grantable THEN ' WITH GRANT OPTION' ELSE '' END"


def owners_and_grants_sql(old: str, new: str) -> str:
    """Every object of the new schema that has a namesake in the old one gets its owner and
    exactly its grants: the schema itself, tables, views, materialized views, sequences,
    foreign tables, functions, procedures and types. (The archive was made with
    --no-owner --no-privileges, and loaded as the schema's owner.) Sequences owned by a
    column follow their table's owner. Objects the live schema did not have keep the schema
    owner and the default privileges."""
    o, n = literal(old), literal(new)
    return f"""DO $cb$
DECLARE
    old_ns oid := (SELECT oid FROM pg_catalog.pg_namespace WHERE nspname = {o});
    new_ns oid := (SELECT oid FROM pg_catalog.pg_namespace WHERE nspname = {n});
    r record;
    g record;
    cur_owner oid;
    cur_acl aclitem[];
BEGIN
    FOR r IN
        SELECT 0 AS ord, 'SCHEMA' AS alter_kw, 'SCHEMA' AS grant_kw, 'namespace' AS cat,
               'nsp' AS col, nn.oid AS new_oid, pg_catalog.quote_ident(nn.nspname) AS obj,
               'n'::"char" AS defkind, os.nspacl AS old_acl, os.nspowner AS old_owner,
               false AS linked
        FROM pg_catalog.pg_namespace os, pg_catalog.pg_namespace nn
        WHERE os.oid = old_ns AND nn.oid = new_ns
        UNION ALL
        SELECT CASE WHEN nc.relkind = 'S' THEN 2 ELSE 1 END,
               CASE nc.relkind WHEN 'S' THEN 'SEQUENCE' WHEN 'v' THEN 'VIEW'
                    WHEN 'm' THEN 'MATERIALIZED VIEW' WHEN 'f' THEN 'FOREIGN TABLE'
                    ELSE 'TABLE' END,
               CASE WHEN nc.relkind = 'S' THEN 'SEQUENCE' ELSE 'TABLE' END,
               'class', 'rel', nc.oid,
               pg_catalog.format('%I.%I', {n}, nc.relname),
               (CASE WHEN nc.relkind = 'S' THEN 's' ELSE 'r' END)::"char",
               oc.relacl, oc.relowner,
               EXISTS (SELECT 1 FROM pg_catalog.pg_depend d
                       WHERE d.classid = 'pg_catalog.pg_class'::regclass AND d.objid = nc.oid
                         AND d.refclassid = 'pg_catalog.pg_class'::regclass
                         AND d.deptype IN ('a', 'i'))
        FROM pg_catalog.pg_class nc
        JOIN pg_catalog.pg_class oc ON oc.relname = nc.relname AND oc.relkind = nc.relkind
        WHERE nc.relnamespace = new_ns AND oc.relnamespace = old_ns
          AND nc.relkind IN ('r', 'p', 'v', 'm', 'S', 'f')
        UNION ALL
        SELECT 3, CASE np.prokind WHEN 'p' THEN 'PROCEDURE' ELSE 'FUNCTION' END,
               CASE np.prokind WHEN 'p' THEN 'PROCEDURE' ELSE 'FUNCTION' END,
               'proc', 'pro', np.oid,
               pg_catalog.format('%I.%I(%s)', {n}, np.proname,
                                 pg_catalog.pg_get_function_identity_arguments(np.oid)),
               'f'::"char", op.proacl, op.proowner, false
        FROM pg_catalog.pg_proc np
        JOIN pg_catalog.pg_proc op ON op.proname = np.proname
         AND pg_catalog.replace(pg_catalog.pg_get_function_identity_arguments(op.oid),
                                pg_catalog.quote_ident({o}) || '.',
                                pg_catalog.quote_ident({n}) || '.')
             = pg_catalog.pg_get_function_identity_arguments(np.oid)
        WHERE np.pronamespace = new_ns AND op.pronamespace = old_ns
          AND np.prokind IN ('f', 'p') AND op.prokind = np.prokind
        UNION ALL
        SELECT 4, CASE nt.typtype WHEN 'd' THEN 'DOMAIN' ELSE 'TYPE' END,
               CASE nt.typtype WHEN 'd' THEN 'DOMAIN' ELSE 'TYPE' END,
               'type', 'typ', nt.oid, pg_catalog.format('%I.%I', {n}, nt.typname),
               'T'::"char", ot.typacl, ot.typowner, false
        FROM pg_catalog.pg_type nt
        JOIN pg_catalog.pg_type ot ON ot.typname = nt.typname
        WHERE nt.typnamespace = new_ns AND ot.typnamespace = old_ns
          AND nt.typtype IN ('b', 'c', 'd', 'e', 'r') AND nt.typcategory <> 'A'
          AND (nt.typrelid = 0
               OR (SELECT c.relkind FROM pg_catalog.pg_class c WHERE c.oid = nt.typrelid) = 'c')
        ORDER BY 1
    LOOP
        EXECUTE pg_catalog.format('SELECT %sowner, %sacl FROM pg_catalog.pg_%s WHERE oid = $1',
                                  r.col, r.col, r.cat)
            INTO cur_owner, cur_acl USING r.new_oid;
        IF r.alter_kw <> 'SCHEMA' AND NOT r.linked AND cur_owner <> r.old_owner THEN
            EXECUTE pg_catalog.format('ALTER %s %s OWNER TO %I', r.alter_kw, r.obj,
                                      pg_catalog.pg_get_userbyid(r.old_owner));
            EXECUTE pg_catalog.format('SELECT %sowner, %sacl FROM pg_catalog.pg_%s WHERE oid = $1',
                                      r.col, r.col, r.cat)
                INTO cur_owner, cur_acl USING r.new_oid;
        END IF;
        IF cur_acl IS DISTINCT FROM r.old_acl THEN
            FOR g IN
                SELECT DISTINCT a.grantee FROM pg_catalog.aclexplode(
                    coalesce(cur_acl, pg_catalog.acldefault(r.defkind, cur_owner))) a
            LOOP
                EXECUTE pg_catalog.format('REVOKE ALL ON %s %s FROM %s', r.grant_kw, r.obj, {GRANTEE});
            END LOOP;
            FOR g IN
                SELECT * FROM pg_catalog.aclexplode(
                    coalesce(r.old_acl, pg_catalog.acldefault(r.defkind, r.old_owner)))
            LOOP
                EXECUTE pg_catalog.format('GRANT %s ON %s %s TO %s%s', g.privilege_type,
                    r.grant_kw, r.obj, {GRANTEE}, {GRANT_OPTION});
            END LOOP;
        END IF;
    END LOOP;
END
$cb$;
"""


def erasure_sql(function: tuple[str, str] | None, schema: str) -> str:
    """The host's erasure hook (`RESTORE_ERASURE_FUNCTION`, settings-validated as
    `schema.name`), called with the clinic's schema name inside the swap's transaction, after
    the owned tables moved back and before the COMMIT: what it deletes is deleted in the same
    COMMIT, and its failure (ON_ERROR_STOP) rolls the whole restore back. Both names are
    quoted identifiers (`ident`, quote_ident's rule), the argument a literal."""
    if function is None:
        return ""
    _checked(schema)
    function_schema, name = function
    return f"SELECT {ident(function_schema)}.{ident(name)}({literal(schema)}::text);\n"


def column_grants_sql(old: str, new: str) -> str:
    """Column-level privileges (`GRANT SELECT (id, total) ON … TO report`, pg_attribute.attacl)
    of every table, view and foreign table of the old schema, again on the namesake column of
    its namesake in the new one, exactly (the archive was made with --no-privileges). Runs
    after `owners_and_grants_sql`, whose table-level REVOKE also clears column privileges."""
    o, n = literal(old), literal(new)
    return f"""DO $cb$
DECLARE
    r record;
    g record;
BEGIN
    FOR r IN
        SELECT pg_catalog.format('%I.%I', {n}, nc.relname) AS obj,
               pg_catalog.quote_ident(oa.attname) AS col, oa.attacl AS old_acl,
               na.attacl AS cur_acl
        FROM pg_catalog.pg_class oc
        JOIN pg_catalog.pg_class nc ON nc.relname = oc.relname AND nc.relkind = oc.relkind
        JOIN pg_catalog.pg_attribute oa ON oa.attrelid = oc.oid
        JOIN pg_catalog.pg_attribute na ON na.attrelid = nc.oid AND na.attname = oa.attname
        WHERE oc.relnamespace = (SELECT oid FROM pg_catalog.pg_namespace WHERE nspname = {o})
          AND nc.relnamespace = (SELECT oid FROM pg_catalog.pg_namespace WHERE nspname = {n})
          AND oc.relkind IN ('r', 'p', 'v', 'm', 'f')
          AND oa.attnum > 0 AND NOT oa.attisdropped AND NOT na.attisdropped
          AND oa.attacl IS DISTINCT FROM na.attacl
    LOOP
        FOR g IN SELECT DISTINCT a.grantee FROM pg_catalog.aclexplode(r.cur_acl) a LOOP
            EXECUTE pg_catalog.format('REVOKE ALL (%s) ON TABLE %s FROM %s', r.col, r.obj, {GRANTEE});
        END LOOP;
        FOR g IN SELECT * FROM pg_catalog.aclexplode(r.old_acl) LOOP
            EXECUTE pg_catalog.format('GRANT %s (%s) ON TABLE %s TO %s%s', g.privilege_type,
                r.col, r.obj, {GRANTEE}, {GRANT_OPTION});
        END LOOP;
    END LOOP;
END
$cb$;
"""


def _out_of_time() -> RestoreInterrupted:
    """The one report of a run its time limit stopped (whichever step noticed)."""
    return RestoreInterrupted(
        "the restore did not finish within RESTORE_TIMEOUT_SECONDS; nothing changed (use the "
        "operator CLI for clinics this large)"
    )


def own_idle_timeout(seconds: float) -> str:
    """The session's own `idle_in_transaction_session_timeout`: every transaction the driver
    opens waits, idle, on the driver (the pre-restore backup, pg_restore's next statement on a
    loaded machine, the archive's download), so a role's or server's shorter value would end it
    midway (`restore_interrupted`); the job's time limit plus a margin still ends a session
    whose driver vanished."""
    return f"SET idle_in_transaction_session_timeout = {literal(f'{int(seconds)}s')};\n"


def swap_lock(plan: SwapPlan, lock_timeout: str, idle_seconds: float | None = None) -> str:
    """The swap's first statements after its `BEGIN`: lock the clinic's tables (no deadlock:
    `lock_tables_sql`), then export the transaction's snapshot and echo it
    (`cb:snapshot=<id>`). The session then waits, idle in its transaction and holding the
    locks, while the driver makes the pre-restore backup with `pg_dump --snapshot=<id>`:
    every write committed before the swap is in it (pg_dump's ACCESS SHARE locks do not
    conflict with EXCLUSIVE; the snapshot, taken once every lock is held, sees every write
    that committed and none can commit after it until the swap's COMMIT).

    Waiting idle in its transaction, the session would be ended by a role's (or server's)
    `idle_in_transaction_session_timeout` shorter than the pre-restore backup (the restore
    then fails as `restore_interrupted`, nothing changed, one pre-restore backup too many):
    with `idle_seconds` (the swap's time limit plus a margin) the session sets its own, so
    it outlives the dump and still ends on the server's side if the driver vanishes without
    closing its connection."""
    _checked(plan.schema, plan.old_schema)
    idle = [] if idle_seconds is None else [own_idle_timeout(idle_seconds)]
    return "".join(
        [
            *idle,
            f"SET lock_timeout = {literal(lock_timeout)};\n",
            lock_tables_sql(plan.schema),
            f"\\echo {MARK_LOCKED}\n",
            "SELECT pg_catalog.pg_export_snapshot() AS cb_snapshot \\gset\n",
            f"\\echo {MARK_SNAPSHOT}:cb_snapshot\n",
        ]
    )


def swap_prefix(plan: SwapPlan, lock_timeout: str, *, dry_run: bool = False) -> str:
    """Everything between the `BEGIN` and the archive's SQL: the lock phase (`swap_lock`),
    then the rename. A dry run locks nothing (it only renames inside a transaction that is
    rolled back)."""
    _checked(plan.schema, plan.old_schema)
    parts = [f"SET lock_timeout = {literal(lock_timeout)};\n"]
    if not dry_run:
        parts = [swap_lock(plan, lock_timeout)]
    return "".join(parts) + swap_rename(plan)


def swap_rename(plan: SwapPlan) -> str:
    """The clinic's schema set aside as the kept one, a new one in its place, ready for the
    archive's SQL."""
    _checked(plan.schema, plan.old_schema)
    return "".join(
        [
            set_aside_views_sql(plan.schema),
            f"ALTER SCHEMA {ident(plan.schema)} RENAME TO {ident(plan.old_schema)};\n",
            f"CREATE SCHEMA {ident(plan.schema)} AUTHORIZATION {ident(plan.owner)};\n",
            f"\\echo {MARK_SWAPPED}\n",
            default_privileges_sql(plan.old_schema, plan.schema),
            # Everything the archive creates is the schema owner's, as before.
            f"SET ROLE {ident(plan.owner)};\n",
        ]
    )


def swap_suffix(
    plan: SwapPlan,
    lock_timeout: str,
    *,
    dry_run: bool = False,
    erasure: tuple[str, str] | None = None,
) -> str:
    """Everything between the archive's SQL and the end of the transaction (pg_restore's
    output ends with `\\unrestrict`, so psql takes our meta-commands again). The session
    ends it: COMMIT for the swap, ROLLBACK for the dry run (`PsqlSession.end`). The dry run
    calls the erasure hook too (on the empty tables): a missing function or right fails
    the pre-check, before anything changed."""
    _checked(plan.schema, plan.old_schema)
    parts = [
        "RESET ROLE;\n",
        # The archive set lock_timeout = 0: the owned tables' move waits at most this long.
        f"SET lock_timeout = {literal(lock_timeout)};\n",
        owners_and_grants_sql(plan.old_schema, plan.schema),
        column_grants_sql(plan.old_schema, plan.schema),
        move_owned_tables_sql(plan.old_schema, plan.schema),
        erasure_sql(erasure, plan.schema),
        recreate_views_sql(),
        nothing_outside_left_sql(plan.old_schema),
    ]
    if not dry_run:
        parts.append(plan.completion_sql.rstrip() + "\n")
    return "".join(parts)


def undo_script(plan: UndoPlan, lock_timeout: str, erasure: tuple[str, str] | None = None) -> str:
    """Swap back: the restored schema is set aside as `undo_schema` and the kept one (with its
    original OID, owner, grants and default privileges) is live again, history moved back.
    Between the session's `BEGIN` and its COMMIT (`PsqlSession.end`)."""
    _checked(plan.schema, plan.old_schema, plan.undo_schema)
    return "".join(
        [
            f"SET lock_timeout = {literal(lock_timeout)};\n",
            lock_tables_sql(plan.schema),
            f"\\echo {MARK_LOCKED}\n",
            set_aside_views_sql(plan.schema),
            f"ALTER SCHEMA {ident(plan.schema)} RENAME TO {ident(plan.undo_schema)};\n",
            f"ALTER SCHEMA {ident(plan.old_schema)} RENAME TO {ident(plan.schema)};\n",
            f"\\echo {MARK_SWAPPED}\n",
            move_owned_tables_sql(plan.undo_schema, plan.schema),
            # the data from before the restore: erasures made since are applied again too
            erasure_sql(erasure, plan.schema),
            recreate_views_sql(),
            nothing_outside_left_sql(plan.undo_schema),
            plan.completion_sql.rstrip() + "\n",
        ]
    )


# Where a dependent object lives and what it is (pg_depend rows `d`): its schema, and a
# description qualified whatever the search path (pg_describe_object; a view's rule as its view).
DEPENDENT_COLUMNS = """
        CASE d.classid
            WHEN 'pg_catalog.pg_class'::regclass THEN
                (SELECT relnamespace FROM pg_catalog.pg_class WHERE oid = d.objid)
            WHEN 'pg_catalog.pg_rewrite'::regclass THEN
                (SELECT c.relnamespace FROM pg_catalog.pg_rewrite r
                 JOIN pg_catalog.pg_class c ON c.oid = r.ev_class WHERE r.oid = d.objid)
            WHEN 'pg_catalog.pg_constraint'::regclass THEN
                (SELECT connamespace FROM pg_catalog.pg_constraint WHERE oid = d.objid)
            WHEN 'pg_catalog.pg_proc'::regclass THEN
                (SELECT pronamespace FROM pg_catalog.pg_proc WHERE oid = d.objid)
            WHEN 'pg_catalog.pg_type'::regclass THEN
                (SELECT typnamespace FROM pg_catalog.pg_type WHERE oid = d.objid)
            WHEN 'pg_catalog.pg_trigger'::regclass THEN
                (SELECT c.relnamespace FROM pg_catalog.pg_trigger t
                 JOIN pg_catalog.pg_class c ON c.oid = t.tgrelid WHERE t.oid = d.objid)
            WHEN 'pg_catalog.pg_attrdef'::regclass THEN
                (SELECT c.relnamespace FROM pg_catalog.pg_attrdef a
                 JOIN pg_catalog.pg_class c ON c.oid = a.adrelid WHERE a.oid = d.objid)
            WHEN 'pg_catalog.pg_policy'::regclass THEN
                (SELECT c.relnamespace FROM pg_catalog.pg_policy p
                 JOIN pg_catalog.pg_class c ON c.oid = p.polrelid WHERE p.oid = d.objid)
        END AS nsp,
        CASE d.classid
            WHEN 'pg_catalog.pg_rewrite'::regclass THEN
                (SELECT pg_catalog.pg_describe_object('pg_catalog.pg_class'::regclass,
                                                      r.ev_class, 0)
                 FROM pg_catalog.pg_rewrite r WHERE r.oid = d.objid)
            ELSE pg_catalog.pg_describe_object(d.classid, d.objid, 0)
        END AS what
"""

OUTSIDE_DEPENDENTS_SQL = (
    """
WITH ns AS (SELECT oid FROM pg_catalog.pg_namespace WHERE nspname = %(schema)s),
inside AS (
    SELECT 'pg_catalog.pg_class'::regclass AS classid, c.oid AS objid
    FROM pg_catalog.pg_class c
    WHERE c.relnamespace = (SELECT oid FROM ns) AND c.relname <> ALL (%(owned)s::text[])
    UNION ALL
    SELECT 'pg_catalog.pg_type'::regclass, t.oid FROM pg_catalog.pg_type t
    WHERE t.typnamespace = (SELECT oid FROM ns)
    UNION ALL
    SELECT 'pg_catalog.pg_proc'::regclass, p.oid FROM pg_catalog.pg_proc p
    WHERE p.pronamespace = (SELECT oid FROM ns)
),
dependents AS (
    SELECT d.classid, d.objid,"""
    + DEPENDENT_COLUMNS
    + """    FROM pg_catalog.pg_depend d
    JOIN inside i ON d.refclassid = i.classid AND d.refobjid = i.objid
    WHERE d.deptype IN ('n', 'a')
)
SELECT DISTINCT n.nspname, dependents.what
FROM dependents JOIN pg_catalog.pg_namespace n ON n.oid = dependents.nsp
WHERE dependents.nsp <> (SELECT oid FROM ns)
ORDER BY 1, 2
LIMIT 100
"""
)
"""Everything outside a schema that depends on it (the sweeper's RESTRICT check): psycopg2
parameters `schema` and `owned` (table names left out)."""


def _inside_sql(schema: str, owned: str) -> str:
    """The clinic's relations (but the service's own tables, `owned`), types and functions
    as (classid, objid): what objects outside it may depend on. Qualified for any
    search_path."""
    s = literal(schema)
    return f"""SELECT 'pg_catalog.pg_class'::pg_catalog.regclass AS classid, c.oid AS objid
        FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
        WHERE n.nspname = {s} AND c.relname <> ALL ({owned})
        UNION ALL
        SELECT 'pg_catalog.pg_type'::pg_catalog.regclass, t.oid
        FROM pg_catalog.pg_type t JOIN pg_catalog.pg_namespace n ON n.oid = t.typnamespace
        WHERE n.nspname = {s}
        UNION ALL
        SELECT 'pg_catalog.pg_proc'::pg_catalog.regclass, p.oid
        FROM pg_catalog.pg_proc p JOIN pg_catalog.pg_namespace n ON n.oid = p.pronamespace
        WHERE n.nspname = {s}"""


def outside_views_query(schema: str) -> str:
    """A query of (oid, level): the views and materialized views outside `schema` over its
    relations, types or functions (level 1), and the views outside it over those (level 2,
    …: the longest path), which the swap drops before the rename and recreates after the
    load, in level order. Fully qualified (it also runs with an empty search_path)."""
    _checked(schema)
    s = literal(schema)
    rewrite = "'pg_catalog.pg_rewrite'::pg_catalog.regclass"
    return f"""WITH RECURSIVE inside AS ({_inside_sql(schema, _owned_array())}),
    chain(oid, level) AS (
        SELECT r.ev_class, 1
        FROM pg_catalog.pg_depend d
        JOIN inside i ON d.refclassid = i.classid AND d.refobjid = i.objid
        JOIN pg_catalog.pg_rewrite r ON d.classid = {rewrite} AND r.oid = d.objid
        JOIN pg_catalog.pg_class c ON c.oid = r.ev_class
        JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
        WHERE d.deptype IN ('n', 'a') AND n.nspname <> {s} AND c.relkind IN ('v', 'm')
        UNION ALL
        SELECT r.ev_class, chain.level + 1
        FROM chain
        JOIN pg_catalog.pg_class above ON above.oid = chain.oid
        JOIN pg_catalog.pg_depend d
          ON (d.refclassid = 'pg_catalog.pg_class'::pg_catalog.regclass
              AND d.refobjid = above.oid)
          OR (d.refclassid = 'pg_catalog.pg_type'::pg_catalog.regclass
              AND d.refobjid = above.reltype)
        JOIN pg_catalog.pg_rewrite r ON d.classid = {rewrite} AND r.oid = d.objid
        JOIN pg_catalog.pg_class c ON c.oid = r.ev_class
        JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
        WHERE d.deptype IN ('n', 'a') AND r.ev_class <> above.oid AND n.nspname <> {s}
          AND c.relkind IN ('v', 'm')
    )
    SELECT chain.oid, pg_catalog.max(chain.level) AS level FROM chain GROUP BY chain.oid"""


# Why a view outside the clinic cannot be dropped and recreated by the swap (NULL: it can).
_VIEW_OBSTACLE = """CASE
        WHEN EXISTS (SELECT 1 FROM pg_catalog.pg_depend e
                     WHERE e.classid = 'pg_catalog.pg_class'::pg_catalog.regclass
                       AND e.objid = c.oid AND e.deptype = 'e') THEN 'part of an extension'
        WHEN c.relhastriggers THEN 'it has triggers'
        WHEN EXISTS (SELECT 1 FROM pg_catalog.pg_rewrite r
                     WHERE r.ev_class = c.oid AND r.rulename <> '_RETURN') THEN 'it has rules'
        WHEN EXISTS (SELECT 1 FROM pg_catalog.pg_attrdef a WHERE a.adrelid = c.oid)
            THEN 'it has column defaults'
        WHEN c.reltablespace <> 0 THEN 'it is in a tablespace of its own'
        WHEN NOT pg_catalog.pg_has_role(c.relowner, 'MEMBER')
            THEN 'the restore role is not a member of its owner'
        WHEN NOT pg_catalog.has_schema_privilege(c.relowner, c.relnamespace, 'CREATE')
            THEN 'its owner may not create in its schema'
    END"""


def restore_outside_dependents_sql(schema: str) -> str:
    """What refuses a restore (or an undo): objects outside `schema` that depend on it and
    that the swap does not recreate — foreign keys, functions (`BEGIN ATOMIC`), defaults,
    triggers, policies, types — plus the views it would recreate but cannot
    (`_VIEW_OBSTACLE`, given with the reason) and whatever depends on those views other than
    views it recreates (including objects in the clinic's own schema: the DROP VIEW would
    need them gone). Rows (schema, description)."""
    _checked(schema)
    s = literal(schema)
    cls = "'pg_catalog.pg_class'::pg_catalog.regclass"
    return f"""WITH inside AS ({_inside_sql(schema, _owned_array())}),
views AS (
    SELECT c.oid, c.reltype, {_VIEW_OBSTACLE} AS obstacle
    FROM ({outside_views_query(schema)}) w JOIN pg_catalog.pg_class c ON c.oid = w.oid
),
found AS (
    SELECT d.classid, d.objid,
        NOT EXISTS (SELECT 1 FROM inside i
                    WHERE i.classid = d.refclassid AND i.objid = d.refobjid) AS via_view,
{DEPENDENT_COLUMNS.rstrip()}
    FROM pg_catalog.pg_depend d
    WHERE d.deptype IN ('n', 'a')
      AND (EXISTS (SELECT 1 FROM inside i WHERE i.classid = d.refclassid AND i.objid = d.refobjid)
           OR (d.refclassid = {cls} AND d.refobjid IN (SELECT oid FROM views))
           OR (d.refclassid = 'pg_catalog.pg_type'::pg_catalog.regclass
               AND d.refobjid IN (SELECT reltype FROM views)))
      -- the views the swap recreates (their rules), and the indexes of its materialized views
      AND NOT (d.classid = 'pg_catalog.pg_rewrite'::pg_catalog.regclass
               AND (SELECT r.ev_class FROM pg_catalog.pg_rewrite r WHERE r.oid = d.objid)
                   IN (SELECT oid FROM views))
      AND NOT (d.classid = {cls}
               AND d.objid IN (SELECT i.indexrelid FROM pg_catalog.pg_index i
                               WHERE i.indrelid IN (SELECT oid FROM views)))
)
SELECT n.nspname, found.what
FROM found JOIN pg_catalog.pg_namespace n ON n.oid = found.nsp
WHERE n.nspname <> {s} OR found.via_view
UNION
SELECT n.nspname, pg_catalog.pg_describe_object({cls}, c.oid, 0)
       || ' (cannot be recreated: ' || views.obstacle || ')'
FROM views JOIN pg_catalog.pg_class c ON c.oid = views.oid
JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
WHERE views.obstacle IS NOT NULL
ORDER BY 1, 2
LIMIT 100"""


def set_aside_views_sql(schema: str) -> str:
    """Before the rename (the swap, its dry run, the undo): each view outside the clinic
    over it (`outside_views_query`) is described — its definition (pg_get_viewdef with an
    empty search_path: every name qualified, so it names the live schema, whatever that
    holds later), kind, owner, ACL, column ACLs, comments, reloptions (security_barrier,
    check_option…), a materialized view's indexes and whether it was populated — into the
    transaction's setting `cb.outside_views`, then dropped (RESTRICT), dependents first.
    The same transaction recreates them (`recreate_views_sql`): a failure rolls both back."""
    return f"""DO $cb$
DECLARE
    v record;
    saved jsonb := '[]'::jsonb;
    path text := pg_catalog.current_setting('search_path');
BEGIN
    PERFORM pg_catalog.set_config('search_path', '', true);
    FOR v IN
        SELECT n.nspname, c.relname, c.relkind::text AS relkind, w.level,
               pg_catalog.pg_get_userbyid(c.relowner) AS owner,
               pg_catalog.pg_get_viewdef(c.oid) AS def, c.reloptions::text[] AS options,
               c.relacl::text[] AS acl, c.relispopulated AS populated,
               pg_catalog.obj_description(c.oid, 'pg_class') AS comment,
               (SELECT pg_catalog.jsonb_agg(pg_catalog.jsonb_build_object(
                           'name', a.attname, 'acl', a.attacl::text[],
                           'comment', pg_catalog.col_description(c.oid, a.attnum))
                       ORDER BY a.attnum)
                FROM pg_catalog.pg_attribute a
                WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
                  AND (a.attacl IS NOT NULL
                       OR pg_catalog.col_description(c.oid, a.attnum) IS NOT NULL)) AS columns,
               (SELECT pg_catalog.jsonb_agg(pg_catalog.pg_get_indexdef(i.indexrelid)
                                            ORDER BY i.indexrelid)
                FROM pg_catalog.pg_index i WHERE i.indrelid = c.oid) AS indexes
        FROM ({outside_views_query(schema)}) w
        JOIN pg_catalog.pg_class c ON c.oid = w.oid
        JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
        ORDER BY w.level DESC, c.oid DESC
    LOOP
        -- prepended: the setting lists them in the order they are created again
        saved := pg_catalog.jsonb_build_array(pg_catalog.to_jsonb(v)) || saved;
        EXECUTE pg_catalog.format('DROP %s %I.%I',
            CASE v.relkind WHEN 'm' THEN 'MATERIALIZED VIEW' ELSE 'VIEW' END,
            v.nspname, v.relname);
    END LOOP;
    PERFORM pg_catalog.set_config('search_path', path, true);
    PERFORM pg_catalog.set_config('cb.outside_views', saved::text, true);
    PERFORM pg_catalog.set_config('cb.outside_view_count',
                                  pg_catalog.jsonb_array_length(saved)::text, true);
END
$cb$;
SELECT pg_catalog.current_setting('cb.outside_view_count') AS cb_views \\gset
\\echo {MARK_VIEWS}:cb_views
"""


def recreate_views_sql() -> str:
    """After the load (and the erasure hook: a materialized view is filled from the restored
    data as it will stay): every view `set_aside_views_sql` dropped, created again as its
    owner against the restored tables, in dependency order, with its reloptions, comments,
    indexes, data (a materialized view that was populated), ACL and column ACLs. A view that
    no longer fits the restored tables (a column gone) fails the swap, naming it: nothing
    changed."""
    return """DO $cb$
DECLARE
    v jsonb;
    col jsonb;
    target text;
    kind text;
    g record;
    ix text;
BEGIN
    FOR v IN
        SELECT e.value FROM pg_catalog.jsonb_array_elements(coalesce(
            nullif(pg_catalog.current_setting('cb.outside_views', true), ''), '[]')::jsonb) e
    LOOP
        target := pg_catalog.format('%I.%I', v->>'nspname', v->>'relname');
        kind := CASE v->>'relkind' WHEN 'm' THEN 'MATERIALIZED VIEW' ELSE 'VIEW' END;
        <<one_view>>
        BEGIN
            EXECUTE pg_catalog.format('SET LOCAL ROLE %I', v->>'owner');
            EXECUTE pg_catalog.format('CREATE %s %s%s AS %s%s', kind, target,
                CASE WHEN pg_catalog.jsonb_typeof(v->'options') = 'array'
                     THEN ' WITH (' || pg_catalog.array_to_string(ARRAY(
                              SELECT pg_catalog.jsonb_array_elements_text(v->'options')), ', ')
                          || ')'
                     ELSE '' END,
                pg_catalog.rtrim(v->>'def', E'; \n'),
                CASE WHEN kind = 'VIEW' THEN ''
                     WHEN (v->>'populated')::boolean THEN ' WITH DATA'
                     ELSE ' WITH NO DATA' END);
            FOR ix IN SELECT pg_catalog.jsonb_array_elements_text(
                                 coalesce(nullif(v->'indexes', 'null'), '[]'))
            LOOP
                EXECUTE ix;
            END LOOP;
            IF v->>'comment' IS NOT NULL THEN
                EXECUTE pg_catalog.format('COMMENT ON %s %s IS %L', kind, target, v->>'comment');
            END IF;
            IF pg_catalog.jsonb_typeof(v->'acl') = 'array' THEN
                FOR g IN
                    SELECT DISTINCT a.grantee FROM pg_catalog.aclexplode(pg_catalog.acldefault(
                        'r', pg_catalog.quote_ident(v->>'owner')::regrole::oid)) a
                LOOP
                    EXECUTE pg_catalog.format('REVOKE ALL ON TABLE %s FROM %s', target,
                        CASE WHEN g.grantee = 0 THEN 'PUBLIC'
                             ELSE pg_catalog.quote_ident(pg_catalog.pg_get_userbyid(g.grantee))
                        END);
                END LOOP;
                FOR g IN
                    SELECT * FROM pg_catalog.aclexplode(ARRAY(
                        SELECT pg_catalog.jsonb_array_elements_text(v->'acl'))::aclitem[])
                LOOP
                    EXECUTE pg_catalog.format('GRANT %s ON TABLE %s TO %s%s', g.privilege_type,
                        target,
                        CASE WHEN g.grantee = 0 THEN 'PUBLIC'
                             ELSE pg_catalog.quote_ident(pg_catalog.pg_get_userbyid(g.grantee))
                        END,
                        CASE WHEN g.is_grantable THEN ' WITH GRANT OPTION' ELSE '' END);
                END LOOP;
            END IF;
            FOR col IN
                SELECT e.value
                FROM pg_catalog.jsonb_array_elements(coalesce(nullif(v->'columns', 'null'),
                                                              '[]')) e
            LOOP
                IF pg_catalog.jsonb_typeof(col->'acl') = 'array' THEN
                    FOR g IN
                        SELECT * FROM pg_catalog.aclexplode(ARRAY(
                            SELECT pg_catalog.jsonb_array_elements_text(col->'acl'))::aclitem[])
                    LOOP
                        EXECUTE pg_catalog.format('GRANT %s (%I) ON TABLE %s TO %s%s',
                            g.privilege_type, col->>'name', target,
                            CASE WHEN g.grantee = 0 THEN 'PUBLIC'
                                 ELSE pg_catalog.quote_ident(
                                     pg_catalog.pg_get_userbyid(g.grantee)) END,
                            CASE WHEN g.is_grantable THEN ' WITH GRANT OPTION' ELSE '' END);
                    END LOOP;
                END IF;
                IF col->>'comment' IS NOT NULL THEN
                    EXECUTE pg_catalog.format('COMMENT ON COLUMN %s.%I IS %L', target,
                                              col->>'name', col->>'comment');
                END IF;
            END LOOP;
            RESET ROLE;
        EXCEPTION WHEN OTHERS THEN
            RAISE EXCEPTION 'the % % outside the clinic could not be recreated on the restored '
                'tables: %', pg_catalog.lower(kind), target, SQLERRM USING ERRCODE = SQLSTATE;
        END one_view;
    END LOOP;
END
$cb$;
"""


def nothing_outside_left_sql(kept: str) -> str:
    """Last statement before the COMMIT's checks: nothing outside the schema set aside may
    still depend on it — an object made over the clinic after the pre-check (the race the
    refusal cannot close) would otherwise follow the rename and read old data. The error
    carries only a count (`cb:outside_dependents`, mapped to `outside_dependents`)."""
    _checked(kept)
    check = OUTSIDE_DEPENDENTS_SQL % {"schema": literal(kept), "owned": "'{}'"}
    return f"""DO $cb$
DECLARE
    found integer;
BEGIN
    SELECT pg_catalog.count(*) INTO found FROM ({check}) q;
    IF found > 0 THEN
        RAISE EXCEPTION '{OUTSIDE_ERROR} % object(s) outside the clinic depend on its tables '
            '(made during the restore?)', found USING ERRCODE = 'dependent_objects_still_exist';
    END IF;
END
$cb$;
"""


# --- the COPY-aware filter ------------------------------------------------------------------------

_COPY_LINE = re.compile(
    rb'^COPY (?:"(?:[^"]|"")+"|[^ ."(]+)\.("(?:[^"]|"")+"|[^ ("]+) .*FROM stdin;\n$'
)
_REFERENCES = re.compile(rb'REFERENCES ("(?:[^"]|"")+"|[^ ."(]+)\.')
_COLUMN_OPTIONS = re.compile(rb"^ALTER TABLE ONLY \S+ ALTER COLUMN .+ SET \(.*\);\n$")


def _unquote(name: bytes) -> str:
    text = name.decode("utf-8", "replace")
    if text.startswith('"') and text.endswith('"'):
        return text[1:-1].replace('""', '"')
    return text


class SqlFilter:
    """pg_restore's SQL on its way to psql, line by line outside COPY data and in bulk inside
    it (a COPY block ends at a line `\\.`; its rows are one line each, newlines escaped), so a
    row that happens to read like a statement is never touched.

    - `drop_transaction_timeout`: drop `SET transaction_timeout …` (servers older than 17);
    - `drop_create_schema`: drop the archive's `CREATE SCHEMA <clinic>;` (the swap creates it
      with the owner's authorization);
    - `drop_foreign_fks`: drop foreign keys to tables of other schemas (a drill in a scratch
      database has no `public` users table); they are listed in `skipped_foreign_keys`;
    - `drop_column_options`: drop per-column options (`ALTER TABLE ONLY … ALTER COLUMN … SET
      (…)`, planner hints such as n_distinct): another server may not know an option the
      source server set (the PostgreSQL 15 here stamps every column with `pg_attver`, which
      PostgreSQL 18 refuses); they change no data, and a drill checks data;
    - `counts`: rows of each table's COPY data.
    """

    def __init__(
        self,
        sink: Callable[[bytes], None] | None,
        schema: str,
        *,
        drop_transaction_timeout: bool = False,
        drop_create_schema: bool = False,
        drop_foreign_fks: bool = False,
        drop_column_options: bool = False,
    ):
        self._sink = sink
        self._drop_options = drop_column_options
        self.skipped_column_options = 0
        self._schema = schema
        self._drop_tt = drop_transaction_timeout
        self._create_schema = (
            {f"CREATE SCHEMA {schema};\n".encode(), f"CREATE SCHEMA {ident(schema)};\n".encode()}
            if drop_create_schema
            else set()
        )
        self._drop_fks = drop_foreign_fks
        self._buf = bytearray()  # an unfinished line (cut by a read)
        self._table: str | None = None  # in COPY data of this table
        self._statement: list[bytes] | None = None
        self.counts: dict[str, int] = {}
        self.skipped_foreign_keys: list[str] = []
        self.dropped_create_schema = False
        self.bytes_in = 0

    def feed(self, chunk: bytes) -> None:
        """Filter one read of pg_restore's output. COPY data is passed on as views of `chunk`
        (no copy: it is most of the bytes); only a line cut by the read is kept for the next."""
        self.bytes_in += len(chunk)
        out: list[bytes | memoryview] = []
        start = 0
        if self._buf:
            newline = chunk.find(b"\n")
            if newline < 0:
                self._buf += chunk
                return
            head = bytes(self._buf) + chunk[: newline + 1]
            self._buf.clear()
            self._process(head, 0, out)
            start = newline + 1
        pos = self._process(chunk, start, out)
        if pos < len(chunk):
            self._buf += chunk[pos:]
        self._emit(out)

    def close(self) -> None:
        out: list[bytes | memoryview] = []
        if self._buf:
            rest = bytes(self._buf) + (b"" if self._buf.endswith(b"\n") else b"\n")
            self._buf.clear()
            self._process(rest, 0, out)
        if self._table is not None or self._statement is not None:
            raise ArchiveInvalid("the archive's SQL ended in the middle of a statement")
        self._emit(out)

    def _emit(self, out: list[bytes | memoryview]) -> None:
        if self._sink is not None:
            for piece in out:
                self._sink(piece)  # type: ignore[arg-type]

    def _process(self, data: bytes, pos: int, out: list[bytes | memoryview]) -> int:
        """Consume whole lines of `data` from `pos`; return where the unfinished one starts."""
        size = len(data)
        while pos < size:
            if self._table is not None:
                pos, done = self._copy_data(data, pos, out)
                if not done:
                    break
                continue
            end = data.find(b"\n", pos)
            if end < 0:
                break
            self._line(data[pos : end + 1], out)  # type: ignore[arg-type]
            pos = end + 1
        return pos

    def _copy_data(self, data: bytes, pos: int, out: list[bytes | memoryview]) -> tuple[int, bool]:
        assert self._table is not None
        if data.startswith(b"\\.\n", pos):
            term = pos
        else:
            found = data.find(b"\n\\.\n", pos)
            term = found + 1 if found >= 0 else -1
        if term >= 0:
            self.counts[self._table] += data.count(b"\n", pos, term)
            out.append(memoryview(data)[pos : term + 3])
            self._table = None
            return term + 3, True
        last = data.rfind(b"\n", pos)
        if last < 0:
            return pos, False
        # Whole rows only: a terminator split across reads is found at the next line start.
        self.counts[self._table] += data.count(b"\n", pos, last + 1)
        out.append(memoryview(data)[pos : last + 1])
        return last + 1, False

    def _line(self, line: bytes, out: list[bytes | memoryview]) -> None:
        if self._statement is not None:
            self._statement.append(line)
            if line.rstrip().endswith(b";"):
                statement, self._statement = b"".join(self._statement), None
                self._emit_statement(statement, out)
            return
        if self._drop_fks and line.startswith(b"ALTER TABLE ") and not line.rstrip().endswith(b";"):
            self._statement = [line]
            return
        if line.startswith(b"COPY "):
            match = _COPY_LINE.match(line)
            if match:
                self._table = _unquote(match.group(1))
                self.counts.setdefault(self._table, 0)
            out.append(line)
            return
        if self._drop_tt and line.startswith(b"SET transaction_timeout"):
            return
        if self._drop_options and _COLUMN_OPTIONS.match(line):
            self.skipped_column_options += 1
            return
        if line in self._create_schema and not self.dropped_create_schema:
            self.dropped_create_schema = True
            return
        out.append(line)

    def _emit_statement(self, statement: bytes, out: list[bytes | memoryview]) -> None:
        if b" FOREIGN KEY " in statement:
            target = _REFERENCES.search(statement)
            if target and _unquote(target.group(1)) != self._schema:
                name = re.search(rb"ADD CONSTRAINT (\S+)", statement)
                self.skipped_foreign_keys.append(_unquote(name.group(1)) if name else "foreign key")
                return
        out.append(statement)


# --- processes --------------------------------------------------------------------------------


def _offline_env() -> dict[str, str]:
    """pg_restore reading an archive only (no server): no libpq variables at all."""
    return {k: v for k, v in os.environ.items() if k in ("PATH", "LANG", "LC_ALL", "TZ")}


class _Stderr:
    def __init__(self, stream: Any):
        self.lines: collections.deque[str] = collections.deque(maxlen=STDERR_LINES_KEPT)
        self._thread = threading.Thread(target=self._drain, args=(stream,), daemon=True)
        self._thread.start()

    def _drain(self, stream: Any) -> None:
        for raw in stream:
            self.lines.append(raw.decode("utf-8", "replace").rstrip())

    def join(self) -> list[str]:
        self._thread.join(timeout=5)
        return list(self.lines)


class PsqlSession:
    """psql reading a script from its stdin, in one transaction the script opens itself
    (`BEGIN`) and that only `end(commit=True)` commits: psql's end of input without that word
    — the driver died, or gave up — is a disconnect, and the server rolls everything back.
    `\\echo` markers are timed as they arrive; `reached` waits for one."""

    def __init__(self, psql: str, env: dict[str, str]):
        argv = [psql, "-X", "-q", "-v", "ON_ERROR_STOP=1", "-o", os.devnull, "-f", "-"]
        self.proc = spawn(argv, env, stdin=subprocess.PIPE)
        widen_pipe(self.proc.stdin)
        self.markers: dict[str, float] = {}
        self._seen = threading.Condition()
        self._ended = False
        self.stderr = _Stderr(self.proc.stderr)
        self._stdout = threading.Thread(target=self._read_markers, daemon=True)
        self._stdout.start()
        self.exited_at: float | None = None

    def _read_markers(self) -> None:
        assert self.proc.stdout is not None
        try:
            for raw in self.proc.stdout:
                text = raw.decode("utf-8", "replace").strip()
                if text.startswith("cb:"):
                    with self._seen:
                        self.markers[text] = time.monotonic()
                        self._seen.notify_all()
        finally:
            with self._seen:
                self._ended = True
                self._seen.notify_all()

    def reached(self, marker: str, timeout: float) -> bool:
        """Whether psql printed `marker`, waiting until it does, stops printing (it exited) or
        `timeout` seconds pass."""
        with self._seen:
            self._seen.wait_for(lambda: marker in self.markers or self._ended, timeout)
            return marker in self.markers

    def value(self, prefix: str, timeout: float) -> str | None:
        """The rest of the first marker line starting with `prefix` (e.g. `cb:snapshot=`),
        waiting until psql prints one, exits or `timeout` seconds pass."""

        def found() -> str | None:
            for marker in self.markers:
                if marker.startswith(prefix):
                    return marker[len(prefix) :]
            return None

        with self._seen:
            self._seen.wait_for(lambda: found() is not None or self._ended, timeout)
            return found()

    @property
    def committed(self) -> bool:
        """psql printed the marker that follows the COMMIT: the transaction is committed,
        whatever happens to psql afterwards."""
        return MARK_COMMITTED in self.markers

    def send(self, data: bytes | memoryview | str, *, flush: bool = False) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(data.encode() if isinstance(data, str) else data)
        if flush:
            self.proc.stdin.flush()

    def end(self, *, commit: bool, timeout: float) -> int:
        """End the script and wait for psql; its exit status. With `commit`, the COMMIT is
        written only once psql has printed `cb:commit`, i.e. every statement before it
        succeeded (ON_ERROR_STOP); `committed` then says whether it went through. Without,
        ROLLBACK (the dry run)."""
        deadline = time.monotonic() + timeout
        try:
            if not commit:
                self.send("ROLLBACK;\n")
            else:
                self.send(f"\\echo {MARK_COMMIT}\n", flush=True)
                if self.reached(MARK_COMMIT, max(0.0, deadline - time.monotonic())):
                    self.send(f"COMMIT;\n\\echo {MARK_COMMITTED}\n", flush=True)
        except (OSError, ValueError):
            pass  # psql stopped reading: an error, or it was killed; its exit says which
        return self.finish(max(1.0, deadline - time.monotonic()))

    def finish(self, timeout: float) -> int:
        """Close stdin (the end of the script) and wait: without our COMMIT, psql's end of input
        rolls the transaction back."""
        assert self.proc.stdin is not None
        try:
            self.proc.stdin.close()
        except (BrokenPipeError, OSError):
            pass
        return self.wait(timeout)

    def wait(self, timeout: float) -> int:
        try:
            rc = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            rc = self.proc.wait()
        if self.exited_at is None:
            self.exited_at = time.monotonic()
        self._stdout.join(timeout=5)
        return rc

    def kill(self) -> None:
        kill_group(self.proc)

    def close(self) -> None:
        reap(self.proc)


def _views_recreated(psql: PsqlSession) -> int:
    """How many views outside the clinic the swap dropped and recreated (`cb:views=N`)."""
    for marker in psql.markers:
        if marker.startswith(MARK_VIEWS) and marker[len(MARK_VIEWS) :].isdigit():
            return int(marker[len(MARK_VIEWS) :])
    return 0


def _lock_tries(psql: PsqlSession) -> int:
    """How many tries the lock phase took (its `cb:lock-tries=N` line; 0: none seen)."""
    for marker in psql.markers:
        if marker.startswith(MARK_LOCK_TRIES) and marker[len(MARK_LOCK_TRIES) :].isdigit():
            return int(marker[len(MARK_LOCK_TRIES) :])
    return 0


def _require_commit(psql: PsqlSession, rc: int, *, check: bool = False) -> None:
    """Raise unless psql confirmed the COMMIT (`cb:committed`): then it happened, even if psql
    was killed right after."""
    if psql.committed:
        return
    if rc == 0:
        raise RestoreInterrupted(
            "the restore session ended without confirming its COMMIT; nothing changed"
        )
    raise classify_psql_error(rc, psql.stderr.join(), check=check)


class _Feeder(threading.Thread):
    """The archive into pg_restore's stdin. With `drain`, the archive is read to its end even
    after pg_restore stopped reading, so its sha256 is checked on every byte."""

    def __init__(self, archive: BinaryIO, proc: subprocess.Popen[bytes], drain: bool):
        super().__init__(daemon=True, name="archive-feeder")
        self._archive = archive
        self._proc = proc
        self._drain = drain
        self.error: BaseException | None = None
        self.bytes = 0
        self.stop = threading.Event()

    def run(self) -> None:
        stdin = self._proc.stdin
        assert stdin is not None
        open_pipe = True
        try:
            while not self.stop.is_set():
                chunk = self._archive.read(READ_BUFFER)
                if not chunk:
                    break
                self.bytes += len(chunk)
                if open_pipe:
                    try:
                        stdin.write(chunk)
                    except (BrokenPipeError, ValueError, OSError):
                        open_pipe = False  # pg_restore has all it wanted
                        if not self._drain:
                            break
        except BaseException as error:
            self.error = error
            kill_group(self._proc)  # its output must not look complete
        finally:
            try:
                stdin.close()
            except (BrokenPipeError, OSError):
                pass


@dataclass
class _Run:
    """One pipeline run's processes, for clean-up and error reports."""

    psql: PsqlSession | None = None
    restore: subprocess.Popen[bytes] | None = None
    restore_err: _Stderr | None = None
    feeder: _Feeder | None = None
    timed_out: threading.Event = field(default_factory=threading.Event)
    timer: threading.Timer | None = None

    @classmethod
    def with_deadline(cls, seconds: float) -> _Run:
        """A run that stops everything (`expire`) when `seconds` have passed before `close`."""
        run = cls()
        run.timer = threading.Timer(seconds, run.expire)
        run.timer.daemon = True
        run.timer.start()
        return run

    def expire(self) -> None:
        """The time limit: everything stops, nothing commits."""
        self.timed_out.set()
        self.kill()

    def kill(self) -> None:
        if self.feeder is not None:
            self.feeder.stop.set()
        if self.restore is not None:
            kill_group(self.restore)
        if self.psql is not None:
            self.psql.kill()

    def close(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
        self.kill()
        if self.restore is not None:
            reap(self.restore)
        if self.psql is not None:
            self.psql.close()
        if self.feeder is not None:
            self.feeder.join(timeout=10)


def _start_pg_restore(
    tools: PgTools, extra: list[str], env: dict[str, str], run: _Run, archive: BinaryIO, drain: bool
) -> subprocess.Popen[bytes]:
    argv = [
        tools.path("pg_restore"),
        "--file=-",
        "--no-owner",
        "--no-privileges",
        "--no-statistics",
        *extra,
    ]
    proc = spawn(argv, env, stdin=subprocess.PIPE)
    widen_pipe(proc.stdin)
    widen_pipe(proc.stdout)
    run.restore = proc
    run.restore_err = _Stderr(proc.stderr)
    run.feeder = _Feeder(archive, proc, drain)
    run.feeder.start()
    return proc


def _pump(proc: subprocess.Popen[bytes], sql_filter: SqlFilter) -> None:
    stdout = proc.stdout
    assert stdout is not None
    while chunk := stdout.read1(READ_BUFFER):  # type: ignore[attr-defined]
        sql_filter.feed(chunk)


def _load_archive(
    tools: PgTools,
    pg_restore_args: list[str],
    env: dict[str, str],
    run: _Run,
    archive: BinaryIO,
    drain: bool,
    filt: SqlFilter,
) -> None:
    """pg_restore's SQL through the filter into psql, to its end: pg_restore exited 0, the
    feeder fed it the whole archive, the filter saw the end of the archive's SQL."""
    proc = _start_pg_restore(tools, pg_restore_args, env, run, archive, drain)
    _pump(proc, filt)
    _read_to_the_end(run, proc.wait(), out_of_time=_out_of_time)
    filt.close()


def _read_to_the_end(
    run: _Run,
    rc: int,
    *,
    what: str = "the backup",
    out_of_time: Callable[[], Exception] | None = None,
) -> None:
    """After pg_restore exited with `rc`: the time limit (`out_of_time`'s report), the
    feeder's error, a kill, or what pg_restore could not read — else it read to the end."""
    assert run.feeder is not None
    run.feeder.join()
    if out_of_time is not None and run.timed_out.is_set():
        raise out_of_time()
    if run.feeder.error is not None:
        raise run.feeder.error
    _unless_killed(rc)
    if rc != 0:
        assert run.restore_err is not None
        raise ArchiveInvalid(
            f"pg_restore could not read {what} ({describe_exit(rc)}): "
            f"{_first_error(run.restore_err.join())}"
        )


def _unless_killed(rc: int) -> None:
    """A pg_restore killed by a signal (the OOM killer, an operator) says nothing about the
    backup: an interruption, not an invalid archive."""
    if rc < 0:
        raise RestoreInterrupted(
            f"pg_restore was {describe_exit(rc)} while it read the backup; nothing changed"
        )


def _first_error(lines: list[str]) -> str:
    for line in lines:
        match = re.search(r"(?:ERROR|FATAL|error):\s*(.*)", line)
        if match:
            return redact(match.group(1).strip())[:300]
    return redact(lines[-1])[:300] if lines else "no message"


_MISSING = re.compile(
    r"(?:type|function|relation|schema|extension|operator class|operator|collation|"
    r'text search configuration|sequence) "?([^"]+?)"?(?:\(.*\))? does not exist'
)


def classify_psql_error(rc: int, lines: list[str], *, check: bool) -> BackupRunError:
    """psql's exit and stderr as a clear, documented failure (no data values: only the ERROR
    line, never DETAIL, which can quote rows)."""
    text = "\n".join(lines)
    message = _first_error(lines)
    prefix = "pre-check: " if check else ""
    if (
        rc < 0
        or rc == 2
        or any(
            s in text
            for s in (
                "server closed the connection",
                "terminating connection",
                "connection to server",
                "could not send data to server",
                "could not receive data from server",
            )
        )
    ):
        return RestoreInterrupted(
            f"{prefix}the restore session stopped or lost its connection before the COMMIT "
            f"({f'psql was {describe_exit(rc)}' if rc < 0 else message}); nothing changed"
        )
    if OUTSIDE_ERROR in text:
        return OutsideDependents(
            f"{prefix}{message.replace(OUTSIDE_ERROR, '').strip()}; nothing changed"
        )
    if "lock timeout" in text:
        return ClinicBusy(
            "the clinic's tables could not be locked in time: another session holds them (a "
            "long transaction or a migration); nothing changed, try again later"
        )
    missing = _MISSING.search(text)
    if missing and ("does not exist" in message):
        return MissingDependency(
            f"{prefix}the backup needs {missing.group(0).replace(' does not exist', '')}, which "
            "does not exist in the database (was an extension, a type or a shared table "
            "removed?); nothing changed"
        )
    if "violates foreign key constraint" in message:
        return RestoreFailed(
            f"{prefix}{message}: a row of the backup refers to a row that no longer exists "
            "(for example a user in a shared table); nothing changed"
        )
    if "permission denied" in text or "must be owner" in text or "must be member" in text:
        return RestoreFailed(
            f"{prefix}the restore role lacks a privilege ({message}); see docs/security.md; "
            "nothing changed"
        )
    return RestoreFailed(f"{prefix}{message}; nothing changed")


# --- the clinic database ------------------------------------------------------------------------


def _swap_filter(sink: Callable[[bytes], None], plan: SwapPlan) -> SqlFilter:
    """The archive's SQL as the swap (and its dry run) sends it to psql."""
    return SqlFilter(
        sink,
        plan.schema,
        drop_transaction_timeout=plan.server_major < 17,
        drop_create_schema=True,
    )


@dataclass
class SchemaSwapper:
    """The `Restorer` port: the clinic database, as the restore role."""

    database_url: str
    tools: PgTools | None = None
    timeout_seconds: float = 840
    lock_timeout: str = "30s"
    connect_timeout: int = 10
    # RESTORE_ERASURE_FUNCTION as (schema, name): called in every swap (`erasure_sql`).
    erasure_function: tuple[str, str] | None = None

    def _env(self) -> dict[str, str]:
        env = libpq_environment(self.database_url)
        env["PGAPPNAME"] = APPLICATION_NAME
        return env

    def _connect(self) -> Any:
        try:
            return psycopg2.connect(
                self.database_url,
                connect_timeout=self.connect_timeout,
                application_name=APPLICATION_NAME,
            )
        except psycopg2.Error as error:
            raise translate_connect_error(error) from None

    def _tools(self) -> PgTools:
        assert self.tools is not None, "this function has no pg_restore/psql"
        return self.tools

    def inspect(self, schema: str) -> LiveSchema:
        conn = self._connect()
        try:
            with conn.cursor() as cur:
                cur.execute(
                    "SELECT current_setting('server_version_num')::int, "
                    "pg_get_userbyid(nspowner) FROM pg_namespace WHERE nspname = %s",
                    (schema,),
                )
                row = cur.fetchone()
        finally:
            conn.close()
        if row is None:
            raise RestoreFailed("the clinic's schema does not exist in the database")
        return LiveSchema(server_version_num=int(row[0]), owner=str(row[1]))

    def schema_exists(self, name: str) -> bool:
        conn = self._connect()
        try:
            with conn.cursor() as cur:
                cur.execute("SELECT 1 FROM pg_namespace WHERE nspname = %s", (name,))
                return cur.fetchone() is not None
        finally:
            conn.close()

    def _pipeline(
        self,
        archive: BinaryIO | None,
        *,
        prefix: str,
        suffix: Callable[[], str],
        pg_restore_args: list[str],
        sql_filter: Callable[[Callable[[bytes], None]], SqlFilter],
        commit: bool,
        drain: bool,
        verified: Callable[[], bool] | None,
        check: bool,
        env: dict[str, str] | None = None,
        lock: str = "",
        locked: Locked | None = None,
    ) -> tuple[SqlFilter, PsqlSession]:
        """`BEGIN`, the prefix, the archive's SQL, the suffix, and then COMMIT (or, for a dry
        run, ROLLBACK) — the COMMIT only once every check has passed: pg_restore exited 0,
        the filter saw the end of the archive's SQL, the stored bytes matched their sha256
        (`verified`), and psql ran every statement before it.

        With `lock` and `locked` (the swap): `lock` runs first and ends by echoing the
        transaction's snapshot; `locked(snapshot)` is then called while the session waits
        holding the locks (the pre-restore backup) and returns the archive to load and its
        `verified`."""
        tools = self._tools()
        env = env or self._env()
        run = _Run.with_deadline(self.timeout_seconds)
        try:
            psql = run.psql = PsqlSession(tools.path("psql"), env)
            filt = sql_filter(psql.send)
            try:
                if locked is not None:
                    archive, verified = self._lock_first(psql, run, lock, locked, check=check)
                    psql.send(prefix)
                else:
                    # The pre-check and the plain loads wait on pg_restore between statements.
                    idle = own_idle_timeout(self.timeout_seconds + IDLE_MARGIN_SECONDS)
                    psql.send(BEGIN + idle + prefix)
                assert archive is not None
                if run.timed_out.is_set():
                    # The time limit passed while the session waited (the pre-restore backup):
                    # its kill found no pg_restore yet, so none is started now.
                    raise _out_of_time()
                _load_archive(tools, pg_restore_args, env, run, archive, drain, filt)
                if verified is not None and not verified():
                    raise ChecksumMismatch(
                        "the stored file does not match the backup's sha256; nothing changed"
                    )
                psql.send(f"\\echo {MARK_LOADED}\n" + suffix())
            except (BrokenPipeError, ValueError, OSError) as error:
                if not isinstance(error, BrokenPipeError) and psql.proc.poll() is None:
                    raise
                # psql stopped reading: it hit an error (or was killed). Its report says which.
                if run.restore is not None:
                    kill_group(run.restore)
                rc = psql.wait(timeout=30)
                if run.timed_out.is_set():
                    raise _out_of_time() from None
                raise classify_psql_error(rc, psql.stderr.join(), check=check) from None
            self._end(psql, run, commit=commit, check=check)
            return filt, psql
        except BaseException:
            run.kill()
            raise
        finally:
            run.close()

    def _lock_first(
        self, psql: PsqlSession, run: _Run, lock: str, locked: Locked, *, check: bool
    ) -> tuple[BinaryIO, Callable[[], bool] | None]:
        """The swap's lock phase: `lock` ends by echoing the transaction's snapshot, and
        `locked(snapshot)` runs while the session waits holding the locks."""
        psql.send(BEGIN + lock, flush=True)
        snapshot = psql.value(MARK_SNAPSHOT, self.timeout_seconds)
        if snapshot is None or not SNAPSHOT_ID.fullmatch(snapshot):
            # The lock phase failed (clinic_busy…) or psql stopped: its report.
            rc = psql.wait(timeout=30)
            if run.timed_out.is_set() or rc == 0:
                raise RestoreInterrupted(
                    "the restore did not lock the clinic's tables within its time "
                    "limit; nothing changed"
                )
            raise classify_psql_error(rc, psql.stderr.join(), check=check)
        return locked(snapshot)

    def _end(self, psql: PsqlSession, run: _Run, *, commit: bool, check: bool) -> None:
        """COMMIT (or ROLLBACK): a confirmed COMMIT stands whatever happens after it."""
        rc = psql.end(commit=commit, timeout=max(1.0, self.timeout_seconds))
        if commit and psql.committed:
            return
        if run.timed_out.is_set():
            raise _out_of_time()
        if commit:
            _require_commit(psql, rc, check=check)
        elif rc != 0:
            raise classify_psql_error(rc, psql.stderr.join(), check=check)

    def load(self, archive: BinaryIO) -> dict[str, int]:
        """Load a whole plaintext archive into this database in one transaction, as pg_restore
        would but streamed (`SET transaction_timeout` dropped for servers older than 17).
        For a clinic opening a downloaded backup into a database of its own
        (`cli restore-file`); returns the rows restored per table."""
        conn = self._connect()
        try:
            with conn.cursor() as cur:
                cur.execute("SELECT current_setting('server_version_num')::int")
                version = int(cur.fetchone()[0])
        finally:
            conn.close()
        filt = self._load_whole(
            archive,
            lambda sink: SqlFilter(sink, "archive", drop_transaction_timeout=version < 170000),
            drain=False,
        )
        return dict(filt.counts)

    def _load_whole(
        self,
        archive: BinaryIO,
        sql_filter: Callable[[Callable[[bytes], None]], SqlFilter],
        *,
        drain: bool,
        verified: Callable[[], bool] | None = None,
        env: dict[str, str] | None = None,
    ) -> SqlFilter:
        """The whole archive (every table, nothing before or after it) in one transaction,
        committed once every check passed (`_pipeline`); the filter, with its row counts."""
        filt, _ = self._pipeline(
            archive,
            prefix="",
            suffix=lambda: "",
            pg_restore_args=[],
            sql_filter=sql_filter,
            commit=True,
            drain=drain,
            verified=verified,
            check=False,
            env=env,
        )
        return filt

    def check(self, archive: BinaryIO, plan: SwapPlan) -> None:
        started = time.monotonic()
        self._pipeline(
            archive,
            prefix=swap_prefix(plan, self.lock_timeout, dry_run=True),
            suffix=lambda: swap_suffix(
                plan, self.lock_timeout, dry_run=True, erasure=self.erasure_function
            ),
            pg_restore_args=["--schema-only"],
            sql_filter=lambda sink: _swap_filter(sink, plan),
            commit=False,
            drain=False,
            verified=None,
            check=True,
        )
        logger.info(
            "restore pre-check passed",
            extra={"clinic": plan.schema, "seconds": round(time.monotonic() - started, 3)},
        )

    def swap(self, plan: SwapPlan, locked: Locked) -> SwapResult:
        started = time.monotonic()
        filt, psql = self._pipeline(
            None,
            lock=swap_lock(
                plan, self.lock_timeout, idle_seconds=self.timeout_seconds + IDLE_MARGIN_SECONDS
            ),
            locked=locked,
            prefix=swap_rename(plan),
            suffix=lambda: swap_suffix(plan, self.lock_timeout, erasure=self.erasure_function),
            pg_restore_args=[],
            sql_filter=lambda sink: _swap_filter(sink, plan),
            commit=True,
            drain=True,
            verified=None,
            check=False,
        )
        if not filt.dropped_create_schema:
            # Cannot happen after a COMMIT (CREATE SCHEMA would have failed); kept as a guard.
            logger.warning("the archive had no CREATE SCHEMA line", extra={"clinic": plan.schema})
        ended = psql.exited_at or time.monotonic()
        locked_at = psql.markers.get(MARK_LOCKED, started)
        return SwapResult(
            seconds=ended - started,
            lock_seconds=max(0.0, ended - locked_at),
            table_counts=dict(filt.counts),
            archive_bytes=filt.bytes_in,
            lock_tries=_lock_tries(psql),
            views_recreated=_views_recreated(psql),
        )

    def swap_back(self, plan: UndoPlan) -> SwapResult:
        tools = self._tools()
        started = time.monotonic()
        psql = PsqlSession(tools.path("psql"), self._env())
        try:
            try:
                psql.send(
                    BEGIN
                    + own_idle_timeout(self.timeout_seconds + IDLE_MARGIN_SECONDS)
                    + undo_script(plan, self.lock_timeout, self.erasure_function),
                    flush=True,
                )
            except BrokenPipeError:
                pass
            rc = psql.end(commit=True, timeout=self.timeout_seconds)
            _require_commit(psql, rc)
        finally:
            psql.close()
        ended = psql.exited_at or time.monotonic()
        return SwapResult(
            seconds=ended - started,
            lock_seconds=max(0.0, ended - psql.markers.get(MARK_LOCKED, started)),
            lock_tries=_lock_tries(psql),
            views_recreated=_views_recreated(psql),
        )

    def outside_dependents(self, schema: str) -> list[tuple[str, str]]:
        """Objects outside `schema` that depend on objects in it (pg_depend: foreign keys,
        functions, defaults, triggers, policies, types over its tables, types or functions)
        and that the swap does not recreate, as (their schema, a description): a rename
        would carry them along to the kept schema and dropping it would drop them. Views and
        materialized views over it are recreated by the swap (`set_aside_views_sql`) and
        not listed, unless one cannot be (`restore_outside_dependents_sql`). The service's
        own tables (moved back by the swap) are left out."""
        conn = self._connect()
        try:
            with conn.cursor() as cur:
                # pg_describe_object qualifies every name not on the search path: all of them
                cur.execute("SET search_path = pg_catalog")
                cur.execute(restore_outside_dependents_sql(schema))
                return [(str(row[0]), str(row[1])) for row in cur.fetchall()]
        finally:
            conn.close()

    def drop_schema(self, name: str) -> list[tuple[str, str]]:
        """Drop a kept schema with RESTRICT semantics: its own objects go, but if anything
        outside it depends on them (`outside_dependents`) nothing is dropped and those are
        returned. One transaction: its tables are locked first (ACCESS EXCLUSIVE: nobody uses
        a kept schema), so no view or foreign key over them can appear between the check and
        the drop."""
        _checked(name)
        conn = self._connect()
        try:
            with conn, conn.cursor() as cur:
                cur.execute("SET LOCAL lock_timeout = '10s'")
                cur.execute(
                    "SELECT c.relname FROM pg_catalog.pg_class c "
                    "JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace "
                    "WHERE n.nspname = %s AND c.relkind IN ('r', 'p', 'v', 'm', 'f') "
                    "ORDER BY c.oid",
                    (name,),
                )
                for (table,) in cur.fetchall():
                    cur.execute(
                        sql.SQL("LOCK TABLE {} IN ACCESS EXCLUSIVE MODE").format(
                            sql.Identifier(name, table)
                        )
                    )
                cur.execute("SET LOCAL search_path = pg_catalog")
                cur.execute(OUTSIDE_DEPENDENTS_SQL, {"schema": name, "owned": []})
                found = [(str(row[0]), str(row[1])) for row in cur.fetchall()]
                if found:
                    conn.rollback()
                    return found
                cur.execute(
                    sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(name))
                )
            return []
        finally:
            conn.close()

    def count_rows(self, archive: BinaryIO) -> dict[str, int]:
        tools = self._tools()
        run = _Run.with_deadline(self.timeout_seconds)
        try:
            env = _offline_env()
            proc = _start_pg_restore(tools, ["--data-only"], env, run, archive, True)
            filt = SqlFilter(None, "")
            _pump(proc, filt)
            _read_to_the_end(
                run,
                proc.wait(),
                out_of_time=lambda: RestoreInterrupted(
                    "reading the archive did not finish in time"
                ),
            )
            filt.close()
            return dict(filt.counts)
        finally:
            run.close()

    def needed_extensions(self, archive: BinaryIO) -> list[tuple[str, str]]:
        text = _schema_sql(self._tools(), archive, self.timeout_seconds)
        referenced = set(_QUALIFIED.findall(text))
        pairs = {(_unq(a, b), _unq(c, d)) for a, b, c, d in referenced}
        conn = self._connect()
        try:
            with conn.cursor() as cur:
                cur.execute(
                    """
                    SELECT e.extname, n.nspname, coalesce(t.typname, p.proname, oc.opcname)
                    FROM pg_extension e
                    JOIN pg_namespace n ON n.oid = e.extnamespace
                    JOIN pg_depend d ON d.refclassid = 'pg_extension'::regclass
                        AND d.refobjid = e.oid AND d.deptype = 'e'
                    LEFT JOIN pg_type t ON d.classid = 'pg_type'::regclass AND t.oid = d.objid
                    LEFT JOIN pg_proc p ON d.classid = 'pg_proc'::regclass AND p.oid = d.objid
                    LEFT JOIN pg_opclass oc ON d.classid = 'pg_opclass'::regclass
                        AND oc.oid = d.objid
                    WHERE e.extname <> 'plpgsql'
                    """
                )
                members = cur.fetchall()
        finally:
            conn.close()
        needed = sorted({(ext, ns) for ext, ns, member in members if (ns, member) in pairs})
        return needed

    def limited(self, seconds: float) -> SchemaSwapper:
        """This swapper with its time limit cut to `seconds`: each phase of a restore job gets
        what is left of the job's one deadline (pg_restore and psql are killed at it, nothing
        commits)."""
        return replace(self, timeout_seconds=min(self.timeout_seconds, max(1.0, seconds)))


_QUALIFIED = re.compile(
    r'(?:"((?:[^"]|"")+)"|\b([A-Za-z_][A-Za-z0-9_$]*))\.(?:"((?:[^"]|"")+)"|([A-Za-z_][A-Za-z0-9_$]*))'
)


def _unq(quoted: str, plain: str) -> str:
    return quoted.replace('""', '"') if quoted else plain


def _schema_sql(tools: PgTools, archive: BinaryIO, timeout: float) -> str:
    """The archive's schema-only SQL as text (pg_restore reads only the table of contents)."""
    run = _Run.with_deadline(timeout)
    try:
        env = _offline_env()
        proc = _start_pg_restore(tools, ["--schema-only"], env, run, archive, False)
        chunks: list[bytes] = []
        size = 0
        stdout = proc.stdout
        assert stdout is not None
        while chunk := stdout.read1(READ_BUFFER):  # type: ignore[attr-defined]
            size += len(chunk)
            if size <= SCHEMA_SQL_LIMIT:
                chunks.append(chunk)
        _read_to_the_end(run, proc.wait(), what="the backup's table of contents")
        return b"".join(chunks).decode("utf-8", "replace")
    finally:
        run.close()


# --- the verification server --------------------------------------------------------------------


def same_server(a: str, b: str) -> bool:
    """Whether two libpq URLs name one server (host and port), whatever the database."""

    def where(url: str) -> tuple[str, str]:
        params = psycopg2.extensions.parse_dsn(url)
        host = params.get("host") or params.get("hostaddr") or "localhost"
        if host in ("127.0.0.1", "::1", "localhost") or host.startswith("/"):
            host = "localhost"
        return host, str(params.get("port") or "5432")

    try:
        return where(a) == where(b)
    except psycopg2.ProgrammingError:
        return False


@dataclass
class VerificationServer:
    """The `Verifier` port: each drill restores into a scratch database created and dropped on
    the verification server (`VERIFY_DATABASE_URL`), named `verify_<server epoch>_<random>`.

    A driver that dies mid-drill (SIGKILL included) cannot drop it, so a `Guardian` started
    before the CREATE DATABASE drops it as soon as the driver is gone; a scratch database that
    survived even that (the whole machine went) is dropped by a later drill once it is older
    than a drill can run and nobody is connected to it."""

    database_url: str
    tools: PgTools
    timeout_seconds: float = 840
    connect_timeout: int = 10

    def _admin(self) -> Any:
        try:
            conn = psycopg2.connect(
                self.database_url,
                connect_timeout=self.connect_timeout,
                application_name=VERIFY_APPLICATION_NAME,
            )
        except psycopg2.Error:
            raise VerificationNotConfigured(
                "the verification database (VERIFY_DATABASE_URL) cannot be reached"
            ) from None
        conn.autocommit = True
        return conn

    def _scratch_url(self, name: str) -> str:
        params = psycopg2.extensions.parse_dsn(self.database_url)
        params["dbname"] = name
        return str(psycopg2.extensions.make_dsn(**params))

    def _env(self) -> dict[str, str]:
        env = libpq_environment(self.database_url)
        env["PGAPPNAME"] = VERIFY_APPLICATION_NAME
        return env

    def _drop_leftovers(self, cur: Any, now: int) -> None:
        """Scratch databases of drills whose driver and guardian both died, once older than a
        drill can last and with nobody connected."""
        cur.execute(
            "SELECT d.datname FROM pg_catalog.pg_database d WHERE d.datname ~ %s "
            "AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_stat_activity a "
            "WHERE a.datname = d.datname)",
            (f"^{SCRATCH_NAME.pattern}$",),
        )
        for (name,) in cur.fetchall():
            match = SCRATCH_NAME.fullmatch(name)
            if match and int(match.group(1)) < now - self.timeout_seconds - LEFTOVER_MARGIN_SECONDS:
                try:
                    cur.execute(sql.SQL("DROP DATABASE IF EXISTS {}").format(sql.Identifier(name)))
                except psycopg2.Error:
                    continue  # someone connected meanwhile: next time
                logger.warning("dropped a scratch database a dead drill left behind")

    def drill(
        self,
        schema: str,
        archive: BinaryIO,
        verified: Callable[[], bool],
        extensions: list[tuple[str, str]],
    ) -> DrillResult:
        _checked(schema)
        started = time.monotonic()
        admin = self._admin()
        try:
            with admin.cursor() as cur:
                cur.execute(
                    "SELECT current_setting('server_version_num')::int, "
                    "extract(epoch FROM clock_timestamp())::bigint"
                )
                server_num, now = (int(v) for v in cur.fetchone())
                self._drop_leftovers(cur, now)
            name = f"verify_{now}_{uuid.uuid4().hex[:8]}"
            guardian = Guardian(
                [
                    self.tools.path("psql"),
                    "-X",
                    "-q",
                    "-c",
                    f"DROP DATABASE IF EXISTS {ident(name)} WITH (FORCE)",
                ],
                self._env(),
            )
            dropped = False
            try:
                with admin.cursor() as cur:
                    cur.execute(
                        sql.SQL("CREATE DATABASE {} TEMPLATE template0").format(
                            sql.Identifier(name)
                        )
                    )
                try:
                    return self._drill(
                        schema, archive, verified, extensions, name, server_num, started
                    )
                finally:
                    with admin.cursor() as cur:
                        cur.execute(
                            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(
                                sql.Identifier(name)
                            )
                        )
                    dropped = True
            finally:
                if dropped:
                    guardian.disarm()
                else:
                    guardian.fire(timeout=30)
        finally:
            admin.close()

    def _drill(
        self,
        schema: str,
        archive: BinaryIO,
        verified: Callable[[], bool],
        extensions: list[tuple[str, str]],
        name: str,
        server_num: int,
        started: float,
    ) -> DrillResult:
        url = self._scratch_url(name)
        created = []
        with (
            psycopg2.connect(url, connect_timeout=self.connect_timeout) as conn,
            conn.cursor() as cur,
        ):
            for extension, ext_schema in extensions:
                try:
                    cur.execute(
                        sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(ext_schema))
                    )
                    cur.execute(
                        sql.SQL("CREATE EXTENSION IF NOT EXISTS {} WITH SCHEMA {} CASCADE").format(
                            sql.Identifier(extension), sql.Identifier(ext_schema)
                        )
                    )
                except psycopg2.Error:
                    raise VerificationFailed(
                        f"the backup needs the extension {extension}, which the verification "
                        "server cannot create"
                    ) from None
                created.append(extension)
        conn.close()
        loader = SchemaSwapper(url, self.tools, timeout_seconds=self.timeout_seconds)
        env = libpq_environment(url)
        env["PGAPPNAME"] = VERIFY_APPLICATION_NAME
        filt = loader._load_whole(
            archive,
            lambda sink: SqlFilter(
                sink,
                schema,
                drop_transaction_timeout=server_num // 10000 < 17,
                drop_foreign_fks=True,
                drop_column_options=True,
            ),
            drain=True,
            verified=verified,
            env=env,
        )
        restored: dict[str, int] = {}
        with (
            psycopg2.connect(url, connect_timeout=self.connect_timeout) as conn,
            conn.cursor() as cur,
        ):
            for table in sorted(filt.counts):
                cur.execute(
                    sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(schema, table))
                )
                restored[table] = int(cur.fetchone()[0])
        conn.close()
        mismatches = {
            t: {"archive": filt.counts[t], "restored": restored.get(t)}
            for t in filt.counts
            if restored.get(t) != filt.counts[t]
        }
        details: dict[str, Any] = {
            "tables": len(filt.counts),
            "rows": sum(filt.counts.values()),
            "table_counts": dict(sorted(filt.counts.items())),
            "mismatches": mismatches,
            "extensions": created,
            "skipped_foreign_keys": filt.skipped_foreign_keys,
            "skipped_column_options": filt.skipped_column_options,
            "server_version_num": server_num,
            "seconds": round(time.monotonic() - started, 3),
        }
        return DrillResult(passed=not mismatches, details=details)
