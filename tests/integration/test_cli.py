"""The operator CLI: the same layer, run in-process without HTTP or tokens."""

from __future__ import annotations

import hashlib
import json
from typing import Any

import pytest
from clinic_backups.edge.cli import main

pytestmark = pytest.mark.usefixtures("app_env")


def run(capsys, *argv: str) -> tuple[int, Any]:
    code = main(list(argv))
    out = capsys.readouterr().out
    start = min((i for i in (out.find("{"), out.find("[")) if i >= 0), default=-1)
    return code, json.loads(out[start:]) if start >= 0 else None


def test_operator_backs_up_lists_downloads_and_deletes(clinic_factory, capsys, tmp_path):
    schema = clinic_factory()
    code, record = run(capsys, "backup", schema, "--note", "antes de migrar")
    assert code == 0 and record["status"] == "completed" and record["note"] == "antes de migrar"
    assert record["created_by"].startswith("operator")

    code, listing = run(capsys, "list", schema)
    assert [r["id"] for r in listing] == [record["id"]]

    target = tmp_path / "copy.dump"
    code, _result = run(capsys, "download", schema, record["id"], str(target))
    assert code == 0 and hashlib.sha256(target.read_bytes()).hexdigest() == record["sha256"]

    assert main(["delete", schema, record["id"]]) == 0
    code, listing = run(capsys, "list", schema, "--all")
    assert listing[0]["status"] == "deleted"
    code, purged = run(capsys, "purge", schema)
    assert purged == {schema: 0}  # still inside the grace period


def test_unknown_or_inactive_clinic_is_refused(clinic_factory, capsys):
    inactive = clinic_factory(active=False)
    for schema in (inactive, "no_such_clinic", 'x"; drop'):
        assert main(["backup", schema]) == 2
        assert "not an active clinic" in capsys.readouterr().err


def test_migrate_and_rebuild(clinic_factory, capsys):
    schema = clinic_factory()
    code, result = run(capsys, "migrate")
    assert code == 0 and schema in result["migrated"]
    run(capsys, "backup", schema)
    code, report = run(capsys, "rebuild", schema)
    assert code == 0 and report["already_present"] == 1
