"""Shared pieces of the benchmarks: services, generated clinics, timing helpers.

Numbers on a shared 2-core machine drift, so every figure that matters is a ratio against a
baseline measured in the same run, in alternating pairs.
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg2
from psycopg2 import sql

from devstack import clinic_data, paths

REPO = paths.repo_root()
DEFAULT_PG = "postgresql://postgres@127.0.0.1:5432/postgres"
BENCH_DB = "clinic_backups_bench"


def pg_server_url() -> tuple[str, Any]:
    """BENCH_PG_URL, else the local server, else an embedded PostgreSQL 18 (returned to stop)."""
    url = os.environ.get("BENCH_PG_URL")
    if url:
        return url, None
    try:
        psycopg2.connect(DEFAULT_PG, connect_timeout=3).close()
        return DEFAULT_PG, None
    except psycopg2.OperationalError:
        pass
    from devstack.postgres import EmbeddedPostgres, create_state_dir

    subprocess.run(
        ["make", "-s", "-C", str(paths.pgdump_layer_makefile_dir()), "pg-server"], check=True
    )
    server = EmbeddedPostgres(create_state_dir() / "data", fsync=False)
    server.start()
    return server.url, server


def database(server_url: str, name: str = BENCH_DB) -> str:
    """A database kept between benchmark runs (generated clinics are reused)."""
    params = psycopg2.extensions.parse_dsn(server_url)
    admin = psycopg2.connect(server_url)
    admin.autocommit = True
    with admin.cursor() as cur:
        cur.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,))
        if cur.fetchone() is None:
            cur.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    admin.close()
    params["dbname"] = name
    url = psycopg2.extensions.make_dsn(**params)
    with psycopg2.connect(url) as conn, conn.cursor() as cur:
        clinic_data.ensure_tenants_table(cur)
    return url


def drop_databases(server_url: str, prefix: str) -> None:
    """Drop every database whose name starts with `prefix` (a smoke run's own)."""
    admin = psycopg2.connect(server_url)
    admin.autocommit = True
    with admin.cursor() as cur:
        cur.execute("SELECT datname FROM pg_database WHERE starts_with(datname, %s)", (prefix,))
        for (name,) in cur.fetchall():
            cur.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )
    admin.close()


def ensure_clinic(url: str, schema: str, patients: int, note_bytes: int) -> int:
    """Create the clinic once; return the size of its table data in bytes."""
    with psycopg2.connect(url) as conn, conn.cursor() as cur:
        clinic_data.create_clinic_schema(cur, schema, patients=patients, note_bytes=note_bytes)
        clinic_data.register_tenant(cur, schema, f"Bench {schema}")
        cur.execute(
            "SELECT coalesce(sum(pg_table_size(c.oid)), 0) FROM pg_class c "
            "JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE n.nspname = %s AND c.relkind = 'r'",
            (schema,),
        )
        return int(cur.fetchone()[0])


@dataclass
class Stats:
    values: list[float]

    @property
    def median(self) -> float:
        return statistics.median(self.values)

    def fmt(self, unit: str = "s", digits: int = 3) -> str:
        return (
            f"median {self.median:.{digits}f}{unit} (min {min(self.values):.{digits}f}, "
            f"max {max(self.values):.{digits}f}, n={len(self.values)})"
        )


def alternate(
    pairs: int, baseline: Callable[[], float], candidate: Callable[[], float]
) -> tuple[Stats, Stats, Stats]:
    """Run baseline and candidate in alternating pairs; the per-pair ratio is what counts."""
    a, b, ratios = [], [], []
    for index in range(pairs):
        if index % 2 == 0:
            x = baseline()
            y = candidate()
        else:
            y = candidate()
            x = baseline()
        a.append(x)
        b.append(y)
        ratios.append(y / x)
    return Stats(a), Stats(b), Stats(ratios)


@contextmanager
def timer() -> Iterator[dict[str, float]]:
    box: dict[str, float] = {}
    start = time.perf_counter()
    try:
        yield box
    finally:
        box["seconds"] = time.perf_counter() - start


def machine() -> dict[str, str]:
    cpu = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    debian = (
        Path("/etc/debian_version").read_text().strip()
        if Path("/etc/debian_version").exists()
        else ""
    )
    return {
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "debian": debian,
        "cpu": cpu,
        "cpus": str(os.cpu_count()),
        "memory": _meminfo(),
    }


def _meminfo() -> str:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal"):
                return f"{int(line.split()[1]) // 1024} MiB"
    except OSError:
        pass
    return ""


def run_child(
    module: str,
    payload: dict[str, Any],
    env: dict[str, str] | None = None,
    python_args: tuple[str, ...] = (),
    python: str | None = None,
) -> dict[str, Any]:
    """Run `python -m <module>` with a JSON payload on stdin; it prints one JSON line last.
    `python`: another interpreter than the bench's (python3.12 for the sam build output)."""
    out = subprocess.run(
        [python or sys.executable, *python_args, "-m", module],
        input=json.dumps(payload),
        text=True,
        capture_output=True,
        env={**os.environ, **(env or {})},
        check=False,
    )
    if out.returncode != 0:
        raise RuntimeError(f"{module} failed: {out.stderr[-2000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def import_profile(
    module: str, payload: dict[str, Any], env: dict[str, str] | None = None, top: int = 12
) -> list[tuple[str, float]]:
    """Run `python -X importtime -m <module>` once; the import time (self, in ms) summed per
    top-level package (`botocore`, `storage3`, `clinic_backups`, …), the `top` largest, and
    the total."""
    out = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", module],
        input=json.dumps(payload),
        text=True,
        capture_output=True,
        env={**os.environ, **(env or {})},
        check=False,
    )
    if out.returncode != 0:
        raise RuntimeError(f"{module} failed: {out.stderr[-2000:]}")
    by_package: dict[str, float] = {}
    for line in out.stderr.splitlines():
        if not line.startswith("import time:") or "cumulative" in line:
            continue
        own, _cumulative, name = line.split("|", 2)
        package = name.strip().split(".")[0]
        by_package[package] = by_package.get(package, 0.0) + int(own.split(":")[1]) / 1000
    rows = sorted(by_package.items(), key=lambda r: -r[1])
    return [*rows[:top], ("(all imports)", sum(by_package.values()))]
