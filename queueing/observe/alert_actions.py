"""An operator's answers to an open alert: acknowledge it (someone is on it), snooze it
(quiet until a time), or take either back. Each is a method of the platform, used by the
admin and the API alike; both write the audit event. What the answers change in the
notifications is described in alerts.check()."""

from __future__ import annotations

import datetime as dt

from django.db import transaction
from django.utils import timezone

from queueing.models import Alert, AlertStatus

# The longest snooze: a week. Longer is a threshold that is wrong; change the threshold.
MAX_SNOOZE_MINUTES = 7 * 24 * 60


class AlertActionError(ValueError):
    """The alert cannot take this answer (it is resolved already, or the value is wrong)."""


def _open_alert(alert_id: int) -> Alert:
    alert = Alert.objects.select_for_update().filter(id=alert_id).first()
    if alert is None:
        raise Alert.DoesNotExist(f"no alert {alert_id}")
    if alert.status != AlertStatus.OPEN:
        raise AlertActionError(f"alert {alert.key} is {alert.status}: only open alerts take this")
    return alert


def state_of(alert: Alert) -> dict:
    """What an audit event records before and after an answer."""
    return {
        "acknowledged": alert.acknowledged_at is not None,
        "snoozed_until": alert.snoozed_until.isoformat() if alert.snoozed_until else None,
        "note": alert.note,
    }


def acknowledge(alert_id: int, *, user, note: str = "") -> tuple[Alert, dict]:
    """Mark an open alert acknowledged by ``user``. Returns it and its state before."""
    with transaction.atomic():
        alert = _open_alert(alert_id)
        before = state_of(alert)
        alert.acknowledged_at, alert.acknowledged_by = timezone.now(), user
        alert.note = note or alert.note
        alert.save(update_fields=["acknowledged_at", "acknowledged_by", "note"])
    return alert, before


def snooze(alert_id: int, *, user, minutes: int, note: str = "") -> tuple[Alert, dict]:
    """Quiet an open alert for ``minutes`` (1 to MAX_SNOOZE_MINUTES)."""
    if not isinstance(minutes, int) or isinstance(minutes, bool):
        raise AlertActionError("minutes must be a whole number")
    if not 1 <= minutes <= MAX_SNOOZE_MINUTES:
        raise AlertActionError(f"minutes must be between 1 and {MAX_SNOOZE_MINUTES}")
    with transaction.atomic():
        alert = _open_alert(alert_id)
        before = state_of(alert)
        alert.snoozed_until = timezone.now() + dt.timedelta(minutes=minutes)
        alert.note = note or alert.note
        alert.save(update_fields=["snoozed_until", "note"])
    return alert, before


def unacknowledge(alert_id: int, *, user) -> tuple[Alert, dict]:
    """Take back an acknowledgement and a snooze: the alert notifies as a new one would."""
    with transaction.atomic():
        alert = _open_alert(alert_id)
        before = state_of(alert)
        alert.acknowledged_at = alert.acknowledged_by = alert.snoozed_until = None
        alert.save(update_fields=["acknowledged_at", "acknowledged_by", "snoozed_until"])
    return alert, before
