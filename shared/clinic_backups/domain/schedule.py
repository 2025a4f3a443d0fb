"""Schedule arithmetic: which slots of a clinic fall in a time range, and what a scheduler run
should do with each. Pure functions (zoneinfo, no database, no clock): unit-tested directly.

A **slot** is (clinic, local date, scheduled local hour). Its instant is that wall-clock time in
the clinic's time zone, with two rules where the wall clock is not one-to-one:
- a local time that does not exist (spring forward: 02:00 in Madrid on the last Sunday of
  March) runs at the first local time that exists after the gap (03:00 in Madrid);
- a local time that exists twice (fall back: 02:00 on the last Sunday of October) runs once,
  at its first occurrence; the second maps to the same slot, which the database refuses to
  claim twice.
Half- and quarter-hour offsets (Asia/Kolkata +05:30, Asia/Kathmandu +05:45) need nothing
special: the instant is whatever UTC time the local hour is; the hourly run picks it up at its
first run after that instant.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from enum import StrEnum
from zoneinfo import ZoneInfo

from clinic_backups.domain.models import ClinicSettings, SlotRecord, SlotStatus

# A run that claimed a slot and then died leaves it `due`; after this the next run may take it.
CLAIM_TIMEOUT = timedelta(minutes=15)
# How far back a run looks for slots to record as missed (beyond the catch-up window).
MISSED_LOOKBACK = timedelta(hours=24)


@dataclass(frozen=True, order=True)
class Slot:
    scheduled_at: datetime  # UTC instant
    local_date: date
    local_hour: int

    @property
    def key(self) -> tuple[date, int]:
        return (self.local_date, self.local_hour)


def _exists(local: datetime, zone: ZoneInfo) -> bool:
    """Whether a naive wall time exists in `zone` (it round-trips through UTC)."""
    aware = local.replace(tzinfo=zone)
    back = aware.astimezone(UTC).astimezone(zone).replace(tzinfo=None)
    return back == local


def slot_instant(local_date: date, hour: int, zone: ZoneInfo) -> datetime:
    """The UTC instant of `hour`:00 on `local_date` in `zone` (see the module's DST rules)."""
    wall = datetime.combine(local_date, time(hour))
    if _exists(wall, zone):
        # fold=0: the first of two occurrences in a repeated (fall back) hour.
        return wall.replace(tzinfo=zone, fold=0).astimezone(UTC)
    # In a gap: both readings of the wall time bracket the transition; the transition instant
    # is the first moment the wall clock shows a time after the gap.
    low = wall.replace(tzinfo=zone, fold=1).astimezone(UTC)
    high = wall.replace(tzinfo=zone, fold=0).astimezone(UTC)
    low, high = min(low, high), max(low, high)
    offset_before = low.astimezone(zone).utcoffset()
    while high - low > timedelta(minutes=1):
        middle = low + (high - low) / 2
        middle = middle.replace(second=0, microsecond=0)
        if middle <= low:
            break
        if middle.astimezone(zone).utcoffset() == offset_before:
            low = middle
        else:
            high = middle
    return high


def slots_between(settings: ClinicSettings, since: datetime, until: datetime) -> list[Slot]:
    """The clinic's slots whose instant is in (since, until], oldest first (empty when the
    schedule is disabled)."""
    if not settings.enabled:
        return []
    zone = ZoneInfo(settings.time_zone)
    first = since.astimezone(zone).date() - timedelta(days=1)
    last = until.astimezone(zone).date() + timedelta(days=1)
    slots = []
    day = first
    while day <= last:
        if day.isoweekday() in settings.weekdays:
            instant = slot_instant(day, settings.hour, zone)
            if since < instant <= until:
                slots.append(Slot(instant, day, settings.hour))
        day += timedelta(days=1)
    return sorted(slots)


def next_slot(settings: ClinicSettings, after: datetime) -> Slot | None:
    """The first slot strictly after `after` (None when the schedule is disabled)."""
    found = slots_between(settings, after, after + timedelta(days=8))
    return found[0] if found else None


def schedule_period(weekdays: Iterable[int]) -> timedelta:
    """The longest gap between two scheduled days: 1 day for a daily schedule, 7 for weekly."""
    days = sorted(set(weekdays))
    if not days:
        return timedelta(days=7)
    gaps = [(days[(i + 1) % len(days)] - day) % 7 or 7 for i, day in enumerate(days)]
    return timedelta(days=max(gaps))


class Action(StrEnum):
    RUN = "run"  # a new slot within the catch-up window: claim it and enqueue
    RETRY = "retry"  # skipped_busy (or an abandoned claim) within the window: try again
    RECOVER = "recover"  # an abandoned claim: see whether its backup exists before retrying
    MISS = "miss"  # beyond the window without a backup: record it as missed


@dataclass(frozen=True)
class Decision:
    slot: Slot
    action: Action


def decide(
    settings: ClinicSettings,
    rows: Mapping[tuple[date, int], SlotRecord],
    now: datetime,
    catch_up: timedelta,
    lookback: timedelta = MISSED_LOOKBACK,
    claim_timeout: timedelta = CLAIM_TIMEOUT,
) -> list[Decision]:
    """What one scheduler run should do for one clinic, given the slots already recorded.

    Slots within `catch_up` of their instant run (once: the claim is the database's); older
    ones, back to `catch_up + lookback`, are recorded as missed unless they ran. A slot that
    existed only under settings saved after its instant is not reported as missed.
    """
    decisions = []
    for slot in slots_between(settings, now - catch_up - lookback, now):
        row = rows.get(slot.key)
        within = now < slot.scheduled_at + catch_up
        abandoned = (
            row is not None
            and row.status == SlotStatus.DUE
            and row.decided_at < now - claim_timeout
        )
        if row is None:
            if within:
                decisions.append(Decision(slot, Action.RUN))
            elif settings.updated_at is None or slot.scheduled_at >= settings.updated_at:
                decisions.append(Decision(slot, Action.MISS))
        elif row.status == SlotStatus.SKIPPED_BUSY:
            decisions.append(Decision(slot, Action.RETRY if within else Action.MISS))
        elif abandoned:
            decisions.append(Decision(slot, Action.RECOVER))
        # enqueued, missed, or due and being enqueued by another run right now: nothing to do
    return decisions


def is_stale(
    settings: ClinicSettings,
    last_good_at: datetime | None,
    first_slot_at: datetime | None,
    now: datetime,
    catch_up: timedelta,
    margin: timedelta = timedelta(hours=1),
) -> bool:
    """Whether a clinic with an enabled schedule lacks a recent good backup: its newest
    completed backup is older than the schedule's period plus the catch-up window plus a
    margin (or it never had one, and its first slot is older than catch-up plus margin)."""
    if not settings.enabled:
        return False
    if last_good_at is None:
        return first_slot_at is not None and now - first_slot_at > catch_up + margin
    return now - last_good_at > schedule_period(settings.weekdays) + catch_up + margin
