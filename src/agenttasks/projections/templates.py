"""The template read model: `templates`, one row per template with its current revision."""

from __future__ import annotations

from typing import Any

from psycopg import Cursor, sql
from psycopg.types.json import Jsonb

from agenttasks.bus.event_data import TemplateCreated, TemplateRevised, data_of
from agenttasks.bus.messages import TemplateEvent
from agenttasks.projections.base import Projection, Tables

DDL = {
    "templates": [
        """CREATE TABLE IF NOT EXISTS {t} (
            id uuid PRIMARY KEY,
            name text NOT NULL,
            description text NOT NULL,
            task_type text NOT NULL,
            default_config jsonb NOT NULL,
            config_schema jsonb NOT NULL,
            shared boolean NOT NULL,
            owner text NOT NULL,
            revision integer NOT NULL,
            archived boolean NOT NULL,
            created_at timestamptz NOT NULL,
            updated_at timestamptz NOT NULL,
            version integer NOT NULL,
            last_position bigint NOT NULL
        )""",
        "CREATE INDEX IF NOT EXISTS {t_owner} ON {t} (owner, created_at DESC)",
        "CREATE INDEX IF NOT EXISTS {t_shared} ON {t} (created_at DESC) WHERE shared",
    ],
}


def _created(cursor: Cursor[Any], t: Tables, e: TemplateEvent) -> None:
    d = data_of(e, TemplateCreated)
    cursor.execute(
        sql.SQL(
            "INSERT INTO {} (id, name, description, task_type, default_config, config_schema,"
            " shared, owner, revision, archived, created_at, updated_at, version, last_position)"
            " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, 1, false, %s, %s, %s, %s)"
            " ON CONFLICT (id) DO NOTHING"
        ).format(t.id("templates")),
        (
            e.template_id, d.name, d.description, d.task_type, Jsonb(d.default_config),
            Jsonb(d.config_schema), d.shared, d.owner, e.timestamp, e.timestamp,
            e.version, e.position,
        ),
    )  # fmt: skip


def _revised(cursor: Cursor[Any], t: Tables, e: TemplateEvent) -> None:
    d = data_of(e, TemplateRevised)
    _set(
        cursor,
        t,
        e,
        name=d.name,
        description=d.description,
        task_type=d.task_type,
        default_config=Jsonb(d.default_config),
        config_schema=Jsonb(d.config_schema),
        shared=d.shared,
        revision=d.revision,
    )


def _archived(cursor: Cursor[Any], t: Tables, e: TemplateEvent) -> None:
    _set(cursor, t, e, archived=True)


def _set(cursor: Cursor[Any], t: Tables, e: TemplateEvent, **values: Any) -> None:
    assignments = sql.SQL(", ").join(sql.SQL("{} = %s").format(sql.Identifier(k)) for k in values)
    cursor.execute(
        sql.SQL(
            "UPDATE {} SET {}, updated_at = %s, version = %s, last_position = %s"
            " WHERE id = %s AND last_position < %s"
        ).format(t.id("templates"), assignments),
        (*values.values(), e.timestamp, e.version, e.position, e.template_id, e.position),
    )


def template_projection() -> Projection:
    """The `templates` read model."""
    return Projection(
        name="templates",
        ddl=DDL,
        template_handlers={"created": _created, "revised": _revised, "archived": _archived},
    )
