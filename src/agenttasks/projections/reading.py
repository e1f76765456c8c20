"""Reading the event store for a projection: notifications in batches, mapped to bus payloads.

Only the events a projection handles are decoded and mapped: a rebuild reads every
notification, but most of the cost of an event is decoding and mapping it.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import psycopg
from eventsourcing.persistence import Notification, PersistenceError
from eventsourcing.utils import resolve_topic

from agenttasks.application.bus_payloads import BusEventMapper
from agenttasks.application.store import EventStore
from agenttasks.application.undecodable import decoded
from agenttasks.bus.messages import BusEvent
from agenttasks.domain.template import TEMPLATE_KINDS
from agenttasks.domain.updates import KINDS
from agenttasks.projections.base import Projection

BATCH = 5000


def batches(
    store: EventStore, after: int, up_to: int | None = None, *, prefetch: bool = False
) -> Iterator[Sequence[Notification]]:
    """Stored notifications in (after, up_to], undecoded, BATCH at a time.

    With `prefetch`, the next batch is fetched in a thread while the caller works on this one
    (the query mostly waits on Postgres, which runs on another core).
    """

    def fetch(start: int) -> Sequence[Notification]:
        return store.recorder.select_notifications(
            start=start, limit=BATCH, stop=up_to, inclusive_of_start=False
        )

    if not prefetch:
        while batch := fetch(after):
            yield batch
            after = batch[-1].id
        return
    with ThreadPoolExecutor(1, thread_name_prefix="replay-reader") as reader:
        pending = reader.submit(fetch, after)
        while batch := pending.result():
            pending = reader.submit(fetch, batch[-1].id)
            yield batch


class PayloadReader:
    """Decodes and maps the notifications a projection handles; skips the others undecoded."""

    def __init__(self, projection: Projection, store: EventStore, mapper: BusEventMapper) -> None:
        self.projection = projection
        self.store = store
        self.mapper = mapper
        self._concerns: dict[str, bool] = {}

    def payloads(self, notifications: Sequence[Notification]) -> list[BusEvent]:
        """The projection's payloads among `notifications`, in order."""
        events: list[BusEvent] = []
        for notification in notifications:
            topic = notification.topic
            if (wanted := self._concerns.get(topic)) is None:
                wanted = self._concerns[topic] = self._concerned(topic)
            if wanted:
                # A poison event reads as a marker that maps to nothing: no rows, as the live
                # runner does with the relay's SkippedEvent in its place.
                event = decoded(self.store.mapper, notification)
                try:
                    payload = self.mapper.map(event, notification.id)
                except (psycopg.Error, OSError, PersistenceError):
                    raise  # the database, not the event: the replay fails and can be rerun
                except Exception:  # unmappable (the relay published a SkippedEvent for it)
                    payload = None
                if payload is not None:
                    events.append(payload)
        return events

    def _concerned(self, topic: str) -> bool:
        try:
            event_class = resolve_topic(topic)
        except Exception:  # a topic no module defines: the decoder's marker says so
            return True
        return concerns(self.projection, event_class)


def concerns(projection: Projection, event_class: Any) -> bool:
    """Whether the projection handles events of this stored class."""
    if (kind := KINDS.get(event_class)) is not None:
        return kind in projection.task_handlers
    if (kind := TEMPLATE_KINDS.get(event_class)) is not None:
        return kind in projection.template_handlers
    return True  # an event some other mapper may know: let the mapper decide
