"""`sam build` works here without Docker, and the built functions import their layer the same
way pytest does: `from clinic_backups import …` with the layer's python/ on the path, as
Lambda mounts it at /opt/python. (The build is the session's `sam_build`; tests/artifact runs
it end to end.)"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from devstack.artifact import python312

FUNCTIONS = (
    "CreateBackupFunction",
    "ListBackupsFunction",
    "DownloadBackupFunction",
    "DeleteBackupFunction",
)


@pytest.mark.parametrize("function", FUNCTIONS)
def test_built_function_imports_its_handler_from_the_layer_on_python312(
    sam_build: Path, function: str
) -> None:
    env = {
        "PATH": "/usr/bin:/bin",
        "PYTHONPATH": str(sam_build / "SharedLayer" / "python"),
        "PYTHONDONTWRITEBYTECODE": "1",  # the build output is what deploys: leave it as built
        "AWS_DEFAULT_REGION": "eu-west-1",
    }
    script = (
        "import sys, app; assert callable(app.lambda_handler); "
        "import clinic_backups; print(sys.version_info[:2], clinic_backups.__file__)"
    )
    out = subprocess.run(
        [python312(), "-c", script],
        cwd=sam_build / function,
        env=env,
        capture_output=True,
        text=True,
    )
    assert out.returncode == 0, out.stderr
    assert "(3, 12)" in out.stdout and "SharedLayer/python/clinic_backups" in out.stdout


def test_built_pg_dump_layer_runs_without_environment(sam_build: Path) -> None:
    out = subprocess.run(
        [str(sam_build / "PgDumpLayer" / "bin" / "pg_dump"), "--version"],
        env={},
        capture_output=True,
        text=True,
        check=True,
    )
    assert "18." in out.stdout
