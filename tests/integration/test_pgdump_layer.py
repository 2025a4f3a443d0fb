"""The pg_dump Lambda layer as built by ``make -C layers/pgdump layer``, run for real.

The layer's pg_dump 18.6 dumps one schema of the machine's PostgreSQL 15 (127.0.0.1:5432, user
postgres) in custom format with zstd, and pg_restore lists that archive. Every binary runs with a
Lambda-like LD_LIBRARY_PATH that puts the host's library directories first, so these tests also
show the layer's own libraries win (DT_RPATH). The layer checker must pass on the layer and fail
on broken copies of it.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import psycopg2
import pytest

from devstack import paths
from devstack.postgres import EmbeddedPostgres, create_state_dir

# The machine's PostgreSQL 15; override to point at another server.
PG15_URL = os.environ.get("PGDUMP_TEST_SOURCE_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
# As on Lambda (/lib64:/usr/lib64 come before /opt/lib there), host libraries come first.
LAMBDA_LIKE_ENV = {
    "PATH": "/usr/bin:/bin",
    "LD_LIBRARY_PATH": "/lib/x86_64-linux-gnu:/usr/lib/x86_64-linux-gnu:/lib64:/usr/lib64",
}
CHECKER = paths.pgdump_layer_makefile_dir() / "scripts" / "check_layer.py"


@pytest.fixture(scope="session")
def layer_dir() -> Path:
    """The layer, built (or found up to date: a no-op then) by its make target."""
    result = subprocess.run(
        ["make", "-C", str(paths.pgdump_layer_makefile_dir()), "layer"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, f"make layer failed:\n{result.stdout}\n{result.stderr}"
    return paths.pgdump_layer_dir()


@pytest.fixture(scope="session")
def server_bin_dir() -> Path:
    """The PostgreSQL 18 server tree, for the TLS test's embedded server."""
    result = subprocess.run(
        ["make", "-C", str(paths.pgdump_layer_makefile_dir()), "pg-server"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, f"make pg-server failed:\n{result.stdout}\n{result.stderr}"
    return paths.pg_server_bin_dir()


def run_layer_tool(layer: Path, tool: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(layer / "bin" / tool), *args],
        env=LAMBDA_LIKE_ENV,
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )


def run_checker(layer: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(CHECKER), str(layer), *args],
        capture_output=True,
        text=True,
        check=False,
    )


@pytest.fixture
def clinic_schemas() -> Iterator[tuple[str, str]]:
    """A uniquely named clinic schema with data, and a decoy schema; both dropped afterwards."""
    suffix = uuid.uuid4().hex[:10]
    target, decoy = f"it_pgdump_{suffix}", f"it_pgdump_decoy_{suffix}"
    try:
        conn = psycopg2.connect(PG15_URL, connect_timeout=5)
    except psycopg2.OperationalError as exc:
        pytest.fail(f"PostgreSQL 15 at {PG15_URL} is not reachable: {exc}")
    conn.autocommit = True
    try:
        with conn.cursor() as cur:
            for schema in (target, decoy):
                cur.execute(f'CREATE SCHEMA "{schema}"')
                cur.execute(f'CREATE TABLE "{schema}".patients (id serial PRIMARY KEY, name text)')
                cur.execute(
                    f'INSERT INTO "{schema}".patients (name) '
                    "SELECT 'patient ' || g FROM generate_series(1, 500) g"
                )
        yield target, decoy
    finally:
        with conn.cursor() as cur:
            for schema in (target, decoy):
                cur.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        conn.close()


def test_layer_tools_report_postgresql_18_6(layer_dir: Path) -> None:
    for tool in ("pg_dump", "pg_restore", "psql"):
        result = run_layer_tool(layer_dir, tool, "--version")
        assert result.returncode == 0, result.stderr
        assert re.fullmatch(rf"{tool} \(PostgreSQL\) 18\.6\n", result.stdout)


def test_layer_tools_run_with_no_environment_at_all(layer_dir: Path) -> None:
    result = subprocess.run(
        [str(layer_dir / "bin" / "pg_dump"), "--version"], env={}, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    assert "18.6" in result.stdout


def test_zstd_dump_of_one_schema_from_pg15_lists_only_that_schema(
    layer_dir: Path, clinic_schemas: tuple[str, str], tmp_path: Path
) -> None:
    target, decoy = clinic_schemas
    archive = tmp_path / f"{target}.dump"

    # When: pg_dump 18 dumps the clinic schema of the PG 15 server, as the backup function does
    dump = run_layer_tool(
        layer_dir,
        "pg_dump",
        "-Fc", "-Z", "zstd",
        "-n", f'"{target}"', "--strict-names",
        "--no-owner", "--no-privileges",
        "-f", str(archive),
        "--dbname", PG15_URL,
    )  # fmt: skip
    assert dump.returncode == 0, dump.stderr
    assert archive.read_bytes()[:5] == b"PGDMP"

    # Then: the archive's table of contents is zstd-compressed and names only that schema
    listing = run_layer_tool(layer_dir, "pg_restore", "--list", str(archive))
    assert listing.returncode == 0, listing.stderr
    assert re.search(r"^;\s+Compression: zstd", listing.stdout, re.MULTILINE), listing.stdout
    entries = [line for line in listing.stdout.splitlines() if line and not line.startswith(";")]
    assert any(re.search(rf"\bSCHEMA - {target}\b", e) for e in entries), listing.stdout
    assert any(re.search(rf"\bTABLE DATA {target} patients\b", e) for e in entries), listing.stdout
    assert decoy not in listing.stdout
    # "<id>; <catalog oid> <oid> <TYPE…> <schema or -> <name> <owner>": every object with a
    # schema is in ours ("-" marks schema-less objects such as the SCHEMA entry itself).
    for entry in entries:
        assert f" {target} " in entry or re.search(r" - \S+", entry), entry


def test_layer_tools_speak_verified_tls_with_the_bundled_openssl(
    layer_dir: Path, server_bin_dir: Path, tmp_path: Path
) -> None:
    # Given: an embedded PostgreSQL 18 serving TLS with a self-signed certificate
    state = create_state_dir()
    try:
        with EmbeddedPostgres(state / "data", bin_dir=server_bin_dir, ssl=True, fsync=False) as pg:
            url = f"{pg.url}?sslmode=verify-full&sslrootcert={pg.ssl_cert_path}"

            # When: psql and pg_dump from the layer connect with certificate verification
            query = run_layer_tool(
                layer_dir, "psql", url, "-tAc",
                "SELECT ssl, version FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
            )  # fmt: skip
            dump = run_layer_tool(
                layer_dir, "pg_dump", "-Fc", "-Z", "zstd", "-f", str(tmp_path / "tls.dump"),
                "--dbname", url,
            )  # fmt: skip
    finally:
        shutil.rmtree(state, ignore_errors=True)

    # Then: the session is TLS 1.3 and the dump succeeded
    assert query.returncode == 0, query.stderr
    assert query.stdout.strip() == "t|TLSv1.3"
    assert dump.returncode == 0, dump.stderr


def test_strict_names_fails_the_dump_of_a_missing_schema(layer_dir: Path, tmp_path: Path) -> None:
    missing = f"it_pgdump_missing_{uuid.uuid4().hex[:10]}"
    dump = run_layer_tool(
        layer_dir,
        "pg_dump", "-Fc", "-n", f'"{missing}"', "--strict-names",
        "-f", str(tmp_path / "x.dump"), "--dbname", PG15_URL,
    )  # fmt: skip
    assert dump.returncode != 0
    assert "no matching schemas were found" in dump.stderr


def test_checker_passes_on_the_built_layer(layer_dir: Path) -> None:
    result = run_checker(layer_dir)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "OK: every ELF needs GLIBC <= 2.34" in result.stdout
    assert re.search(r"MB unpacked, [\d.]+ MB zipped", result.stdout)


def _break_missing_library(layer: Path) -> str:
    # libkrb5 needs libkeyutils, which is not part of glibc: without it the layer cannot load.
    (layer / "lib" / "libkeyutils.so.1").unlink()
    return "NEEDED libkeyutils.so.1 is neither in lib/ nor glibc core"


def _break_runpath(layer: Path) -> str:
    # The wheel's own libpq carries DT_RUNPATH=/opt/postgresql/lib, which LD_LIBRARY_PATH beats.
    shutil.copyfile(paths.pg_server_dir() / "lib" / "libpq.so.5", layer / "lib" / "libpq.so.5")
    return "lib/libpq.so.5: has DT_RUNPATH"


def _break_foreign_binary(layer: Path) -> str:
    # A host binary linked to a library the layer does not ship (ls needs libselinux.so.1).
    for candidate in (Path("/usr/bin/ls"), Path("/usr/bin/tar"), Path("/usr/bin/gpg")):
        dynamic = subprocess.run(["objdump", "-p", str(candidate)], capture_output=True, text=True)
        needed = re.findall(r"NEEDED\s+(\S+)", dynamic.stdout)
        if any(not n.startswith(("libc.so", "libm.so", "ld-linux")) for n in needed):
            shutil.copyfile(candidate, layer / "bin" / "foreign")
            return "bin/foreign: NEEDED"
    pytest.fail("no host binary with a non-glibc library to test with")


@pytest.mark.parametrize(
    "breakage",
    [_break_missing_library, _break_runpath, _break_foreign_binary],
    ids=lambda f: f.__name__,
)
def test_checker_fails_on_a_broken_layer(
    layer_dir: Path, server_bin_dir: Path, tmp_path: Path, breakage: Callable[[Path], str]
) -> None:
    # Given: a copy of the good layer with one defect (server_bin_dir: _break_runpath takes
    # the wheel's unpatched libpq from the server tree)
    broken = tmp_path / "layer"
    shutil.copytree(layer_dir, broken)
    expected = breakage(broken)

    # When / Then: the checker exits non-zero and names the defect
    result = run_checker(broken)
    assert result.returncode == 1, result.stdout + result.stderr
    assert expected in result.stderr, result.stderr


def test_checker_fails_when_glibc_symbols_are_newer_than_allowed(layer_dir: Path) -> None:
    # Every binary needs GLIBC_2.34; against a 2.17 ceiling (Amazon Linux 2 era) it must fail.
    result = run_checker(layer_dir, "--max-glibc", "2.17")
    assert result.returncode == 1
    assert "bin/pg_dump: needs GLIBC_2.34 from libc.so.6, newer than GLIBC_2.17" in result.stderr
