"""Where the repo's local build outputs live, for the local stack and tests.

``make -C layers/pgdump layer``, ``make -C layers/pgdump pg-server`` and ``make lambda-runtime``
write into ``.build/`` at the repo root, ``make build`` into ``.aws-sam/build`` (both ignored
by git); this module is the one place that knows those paths, so the
local stack and the tests never hard-code them. ``devstack`` is installed editable from the repo
(``pip install -e .``), so this file's location is the repo's.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path

__all__ = [
    "build_dir",
    "lambda_runtime_dir",
    "local_dir",
    "pg_server_bin_dir",
    "pg_server_dir",
    "pgdump_layer_bin_dir",
    "pgdump_layer_dir",
    "pgdump_layer_makefile_dir",
    "repo_root",
    "sam_build_dir",
]


@cache
def repo_root() -> Path:
    """The repository root: the directory holding pyproject.toml above this package."""
    root = Path(__file__).resolve().parent.parent
    if not (root / "pyproject.toml").is_file():
        raise RuntimeError(
            f"devstack is not running from the repo ({root} has no pyproject.toml); "
            "install it editable with `pip install -e .`"
        )
    return root


def build_dir() -> Path:
    """``<repo>/.build``: build outputs (never committed, safe to delete)."""
    return repo_root() / ".build"


def local_dir() -> Path:
    """``<repo>/.local``: state of the local stack (databases, S3 data)."""
    return repo_root() / ".local"


def pgdump_layer_makefile_dir() -> Path:
    """``layers/pgdump``: run ``make -C`` here to build the layer or the server tree."""
    return repo_root() / "layers" / "pgdump"


def pgdump_layer_dir() -> Path:
    """The pg_dump Lambda layer as built for local use (``make -C layers/pgdump layer``)."""
    return build_dir() / "pgdump-layer"


def pgdump_layer_bin_dir() -> Path:
    """pg_dump, pg_restore and psql from the layer; they need no environment to run."""
    return pgdump_layer_dir() / "bin"


def pg_server_dir() -> Path:
    """The full PostgreSQL install tree (``make -C layers/pgdump pg-server``)."""
    return build_dir() / "postgresql"


def pg_server_bin_dir() -> Path:
    """postgres, initdb, pg_ctl, … for the embedded server."""
    return pg_server_dir() / "bin"


def sam_build_dir() -> Path:
    """``<repo>/.aws-sam/build``: what ``make build`` (sam build) produces and deploys."""
    return repo_root() / ".aws-sam" / "build"


def lambda_runtime_dir() -> Path:
    """The Lambda runtime interface client for the artifact harness (``make lambda-runtime``)."""
    return build_dir() / "lambda-runtime"
