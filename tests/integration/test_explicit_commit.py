"""Commit only by an explicit word: the fact the restore's design rests on, checked on both
servers with the layer's psql, and the layer's session that relies on it (`PsqlSession`)."""

from __future__ import annotations

import subprocess
import uuid

import psycopg2
from psycopg2 import sql

from tests.integration.conftest import RestoreDatabase


def test_psql_commits_at_the_end_of_its_input_unless_the_script_opened_the_transaction(
    restore_db: RestoreDatabase, pg_bin_dir: str
):
    """On both servers, with the layer's psql: `--single-transaction` whose input ends — mid-
    COPY, the last row cut short, as when its driver dies — COMMITs what it has; a script
    that opened its transaction itself and never said COMMIT is rolled back. And the layer's
    session writes that COMMIT only once psql confirmed every statement before it."""
    from clinic_backups.adapters.pgdump import libpq_environment
    from clinic_backups.adapters.pgrestore import BEGIN, PsqlSession

    psql, env = f"{pg_bin_dir}/psql", libpq_environment(restore_db.admin_url)
    table = f"crash_probe_{uuid.uuid4().hex[:8]}"
    copy = f"COPY {table} FROM stdin;\n1\tuno\n2\tdos\n3\tt"  # the input ends mid-row

    def feed(options: list[str], script: str) -> int:
        argv = [psql, "-X", "-q", "-v", "ON_ERROR_STOP=1", *options, "-f", "-"]
        return subprocess.run(argv, input=script.encode(), env=env, capture_output=True).returncode

    def rows() -> list[tuple[int, str]]:
        with psycopg2.connect(restore_db.admin_url) as conn, conn.cursor() as cur:
            cur.execute(
                sql.SQL("SELECT id, note FROM {} ORDER BY id").format(sql.Identifier(table))
            )
            found = cur.fetchall()
            cur.execute(sql.SQL("TRUNCATE {}").format(sql.Identifier(table)))
        conn.close()
        return found

    with psycopg2.connect(restore_db.admin_url) as conn, conn.cursor() as cur:
        cur.execute(sql.SQL("CREATE TABLE {} (id int, note text)").format(sql.Identifier(table)))
    conn.close()
    try:
        # psql's own transaction: the end of input commits, the cut row included
        assert feed(["--single-transaction"], copy) == 0
        assert rows() == [(1, "uno"), (2, "dos"), (3, "t")]
        # the script's own BEGIN, no COMMIT: the end of input is a disconnect, a rollback
        assert feed([], BEGIN + copy) == 0
        assert rows() == []

        # the layer's session: a script whose writer stops before the word commits nothing
        session = PsqlSession(psql, env)
        session.send(BEGIN + copy + "\n\\.\n")
        assert session.finish(timeout=30) == 0 and not session.committed
        session.close()
        assert rows() == []
        # a failing statement: psql stops there, the COMMIT is never written
        session = PsqlSession(psql, env)
        session.send(BEGIN + copy + "\n\\.\nSELECT 1/0;\n")
        assert session.end(commit=True, timeout=30) == 3 and not session.committed
        assert "cb:commit" not in session.markers
        session.close()
        assert rows() == []
        # every statement succeeded: COMMIT, confirmed
        session = PsqlSession(psql, env)
        session.send(BEGIN + copy + "\n\\.\n")
        assert session.end(commit=True, timeout=30) == 0 and session.committed
        session.close()
        assert rows() == [(1, "uno"), (2, "dos"), (3, "t")]
    finally:
        with psycopg2.connect(restore_db.admin_url) as conn, conn.cursor() as cur:
            cur.execute(sql.SQL("DROP TABLE {}").format(sql.Identifier(table)))
        conn.close()
