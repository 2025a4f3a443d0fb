"""Slot arithmetic in real time zones (zoneinfo), DST included, and what a scheduler run
decides for each slot. Pure: no database, no clock."""

from __future__ import annotations

import uuid
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from clinic_backups.domain.models import PlatformPolicy, SlotRecord, SlotStatus
from clinic_backups.domain.schedule import (
    Action,
    decide,
    is_stale,
    next_slot,
    schedule_period,
    slot_instant,
    slots_between,
)

DEFAULTS = PlatformPolicy().defaults
CATCH_UP = timedelta(hours=6)


def utc(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=UTC)


def clinic(
    time_zone: str = "Europe/Madrid", hour: int = 3, weekdays=(1, 2, 3, 4, 5, 6, 7), **fields
):
    return replace(DEFAULTS, time_zone=time_zone, hour=hour, weekdays=tuple(weekdays), **fields)


@pytest.mark.parametrize(
    "zone,day,hour,expected_utc,expected_local",
    [
        # ordinary days, summer and winter
        ("Europe/Madrid", date(2026, 6, 15), 3, utc(2026, 6, 15, 1), "T03:00:00+02:00"),
        ("Europe/Madrid", date(2026, 1, 15), 3, utc(2026, 1, 15, 2), "T03:00:00+01:00"),
        # spring forward: 02:00 does not exist → the first local time after the gap (03:00)
        ("Europe/Madrid", date(2026, 3, 29), 2, utc(2026, 3, 29, 1), "T03:00:00+02:00"),
        ("America/New_York", date(2026, 3, 8), 2, utc(2026, 3, 8, 7), "T03:00:00-04:00"),
        ("Australia/Adelaide", date(2026, 10, 4), 2, utc(2026, 10, 3, 16, 30), "T03:00:00+10:30"),
        # a 30-minute DST shift: the gap ends at 02:30
        ("Australia/Lord_Howe", date(2026, 10, 4), 2, utc(2026, 10, 3, 15, 30), "T02:30:00+11:00"),
        # fall back: the repeated hour runs at its first occurrence (still summer time)
        ("Europe/Madrid", date(2026, 10, 25), 2, utc(2026, 10, 25, 0), "T02:00:00+02:00"),
        ("America/New_York", date(2026, 11, 1), 1, utc(2026, 11, 1, 5), "T01:00:00-04:00"),
        ("Australia/Adelaide", date(2026, 4, 5), 2, utc(2026, 4, 4, 15, 30), "T02:00:00+10:30"),
        # half- and quarter-hour offsets: 03:00 local is 21:30 / 21:15 UTC the day before
        ("Asia/Kolkata", date(2026, 6, 15), 3, utc(2026, 6, 14, 21, 30), "T03:00:00+05:30"),
        ("Asia/Kathmandu", date(2026, 6, 15), 3, utc(2026, 6, 14, 21, 15), "T03:00:00+05:45"),
    ],
)
def test_slot_instant_follows_the_clinic_time_zone_and_dst_rules(
    zone, day, hour, expected_utc, expected_local
):
    instant = slot_instant(day, hour, ZoneInfo(zone))
    assert instant == expected_utc
    local = instant.astimezone(ZoneInfo(zone))
    assert local.isoformat().endswith(expected_local)


def hourly_runs(start: datetime, hours: int, minute: int = 5):
    first = start.replace(minute=minute, second=0, microsecond=0)
    return [first + timedelta(hours=h) for h in range(hours)]


def simulate(settings, runs):
    """Every hourly run decides with what earlier runs recorded; returns {slot key: run time}."""
    rows: dict = {}
    ran: dict = {}
    for now in runs:
        for decision in decide(settings, rows, now, CATCH_UP):
            assert decision.action in (Action.RUN, Action.MISS), decision
            if decision.action == Action.RUN:
                assert decision.slot.key not in ran, "a slot ran twice"
                ran[decision.slot.key] = now
                rows[decision.slot.key] = SlotRecord(
                    decision.slot.local_date,
                    decision.slot.local_hour,
                    decision.slot.scheduled_at,
                    SlotStatus.ENQUEUED,
                    uuid.uuid4(),
                    now,
                    1,
                )
    return ran


@pytest.mark.parametrize(
    "zone",
    [
        "Europe/Madrid",
        "America/New_York",
        "Asia/Kolkata",
        "Asia/Kathmandu",
        "Australia/Adelaide",
        "Australia/Lord_Howe",
    ],
)
@pytest.mark.parametrize("hour", [0, 1, 2, 3, 23])
def test_a_year_of_hourly_runs_runs_every_slot_exactly_once_within_the_hour(zone, hour):
    # Given a daily schedule at `hour` and an hourly run at :05 for all of 2026 (both DST changes)
    settings = clinic(zone, hour)
    runs = hourly_runs(utc(2026, 1, 1), 365 * 24)
    ran = simulate(settings, runs)
    # Then every local day of 2026 ran once, at the first run after its slot's instant (the
    # very first run also catches up a slot of the previous evening, within the window)
    zone_info = ZoneInfo(zone)
    days = {d for (d, _) in ran}
    expected = {date(2026, 1, 2) + timedelta(days=i) for i in range(363)}
    assert expected <= days
    for (day, slot_hour), run in ran.items():
        instant = slot_instant(day, slot_hour, zone_info)
        if instant >= runs[0]:
            assert instant <= run < instant + timedelta(hours=1)
        else:
            assert run == runs[0] and run - instant < CATCH_UP


def test_madrid_spring_forward_runs_the_missing_hour_at_three():
    settings = clinic("Europe/Madrid", hour=2)
    ran = simulate(settings, hourly_runs(utc(2026, 3, 28, 20), 12))
    assert ran == {(date(2026, 3, 29), 2): utc(2026, 3, 29, 1, 5)}  # 03:05 CEST


def test_madrid_fall_back_runs_the_repeated_hour_once():
    settings = clinic("Europe/Madrid", hour=2)
    runs = hourly_runs(utc(2026, 10, 24, 20), 12)
    # 02:05 CEST (00:05 UTC) and 02:05 CET (01:05 UTC) both show local hour 2
    assert [r.astimezone(ZoneInfo("Europe/Madrid")).hour for r in runs].count(2) == 2
    assert simulate(settings, runs) == {(date(2026, 10, 25), 2): utc(2026, 10, 25, 0, 5)}


def test_weekdays_and_disabled_schedules():
    mondays = clinic(weekdays=(1,))
    week = slots_between(mondays, utc(2026, 6, 1), utc(2026, 6, 15, 12))  # 06-01 is a Monday
    assert [s.local_date for s in week] == [date(2026, 6, 1), date(2026, 6, 8), date(2026, 6, 15)]
    assert all(s.local_date.isoweekday() == 1 for s in week)
    assert slots_between(clinic(enabled=False), utc(2026, 6, 1), utc(2026, 6, 15)) == []
    assert next_slot(clinic(enabled=False), utc(2026, 6, 1)) is None
    upcoming = next_slot(mondays, utc(2026, 6, 1, 1))
    assert upcoming is not None and upcoming.scheduled_at == utc(2026, 6, 8, 1)


def row(slot_day: date, status: SlotStatus, decided_at: datetime, hour: int = 3) -> SlotRecord:
    instant = slot_instant(slot_day, hour, ZoneInfo("Europe/Madrid"))
    return SlotRecord(slot_day, hour, instant, status, uuid.uuid4(), decided_at, 1)


def actions(settings, rows, now, since: date = date(2026, 6, 15)):
    """The decisions about slots from `since` on (the day before is recorded as missed by the
    first run of these tests, which is right but beside their point)."""
    return [
        (d.slot.local_date, d.action)
        for d in decide(settings, rows, now, CATCH_UP)
        if d.slot.local_date >= since
    ]


def test_a_duplicated_event_finds_the_slot_taken_and_does_nothing():
    today = date(2026, 6, 15)  # slot at 01:00 UTC
    now = utc(2026, 6, 15, 1, 5)
    assert actions(clinic(), {}, now) == [(today, Action.RUN)]
    # a second event a minute later sees the slot enqueued, or still being enqueued
    for status in (SlotStatus.ENQUEUED, SlotStatus.DUE, SlotStatus.MISSED):
        rows = {(today, 3): row(today, status, now)}
        assert actions(clinic(), rows, now + timedelta(minutes=1)) == []


def test_a_late_event_runs_the_slot_within_the_catch_up_window_and_misses_it_after():
    today = date(2026, 6, 15)
    assert actions(clinic(), {}, utc(2026, 6, 15, 6, 59)) == [(today, Action.RUN)]  # 5 h 59 late
    assert actions(clinic(), {}, utc(2026, 6, 15, 7, 0)) == [(today, Action.MISS)]  # 6 h late
    # a day later it is still recorded as missed (the look-back), two days later no longer
    assert (today, Action.MISS) in actions(clinic(), {}, utc(2026, 6, 16, 0, 30))
    assert (today, Action.MISS) not in actions(clinic(), {}, utc(2026, 6, 17, 8))


def test_a_busy_slot_is_retried_within_the_window_and_then_missed():
    today = date(2026, 6, 15)
    rows = {(today, 3): row(today, SlotStatus.SKIPPED_BUSY, utc(2026, 6, 15, 1, 5))}
    assert actions(clinic(), rows, utc(2026, 6, 15, 2, 5)) == [(today, Action.RETRY)]
    assert actions(clinic(), rows, utc(2026, 6, 15, 7, 5)) == [(today, Action.MISS)]


def test_an_abandoned_claim_is_recovered_after_the_claim_timeout():
    today = date(2026, 6, 15)
    rows = {(today, 3): row(today, SlotStatus.DUE, utc(2026, 6, 15, 1, 5))}
    assert actions(clinic(), rows, utc(2026, 6, 15, 1, 15)) == []  # maybe still running
    assert actions(clinic(), rows, utc(2026, 6, 15, 2, 5)) == [(today, Action.RECOVER)]


def test_a_slot_of_settings_saved_after_it_is_not_reported_missed():
    # The admin chose 03:00 at 10:00: today's 03:00 never existed for this clinic.
    saved = clinic(updated_at=utc(2026, 6, 15, 8), updated_by="u-admin")
    assert actions(saved, {}, utc(2026, 6, 15, 9, 5)) == []
    assert actions(clinic(), {}, utc(2026, 6, 15, 9, 5)) == [(date(2026, 6, 15), Action.MISS)]


def test_schedule_period_is_the_longest_gap_between_scheduled_days():
    assert schedule_period(range(1, 8)) == timedelta(days=1)
    assert schedule_period([1]) == timedelta(days=7)
    assert schedule_period([1, 4]) == timedelta(days=4)  # Thu → Mon
    assert schedule_period([1, 2, 3, 4, 5]) == timedelta(days=3)  # Fri → Mon


def test_a_clinic_is_stale_when_its_last_good_backup_is_older_than_period_plus_margin():
    now = utc(2026, 6, 15, 12)
    daily, weekly = clinic(), clinic(weekdays=(1,))
    # daily: 1 day + 6 h catch-up + 1 h margin = 31 h
    assert not is_stale(daily, now - timedelta(hours=30), None, now, CATCH_UP)
    assert is_stale(daily, now - timedelta(hours=32), None, now, CATCH_UP)
    assert not is_stale(weekly, now - timedelta(days=7), None, now, CATCH_UP)
    assert is_stale(weekly, now - timedelta(days=7, hours=8), None, now, CATCH_UP)
    # never backed up: stale once its first slot is older than the catch-up window + margin
    assert not is_stale(daily, None, None, now, CATCH_UP)
    assert not is_stale(daily, None, now - timedelta(hours=2), now, CATCH_UP)
    assert is_stale(daily, None, now - timedelta(hours=8), now, CATCH_UP)
    assert not is_stale(clinic(enabled=False), None, now - timedelta(days=30), now, CATCH_UP)
