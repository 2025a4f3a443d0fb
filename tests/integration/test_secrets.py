"""In AWS the secret settings come from Secrets Manager (moto's server stands in for it: a
control-plane call it implements faithfully)."""

from __future__ import annotations

import json

import boto3
import pytest

from tests.helpers import JWT_SECRET, call, load_event, mint, reset_caches


@pytest.fixture
def secrets_client(moto_server):
    return boto3.client(
        "secretsmanager",
        endpoint_url=moto_server,
        region_name="eu-west-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )


def test_database_url_and_jwt_secret_come_from_secrets_manager(
    app_env, secrets_client, clinic_factory, monkeypatch
):
    schema = clinic_factory()
    arn = secrets_client.create_secret(
        Name=f"clinic-backups-{schema}",
        SecretString=json.dumps(
            {
                "database_url": app_env["DATABASE_URL"],
                "jwt_secret": JWT_SECRET,
                "unrelated": "ignored",
            }
        ),
    )["ARN"]
    monkeypatch.delenv("DATABASE_URL")
    monkeypatch.delenv("JWT_SECRET")
    monkeypatch.setenv("APP_SECRET_ARN", arn)
    reset_caches()
    reply = call(
        "list_backups", load_event("list_backups/get_me.json", token=mint(schema, "staff"))
    )
    assert reply.status == 200, reply.body
    assert reply.body["clinic"]["schema"] == schema


def test_a_per_function_database_secret_overrides_the_app_secret(
    app_env, secrets_client, clinic_factory, monkeypatch
):
    schema = clinic_factory()
    app_arn = secrets_client.create_secret(
        Name=f"app-{schema}",
        SecretString=json.dumps(
            {"database_url": "postgresql://nobody@127.0.0.1:1/none", "jwt_secret": JWT_SECRET}
        ),
    )["ARN"]
    db_arn = secrets_client.create_secret(
        Name=f"db-{schema}", SecretString=app_env["DATABASE_URL"]
    )["ARN"]
    monkeypatch.delenv("DATABASE_URL")
    monkeypatch.setenv("APP_SECRET_ARN", app_arn)
    monkeypatch.setenv("DATABASE_SECRET_ARN", db_arn)
    reset_caches()
    assert (
        call("list_backups", load_event("list_backups/get_me.json", token=mint(schema))).status
        == 200
    )


def test_a_missing_secret_is_a_500_that_names_no_value(app_env, monkeypatch, logs):
    monkeypatch.setenv(
        "APP_SECRET_ARN", "arn:aws:secretsmanager:eu-west-1:123456789012:secret:nope"
    )
    reset_caches()
    reply = call("list_backups", load_event("list_backups/get_me.json", token=mint("clinica_x")))
    assert (reply.status, reply.error_code) == (500, "internal_error")
    assert app_env["DATABASE_URL"] not in logs.text
