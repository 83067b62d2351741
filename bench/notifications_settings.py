"""Settings of the notifications bench's processes: the real settings, with the Twilio
provider's ceiling and the SMS channel's named limit taken from the bench's command line
(the seed's 1 SMS/s per sender number would make a 10,000-recipient batch take hours)."""

import os

from config.settings import *  # noqa: F403
from config.settings import TASKYARD_PROVIDERS, TASKYARD_RATE_LIMITS

TASKYARD_PROVIDERS = {
    **TASKYARD_PROVIDERS,
    "twilio": {
        **TASKYARD_PROVIDERS["twilio"],
        "rate_limit": os.environ.get("BENCH_TWILIO_CEILING", "10/s"),
    },
}
TASKYARD_RATE_LIMITS = {
    **TASKYARD_RATE_LIMITS,
    "notifications.sms": os.environ.get("BENCH_TWILIO_CEILING", "10/s"),
}
