"""Stored events become bus payloads that every read model can store."""

from __future__ import annotations

from agenttasks.application.bus_payloads import mapper_for
from agenttasks.application.store import open_event_store, read_log
from agenttasks.application.tasks import Actor, NewTask
from agenttasks.bootstrap import task_commands


def test_a_nul_character_an_agent_produced_reaches_the_bus_as_a_replacement_character() -> None:
    store = open_event_store()
    commands = task_commands(store)
    task_id = commands.create(Actor("alice"), NewTask("t", "summary", {"content": "x"})).task_id
    commands.start(task_id, 1, "w")
    commands.complete(task_id, 1, {"summary": "bad\x00byte"}, message="done\x00")

    mapper = mapper_for(store)
    completed = [mapper.map(e.event, e.position) for e in read_log(store)][-1]
    assert completed is not None
    assert completed.data["result_data"] == {"summary": "bad\ufffdbyte"}
    assert completed.message == "done\ufffd"
    assert commands.get(Actor("alice"), task_id).result_data == {"summary": "bad\x00byte"}, (
        "the stored event keeps what was recorded"
    )
