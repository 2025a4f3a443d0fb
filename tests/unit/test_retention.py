"""Retention (grandfather-father-son) over a simulated year, with every protection. Pure."""

from __future__ import annotations

import uuid
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

from clinic_backups.domain.models import BackupRecord, BackupStatus, PlatformPolicy, Trigger
from clinic_backups.domain.retention import RetentionPolicy, lock_horizon, plan_retention

MADRID = ZoneInfo("Europe/Madrid")
POLICY = RetentionPolicy(
    keep_daily=7, keep_weekly=4, keep_monthly=6, min_retention_days=7, restore_undo_days=3
)


def backup(
    day: date,
    trigger: Trigger = Trigger.SCHEDULED,
    hour: int = 3,
    *,
    keep: bool = False,
    status: BackupStatus = BackupStatus.COMPLETED,
) -> BackupRecord:
    at = datetime(day.year, day.month, day.day, hour, tzinfo=MADRID).astimezone(UTC)
    return BackupRecord(
        id=uuid.uuid4(),
        status=status,
        trigger=trigger,
        file_name="f",
        storage_key=f"c/{uuid.uuid4()}",
        created_by="scheduler",
        created_at=at,
        compression="zstd:3",
        keep=keep,
    )


def local_days(records) -> list[date]:
    return sorted(r.created_at.astimezone(MADRID).date() for r in records)


def run_year(
    extra: dict[date, list[BackupRecord]],
    policy: RetentionPolicy = POLICY,
    in_use: set[uuid.UUID] | None = None,
) -> list[BackupRecord]:
    """One scheduled backup a day at 03:00 Madrid through 2026, retention after each (as the
    worker does); `extra` backups appear on their day. Returns what survives."""
    alive: list[BackupRecord] = []
    day = date(2026, 1, 1)
    while day.year == 2026:
        alive.extend(extra.get(day, []))
        alive.append(backup(day))
        now = datetime(day.year, day.month, day.day, 3, 30, tzinfo=MADRID).astimezone(UTC)
        plan = plan_retention(alive, policy, "Europe/Madrid", now, in_use=in_use)
        completed = {b.id for b in alive if b.status == BackupStatus.COMPLETED}
        assert set(plan.keep) | set(plan.delete) == completed
        alive = [b for b in alive if b.id not in set(plan.delete)]
        day += timedelta(days=1)
    return alive


def test_a_year_of_daily_backups_keeps_exactly_the_newest_of_each_tier():
    # Given a year of daily scheduled backups and retention 7 daily / 4 weekly / 6 monthly
    survivors = run_year({})
    # Then: the last 7 days (Dec 25-31) …
    daily = [date(2026, 12, d) for d in range(25, 32)]
    # … the newest of ISO weeks 50 and 51 (Sundays Dec 13 and 20; weeks 52 and 53 are covered)
    weekly = [date(2026, 12, 13), date(2026, 12, 20)]
    # … and the newest of July-November (December's is Dec 31)
    monthly = [
        date(2026, 7, 31),
        date(2026, 8, 31),
        date(2026, 9, 30),
        date(2026, 10, 31),
        date(2026, 11, 30),
    ]
    assert local_days(survivors) == sorted(daily + weekly + monthly)


def test_retention_applied_once_at_the_end_gives_the_same_survivors():
    everything = []
    day = date(2026, 1, 1)
    while day.year == 2026:
        everything.append(backup(day))
        day += timedelta(days=1)
    now = datetime(2026, 12, 31, 3, 30, tzinfo=MADRID).astimezone(UTC)
    plan = plan_retention(everything, POLICY, "Europe/Madrid", now)
    kept = [b for b in everything if b.id in plan.keep]
    assert local_days(kept) == local_days(run_year({}))
    reasons = {b.created_at.astimezone(MADRID).date(): plan.keep[b.id] for b in kept}
    assert reasons[date(2026, 12, 31)] == ["newest", "floor", "daily", "weekly", "monthly"]
    assert reasons[date(2026, 12, 20)] == ["weekly"]
    assert reasons[date(2026, 7, 31)] == ["monthly"]


def test_manual_pre_restore_keep_flagged_and_in_use_backups_are_protected():
    # Given a year of scheduled backups with others mixed in
    manual = backup(date(2026, 3, 15), Trigger.MANUAL, hour=12)
    old_pre_restore = backup(date(2026, 6, 1), Trigger.PRE_RESTORE, hour=12)
    recent_pre_restore = backup(date(2026, 12, 29), Trigger.PRE_RESTORE, hour=12)
    flagged = backup(date(2026, 2, 14), keep=True, hour=9)
    read_by_a_restore = backup(date(2026, 4, 1), hour=9)
    failed = backup(date(2026, 5, 5), status=BackupStatus.FAILED, hour=9)
    extra = {
        r.created_at.astimezone(MADRID).date(): [r]
        for r in (manual, old_pre_restore, recent_pre_restore, flagged, read_by_a_restore, failed)
    }
    survivors = run_year(extra, in_use={read_by_a_restore.id})
    ids = {b.id for b in survivors}
    # Then manual, keep-flagged, in-use and the pre_restore inside its undo window survive …
    assert {manual.id, flagged.id, read_by_a_restore.id, recent_pre_restore.id} <= ids
    # … the pre_restore past its 3-day window went; failed backups are not retention's business
    assert old_pre_restore.id not in ids
    assert failed.id in ids
    # … and the scheduled ones are exactly the tiers, as without them
    scheduled = [
        b
        for b in survivors
        if b.trigger == Trigger.SCHEDULED
        and not b.keep
        and b.id != read_by_a_restore.id
        and b.status == BackupStatus.COMPLETED
    ]
    assert local_days(scheduled) == local_days(run_year({}))


def test_the_newest_completed_backup_is_never_deleted():
    old = backup(date(2026, 1, 1), Trigger.PRE_RESTORE)
    now = datetime(2026, 6, 1, tzinfo=UTC)
    tight = replace(POLICY, keep_daily=1, keep_weekly=0, keep_monthly=0, min_retention_days=1)
    plan = plan_retention([old], tight, "Europe/Madrid", now)
    assert plan.delete == [] and plan.keep[old.id] == ["newest"]
    # pending/running/deleted records are not touched at all
    running = backup(date(2026, 5, 31), status=BackupStatus.RUNNING)
    plan = plan_retention([old, running], tight, "Europe/Madrid", now)
    assert running.id not in plan.keep and running.id not in plan.delete


def test_the_platform_floor_keeps_every_scheduled_backup_younger_than_it():
    # Given a clinic that asks to keep only 1 daily, and three scheduled backups a day
    settings = replace(PlatformPolicy().defaults, keep_daily=1, keep_weekly=0, keep_monthly=0)
    policy = RetentionPolicy.for_clinic(settings, min_retention_days=7, restore_undo_days=3)
    # Then keep_daily counts as the floor …
    assert policy.keep_daily == 7
    backups = [backup(date(2026, 6, d), hour=h) for d in range(1, 16) for h in (3, 12, 20)]
    now = datetime(2026, 6, 15, 21, tzinfo=MADRID).astimezone(UTC)
    plan = plan_retention(backups, policy, "Europe/Madrid", now)
    kept = [b for b in backups if b.id in plan.keep]
    # … and every backup of the last 7 days survives, all three a day (June 9-15); the
    # daily tier alone would keep one a day
    cutoff = now - timedelta(days=7)
    assert {b.id for b in kept} == {b.id for b in backups if b.created_at > cutoff}
    assert len(kept) == 7 * 3


def test_weeks_and_months_are_the_clinics_local_ones():
    # 2026-05-31 23:30 in Kolkata is still May there (18:00 UTC), June 1 00:30 is June.
    kolkata = ZoneInfo("Asia/Kolkata")

    def at(y, m, d, h, mi):
        when = datetime(y, m, d, h, mi, tzinfo=kolkata).astimezone(UTC)
        return replace(backup(date(y, m, d)), created_at=when)

    may, june = at(2026, 5, 31, 23, 30), at(2026, 6, 1, 0, 30)
    newest = at(2026, 6, 20, 3, 0)
    monthly_only = RetentionPolicy(
        keep_daily=1, keep_weekly=0, keep_monthly=3, min_retention_days=1, restore_undo_days=0
    )
    plan = plan_retention(
        [may, june, newest], monthly_only, "Asia/Kolkata", datetime(2026, 6, 21, tzinfo=UTC)
    )
    assert may.id in plan.keep  # newest of May (local)
    assert june.id in plan.delete  # not the newest of June


def test_the_replica_lock_horizon_outlasts_every_day_retention_keeps_a_backup():
    # Given a year of daily scheduled backups under 7/4/6, retention after each
    made: dict[uuid.UUID, BackupRecord] = {}
    deleted_on: dict[uuid.UUID, datetime] = {}
    alive: list[BackupRecord] = []
    day = date(2026, 1, 1)
    while day.year == 2026:
        new = backup(day)
        made[new.id] = new
        alive.append(new)
        now = datetime(day.year, day.month, day.day, 3, 30, tzinfo=MADRID).astimezone(UTC)
        plan = plan_retention(alive, POLICY, "Europe/Madrid", now)
        deleted_on.update({i: now for i in plan.delete})
        alive = [b for b in alive if b.id not in set(plan.delete)]
        day += timedelta(days=1)
    assert len(deleted_on) == len(made) - len(alive) > 300

    # Then each backup was retired before its copy's lock ended (a lock never ends while
    # retention may still keep the backup), and every survivor's lock still runs at year end
    for backup_id, when in deleted_on.items():
        assert when <= lock_horizon(made[backup_id], POLICY, 2190)
    end = datetime(2026, 12, 31, 23, tzinfo=UTC)
    assert all(lock_horizon(b, POLICY, 2190) >= end for b in alive)
    # and no lock is longer than the longest tier (six months of 31 days)
    assert {lock_horizon(b, POLICY, 2190) - b.created_at for b in made.values()} == {
        timedelta(days=186)
    }


def test_the_lock_horizon_of_kept_pre_restore_and_manual_backups():
    day = date(2026, 3, 1)
    kept = backup(day, keep=True)
    pre = backup(day, Trigger.PRE_RESTORE)
    manual = backup(day, Trigger.MANUAL)
    assert lock_horizon(kept, POLICY, 2190) == kept.created_at + timedelta(days=2190)
    assert lock_horizon(pre, POLICY, 2190) == pre.created_at + timedelta(days=3)
    assert lock_horizon(manual, POLICY, 2190) == manual.created_at + timedelta(days=186)
    # a policy whose daily tier is the longest
    long_daily = replace(POLICY, keep_daily=400, keep_monthly=1)
    assert lock_horizon(manual, long_daily, 2190) == manual.created_at + timedelta(days=400)
