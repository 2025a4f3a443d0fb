"""Databases of many clinic schemas (for the many-schemas and scheduler benchmarks), built fast
and kept between runs.

Each clinic schema holds the fixture host's tenant tables (`bench/fleet_schema.sql`: the
django-tenants fixture's contenttypes, auth and clinic apps: 14 tables with their keys, unique
constraints, foreign keys, indexes, identity sequences and a trigger), and is registered as a
tenant. The DDL is sent once per transaction and run server-side for each of a batch of schemas
(a PL/pgSQL loop with the search_path set to each), so a schema costs no client round trips.
A database records what it holds in `public.bench_fleet` (version and count); one whose stamp
matches is reused as it is, never rebuilt. A larger fleet starts as a copy of a smaller kept one
(`CREATE DATABASE … TEMPLATE`, a file copy) and only the rest is created.
"""

from __future__ import annotations

import math
import os
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg2
from psycopg2 import sql

from devstack import clinic_data

# Bump when fleet_schema.sql or the naming changes: kept databases are named after it, so an
# older fleet is never mistaken for this one.
FLEET_VERSION = 2
PREFIX = "fleet_"
# Schemas per transaction: each holds ~75 relations' locks until it commits, and the lock table
# (max_locks_per_transaction × max_connections, 6,400 by default) is the whole server's.
BATCH = 5
# Connections creating schemas at once: an index build on PostgreSQL 15 ends with an fsync of
# its file (~30 a schema), so the time is the disk's flush latency, which overlaps across
# sessions (measured here: 257 ms a schema alone, 101 ms with 4 at once).
WORKERS = 4
# Below this a fleet is created rather than copied: the copy's checkpoint (FILE_COPY) costs
# more than a few hundred schemas (measured here: 68 s to copy a 10-schema database while
# another benchmark was writing).
COPY_MIN = 1000
DDL = (Path(__file__).resolve().parent / "fleet_schema.sql").read_text()
TABLES_PER_CLINIC = DDL.count("CREATE TABLE ")

CLONE = """
CREATE OR REPLACE FUNCTION pg_temp.bench_fleet_clone(names text[], ddl text) RETURNS void
LANGUAGE plpgsql AS $fn$
DECLARE
    s text;
BEGIN
    FOREACH s IN ARRAY names LOOP
        EXECUTE format('CREATE SCHEMA %I', s);
        PERFORM set_config('search_path', quote_ident(s), true);
        EXECUTE ddl;
    END LOOP;
    PERFORM set_config('search_path', 'public', true);
END
$fn$
"""


@dataclass
class Fleet:
    url: str
    schemas: list[str]
    reused: bool  # the whole fleet was already there (nothing created)
    note: str  # how it was made: reused / copied from a smaller fleet / created
    seconds: float


def names(count: int) -> list[str]:
    return [f"{PREFIX}{i:05d}" for i in range(count)]


def database_name(db_prefix: str, count: int, kind: str = "fleet") -> str:
    return f"{db_prefix}_{kind}{count}_v{FLEET_VERSION}"


def _dsn(server_url: str, dbname: str) -> str:
    params = psycopg2.extensions.parse_dsn(server_url)
    params["dbname"] = dbname
    return psycopg2.extensions.make_dsn(**params)


def _stamp(url: str) -> int:
    """How many fleet schemas the database says it holds (0: none, or another version)."""
    with psycopg2.connect(url) as conn, conn.cursor() as cur:
        cur.execute(
            "CREATE TABLE IF NOT EXISTS public.bench_fleet ("
            " version integer NOT NULL, clinics integer NOT NULL, built_at timestamptz NOT NULL)"
        )
        cur.execute("SELECT clinics FROM public.bench_fleet WHERE version = %s", (FLEET_VERSION,))
        row = cur.fetchone()
    conn.close()
    return int(row[0]) if row else 0


def _existing(cur: psycopg2.extensions.cursor) -> set[str]:
    cur.execute("SELECT nspname FROM pg_namespace WHERE starts_with(nspname, %s)", (PREFIX,))
    return {r[0] for r in cur.fetchall()}


def _create(url: str, batches: list[list[str]]) -> None:
    conn = psycopg2.connect(url)
    try:
        with conn.cursor() as cur:
            cur.execute(CLONE)
            conn.commit()
            for batch in batches:
                cur.execute("SELECT pg_temp.bench_fleet_clone(%s, %s)", (batch, DDL))
                conn.commit()
    finally:
        conn.close()


def ensure_fleet(url: str, count: int) -> bool:
    """`count` fleet schemas in the database at `url`, registered as tenants; True when the
    stamp said they were all there (nothing created)."""
    if _stamp(url) >= count:
        return True
    wanted = names(count)
    with psycopg2.connect(url) as conn, conn.cursor() as cur:
        clinic_data.ensure_tenants_table(cur)
        missing = [n for n in wanted if n not in _existing(cur)]
    conn.close()
    batches = [missing[start : start + BATCH] for start in range(0, len(missing), BATCH)]
    with ThreadPoolExecutor(WORKERS) as pool:
        list(pool.map(lambda i: _create(url, batches[i::WORKERS]), range(WORKERS)))
    with psycopg2.connect(url) as conn, conn.cursor() as cur:
        cur.execute(
            sql.SQL(
                "INSERT INTO {t} (schema_name, name, is_active) "
                "SELECT s, 'Fleet ' || s, true FROM unnest(%s::text[]) AS s "
                "ON CONFLICT (schema_name) DO NOTHING"
            ).format(t=sql.Identifier(*clinic_data.TENANTS_TABLE)),
            (wanted,),
        )
        cur.execute("DELETE FROM public.bench_fleet")
        cur.execute("INSERT INTO public.bench_fleet VALUES (%s, %s, now())", (FLEET_VERSION, count))
    conn.close()
    # Fresh catalog statistics, as a live database has them (the BRIEF's bad merge-join plan
    # came from stale ones); the vacuum marks the new catalog rows all-visible.
    admin = psycopg2.connect(url)
    admin.autocommit = True
    with admin.cursor() as cur:
        cur.execute(
            "VACUUM ANALYZE pg_catalog.pg_class, pg_catalog.pg_attribute, "
            "pg_catalog.pg_depend, pg_catalog.pg_constraint, pg_catalog.pg_index, "
            "pg_catalog.pg_type, pg_catalog.pg_namespace, pg_catalog.pg_trigger"
        )
    admin.close()
    return False


def fleet_database(
    server_url: str, db_prefix: str, count: int, sizes: list[int], kind: str = "fleet"
) -> Fleet:
    """The kept database of `count` fleet schemas: reused when its stamp matches; else made
    from a copy of a kept fleet (`CREATE DATABASE … TEMPLATE`: this count's, or the largest
    smaller one of `sizes`) plus the missing schemas, or from scratch. `kind` names databases
    that other sections change (the scheduler's adds the backup tables), copied from the
    fleet's."""
    started = time.perf_counter()
    name = database_name(db_prefix, count, kind)
    admin = psycopg2.connect(server_url)
    admin.autocommit = True
    note = ""
    with admin.cursor() as cur:
        cur.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,))
        if cur.fetchone() is None:
            candidates = [count] if kind != "fleet" else []
            candidates += sorted((s for s in sizes if s < count), reverse=True)
            for smaller in (c for c in candidates if c >= COPY_MIN):
                source = database_name(db_prefix, smaller)
                cur.execute("SELECT 1 FROM pg_database WHERE datname = %s", (source,))
                if cur.fetchone() is not None and _stamp(_dsn(server_url, source)) >= smaller:
                    cur.execute(
                        sql.SQL("CREATE DATABASE {} TEMPLATE {} STRATEGY FILE_COPY").format(
                            sql.Identifier(name), sql.Identifier(source)
                        )
                    )
                    note = f"copied from the kept {smaller:,}-schema fleet, "
                    break
            else:
                cur.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    admin.close()
    url = _dsn(server_url, name)
    reused = ensure_fleet(url, count) and not note
    seconds = time.perf_counter() - started
    if reused:
        note = "reused (kept from an earlier run)"
    else:
        note = f"{note or 'created, '}ready in {seconds:.0f} s"
    return Fleet(url=url, schemas=names(count), reused=reused, note=note, seconds=seconds)


def sizes(smoke: bool) -> list[int]:
    """The fleet sizes the many-schemas section measures: 10 and BENCH_FLEET (comma-separated,
    2,000 and 10,000 by default); a smoke run only 10 and 30 (never builds a large fleet)."""
    if smoke:
        return [10, 30]
    wanted = os.environ.get("BENCH_FLEET", "2000,10000")
    return [10, *sorted({int(n) for n in wanted.split(",") if n.strip()} - {10})]


def lambda_memory(needed_mb: float) -> int:
    """A Lambda memory setting with half again the measured need (a bigger catalog, a busier
    clinic), in 64 MB steps, at least the template's 512 MB minimum."""
    return max(512, math.ceil(needed_mb * 1.5 / 64) * 64)


S3_CLIENT_MB = 30  # the S3 upload's extra Python RSS over the null sink (section 2: 101 vs 73 MB)


def many_lines(
    counts: list[int],
    results: dict[tuple[int, bool], dict[str, Any]],
    rows: list[str],
    notes: list[str],
) -> list[str]:
    """The many-schemas section's text: the table, ratios against 10 schemas, pg_dump's memory
    and time per schema count (a line through the two largest fleets) and the worker sized
    from it."""
    small, big = counts[0], counts[-1]
    lines = [
        "One small clinic (500 patients) backed up into a null sink, best of 3 (one run above "
        "2,000 schemas, and there only with the product's enable_mergejoin=off), in a database "
        f"of N clinic schemas shaped as django-tenants makes them ({TABLES_PER_CLINIC} tables "
        "each: the fixture host's contenttypes, auth and clinic apps with their keys, foreign "
        "keys, indexes, sequences and a trigger). Times are from a shared 2-core machine "
        "(indicative; how busy it was: the note above the goals); peak RSS does not depend on "
        "the load.",
        "",
        "| schemas | enable_mergejoin | backup time | pg_dump peak RSS | worker Python peak RSS |",
        "|---|---|---|---|---|",
        *rows,
        "",
        "Fleet databases: " + "; ".join(notes) + ".",
        "",
    ]
    for count in counts[1:]:
        for off in (True, False):
            if (count, off) not in results:
                continue
            r, base = results[(count, off)], results[(small, off)]
            lines.append(
                f"- mergejoin {'off' if off else 'on'}: {count:,} vs {small} schemas → time "
                f"×{r['seconds'] / base['seconds']:.1f}, pg_dump memory "
                f"×{r['children_peak_rss_mb'] / base['children_peak_rss_mb']:.1f}"
            )
    if len(counts) >= 3:
        mid = counts[-2]
        a, b = results[(mid, True)], results[(big, True)]
        per_k_mb = (b["children_peak_rss_mb"] - a["children_peak_rss_mb"]) / (big - mid) * 1000
        per_k_s = (b["seconds"] - a["seconds"]) / (big - mid) * 1000
        base_mb = a["children_peak_rss_mb"] - per_k_mb * mid / 1000
        python_mb = max(results[(c, True)]["python_peak_rss_mb"] for c in counts)
        lines += [
            f"- pg_dump's peak RSS ≈ {base_mb:.0f} MB + {per_k_mb:.1f} MB per 1,000 schemas "
            f"(the line through {mid:,} and {big:,}); the catalog read adds ≈ {per_k_s:.2f} s "
            "per 1,000 schemas to every backup (on this machine).",
            "",
            "| schemas | pg_dump | worker (Python + S3 client + pg_dump) | Lambda memory (×1.5) |",
            "|---|---|---|---|",
        ]
        for n in (2000, 5000, 10000, 20000):
            dump = base_mb + per_k_mb * n / 1000
            worker = python_mb + S3_CLIENT_MB + dump
            lines.append(
                f"| {n:,} | {dump:.0f} MB | {worker:.0f} MB | {lambda_memory(worker)} MB |"
            )
    return lines
