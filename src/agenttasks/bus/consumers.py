"""Durable pull consumers on the event stream, for processes that must see every event.

The consumer's config is declared with `add_consumer` every time (NOTES: `pull_subscribe` on an
existing durable silently ignores a new config), then bound to. Callers get `Delivery` objects
and never touch nats-py themselves.
"""

from __future__ import annotations

from dataclasses import dataclass

from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
from nats.js.client import JetStreamContext
from nats.js.errors import NotFoundError

from agenttasks.bus.messages import ALL_SUBJECTS, STREAM


class StreamMissing(RuntimeError):
    """The event stream does not exist yet (the relay creates it when it first leads)."""


@dataclass
class Delivery:
    """One delivered message: its payload, and how to settle it."""

    data: bytes
    delivered: int  # how many times it has been delivered, this one included
    _message: object

    async def ack(self) -> None:
        """Done with it: never deliver it again."""
        await self._message.ack()  # type: ignore[attr-defined]

    async def nak(self, delay: float | None = None) -> None:
        """Not now: deliver it again (after `delay` seconds)."""
        await self._message.nak(delay=delay)  # type: ignore[attr-defined]

    async def in_progress(self) -> None:
        """Still working on it: restart the redelivery timer."""
        await self._message.in_progress()  # type: ignore[attr-defined]


class PullConsumer:
    """A durable pull consumer, shared by every process that binds to the same name."""

    def __init__(self, subscription: object) -> None:
        self._subscription = subscription

    @classmethod
    async def bind(
        cls,
        js: JetStreamContext,
        name: str,
        *,
        subjects: list[str] | None = None,
        ack_wait: float = 30.0,
        max_deliver: int = -1,
        max_ack_pending: int = 1000,
    ) -> PullConsumer:
        """Declares (or updates) consumer `name` and binds to it."""
        filters = subjects or [ALL_SUBJECTS]
        filtering = (
            {"filter_subject": filters[0]} if len(filters) == 1 else {"filter_subjects": filters}
        )
        config = ConsumerConfig(
            durable_name=name,
            ack_policy=AckPolicy.EXPLICIT,
            deliver_policy=DeliverPolicy.ALL,
            ack_wait=ack_wait,
            max_deliver=max_deliver,
            max_ack_pending=max_ack_pending,
            **filtering,
        )
        try:
            await js.add_consumer(STREAM, config)
        except NotFoundError:
            raise StreamMissing(f"stream {STREAM} does not exist yet") from None
        return cls(await js.pull_subscribe_bind(durable=name, stream=STREAM))

    async def fetch(self, batch: int, wait: float) -> list[Delivery]:
        """Up to `batch` messages, waiting at most `wait` seconds for the first."""
        try:
            messages = await self._subscription.fetch(batch, timeout=wait)  # type: ignore[attr-defined]
        except TimeoutError:  # nats-py raises its own subclass, or asyncio's, when nothing came
            return []
        return [Delivery(m.data, m.metadata.num_delivered, m) for m in messages]

    async def close(self) -> None:
        """Stops fetching (the durable consumer and its position stay on the server)."""
        await self._subscription.unsubscribe()  # type: ignore[attr-defined]
