"""The blocking client."""

from __future__ import annotations

import builtins
import time
from collections.abc import Iterator
from types import TracebackType
from typing import Any
from uuid import UUID

import httpx

from agenttasks.client import calls
from agenttasks.client.models import Followed, StoredEvent, Task, TaskPage, Update
from agenttasks.client.options import Options, Reconnects, RetryableStatus
from agenttasks.client.sse import FollowState, SseParser, ended


class Client:
    """The agenttasks HTTP API: `Client("http://127.0.0.1:8000", token)`; close it after use."""

    def __init__(
        self,
        base_url: str,
        token: str,
        *,
        options: Options | None = None,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.options = options or Options()
        self._http = httpx.Client(
            base_url=base_url,
            headers={"Authorization": f"Bearer {token}"},
            timeout=self.options.timeout,
            transport=transport,
            trust_env=False,
        )

    def __enter__(self) -> Client:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        """Closes the connections."""
        self._http.close()

    def create(
        self,
        title: str,
        task_type: str,
        task_config: dict[str, Any],
        *,
        priority: str | None = None,
        max_retries: int | None = None,
        timeout_seconds: int | None = None,
        idempotency_key: str | None = None,
    ) -> Task:
        """Creates a task; the same `idempotency_key` again returns the first task."""
        call = calls.create(
            title,
            task_type,
            task_config,
            priority=priority,
            max_retries=max_retries,
            timeout_seconds=timeout_seconds,
            idempotency_key=idempotency_key,
        )
        return calls.decode(self._send(call), Task)

    def get(self, task_id: UUID | str, min_position: int | None = None) -> Task:
        """One task; with `min_position`, once it reflects that position (a seen update's)."""
        return calls.decode(self._send(calls.task(task_id, min_position=min_position)), Task)

    def cancel(self, task_id: UUID | str, reason: str = "") -> Task:
        """Cancels a pending or running task; the task after the change."""
        body = {"reason": reason} if reason else None
        return calls.decode(self._send(calls.task(task_id, "cancel", body)), Task)

    def retry(self, task_id: UUID | str) -> Task:
        """Retries a failed or cancelled task as a new attempt; the task after the change."""
        return calls.decode(self._send(calls.task(task_id, "retry")), Task)

    def page(self, page: int = 1, page_size: int = 20, **filters: str | None) -> TaskPage:
        """One page of the task list (filters: status, task_type, priority, search, ordering)."""
        call = calls.listing(page_size, page=str(page), **filters)
        return calls.decode(self._send(call), TaskPage)

    def list(self, *, page_size: int = 100, **filters: str | None) -> Iterator[Task]:
        """Every task the filters select, page after page, each once."""
        seen: set[UUID] = set()
        call: calls.Call | None = calls.listing(page_size, **filters)
        while call is not None:
            page = calls.decode(self._send(call), TaskPage)
            yield from calls.unseen(page.results, seen)
            call = calls.following(call, page.next)

    def updates(
        self, task_id: UUID | str, after: int | None = None, min_position: int | None = None
    ) -> builtins.list[Update]:
        """The task's update history (after a position), oldest first, every page; with
        `min_position`, once it reflects that position."""
        call = calls.history(task_id, "updates", after, min_position)
        return self._all(call, Update)

    def events(self, task_id: UUID | str) -> builtins.list[StoredEvent]:
        """The task's stored events, from the event store itself."""
        return self._all(calls.history(task_id, "events"), StoredEvent)

    def follow(self, task_id: UUID | str, *, after: int | None = None) -> Iterator[Followed]:
        """The task's updates (after `after`, else from its start) until its final update.

        Reconnects after a dropped connection, resuming after the last position it passed on:
        no update is missed or repeated. A `Resync` stands for history the server would not
        replay (read the task with `get`); updates go on after its position.
        """
        state = FollowState(UUID(str(task_id)), after)
        tries = Reconnects(self.options)
        while True:
            tries.connecting()
            try:
                with self._http.stream(
                    "GET", state.path, headers=state.headers(), timeout=self.options.stream_timeouts
                ) as response:
                    if response.status_code != 200:
                        response.read()
                        raise calls.stream_failure(response)
                    parser = SseParser(self.options.max_message_bytes)
                    for chunk in response.iter_bytes():
                        for message in parser.feed(chunk):
                            item = state.take(message)
                            if item is None:
                                continue
                            tries.passed()
                            yield item
                            if state.may_end(item) and ended(self.events(task_id), item.position):
                                return
            except (httpx.TransportError, RetryableStatus) as error:
                time.sleep(tries.after_error(error))
                continue
            # The stream ended without the final update (the API shutting down, or a retry
            # follows the failure it ended on): reconnect at once, or after a pause if it
            # brought nothing.
            time.sleep(tries.after_end())

    def _all(self, call: calls.Call, kind: type[calls.T]) -> builtins.list[calls.T]:
        everything: builtins.list[calls.T] = []
        following: calls.Call | None = call
        while following is not None:
            found, link = calls.items(self._send(following), kind)
            everything.extend(found)
            following = calls.following(following, link)
        return everything

    def _send(self, call: calls.Call) -> httpx.Response:
        return self._http.request(
            call.method, call.path, params=call.params, json=call.json, headers=call.headers
        )
