"""The local stack's state folder: database files, S3 data, secrets, and where the running
stack can be found.

Layout of a state folder (default ``<repo>/.local/``, git-ignored; ``--state-dir`` elsewhere)::

    secrets.json   mode 600: demo JWT secret, SeaweedFS keys, Supabase JWT secret and S3 keys
                   (random once)
    supabase-buckets.json  the Supabase stand-in's bucket settings and project upload limit
                   (devstack.supabase_buckets; edit it, or PUT /storage/v1/bucket/{id})
    stack.json     mode 600: the running stack's URL, pid and children (for devstack.events)
    postgres/      the embedded server's data (data/) and log (data.log)
    s3/            SeaweedFS data, mode 700

Run as root, PostgreSQL runs as the unprivileged user ``devstack.postgres.SERVICE_USER``, so
``postgres/`` is made by ``devstack.postgres.ensure_state_dir`` (mode 700, owned by that user).
A state folder this module creates is mode 700, or 711 as root so that user can reach
``postgres/`` inside it without being able to list the folder. Existing directories are never
made wider: when the database user cannot reach ``<state>/postgres`` (a repo under a private
home), the data goes to a folder of its own under /var/tmp, named after the state folder, and
the stack says so.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import secrets
import stat
from pathlib import Path
from typing import Any

from devstack import paths

__all__ = ["StateDir", "default_state_dir"]

SECRET_NAMES = (
    "jwt_secret",
    "s3_access_key",
    "s3_secret_key",
    "supabase_jwt_secret",
    # The S3 access keys of the Supabase stand-in's S3 endpoint (devstack.supabase_s3).
    "supabase_s3_access_key",
    "supabase_s3_secret_key",
    "backup_db_password",
    # The local platform's age restore identity (every backup is encrypted to its public key).
    "platform_age_identity",
)


def default_state_dir() -> Path:
    return paths.local_dir()


def _new_secret(name: str) -> str:
    if name in ("s3_access_key", "supabase_s3_access_key"):
        return "devstack" + secrets.token_hex(8)
    if name == "platform_age_identity":
        from pyrage import x25519

        return str(x25519.Identity.generate())
    return secrets.token_urlsafe(48)


def _write_private(path: Path, text: str) -> None:
    """Write a file only its owner can read, atomically (temp file + rename)."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w") as fh:
            fh.write(text)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise


class StateDir:
    def __init__(self, root: Path | str | None = None) -> None:
        self.root = Path(root).absolute() if root is not None else default_state_dir()
        self.notes: list[str] = []  # things the stack should tell the user

    # -- folders ---------------------------------------------------------------------------

    def prepare(self) -> StateDir:
        """Create the folder when missing (mode 700; 711 as root, see module docstring)."""
        if not self.root.exists():
            self.root.parent.mkdir(parents=True, exist_ok=True)
            mode = 0o711 if os.geteuid() == 0 else 0o700
            self.root.mkdir(mode=mode)
            self.root.chmod(mode)  # a new folder of ours: set exactly, whatever the umask
        elif not self.root.is_dir():
            raise NotADirectoryError(f"state folder {self.root} is not a directory")
        return self

    def postgres_dir(self) -> Path:
        """A folder the embedded server may keep its data in (see module docstring)."""
        from devstack.postgres import EmbeddedPostgresError, ensure_state_dir

        try:
            return ensure_state_dir(self.root / "postgres")
        except EmbeddedPostgresError as error:
            if os.geteuid() != 0:
                raise
            digest = hashlib.sha256(str(self.root).encode()).hexdigest()[:12]
            fallback = Path("/var/tmp") / f"clinic-backups-state-{digest}"  # noqa: S108
            self.notes.append(f"PostgreSQL data is in {fallback}: {error}")
            return ensure_state_dir(fallback)

    def s3_dir(self) -> Path:
        path = self.root / "s3"
        if not path.exists():
            path.mkdir(mode=0o700)
            path.chmod(0o700)
        return path

    # -- secrets ---------------------------------------------------------------------------

    @property
    def secrets_path(self) -> Path:
        return self.root / "secrets.json"

    def secrets(self) -> dict[str, str]:
        """Random secrets made once per state folder and kept (mode 600), so tokens, S3 keys
        and signed URLs stay valid across restarts."""
        path = self.secrets_path
        data: dict[str, Any] = {}
        if path.exists():
            mode = stat.S_IMODE(path.stat().st_mode)
            if mode & 0o077:
                path.chmod(0o600)  # our own file: narrowing it is always safe
                self.notes.append(f"{path} was mode {mode:o}; made it 600")
            data = json.loads(path.read_text())
        missing = [name for name in SECRET_NAMES if not data.get(name)]
        if missing:
            data.update({name: _new_secret(name) for name in missing})
            _write_private(path, json.dumps(data, indent=2) + "\n")
        return {name: str(data[name]) for name in SECRET_NAMES}

    # -- the running stack ------------------------------------------------------------------

    @property
    def stack_path(self) -> Path:
        return self.root / "stack.json"

    def write_stack(self, info: dict[str, Any]) -> None:
        _write_private(self.stack_path, json.dumps(info, indent=2) + "\n")

    def read_stack(self) -> dict[str, Any] | None:
        try:
            return dict(json.loads(self.stack_path.read_text()))
        except (OSError, ValueError):
            return None

    def clear_stack(self, pid: int) -> None:
        """Remove stack.json if it still describes process `pid`."""
        info = self.read_stack()
        if info is not None and info.get("pid") == pid:
            with contextlib.suppress(OSError):
                self.stack_path.unlink()
