"""The intake's cumulative ack is sent only over an unbroken run of its own deliveries."""

from __future__ import annotations

from agenttasks.bus.consumers import Delivery, PullConsumer
from agenttasks.webhooks.intake import IntakeConsumer


class Message:
    """What a Delivery settles through (the bus's message), recording its acks."""

    def __init__(self, acks: list[int], sequence: int) -> None:
        self.acks, self.sequence = acks, sequence

    async def ack(self) -> None:
        self.acks.append(self.sequence)


def deliveries(acks: list[int], *pairs: tuple[int, int]) -> list[Delivery]:
    """Deliveries of (stream sequence, consumer sequence)."""
    return [Delivery(b"", 1, Message(acks, s), s, c) for s, c in pairs]


def test_a_delivery_that_skips_a_consumer_sequence_does_not_follow() -> None:
    intake = IntakeConsumer(PullConsumer(None), expected=5)
    first, second, after_a_gap = deliveries([], (10, 5), (12, 6), (13, 8))
    assert intake.follows(first)
    assert intake.follows(second)
    assert not intake.follows(after_a_gap), "consumer sequence 7 went elsewhere"
    assert intake.expected == 7


async def test_the_batch_is_acknowledged_once_through_its_highest_stream_sequence() -> None:
    acks: list[int] = []
    intake = IntakeConsumer(PullConsumer(None), expected=1)
    # A redelivery (stream sequence 3) may come after newer messages: the ack is through 9.
    batch = deliveries(acks, (8, 1), (9, 2), (3, 3))
    assert all(intake.follows(d) for d in batch)
    await intake.ack_through(batch)
    assert acks == [9]
