"""The asyncio client: the same calls as `Client`, awaited."""

from __future__ import annotations

import asyncio
import builtins
from collections.abc import AsyncGenerator
from types import TracebackType
from typing import Any
from uuid import UUID

import httpx

from agenttasks.client import calls
from agenttasks.client.models import Followed, StoredEvent, Task, TaskPage, Update
from agenttasks.client.options import Options, Reconnects, RetryableStatus
from agenttasks.client.sse import FollowState, SseParser, ended


class AsyncClient:
    """The agenttasks HTTP API for asyncio: `async with AsyncClient(url, token) as client`."""

    def __init__(
        self,
        base_url: str,
        token: str,
        *,
        options: Options | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.options = options or Options()
        self._http = httpx.AsyncClient(
            base_url=base_url,
            headers={"Authorization": f"Bearer {token}"},
            timeout=self.options.timeout,
            transport=transport,
            trust_env=False,
        )

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Closes the connections."""
        await self._http.aclose()

    async def create(
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
        return calls.decode(await self._send(call), Task)

    async def get(self, task_id: UUID | str, min_position: int | None = None) -> Task:
        """One task; with `min_position`, once it reflects that position (a seen update's)."""
        return calls.decode(await self._send(calls.task(task_id, min_position=min_position)), Task)

    async def cancel(self, task_id: UUID | str, reason: str = "") -> Task:
        """Cancels a pending or running task; the task after the change."""
        body = {"reason": reason} if reason else None
        return calls.decode(await self._send(calls.task(task_id, "cancel", body)), Task)

    async def retry(self, task_id: UUID | str) -> Task:
        """Retries a failed or cancelled task as a new attempt; the task after the change."""
        return calls.decode(await self._send(calls.task(task_id, "retry")), Task)

    async def page(self, page: int = 1, page_size: int = 20, **filters: str | None) -> TaskPage:
        """One page of the task list (filters: status, task_type, priority, search, ordering)."""
        call = calls.listing(page_size, page=str(page), **filters)
        return calls.decode(await self._send(call), TaskPage)

    async def list(
        self, *, page_size: int = 100, **filters: str | None
    ) -> AsyncGenerator[Task, None]:
        """Every task the filters select, page after page, each once."""
        seen: set[UUID] = set()
        call: calls.Call | None = calls.listing(page_size, **filters)
        while call is not None:
            page = calls.decode(await self._send(call), TaskPage)
            for task in calls.unseen(page.results, seen):
                yield task
            call = calls.following(call, page.next)

    async def updates(
        self, task_id: UUID | str, after: int | None = None, min_position: int | None = None
    ) -> builtins.list[Update]:
        """The task's update history (after a position), oldest first, every page; with
        `min_position`, once it reflects that position."""
        call = calls.history(task_id, "updates", after, min_position)
        return await self._all(call, Update)

    async def events(self, task_id: UUID | str) -> builtins.list[StoredEvent]:
        """The task's stored events, from the event store itself."""
        return await self._all(calls.history(task_id, "events"), StoredEvent)

    async def follow(
        self, task_id: UUID | str, *, after: int | None = None
    ) -> AsyncGenerator[Followed, None]:
        """The task's updates (after `after`, else from its start) until its final update.

        Reconnects after a dropped connection, resuming after the last position it passed on:
        no update is missed or repeated. A `Resync` stands for history the server would not
        replay (read the task with `get`); updates go on after its position. Stopping early:
        close it (`contextlib.aclosing`) so its connection is released at once.
        """
        state = FollowState(UUID(str(task_id)), after)
        tries = Reconnects(self.options)
        while True:
            tries.connecting()
            try:
                async with self._http.stream(
                    "GET", state.path, headers=state.headers(), timeout=self.options.stream_timeouts
                ) as response:
                    if response.status_code != 200:
                        await response.aread()
                        raise calls.stream_failure(response)
                    parser = SseParser(self.options.max_message_bytes)
                    async for chunk in response.aiter_bytes():
                        for message in parser.feed(chunk):
                            item = state.take(message)
                            if item is None:
                                continue
                            tries.passed()
                            yield item
                            if state.may_end(item) and ended(
                                await self.events(task_id), item.position
                            ):
                                return
            except (httpx.TransportError, RetryableStatus) as error:
                await asyncio.sleep(tries.after_error(error))
                continue
            # The stream ended without the final update (the API shutting down, or a retry
            # follows the failure it ended on): reconnect at once, or after a pause if it
            # brought nothing.
            await asyncio.sleep(tries.after_end())

    async def _all(self, call: calls.Call, kind: type[calls.T]) -> builtins.list[calls.T]:
        everything: builtins.list[calls.T] = []
        following: calls.Call | None = call
        while following is not None:
            found, link = calls.items(await self._send(following), kind)
            everything.extend(found)
            following = calls.following(following, link)
        return everything

    async def _send(self, call: calls.Call) -> httpx.Response:
        return await self._http.request(
            call.method, call.path, params=call.params, json=call.json, headers=call.headers
        )
