"""How many clinics one scheduler run decides and enqueues: the scheduler over N clinic schemas
with a collecting dispatcher (jobs recorded, not executed).

    python -m bench.scheduler_fleet [--clinics 2000] [--repeat 3]

or `section_scheduler(env, report)` from bench/run.py (2,000 and 10,000 clinics; set
BENCH_SCHEDULER_FLEET to change them). The database is a copy of the kept fleet of that size
(bench/fleet.py) and is kept too. Scenarios, each from a clean state (above 2,000 clinics only
the all-due and nothing-due runs, on clinics migrated once):
- **first run after deploy**: every clinic's tables are created (migrations 1 and 2);
- **all due**: every clinic on the defaults (03:00 Madrid) and the run at 03:05: N slots
  claimed, N backups started (records, locks, jobs), N audit lines — the worst hour;
- **nothing due**: the other 23 hours (and a duplicated event): one fleet read, no writes;
- the same two with the fleet read done one clinic at a time (batch size 1), the design the
  batched UNION ALL read replaced.
Every statement and transaction is counted, so the time can be projected to a database that is
a network round trip away (psycopg2: BEGIN and COMMIT are round trips of their own).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import sys
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg2
from clinic_backups.adapters.age import AgeCipher
from clinic_backups.adapters.keys import PostgresKeys
from clinic_backups.adapters.postgres import Database, PostgresRecords, PostgresTenants
from clinic_backups.adapters.queues import SqsDispatcher
from clinic_backups.adapters.schedules import PostgresSchedules
from clinic_backups.domain.names import OWNED_TABLES
from clinic_backups.domain.ports import SnapshotWindow
from clinic_backups.usecases.context import Services
from clinic_backups.usecases.scheduler import run_scheduler
from psycopg2 import sql

from bench import common, fleet
from devstack import clinic_data

ALL_DUE = datetime(2026, 6, 15, 1, 5, tzinfo=UTC)  # 03:05 in Madrid: every default slot is due
NOTHING_DUE = datetime(2026, 6, 15, 12, 5, tzinfo=UTC)  # 14:05: no slot, yesterday's ran
RTTS_MS = (1, 5)
# Above this many clinics only the all-due and nothing-due runs (see run()).
FULL_MAX = int(os.environ.get("BENCH_SCHEDULER_FULL_MAX", "2000"))


class CountingDatabase(Database):
    """The adapters' Database, counting transactions and statements (round trips)."""

    def __init__(self, url: str):
        super().__init__(url)
        self.transactions = 0
        self.statements = 0

    @contextmanager
    def transaction(self) -> Iterator[Any]:
        with super().transaction() as cur:
            self.transactions += 1
            database = self

            class Counting:
                def execute(self, *args: Any, **kwargs: Any) -> Any:
                    database.statements += 1
                    return cur.execute(*args, **kwargs)

                def __getattr__(self, name: str) -> Any:
                    return getattr(cur, name)

            yield Counting()

    @property
    def round_trips(self) -> int:
        return self.statements + 2 * self.transactions  # BEGIN, the statements, COMMIT

    def reset(self) -> None:
        self.transactions = self.statements = 0


class PerClinicSchedules(PostgresSchedules):
    """The design the batched read replaced: each clinic read in a transaction of its own
    (still one statement for all of a clinic's facts; one query per fact would be worse)."""

    def snapshot(self, schemas: list[str], window: SnapshotWindow) -> dict[str, Any]:
        found: dict[str, Any] = {}
        for schema in schemas:
            found.update(super().snapshot([schema], window))
        return found


class Collect:
    """The product's SQS dispatcher over a client that takes every message and counts its
    calls (SendMessageBatch: up to 10 jobs a call), so the run's SQS round trips are counted."""

    def __init__(self) -> None:
        self.jobs: list[Any] = []
        self.calls = 0
        self.dispatcher = SqsDispatcher("bench-queue", self, restore_queue_url="bench-restores")

    def send_message_batch(self, QueueUrl: str, Entries: list[dict[str, Any]]) -> dict[str, Any]:
        self.calls += 1
        self.jobs += [json.loads(e["MessageBody"]) for e in Entries]
        return {"Successful": [{"Id": e["Id"]} for e in Entries], "Failed": []}

    def send_message(self, QueueUrl: str, MessageBody: str) -> dict[str, Any]:
        self.calls += 1
        self.jobs.append(json.loads(MessageBody))
        return {}


class FixedClock:
    def __init__(self, at: datetime):
        self.at = at

    def now(self) -> datetime:
        return self.at


def services(url: str, at: datetime, batched: bool) -> tuple[Services, CountingDatabase, Collect]:
    db = CountingDatabase(url)
    table = ".".join(clinic_data.TENANTS_TABLE)
    collect = Collect()
    svc = Services(
        records=PostgresRecords(db),
        tenants=PostgresTenants(db, table, "schema_name", "name", "is_active"),
        cipher=AgeCipher(),
        keys=PostgresKeys(db),
        dispatcher=collect.dispatcher,
        clock=FixedClock(at),
        schedules=PostgresSchedules(db) if batched else PerClinicSchedules(db),
    )
    return svc, db, collect


def only_the_fleet(url: str, schemas: list[str]) -> None:
    """The bench database's tenants are exactly the fleet (other sections add clinics)."""
    with psycopg2.connect(url) as conn, conn.cursor() as cur:
        cur.execute(
            sql.SQL("UPDATE {} SET is_active = (schema_name = ANY(%s))").format(
                sql.Identifier(*clinic_data.TENANTS_TABLE)
            ),
            (schemas,),
        )


def drop_owned_tables(url: str, schemas: list[str]) -> None:
    for start in range(0, len(schemas), 25):
        with psycopg2.connect(url) as conn, conn.cursor() as cur:
            cur.execute(
                sql.SQL("DROP TABLE IF EXISTS {}").format(
                    sql.SQL(", ").join(
                        sql.Identifier(s, t)
                        for s in schemas[start : start + 25]
                        for t in OWNED_TABLES
                    )
                )
            )


def clear_runs(url: str, schemas: list[str]) -> None:
    """The steady state before a run: yesterday's slot ran and its backup completed; nothing
    else (no other records, slots, locks or audit)."""
    tables = ("backup_records", "backup_slots", "backup_operation_lock", "backup_audit")
    yesterday = ALL_DUE - timedelta(days=1, minutes=5)
    for start in range(0, len(schemas), 100):
        batch = schemas[start : start + 100]
        with psycopg2.connect(url) as conn, conn.cursor() as cur:
            cur.execute(
                sql.SQL("TRUNCATE {}").format(
                    sql.SQL(", ").join(sql.Identifier(s, t) for s in batch for t in tables)
                )
            )
            for schema in batch:
                backup_id = uuid.uuid4()
                cur.execute(
                    sql.SQL(
                        "INSERT INTO {slots} VALUES (%s, 3, %s, 'enqueued', %s, %s, 1);"
                        "INSERT INTO {records} (id, status, trigger, file_name, storage_key, "
                        "compression, created_by, created_at, started_at, finished_at, size_bytes, "
                        "sha256) VALUES (%s, 'completed', 'scheduled', 'f', %s, 'zstd:3', "
                        "'scheduler', %s, %s, %s, 1000, 'x')"
                    ).format(
                        slots=sql.Identifier(schema, "backup_slots"),
                        records=sql.Identifier(schema, "backup_records"),
                    ),
                    (
                        yesterday.date(),
                        yesterday,
                        backup_id,
                        yesterday,
                        backup_id,
                        f"{schema}/{backup_id}.dump",
                        yesterday,
                        yesterday,
                        yesterday + timedelta(minutes=2),
                    ),
                )


def finish_backups(url: str, schemas: list[str]) -> None:
    """What the worker does after the all-due run: every pending backup completes."""
    for start in range(0, len(schemas), 100):
        with psycopg2.connect(url) as conn, conn.cursor() as cur:
            for schema in schemas[start : start + 100]:
                cur.execute(
                    sql.SQL(
                        "UPDATE {records} SET status = 'completed', started_at = created_at, "
                        "finished_at = created_at + interval '2 minutes', size_bytes = 1000, "
                        "sha256 = 'x' WHERE status = 'pending'; DELETE FROM {lock}"
                    ).format(
                        records=sql.Identifier(schema, "backup_records"),
                        lock=sql.Identifier(schema, "backup_operation_lock"),
                    )
                )


def measure(url: str, at: datetime, batched: bool = True) -> dict[str, Any]:
    svc, db, collect = services(url, at, batched)
    started = time.perf_counter()
    report = run_scheduler(svc, orphans=False)
    seconds = time.perf_counter() - started
    db.close()
    assert report.errors == 0, report
    return {
        "seconds": seconds,
        "enqueued": len(collect.jobs),
        "sqs_calls": collect.calls,
        "clinics": report.clinics,
        "transactions": db.transactions,
        "statements": db.statements,
        "round_trips": db.round_trips,
        "missed": report.missed,
    }


def scenario(url: str, schemas: list[str], name: str, repeat: int) -> dict[str, Any]:
    runs = []
    for _ in range(repeat):
        if name == "first":
            drop_owned_tables(url, schemas)
            runs.append(measure(url, NOTHING_DUE))
        elif name.startswith("all_due"):
            clear_runs(url, schemas)
            runs.append(measure(url, ALL_DUE, batched=not name.endswith("unbatched")))
        else:
            clear_runs(url, schemas)
            measure(url, ALL_DUE)  # the 03:05 run happened, its backups ran; a later hour
            finish_backups(url, schemas)
            runs.append(measure(url, NOTHING_DUE, batched=not name.endswith("unbatched")))
    best = min(runs, key=lambda r: r["seconds"])
    best["median_seconds"] = statistics.median(r["seconds"] for r in runs)
    return best


SCENARIOS = {
    "first": "first run after deploy (migrations 1+2 of every clinic)",
    "all_due": "all due (03:05 Madrid): claim + start + enqueue every clinic",
    "all_due_unbatched": "all due, fleet read one clinic per transaction",
    "none_due": "nothing due (any other hour)",
    "none_due_unbatched": "nothing due, fleet read one clinic per transaction",
}


def run(made: fleet.Fleet, repeat: int, measured: dict[str, Any] | None = None) -> list[str]:
    """Every scenario up to FULL_MAX clinics; above it the first run after deploy (every
    clinic's migrations, dropped again before each run) and the unbatched variants are left
    out: the clinics are migrated once, in parallel, and kept."""
    url, schemas, clinics = made.url, made.schemas, len(made.schemas)
    only_the_fleet(url, schemas)
    chosen = dict(SCENARIOS)
    migrated = ""
    if clinics > FULL_MAX:
        chosen = {k: v for k, v in SCENARIOS.items() if k in ("all_due", "none_due")}
        migrated = premigrate(url, schemas)
    results = {
        name: scenario(url, schemas, name, 1 if name == "first" else repeat) for name in chosen
    }
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    lines = [
        f"The scheduler over {clinics:,} clinic schemas ({fleet.TABLES_PER_CLINIC} tables each, "
        f"django-tenants-shaped; database {made.note}{migrated}), local PostgreSQL (how busy "
        "the machine was: the note above the goals), the SQS dispatcher over a counting client "
        "(jobs recorded, not sent), no "
        f"storage. Best of {repeat} (median in brackets). Round trips = statements + "
        "BEGIN/COMMIT; the last columns add that many network round trips at 1 ms and 5 ms.",
        "",
        "| run | clinics | enqueued | SQS calls | time | statements | transactions | round trips | "
        + " | ".join(f"at {ms} ms RTT" for ms in RTTS_MS)
        + " |",
        "|---|---|---|---|---|---|---|---|" + "---|" * len(RTTS_MS),
    ]
    for name, label in chosen.items():
        r = results[name]
        projected = " | ".join(
            f"{r['seconds'] + r['round_trips'] * ms / 1000:.1f} s" for ms in RTTS_MS
        )
        lines.append(
            f"| {label} | {r['clinics']} | {r['enqueued']} | {r['sqs_calls']} | "
            f"{r['seconds']:.2f} s "
            f"({r['median_seconds']:.2f}) | {r['statements']} | {r['transactions']} | "
            f"{r['round_trips']} | {projected} |"
        )
    due, none = results["all_due"], results["none_due"]
    per_clinic = due["round_trips"] / max(due["enqueued"], 1)
    budget = 900 - 60
    sqs_per_clinic = due["sqs_calls"] / max(due["enqueued"], 1)
    if measured is not None:
        measured["sqs"] = {
            "clinics": clinics,
            "per_clinic": sqs_per_clinic,
            "calls": due["sqs_calls"],
        }
    at5 = due["seconds"] / clinics + (per_clinic + sqs_per_clinic) * 5 / 1000
    lines += [
        "",
        f"- Python peak RSS of the run: {rss:.0f} MB.",
        f"- All due: {due['enqueued'] / due['seconds']:.0f} clinics/s here; "
        f"{per_clinic:.1f} round trips per enqueued clinic. At 5 ms a round trip one 900 s run "
        f"(60 s kept for the sweeper) decides and enqueues ≈ {budget / at5:,.0f} clinics "
        "(the SQS calls counted at 5 ms too).",
        f"- SQS round trips per enqueued clinic at {clinics:,} clinics: {sqs_per_clinic:.2f} "
        f"({due['sqs_calls']:,} SendMessageBatch calls for {due['enqueued']:,} jobs; one "
        "SendMessage per clinic before).",
    ]
    if "none_due_unbatched" in results:
        none1, due1 = results["none_due_unbatched"], results["all_due_unbatched"]
        lines.append(
            f"- Nothing due: the batched fleet read takes {none['round_trips']} round trips for "
            f"{clinics} clinics, one clinic per transaction {none1['round_trips']} "
            f"({none1['seconds'] / none['seconds']:.1f}x the local time; "
            f"{(none1['round_trips'] - none['round_trips']) * 5 / 1000:.0f} s more at 5 ms). "
            f"All due, unbatched: {due1['round_trips']} round trips vs {due['round_trips']}."
        )
    else:
        lines.append(
            f"- Nothing due: the batched fleet read takes {none['round_trips']:,} round trips "
            f"for {clinics:,} clinics. Not run at this size: the first run after deploy (every "
            "clinic's migrations, which each run drops and redoes) and the unbatched variants "
            f"(measured up to {FULL_MAX:,} clinics)."
        )
    return lines


def premigrate(url: str, schemas: list[str]) -> str:
    """Every clinic's backup tables, by the product's migration (`ensure_schemas`), in
    parallel sessions; kept afterwards (a clinic at the latest version costs one catalog
    read)."""
    started = time.perf_counter()

    def part(chunk: list[str]) -> int:
        db = Database(url)
        try:
            check = PostgresRecords(db).ensure_schemas(chunk)
        finally:
            db.close()
        return len(check.failed) + len(check.unavailable)

    with ThreadPoolExecutor(fleet.WORKERS) as pool:
        chunks = [schemas[i :: fleet.WORKERS] for i in range(fleet.WORKERS)]
        bad = sum(pool.map(part, chunks))
    assert bad == 0, f"{bad} clinics not migrated"
    return (
        f"; backup tables migrated or checked in {time.perf_counter() - started:.0f} s "
        f"by {fleet.WORKERS} sessions"
    )


def sizes(smoke: bool) -> list[int]:
    """The scheduler's fleet sizes: BENCH_SCHEDULER_FLEET (comma-separated; 2,000 and 10,000
    by default), 30 for a smoke run."""
    if smoke:
        return [30]
    wanted = os.environ.get("BENCH_SCHEDULER_FLEET", "2000,10000")
    return sorted({int(n) for n in wanted.split(",") if n.strip()})


def section_scheduler(env: Any, report: Any) -> None:
    """For bench/run.py's SECTIONS (`--only scheduler`)."""
    from clinic_backups.observability import logger

    from bench import fleet as fleets

    logger.setLevel("ERROR")  # a line per clinic would measure the terminal
    for clinics in sizes(env.smoke):
        made = fleets.fleet_database(
            env.server_url, env.db_prefix, clinics, [clinics], kind="scheduler"
        )
        lines = run(
            made, repeat=1 if env.smoke or clinics > FULL_MAX else 3, measured=report.measured
        )
        report.add(f"6. Scheduler at fleet size ({clinics:,} clinics)", lines)
        report.commands.append(
            f"python -m bench.run --only scheduler  # BENCH_SCHEDULER_FLEET={clinics}"
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--clinics", type=int, default=2000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args(argv)
    from clinic_backups.observability import logger

    logger.setLevel("ERROR")  # a line per clinic would measure the terminal
    server_url, embedded = common.pg_server_url()
    try:
        made = fleet.fleet_database(
            server_url, common.BENCH_DB, args.clinics, [args.clinics], kind="scheduler"
        )
        print("\n".join(run(made, args.repeat)))
    finally:
        if embedded is not None:
            embedded.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
