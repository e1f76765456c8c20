"""A task's updates and events page like the lists (issue 14, item 5): `count`, `next` and
`previous` links, bounded page sizes, and nothing left out past 1,000 (the updates list used to
stop there without saying so)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any
from uuid import UUID

import pytest

from agenttasks.domain.task import Task
from agenttasks.servers.nats import EmbeddedNats
from tests.integration.api_client import Api, bearer, running_api

BASE = "/api/v1/utils"
ALICE = bearer("alice")
PIECES = 1_010  # more than the old silent cap of 1,000


@pytest.fixture
async def api(database_url: str, nats_server: EmbeddedNats) -> AsyncIterator[Api]:
    async with running_api(database_url, nats_server) as api:
        yield api


async def long_task(api: Api, pieces: int) -> str:
    """A running task with `pieces` streamed partial results, saved in one transaction."""
    body = {"title": "Long", "task_type": "summary", "task_config": {"content": "x"}}
    created = await api.client.post(f"{BASE}/ai-tasks/", json=body, headers=ALICE)
    assert created.status_code == 201, created.text
    task_id = created.json()["id"]
    task: Task = api.stack.store.repository.get(UUID(task_id))
    task.start(1, "w1")
    for number in range(pieces):
        task.record_result(1, {"partial": {"offset": number, "text": "a"}})
    api.stack.store.save(task)
    await api.stack.projected()
    return task_id


async def every_page(api: Api, url: str) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(every item, every page) following the `next` links from `url`."""
    items: list[dict[str, Any]] = []
    pages: list[dict[str, Any]] = []
    link: str | None = url
    while link is not None:
        answer = await api.client.get(link, headers=ALICE)
        assert answer.status_code == 200, answer.text
        page = answer.json()
        pages.append(page)
        items.extend(page["results"])
        link = page["next"]
    return items, pages


async def test_updates_past_a_thousand_are_all_reached_page_by_page(api: Api) -> None:
    task_id = await long_task(api, PIECES)
    updates, pages = await every_page(api, f"{BASE}/ai-tasks/{task_id}/updates/")
    total = PIECES + 2  # created, started, the pieces
    assert len(updates) == total
    assert {page["count"] for page in pages} == {total}
    assert [len(page["results"]) for page in pages] == [100] * 10 + [12]
    positions = [u["position"] for u in updates]
    assert positions == sorted(set(positions))
    assert pages[0]["previous"] is None
    assert pages[1]["previous"] is not None
    # The flat fields of the guide's clients ride along on every page.
    pieces = [u for u in updates if u["type"] == "result"]
    assert [u["partial"]["offset"] for u in pieces] == list(range(PIECES))
    assert all(u["progress_percentage"] == u["progress"] for u in updates)
    assert updates[0]["partial"] is None


async def test_after_and_page_size_narrow_the_updates_and_the_links_keep_them(api: Api) -> None:
    task_id = await long_task(api, 30)
    first = (await api.client.get(f"{BASE}/ai-tasks/{task_id}/updates/", headers=ALICE)).json()
    after = first["results"][9]["position"]
    url = f"{BASE}/ai-tasks/{task_id}/updates/?after={after}&page_size=7"
    later, pages = await every_page(api, url)
    assert later == first["results"][10:]
    assert {page["count"] for page in pages} == {22}
    assert len(pages) == 4
    assert f"after={after}" in pages[0]["next"]
    assert "page_size=7" in pages[0]["next"]


async def test_events_page_like_the_updates(api: Api) -> None:
    task_id = await long_task(api, 250)
    updates, _ = await every_page(api, f"{BASE}/ai-tasks/{task_id}/updates/?page_size=1000")
    events, pages = await every_page(api, f"{BASE}/ai-tasks/{task_id}/events/?page_size=60")
    assert [e["position"] for e in events] == [u["position"] for u in updates]
    assert [len(page["results"]) for page in pages] == [60, 60, 60, 60, 12]
    assert {page["count"] for page in pages} == {252}
    assert [e["version"] for e in events] == list(range(1, 253))


async def test_a_page_or_page_size_beyond_its_bound_is_a_400_naming_it(api: Api) -> None:
    task_id = await long_task(api, 0)
    for kind in ("updates", "events"):
        for parameter, value in (("page_size", 1001), ("page_size", 0), ("page", 0)):
            answer = await api.client.get(
                f"{BASE}/ai-tasks/{task_id}/{kind}/", params={parameter: value}, headers=ALICE
            )
            assert answer.status_code == 400, (kind, parameter, answer.text)
            assert answer.headers["content-type"].startswith("application/problem+json")
            assert parameter in answer.text


async def test_a_page_past_the_end_is_empty_with_no_next(api: Api) -> None:
    task_id = await long_task(api, 3)
    page = await api.client.get(
        f"{BASE}/ai-tasks/{task_id}/updates/", params={"page": 4, "page_size": 2}, headers=ALICE
    )
    assert page.status_code == 200, page.text
    assert (page.json()["count"], page.json()["results"], page.json()["next"]) == (5, [], None)
