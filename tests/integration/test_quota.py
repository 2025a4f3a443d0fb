"""The per-clinic daily cap on manual backups (`MANUAL_BACKUPS_PER_DAY` → 429
`quota_exceeded`): rolling 24 h, manual backups only."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from clinic_backups.domain.models import Trigger

from tests.helpers import FixedClock, call, function_module, load_event, mint, reset_caches
from tests.integration.test_retention import add_backup

pytestmark = pytest.mark.usefixtures("app_env")

T0 = datetime(2026, 6, 15, 9, tzinfo=UTC)


@pytest.fixture
def two_a_day(monkeypatch):
    monkeypatch.setenv("MANUAL_BACKUPS_PER_DAY", "2")
    reset_caches()
    clock = FixedClock(T0)
    function_module("create_backup").fn.services().clock = clock
    return clock


def post(schema: str):
    return call(
        "create_backup",
        load_event("create_backup/post_backups.json", token=mint(schema), body=None),
    )


def test_the_quota_is_a_rolling_24_hours_of_manual_backups(clinic_factory, sqs, two_a_day):
    # Given two manual backups at 09:00 and 10:00
    schema = clinic_factory()
    for hours in (0, 1):
        two_a_day.at = T0 + timedelta(hours=hours)
        assert post(schema).status == 202
        sqs.drain_into_worker()
    # Then a third is refused until 24 h after the first, with the stable code
    two_a_day.at = T0 + timedelta(hours=23, minutes=59)
    reply = post(schema)
    assert (reply.status, reply.error_code) == (429, "quota_exceeded")
    assert "daily limit" in reply.body["error"]["message"]
    two_a_day.at = T0 + timedelta(hours=24, minutes=1)
    assert post(schema).status == 202


def test_scheduled_backups_do_not_use_up_the_manual_quota(clinic_factory, sqs, two_a_day):
    schema = clinic_factory()
    worker = function_module("create_backup").fn.services()
    for minutes in (10, 20, 30):
        add_backup(worker, schema, T0 - timedelta(minutes=minutes), Trigger.SCHEDULED)
    assert post(schema).status == 202
    sqs.drain_into_worker()
    assert post(schema).status == 202
    sqs.drain_into_worker()
    assert post(schema).status == 429


def test_the_quota_is_per_clinic(clinic_factory, sqs, two_a_day):
    busy, other = clinic_factory(), clinic_factory()
    for _ in range(2):
        assert post(busy).status == 202
        sqs.drain_into_worker()
    assert post(busy).status == 429
    assert post(other).status == 202
