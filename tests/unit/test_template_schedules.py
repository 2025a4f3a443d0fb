"""template.yaml contracts of the scheduler, the sweeper's thresholds and the alarms."""

from __future__ import annotations

import copy
import os

from tests.unit.test_contracts import sam_template

POLICY_VARIABLES = (
    "MIN_RETENTION_DAYS",
    "RETENTION_KEEP_DAILY",
    "RETENTION_KEEP_WEEKLY",
    "RETENTION_KEEP_MONTHLY",
    "RESTORE_UNDO_DAYS",
    "SCHEDULE_CATCH_UP_HOURS",
)


def resources() -> dict:
    return sam_template()["Resources"]


def test_the_queue_drops_jobs_before_the_sweeper_calls_them_stuck():
    template = sam_template()
    worker = template["Resources"]["CreateBackupFunction"]["Properties"]
    scheduler = template["Resources"]["SchedulerFunction"]["Properties"]
    queue = template["Resources"]["JobQueue"]["Properties"]
    margin = template["Parameters"]["StuckMarginMinutes"]
    # The sweeper's worker timeout is the worker's real timeout …
    assert scheduler["Environment"]["Variables"]["WORKER_TIMEOUT_SECONDS"] == str(worker["Timeout"])
    variables = scheduler["Environment"]["Variables"]
    assert variables["STUCK_MARGIN_MINUTES"] == {"Ref": "StuckMarginMinutes"}
    # … and no allowed margin makes the stuck threshold shorter than a job can wait queued.
    assert queue["MessageRetentionPeriod"] <= worker["Timeout"] + margin["MinValue"] * 60


def test_the_scheduler_runs_hourly_and_only_from_eventbridge():
    scheduler = resources()["SchedulerFunction"]["Properties"]
    events = scheduler["Events"]
    assert [e["Type"] for e in events.values()] == ["Schedule"]
    (hourly,) = events.values()
    assert hourly["Properties"]["Schedule"] == "cron(5 * * * ? *)"
    assert scheduler["Environment"]["Variables"]["JOB_QUEUE_URL"] == {"Ref": "JobQueue"}


def test_policy_settings_are_parameters_and_the_same_for_every_function():
    # The local stack runs every function in one process: a variable must mean one thing.
    functions = [
        r["Properties"] for r in resources().values() if r["Type"] == "AWS::Serverless::Function"
    ]
    parameters = sam_template()["Parameters"]
    for name in POLICY_VARIABLES:
        values = [
            f["Environment"]["Variables"][name]
            for f in functions
            if name in f.get("Environment", {}).get("Variables", {})
        ]
        assert len(values) >= 3, name  # worker (retention), settings, scheduler
        assert all(v == values[0] for v in values), name
        assert values[0]["Ref"] in parameters


def test_alarms_go_to_the_alerts_topic_and_the_email_is_optional():
    res = resources()
    alarms = {k: v["Properties"] for k, v in res.items() if v["Type"] == "AWS::CloudWatch::Alarm"}
    assert set(alarms) >= {"BackupFailedAlarm", "StaleBackupsAlarm", "DeadLetterQueueAlarm"}
    for alarm in alarms.values():
        assert alarm["AlarmActions"] == [{"Ref": "AlertsTopic"}]
    assert alarms["BackupFailedAlarm"]["MetricName"] == "BackupFailed"
    assert alarms["BackupFailedAlarm"]["Namespace"] == "ClinicBackups"
    assert alarms["StaleBackupsAlarm"]["MetricName"] == "ClinicsWithoutRecentBackup"
    assert alarms["StaleBackupsAlarm"]["TreatMissingData"] == "breaching"
    dlq = alarms["DeadLetterQueueAlarm"]
    assert dlq["MetricName"] == "ApproximateNumberOfMessagesVisible"
    assert dlq["Dimensions"][0]["Value"] == {"Fn::GetAtt": ["JobDeadLetterQueue", "QueueName"]}
    assert res["AlertEmailSubscription"]["Condition"] == "HasAlertEmail"
    # the EMF metrics carry the powertools `service` dimension the alarms name
    service = sam_template()["Globals"]["Function"]["Environment"]["Variables"][
        "POWERTOOLS_SERVICE_NAME"
    ]
    assert alarms["BackupFailedAlarm"]["Dimensions"] == [{"Name": "service", "Value": service}]


def test_the_sam_transform_accepts_the_template(monkeypatch):
    # `sam validate --lint` does not run the transform's own checks; this does.
    from unittest.mock import MagicMock

    from samtranslator.translator.transform import transform

    monkeypatch.setenv("AWS_DEFAULT_REGION", os.environ.get("AWS_DEFAULT_REGION", "eu-west-1"))
    template = copy.deepcopy(sam_template())
    for resource in template["Resources"].values():
        props = resource.get("Properties", {})
        for key in ("CodeUri", "ContentUri"):
            if key in props:
                props[key] = "s3://bucket/artifact.zip"
    loader = MagicMock()
    loader.load.return_value = {}
    output = transform(template, {}, loader)
    rules = [r for r in output["Resources"].values() if r["Type"] == "AWS::Events::Rule"]
    assert [r["Properties"]["ScheduleExpression"] for r in rules] == ["cron(5 * * * ? *)"]
