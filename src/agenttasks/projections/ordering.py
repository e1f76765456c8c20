"""`?ordering=` for the list queries: a name, optionally with `-`, as an ORDER BY clause."""

from __future__ import annotations

from collections.abc import Mapping

from psycopg import sql


def order_by(
    ordering: str, columns: Mapping[str, sql.Composable], tiebreak: sql.Composable
) -> sql.Composed:
    """`-created_at` -> `<column> DESC, <tiebreak> DESC`; ValueError naming the allowed values.

    The tiebreak (a unique column) keeps pages stable when many rows share the sort value.
    """
    column = columns.get(ordering.removeprefix("-"))
    if column is None:
        allowed = ", ".join(f"{name}, -{name}" for name in columns)
        raise ValueError(f"ordering must be one of: {allowed}")
    direction = sql.SQL("DESC" if ordering.startswith("-") else "ASC")
    return sql.SQL("{} {}, {} {}").format(column, direction, tiebreak, direction)
