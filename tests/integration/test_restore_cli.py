"""The operator CLI restores, verifies and undoes with the restore worker's own code, here:
the path for clinics too large for Lambda."""

from __future__ import annotations

import json
from typing import Any

import pytest
from clinic_backups.edge.cli import main

from tests.integration.conftest import RestoreDatabase
from tests.integration.restore_support import backup, checksums


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, Any]:
    code = main(list(argv))
    out = capsys.readouterr().out
    start = min((i for i in (out.find("{"), out.find("[")) if i >= 0), default=-1)
    return code, json.loads(out[start:]) if start >= 0 else None


def test_operator_restores_verifies_on_an_ephemeral_server_and_undoes(
    restore_env_pg15: RestoreDatabase, owned_clinic_pg15, sqs, capsys
):
    db = restore_env_pg15
    schema = owned_clinic_pg15(patients=120)
    source = backup(schema, sqs)
    before = checksums(db.admin_url, schema)

    # a wrong confirmation is refused
    assert main(["restore", schema, source["id"], "--confirm", "otra"]) == 2
    assert "validation_error" in capsys.readouterr().err

    code, job = run(capsys, "restore", schema, source["id"], "--confirm", schema)
    assert code == 0 and job["status"] == "completed" and job["undo_available"], job
    assert job["requested_by"].startswith("operator")

    code, drill = run(capsys, "verify", schema, source["id"], "--ephemeral")
    assert code == 0 and drill["outcome"] == "passed", drill

    code, listing = run(capsys, "restores", schema)
    assert [j["kind"] for j in listing] == ["verify", "restore"]

    code, undone = run(capsys, "undo", schema, job["id"])
    assert code == 0 and undone["status"] == "undone"
    assert checksums(db.admin_url, schema) == before
