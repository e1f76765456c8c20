"""Property: the metrics read model built incrementally equals the replayed one, and a purge
(forget_tasks) leaves what a store without those tasks would give, totals kept aside.

Histories, batches and redeliveries come from test_statistics_property (the runner's own code).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import psycopg
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from psycopg.conninfo import make_conninfo

from agenttasks.application.bus_payloads import mapper_for
from agenttasks.application.store import EventStore, read_log
from agenttasks.projections.base import Tables
from agenttasks.projections.metrics import COUNTERS, forget_tasks, metrics_projection
from agenttasks.projections.replay import replay
from tests.integration.test_statistics_property import apply_incrementally, history, steps

_schemas = iter(range(1, 1_000_000))


@contextmanager
def schema(database_url: str) -> Iterator[str]:
    name = f"metrics_property_{next(_schemas)}"
    with psycopg.connect(database_url, autocommit=True) as connection:
        connection.execute(f"CREATE SCHEMA {name}")
    try:
        yield make_conninfo(database_url, options=f"-c search_path={name}")
    finally:
        with psycopg.connect(database_url, autocommit=True) as connection:
            connection.execute(f"DROP SCHEMA {name} CASCADE")


def figures(url: str, table: str = "task_metrics") -> dict[str, int]:
    with psycopg.connect(url) as connection:
        return dict(connection.execute(f"SELECT key, value FROM {table}").fetchall())  # type: ignore[arg-type]


def timeless(values: dict[str, int]) -> dict[str, int]:
    """Histogram observations counted per series; sums and buckets (which depend on time) gone."""
    shaped: dict[str, int] = {}
    for key, value in values.items():
        metric, task_type, _ = key.split("|")
        if metric.endswith("_sum_us"):
            continue
        if metric.endswith("_bucket"):
            key = f"{metric}|{task_type}|count"
        shaped[key] = shaped.get(key, 0) + value
    return shaped


@settings(
    max_examples=10,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    plan=steps,
    sizes=st.lists(st.integers(1, 25), min_size=1, max_size=6),
    use_runner=st.booleans(),
    purged=st.sets(st.integers(0, 9), max_size=4),
)
def test_incremental_metrics_equal_the_replayed_ones_and_forgetting_equals_never_having(
    database_url: str,
    plan: list[tuple[int, str, int]],
    sizes: list[int],
    use_runner: bool,
    purged: set[int],
) -> None:
    store = history(plan)
    projection = metrics_projection()
    with schema(database_url) as url:
        apply_incrementally(projection, url, store, sizes, use_runner)
        report = replay(projection, store, mapper_for(store), url, verify=True)
        assert report.differences == []
        assert all(value != 0 for value in figures(url).values()), "no row at 0 is kept"
        before = figures(url)
        created = sum(v for k, v in before.items() if k.startswith("created|"))
        assert created == len({i for i, _, _ in plan})

        # Forget some tasks (as a purge does): the rest must equal a history without them.
        ids = _task_ids(store, {i for i, _, _ in plan if i in purged}, plan)
        with psycopg.connect(url) as connection, connection.cursor() as cursor:
            assert forget_tasks(cursor, projection.live_tables(), ids) == len(ids)
            # Forgetting again (a replay's rebuild meeting the same deletion) counts nothing twice.
            assert forget_tasks(cursor, projection.live_tables(), ids) == 0
        after, kept = figures(url), figures(url, "task_metrics_purged")
        with schema(database_url) as other:
            apply_incrementally(
                projection, other, history([s for s in plan if s[0] not in purged]), [50], False
            )
            # The other history ran at other times: compare what does not depend on the clock.
            assert timeless(after) == timeless(figures(other))
        totals = {k: after.get(k, 0) + kept.get(k, 0) for k in set(after) | set(kept)}
        counters = {k: v for k, v in before.items() if k.split("|")[0] in COUNTERS}
        assert {k: v for k, v in totals.items() if k.split("|")[0] in COUNTERS and v} == counters


def _task_ids(store: EventStore, indexes: set[int], plan: list[tuple[int, str, int]]) -> list[str]:
    """The ids of the tasks made for `indexes`: tasks are created in order of first mention."""
    order = list(dict.fromkeys(i for i, _, _ in plan))
    created = [
        str(item.event.originator_id)
        for item in read_log(store)
        if type(item.event).__name__ == "Created"
    ]
    return [created[order.index(i)] for i in sorted(indexes)]


def test_a_deletion_met_by_the_live_tables_and_a_rebuild_is_kept_once(database_url: str) -> None:
    plan = [(0, "", 0), (0, "start", 1), (0, "complete", 1), (1, "", 1), (1, "cancel", 0)]
    store = history(plan)
    projection = metrics_projection()
    rebuild = Tables({name: f"{name}__rebuild" for name in projection.ddl})
    with schema(database_url) as url:
        apply_incrementally(projection, url, store, [50], False)
        events = [
            e for item in read_log(store) if (e := mapper_for(store).map(item.event, item.position))
        ]
        ids = _task_ids(store, {0}, plan)
        with psycopg.connect(url) as connection, connection.cursor() as cursor:
            projection.create(cursor, rebuild)
            projection.apply_many(cursor, rebuild, events)
            assert forget_tasks(cursor, projection.live_tables(), ids) == 1
            assert forget_tasks(cursor, rebuild, ids) == 1
        kept = figures(url, "task_metrics_purged")
        assert kept["created|summary|"] == 1
        assert kept["completed|summary|"] == 1
        assert figures(url) == figures(url, "task_metrics__rebuild")
