"""What `agenttasks up` starts: each role with its own NATS user, at up's log level."""

from __future__ import annotations

import pytest

from agenttasks.cli import build_parser
from agenttasks.settings import Settings
from agenttasks.up import child_commands, nats_env

ROLE_URLS = {
    user: f"nats://{user}:pw@127.0.0.1:4222"
    for user in ("api", "relay", "projector", "worker", "deliverer", "reader")
}


@pytest.mark.parametrize("together", [True, False])
def test_every_role_logs_at_the_level_up_was_given(together: bool) -> None:
    children = child_commands(worker=True, log_level="DEBUG", together=together)
    for roles, args in children:
        assert args[-2:] == ["--log-level", "DEBUG"], args
        # Each child's command line parses as that command with the level.
        parsed = build_parser().parse_args(args)
        assert parsed.log_level == "DEBUG"
        assert (tuple(parsed.roles) if parsed.command == "run" else (parsed.command,)) == roles


def test_by_default_the_background_roles_share_one_process_and_api_and_worker_keep_theirs() -> None:
    commands = [args[:2] for _, args in child_commands(worker=True, log_level="INFO")]
    assert commands == [
        ["api", "--log-level"],
        ["run", "relay,project,deliver,maintain"],
        ["worker", "--log-level"],
    ]
    separate = child_commands(worker=True, log_level="INFO", together=False)
    assert [args[0] for _, args in separate] == [
        "api", "relay", "project", "deliver", "maintain", "worker"
    ]  # fmt: skip
    for together in (True, False):
        children = child_commands(worker=False, log_level="INFO", together=together)
        assert "worker" not in {role for roles, _ in children for role in roles}


@pytest.mark.parametrize("together", [True, False])
def test_each_role_connects_as_its_own_least_privileged_nats_user(together: bool) -> None:
    users: dict[str, str] = {}
    for roles, _ in child_commands(worker=True, log_level="INFO", together=together):
        env = nats_env(roles, ROLE_URLS, "nats://fallback")
        for role in roles:
            # What the role's process resolves for the NATS user its code asks for.
            settings = Settings.from_env(env)
            asks = {"project": "projector", "deliver": "deliverer"}.get(role, role)
            url = settings.nats_url_for(asks) if role != "maintain" else settings.nats_url
            users[role] = str(url).split("//")[1].split(":")[0]
    assert users == {
        "api": "api",
        "relay": "relay",
        "project": "projector",
        "deliver": "deliverer",  # its own consumer only, never the workers' queues
        "maintain": "reader",  # Postgres only; read-only should it ever connect
        "worker": "worker",
    }


def test_a_shared_process_is_given_no_url_of_a_role_it_does_not_run() -> None:
    env = nats_env(("relay", "project", "deliver", "maintain"), ROLE_URLS, "nats://fallback")
    assert not any(user in url for url in env.values() for user in ("api:", "worker:"))


def test_the_banner_lists_no_worker_metrics_when_up_runs_no_worker() -> None:
    from agenttasks.up import _metrics_banner

    settings = Settings(metrics_port=9470)
    assert "9472/metrics (worker)" in _metrics_banner(settings, "http://a", worker=True)
    without = _metrics_banner(settings, "http://a", worker=False, together=False)
    assert "(worker)" not in without
    assert "9473/metrics (deliver)" in without


def test_the_banner_names_the_one_metrics_endpoint_of_the_shared_process() -> None:
    from agenttasks.up import _metrics_banner

    banner = _metrics_banner(Settings(metrics_port=9470), "http://a", worker=True)
    assert "9470/metrics (relay, project, deliver, maintain: one process)" in banner
    assert "9471" not in banner
    assert "9473" not in banner
    assert "9474" not in banner
