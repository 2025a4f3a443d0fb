"""Retention: which completed backups of a clinic survive, grandfather-father-son. Pure: no
database, no clock; `service.apply_retention` feeds it and soft-deletes what it returns.

Rules, in order (a backup kept by any rule survives):
1. the newest completed backup of the clinic, whatever its trigger, is never deleted;
2. a backup an admin marked `keep` is never deleted;
3. a backup a running restore or verification reads (`backups_in_use`) is never deleted;
4. manual backups are kept until an admin deletes them;
5. `pre_restore` backups are kept for the restore's undo window (`RESTORE_UNDO_DAYS`), after
   which they are deleted like any unkept backup;
6. the platform floor: a scheduled backup younger than `MIN_RETENTION_DAYS` days is kept;
7. GFS over **scheduled** backups, periods in the clinic's time zone: the newest backup of
   each of the newest `keep_daily` days, `keep_weekly` ISO weeks and `keep_monthly` months
   that have a scheduled backup (days without one do not use up the count — the semantics of
   restic's and borg's `--keep-daily` etc.). `keep_daily` counts as at least the floor.
Everything else (scheduled, or pre_restore past its window) is deleted.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Hashable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from clinic_backups.domain.models import BackupRecord, BackupStatus, ClinicSettings, Trigger


@dataclass(frozen=True)
class RetentionPolicy:
    keep_daily: int
    keep_weekly: int
    keep_monthly: int
    min_retention_days: int
    restore_undo_days: int

    @classmethod
    def for_clinic(
        cls, settings: ClinicSettings, min_retention_days: int, restore_undo_days: int
    ) -> RetentionPolicy:
        return cls(
            keep_daily=max(settings.keep_daily, min_retention_days),
            keep_weekly=settings.keep_weekly,
            keep_monthly=settings.keep_monthly,
            min_retention_days=min_retention_days,
            restore_undo_days=restore_undo_days,
        )


@dataclass
class RetentionPlan:
    """Why each kept backup is kept (one or more reasons), and what goes."""

    keep: dict[uuid.UUID, list[str]] = field(default_factory=dict)
    delete: list[uuid.UUID] = field(default_factory=list)


def _newest_per_period(
    backups: Sequence[BackupRecord], count: int, period: Callable[[BackupRecord], Hashable]
) -> set[uuid.UUID]:
    """The newest backup of each of the newest `count` periods that have one."""
    chosen: set[uuid.UUID] = set()
    seen: set[Hashable] = set()
    for backup in backups:  # newest first
        if len(seen) >= count:
            break
        bucket = period(backup)
        if bucket not in seen:
            seen.add(bucket)
            chosen.add(backup.id)
    return chosen


def plan_retention(
    backups: Iterable[BackupRecord],
    policy: RetentionPolicy,
    time_zone: str,
    now: datetime,
    in_use: set[uuid.UUID] | None = None,
) -> RetentionPlan:
    """Decide, for every completed backup given, whether it stays; other statuses are left
    alone (pending/running are in flight, failed/deleted have nothing to retain)."""
    zone = ZoneInfo(time_zone)
    completed = sorted(
        (b for b in backups if b.status == BackupStatus.COMPLETED),
        key=lambda b: (b.created_at, str(b.id)),
        reverse=True,
    )
    in_use = in_use or set()
    floor = now - timedelta(days=policy.min_retention_days)
    undo = now - timedelta(days=policy.restore_undo_days)

    def local(backup: BackupRecord) -> datetime:
        return backup.created_at.astimezone(zone)

    scheduled = [b for b in completed if b.trigger == Trigger.SCHEDULED]
    tiers = {
        "daily": _newest_per_period(scheduled, policy.keep_daily, lambda b: local(b).date()),
        "weekly": _newest_per_period(
            scheduled, policy.keep_weekly, lambda b: local(b).isocalendar()[:2]
        ),
        "monthly": _newest_per_period(
            scheduled, policy.keep_monthly, lambda b: (local(b).year, local(b).month)
        ),
    }
    plan = RetentionPlan()
    for index, backup in enumerate(completed):
        reasons = []
        if index == 0:
            reasons.append("newest")
        if backup.keep:
            reasons.append("keep")
        if backup.id in in_use:
            reasons.append("in_use")
        if backup.trigger == Trigger.MANUAL:
            reasons.append("manual")
        elif backup.trigger == Trigger.PRE_RESTORE:
            if backup.created_at > undo:
                reasons.append("undo_window")
        else:
            if backup.created_at > floor:
                reasons.append("floor")
            reasons.extend(tier for tier, ids in tiers.items() if backup.id in ids)
        if reasons:
            plan.keep[backup.id] = reasons
        else:
            plan.delete.append(backup.id)
    return plan


# The longest a calendar month runs: a monthly tier of n months keeps a backup at most this
# many days per month (an Object Lock may run long; it must never run short).
_MONTH_DAYS = 31


def lock_horizon(record: BackupRecord, policy: RetentionPolicy, keep_lock_days: int) -> datetime:
    """Until when retention could still keep `record`: the end of the longest tier it can be
    kept under (the replica copy's Object Lock). A kept backup has no tier end: `keep_lock_days`.
    A pre-restore backup lives for the undo window; a manual or scheduled one at most as long
    as the longest of the floor and the daily, weekly and monthly tiers."""
    if record.keep:
        return record.created_at + timedelta(days=keep_lock_days)
    if record.trigger == Trigger.PRE_RESTORE:
        return record.created_at + timedelta(days=policy.restore_undo_days)
    days = max(
        policy.min_retention_days,
        policy.keep_daily,
        policy.keep_weekly * 7,
        policy.keep_monthly * _MONTH_DAYS,
    )
    return record.created_at + timedelta(days=days)
