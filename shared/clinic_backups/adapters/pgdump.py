"""The dump pipeline: pg_dump → archive check → sha256 → (the upload, given by the caller).

Each stage is a readable stream wrapping the one before, so nothing is ever written to disk,
memory stays flat whatever the clinic's size, and later stages (encryption, restore's
streaming read) slot in between. A stage raises a `BackupRunError` *before* the end of the
stream when anything is wrong, so the upload consuming the stream never completes and the
storage adapter aborts it: no object is left behind.

- `DumpProcess`: pg_dump's stdout. The end of the stream is only reported after pg_dump exited
  0; a non-zero exit or the timeout raises instead. The password travels in the environment,
  never in argv; stderr is captured (bounded) and summarised without secrets.
- `ArchiveCheck`: the `PGDMP` header, a minimum size, and the archive's table of contents read
  by `pg_restore --list` from a tee of the first bytes: it must name only the clinic's schema
  and none of the tables the functions own.
- `HashingReader`: sha256 and size of exactly the bytes the upload receives.
"""

from __future__ import annotations

import collections
import io
import os
import re
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from functools import cached_property
from pathlib import Path
from typing import BinaryIO

import psycopg2
import psycopg2.extensions

from clinic_backups.adapters.age import EncryptStage
from clinic_backups.adapters.database import translate_connect_error
from clinic_backups.adapters.processes import describe_exit, kill_group, reap, spawn, widen_pipe
from clinic_backups.domain.errors import (
    ArchiveInvalid,
    ConfigurationError,
    DumpFailed,
    DumpTimeout,
    ForeignObjectsInArchive,
    ServerVersionUnsupported,
)
from clinic_backups.domain.models import DumpResult
from clinic_backups.domain.names import OWNED_TABLES, is_valid_schema_name
from clinic_backups.domain.streams import HashingReader
from clinic_backups.observability import logger

ARCHIVE_MAGIC = b"PGDMP"
# A custom-format header plus a TOC with at least the schema entry is well above this.
MIN_ARCHIVE_BYTES = 64
STDERR_LINES_KEPT = 40
TOC_OUTPUT_LIMIT = 32 * 1024 * 1024
READ_BUFFER = 1024 * 1024
# How often a running dump looks whether its job was cancelled.
STOP_POLL_SECONDS = 0.2

# libpq connection parameters and the environment variables libpq reads for them: the whole
# connection goes to pg_dump through its environment, so argv (visible in `ps`) holds none.
_LIBPQ_ENV = {
    "host": "PGHOST",
    "hostaddr": "PGHOSTADDR",
    "port": "PGPORT",
    "dbname": "PGDATABASE",
    "user": "PGUSER",
    "password": "PGPASSWORD",
    "passfile": "PGPASSFILE",
    "options": "PGOPTIONS",
    "application_name": "PGAPPNAME",
    "sslmode": "PGSSLMODE",
    "sslrootcert": "PGSSLROOTCERT",
    "sslcert": "PGSSLCERT",
    "sslkey": "PGSSLKEY",
    "sslcrl": "PGSSLCRL",
    "sslnegotiation": "PGSSLNEGOTIATION",
    "requiressl": "PGREQUIRESSL",
    "connect_timeout": "PGCONNECT_TIMEOUT",
    "target_session_attrs": "PGTARGETSESSIONATTRS",
    "gssencmode": "PGGSSENCMODE",
    "channel_binding": "PGCHANNELBINDING",
    "krbsrvname": "PGKRBSRVNAME",
    "service": "PGSERVICE",
    "load_balance_hosts": "PGLOADBALANCEHOSTS",
}

_SECRETISH = re.compile(r"(postgres(?:ql)?://\S+|password\s*=\s*\S+)", re.IGNORECASE)


def redact(text: str) -> str:
    return _SECRETISH.sub("[redacted]", text)


def libpq_environment(database_url: str, *, options: str | None = None) -> dict[str, str]:
    """A clean environment for a libpq client: PATH/locale plus the PG* variables.

    Inherited PG* variables are dropped so nothing from the host leaks into the connection.
    """
    try:
        params = psycopg2.extensions.parse_dsn(database_url)
    except psycopg2.ProgrammingError:
        raise ConfigurationError("DATABASE_URL is not a valid connection string") from None
    env = {k: v for k, v in os.environ.items() if k in ("PATH", "LANG", "LC_ALL", "TZ", "HOME")}
    for name, value in params.items():
        variable = _LIBPQ_ENV.get(name)
        if variable is None:
            raise ConfigurationError(
                f"DATABASE_URL parameter {name!r} is not supported for pg_dump"
            )
        env[variable] = value
    if options:
        env["PGOPTIONS"] = f"{env.get('PGOPTIONS', '')} {options}".strip()
    env.setdefault("PGAPPNAME", "clinic-backups")
    env.setdefault("PGCONNECT_TIMEOUT", "10")
    return env


@dataclass(frozen=True)
class ServerInfo:
    version_num: int
    version: str
    planner_setting: str

    @property
    def major(self) -> int:
        return self.version_num // 10000


class PgTools:
    """pg_dump and pg_restore from the bundled layer (or any directory holding them)."""

    def __init__(self, bin_dir: str | os.PathLike[str]):
        self.bin_dir = Path(bin_dir)

    def path(self, name: str) -> str:
        candidate = self.bin_dir / name
        if not candidate.is_file():
            raise ConfigurationError(f"{name} not found in PG_BIN_DIR")
        return str(candidate)

    @cached_property
    def version(self) -> str:
        try:
            proc = spawn([self.path("pg_dump"), "--version"], dict(os.environ))
        except OSError:
            raise ConfigurationError("pg_dump --version failed") from None
        try:
            raw, _ = proc.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            raise ConfigurationError("pg_dump --version did not answer") from None
        finally:
            reap(proc)
        if proc.returncode != 0:
            raise ConfigurationError(f"pg_dump --version failed ({describe_exit(proc.returncode)})")
        out = raw.decode("utf-8", "replace")
        match = re.search(r"(\d+)(?:\.(\d+))?", out)
        if not match:
            raise ConfigurationError("could not read the pg_dump version")
        return match.group(0)

    @property
    def major(self) -> int:
        return int(self.version.split(".")[0])


class DumpProcess(io.RawIOBase):
    """A child process's stdout as a stream that ends only on a clean exit."""

    def __init__(
        self,
        argv: list[str],
        env: dict[str, str],
        timeout: float,
        label: str = "pg_dump",
        stop: threading.Event | None = None,
    ):
        super().__init__()
        self.label = label
        self._proc = spawn(argv, env)
        widen_pipe(self._proc.stdout)
        self._stderr: collections.deque[str] = collections.deque(maxlen=STDERR_LINES_KEPT)
        self._stderr_thread = threading.Thread(target=self._drain_stderr, daemon=True)
        self._stderr_thread.start()
        self._timed_out = threading.Event()
        self._timer = threading.Timer(timeout, self._on_timeout)
        self._timer.daemon = True
        self._timer.start()
        self._finished = False
        self._ended = threading.Event()
        if stop is not None:
            # A cancelled job (its heartbeat sets `stop`): the tool is killed even while it
            # writes nothing (stuck behind a lock, a slow catalog query), so the read waiting
            # for it ends at once.
            threading.Thread(target=self._watch, args=(stop,), daemon=True).start()

    def _watch(self, stop: threading.Event) -> None:
        while not self._ended.is_set():
            if stop.wait(STOP_POLL_SECONDS):
                if not self._ended.is_set():
                    self.kill()
                return

    def _drain_stderr(self) -> None:
        assert self._proc.stderr is not None
        for raw in self._proc.stderr:
            self._stderr.append(raw.decode("utf-8", "replace").rstrip())

    def _on_timeout(self) -> None:
        self._timed_out.set()
        self.kill()

    def kill(self) -> None:
        kill_group(self._proc)

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        if self._finished:
            return 0
        assert self._proc.stdout is not None
        n = self._proc.stdout.readinto(buffer)  # type: ignore[attr-defined]
        if n:
            return int(n)
        self._finish()
        return 0

    def _finish(self) -> None:
        rc = self._proc.wait()
        self._ended.set()
        self._timer.cancel()
        self._stderr_thread.join(timeout=5)
        for line in self._stderr:
            if line and "error" not in line:
                logger.warning(
                    "pg tool message", extra={"tool": self.label, "tool_message": redact(line)}
                )
        if self._timed_out.is_set():
            raise DumpTimeout(f"{self.label} did not finish within the time limit")
        if rc != 0:
            raise DumpFailed(f"{self.label} failed ({describe_exit(rc)}){self.error_summary()}")
        self._finished = True

    def error_summary(self) -> str:
        """ ": <what the tool said>", or nothing when it said nothing (a killed tool)."""
        lines = list(self._stderr)
        if any("statement timeout" in line for line in lines) and any(
            "LOCK TABLE" in line for line in lines
        ):
            # pg_dump's --lock-wait-timeout surfaces as a statement timeout on its LOCK TABLE.
            return (
                ": could not lock the clinic's tables in time: another session holds an "
                "exclusive lock (a migration?); try again later"
            )
        errors = [line for line in lines if "error" in line.lower()] or lines
        if not errors:
            return ""
        text = errors[0]
        text = re.sub(r"^\S+: (error|fatal): ", "", text, flags=re.IGNORECASE)
        return ": " + redact(text)[:300]

    def close(self) -> None:
        if not self.closed:
            self._ended.set()
            self._timer.cancel()
            reap(self._proc)
        super().close()


# Object types pg_restore --list prints, longest first, so "TABLE DATA" wins over "TABLE".
_TOC_DESCS = sorted(
    [
        "ACCESS METHOD",
        "AGGREGATE",
        "ATTACH",
        "BLOB",
        "BLOB METADATA",
        "BLOBS",
        "CAST",
        "CHECK CONSTRAINT",
        "COLLATION",
        "COMMENT",
        "CONSTRAINT",
        "CONVERSION",
        "DATABASE",
        "DATABASE PROPERTIES",
        "DEFAULT",
        "DEFAULT ACL",
        "DOMAIN",
        "ENCODING",
        "EVENT TRIGGER",
        "EXTENSION",
        "EXTENDED STATISTICS",
        "FK CONSTRAINT",
        "FOREIGN DATA WRAPPER",
        "FOREIGN TABLE",
        "FUNCTION",
        "INDEX",
        "INDEX ATTACH",
        "LARGE OBJECT",
        "LARGE OBJECTS",
        "MATERIALIZED VIEW",
        "MATERIALIZED VIEW DATA",
        "OPERATOR",
        "OPERATOR CLASS",
        "OPERATOR FAMILY",
        "POLICY",
        "PROCEDURAL LANGUAGE",
        "PROCEDURE",
        "PUBLICATION",
        "PUBLICATION TABLE",
        "PUBLICATION TABLES IN SCHEMA",
        "ROW SECURITY",
        "RULE",
        "SCHEMA",
        "SEARCHPATH",
        "SECURITY LABEL",
        "SEQUENCE",
        "SEQUENCE OWNED BY",
        "SEQUENCE SET",
        "SERVER",
        "SHELL TYPE",
        "STATISTICS DATA",
        "STDSTRINGS",
        "SUBSCRIPTION",
        "SUBSCRIPTION TABLE",
        "TABLE",
        "TABLE ATTACH",
        "TABLE DATA",
        "TEXT SEARCH CONFIGURATION",
        "TEXT SEARCH DICTIONARY",
        "TEXT SEARCH PARSER",
        "TEXT SEARCH TEMPLATE",
        "TRANSFORM",
        "TRIGGER",
        "TYPE",
        "USER MAPPING",
        "VIEW",
        "ACL",
        "GRANT",
    ],
    key=len,
    reverse=True,
)
_TOC_LINE = re.compile(r"^\d+; \d+ \d+ (?P<rest>.*)$")


@dataclass(frozen=True)
class TocEntry:
    desc: str
    schema: str
    name: str


def parse_toc(listing: str) -> list[TocEntry]:
    """Entries of `pg_restore --list` output (`id; tableoid oid DESC SCHEMA NAME OWNER`)."""
    entries = []
    for line in listing.splitlines():
        match = _TOC_LINE.match(line)
        if not match:
            continue  # comments and blank lines
        rest = match.group("rest")
        desc = next((d for d in _TOC_DESCS if rest.startswith(d + " ")), rest.split(" ", 1)[0])
        fields = rest[len(desc) + 1 :].split(" ")
        schema = fields[0] if fields else ""
        name = " ".join(fields[1:-1]) if len(fields) > 2 else (fields[1] if len(fields) > 1 else "")
        entries.append(TocEntry(desc=desc, schema=schema, name=name))
    return entries


def toc_violations(entries: list[TocEntry], schema: str) -> list[str]:
    """What in a clinic's archive does not belong there."""
    problems = []
    for entry in entries:
        if entry.schema not in ("-", schema):
            problems.append(f"{entry.desc} in schema {entry.schema}")
        elif (
            entry.schema == schema
            and entry.desc in ("TABLE", "TABLE DATA")
            and (entry.name in OWNED_TABLES)
        ):
            problems.append(f"{entry.desc} {entry.name} (owned by the backup service)")
    return problems


class ArchiveCheck(io.RawIOBase):
    """Checks the archive while it streams through (see the module docstring)."""

    def __init__(self, source: io.RawIOBase, pg_restore: str, schema: str, env: dict[str, str]):
        super().__init__()
        self._source = source
        self._schema = schema
        self._proc = spawn([pg_restore, "--list"], env, stdin=subprocess.PIPE)
        self._listing = bytearray()
        self._reader = threading.Thread(target=self._collect, daemon=True)
        self._reader.start()
        self._feeding = True
        self._head = bytearray()
        self._total = 0
        self.toc_entries = 0

    def _collect(self) -> None:
        assert self._proc.stdout is not None
        while chunk := self._proc.stdout.read(65536):
            if len(self._listing) < TOC_OUTPUT_LIMIT:
                self._listing.extend(chunk)

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        n = self._source.readinto(buffer)
        if not n:
            self._check_end()
            return 0
        chunk = bytes(memoryview(buffer)[:n]) if self._feeding or len(self._head) < 5 else b""
        if len(self._head) < len(ARCHIVE_MAGIC):
            self._head.extend(chunk[: len(ARCHIVE_MAGIC) - len(self._head)])
            if not ARCHIVE_MAGIC.startswith(bytes(self._head)):
                raise ArchiveInvalid("the dump is not a pg_dump custom-format archive")
        if self._feeding:
            self._feed(chunk)
        self._total += n
        return n

    def _feed(self, chunk: bytes) -> None:
        assert self._proc.stdin is not None
        try:
            self._proc.stdin.write(chunk)
            self._proc.stdin.flush()
        except (BrokenPipeError, ValueError, OSError):
            # pg_restore has read the table of contents and exited.
            self._feeding = False

    def _check_end(self) -> None:
        if self._total < MIN_ARCHIVE_BYTES or bytes(self._head) != ARCHIVE_MAGIC:
            raise ArchiveInvalid("the dump is empty or too short to be an archive")
        if self._proc.stdin and not self._proc.stdin.closed:
            try:
                self._proc.stdin.close()
            except OSError:
                pass
        try:
            rc = self._proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.close()
            raise ArchiveInvalid("reading the archive's table of contents timed out") from None
        self._reader.join(timeout=10)
        if rc < 0:
            raise DumpFailed(f"pg_restore --list was {describe_exit(rc)}")
        if rc != 0:
            raise ArchiveInvalid("pg_restore could not read the archive's table of contents")
        entries = parse_toc(self._listing.decode("utf-8", "replace"))
        self.toc_entries = len(entries)
        problems = toc_violations(entries, self._schema)
        if problems:
            raise ForeignObjectsInArchive(
                "the archive contains objects outside the clinic: " + "; ".join(problems[:5])
            )

    def close(self) -> None:
        if not self.closed:
            reap(self._proc)
        super().close()


def probe_server(database_url: str, options: str | None, connect_timeout: int = 10) -> ServerInfo:
    """The server's version and whether the planner setting for pg_dump took effect.

    `source` tells where enable_mergejoin=off came from: `client` (our startup option reached
    the server), `user`/`database` (ALTER ROLE/DATABASE … SET), or nothing (a pooler dropped
    the option and no role setting exists: the many-schemas slowdown applies).
    """
    try:
        conn = psycopg2.connect(
            database_url,
            options=options or "",
            connect_timeout=connect_timeout,
            application_name="clinic-backups-probe",
        )
    except psycopg2.Error as error:
        raise translate_connect_error(error) from None
    try:
        with conn.cursor() as cur:
            cur.execute(
                "SELECT current_setting('server_version_num')::int, "
                "current_setting('server_version'), setting, source "
                "FROM pg_settings WHERE name = 'enable_mergejoin'"
            )
            version_num, version, setting, source = cur.fetchone()
    finally:
        conn.close()
    planner = f"{source}" if setting == "off" else "not_applied"
    return ServerInfo(
        version_num=version_num, version=version.split(" ")[0], planner_setting=planner
    )


@dataclass
class PgDumpRunner:
    """Runs the pipeline for one clinic (implements the `Dumper` port)."""

    database_url: str
    tools: PgTools
    timeout_seconds: float = 840
    compression: str = "zstd:3"
    lock_wait_timeout: str = "60s"
    disable_mergejoin: bool = True
    # A snapshot exported by the restore's swap session while it holds the clinic's locks
    # (`pg_dump --snapshot`): the pre-restore backup sees exactly what the swap replaces.
    snapshot: str | None = None

    def argv(self, schema: str) -> list[str]:
        if not is_valid_schema_name(schema):
            raise ValueError("not a valid clinic schema name")
        # Quoted: an unquoted -n is a pattern and folds case (clinica_norte would also match
        # "Clinica_Norte"); --strict-names fails rather than dump nothing.
        argv = [
            self.tools.path("pg_dump"),
            "--format=custom",
            f"--compress={self.compression}",
            f'--schema="{schema}"',
            "--strict-names",
            "--no-owner",
            "--no-privileges",
            f"--lock-wait-timeout={self.lock_wait_timeout}",
        ]
        argv += [f'--exclude-table="{schema}"."{table}"' for table in OWNED_TABLES]
        if self.snapshot is not None:
            if not re.fullmatch(r"[0-9A-F]{8}-[0-9A-F]{8}-[0-9]{1,10}", self.snapshot):
                raise ValueError("not a snapshot id")
            argv.append(f"--snapshot={self.snapshot}")
        return argv

    def run(
        self,
        schema: str,
        consume: Callable[[BinaryIO], None],
        encrypt_to: list[str] | None = None,
        stop: threading.Event | None = None,
    ) -> DumpResult:
        options = "-c enable_mergejoin=off" if self.disable_mergejoin else None
        server = probe_server(self.database_url, options)
        if server.major > self.tools.major:
            raise ServerVersionUnsupported(
                f"the database runs PostgreSQL {server.major}, newer than the bundled pg_dump "
                f"{self.tools.major}; update the pg_dump layer"
            )
        if self.disable_mergejoin and server.planner_setting == "not_applied":
            logger.warning(
                "enable_mergejoin=off did not reach the server (a pooler may drop startup "
                "options); run ALTER ROLE <dump role> SET enable_mergejoin = off",
            )
        else:
            logger.info(
                "planner setting for pg_dump", extra={"planner_setting": server.planner_setting}
            )

        env = libpq_environment(self.database_url, options=options)
        started = time.monotonic()
        dump = DumpProcess(self.argv(schema), env, self.timeout_seconds, stop=stop)
        check = ArchiveCheck(dump, self.tools.path("pg_restore"), schema, env)
        stages: list[io.RawIOBase] = [dump, check]
        plain: HashingReader | None = None
        try:
            inner: io.RawIOBase = check
            if encrypt_to:
                # dump → check → sha256 of the archive → age → sha256 of what is stored
                plain = HashingReader(inner)
                inner = EncryptStage(plain, encrypt_to)
                stages += [plain, inner]
            hashed = HashingReader(inner)
            stream = io.BufferedReader(hashed, buffer_size=READ_BUFFER)
            consume(stream)
            if not hashed.at_eof:
                # The consumer stopped early: the stored object would not be the whole dump.
                raise ArchiveInvalid("the upload ended before the dump did")
        finally:
            for stage in reversed(stages):
                stage.close()
        return DumpResult(
            size_bytes=hashed.size,
            sha256=hashed.hexdigest(),
            pg_dump_version=self.tools.version,
            server_version=server.version,
            seconds=time.monotonic() - started,
            planner_setting=server.planner_setting,
            toc_entries=check.toc_entries,
            plaintext_sha256=plain.hexdigest() if plain is not None else None,
        )

    def at_snapshot(self, snapshot: str) -> PgDumpRunner:
        return replace(self, snapshot=snapshot)

    def limited(self, seconds: float) -> PgDumpRunner:
        return replace(self, timeout_seconds=min(self.timeout_seconds, max(1.0, seconds)))
