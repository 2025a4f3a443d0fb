"""A backup record is built in one place for every path that makes a backup
(`service.new_backup_record`, which always sets `encryption="age"`): the pre-restore backup was
stored in plaintext because a second constructor forgot it. The only other places that build a
`BackupRecord` rebuild an existing one (a database row, a manifest); re-encryption rewrites the
record it has and builds none."""

from __future__ import annotations

import ast
from pathlib import Path

LAYER = Path(__file__).resolve().parents[2] / "shared" / "clinic_backups"
ALLOWED = {
    (
        "usecases/backups.py",
        "new_backup_record",
    ),  # every new backup: manual, scheduled, pre-restore
    ("usecases/manifests.py", "record_from_manifest"),  # rebuilding an existing backup from storage
    ("adapters/database.py", "record_from_row"),  # reading an existing backup's row
}


def constructors() -> set[tuple[str, str]]:
    found = set()
    for path in LAYER.rglob("*.py"):
        tree = ast.parse(path.read_text())
        for function in ast.walk(tree):
            if not isinstance(function, ast.FunctionDef | ast.AsyncFunctionDef):
                continue
            for node in ast.walk(function):
                if (
                    isinstance(node, ast.Call)
                    and isinstance(node.func, ast.Name)
                    and node.func.id == "BackupRecord"
                ):
                    found.add((path.relative_to(LAYER).as_posix(), function.name))
    return found


def test_backup_records_are_built_only_by_the_one_constructor_and_the_two_readers():
    assert constructors() == ALLOWED


def test_the_one_constructor_always_encrypts():
    import uuid
    from typing import Any, cast

    from clinic_backups.domain.models import Trigger
    from clinic_backups.usecases.backups import new_backup_record
    from clinic_backups.usecases.context import Services

    nothing = cast(Any, object())  # the constructor touches no port
    svc = Services(
        records=nothing, tenants=nothing, cipher=nothing, schedules=nothing, keys=nothing
    )
    for trigger in Trigger:
        record = new_backup_record(
            svc, "clinica_x", uuid.uuid4(), trigger=trigger, actor_id="u", actor_name=None
        )
        assert record.encryption == "age" and record.file_name.endswith(".dump.age"), trigger


def test_reencryption_builds_no_record():
    source = (LAYER / "usecases" / "reencrypt.py").read_text()
    assert "BackupRecord(" not in source and "new_backup_record" not in source
