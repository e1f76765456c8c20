"""Caps objects read each of their fields from the setting of the same name."""

from __future__ import annotations

from dataclasses import fields

from agenttasks.application.schema_document import SchemaLimits
from agenttasks.bootstrap import schema_limits
from agenttasks.settings import Settings
from agenttasks.workers.limits import Limits


def test_each_cap_comes_from_its_own_setting() -> None:
    names = [f"schema_{cap.name}" for cap in fields(SchemaLimits)]
    names += [cap.name for cap in fields(Limits)]
    # A distinct value per setting: a cap read from the wrong one shows.
    settings = Settings().with_(**{name: 1_000 + i for i, name in enumerate(names)})
    schema = schema_limits(settings)
    worker = Limits.from_settings(settings)
    for cap in fields(SchemaLimits):
        assert getattr(schema, cap.name) == getattr(settings, f"schema_{cap.name}")
    for cap in fields(Limits):
        assert getattr(worker, cap.name) == getattr(settings, cap.name)
    assert len({*vars(schema).values(), *vars(worker).values()}) == len(names)
