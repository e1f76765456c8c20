"""The NOTIFY payload that tells every API's watcher where the read models got."""

from __future__ import annotations

from agenttasks.projections.base import announcement, read_announcement


def test_one_announcement_carries_every_moved_read_model_grouped_by_position() -> None:
    payload = announcement({"tasks": 12, "metrics": 12, "statistics": 9})
    assert payload == "metrics,tasks:12;statistics:9"
    assert sorted(read_announcement(payload)) == [("metrics", 12), ("statistics", 9), ("tasks", 12)]


def test_the_single_read_model_payload_of_a_replay_or_an_older_projector_still_reads() -> None:
    assert read_announcement("template_usage:40") == [("template_usage", 40)]


def test_a_malformed_part_announces_nothing_and_the_rest_still_counts() -> None:
    assert read_announcement("tasks:x;:5;statistics:-1;metrics:7;") == [("metrics", 7)]
