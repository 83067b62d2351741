"""Which backups to keep: grandfather-father-son rotation as a pure function.

The rule is restic's ``--keep-daily/--keep-weekly/--keep-monthly``: keep the newest
usable backup of each of the ``daily`` most recent calendar days that have one, of each
of the ``weekly`` most recent ISO weeks that have one, and of each of the ``monthly``
most recent months that have one; and every usable backup younger than ``within_hours``
(restic's --keep-within), so a backup taken by hand before a risky change does not push
out the night's one on the same day. The period rules are independent (one backup may
satisfy several) and count only periods that have a backup, so backups that stop being
made are never rotated away. Days, weeks and months are those of the business time zone.

A backup that failed (or whose verification failed) counts for no period; its file is
kept ``daily`` days for an operator to look at, then deleted.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Hashable, Iterable
from dataclasses import dataclass
from typing import Generic, TypeVar
from zoneinfo import ZoneInfo

K = TypeVar("K", bound=Hashable)


@dataclass(frozen=True)
class RetentionPolicy:
    daily: int = 7
    weekly: int = 4
    monthly: int = 12
    within_hours: int = 24

    @classmethod
    def from_settings(cls, keep: dict[str, int]) -> RetentionPolicy:
        return cls(**{name: keep[name] for name in cls.__dataclass_fields__ if name in keep})


@dataclass(frozen=True)
class Candidate(Generic[K]):
    key: K
    created_at: dt.datetime  # aware
    usable: bool = True


def _day(moment: dt.date) -> tuple[int, ...]:
    return (moment.year, moment.month, moment.day)


def _week(moment: dt.date) -> tuple[int, ...]:
    year, week, _ = moment.isocalendar()
    return (year, week)


def _month(moment: dt.date) -> tuple[int, ...]:
    return (moment.year, moment.month)


def _newest_per_period(
    ordered: list[Candidate[K]],
    period: Callable[[dt.date], tuple[int, ...]],
    count: int,
    zone: ZoneInfo,
) -> set[K]:
    kept: set[K] = set()
    seen: set[tuple[int, ...]] = set()
    for candidate in ordered:  # newest first
        if len(seen) >= count:
            break
        bucket = period(candidate.created_at.astimezone(zone).date())
        if bucket not in seen:
            seen.add(bucket)
            kept.add(candidate.key)
    return kept


def backups_to_keep(
    candidates: Iterable[Candidate[K]],
    policy: RetentionPolicy,
    *,
    now: dt.datetime,
    zone: ZoneInfo,
) -> set[K]:
    """The keys of the backups to keep under ``policy``; every other one may be deleted."""
    everything = sorted(candidates, key=lambda c: c.created_at, reverse=True)
    usable = [c for c in everything if c.usable]
    kept = _newest_per_period(usable, _day, policy.daily, zone)
    kept |= _newest_per_period(usable, _week, policy.weekly, zone)
    kept |= _newest_per_period(usable, _month, policy.monthly, zone)
    recent_since = now - dt.timedelta(hours=policy.within_hours)
    kept |= {c.key for c in usable if c.created_at >= recent_since}
    failed_since = now - dt.timedelta(days=policy.daily)
    kept |= {c.key for c in everything if not c.usable and c.created_at >= failed_since}
    return kept
