"""One transaction per batch for every read model of a projector, each tracked on its own row."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import psycopg
import pytest

from agenttasks import bootstrap, quarantine
from agenttasks.application.bus_payloads import mapper_for
from agenttasks.bus.connection import connect
from agenttasks.projections.base import set_position
from agenttasks.projections.projector import Projector
from agenttasks.projections.replay import replay
from agenttasks.projections.runner import ProjectionRunner, apply_together
from agenttasks.projections.statistics import statistics_projection
from agenttasks.projections.tasks import task_projection
from agenttasks.servers.nats import EmbeddedNats
from tests.integration.stack import running_stack
from tests.integration.test_projections import Delivered, created, lifecycle
from tests.waiting import wait_until


def tracking_rows(database_url: str) -> dict[str, tuple[Any, ...]]:
    """Each read model's tracking row, with the transaction that last wrote it (xmin)."""
    with psycopg.connect(database_url) as connection:
        rows = connection.execute(
            "SELECT name, position, sequence, xmin::text FROM projection_tracking"
        ).fetchall()
    return {str(name): (position, sequence, xmin) for name, position, sequence, xmin in rows}


async def test_a_batch_commits_once_for_every_read_model_each_skipping_what_it_has(
    database_url: str,
) -> None:
    runners = [ProjectionRunner(task_projection(), database_url)]
    runners.append(ProjectionRunner(statistics_projection(), database_url))
    with psycopg.connect(database_url) as connection:
        for runner in runners:
            runner.prepare(connection)
        with connection.transaction(), connection.cursor() as cursor:
            set_position(cursor, "statistics", 2, 2)  # a standby applied the first two already
        batch = [
            Delivered(created(1), 1),
            Delivered(created(2), 2),
            Delivered(created(3, task_id="not-a-uuid"), 3),  # Postgres refuses it: a data error
            Delivered(b"{not json", 4),
            Delivered(created(5), 5),
        ]
        apply_together(runners, connection, batch)  # type: ignore[arg-type]

        assert [(r.position, r.sequence) for r in runners] == [(5, 5), (5, 5)]
        rows = tracking_rows(database_url)
        assert rows["tasks"][:2] == rows["statistics"][:2] == (5, 5)
        assert rows["tasks"][2] == rows["statistics"][2], "both rows moved in one transaction"
        counts = connection.execute(
            "SELECT (SELECT count(*) FROM tasks), (SELECT count(*) FROM task_statistics)"
        ).fetchone()
        assert counts == (3, 1), "statistics applied only what its own tracking lacked"
        with connection.cursor() as cursor:
            tasks_entries = quarantine.pending(cursor, consumer="projector-tasks")
            statistics_entries = quarantine.pending(cursor, consumer="projector-statistics")
        # Each read model sets its own bad events aside; the good ones of the batch still apply.
        assert [(e.position, e.originator_id) for e in tasks_entries] == [
            (-4, None),
            (3, "not-a-uuid"),
        ]
        assert [e.position for e in statistics_entries] == [-4, 3]

        apply_together(runners, connection, batch)  # type: ignore[arg-type]
        assert tracking_rows(database_url) == rows, "a repeat changes nothing, writes nothing"


async def test_two_projectors_of_every_read_model_lose_and_repeat_nothing(
    database_url: str, nats_server: EmbeddedNats
) -> None:
    async with running_stack(database_url, nats_server, projections=()) as stack:
        stops: list[tuple[asyncio.Event, asyncio.Task[None], Any]] = []
        replicas: list[list[ProjectionRunner]] = []
        for replica in range(2):  # a standby of all five read models beside the first
            bus = await connect(nats_server.url_for("projector"), f"test-batch-{replica}")
            runners = [
                ProjectionRunner(p, database_url, bus) for p in bootstrap.projections().values()
            ]
            stop = asyncio.Event()
            task = asyncio.create_task(Projector(runners, bus).run(stop))
            stops.append((stop, task, bus))
            replicas.append(runners)
        try:
            for i in range(20):
                lifecycle(stack.commands, f"task {i}", ("completed", "retried", "cancelled")[i % 3])
            newest = stack.store.recorder.max_notification_id() or 0
            await wait_until(
                lambda: all(r.position >= newest for runners in replicas for r in runners)
            )
        finally:
            for stop, task, bus in stops:
                stop.set()
                await task
                await bus.close()
        rows = tracking_rows(database_url)
        assert {name: row[0] for name, row in rows.items()} == dict.fromkeys(
            bootstrap.projections(), newest
        )
        mapper = mapper_for(stack.store)
        for projection in bootstrap.projections().values():
            report = await asyncio.to_thread(
                replay, projection, stack.store, mapper, database_url, verify=True
            )
            assert report.differences == [], projection.name


async def test_a_data_error_in_the_one_pipeline_rolls_back_and_sets_aside_only_that_event(
    database_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    # Every message decodes, so the batch goes as one pipeline first; Postgres refuses the
    # middle one there, and the batch is applied again read model by read model.
    runners = [ProjectionRunner(p, database_url) for p in bootstrap.projections().values()]
    with psycopg.connect(database_url) as connection:
        for runner in runners:
            runner.prepare(connection)
        batch = [
            Delivered(created(1), 1),
            Delivered(created(2, task_id="not-a-uuid"), 2),
            Delivered(created(3), 3),
        ]
        with caplog.at_level(logging.WARNING, logger="agenttasks.projections.runner"):
            apply_together(runners, connection, batch)  # type: ignore[arg-type]

        assert "failed in one pipeline" in caplog.text, "the pipeline met the error first"
        assert {(r.position, r.sequence) for r in runners} == {(3, 3)}
        rows = tracking_rows(database_url)
        assert {row[:2] for row in rows.values()} == {(3, 3)}
        assert len({row[2] for row in rows.values()}) == 1, "still one commit for all"
        counts = connection.execute(
            "SELECT (SELECT count(*) FROM tasks), (SELECT count(*) FROM task_statistics),"
            " (SELECT count(*) FROM metric_tasks)"
        ).fetchone()
        assert counts == (2, 2, 2), "the good events of the batch applied in every model"
        with connection.cursor() as cursor:
            entries = {
                runner.consumer: [
                    e.position for e in quarantine.pending(cursor, consumer=runner.consumer)
                ]
                for runner in runners
            }
        # Only the models that handle a created event met the bad id (templates ignores it).
        assert entries == {
            "projector-tasks": [2],
            "projector-templates": [],
            "projector-template_usage": [],
            "projector-statistics": [2],
            "projector-metrics": [2],
        }
