"""What every channel does: find a recipient's address, send one rendered message."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import TYPE_CHECKING, ClassVar, Protocol

from queueing import PermanentError

if TYPE_CHECKING:
    from notifications.models import Message, Recipient


@dataclass(frozen=True)
class SendResult:
    """What the provider answered for one accepted message."""

    provider_message_id: str = ""
    cost: Decimal | None = None
    cost_unit: str = ""
    # Push services and webhook endpoints answer synchronously: accepted means delivered.
    delivered: bool = False


class Undeliverable(PermanentError):
    """The provider refused this message for good (invalid number, expired push
    subscription, an endpoint disabled): no retry; the message is marked failed, and with
    ``suppress_address`` its address is suppressed on its channel (never tried again)."""

    def __init__(self, message: str, *, suppress_address: bool = False) -> None:
        super().__init__(message)
        self.suppress_address = suppress_address


class Channel(Protocol):
    name: ClassVar[str]
    #: the named global rate limit of TASKYARD_RATE_LIMITS this channel's jobs take
    rate_limit: ClassVar[str]

    def address(self, recipient: Recipient) -> str:
        """Where this recipient gets messages on this channel; "" when nowhere."""
        ...

    def send(self, message: Message) -> SendResult:
        """Send one rendered message through the provider guard; raise for the job's
        retry policy (Undeliverable when retrying cannot help)."""
        ...
