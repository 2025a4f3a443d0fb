"""The contracts other pieces rely on: the OpenAPI error list, the template, the events."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from clinic_backups.domain.errors import BACKUP_ERROR_CODES, ApiError
from clinic_backups.edge.api import STATUS_BY_CODE

REPO = Path(__file__).resolve().parents[2]


def openapi() -> dict:
    return yaml.safe_load((REPO / "openapi.yaml").read_text())


def test_every_error_code_is_documented_with_its_status():
    spec = openapi()["components"]["schemas"]
    assert spec["ErrorCode"]["enum"] == list(STATUS_BY_CODE)
    assert spec["ErrorCode"]["x-status"] == STATUS_BY_CODE
    for code in STATUS_BY_CODE:
        assert f"`{code}` ({STATUS_BY_CODE[code]})" in spec["ErrorCode"]["description"]
    assert spec["BackupErrorCode"]["enum"] == list(BACKUP_ERROR_CODES)


def test_every_api_error_class_has_a_documented_code():
    def walk(cls):
        for sub in cls.__subclasses__():
            yield sub
            yield from walk(sub)

    for cls in walk(ApiError):
        assert cls.code in STATUS_BY_CODE, cls


def test_each_documented_status_is_used_by_some_route():
    spec = openapi()
    used = {
        int(status)
        for path in spec["paths"].values()
        for op in path.values()
        if isinstance(op, dict) and "responses" in op
        for status in op["responses"]
    }
    assert set(STATUS_BY_CODE.values()) <= used


def sam_template() -> dict:
    from samtranslator.yaml_helper import yaml_parse

    return yaml_parse((REPO / "template.yaml").read_text())


def http_routes() -> dict[tuple[str, str], str]:
    routes = {}
    for resource in sam_template()["Resources"].values():
        if resource["Type"] != "AWS::Serverless::Function":
            continue
        for event in resource["Properties"].get("Events", {}).values():
            if event["Type"] == "HttpApi":
                routes[(event["Properties"]["Method"], event["Properties"]["Path"])] = resource[
                    "Properties"
                ]["CodeUri"]
    return routes


def test_the_template_routes_match_the_openapi_paths():
    spec_routes = {
        (method.upper(), path)
        for path, ops in openapi()["paths"].items()
        for method in ops
        if method in ("get", "post", "delete", "put", "patch")
    }
    assert set(http_routes()) == spec_routes


def test_each_route_is_served_by_the_function_that_declares_it():
    for (method, path), code_uri in http_routes().items():
        source = (REPO / code_uri / "app.py").read_text()
        flask_path = re.sub(r"\{(\w+)\}", r"<\\w+>", path)
        assert re.search(rf'@fn\.app\.{method.lower()}\("{flask_path}"\)', source), (method, path)


def test_every_setting_is_a_template_parameter_or_fixed():
    env = sam_template()["Globals"]["Function"]["Environment"]["Variables"]
    assert {
        "JWT_ISSUER",
        "JWT_AUDIENCE",
        "TENANT_CLAIM",
        "ROLE_CLAIM",
        "STORAGE_BACKEND",
        "DOWNLOAD_ROLES",
        "DELETE_ROLES",
        "APP_SECRET_ARN",
    } <= set(env)


def test_the_queue_outlives_the_worker_and_has_a_dead_letter_queue():
    resources = sam_template()["Resources"]
    worker = resources["CreateBackupFunction"]["Properties"]
    queue = resources["JobQueue"]["Properties"]
    assert queue["VisibilityTimeout"] > worker["Timeout"]
    assert queue["RedrivePolicy"]["deadLetterTargetArn"] == {
        "Fn::GetAtt": ["JobDeadLetterQueue", "Arn"]
    }
    sqs = worker["Events"]["Jobs"]["Properties"]
    assert sqs["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    assert sqs["ScalingConfig"]["MaximumConcurrency"] == {"Ref": "WorkerMaximumConcurrency"}
    assert "ReservedConcurrentExecutions" not in worker


@pytest.mark.parametrize(
    "path",
    sorted(p.relative_to(REPO / "events").as_posix() for p in (REPO / "events").rglob("*.json")),
)
def test_sample_events_belong_to_a_function_and_a_route(path):
    function = path.split("/")[0]
    assert (REPO / "functions" / function / "app.py").exists()
    event = json.loads((REPO / "events" / path).read_text())
    if "routeKey" in event:
        method, route = event["routeKey"].split(" ")
        assert http_routes()[(method, route)] == f"functions/{function}/"


def test_cfn_lint_is_clean():
    import subprocess
    import sys

    result = subprocess.run(
        [os.path.join(os.path.dirname(sys.executable), "cfn-lint"), str(REPO / "template.yaml")],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_setting_is_in_the_readme_table():
    from clinic_backups.wiring import settings

    readme = (REPO / "README.md").read_text()
    models: list[Any] = [
        m
        for m in vars(settings).values()
        if isinstance(m, type) and issubclass(m, settings.BaseSettings)
    ]
    names = {name.upper() for model in models for name in model.model_fields}
    missing = sorted(n for n in names if f"`{n}`" not in readme)
    assert missing == []


def test_the_lease_is_a_template_setting_longer_than_the_swaps_lock_wait():
    from clinic_backups.wiring.settings import duration_seconds

    template = sam_template()
    assert template["Globals"]["Function"]["Environment"]["Variables"]["LOCK_LEASE_SECONDS"] == {
        "Ref": "LockLeaseSeconds"
    }
    parameters = template["Parameters"]
    lock_wait = duration_seconds(parameters["RestoreLockTimeout"]["Default"])
    assert parameters["LockLeaseSeconds"]["MinValue"] > lock_wait


def alarmed_metrics() -> set[tuple[str, str]]:
    """(namespace, metric) of every CloudWatch alarm in the template."""
    return {
        (r["Properties"]["Namespace"], r["Properties"]["MetricName"])
        for r in sam_template()["Resources"].values()
        if r["Type"] == "AWS::CloudWatch::Alarm"
    }


def test_clinics_failing_in_a_fleet_run_are_alarmed():
    from clinic_backups.usecases import sweeper

    assert ("ClinicBackups", "ClinicsFailed") in alarmed_metrics()
    assert '"ClinicsFailed"' in (REPO / "shared/clinic_backups/usecases/sweeper.py").read_text()
    assert sweeper.SweepReport().to_dict()["clinics_failed"] == 0


def test_a_scheduler_run_that_runs_out_of_time_is_alarmed():
    assert ("ClinicBackups", "SchedulerOutOfTime") in alarmed_metrics()
    source = (REPO / "shared/clinic_backups/usecases/scheduler.py").read_text()
    assert '"SchedulerOutOfTime"' in source


def test_every_activity_action_the_layer_writes_is_in_the_contract():
    """The UI labels every `AuditActionCode` (frontend/src/i18n/messages.test.ts): an action
    written by the layer but missing here would reach the «Actividad» panel unlabelled."""
    import ast

    pattern = re.compile(r"^(audit|auth|backup|keys|restore|settings)\.[a-z_]+$")
    written = {
        node.value
        for path in (REPO / "shared" / "clinic_backups").rglob("*.py")
        for node in ast.walk(ast.parse(path.read_text()))
        if isinstance(node, ast.Constant)
        and isinstance(node.value, str)
        and pattern.match(node.value)
    }
    documented = openapi()["components"]["schemas"]["AuditActionCode"]["enum"]
    assert "backup.download" in written and "auth.token" in written  # the scan finds them
    assert sorted(written - set(documented)) == []
    assert sorted(set(documented) - written) == []
