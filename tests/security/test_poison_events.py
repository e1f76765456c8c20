"""A stored event nobody can decode never stops the pipeline for anybody else (issue 11, #2).

The poison is written the way the encoder before transcoding.py wrote it: eventsourcing's own
JSONTranscoder, which stores `{"_type_": "x", "_data_": 1}` in user data and can never read it
back. The API cannot produce one any more, so the tests store it through that encoder directly.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from uuid import UUID

import httpx
import nats
import psycopg
import pytest
from eventsourcing.persistence import JSONTranscoder, Transcoder

from agenttasks import quarantine
from agenttasks.application.store import (
    APPLICATION_NAME,
    EventStore,
    close,
    history,
    open_event_store,
    read_log,
)
from agenttasks.application.tasks import Actor, NewTask
from agenttasks.application.undecodable import Undecodable
from agenttasks.bootstrap import task_commands
from agenttasks.bus.messages import SkippedEvent, TaskEvent, decode
from agenttasks.cli import main
from agenttasks.servers.nats import EmbeddedNats
from agenttasks.settings import Settings
from tests.integration.api_client import Api, bearer, running_api, serving, settings_for
from tests.integration.live_harness import read_sse
from tests.integration.stack import running_stack
from tests.waiting import wait_until

BASE = "/api/v1/utils"
POISON = [{"_type_": "x", "_data_": 1}]
MALLORY = Actor("mallory")


class LegacyStore(EventStore):
    """The event store with the library's JSONTranscoder as is: the encoder before the fix."""

    name = APPLICATION_NAME  # the same tables (a subclass would otherwise get its own)

    def construct_transcoder(self) -> Transcoder:
        transcoder = JSONTranscoder()
        self.register_transcodings(transcoder)
        return transcoder


def store_poison(database_url: str, actor: Actor = MALLORY) -> tuple[UUID, int]:
    """Stores a data_analysis task whose Created event cannot be decoded; (task id, position)."""
    legacy = LegacyStore(env=Settings(database_url=database_url).eventsourcing_env())
    try:
        written = task_commands(legacy).create(
            actor, NewTask("poison", "data_analysis", {"data": POISON})
        )
    finally:
        close(legacy)
    assert written.position is not None
    return written.task_id, written.position


def repair_poison(database_url: str, task_id: UUID) -> None:
    """What an operator's fix does to the stored bytes: the tag-shaped record gets another key."""
    with psycopg.connect(database_url) as connection:
        changed = connection.execute(
            "UPDATE agenttasks_events SET state = convert_to(replace(convert_from(state, 'UTF8'), "
            """'"_data_":1}', '"_data_":1,"fixed":true}'), 'UTF8') WHERE originator_id = %s""",
            (task_id,),
        ).rowcount
    assert changed == 1


def quarantined(database_url: str) -> list[quarantine.Quarantined]:
    with psycopg.connect(database_url) as connection, connection.cursor() as cursor:
        return quarantine.pending(cursor, include_resolved=True)


@pytest.fixture
async def api(database_url: str, nats_server: EmbeddedNats) -> AsyncIterator[Api]:
    async with running_api(database_url, nats_server) as api:
        yield api


async def test_the_relay_publishes_a_marker_in_place_of_a_poison_event_and_goes_on(
    api: Api, nats_server: EmbeddedNats
) -> None:
    seen: list[tuple[str, bytes]] = []
    reader = await nats.connect(nats_server.url_for("reader"))  # an outside subscriber

    async def collect(message: Any) -> None:
        seen.append((message.subject, message.data))

    await reader.subscribe("agenttasks.events.>", cb=collect)
    await reader.flush()
    try:
        poisoned, position = store_poison(api.stack.database_url)
        body = {"title": "after", "task_type": "summary", "task_config": {"content": "x"}}
        created = await api.client.post(f"{BASE}/ai-tasks/", json=body, headers=bearer("ann"))
        assert created.status_code == 201, created.text
        await wait_until(lambda: api.stack.relay.published_position > position)
        await wait_until(lambda: len(seen) >= 2)
    finally:
        await reader.close()
    marker = decode(seen[0][1])
    assert seen[0][0] == f"agenttasks.events.skipped.{position}"
    assert isinstance(marker, SkippedEvent)
    assert (marker.position, marker.originator_id) == (position, str(poisoned))
    assert marker.reason.startswith("undecodable: MapperDeserialisationError")
    following = decode(seen[1][1])
    assert isinstance(following, TaskEvent)
    assert following.user == "ann"
    assert following.position > position
    [entry] = quarantined(api.stack.database_url)
    assert (entry.consumer, entry.position, entry.originator_id) == (
        "relay",
        position,
        str(poisoned),
    )
    assert entry.resolved_at is None
    assert "_type_" not in entry.error


async def test_another_users_task_is_projected_and_ready_reports_the_quarantine(api: Api) -> None:
    _, position = store_poison(api.stack.database_url)
    body = {"title": "after", "task_type": "summary", "task_config": {"content": "x"}}
    created = await api.client.post(f"{BASE}/ai-tasks/", json=body, headers=bearer("ann"))
    # 201 means the read model showed the task in time (the API waits for its own write).
    assert created.status_code == 201, created.text
    task = await api.client.get(f"{BASE}/ai-tasks/{created.json()['id']}/", headers=bearer("ann"))
    assert task.status_code == 200
    ready = await api.client.get("/ready")
    assert ready.status_code == 200, ready.text
    checks = ready.json()["checks"]
    assert checks["quarantine"]["count"] == 1
    assert checks["quarantine"]["newest_position"] == position
    assert checks["nats"]["ok"]
    assert checks["nats"]["relay_lag"] == 0


async def test_history_readers_mark_the_poison_instead_of_raising(api: Api) -> None:
    poisoned, position = store_poison(api.stack.database_url)
    store = api.stack.store
    [item] = [i for i in read_log(store) if i.position == position]
    assert isinstance(item.event, Undecodable)
    assert item.event.originator_id == poisoned
    [own] = history(store, poisoned)
    assert isinstance(own.event, Undecodable)
    assert own.timestamp.year >= 2025
    url = f"{BASE}/ai-tasks/{poisoned}/events/"
    # Its owner is in the event that cannot be read: only an admin sees what is left.
    owners = await api.client.get(url, headers=bearer("mallory"))
    assert owners.status_code == 404, owners.text
    admins = await api.client.get(url, headers=bearer("root", admin=True))
    assert admins.status_code == 200, admins.text
    [view] = admins.json()["results"]
    assert (view["position"], view["type"]) == (position, "Undecodable")
    assert view["data"]["error"].startswith("MapperDeserialisationError")
    for response in (owners, admins):
        assert "_type_" not in response.text
        assert "deserializ" not in response.text  # none of the library's own words


async def test_commands_on_a_poisoned_task_answer_409_in_our_words(api: Api) -> None:
    poisoned, _ = store_poison(api.stack.database_url)
    admin = bearer("root", admin=True)
    for method, path in (
        ("GET", f"{BASE}/ai-tasks/{poisoned}/"),
        ("POST", f"{BASE}/ai-tasks/{poisoned}/cancel/"),
        ("POST", f"{BASE}/ai-tasks/{poisoned}/retry/"),
    ):
        response = await api.client.request(method, path, headers=admin)
        assert response.status_code in (404, 409), (method, path, response.text)
        assert response.headers["content-type"].startswith("application/problem+json")
        assert "_type_" not in response.text, response.text
        assert "deserialis" not in response.text.lower(), response.text


async def test_an_admins_catch_up_stream_skips_the_poison(api: Api) -> None:
    _, position = store_poison(api.stack.database_url)
    body = {"title": "after", "task_type": "summary", "task_config": {"content": "x"}}
    created = await api.client.post(f"{BASE}/ai-tasks/", json=body, headers=bearer("ann"))
    task_id = created.json()["id"]
    await api.client.post(f"{BASE}/ai-tasks/{task_id}/cancel/", headers=bearer("ann"))
    received: list[dict[str, Any]] = []
    admin = bearer("root", admin=True)
    async with api.client.stream("GET", f"{BASE}/tasks/stream/?after=0", headers=admin) as response:
        assert response.status_code == 200
        reading = asyncio.create_task(read_sse(response, received))
        await wait_until(lambda: len(received) >= 2)
        reading.cancel()
    assert [m["data"]["type"] for m in received[:2]] == ["created", "cancelled"]
    assert all(m["id"] != position for m in received)


async def test_ready_fails_while_events_wait_and_the_relay_makes_no_progress(
    database_url: str, nats_server: EmbeddedNats
) -> None:
    async with running_stack(database_url, nats_server) as stack:
        # It leads and beats once, then stops: like a relay that crash-loops, it gets nowhere.
        await wait_until(lambda: stack.relay.is_leader)
    store = open_event_store(Settings(database_url=database_url).eventsourcing_env())
    try:
        task_commands(store).create(Actor("ann"), NewTask("waits", "summary", {"content": "x"}))
    finally:
        close(store)
    settings = settings_for(database_url, nats_server).with_(relay_stall_seconds=1)
    async with serving(settings) as url, httpx.AsyncClient(base_url=url) as client:
        report = await ready_until(client, 503)
    relay = report["checks"]["nats"]
    assert relay["ok"] is False
    assert relay["relay_lag"] == 1
    assert "relay has not made progress" in relay["error"]


async def ready_until(client: httpx.AsyncClient, status: int, within: float = 20) -> Any:
    """Polls /ready until it answers `status`; its body then."""
    answers: list[httpx.Response] = []

    async def answered() -> bool:
        answers.append(await client.get("/ready"))
        return answers[-1].status_code == status

    await wait_until(answered, within, every=0.05, explain=lambda: answers[-1].text)
    return answers[-1].json()


async def test_quarantine_list_shows_the_poison_and_retry_takes_it_up_after_the_fix(
    api: Api,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    database_url = api.stack.database_url
    monkeypatch.setenv("AGENTTASKS_HOME", str(tmp_path))
    monkeypatch.setenv("AGENTTASKS_DATABASE_URL", database_url)
    poisoned, position = store_poison(database_url)
    await wait_until(lambda: api.stack.relay.skipped == 1)
    capsys.readouterr()

    assert await asyncio.to_thread(main, ["quarantine", "list"]) == 1
    listed = capsys.readouterr().out
    assert f"{position}  relay" in listed
    assert str(poisoned) in listed
    assert "MapperDeserialisationError" in listed

    # Before the fix a retry changes nothing but the count of attempts.
    assert await asyncio.to_thread(main, ["quarantine", "retry"]) == 1
    assert f"{position} (relay): still fails: undecodable" in capsys.readouterr().out
    [entry] = quarantined(database_url)
    assert entry.attempts == 2
    assert entry.resolved_at is None

    repair_poison(database_url, poisoned)
    assert await asyncio.to_thread(main, ["quarantine", "retry", str(position)]) == 0
    assert f"{position} (relay): resolved" in capsys.readouterr().out
    [entry] = quarantined(database_url)
    assert entry.resolved_at is not None
    # The rebuilt read model has the task the live projector never saw.
    assert api.stack.rows(f"SELECT created_by FROM tasks WHERE id = '{poisoned}'") == [("mallory",)]
    assert await asyncio.to_thread(main, ["quarantine", "list"]) == 0
    assert "the quarantine is empty" in capsys.readouterr().out
