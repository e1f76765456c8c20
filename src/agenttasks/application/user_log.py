"""Reading a selection of task events from the log (one user's, some tasks', all) in pages.

A stream's catch-up must cost what its own user's history costs, not a decode of everybody's
log. Task events carry no owner column, so a small table maps each task to its owner; it is
extended from the log's `Task.Created` events just before a catch-up reads it (one statement
per page of new tasks, shared by every reader), so it is never behind the log it indexes, unlike
a read model. Readers then join the events table with it through indexes, and every read is
bounded by an upper position and a row limit.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any
from uuid import UUID

from eventsourcing.persistence import StoredEvent

from agenttasks.application.store import EventStore, PositionedEvent, read_log
from agenttasks.domain.task import Task

log = logging.getLogger(__name__)

OWNERS = "agenttasks_task_owners"
OWNERS_CURSOR = "agenttasks_task_owners_cursor"
PAGE = 1_000
_LOCK = 0x61677474_6F776E72  # "agttownr": one extender and one DDL run at a time
_TASK_TOPIC = f"{Task.__module__}:{Task.__qualname__}."
_CREATED_TOPIC = f"{Task.__module__}:{Task.Created.__qualname__}"
_COLUMNS = "e.notification_id, e.originator_id, e.originator_version, e.topic, e.state"


@dataclass(frozen=True)
class Selection:
    """Which task events: those of `tasks` if given, else `user`'s (None: every user's)."""

    user: str | None = None
    tasks: Sequence[UUID] | None = None


class UserLog:
    """Bounded reads of a selection's events from the event store, through indexes."""

    def __init__(self, store: EventStore) -> None:
        self.store = store
        self._recorder: Any = store.recorder
        self._postgres = hasattr(self._recorder, "datastore")

    def ensure_tables(self) -> None:
        """Creates the task owner index if it does not exist."""
        if not self._postgres:
            return
        with self._recorder.datastore.transaction(commit=True) as cursor:
            cursor.execute("SELECT pg_advisory_xact_lock(%s)", (_LOCK,))
            cursor.execute(
                f"CREATE TABLE IF NOT EXISTS {OWNERS} "
                f"(task_id uuid PRIMARY KEY, owner text NOT NULL)"
            )
            cursor.execute(f"CREATE INDEX IF NOT EXISTS {OWNERS}_owner ON {OWNERS} (owner)")
            cursor.execute(
                f"CREATE TABLE IF NOT EXISTS {OWNERS_CURSOR} "
                f"(one boolean PRIMARY KEY DEFAULT true, position bigint NOT NULL)"
            )
            cursor.execute(
                f"INSERT INTO {OWNERS_CURSOR} (position) VALUES (0) "  # noqa: S608
                f"ON CONFLICT DO NOTHING"
            )

    def newest(self) -> int:
        """The position of the newest stored event (0 when there is none)."""
        return int(self._recorder.max_notification_id() or 0)

    def count(self, selection: Selection, after: int, upper: int, limit: int) -> int:
        """How many selected events lie in (after, upper], counting no further than `limit`."""
        if not self._postgres:
            return min(len(self._scan(selection, after, upper)), limit)
        if selection.tasks is None and selection.user is not None:
            self._extend_owners(upper)
        query, params = self._bounded("1", selection, after, upper, limit, ordered=False)
        with self._recorder.datastore.transaction(commit=False) as cursor:
            cursor.execute(f"SELECT count(*) AS n FROM ({query}) AS bounded", params)  # noqa: S608
            return int(cursor.fetchone()["n"])

    def page(
        self, selection: Selection, after: int, upper: int, limit: int = PAGE
    ) -> tuple[list[PositionedEvent], int | None]:
        """The first `limit` selected events in (after, upper], decoded, and where to read on.

        Where to read on is None when the page reached `upper`. For a user's selection,
        `count` must have run with this `upper` first (it extends the owner index). An event
        that cannot be decoded is logged and left out.
        """
        if not self._postgres:
            found = self._scan(selection, after, upper)
            return found[:limit], (found[limit - 1].position if len(found) > limit else None)
        query, params = self._bounded(_COLUMNS, selection, after, upper, limit, ordered=True)
        with self._recorder.datastore.transaction(commit=False) as cursor:
            cursor.execute(query, params)
            rows = cursor.fetchall()
        events = [event for row in rows if (event := self._decode(row)) is not None]
        return events, (rows[-1]["notification_id"] if len(rows) == limit else None)

    @property
    def _events(self) -> str:
        return str(self._recorder.events_table_name)

    def _bounded(
        self,
        columns: str,
        selection: Selection,
        after: int,
        upper: int,
        limit: int,
        *,
        ordered: bool,
    ) -> tuple[str, tuple[Any, ...]]:
        # The one shape of every selected read: (after, upper], at most `limit` rows.
        join, where, params = _filter(selection)
        order = "ORDER BY e.notification_id " if ordered else ""
        query = (
            f"SELECT {columns} FROM {self._events} e {join} "  # noqa: S608
            f"WHERE {where} AND e.notification_id > %s AND e.notification_id <= %s "
            f"{order}LIMIT %s"
        )
        return query, (*params, after, upper, limit)

    def _extend_owners(self, upper: int) -> None:
        with self._recorder.datastore.transaction(commit=True) as cursor:
            cursor.execute(f"SELECT position FROM {OWNERS_CURSOR}")  # noqa: S608
            if int(cursor.fetchone()["position"]) >= upper:
                return  # the usual case: indexed already, no lock, no write
            cursor.execute("SELECT pg_advisory_xact_lock(%s)", (_LOCK,))
            cursor.execute(f"SELECT position FROM {OWNERS_CURSOR}")  # noqa: S608
            done = start = int(cursor.fetchone()["position"])  # another reader may have gone on
            while done < upper:
                cursor.execute(
                    f"SELECT {_COLUMNS} FROM {self._events} e "  # noqa: S608
                    f"WHERE e.notification_id > %s AND e.notification_id <= %s "
                    f"AND e.topic = %s ORDER BY e.notification_id LIMIT %s",
                    (done, upper, _CREATED_TOPIC, PAGE),
                )
                rows = cursor.fetchall()
                owners = [
                    (item.event.originator_id, item.event.created_by)
                    for row in rows
                    if (item := self._decode(row)) is not None
                    and isinstance(item.event, Task.Created)
                ]
                if owners:
                    cursor.executemany(
                        f"INSERT INTO {OWNERS} (task_id, owner) VALUES (%s, %s) "  # noqa: S608
                        f"ON CONFLICT DO NOTHING",
                        owners,
                    )
                done = rows[-1]["notification_id"] if len(rows) == PAGE else upper
            if done > start:
                cursor.execute(
                    f"UPDATE {OWNERS_CURSOR} SET position = GREATEST(position, %s)",  # noqa: S608
                    (done,),
                )

    def _decode(self, row: dict[str, Any]) -> PositionedEvent | None:
        stored = StoredEvent(
            row["originator_id"], row["originator_version"], row["topic"], row["state"]
        )
        try:
            return PositionedEvent(
                row["notification_id"], self.store.mapper.to_domain_event(stored)
            )
        except Exception:
            log.exception(
                "event at position %s cannot be decoded; left out", row["notification_id"]
            )
            return None

    def _scan(self, selection: Selection, after: int, upper: int) -> list[PositionedEvent]:
        # The in-memory store (unit tests): no indexes to use, and no log worth indexing.
        owners = {
            item.event.originator_id: item.event.created_by
            for item in read_log(self.store)
            if isinstance(item.event, Task.Created)
        }
        found = []
        for item in read_log(self.store, after):
            task_id = item.event.originator_id
            if item.position > upper or task_id not in owners:
                continue
            if (selection.tasks is not None and task_id in selection.tasks) or (
                selection.tasks is None and selection.user in (None, owners[task_id])
            ):
                found.append(item)
        return found


def _filter(selection: Selection) -> tuple[str, str, tuple[Any, ...]]:
    if selection.tasks is not None:
        return "", "e.originator_id = ANY(%s)", (list(selection.tasks),)
    if selection.user is not None:
        join = f"JOIN {OWNERS} o ON o.task_id = e.originator_id"
        return join, "o.owner = %s", (selection.user,)
    return "", "starts_with(e.topic, %s)", (_TASK_TOPIC,)
