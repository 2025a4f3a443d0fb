"""The product beside the tools a clinic would otherwise use, on the same clinic, in alternating
pairs (`python -m bench.run --only peers`):

- raw `pg_dump -Fc -Z zstd -n <clinic>` as its own process, into a local file;
- `pg_dump -n <clinic> | gzip > file` (the classic cron script; `sh` without pipefail);
- django-dbbackup (PyPI, bench/requirements.txt) with its defaults (custom format, pg_dump's
  gzip, a spooled temp copy of the whole dump) and with `--encrypt` (GPG, Debian's gpg);
- the product: `python -m bench.backup_child` (the worker's code path, age-encrypted) into the
  null sink.

Each run is a process tree of its own, measured from outside: wall time from spawn to exit,
CPU of the whole tree and the bytes it wrote to disk (`wait4`'s rusage: children reaped inside
the tree are included), the tree's peak RSS (the sum over its processes, sampled every 20 ms),
and the archive it stored.
The product's in-process CPU (its pipeline only: no interpreter start-up or imports, as a warm
Lambda pays it) is printed beside its whole-process CPU.

A fault row kills pg_dump a fixed time after it starts inside each tool (2 s on the full clinic)
and reports what each tool said and stored. In smoke mode the clinic is the small one, and a
session holds a lock on one of its tables while the fault row runs, so pg_dump is certainly
still alive (waiting) when it is killed.
"""

from __future__ import annotations

import gzip
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg2
from psycopg2 import sql

from bench import common
from devstack import paths

FAULT_AFTER_FULL = 2.0
FAULT_AFTER_SMOKE = 0.3
PLAIN_DUMP_END = b"PostgreSQL database dump complete"


@dataclass
class Run:
    seconds: float
    cpu: float
    rss_mb: float
    disk_bytes: int
    archive_bytes: int
    returncode: int
    in_process_cpu: float | None = None
    stored: list[Path] = field(default_factory=list)
    killed: bool = False
    detail: dict[str, Any] = field(default_factory=dict)


def _children_of() -> dict[int, list[int]]:
    tree: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # pid (comm) state ppid …: comm may hold spaces, so split after its closing bracket
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        tree.setdefault(ppid, []).append(int(entry.name))
    return tree


def _pg_dumps_under(pid: int) -> list[int]:
    """The pg_dump processes of `pid`'s tree, `pid` itself included."""
    tree, found, stack = _children_of(), [], [pid]
    try:
        if Path(f"/proc/{pid}/comm").read_text().strip() == "pg_dump":
            found.append(pid)
    except OSError:
        pass
    while stack:
        for child in tree.get(stack.pop(), []):
            stack.append(child)
            try:
                if Path(f"/proc/{child}/comm").read_text().strip() == "pg_dump":
                    found.append(child)
            except OSError:
                pass
    return found


def _tree(pid: int) -> list[int]:
    tree, found, stack = _children_of(), [pid], [pid]
    while stack:
        children = tree.get(stack.pop(), [])
        found += children
        stack += children
    return found


def _status_kb(pid: int, field_name: str) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(field_name + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


class Sampler(threading.Thread):
    """Peak RSS of a process tree: the sum of its processes' resident memory, sampled every
    20 ms (`wait4`'s ru_maxrss would carry the forking Python's size across exec)."""

    def __init__(self, pid: int):
        super().__init__(daemon=True)
        self.pid = pid
        self.peak_kb = 0
        self.done = threading.Event()

    def run(self) -> None:
        while not self.done.is_set():
            total = sum(_status_kb(p, "VmRSS") for p in _tree(self.pid))
            self.peak_kb = max(self.peak_kb, total)
            self.done.wait(0.02)


class Killer(threading.Thread):
    """Kill the pg_dump of `pid`'s tree `after` seconds after it appears."""

    def __init__(self, pid: int, after: float):
        super().__init__(daemon=True)
        self.pid, self.after = pid, after
        self.killed = False
        self.done = threading.Event()

    def run(self) -> None:
        while not self.done.is_set():
            victims = _pg_dumps_under(self.pid)
            if victims:
                self.done.wait(self.after)
                for victim in _pg_dumps_under(self.pid):
                    try:
                        os.kill(victim, signal.SIGKILL)
                        self.killed = True
                    except ProcessLookupError:
                        pass
                return
            self.done.wait(0.01)


def measure(
    argv: list[str],
    env: dict[str, str],
    store: Path,
    *,
    stdin: str | None = None,
    kill_after: float | None = None,
) -> Run:
    """Run one tool as its own process tree and measure it from outside."""
    shutil.rmtree(store, ignore_errors=True)
    store.mkdir(parents=True)
    started = time.perf_counter()
    proc = subprocess.Popen(
        argv,
        env=env,
        stdin=subprocess.PIPE if stdin is not None else subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        cwd=common.REPO,
    )
    killer = Killer(proc.pid, kill_after) if kill_after is not None else None
    if killer is not None:
        killer.start()
    sampler = Sampler(proc.pid)
    sampler.start()
    # Feed stdin and drain both pipes in threads, then reap the tree's root with wait4 (its
    # rusage holds every descendant it reaped: pg_dump, gzip, gpg).
    out: dict[str, bytes] = {}

    def pump(name: str, stream: Any) -> None:
        out[name] = stream.read()

    readers = [
        threading.Thread(target=pump, args=(n, s), daemon=True)
        for n, s in (("stdout", proc.stdout), ("stderr", proc.stderr))
    ]
    for reader in readers:
        reader.start()
    if stdin is not None:
        assert proc.stdin is not None
        proc.stdin.write(stdin.encode())
        proc.stdin.close()
    # Peek first (WNOWAIT keeps the exited root a zombie) so the sampler's last look still
    # finds the tree, then reap it.
    os.waitid(os.P_PID, proc.pid, os.WEXITED | os.WNOWAIT)
    seconds = time.perf_counter() - started
    sampler.done.set()
    sampler.join()
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    for reader in readers:
        reader.join()
    if killer is not None:
        killer.done.set()
        killer.join()
    stored = sorted(p for p in store.rglob("*") if p.is_file())
    run = Run(
        seconds=seconds,
        cpu=usage.ru_utime + usage.ru_stime,
        rss_mb=sampler.peak_kb / 1024,
        disk_bytes=usage.ru_oublock * 512,
        archive_bytes=sum(p.stat().st_size for p in stored),
        returncode=proc.returncode,
        stored=stored,
        killed=bool(killer and killer.killed),
    )
    run.detail = {"stdout": out.get("stdout", b""), "stderr": out.get("stderr", b"")}
    return run


@dataclass
class Peers:
    env: Any
    schema: str
    work: Path
    gnupg_home: Path
    recipient: str = ""

    def pg_env(self) -> dict[str, str]:
        conn = psycopg2.extensions.parse_dsn(self.env.url)
        return {
            "PATH": "/usr/bin:/bin",
            "PGHOST": conn.get("host", ""),
            "PGPORT": str(conn.get("port", "5432")),
            "PGUSER": conn.get("user", ""),
            "PGDATABASE": conn["dbname"],
            "PGPASSWORD": conn.get("password", ""),
            "TMPDIR": str(self.work / "tmp"),
        }

    @property
    def pg_dump(self) -> str:
        return f"{self.env.pg_bin}/pg_dump"

    def raw(self, kill_after: float | None = None) -> Run:
        store = self.work / "raw"
        argv = [
            self.pg_dump,
            "-Fc",
            "-Z",
            "zstd",
            f'--schema="{self.schema}"',
            "--strict-names",
            "-f",
            str(store / "clinic.dump"),
        ]
        return measure(argv, self.pg_env(), store, kill_after=kill_after)

    def gzip_script(self, kill_after: float | None = None) -> Run:
        store = self.work / "gzip"
        # The classic cron line: no pipefail, so the pipeline's status is gzip's.
        script = f'"$0" --schema="{self.schema}" | gzip > "$1"'
        argv = ["sh", "-c", script, self.pg_dump, str(store / "clinic.sql.gz")]
        return measure(argv, self.pg_env(), store, kill_after=kill_after)

    def dbbackup(self, encrypt: bool, kill_after: float | None = None) -> Run:
        store = self.work / ("dbbackup-gpg" if encrypt else "dbbackup")
        conn = psycopg2.extensions.parse_dsn(self.env.url)
        env = {
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "bench.peers_settings",
            "PEER_DB_NAME": conn["dbname"],
            "PEER_DB_HOST": conn.get("host", "127.0.0.1"),
            "PEER_DB_PORT": str(conn.get("port", "5432")),
            "PEER_DB_USER": conn.get("user", ""),
            "PEER_DB_PASSWORD": conn.get("password", ""),
            "PEER_STORE": str(store),
            "PEER_PG_DUMP": self.pg_dump,
            "PEER_SCHEMA": self.schema,
            "PEER_TMP": str(self.work / "tmp"),
            "PEER_GPG_RECIPIENT": self.recipient,
            "GNUPGHOME": str(self.gnupg_home),
        }
        argv = [sys.executable, "-m", "django", "dbbackup", "--noinput"]
        if encrypt:
            argv.append("--encrypt")
        return measure(argv, env, store, kill_after=kill_after)

    def dbbackup_defaults(self, kill_after: float | None = None) -> Run:
        return self.dbbackup(False, kill_after)

    def dbbackup_gpg(self, kill_after: float | None = None) -> Run:
        return self.dbbackup(True, kill_after)

    def product(self, sink: str = "null", kill_after: float | None = None) -> Run:
        import json

        store = self.work / "product"
        payload = {"schema": self.schema, "sink": sink, "allow_failure": kill_after is not None}
        env = {**os.environ, **self.env.settings_env(sink), "TMPDIR": str(self.work / "tmp")}
        run = measure(
            [sys.executable, "-m", "bench.backup_child"],
            env,
            store,
            stdin=json.dumps(payload),
            kill_after=kill_after,
        )
        lines = run.detail["stdout"].decode().strip().splitlines()
        if run.returncode != 0 or not lines:
            raise RuntimeError(f"the product's run failed: {run.detail['stderr'][-2000:]!r}")
        result = json.loads(lines[-1])
        run.detail["result"] = result
        if kill_after is None:
            run.archive_bytes = int(result["size_bytes"])
            run.in_process_cpu = float(result["python_cpu_seconds"]) + float(
                result["children_cpu_seconds"]
            )
        return run

    def make_gpg_key(self) -> None:
        shutil.rmtree(self.gnupg_home, ignore_errors=True)
        self.gnupg_home.mkdir(parents=True, mode=0o700)
        self.recipient = "bench-peer@example.invalid"
        subprocess.run(
            [
                "gpg",
                "--homedir",
                str(self.gnupg_home),
                "--batch",
                "--passphrase",
                "",
                "--quick-gen-key",
                self.recipient,
                "default",
                "default",
                "never",
            ],
            check=True,
            capture_output=True,
        )


# --- what a tool left behind after pg_dump was killed ---------------------------------------


def stored_state(peers: Peers, run: Run) -> str:
    if not run.stored:
        return "nothing stored"
    states = []
    for path in run.stored:
        size = f"{path.stat().st_size / 1e6:.1f} MB"
        states.append(f"`{path.name}` {size}: {archive_check(peers, path)}")
    return "; ".join(states)


def archive_check(peers: Peers, path: Path) -> str:
    """Whether a stored file is a whole dump: read it to the end as a restore would."""
    if path.suffix == ".gz":
        try:
            with gzip.open(path, "rb") as stream:
                tail = b""
                while block := stream.read(1 << 20):
                    tail = (tail + block)[-4096:]
        except (OSError, EOFError) as error:
            return f"unreadable gzip ({type(error).__name__})"
        if PLAIN_DUMP_END in tail:
            return "complete SQL dump"
        return "**a valid gzip of a truncated SQL dump** (no end marker)"
    source: Any = None
    if path.suffix == ".gpg":
        source = subprocess.Popen(
            ["gpg", "--homedir", str(peers.gnupg_home), "--batch", "-d", str(path)],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
        )
    restore = subprocess.run(
        [f"{peers.env.pg_bin}/pg_restore", "-f", os.devnull]
        + ([] if source is not None else [str(path)]),
        stdin=source.stdout if source is not None else subprocess.DEVNULL,
        capture_output=True,
        check=False,
    )
    if source is not None:
        source.wait()
    if restore.returncode == 0:
        return "complete archive (pg_restore reads it to the end)"
    return "truncated archive (pg_restore fails)"


def product_fault_state(peers: Peers, run: Run) -> str:
    result = run.detail["result"]
    client = peers.env.s3.client()
    listed = client.list_objects_v2(Bucket=peers.env.bucket, Prefix=f"{peers.schema}/")
    key = result.get("storage_key") or ""
    left = [o["Key"] for o in listed.get("Contents", []) if key and o["Key"].startswith(key)]
    if result["status"] == "completed":
        return f"record `completed`: a whole backup ({len(left)} objects: archive, manifest)"
    stored = "nothing stored" if not left else f"**{len(left)} object(s) left: {left}**"
    return f"record `{result['status']}` (`{result['error_code']}`); {stored}"


class TableLock:
    """Hold ACCESS EXCLUSIVE on one of the clinic's tables (smoke: pg_dump waits, alive)."""

    def __init__(self, url: str, schema: str):
        self.url, self.schema = url, schema
        self.conn: Any = None

    def __enter__(self) -> TableLock:
        self.conn = psycopg2.connect(self.url)
        with self.conn.cursor() as cur:
            cur.execute(
                sql.SQL("LOCK TABLE {} IN ACCESS EXCLUSIVE MODE").format(
                    sql.Identifier(self.schema, "invoice_lines")
                )
            )
        return self

    def __exit__(self, *exc: object) -> None:
        self.conn.rollback()
        self.conn.close()


# --- the section ----------------------------------------------------------------------------


def _mb(n: float) -> str:
    return f"{n / 1e6:.1f} MB"


def section_peers(env: Any, report: Any) -> None:
    size_mb = 2 if env.smoke else int(os.environ.get("BENCH_SIZE_MB", "300"))
    schema = f"bench_{size_mb}mb"
    data = common.ensure_clinic(env.url, schema, patients=max(200, size_mb * 300), note_bytes=1000)
    work = paths.build_dir() / f"bench-peers-{os.getpid()}"
    peers = Peers(env, schema, work, work / "gnupg")
    (work / "tmp").mkdir(parents=True, exist_ok=True)
    pairs = 1 if env.smoke else env.pairs
    try:
        peers.make_gpg_key()
        tools: dict[str, Callable[..., Run]] = {
            "raw `pg_dump -Fc -Z zstd -n` (own process, to a file)": peers.raw,
            "`pg_dump -n` piped to `gzip` (shell pipeline)": peers.gzip_script,
            "django-dbbackup 5.4 defaults": peers.dbbackup_defaults,
            "django-dbbackup 5.4 `--encrypt` (GPG)": peers.dbbackup_gpg,
        }
        lines = [
            f"Clinic `{schema}`: {data / 1e6:.0f} MB of table data. Each tool is a process tree "
            "of its own, measured from outside (`wait4`): wall from spawn to exit, CPU of the "
            "whole tree, the tree's peak RSS (sum of its processes, sampled every 20 ms), bytes "
            "the tree wrote to disk (temp copies included), the archive it stored. The product is the worker's code path "
            "(`bench.backup_child`: dump, archive check, age, sha256, records) into the null "
            f"sink; {pairs} alternating pair(s) with each tool.",
            "",
            "| tool | wall | CPU (process tree) | peak RSS (tree) | written to disk | archive |",
            "|---|---|---|---|---|---|",
        ]
        ratio_lines = [
            "",
            "Ratios product / tool (medians of the per-pair ratios; below 1 the product is "
            "cheaper). *Whole-process* counts the product's interpreter start-up and imports; "
            "*in-process* only its pipeline (what a warm Lambda pays), against the tool's "
            "whole tree:",
            "",
            "| tool | wall | CPU, whole-process | CPU, in-process |",
            "|---|---|---|---|",
        ]
        product_runs: list[Run] = []
        for label, tool in tools.items():
            peer_runs: list[Run] = []
            wall, cpu, cpu_in = [], [], []
            for index in range(pairs):
                order = (0, 1) if index % 2 == 0 else (1, 0)
                got: dict[int, Run] = {}
                for which in order:
                    got[which] = tool() if which == 0 else peers.product()
                peer, mine = got[0], got[1]
                if peer.returncode != 0:
                    raise RuntimeError(f"{label} failed: {peer.detail['stderr'][-2000:]!r}")
                peer_runs.append(peer)
                product_runs.append(mine)
                wall.append(mine.seconds / peer.seconds)
                cpu.append(mine.cpu / peer.cpu)
                cpu_in.append((mine.in_process_cpu or 0.0) / peer.cpu)
            lines.append(_row(label, peer_runs))
            ratio_lines.append(
                f"| {label} | {common.Stats(wall).median:.2f} | {common.Stats(cpu).median:.2f} "
                f"| {common.Stats(cpu_in).median:.2f} |"
            )
        lines.append(_row("**the product** (all its runs above)", product_runs))
        in_cpu = common.Stats([r.in_process_cpu or 0.0 for r in product_runs])
        lines += [
            *ratio_lines,
            "",
            f"The product's in-process CPU: {in_cpu.fmt()}; its whole-process CPU: "
            f"{common.Stats([r.cpu for r in product_runs]).fmt()} (the difference is the "
            "interpreter, imports and settings).",
        ]
        lines += _fault_rows(env, peers, tools)
    finally:
        # gpg started an agent for the key's home: stop it with the home
        subprocess.run(
            ["gpgconf", "--homedir", str(peers.gnupg_home), "--kill", "gpg-agent"],
            check=False,
            capture_output=True,
        )
        shutil.rmtree(work, ignore_errors=True)
    report.add("8. Peers: the same clinic with the tools a clinic would otherwise use", lines)
    report.commands.append(f"python -m bench.run --only peers  # BENCH_SIZE_MB={size_mb}")


def _row(label: str, runs: list[Run]) -> str:
    def med(values: list[float]) -> float:
        return common.Stats(values).median

    return (
        f"| {label} | {med([r.seconds for r in runs]):.2f} s | "
        f"{med([r.cpu for r in runs]):.2f} s | {med([r.rss_mb for r in runs]):.0f} MB | "
        f"{_mb(med([float(r.disk_bytes) for r in runs]))} | "
        f"{_mb(med([float(r.archive_bytes) for r in runs]))} |"
    )


def _fault_rows(env: Any, peers: Peers, tools: dict[str, Any]) -> list[str]:
    after = FAULT_AFTER_SMOKE if env.smoke else FAULT_AFTER_FULL
    lines = [
        "",
        f"**Fault: pg_dump killed (SIGKILL) {after:g} s after it started inside each tool**"
        + (
            " (smoke: a session holds a lock on one of the clinic's tables, so pg_dump is "
            "still waiting when it is killed)."
            if env.smoke
            else "."
        ),
        "",
        "| tool | pg_dump killed | exit status | what it stored |",
        "|---|---|---|---|",
    ]
    rows: list[tuple[str, Run, str]] = []
    for label, tool in tools.items():
        with _maybe_lock(env, peers):
            run = tool(kill_after=after)
        rows.append((label, run, stored_state(peers, run)))
    with _maybe_lock(env, peers):
        mine = peers.product(sink="s3", kill_after=after)
    rows.append(("the product (into the local S3 server)", mine, product_fault_state(peers, mine)))
    for label, run, state in rows:
        lines.append(
            f"| {label} | {'yes' if run.killed else 'no (it had finished)'} | "
            f"{run.returncode} | {state} |"
        )
    status = mine.detail["result"]["status"]
    if not mine.killed:
        lines += [
            "",
            "The product's pg_dump had finished before the kill: the fault was not exercised.",
        ]
        return lines
    if status != "failed" or not rows[-1][2].endswith("nothing stored"):
        # bench-smoke runs in CI: a product that keeps a cut dump as a backup must fail it
        raise RuntimeError(f"the product did not fail cleanly when pg_dump died: {rows[-1][2]}")
    lines += [
        "",
        "The product failed the backup and stored nothing (its job exits 0: the failure is "
        "the record's status, which the API and the alarms read).",
    ]
    return lines


def _maybe_lock(env: Any, peers: Peers) -> Any:
    from contextlib import nullcontext

    return TableLock(env.url, peers.schema) if env.smoke else nullcontext()
