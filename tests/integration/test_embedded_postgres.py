"""The embedded PostgreSQL 18 of the local stack: real initdb, real server, real connections.

Run as root (this machine, CI) the server must run as the unprivileged ``clinicbackups`` user
without widening the permissions of any existing directory; those tests are skipped for a
normal user, who runs the server directly.
"""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import psycopg2
import pytest

from devstack import paths
from devstack.postgres import (
    SERVICE_USER,
    SHARED_INSTALL_ROOT,
    EmbeddedPostgres,
    EmbeddedPostgresError,
    create_state_dir,
    ensure_state_dir,
    find_free_port,
)

IS_ROOT = os.geteuid() == 0
root_only = pytest.mark.skipif(not IS_ROOT, reason="the unprivileged-user path applies to root")


@pytest.fixture(scope="session")
def server_bin_dir() -> Path:
    """The PostgreSQL server tree, built (or found up to date) by its make target."""
    result = subprocess.run(
        ["make", "-C", str(paths.pgdump_layer_makefile_dir()), "pg-server"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, f"make pg-server failed:\n{result.stdout}\n{result.stderr}"
    return paths.pg_server_bin_dir()


@pytest.fixture
def state_dir() -> Iterator[Path]:
    path = create_state_dir()
    yield path
    shutil.rmtree(path, ignore_errors=True)


def _modes_of_parents(*paths_: Path) -> dict[Path, tuple[int, int]]:
    """(mode, owner) of every existing ancestor of the given paths, and of $HOME."""
    watched: set[Path] = {Path.home()}
    for p in paths_:
        watched.update(Path(p).absolute().parents)
    return {p: (p.stat().st_mode, p.stat().st_uid) for p in watched if p.exists()}


def _processes_of(pgid: int) -> list[int]:
    """Live processes in the given process group (the postmaster leads the server's group)."""
    found = []
    for stat_file in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat_file.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        # fields: state, ppid, pgrp, …; a zombie (state Z) holds no resources.
        if int(fields[2]) == pgid and fields[0] != "Z":
            found.append(int(stat_file.parent.name))
    return found


def _processes_mentioning(text: str) -> list[int]:
    found = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            if text.encode() in cmdline.read_bytes():
                found.append(int(cmdline.parent.name))
        except OSError:
            continue
    return found


def test_find_free_port_returns_a_port_that_can_be_bound() -> None:
    port = find_free_port()
    with socket.socket() as s:
        s.bind(("127.0.0.1", port))


def test_server_starts_serves_sql_and_stops_without_leftovers(
    server_bin_dir: Path, state_dir: Path, tmp_path: Path
) -> None:
    # Given: the modes of every directory above the state dir, the pytest tmp dir, the
    # server binaries and $HOME
    before = _modes_of_parents(state_dir / "data", tmp_path / "x", server_bin_dir / "postgres")
    data_dir = state_dir / "data"

    # When: a fresh server is started, used and stopped
    with EmbeddedPostgres(
        data_dir, port=find_free_port(), bin_dir=server_bin_dir, fsync=False
    ) as pg:
        pid = pg.pid
        assert pid is not None
        assert pg.url == f"postgresql://postgres@127.0.0.1:{pg.port}/postgres"
        conn = psycopg2.connect(pg.url)
        try:
            with conn, conn.cursor() as cur:
                cur.execute("CREATE TABLE visits (id serial PRIMARY KEY, note text)")
                cur.execute("INSERT INTO visits (note) VALUES ('check-up'), ('x-ray')")
                cur.execute(
                    "SELECT count(*), current_setting('server_version_num')::int FROM visits"
                )
                count, version = cur.fetchone()
        finally:
            conn.close()
        assert count == 2
        assert version // 10000 == 18
        assert _processes_of(pid), "the server should be running inside its block"

    # Then: no process of that server remains and no existing directory changed mode or owner
    assert not pg.running
    assert _processes_of(pid) == []
    assert _processes_mentioning(str(data_dir)) == []
    assert (
        _modes_of_parents(state_dir / "data", tmp_path / "x", server_bin_dir / "postgres") == before
    )


def test_data_survives_a_restart_without_a_new_initdb(
    server_bin_dir: Path, state_dir: Path
) -> None:
    data_dir = state_dir / "data"
    with EmbeddedPostgres(data_dir, bin_dir=server_bin_dir) as pg:
        conn = psycopg2.connect(pg.url)
        with conn, conn.cursor() as cur:
            cur.execute("CREATE TABLE kept AS SELECT 42 AS answer")
        conn.close()

    # The second start finds PG_VERSION and only starts the server (on another port).
    with EmbeddedPostgres(data_dir, bin_dir=server_bin_dir) as pg:
        conn = psycopg2.connect(**pg.dsn())
        with conn, conn.cursor() as cur:
            cur.execute("SELECT answer FROM kept")
            assert cur.fetchone() == (42,)
        conn.close()


def test_ssl_server_accepts_verified_tls_connections(server_bin_dir: Path, state_dir: Path) -> None:
    with EmbeddedPostgres(state_dir / "data", bin_dir=server_bin_dir, ssl=True, fsync=False) as pg:
        conn = psycopg2.connect(pg.url, sslmode="verify-full", sslrootcert=str(pg.ssl_cert_path))
        with conn, conn.cursor() as cur:
            cur.execute("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()")
            assert cur.fetchone() == (True,)
        conn.close()


def test_stop_is_idempotent_and_safe_before_start(server_bin_dir: Path, state_dir: Path) -> None:
    pg = EmbeddedPostgres(state_dir / "data", bin_dir=server_bin_dir, fsync=False)
    pg.stop()
    pg.start()
    pg.stop()
    pg.stop()
    assert not pg.running


def test_missing_server_tree_is_reported_with_the_make_target(
    state_dir: Path, tmp_path: Path
) -> None:
    with pytest.raises(EmbeddedPostgresError, match="make -C layers/pgdump pg-server"):
        EmbeddedPostgres(state_dir / "data", bin_dir=tmp_path / "nowhere").start()


@root_only
def test_as_root_the_server_runs_as_the_unprivileged_service_user(
    server_bin_dir: Path, state_dir: Path
) -> None:
    with EmbeddedPostgres(state_dir / "data", bin_dir=server_bin_dir, fsync=False) as pg:
        status = Path(f"/proc/{pg.pid}/status").read_text()
        uids = next(line for line in status.splitlines() if line.startswith("Uid:")).split()[1:]
        service_uid = pwd.getpwnam(SERVICE_USER).pw_uid
        assert {int(u) for u in uids} == {service_uid}
        # The state dir belongs to the service user and is private to it.
        assert state_dir.stat().st_uid == service_uid
        assert state_dir.stat().st_mode & 0o077 == 0


@root_only
def test_as_root_a_data_dir_the_service_user_cannot_reach_is_refused_not_opened_up(
    server_bin_dir: Path, tmp_path: Path
) -> None:
    # Given: pytest's tmp dir, private to root (/tmp/pytest-of-root is mode 700)
    before = _modes_of_parents(tmp_path / "data")

    # When / Then: the server refuses, and no directory was chmod-ed to make it work
    with pytest.raises(EmbeddedPostgresError, match="owned by clinicbackups"):
        EmbeddedPostgres(tmp_path / "data", bin_dir=server_bin_dir).start()
    assert _modes_of_parents(tmp_path / "data") == before
    assert not (tmp_path / "data").exists()


@root_only
def test_as_root_ensure_state_dir_refuses_a_path_behind_a_private_parent(tmp_path: Path) -> None:
    before = _modes_of_parents(tmp_path / "state")
    with pytest.raises(EmbeddedPostgresError, match="cannot reach"):
        ensure_state_dir(tmp_path / "state")
    assert not (tmp_path / "state").exists()
    assert _modes_of_parents(tmp_path / "state") == before


@root_only
def test_as_root_an_unreadable_server_tree_is_copied_not_chmodded(
    server_bin_dir: Path, state_dir: Path, tmp_path: Path
) -> None:
    # Given: the server tree inside root's private pytest tmp dir (as if the repo were under
    # /root, mode 700)
    private_tree = tmp_path / "postgresql"
    shutil.copytree(
        server_bin_dir.parent, private_tree, symlinks=True, ignore=shutil.ignore_patterns("include")
    )
    before = _modes_of_parents(private_tree / "bin" / "postgres", state_dir / "data")

    # When: a server is started from it
    with EmbeddedPostgres(state_dir / "data", bin_dir=private_tree / "bin", fsync=False) as pg:
        # Then: it runs from a root-owned copy under /var/tmp, and nothing was opened up
        assert pg.bin_dir is not None
        assert pg.bin_dir.parent.parent == SHARED_INSTALL_ROOT
        copy_root = pg.bin_dir.parent
        assert copy_root.stat().st_uid == 0
        assert copy_root.stat().st_mode & 0o022 == 0
    assert _modes_of_parents(private_tree / "bin" / "postgres", state_dir / "data") == before
