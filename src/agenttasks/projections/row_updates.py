"""One UPDATE for a batch's folded rows, whatever columns each of them sets.

The `tasks` and `task_statistics` folds (tasks_fold.py, statistics.py) turn each task's events
of a batch into assignments to some columns of its row, plus sums a model call adds to. Rows go
as JSON through `json_to_recordset`, every row of the batch in the same statement: a bit per
column in the row's `_set` mask says whether the row sets (or adds to) that column, and the
others keep their value. One statement per batch instead of one per set of columns: at a few
events a batch each task is at another step of its life, and psycopg's cost per statement was
most of the projector's time (PERF16's profile).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import msgspec
from psycopg import Cursor, sql

CHUNK = 1000  # rows per statement: one statement of a megabyte or more stalls pipeline mode
_encoder = msgspec.json.Encoder()


@dataclass(frozen=True)
class Shape:
    """A table's batch UPDATE: its key, the columns a row may set or add to, what every row sets.

    A row (a dict) holds the key, the columns it sets, `+<column>` for what it adds to a sum
    column, every `always` column, and `first_position`: the position of the first event
    folded in. It applies only when the stored row is older than that (all of the task's
    events of the batch apply, or none).
    """

    table_key: str
    types: tuple[tuple[str, str], ...]  # (column, SQL type) for every column named below
    settable: tuple[str, ...]
    sums: tuple[str, ...]
    always: tuple[str, ...]


@lru_cache(maxsize=16)
def _bits(shape: Shape) -> dict[str, int]:
    names = (*shape.settable, *(f"+{c}" for c in shape.sums))
    return {name: 1 << n for n, name in enumerate(names)}


def mask(shape: Shape, row: Mapping[str, Any]) -> int:
    """The `_set` bits of the columns `row` sets or adds to."""
    bits = _bits(shape)
    return sum(bits[name] for name in row if name in bits)


@lru_cache(maxsize=64)
def update_query(table: str, shape: Shape) -> str:
    """The UPDATE of `table` from rows of `shape` (composed once, kept as text)."""
    bits = _bits(shape)
    types = dict(shape.types)
    key = sql.Identifier(shape.table_key)
    assignments = [
        sql.SQL("{0} = CASE WHEN v._set & {1} <> 0 THEN v.{0} ELSE t.{0} END").format(
            sql.Identifier(c), sql.Literal(bits[c])
        )
        for c in shape.settable
    ]
    assignments += [
        sql.SQL("{0} = CASE WHEN v._set & {1} <> 0 THEN t.{0} + v.{2} ELSE t.{0} END").format(
            sql.Identifier(c), sql.Literal(bits[f"+{c}"]), sql.Identifier(f"+{c}")
        )
        for c in shape.sums
    ]
    assignments += [sql.SQL("{0} = v.{0}").format(sql.Identifier(c)) for c in shape.always]
    fields = [(shape.table_key, types[shape.table_key])]
    fields += [(c, types[c]) for c in shape.settable]
    fields += [(f"+{c}", types[c]) for c in shape.sums]
    fields += [(c, types[c]) for c in shape.always]
    fields += [("first_position", "bigint"), ("_set", "bigint")]
    record = sql.SQL(", ").join(
        sql.SQL("{} {}").format(sql.Identifier(name), sql.SQL(kind)) for name, kind in fields
    )
    # `t.<key> = ANY(...)`: the planner guesses 100 rows for json_to_recordset, and below
    # ~25,000 rows it then hashed a sequential scan of the whole table for every batch (1.1 ms
    # at 5,000 rows for one task); with the ids it reads the primary key, at any size.
    return (
        sql.SQL(
            "UPDATE {} AS t SET {} FROM json_to_recordset(%s::json) AS v({})"
            " WHERE t.{} = v.{} AND t.last_position < v.first_position"
            " AND t.{} = ANY(%s::uuid[])"
        )
        .format(sql.Identifier(table), sql.SQL(", ").join(assignments), record, key, key, key)
        .as_string(None)
    )


def send_updates(cursor: Cursor[Any], table: str, shape: Shape, rows: list[dict[str, Any]]) -> None:
    """Sends the UPDATE of `rows` (CHUNK rows a statement); a row's `_set` is filled in here."""
    if not rows:
        return
    query = update_query(table, shape)
    key = shape.table_key
    for row in rows:
        row["_set"] = mask(shape, row)
    for start in range(0, len(rows), CHUNK):
        chunk = rows[start : start + CHUNK]
        ids = "{" + ",".join(row[key] for row in chunk) + "}"
        cursor.execute(query, (_encoder.encode(chunk).decode(), ids))
