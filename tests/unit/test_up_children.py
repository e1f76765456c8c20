"""What `agenttasks up` starts: each role with its own NATS user, at up's log level."""

from __future__ import annotations

from agenttasks.cli import build_parser
from agenttasks.up import child_commands


def test_every_role_logs_at_the_level_up_was_given() -> None:
    children = child_commands(worker=True, log_level="DEBUG")
    for _, args in children:
        assert args[-2:] == ["--log-level", "DEBUG"], args
        # Each child's command line parses as that command with the level.
        parsed = build_parser().parse_args(args)
        assert parsed.log_level == "DEBUG"


def test_each_role_connects_as_its_own_least_privileged_nats_user() -> None:
    users = {args[0]: user for user, args in child_commands(worker=True, log_level="INFO")}
    assert users == {
        "api": "api",
        "relay": "relay",
        "project": "projector",
        "deliver": "deliverer",  # its own consumer only, never the workers' queues
        "maintain": "reader",  # Postgres only; read-only should it ever connect
        "worker": "worker",
    }
    assert "worker" not in {a[0] for _, a in child_commands(worker=False, log_level="INFO")}


def test_the_banner_lists_no_worker_metrics_when_up_runs_no_worker() -> None:
    from agenttasks.settings import Settings
    from agenttasks.up import _metrics_banner

    settings = Settings(metrics_port=9470)
    assert "9472/metrics (worker)" in _metrics_banner(settings, "http://a", worker=True)
    without = _metrics_banner(settings, "http://a", worker=False)
    assert "(worker)" not in without
    assert "9473/metrics (deliver)" in without
