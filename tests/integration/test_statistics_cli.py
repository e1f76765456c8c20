"""`agenttasks replay` and `agenttasks audit` on the new read models, against real servers."""

from __future__ import annotations

from pathlib import Path

import psycopg
import pytest

from agenttasks import cli
from agenttasks.application.tasks import Actor
from agenttasks.application.templates import TaskFromTemplate, TemplateCommands, TemplateDraft
from agenttasks.servers.nats import EmbeddedNats
from agenttasks.settings import Settings, SettingsError
from tests.integration.stack import running_stack
from tests.integration.test_statistics import NAMES, all_projections, projected, run

ALICE = Actor("alice")


async def test_replay_all_verifies_then_rebuilds_every_read_model_with_a_progress_bar(
    database_url: str,
    nats_server: EmbeddedNats,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    settings = Settings(home=tmp_path, database_url=database_url)
    async with running_stack(database_url, nats_server, projections=all_projections()) as stack:
        commands = stack.commands
        templates = TemplateCommands(stack.store, commands)
        draft = TemplateDraft("T", "summary", default_config={"content": "x"})
        template_id = templates.create(ALICE, draft).template_id
        for outcome in ("completed", "failed", "cancelled", "retried"):
            run(commands, ALICE, outcome, template=(templates, template_id))
        await projected(stack)

        assert cli.replay(settings, "all", verify=True) == 0
        out, err = capsys.readouterr()
        for name in NAMES:
            assert f"{name}: verified" in out
        assert "events/s" in err

        with psycopg.connect(database_url, autocommit=True) as connection:
            connection.execute("UPDATE template_usage SET usage_count = 99")
        assert cli.replay(settings, "template_usage", verify=True) == 1
        out, _ = capsys.readouterr()
        assert f"template_id={template_id}: usage_count: live 99 != rebuilt 4" in out

        assert cli.replay(settings, "template_usage", verify=False) == 0
        assert "template_usage: rebuilt and switched" in capsys.readouterr().out
        assert stack.rows("SELECT usage_count FROM template_usage") == [(4,)]
        assert cli.replay(settings, "template_usage", verify=True) == 0

        with pytest.raises(SettingsError, match="unknown read model 'stats'"):
            cli.replay(settings, "stats", verify=False)


async def test_audit_prints_a_tasks_or_a_templates_history(
    database_url: str,
    nats_server: EmbeddedNats,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    settings = Settings(home=tmp_path, database_url=database_url)
    async with running_stack(database_url, nats_server, projections=()) as stack:
        commands = stack.commands
        templates = TemplateCommands(stack.store, commands)
        template_id = templates.create(ALICE, TemplateDraft("Audited", "summary")).template_id
        templates.revise(ALICE, template_id, {"description": "Now described"})
        task_id = templates.create_task(
            ALICE, template_id, TaskFromTemplate({"content": "x"})
        ).task_id
        templates.archive(ALICE, template_id)

    assert cli.audit(settings, str(template_id)) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split()[3] for line in lines] == ["created", "revised", "archived"]
    assert "Now described" in lines[1]
    assert cli.audit(settings, str(task_id)) == 0
    task_lines = capsys.readouterr().out.splitlines()
    assert [line.split()[3] for line in task_lines] == ["created"]
    assert str(template_id) in task_lines[0]
    with pytest.raises(SettingsError, match="no task or template"):
        cli.audit(settings, "00000000-0000-0000-0000-000000000000")
