"""Crash safety: a dying process never commits a partial restore.

A restore, an undo, `restore-file` and a verification drill each run in a driver process of its
own (tests/integration/crash_driver.py: the worker's and the CLI's own code), which is SIGKILLed
— or one of its pg tool children is — at points chosen by progress, never by time: psql's
`\\echo` markers, bytes of the archive fed to pg_restore (offsets drawn from a seeded RNG, one
in each slice of the archive), bytes of the pre-restore dump, the COMMIT written. After each
kill, once the job has ended (the driver ends it, or the test does as the sweeper would):

- the clinic is byte for byte as before or exactly restored — table data and sequences,
  columns, constraints, indexes, views, owners and grants — and the job says which;
- no schema or scratch database is left behind but the ones a completed job keeps;
- the clinic's operation lock is free;
- every pg tool child of a killed driver died with it (PR_SET_PDEATHSIG).

Each test prints its points and their outcomes (`pytest -s`).
"""

from __future__ import annotations

import json
import random
import signal
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import psycopg2
import pytest
from clinic_backups.adapters.processes import PIPE_BYTES
from psycopg2 import sql

from devstack import demo
from tests.conftest import with_dbname
from tests.helpers import PLATFORM_IDENTITY, REPO, FixedClock, call, load_event, mint, reset_caches
from tests.integration.conftest import RestoreDatabase
from tests.integration.crash_driver import STEP
from tests.integration.restore_support import (
    backup,
    checksums,
    lock_rows,
    privileges,
    request_restore,
    restore,
    schemas_like,
    structure,
    undo,
)
from tests.integration.test_restore_failures import s3_object
from tests.integration.test_verify import scratch_databases

SEED = 14
BEFORE, AFTER, EITHER = "before", "after", "either"
TOOLS = ("psql", "pg_restore", "pg_dump")
# A clinic of a few MB: ~6 MB of table data, a ~2.5 MB archive.
PATIENTS, NOTE_BYTES = 6000, 300


@dataclass(frozen=True)
class Point:
    """Kill `who` (the driver, or its child of that name) when `when` reaches `value` for the
    `nth` time; `expect` is the outcome it must have (`either` when the COMMIT was on its way)."""

    who: str
    when: str
    value: str | int
    nth: int = 1
    expect: str = BEFORE
    then: str | None = None

    def __str__(self) -> str:
        at = f"{self.value} bytes" if isinstance(self.value, int) else self.value
        then = f" then {self.then}" if self.then else ""
        return f"kill {self.who} at {self.when} {at}{then} (#{self.nth})"


def spread(rng: random.Random, size: int, count: int) -> list[int]:
    """`count` offsets into `size` bytes, one drawn in each equal slice (never the last 10 %:
    a small archive's end may be read in one go)."""
    usable = int(size * 0.9) - STEP
    return [STEP + int(usable * (i + rng.random()) / count) for i in range(count)]


def marker(who: str, name: str, expect: str = BEFORE, nth: int = 1) -> Point:
    return Point(who, "marker", f"cb:{name}", nth, expect)


def ending() -> list[Point]:
    """The points every committing session shares, from the end of its script on: psql
    confirmed every statement (the COMMIT is not written yet), the COMMIT written (it may or
    may not reach psql before it dies), the COMMIT confirmed (psql killed then, before it
    exits: the COMMIT counts)."""
    return [
        marker("driver", "commit"),
        marker("psql", "commit"),
        Point("driver", "sent", "COMMIT;", expect=EITHER),
        marker("driver", "committed", AFTER),
        Point("psql", "sent", "COMMIT;", expect=AFTER, then="cb:committed"),
    ]


@dataclass
class Outcome:
    point: Point
    outcome: str
    status: str
    error_code: str | None
    seconds: float

    def line(self) -> str:
        code = f" {self.error_code}" if self.error_code else ""
        return (
            f"  {self.point!s:<52} -> {self.outcome:<6} ({self.status}{code}, {self.seconds:.1f} s)"
        )


@dataclass
class Log:
    name: str
    outcomes: list[Outcome] = field(default_factory=list)
    started: float = field(default_factory=time.monotonic)

    def add(self, point: Point, outcome: str, status: str, code: str | None, t0: float) -> None:
        assert point.expect in (EITHER, outcome), f"{point}: {outcome}, expected {point.expect}"
        self.outcomes.append(Outcome(point, outcome, status, code, time.monotonic() - t0))

    def print(self) -> None:
        print(
            f"\n{self.name}: {len(self.outcomes)} points, {time.monotonic() - self.started:.0f} s"
        )
        for outcome in self.outcomes:
            print(outcome.line())


# --- the driver ---------------------------------------------------------------------------------


def alive(pid: int) -> bool:
    """Whether a process runs (a zombie waiting for its new parent to reap it is dead)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state not in ("Z", "X")


def run_driver(spec: dict[str, Any], point: Point, tmp_path: Path) -> dict[str, Any]:
    """Run one operation in a driver process until the point; what the driver reported."""
    report = tmp_path / f"report-{uuid.uuid4().hex[:8]}.json"
    kill = {
        "who": point.who,
        "when": point.when,
        "value": point.value,
        "nth": point.nth,
        "then": point.then,
        "report": str(report),
    }
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "tests.integration.crash_driver",
            json.dumps({**spec, "kill": kill}),
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert report.exists(), f"{point}: never reached\n{proc.stdout}\n{proc.stderr[-4000:]}"
    data: dict[str, Any] = json.loads(report.read_text())
    data["rc"], data["stderr"] = proc.returncode, proc.stderr
    if point.who == "driver":
        assert proc.returncode == -signal.SIGKILL, (point, proc.returncode, proc.stderr[-4000:])
        # its pg tool children died with it
        tools = [pid for pid, name in data["children"] if name in TOOLS]
        deadline = time.monotonic() + 10
        while any(alive(pid) for pid in tools) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not any(alive(pid) for pid in tools), (point, data["children"])
    else:
        assert data.get("killed"), f"{point}: no {point.who} to kill: {data}"
        # the driver outlived its tool and ended the job itself: a job returns (0), the CLI
        # exits 0 or reports the failure (1); never an exception escaping
        ended = (0, 1) if spec["op"] == "restore-file" else (0,)
        assert proc.returncode in ended, (point, proc.returncode, proc.stderr[-4000:])
        assert "Traceback" not in proc.stderr, (point, proc.stderr[-4000:])
    return data


def settle(url: str, application: str) -> None:
    """Wait until the sessions of a driver that died are gone (their transactions rolled
    back): the server notices a closed connection by itself."""
    deadline = time.monotonic() + 30
    conn = psycopg2.connect(url)
    conn.autocommit = True  # a fresh pg_stat_activity each time (no `with conn`: a transaction)
    try:
        with conn.cursor() as cur:
            while True:
                cur.execute(
                    "SELECT pid, state, left(query, 100) FROM pg_stat_activity "
                    "WHERE application_name = %s AND datname = current_database() "
                    "AND pid <> pg_backend_pid()",
                    (application,),
                )
                rows = cur.fetchall()
                if not rows:
                    return
                assert time.monotonic() < deadline, f"sessions of a dead driver linger: {rows}"
                time.sleep(0.05)
    finally:
        conn.close()


def sweep_as_the_scheduler(schema: str) -> None:
    """End what the killed driver left running, as the hourly sweeper does once a job is
    older than the worker's time limit (here: two hours later)."""
    from clinic_backups.usecases.sweeper import sweep
    from clinic_backups.wiring.factory import build_services
    from clinic_backups.wiring.settings import SchedulerSettings, get_settings

    svc = build_services(get_settings(SchedulerSettings))
    # The killed driver's lease is dead: stamp it as renewed long ago (the database's clock
    # is what the sweeper reads), rather than wait LOCK_LEASE_SECONDS.
    with svc.records._db.transaction() as cur:  # type: ignore[attr-defined]
        for table in ("backup_operation_lock", "backup_restores"):
            cur.execute(
                sql.SQL(
                    "UPDATE {} SET renewed_at = now() - interval '1 day' WHERE lease_id IS NOT NULL"
                ).format(sql.Identifier(schema, table))
            )
    svc.clock = FixedClock(svc.clock.now() + timedelta(hours=2))
    report = sweep(svc, [schema], orphans=False)
    assert report.errors == 0


# --- the clinic ---------------------------------------------------------------------------------


class Clinic:
    """A clinic with a backup, and what it looks like: data (checksums), shape (columns,
    constraints, indexes, views) and grants."""

    def __init__(self, db: RestoreDatabase, owned_clinic: Any, sqs: Any):
        self.db = db
        self.schema = owned_clinic(patients=PATIENTS, note_bytes=NOTE_BYTES)
        self.backup = backup(self.schema, sqs)
        self.at_backup = checksums(db.admin_url, self.schema)
        self.grants = privileges(db.admin_url, self.schema)
        self.shape = structure(db.admin_url, self.schema)
        self.edits = 0

    def change(self) -> dict[str, Any]:
        """Write something the backup does not have (different each time); the data now."""
        self.edits += 1
        with psycopg2.connect(self.db.as_role(demo.APP_ROLE)) as conn, conn.cursor() as cur:
            cur.execute(
                sql.SQL("UPDATE {} SET phone = %s WHERE id %% 5 = %s").format(
                    sql.Identifier(self.schema, "patients")
                ),
                (f"7{self.edits:08d}", self.edits % 5),
            )
        conn.close()
        return self.data()

    def data(self) -> dict[str, Any]:
        return checksums(self.db.admin_url, self.schema)

    def which(self, before: dict[str, Any], after: dict[str, Any], point: Point) -> str:
        """`before` or `after`: the clinic is exactly one of them, with its shape and grants."""
        now = self.data()
        assert now in (before, after), f"{point}: the clinic is neither as before nor restored"
        assert structure(self.db.admin_url, self.schema) == self.shape, point
        assert privileges(self.db.admin_url, self.schema) == self.grants, point
        return BEFORE if now == before else AFTER

    def job(self, restore_id: str) -> dict[str, Any]:
        with psycopg2.connect(self.db.admin_url) as conn, conn.cursor() as cur:
            cur.execute(
                sql.SQL(
                    "SELECT status, error_code, error, undo_status, undo_error_code, "
                    "undo_error FROM {} WHERE id = %s"
                ).format(sql.Identifier(self.schema, "backup_restores")),
                (restore_id,),
            )
            row = cur.fetchone()
        conn.close()
        keys = ("status", "error_code", "error", "undo_status", "undo_error_code", "undo_error")
        return dict(zip(keys, row, strict=True))

    def kept(self) -> set[str]:
        """The schemas the clinic's jobs keep: the previous data of each completed restore,
        the restored data of each undone one. Nothing else may exist."""
        with psycopg2.connect(self.db.admin_url) as conn, conn.cursor() as cur:
            cur.execute(
                sql.SQL(
                    "SELECT CASE status WHEN 'completed' THEN old_schema ELSE undo_schema END "
                    "FROM {} WHERE kind = 'restore' AND status IN ('completed', 'undone')"
                ).format(sql.Identifier(self.schema, "backup_restores"))
            )
            names = {r[0] for r in cur.fetchall()}
        conn.close()
        return names | {self.schema}

    def assert_clean(self, point: Point) -> None:
        assert set(schemas_like(self.db.admin_url, self.schema)) == self.kept(), point
        assert lock_rows(self.db.admin_url, self.schema) == [], point
        with psycopg2.connect(self.db.admin_url) as conn, conn.cursor() as cur:
            cur.execute(
                sql.SQL("SELECT count(*) FROM {} WHERE status IN ('pending', 'running')").format(
                    sql.Identifier(self.schema, "backup_records")
                )
            )
            assert cur.fetchone()[0] == 0, f"{point}: a backup record is still running"
        conn.close()


def killed_child_is_named(job_error: str | None, point: Point, report: dict[str, Any]) -> None:
    """A tool the driver outlived is reported by its signal's name (and the driver, not the
    sweeper, ended the job)."""
    if point.who != "driver":
        assert job_error and "killed by SIGKILL" in job_error, (
            point,
            job_error,
            report["stderr"][-4000:],
        )


# --- restore ------------------------------------------------------------------------------------


def restore_points(rng: random.Random, size: int) -> list[Point]:
    """Over the job's phases: the pre-restore backup (pg_dump), the dry run (its pg_restore
    and psql: #1), the swap (#2): lock, rename, load, the end of the script, the COMMIT."""
    # pg_dump is done long before its last bytes are read (they wait in the pipe): only the
    # first half of its output is read while it surely runs
    dumped = spread(rng, size // 2, 2)
    # pg_dump writes into a 1 MiB pipe (adapters/processes.PIPE_BYTES): it surely runs only
    # while more than that is unread; on a loaded machine it had finished at half the archive
    # ("no pg_dump to kill"), so its point stays 2 MiB ahead of the end.
    pg_dump_at = min(dumped[1], max(STEP, size - 2 * PIPE_BYTES))
    fed = spread(rng, size, 5)
    return [
        Point("driver", "dumped", dumped[0]),
        Point("pg_dump", "dumped", pg_dump_at),
        Point("driver", "fed", fed[0], nth=1),  # the verification of the stored object
        Point("driver", "fed", 1, nth=2),
        marker("driver", "swapped", nth=1),  # the dry run renamed the live schema
        marker("psql", "loaded", nth=1),
        marker("driver", "locked"),
        marker("driver", "swapped", nth=2),
        Point("driver", "fed", fed[0], nth=3),
        Point("driver", "fed", fed[1], nth=3),
        Point("pg_restore", "fed", fed[2], nth=3),
        Point("psql", "fed", fed[3], nth=3),
        Point("driver", "fed", fed[4], nth=3),
        marker("driver", "loaded", nth=2),
        *ending(),
    ]


def test_a_restore_killed_anywhere_leaves_the_clinic_as_before_or_restored(
    restore_env: RestoreDatabase, owned_clinic, sqs, restore_sqs, tmp_path
):
    clinic = Clinic(restore_env, owned_clinic, sqs)
    points = restore_points(random.Random(SEED), clinic.backup["size_bytes"])
    log = Log(f"restore ({restore_env.server})")
    for point in points:
        t0 = time.monotonic()
        before = clinic.change()
        accepted = request_restore(clinic.schema, clinic.backup["id"])
        assert accepted.status == 202, accepted.body
        job_id = accepted.body["id"]

        report = run_driver(
            {"op": "restore", "schema": clinic.schema, "restore_id": job_id}, point, tmp_path
        )
        settle(restore_env.admin_url, "clinic-backups-restore")
        if clinic.job(job_id)["status"] in ("pending", "running"):
            sweep_as_the_scheduler(clinic.schema)

        job = clinic.job(job_id)
        outcome = clinic.which(before, clinic.at_backup, point)
        assert job["status"] == ("completed" if outcome == AFTER else "failed"), (point, job)
        if job["status"] == "failed":
            killed_child_is_named(job["error"], point, report)
            assert "nothing changed" in job["error"], (point, job)
        clinic.assert_clean(point)
        log.add(point, outcome, job["status"], job["error_code"], t0)
    log.print()
    assert {o.outcome for o in log.outcomes} == {BEFORE, AFTER}


# --- undo ---------------------------------------------------------------------------------------


def undo_points() -> list[Point]:
    """The undo has no archive: its script's markers, from the BEGIN to the COMMIT."""
    return [
        Point("driver", "sent", "BEGIN;"),
        marker("driver", "locked"),
        marker("psql", "locked"),
        marker("driver", "swapped"),
        marker("psql", "swapped"),
        *ending(),
    ]


def test_an_undo_killed_anywhere_leaves_the_clinic_restored_or_undone(
    restore_env: RestoreDatabase, owned_clinic, sqs, restore_sqs, tmp_path
):
    clinic = Clinic(restore_env, owned_clinic, sqs)
    log = Log(f"undo ({restore_env.server})")
    job_id: str | None = None
    undone: dict[str, Any] = {}
    for point in undo_points():
        t0 = time.monotonic()
        if job_id is None:
            # a completed restore to undo; undoing it brings back the data of this moment
            undone = clinic.change()
            done = restore(clinic.schema, clinic.backup["id"], restore_sqs)
            assert done["status"] == "completed", done
            job_id = done["id"]
        before = clinic.change()
        accepted = undo(clinic.schema, job_id)
        assert accepted.status == 202, accepted.body

        report = run_driver(
            {"op": "undo", "schema": clinic.schema, "restore_id": job_id}, point, tmp_path
        )
        settle(restore_env.admin_url, "clinic-backups-restore")
        if clinic.job(job_id)["undo_status"] in ("pending", "running"):
            sweep_as_the_scheduler(clinic.schema)

        job = clinic.job(job_id)
        outcome = clinic.which(before, undone, point)
        if outcome == AFTER:
            assert job["status"] == "undone" and job["undo_status"] is None, (point, job)
            job_id = None
        else:
            assert job["status"] == "completed" and job["undo_status"] == "failed", (point, job)
            killed_child_is_named(job["undo_error"], point, report)
        clinic.assert_clean(point)
        log.add(
            point,
            outcome,
            f"undo {job['undo_status'] or job['status']}",
            job["undo_error_code"],
            t0,
        )
    log.print()
    assert {o.outcome for o in log.outcomes} == {BEFORE, AFTER}


# --- restore-file -------------------------------------------------------------------------------


def file_points(rng: random.Random, size: int) -> list[Point]:
    fed = spread(rng, size, 5)
    return [
        Point("driver", "fed", fed[0]),
        Point("driver", "fed", fed[1]),
        Point("pg_restore", "fed", fed[2]),
        Point("psql", "fed", fed[3]),
        Point("driver", "fed", fed[4]),
        marker("driver", "loaded"),
        *ending(),
    ]


@pytest.fixture
def target_database(restore_db_pg15: RestoreDatabase) -> Any:
    """An empty database of the clinic's own, where `restore-file` loads a download."""
    name = f"cbcrash_{uuid.uuid4().hex[:8]}"
    admin = psycopg2.connect(restore_db_pg15.admin_url)
    admin.autocommit = True
    with admin.cursor() as cur:
        cur.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        yield with_dbname(restore_db_pg15.admin_url, name)
    finally:
        with admin.cursor() as cur:
            cur.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )
        admin.close()


def test_restore_file_killed_anywhere_loads_all_or_nothing(
    restore_env_pg15: RestoreDatabase,
    owned_clinic_pg15,
    sqs,
    s3_server,
    bucket,
    target_database: str,
    tmp_path,
):
    db = restore_env_pg15
    schema = owned_clinic_pg15(patients=PATIENTS, note_bytes=NOTE_BYTES)
    record = backup(schema, sqs)
    data, shape = checksums(db.admin_url, schema), structure(db.admin_url, schema, owned=False)
    # the download, and the key the clinic keeps (here the platform's: it can open it too)
    download = tmp_path / record["file_name"]
    key = s3_object(s3_server, bucket, schema, record["id"])
    download.write_bytes(s3_server.client().get_object(Bucket=bucket, Key=key)["Body"].read())
    identity = tmp_path / "clave.txt"
    identity.write_text(PLATFORM_IDENTITY + "\n")
    argv = ["restore-file", str(download), "--identity", str(identity), "--target", target_database]

    log = Log("restore-file (pg15)")
    for point in file_points(random.Random(SEED), record["size_bytes"]):
        t0 = time.monotonic()
        report = run_driver({"op": "restore-file", "argv": argv}, point, tmp_path)
        settle(target_database, "clinic-backups-restore")

        loaded = schemas_like(target_database, schema)
        if loaded:
            assert loaded == [schema], point
            assert checksums(target_database, schema) == data, point
            assert structure(target_database, schema, owned=False) == shape, point
            outcome = AFTER
            with psycopg2.connect(target_database) as conn, conn.cursor() as cur:
                cur.execute(sql.SQL("DROP SCHEMA {} CASCADE").format(sql.Identifier(schema)))
            conn.close()
        else:
            outcome = BEFORE
            if point.who != "driver":
                assert report["rc"] == 1 and "killed by SIGKILL" in report["stderr"], point
        log.add(point, outcome, "exit " + str(report["rc"]), None, t0)
    log.print()
    assert {o.outcome for o in log.outcomes} == {BEFORE, AFTER}


# --- the verification drill ---------------------------------------------------------------------


def drill_points(rng: random.Random, size: int) -> list[Point]:
    """Reading the archive for its extensions (#1), loading it into the scratch database (#2),
    the end of the script, the COMMIT, and after it (the scratch database committed, not
    yet dropped)."""
    fed = spread(rng, size, 4)
    return [
        Point("driver", "fed", 1, nth=1),
        Point("driver", "fed", fed[0], nth=2),
        Point("driver", "fed", fed[1], nth=2),
        Point("pg_restore", "fed", fed[2], nth=2),
        Point("psql", "fed", fed[3], nth=2),
        marker("driver", "loaded"),
        marker("driver", "commit"),
        marker("psql", "commit"),
        Point("driver", "sent", "COMMIT;"),
        marker("driver", "committed"),
        Point("psql", "sent", "COMMIT;", expect=AFTER, then="cb:committed"),
    ]


def test_a_drill_killed_anywhere_leaves_no_scratch_database(
    restore_env_pg15: RestoreDatabase,
    owned_clinic_pg15,
    sqs,
    pg18_server: str,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path,
):
    monkeypatch.setenv("VERIFY_DATABASE_URL", pg18_server)
    reset_caches()
    clinic = Clinic(restore_env_pg15, owned_clinic_pg15, sqs)
    live = clinic.data()
    log = Log("drill (pg15 clinic, pg18 verification server)")
    for point in drill_points(random.Random(SEED), clinic.backup["size_bytes"]):
        t0 = time.monotonic()
        reply = call(
            "restore_backup",
            load_event(
                "restore_backup/post_verify.json",
                token=mint(clinic.schema),
                backup_id=clinic.backup["id"],
            ),
        )
        assert reply.status == 202, reply.body
        job_id = reply.body["id"]

        report = run_driver(
            {"op": "verify", "schema": clinic.schema, "restore_id": job_id}, point, tmp_path
        )
        # the guardian drops the scratch database of a driver that died
        deadline = time.monotonic() + 30
        while scratch_databases(pg18_server) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert scratch_databases(pg18_server) == [], point
        if clinic.job(job_id)["status"] in ("pending", "running"):
            sweep_as_the_scheduler(clinic.schema)

        job = clinic.job(job_id)
        outcome = AFTER if job["status"] == "completed" else BEFORE
        assert job["status"] in ("completed", "failed"), (point, job)
        if outcome == BEFORE:
            killed_child_is_named(job["error"], point, report)
        assert clinic.which(live, live, point) == BEFORE  # nothing live ever changes
        clinic.assert_clean(point)
        log.add(point, outcome, job["status"], job["error_code"], t0)
    log.print()
    assert {o.outcome for o in log.outcomes} == {BEFORE, AFTER}
