"""`sam build` works here without Docker, and the built functions import their layer the same
way pytest does: `from clinic_backups import …` with the layer's python/ on the path, as
Lambda mounts it at /opt/python."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
FUNCTIONS = (
    "CreateBackupFunction",
    "ListBackupsFunction",
    "DownloadBackupFunction",
    "DeleteBackupFunction",
)


@pytest.fixture(scope="module")
def built() -> Path:
    subprocess.run(["make", "-s", "build"], cwd=REPO, check=True, capture_output=True)
    return REPO / ".aws-sam" / "build"


def python312() -> str:
    env = dict(os.environ)
    if shutil.which("pyenv"):
        versions = subprocess.run(
            ["pyenv", "versions", "--bare"], capture_output=True, text=True
        ).stdout
        v312 = [v for v in versions.split() if v.startswith("3.12")]
        if v312:
            env["PYENV_VERSION"] = v312[-1]
    path = subprocess.run(
        ["python3.12", "-c", "import sys; print(sys.executable)"],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    return path


@pytest.mark.parametrize("function", FUNCTIONS)
def test_built_function_imports_its_handler_from_the_layer_on_python312(built, function):
    env = {
        "PATH": "/usr/bin:/bin",
        "PYTHONPATH": str(built / "SharedLayer" / "python"),
        "AWS_DEFAULT_REGION": "eu-west-1",
    }
    script = (
        "import sys, app; assert callable(app.lambda_handler); "
        "import clinic_backups; print(sys.version_info[:2], clinic_backups.__file__)"
    )
    out = subprocess.run(
        [python312(), "-c", script], cwd=built / function, env=env, capture_output=True, text=True
    )
    assert out.returncode == 0, out.stderr
    assert "(3, 12)" in out.stdout and "SharedLayer/python/clinic_backups" in out.stdout


def test_built_pg_dump_layer_runs_without_environment(built):
    out = subprocess.run(
        [str(built / "PgDumpLayer" / "bin" / "pg_dump"), "--version"],
        env={},
        capture_output=True,
        text=True,
        check=True,
    )
    assert "18." in out.stdout
