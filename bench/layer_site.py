"""The Lambda layer's package set, for measuring the worker's memory as it runs there.

The dev venv holds more than the layer (shared/requirements.txt): aws-sam-cli brings
pyOpenSSL, which botocore imports when it is installed (with cryptography: +12 MB here), and
awscrt, which botocore.compat imports when it is installed (+7 MB). The Lambda has neither,
so a worker measured in the venv overstates its memory by ~17 MB. This installs the layer's
requirements into `.build/bench-layer-site` (once per requirements file) and runs a child
with only that, the product's package and the bench on its path (`python -S`: no site
packages).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

from devstack import paths

REQUIREMENTS = paths.repo_root() / "shared" / "requirements.txt"


def site_dir() -> Path:
    """The layer's packages for this interpreter, installed once per requirements file."""
    digest = hashlib.sha1(REQUIREMENTS.read_bytes()).hexdigest()[:12]
    target = paths.build_dir() / "bench-layer-site"
    stamp = target / f".installed-{digest}"
    if not stamp.exists():
        shutil.rmtree(target, ignore_errors=True)
        subprocess.run(
            [
                sys.executable,
                "-m",
                "pip",
                "install",
                "--quiet",
                "--disable-pip-version-check",
                "--target",
                str(target),
                "-r",
                str(REQUIREMENTS),
            ],
            check=True,
        )
        stamp.touch()
    return target


def child_env() -> dict[str, str]:
    """Environment for a `python -S` child that sees only the layer's packages."""
    root = paths.repo_root()
    return {
        "PYTHONPATH": os.pathsep.join([str(site_dir()), str(root / "shared"), str(root)]),
    }
