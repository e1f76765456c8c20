"""The `agenttasks` command: parses arguments, runs a role (roles.py) or a tool, prints.

Errors a user can fix (a bad setting, no server to talk to, an unknown task id) end with a plain
message and exit status 2, never a traceback.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any
from uuid import UUID

from agenttasks.servers import ServerStartError
from agenttasks.settings import Settings, SettingsError


class UserError(Exception):
    """Something the person running the command can fix; printed without a traceback."""


def port(text: str) -> int:
    """An argparse type: a TCP port number."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not 1 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"{value} must be between 1 and 65535")
    return value


def positive(text: str) -> int:
    """An argparse type: a whole number of at least 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} must be at least 1")
    return value


def task_types(text: str) -> tuple[str, ...]:
    """An argparse type: comma-separated task types."""
    from agenttasks.domain.rules import TASK_TYPES

    chosen = tuple(t.strip() for t in text.split(",") if t.strip())
    unknown = [t for t in chosen if t not in TASK_TYPES]
    if unknown or not chosen:
        raise argparse.ArgumentTypeError(
            f"unknown task type(s) {', '.join(unknown) or '(none given)'}; "
            f"known: {', '.join(TASK_TYPES)}"
        )
    return chosen


def role_names(text: str) -> tuple[str, ...]:
    """An argparse type: comma-separated roles one process can run together."""
    from agenttasks.together import parse_roles

    try:
        return parse_roles(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


def log_level(text: str) -> str:
    """An argparse type: a logging level name, in any case."""
    if text.upper() not in LOG_LEVELS:
        raise argparse.ArgumentTypeError(f"{text!r} is not one of {', '.join(LOG_LEVELS)}")
    return text.upper()


def _global_options(parser: argparse.ArgumentParser, *, defaults: bool) -> None:
    # Given after a sub-command they override the ones before it; SUPPRESS keeps a
    # sub-command that was not given them from resetting them to their defaults.
    parser.add_argument(
        "--data-dir",
        type=Path,
        default=None if defaults else argparse.SUPPRESS,
        help="data directory (default: $AGENTTASKS_HOME or ./.agenttasks)",
    )
    parser.add_argument(
        "--log-level",
        type=log_level,
        default="INFO" if defaults else argparse.SUPPRESS,
        help=f"{', '.join(LOG_LEVELS)} (default INFO)",
    )


class _CommandParser(argparse.ArgumentParser):
    """A sub-command's parser: it takes the global options too, before or after its own."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        _global_options(self, defaults=False)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser, one sub-command per role or tool."""
    parser = argparse.ArgumentParser(
        prog="agenttasks", description="AI agents on background tasks, every step streamed live."
    )
    _global_options(parser, defaults=True)
    commands = parser.add_subparsers(
        dest="command", required=True, metavar="COMMAND", parser_class=_CommandParser
    )

    up = commands.add_parser("up", help="start everything (embedded Postgres and NATS unless set)")
    up.add_argument("--host", help="API address (default 127.0.0.1)")
    up.add_argument("--port", type=port, help="API port (default 8000)")
    up.add_argument("--nats-port", type=port, help="embedded NATS port (default 4222)")
    up.add_argument(
        "--no-worker",
        action="store_true",
        help="start no worker (run `agenttasks worker` yourself)",
    )
    up.add_argument(
        "--separate-roles",
        action="store_true",
        help="one process per background role (default: relay, project, deliver and maintain "
        "share one)",
    )

    api = commands.add_parser("api", help="run the HTTP API")
    api.add_argument("--host")
    api.add_argument("--port", type=port)

    commands.add_parser(
        "migrate", help="create or upgrade the tables, the stream and the consumers, then exit"
    )
    commands.add_parser("relay", help="publish stored events to NATS JetStream")
    run = commands.add_parser(
        "run", help="several background roles in one process, e.g. relay,project,deliver,maintain"
    )
    run.add_argument(
        "roles", type=role_names, help="comma-separated, of relay, project, deliver, maintain"
    )
    commands.add_parser("deliver", help="deliver webhooks for task endings (docs/webhooks.md)")
    commands.add_parser(
        "maintain",
        help="expire, sweep and purge as the one leader of its replicas (docs/operations.md)",
    )

    project = commands.add_parser("project", help="run the projectors that build read models")
    project.add_argument("names", nargs="*", help="read models (default: all)")

    worker = commands.add_parser("worker", help="run agents on tasks")
    worker.add_argument(
        "--types", type=task_types, default=None, help="comma-separated task types (default: all)"
    )
    worker.add_argument("--concurrency", type=positive, default=8, help="tasks at once (default 8)")
    worker.add_argument(
        "--prefetch",
        type=positive,
        default=1000,
        help="messages held ahead, the window of per-user fairness (default 1000)",
    )
    worker.add_argument("--per-user-limit", type=positive, help="running tasks per user, at most")
    worker.add_argument(
        "--ack-wait",
        type=positive,
        default=30,
        help="seconds without a heartbeat before a task is given to another worker (default 30)",
    )
    worker.add_argument(
        "--engine",
        choices=["auto", "offline", "instant"],
        default="auto",
        help="auto: the OpenAI-compatible model when OPENAI_API_KEY is set, else offline; "
        "instant: do no work (benchmarks)",
    )

    token = commands.add_parser("token", help="print a JWT for a user")
    token.add_argument("user")
    token.add_argument("--admin", action="store_true", help="with the admin role")
    token.add_argument("--ttl", type=positive, default=24 * 3600, help="seconds (default 86400)")

    replay = commands.add_parser("replay", help="rebuild read models from the event store")
    replay.add_argument("name", nargs="?", default="all", help="tasks, statistics, ..., or all")
    replay.add_argument("--verify", action="store_true", help="compare with the live tables")

    audit = commands.add_parser("audit", help="print a task's event history")
    audit.add_argument("task_id", nargs="?", help="a task or template id")
    audit.add_argument(
        "--deletions", action="store_true", help="list the newest task deletions instead"
    )

    purge = commands.add_parser("purge", help="delete finished tasks older than a duration")
    purge.add_argument(
        "--older-than", metavar="DURATION", help="30d, 12h, 0s... (default AGENTTASKS_RETENTION)"
    )
    purge.add_argument("--dry-run", action="store_true", help="print what it would delete")

    held = commands.add_parser("quarantine", help="events a consumer could not decode or apply")
    actions = held.add_subparsers(dest="action", required=True)
    listing = actions.add_parser("list", help="print the quarantined events (exit 1 if any)")
    listing.add_argument("--all", action="store_true", help="resolved entries too")
    retry = actions.add_parser(
        "retry", help="re-decode them and rebuild the read models that missed them"
    )
    retry.add_argument("positions", nargs="*", type=positive, help="default: every entry")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the console script."""
    args = build_parser().parse_args(argv)
    try:
        settings = Settings.from_env()
        _observe(args, settings)
        if args.data_dir is not None:
            settings = settings.with_(home=args.data_dir)
        return _run(args, settings)
    except (SettingsError, UserError, ServerStartError) as error:
        print(f"agenttasks: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


# The role each command's log lines name (docs/operations.md, "Logs and traces").
ROLE_OF = {"project": "projector"}


def _observe(args: argparse.Namespace, settings: Settings) -> None:
    from agenttasks.observability import logs

    role = ROLE_OF.get(args.command, args.command)
    if args.command == "run":  # lines from outside any role's task name them all
        role = ",".join(ROLE_OF.get(name, name) for name in args.roles)
    logs.setup(role, args.log_level.upper(), settings.log_format)
    if settings.otel_endpoint is not None:  # otherwise nothing of OpenTelemetry is imported
        try:
            from agenttasks.observability import otel
        except ImportError:
            raise SettingsError(
                "OTEL_EXPORTER_OTLP_ENDPOINT is set but OpenTelemetry is not installed: "
                "pip install 'agenttasks[otel]'"
            ) from None
        otel.start(settings.otel_endpoint, settings.otel_service_name, role)


def _run(args: argparse.Namespace, settings: Settings) -> int:
    from agenttasks import bootstrap, roles

    if getattr(args, "host", None):
        settings = settings.with_(host=args.host)
    if getattr(args, "port", None):
        settings = settings.with_(port=args.port)
    command = args.command
    if command == "up":
        if args.nats_port:
            settings = settings.with_(nats_port=args.nats_port)
        from agenttasks.up import up

        return up(
            settings,
            worker=not args.no_worker,
            log_level=args.log_level,
            together=not args.separate_roles,
        )
    if command == "token":
        print(bootstrap.token(settings, args.user, admin=args.admin, ttl=args.ttl))
        return 0
    runners: dict[str, Callable[[], int]] = {
        "api": lambda: roles.run_api(settings),
        "relay": lambda: roles.run_relay(settings),
        "run": lambda: roles.run_roles(settings, args.roles),
        "deliver": lambda: roles.run_deliverer(settings),
        "maintain": lambda: roles.run_maintenance(settings),
        "migrate": lambda: _migrate(settings),
        "project": lambda: roles.run_projectors(settings, args.names),
        "replay": lambda: replay(settings, args.name, verify=args.verify),
        "audit": lambda: _audit(args, settings),
        "purge": lambda: _purge(args, settings),
        "quarantine": lambda: _quarantine(args, settings),
        "worker": lambda: _worker(args, settings),
    }
    return runners[command]()


def _migrate(settings: Settings) -> int:
    from agenttasks.migrate import MigrationError, migrate

    try:
        print(migrate(settings).summary())
    except MigrationError as error:
        raise UserError(str(error)) from None
    return 0


def _audit(args: argparse.Namespace, settings: Settings) -> int:
    from agenttasks import purge_command

    if args.deletions:
        return purge_command.list_deletions(settings)
    if args.task_id is None:
        raise SettingsError("give a task or template id, or --deletions")
    return audit(settings, args.task_id)


def _purge(args: argparse.Namespace, settings: Settings) -> int:
    from agenttasks import purge_command

    return purge_command.purge(settings, args.older_than, dry_run=args.dry_run)


def _quarantine(args: argparse.Namespace, settings: Settings) -> int:
    from agenttasks import quarantine_command

    if args.action == "list":
        return quarantine_command.list_entries(settings, include_resolved=args.all)
    return quarantine_command.retry(settings, args.positions)


def _worker(args: argparse.Namespace, settings: Settings) -> int:
    from agenttasks import roles
    from agenttasks.workers.runtime import WorkerOptions

    options = WorkerOptions(
        concurrency=args.concurrency,
        prefetch=args.prefetch,
        per_user_limit=args.per_user_limit,
        ack_wait=float(args.ack_wait),
    )
    if args.types:
        options = replace(options, types=args.types)
    return roles.run_worker(settings, options, engine=args.engine)


def replay(settings: Settings, name: str, *, verify: bool) -> int:
    """Rebuilds read models from the store with a progress bar; 1 if verify found differences."""
    from agenttasks import bootstrap
    from agenttasks.application.bus_payloads import mapper_for
    from agenttasks.projections.replay import replay as replay_projection

    settings = bootstrap.resolve(settings)
    database_url = bootstrap.require_database(settings)
    available = bootstrap.projections()
    if name != "all" and name not in available:
        raise SettingsError(f"unknown read model {name!r}; known: {', '.join(available)}, all")
    chosen = list(available.values()) if name == "all" else [available[name]]
    status = 0
    with bootstrap.event_store(settings) as store:
        for projection in chosen:
            report = replay_projection(
                projection,
                store,
                mapper_for(store),
                database_url,
                verify=verify,
                progress=_progress_bar(projection.name),
            )
            print(file=sys.stderr)
            action = "verified" if verify else "rebuilt and switched"
            print(
                f"{projection.name}: {action} {report.events} events up to position "
                f"{report.position} in {report.seconds:.2f}s ({report.rate:,.0f} events/s)"
            )
            for difference in report.differences:
                print(f"  {difference}")
            if report.differences:
                status = 1
    return status


def audit(settings: Settings, task_id: str) -> int:
    """Prints a task's (or a template's) event history from the event store."""
    from agenttasks import bootstrap
    from agenttasks.application.bus_payloads import event_fields
    from agenttasks.application.tasks import SYSTEM, TaskNotFound
    from agenttasks.application.templates import TemplateNotFound
    from agenttasks.domain.template import TEMPLATE_KINDS
    from agenttasks.domain.updates import KINDS

    settings = bootstrap.resolve(settings)
    bootstrap.require_database(settings)
    try:
        parsed = UUID(task_id)
    except ValueError:
        raise SettingsError(f"{task_id!r} is not a task id (a UUID)") from None
    with bootstrap.event_store(settings) as store:
        commands = bootstrap.task_commands(store)
        try:
            history = commands.history(SYSTEM, parsed)
        except TaskNotFound:
            try:  # a template's history is an audit trail too
                templates = bootstrap.template_commands(store, commands, settings)
                history = templates.history(SYSTEM, parsed)
            except TemplateNotFound:
                from agenttasks import purge_command

                if purge_command.print_deletion(store, parsed):  # a deleted task's record
                    return 0
                raise SettingsError(f"no task or template {task_id}") from None
    kinds = {**KINDS, **TEMPLATE_KINDS}
    for item in history:
        kind = kinds.get(type(item.event), type(item.event).__qualname__)
        stamp = item.timestamp.isoformat()
        fields = event_fields(item.event)
        version = item.event.originator_version
        print(f"{item.position:>8}  v{version:<3} {stamp}  {kind:<10} {fields}")
    return 0


def _progress_bar(name: str) -> Callable[[int, int, float], None]:
    def show(position: int, newest: int, rate: float) -> None:
        done = position / newest if newest else 1.0
        bar = "#" * int(done * 30)
        print(
            f"\r{name:<16} [{bar:<30}] {position:>10,}/{newest:,} {rate:>10,.0f} events/s",
            end="",
            file=sys.stderr,
            flush=True,
        )

    return show


if __name__ == "__main__":
    sys.exit(main())
