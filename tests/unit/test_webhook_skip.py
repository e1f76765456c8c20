"""The deliverer passes over endings nobody asked for by their subject, before any decode."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from psycopg_pool import AsyncConnectionPool

from agenttasks.bus.consumers import Delivery
from agenttasks.bus.messages import TaskEvent, encode, subject_of
from agenttasks.webhooks.deliverer import Deliverer, DeliveryOptions

TASK = "0b6f5a52-7a43-4a8e-9a0e-2f1d3c4b5a69"


class Message:
    """What the bus hands over: a subject and a payload."""

    def __init__(self, subject: str, data: bytes) -> None:
        self.subject, self.data = subject, data


def event(kind: str, **data: Any) -> TaskEvent:
    return TaskEvent(
        position=7, task_id=TASK, type=kind, version=1, timestamp=datetime.now(UTC),
        user="alice", task_type="data_analysis", priority="normal", update_type="status",
        status="queued", progress=0, message="", data=data,
    )  # fmt: skip


def delivery(message: TaskEvent, payload: bytes | None = None) -> Delivery:
    data = encode(message) if payload is None else payload
    return Delivery(data, 1, Message(subject_of(message), data))


def deliverer(owners_with_endpoints: frozenset[str] | None) -> Deliverer:
    pool: AsyncConnectionPool[Any] = AsyncConnectionPool("postgresql:///unused", open=False)
    running = Deliverer(pool, None, None, None, DeliveryOptions(), "s" * 32)  # type: ignore[arg-type]
    running.owners._owners = owners_with_endpoints  # as read from webhook_endpoints
    return running


async def test_an_ending_of_a_task_without_url_whose_owner_has_no_endpoint_is_never_decoded() -> (
    None
):
    running = deliverer(frozenset({"bob"}))
    # A real Created, with every field it is published with: only three are read.
    created = event("created", webhook_url=None, title="t", config={"webhook_url": "x"})
    assert await running._take(delivery(created)) is False
    assert running.task_urls.get(TASK) == (True, None)
    assert running.task_urls.owner_without_url(TASK) == "alice"
    # Not JSON at all: only the subject can have told the deliverer to pass it over.
    assert await running._take(delivery(event("completed"), b"\x00 not json")) is False
    assert running.skipped == 1


async def test_an_ending_someone_asked_for_is_decoded_and_not_passed_over() -> None:
    for owners, url in (
        (frozenset({"alice"}), None),
        (None, None),
        (frozenset(), "https://x.example/h"),
    ):
        running = deliverer(owners)
        await running._take(delivery(event("created", webhook_url=url)))
        # The payload is garbage: had it been passed over by subject, `skipped` would count it.
        assert await running._take(delivery(event("completed"), b"\x00 not json")) is False
        assert running.skipped == 0, (owners, url)


async def test_a_created_without_the_field_teaches_nothing() -> None:
    running = deliverer(frozenset())
    await running._take(delivery(event("created")))
    assert running.task_urls.get(TASK) == (False, None), "the store is asked, as before"
